/* attention.c: causal GQA attention over BLAS tiles (see attention.h).
 * A tile is one kv head g of one sequence with a block of bq consecutive queries of its
 * rep = n_heads / n_kv_heads query heads, packed as rows [r * bq + i], so that each product is one
 * sgemm of rep * bq rows. A tile only reaches keys 0 .. kend-1 (its last query's horizon): causal
 * work is wasted only inside the diagonal block. Threads take (sequence, kv head) items; an item's
 * outputs (its query rows' head columns, its keys' gradient columns) belong to it alone, so the
 * result does not depend on the thread count or the order items are taken in. */
#include "kernels/attention.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "kernels/attention_internal.h"
#include "kernels/fastmath.h"
#include "kernels/matmul.h"
#include "kernels/threads.h"

#define ATT_TILE_ROWS 128         /* packed query rows per tile: an efficient sgemm, little causal waste */
#define ATT_TILE_FLOATS (1 << 21) /* cap of one [rows x nkv] score tile (8 MB) at long contexts */

static int tile_bq(const attn_shape *s, int max_nkv) {
    int rep = s->n_heads / s->n_kv_heads;
    int bq = ATT_TILE_ROWS / rep;
    long cap = ATT_TILE_FLOATS / ((long)rep * (max_nkv > 0 ? max_nkv : 1));
    if (bq > cap) bq = (int)cap;
    return bq < 1 ? 1 : bq;
}

static size_t per_thread_floats(const attn_shape *s, int max_nkv) {
    size_t rows = (size_t)(s->n_heads / s->n_kv_heads) * tile_bq(s, max_nkv), D = (size_t)s->head_dim;
    return rows * D * 3 + rows * (size_t)max_nkv * 2 + rows + 16;
}

size_t attention_work_floats(const attn_shape *s, int max_nkv) {
    const size_t per = flash_supported(s) ? flash_work_floats(s, max_nkv) : per_thread_floats(s, max_nkv);
    return per * (size_t)kernels_threads();
}

typedef struct {
    float *qp, *op, *dqp; /* [rows, head_dim] packed queries, outputs (or dout), dq */
    float *sc, *dp;       /* [rows, kend] scores / probabilities, and dP / dS */
    float *dr;            /* [rows] rowsum(dout * out) in backward, 1 / rowsum(exp) in forward */
} tile_bufs;

static tile_bufs tile_split(float *w, const attn_shape *s, int max_nkv) {
    size_t rows = (size_t)(s->n_heads / s->n_kv_heads) * tile_bq(s, max_nkv), D = (size_t)s->head_dim;
    tile_bufs b;
    b.qp = w;
    b.op = b.qp + rows * D;
    b.dqp = b.op + rows * D;
    b.sc = b.dqp + rows * D;
    b.dp = b.sc + rows * (size_t)max_nkv;
    b.dr = b.dp + rows * (size_t)max_nkv;
    return b;
}

/* Validates the sequences; returns the largest nkv, or -1 (ERR_INTERNAL). */
static int seqs_max_nkv(const attn_seq *seqs, int n_seqs) {
    int mx = 0;
    for (int i = 0; i < n_seqs; i++) {
        if (seqs[i].nq < 0 || seqs[i].nkv < seqs[i].nq || seqs[i].q0 < 0 || seqs[i].k0 < 0)
            return err_set(ERR_INTERNAL, "attention: sequence %d has %d queries and %d keys", i, seqs[i].nq, seqs[i].nkv);
        if (seqs[i].nkv > mx) mx = seqs[i].nkv;
    }
    return mx;
}

/* dst [rep*nb, D] <- rows i0..i0+nb-1 of heads g*rep .. g*rep+rep-1 of src [*, ld]. */
static void pack_rows(float *dst, const float *src, int ld, int i0, int nb, int g, int rep, int D) {
    for (int r = 0; r < rep; r++)
        for (int i = 0; i < nb; i++)
            memcpy(dst + ((size_t)r * nb + i) * D, src + (size_t)(i0 + i) * ld + (size_t)(g * rep + r) * D,
                   (size_t)D * sizeof(float));
}

