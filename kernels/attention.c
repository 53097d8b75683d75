/* attention.c: causal GQA attention over BLAS tiles (see attention.h).
 * A tile is one kv head g with a block of bq consecutive queries of its rep = n_heads/n_kv_heads
 * query heads, packed as rows [r * bq + i] so that each product is one sgemm of rep*bq rows.
 * The tile only reaches keys 0 .. kend-1 (the last query's horizon), so causal work is wasted only
 * inside the diagonal block. */
#include "kernels/attention.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "kernels/fastmath.h"
#include "kernels/matmul.h"

#define ATT_TILE_ROWS 256         /* packed query rows per tile: big enough for an efficient sgemm */
#define ATT_TILE_FLOATS (1 << 21) /* cap of one [rows x nkv] score tile (8 MB) at long contexts */

static int tile_bq(const attn_shape *s) {
    int rep = s->n_heads / s->n_kv_heads;
    int bq = ATT_TILE_ROWS / rep;
    long cap = ATT_TILE_FLOATS / ((long)rep * (s->nkv > 0 ? s->nkv : 1));
    if (bq > cap) bq = (int)cap;
    if (bq > s->nq) bq = s->nq;
    return bq < 1 ? 1 : bq;
}

size_t attention_work_floats(const attn_shape *s) {
    size_t rows = (size_t)(s->n_heads / s->n_kv_heads) * tile_bq(s);
    return rows * (size_t)s->head_dim * 3 + rows * (size_t)s->nkv * 2 + rows + 16;
}

typedef struct {
    float *qp, *op, *dqp; /* [rows, head_dim] packed queries, outputs (or dout), dq */
    float *sc, *dp;       /* [rows, kend] scores / probabilities, and dP / dS */
    float *dr;            /* [rows] rowsum(dout * out) */
} tile_bufs;