static void unpack_rows(float *dst, int ld, const float *src, int i0, int nb, int g, int rep, int D) {
    for (int r = 0; r < rep; r++)
        for (int i = 0; i < nb; i++)
            memcpy(dst + (size_t)(i0 + i) * ld + (size_t)(g * rep + r) * D, src + ((size_t)r * nb + i) * D,
                   (size_t)D * sizeof(float));
}

/* Forward of kv head g of one sequence; q, out, lse point at the sequence's first query row, k, v at
 * its first key row. */
static void fwd_item(float *out, float *lse, const float *q, const float *k, const float *v, const attn_shape *s,
                     int nq, int nkv, int g, int bq, const tile_bufs *b) {
    const int rep = s->n_heads / s->n_kv_heads, D = s->head_dim;
    const float scale = 1.0f / sqrtf((float)D);
    for (int i0 = 0; i0 < nq; i0 += bq) {
        const int nb = nq - i0 < bq ? nq - i0 : bq, R = rep * nb, kend = nkv - nq + i0 + nb;
        pack_rows(b->qp, q, s->ldq, i0, nb, g, rep, D);
        matmul(b->sc, kend, b->qp, D, 0, k + (size_t)g * D, s->ldk, 1, R, kend, D, scale, 0);
        for (int m = 0; m < R; m++) {
            const int r = m / nb, i = m % nb, lim = nkv - nq + i0 + i + 1;
            float *row = b->sc + (size_t)m * kend;
            const float mx = fm_row_max(row, lim);
            const double sum = fm_row_exp_sum(row, row, lim, mx);
            for (int j = lim; j < kend; j++) row[j] = 0;
            b->dr[m] = (float)(1.0 / sum); /* applied to the output row: D values instead of kend */
            if (lse) lse[(size_t)(i0 + i) * s->n_heads + g * rep + r] = (float)(mx + log(sum));
        }
        matmul(b->op, D, b->sc, kend, 0, v + (size_t)g * D, s->ldv, 0, R, D, kend, 1.0f, 0);
        for (int m = 0; m < R; m++) fm_row_scale(b->op + (size_t)m * D, D, b->dr[m]);
        unpack_rows(out, s->ldo, b->op, i0, nb, g, rep, D);
    }
}

static void bwd_item(float *dq, float *dk, float *dv, const float *dout, const float *out, const float *lse,
                     const float *q, const float *k, const float *v, const attn_shape *s, int nq, int nkv, int g,
                     int bq, const tile_bufs *b) {
    const int rep = s->n_heads / s->n_kv_heads, D = s->head_dim;
    const float scale = 1.0f / sqrtf((float)D);
    /* Tiles from the last to the first: the last one reaches every key, so its products assign dK
     * and dV (beta 0) and the earlier, shorter ones accumulate into them. */
    const int n_tiles = (nq + bq - 1) / bq;
    if (nq == 0) { /* no queries: no gradient reaches the keys */
        for (int j = 0; j < nkv; j++) {
            memset(dk + (size_t)j * s->ldk + (size_t)g * D, 0, (size_t)D * sizeof(float));
            memset(dv + (size_t)j * s->ldv + (size_t)g * D, 0, (size_t)D * sizeof(float));
        }
    }
    for (int tile = n_tiles - 1; tile >= 0; tile--) {
        const int i0 = tile * bq, nb = nq - i0 < bq ? nq - i0 : bq, R = rep * nb, kend = nkv - nq + i0 + nb;
        const float beta = tile == n_tiles - 1 ? 0.0f : 1.0f;
        pack_rows(b->qp, q, s->ldq, i0, nb, g, rep, D);
        pack_rows(b->op, dout, s->ldo, i0, nb, g, rep, D);
        for (int m = 0; m < R; m++) {
            const int r = m / nb, i = m % nb;
            const float *o = out + (size_t)(i0 + i) * s->ldo + (size_t)(g * rep + r) * D, *d = b->op + (size_t)m * D;
            float acc = 0;
#pragma omp simd reduction(+ : acc)
            for (int e = 0; e < D; e++) acc += d[e] * o[e];
            b->dr[m] = acc;
        }
        /* P = exp(scale * Q K^T - lse), zero beyond each row's causal horizon */
        matmul(b->sc, kend, b->qp, D, 0, k + (size_t)g * D, s->ldk, 1, R, kend, D, scale, 0);
        for (int m = 0; m < R; m++) {
            const int r = m / nb, i = m % nb, lim = nkv - nq + i0 + i + 1;
            const float l = lse[(size_t)(i0 + i) * s->n_heads + g * rep + r];
            float *row = b->sc + (size_t)m * kend;
            fm_row_exp_sum(row, row, lim, l);
            for (int j = lim; j < kend; j++) row[j] = 0;
        }
        /* dV += P^T dO ; dP = dO V^T ; dS = P * (dP - rowsum(dO * O)) */
        matmul(dv + (size_t)g * D, s->ldv, b->sc, kend, 1, b->op, D, 0, kend, D, R, 1.0f, beta);
        matmul(b->dp, kend, b->op, D, 0, v + (size_t)g * D, s->ldv, 1, R, kend, D, 1.0f, 0);
        for (int m = 0; m < R; m++) {
            float *pr = b->sc + (size_t)m * kend, *dpr = b->dp + (size_t)m * kend;
            const float dr = b->dr[m];
#pragma omp simd
            for (int j = 0; j < kend; j++) dpr[j] = pr[j] * (dpr[j] - dr);
        }
        /* dQ = scale * dS K ; dK += scale * dS^T Q */
        matmul(b->dqp, D, b->dp, kend, 0, k + (size_t)g * D, s->ldk, 0, R, D, kend, scale, 0);
        unpack_rows(dq, s->ldq, b->dqp, i0, nb, g, rep, D);
        matmul(dk + (size_t)g * D, s->ldk, b->dp, kend, 1, b->qp, D, 0, kend, D, R, scale, beta);
    }
}

/* Threads for n_items items given the work buffer; -1 when it cannot hold one thread's tiles. */
static int work_too_small(size_t have, size_t need) {
    return err_set(ERR_INTERNAL, "attention: work buffer of %zu floats, %zu needed (size it with attention_work_floats)",
                   have, need);
}

/* Multiply-adds of the two products of every sequence (the causal half), for the thread count. */
static double seqs_macs(const attn_shape *s, const attn_seq *seqs, int n_seqs) {
    double macs = 0;
    for (int i = 0; i < n_seqs; i++) macs += 2.0 * seqs[i].nq * (seqs[i].nkv - seqs[i].nq / 2.0) * s->head_dim * s->n_heads;
    return macs;
}

static int plan_threads(const attn_shape *s, int max_nkv, size_t work_floats, int n_items, double macs) {
    size_t per = per_thread_floats(s, max_nkv);
    if (work_floats < per) return work_too_small(work_floats, per);
    size_t t = work_floats / per;
    int T = kernels_threads_for(macs, THR_ATTN_MACS);
    if ((size_t)T > t) T = (int)t;
    if (T > n_items) T = n_items;
    return T < 1 ? 1 : T;
}

int attention_forward(float *out, float *lse, const float *q, const float *k, const float *v, const attn_shape *s,
                      const attn_seq *seqs, int n_seqs, float *work, size_t work_floats) {
    const int max_nkv = seqs_max_nkv(seqs, n_seqs), H = s->n_kv_heads, items = n_seqs * H;
    if (max_nkv < 0) return -1;
    if (flash_supported(s)) {
        if (work_floats < flash_work_floats(s, max_nkv)) return work_too_small(work_floats, flash_work_floats(s, max_nkv));
        return flash_forward(out, lse, q, k, v, s, seqs, n_seqs, work, work_floats, max_nkv);
    }
    const int T = plan_threads(s, max_nkv, work_floats, items, seqs_macs(s, seqs, n_seqs)), bq = tile_bq(s, max_nkv);
    if (T < 0) return -1;
    const size_t per = per_thread_floats(s, max_nkv);
#pragma omp parallel num_threads(T) if (T > 1)
    {
        const tile_bufs b = tile_split(work + per * (size_t)omp_get_thread_num(), s, max_nkv);
#pragma omp for schedule(dynamic, 1)
        for (int it = 0; it < items; it++) {
            const attn_seq *sq = &seqs[it / H];
            fwd_item(out + (size_t)sq->q0 * s->ldo, lse ? lse + (size_t)sq->q0 * s->n_heads : NULL,
                     q + (size_t)sq->q0 * s->ldq, k + (size_t)sq->k0 * s->ldk, v + (size_t)sq->k0 * s->ldv, s, sq->nq,
                     sq->nkv, it % H, bq, &b);
        }
    }
    return 0;
}