static tile_bufs tile_split(const attn_shape *s, float *work) {
    size_t rows = (size_t)(s->n_heads / s->n_kv_heads) * tile_bq(s), D = (size_t)s->head_dim;
    tile_bufs b;
    b.qp = work;
    b.op = b.qp + rows * D;
    b.dqp = b.op + rows * D;
    b.sc = b.dqp + rows * D;
    b.dp = b.sc + rows * (size_t)s->nkv;
    b.dr = b.dp + rows * (size_t)s->nkv;
    return b;
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

void attention_forward(float *out, float *lse, const float *q, const float *k, const float *v,
                       const attn_shape *s, float *work) {
    const int rep = s->n_heads / s->n_kv_heads, D = s->head_dim, bq = tile_bq(s);
    const float scale = 1.0f / sqrtf((float)D);
    tile_bufs b = tile_split(s, work);
    for (int g = 0; g < s->n_kv_heads; g++) {
        for (int i0 = 0; i0 < s->nq; i0 += bq) {
            const int nb = s->nq - i0 < bq ? s->nq - i0 : bq, R = rep * nb, kend = s->nkv - s->nq + i0 + nb;
            pack_rows(b.qp, q, s->ldq, i0, nb, g, rep, D);
            matmul(b.sc, kend, b.qp, D, 0, k + (size_t)g * D, s->ldk, 1, R, kend, D, scale, 0);
#pragma omp parallel for schedule(static) if ((size_t)R * kend > 8192)
            for (int m = 0; m < R; m++) {
                const int r = m / nb, i = m % nb, lim = s->nkv - s->nq + i0 + i + 1;
                float *row = b.sc + (size_t)m * kend;
                float mx = -INFINITY, sum = 0;
#pragma omp simd reduction(max : mx)
                for (int j = 0; j < lim; j++) mx = row[j] > mx ? row[j] : mx;
#pragma omp simd reduction(+ : sum)
                for (int j = 0; j < lim; j++) {
                    row[j] = fm_expf(row[j] - mx);
                    sum += row[j];
                }
                const float inv = 1.0f / sum;
#pragma omp simd
                for (int j = 0; j < lim; j++) row[j] *= inv;
                for (int j = lim; j < kend; j++) row[j] = 0;
                if (lse) lse[(size_t)(i0 + i) * s->n_heads + g * rep + r] = mx + logf(sum);
            }
            matmul(b.op, D, b.sc, kend, 0, v + (size_t)g * D, s->ldv, 0, R, D, kend, 1.0f, 0);
            unpack_rows(out, s->ldo, b.op, i0, nb, g, rep, D);
        }
    }
}

void attention_backward(float *dq, float *dk, float *dv, const float *dout, const float *out, const float *lse,
                        const float *q, const float *k, const float *v, const attn_shape *s, float *work) {
    const int rep = s->n_heads / s->n_kv_heads, D = s->head_dim, bq = tile_bq(s);
    const float scale = 1.0f / sqrtf((float)D);
    const size_t kvw = (size_t)s->n_kv_heads * D;
    tile_bufs b = tile_split(s, work);
    for (int j = 0; j < s->nkv; j++) {
        memset(dk + (size_t)j * s->ldk, 0, kvw * sizeof(float));
        memset(dv + (size_t)j * s->ldv, 0, kvw * sizeof(float));
    }
    for (int g = 0; g < s->n_kv_heads; g++) {
        for (int i0 = 0; i0 < s->nq; i0 += bq) {
            const int nb = s->nq - i0 < bq ? s->nq - i0 : bq, R = rep * nb, kend = s->nkv - s->nq + i0 + nb;
            pack_rows(b.qp, q, s->ldq, i0, nb, g, rep, D);
            pack_rows(b.op, dout, s->ldo, i0, nb, g, rep, D);
            for (int m = 0; m < R; m++) {
                const int r = m / nb, i = m % nb;
                const float *o = out + (size_t)(i0 + i) * s->ldo + (size_t)(g * rep + r) * D;
                const float *d = b.op + (size_t)m * D;
                float acc = 0;
#pragma omp simd reduction(+ : acc)
                for (int e = 0; e < D; e++) acc += d[e] * o[e];
                b.dr[m] = acc;
            }
            /* P = exp(scale * Q K^T - lse), zero beyond each row's causal horizon */
            matmul(b.sc, kend, b.qp, D, 0, k + (size_t)g * D, s->ldk, 1, R, kend, D, scale, 0);
#pragma omp parallel for schedule(static) if ((size_t)R * kend > 8192)
            for (int m = 0; m < R; m++) {
                const int r = m / nb, i = m % nb, lim = s->nkv - s->nq + i0 + i + 1;
                const float l = lse[(size_t)(i0 + i) * s->n_heads + g * rep + r];
                float *row = b.sc + (size_t)m * kend;
#pragma omp simd
                for (int j = 0; j < lim; j++) row[j] = fm_expf(row[j] - l);
                for (int j = lim; j < kend; j++) row[j] = 0;
            }
            /* dV += P^T dO ; dP = dO V^T ; dS = P * (dP - rowsum(dO * O)) */
            matmul(dv + (size_t)g * D, s->ldv, b.sc, kend, 1, b.op, D, 0, kend, D, R, 1.0f, 1.0f);
            matmul(b.dp, kend, b.op, D, 0, v + (size_t)g * D, s->ldv, 1, R, kend, D, 1.0f, 0);
#pragma omp parallel for schedule(static) if ((size_t)R * kend > 8192)
            for (int m = 0; m < R; m++) {
                float *pr = b.sc + (size_t)m * kend, *dpr = b.dp + (size_t)m * kend;
                const float dr = b.dr[m];
#pragma omp simd
                for (int j = 0; j < kend; j++) dpr[j] = pr[j] * (dpr[j] - dr);
            }
            /* dQ = scale * dS K ; dK += scale * dS^T Q */
            matmul(b.dqp, D, b.dp, kend, 0, k + (size_t)g * D, s->ldk, 0, R, D, kend, scale, 0);
            unpack_rows(dq, s->ldq, b.dqp, i0, nb, g, rep, D);
            matmul(dk + (size_t)g * D, s->ldk, b.dp, kend, 1, b.qp, D, 0, kend, D, R, scale, 1.0f);
        }
    }
}

/* ---- reference ---- */

/* p: [nkv] probabilities of query i, head h (double); returns lse. */
static double ref_probs(double *p, const float *q, const float *k, const attn_shape *s, int i, int h) {
    const int rep = s->n_heads / s->n_kv_heads, D = s->head_dim, lim = s->nkv - s->nq + i + 1;
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
    for (int j = lim; j < s->nkv; j++) p[j] = 0;
    return mx + log(sum);
}

void attention_forward_ref(float *out, float *lse, const float *q, const float *k, const float *v,
                           const attn_shape *s) {
    const int rep = s->n_heads / s->n_kv_heads, D = s->head_dim;
    double *p = xmalloc(sizeof(double) * (size_t)(s->nkv > 0 ? s->nkv : 1));
    if (!p) return;
    for (int i = 0; i < s->nq; i++)
        for (int h = 0; h < s->n_heads; h++) {
            double l = ref_probs(p, q, k, s, i, h);
            if (lse) lse[(size_t)i * s->n_heads + h] = (float)l;
            for (int e = 0; e < D; e++) {
                double o = 0;
                for (int j = 0; j < s->nkv; j++) o += p[j] * v[(size_t)j * s->ldv + (size_t)(h / rep) * D + e];
                out[(size_t)i * s->ldo + (size_t)h * D + e] = (float)o;
            }
        }
    free(p);
}

void attention_backward_ref(float *dq, float *dk, float *dv, const float *dout, const float *out,
                            const float *lse, const float *q, const float *k, const float *v, const attn_shape *s) {
    (void)out;
    (void)lse; /* recomputed in double from q, k, v: the reference does not trust the forward */
    const int rep = s->n_heads / s->n_kv_heads, D = s->head_dim, nkv = s->nkv;
    const size_t kvw = (size_t)s->n_kv_heads * D;
    double *p = xmalloc(sizeof(double) * (size_t)(nkv > 0 ? nkv : 1));
    double *dp = xmalloc(sizeof(double) * (size_t)(nkv > 0 ? nkv : 1));
    double *o = xmalloc(sizeof(double) * (size_t)D);
    double *gk = xcalloc((size_t)nkv * kvw + 1, sizeof(double)), *gv = xcalloc((size_t)nkv * kvw + 1, sizeof(double));
    if (!p || !dp || !o || !gk || !gv) goto done;
    for (int i = 0; i < s->nq; i++)
        for (int h = 0; h < s->n_heads; h++) {
            const int g = h / rep;
            ref_probs(p, q, k, s, i, h);
            const float *gi = dout + (size_t)i * s->ldo + (size_t)h * D;
            const float *qi = q + (size_t)i * s->ldq + (size_t)h * D;
            double dr = 0;
            for (int e = 0; e < D; e++) {
                o[e] = 0;
                for (int j = 0; j < nkv; j++) o[e] += p[j] * v[(size_t)j * s->ldv + (size_t)g * D + e];
                dr += gi[e] * o[e];
            }
            for (int j = 0; j < nkv; j++) {
                double d = 0;
                for (int e = 0; e < D; e++) d += (double)gi[e] * v[(size_t)j * s->ldv + (size_t)g * D + e];
                dp[j] = p[j] * (d - dr) / sqrt((double)D);
            }
            for (int e = 0; e < D; e++) {
                double a = 0;
                for (int j = 0; j < nkv; j++) a += dp[j] * k[(size_t)j * s->ldk + (size_t)g * D + e];
                dq[(size_t)i * s->ldq + (size_t)h * D + e] = (float)a;
            }
            for (int j = 0; j < nkv; j++)
                for (int e = 0; e < D; e++) {
                    gk[(size_t)j * kvw + (size_t)g * D + e] += dp[j] * qi[e];
                    gv[(size_t)j * kvw + (size_t)g * D + e] += p[j] * gi[e];
                }
        }
    for (int j = 0; j < nkv; j++)
        for (size_t e = 0; e < kvw; e++) {
            dk[(size_t)j * s->ldk + e] = (float)gk[(size_t)j * kvw + e];
            dv[(size_t)j * s->ldv + e] = (float)gv[(size_t)j * kvw + e];
        }
done:
    free(p);
    free(dp);
    free(o);
    free(gk);
    free(gv);
}