int attention_backward(float *dq, float *dk, float *dv, const float *dout, const float *out, const float *lse,
                       const float *q, const float *k, const float *v, const attn_shape *s, const attn_seq *seqs,
                       int n_seqs, float *work, size_t work_floats) {
    const int max_nkv = seqs_max_nkv(seqs, n_seqs), H = s->n_kv_heads, items = n_seqs * H;
    if (max_nkv < 0) return -1;
    if (flash_supported(s)) {
        if (work_floats < flash_work_floats(s, max_nkv)) return work_too_small(work_floats, flash_work_floats(s, max_nkv));
        return flash_backward(dq, dk, dv, dout, out, lse, q, k, v, s, seqs, n_seqs, work, work_floats, max_nkv);
    }
    const int T = plan_threads(s, max_nkv, work_floats, items, seqs_macs(s, seqs, n_seqs)), bq = tile_bq(s, max_nkv);
    if (T < 0) return -1;
    const size_t per = per_thread_floats(s, max_nkv);
#pragma omp parallel num_threads(T) if (T > 1)
    {
        const tile_bufs b = tile_split(work + per * (size_t)omp_get_thread_num(), s, max_nkv);
#pragma omp for schedule(dynamic, 1)
        for (int it = 0; it < items; it++) {
            const attn_seq *sq = &seqs[it / H];
            const size_t qo = (size_t)sq->q0, ko = (size_t)sq->k0;
            bwd_item(dq + qo * s->ldq, dk + ko * s->ldk, dv + ko * s->ldv, dout + qo * s->ldo, out + qo * s->ldo,
                     lse + qo * s->n_heads, q + qo * s->ldq, k + ko * s->ldk, v + ko * s->ldv, s, sq->nq, sq->nkv,
                     it % H, bq, &b);
        }
    }
    return 0;
}

/* ---- reference ---- */

/* p: [nkv] probabilities of query i (of nq), head h (double); returns lse. */
static double ref_probs(double *p, const float *q, const float *k, const attn_shape *s, int nq, int nkv, int i,
                        int h) {
    const int rep = s->n_heads / s->n_kv_heads, D = s->head_dim, lim = nkv - nq + i + 1;
    const float *qi = q + (size_t)i * s->ldq + (size_t)h * D;
    double mx = -INFINITY, sum = 0;
    for (int j = 0; j < lim; j++) {
        const float *kj = k + (size_t)j * s->ldk + (size_t)(h / rep) * D;
        double d = 0;
        for (int e = 0; e < D; e++) d += (double)qi[e] * kj[e];
        p[j] = d / sqrt((double)D);
        if (p[j] > mx) mx = p[j];
    }
    for (int j = 0; j < lim; j++) sum += (p[j] = exp(p[j] - mx));
    for (int j = 0; j < lim; j++) p[j] /= sum;
    for (int j = lim; j < nkv; j++) p[j] = 0;
    return mx + log(sum);
}

int attention_forward_ref(float *out, float *lse, const float *q, const float *k, const float *v,
                          const attn_shape *s, const attn_seq *seqs, int n_seqs) {
    const int rep = s->n_heads / s->n_kv_heads, D = s->head_dim, max_nkv = seqs_max_nkv(seqs, n_seqs);
    if (max_nkv < 0) return -1;
    double *p = xmalloc(sizeof(double) * (size_t)(max_nkv + 1));
    if (!p) return -1;
    for (int sn = 0; sn < n_seqs; sn++) {
        const attn_seq *sq = &seqs[sn];
        const float *qs = q + (size_t)sq->q0 * s->ldq, *ks = k + (size_t)sq->k0 * s->ldk, *vs = v + (size_t)sq->k0 * s->ldv;
        for (int i = 0; i < sq->nq; i++)
            for (int h = 0; h < s->n_heads; h++) {
                double l = ref_probs(p, qs, ks, s, sq->nq, sq->nkv, i, h);
                if (lse) lse[(size_t)(sq->q0 + i) * s->n_heads + h] = (float)l;
                for (int e = 0; e < D; e++) {
                    double o = 0;
                    for (int j = 0; j < sq->nkv; j++) o += p[j] * vs[(size_t)j * s->ldv + (size_t)(h / rep) * D + e];
                    out[(size_t)(sq->q0 + i) * s->ldo + (size_t)h * D + e] = (float)o;
                }
            }
    }
    free(p);
    return 0;
}

/* Recomputes everything in double from q, k, v: the reference does not trust the forward. */
int attention_backward_ref(float *dq, float *dk, float *dv, const float *dout, const float *q, const float *k,
                           const float *v, const attn_shape *s, const attn_seq *seqs, int n_seqs) {
    const int rep = s->n_heads / s->n_kv_heads, D = s->head_dim, max_nkv = seqs_max_nkv(seqs, n_seqs);
    const size_t kvw = (size_t)s->n_kv_heads * D;
    if (max_nkv < 0) return -1;
    double *p = xmalloc(sizeof(double) * (size_t)(max_nkv + 1)), *dp = xmalloc(sizeof(double) * (size_t)(max_nkv + 1));
    double *o = xmalloc(sizeof(double) * (size_t)D);
    double *gk = xcalloc((size_t)max_nkv * kvw + 1, sizeof(double)), *gv = xcalloc((size_t)max_nkv * kvw + 1, sizeof(double));
    int rc = -1;
    if (!p || !dp || !o || !gk || !gv) goto done;
    for (int sn = 0; sn < n_seqs; sn++) {
        const attn_seq *sq = &seqs[sn];
        const int nq = sq->nq, nkv = sq->nkv;
        const float *qs = q + (size_t)sq->q0 * s->ldq, *ks = k + (size_t)sq->k0 * s->ldk, *vs = v + (size_t)sq->k0 * s->ldv;
        memset(gk, 0, sizeof(double) * (size_t)nkv * kvw);
        memset(gv, 0, sizeof(double) * (size_t)nkv * kvw);
        for (int i = 0; i < nq; i++)
            for (int h = 0; h < s->n_heads; h++) {
                const int g = h / rep;
                ref_probs(p, qs, ks, s, nq, nkv, i, h);
                const float *gi = dout + (size_t)(sq->q0 + i) * s->ldo + (size_t)h * D, *qi = qs + (size_t)i * s->ldq + (size_t)h * D;
                double dr = 0;
                for (int e = 0; e < D; e++) {
                    o[e] = 0;
                    for (int j = 0; j < nkv; j++) o[e] += p[j] * vs[(size_t)j * s->ldv + (size_t)g * D + e];
                    dr += gi[e] * o[e];
                }
                for (int j = 0; j < nkv; j++) {
                    double d = 0;
                    for (int e = 0; e < D; e++) d += (double)gi[e] * vs[(size_t)j * s->ldv + (size_t)g * D + e];
                    dp[j] = p[j] * (d - dr) / sqrt((double)D);
                }
                for (int e = 0; e < D; e++) {
                    double a = 0;
                    for (int j = 0; j < nkv; j++) a += dp[j] * ks[(size_t)j * s->ldk + (size_t)g * D + e];
                    dq[(size_t)(sq->q0 + i) * s->ldq + (size_t)h * D + e] = (float)a;
                }
                for (int j = 0; j < nkv; j++)
                    for (int e = 0; e < D; e++) {
                        gk[(size_t)j * kvw + (size_t)g * D + e] += dp[j] * qi[e];
                        gv[(size_t)j * kvw + (size_t)g * D + e] += p[j] * gi[e];
                    }
            }
        for (int j = 0; j < nkv; j++)
            for (size_t e = 0; e < kvw; e++) {
                dk[(size_t)(sq->k0 + j) * s->ldk + e] = (float)gk[(size_t)j * kvw + e];
                dv[(size_t)(sq->k0 + j) * s->ldv + e] = (float)gv[(size_t)j * kvw + e];
            }
    }
    rc = 0;
done:
    free(p), free(dp), free(o), free(gk), free(gv);
    return rc;
}
