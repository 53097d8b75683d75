/* attn_paged.c: attention over a paged KV cache (see attn_paged.h). The tiling is attention.c's:
 * one item is one kv head g of one sequence; its queries go in tiles of bq consecutive positions
 * times the rep = n_heads / n_kv_heads query heads that read head g, packed as rows [r * bq + i].
 * Prefill items (tiles of at least PAGED_GEMM_ROWS rows) first gather the item's keys and values
 * of head g from their blocks into contiguous [nkv, D] rows of the thread's buffer (2 nkv D floats
 * copied, against 4 nq rep nkv D flops of products), then each tile is two sgemm calls as in
 * attention.c; sgemm calls per block (n = block_size) would cost more in call overhead than the
 * copy. Decode items (fewer rows) use vector loops straight over the blocks: an sgemm of 1 to 7
 * rows is slower than a dot product, and decode attention is bound by reading keys and values once. */
#include "kernels/attn_paged.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "kernels/fastmath.h"
#include "kernels/matmul.h"
#include "kernels/threads.h"

#define PAGED_TILE_ROWS 128         /* packed query rows per tile */
#define PAGED_TILE_FLOATS (1 << 21) /* cap of one [rows x nkv] score tile (8 MB) at long contexts */
#define PAGED_GEMM_ROWS 8           /* tiles of fewer rows use vector loops */

static int paged_bq(const attn_shape *s, int max_nkv) {
    int rep = s->n_heads / s->n_kv_heads, bq = PAGED_TILE_ROWS / rep;
    long cap = PAGED_TILE_FLOATS / ((long)rep * (max_nkv > 0 ? max_nkv : 1));
    if (bq > cap) bq = (int)cap;
    return bq < 1 ? 1 : bq;
}

static size_t paged_thread_floats(const attn_shape *s, int max_nkv) {
    size_t rows = (size_t)(s->n_heads / s->n_kv_heads) * paged_bq(s, max_nkv), nkv = (size_t)(max_nkv > 0 ? max_nkv : 1);
    return rows * (size_t)s->head_dim * 2 + rows * nkv + rows + 16 + 2 * nkv * (size_t)s->head_dim;
}

size_t attention_paged_work_floats(const attn_shape *s, int max_nkv) {
    return paged_thread_floats(s, max_nkv) * (size_t)kernels_threads();
}

/* Validates shapes, sequences and block ids; returns the largest nkv, or -1 (ERR_INTERNAL). */
static int check_seqs(const attn_paged_kv *kv, const attn_shape *s, const attn_paged_seq *seqs, int n_seqs) {
    if (kv->block_size < 1 || s->n_kv_heads < 1 || s->n_heads % s->n_kv_heads || kv->ldkv < s->n_kv_heads * s->head_dim)
        return err_set(ERR_INTERNAL, "paged attention: block size %d, %d heads over %d kv heads, row of %d floats",
                       kv->block_size, s->n_heads, s->n_kv_heads, kv->ldkv);
    int mx = 0;
    for (int i = 0; i < n_seqs; i++) {
        const attn_paged_seq *q = &seqs[i];
        if (q->nq < 0 || q->nkv < q->nq || q->q0 < 0 || (q->nkv > 0 && !q->blocks))
            return err_set(ERR_INTERNAL, "paged attention: sequence %d has %d queries and %d keys", i, q->nq, q->nkv);
        for (int j = 0; j * kv->block_size < q->nkv; j++)
            if (q->blocks[j] < 0 || q->blocks[j] >= kv->n_blocks)
                return err_set(ERR_INTERNAL, "paged attention: sequence %d names block %d of a pool of %d", i,
                               q->blocks[j], kv->n_blocks);
        if (q->nkv > mx) mx = q->nkv;
    }
    return mx;
}

/* dst [rep*nb, D] <- rows i0..i0+nb-1 of heads h0 .. h0+rep-1 of src [*, ld], and back. */
static void pack(float *dst, const float *src, int ld, int i0, int nb, int h0, int rep, int D) {
    for (int r = 0; r < rep; r++)
        for (int i = 0; i < nb; i++)
            memcpy(dst + ((size_t)r * nb + i) * D, src + (size_t)(i0 + i) * ld + (size_t)(h0 + r) * D,
                   (size_t)D * sizeof(float));
}

static void unpack(float *dst, int ld, const float *src, int i0, int nb, int h0, int rep, int D) {
    for (int r = 0; r < rep; r++)
        for (int i = 0; i < nb; i++)
            memcpy(dst + (size_t)(i0 + i) * ld + (size_t)(h0 + r) * D, src + ((size_t)r * nb + i) * D,
                   (size_t)D * sizeof(float));
}

/* Items of a sequence: a prefill one (its tiles reach PAGED_GEMM_ROWS rows: sgemm on the gathered
 * keys) one per kv head; a decode one (vector loops, bound by reading the keys and values) one per
 * query head, so that 2 threads share 3 kv heads' work evenly (9 items, not 3); the keys of a kv
 * head read again by its other query heads come from the cache. */
static int paged_split(const attn_shape *s, const attn_paged_seq *sq, int bq) {
    const int rep = s->n_heads / s->n_kv_heads;
    return rep * (sq->nq < bq ? sq->nq : bq) >= PAGED_GEMM_ROWS ? 1 : rep;
}

/* sc[m, j0 + r] = scale * q_m . k_r for the cnt keys of one block (vector loops). */
static void scores_small(float *sc, int ldsc, const float *qp, int R, const float *kb, int ldkv, int cnt, int D,
                         float scale) {
    for (int m = 0; m < R; m++) {
        const float *qm = qp + (size_t)m * D;
        for (int r = 0; r < cnt; r++) {
            const float *kr = kb + (size_t)r * ldkv;
            float acc = 0;
#pragma omp simd reduction(+ : acc)
            for (int e = 0; e < D; e++) acc += qm[e] * kr[e];
            sc[(size_t)m * ldsc + r] = acc * scale;
        }
    }
}

/* op[m] += sum_r p[m, r] v_r over the cnt values of one block (vector loops). */
static void values_small(float *op, const float *p, int ldp, int R, const float *vb, int ldkv, int cnt, int D) {
    for (int m = 0; m < R; m++) {
        float *om = op + (size_t)m * D;
        for (int r = 0; r < cnt; r++) {
            const float w = p[(size_t)m * ldp + r], *vr = vb + (size_t)r * ldkv;
            if (w == 0) continue;
#pragma omp simd
            for (int e = 0; e < D; e++) om[e] += w * vr[e];
        }
    }
}

/* One item: query heads h0 .. h0+rep-1 of one sequence, which read kv head g (a prefill item takes
 * all the heads of g, a decode item one: paged_split); qs and os point at the sequence's first query
 * row. Every row's scores, softmax and values are computed alone, so the split changes no value. */
static void paged_item(float *os, const float *qs, const attn_paged_kv *kv, const attn_shape *s,
                       const attn_paged_seq *sq, int g, int h0, int rep, int bq, float *w) {
    const int D = s->head_dim, B = kv->block_size, nq = sq->nq, nkv = sq->nkv;
    const float scale = 1.0f / sqrtf((float)D);
    const size_t rows = (size_t)rep * bq;
    float *qp = w, *op = qp + rows * D, *kc = op + rows * D, *vc = kc + (size_t)nkv * D, *sc = vc + (size_t)nkv * D;
    if (rep * (nq < bq ? nq : bq) >= PAGED_GEMM_ROWS) /* prefill: this head's keys and values, contiguous */
        for (int j0 = 0; j0 < nkv; j0 += B) {
            const int cnt = nkv - j0 < B ? nkv - j0 : B;
            const size_t base = (size_t)sq->blocks[j0 / B] * B * kv->ldkv + (size_t)g * D;
            for (int r = 0; r < cnt; r++) {
                memcpy(kc + (size_t)(j0 + r) * D, kv->k + base + (size_t)r * kv->ldkv, sizeof(float) * D);
                memcpy(vc + (size_t)(j0 + r) * D, kv->v + base + (size_t)r * kv->ldkv, sizeof(float) * D);
            }
        }
    for (int i0 = 0; i0 < nq; i0 += bq) {
        const int nb = nq - i0 < bq ? nq - i0 : bq, R = rep * nb, kend = nkv - nq + i0 + nb;
        const int gemm = R >= PAGED_GEMM_ROWS && rep * (nq < bq ? nq : bq) >= PAGED_GEMM_ROWS;
        float *dr = sc + (size_t)R * kend; /* [R] 1 / rowsum, after the scores */
        pack(qp, qs, s->ldq, i0, nb, h0, rep, D);
        if (gemm) matmul(sc, kend, qp, D, 0, kc, D, 1, R, kend, D, scale, 0);
        else
            for (int j0 = 0; j0 < kend; j0 += B) {
                const int cnt = kend - j0 < B ? kend - j0 : B;
                const float *kb = kv->k + (size_t)sq->blocks[j0 / B] * B * kv->ldkv + (size_t)g * D;
                scores_small(sc + j0, kend, qp, R, kb, kv->ldkv, cnt, D, scale);
            }
        for (int m = 0; m < R; m++) {
            const int lim = nkv - nq + i0 + m % nb + 1;
            float *row = sc + (size_t)m * kend;
            const float mx = fm_row_max(row, lim);
            const double sum = fm_row_exp_sum(row, row, lim, mx);
            for (int j = lim; j < kend; j++) row[j] = 0;
            dr[m] = (float)(1.0 / sum);
        }
        if (gemm) matmul(op, D, sc, kend, 0, vc, D, 0, R, D, kend, 1.0f, 0);
        else {
            memset(op, 0, sizeof(float) * (size_t)R * D);
            for (int j0 = 0; j0 < kend; j0 += B) {
                const int cnt = kend - j0 < B ? kend - j0 : B;
                const float *vb = kv->v + (size_t)sq->blocks[j0 / B] * B * kv->ldkv + (size_t)g * D;
                values_small(op, sc + j0, kend, R, vb, kv->ldkv, cnt, D);
            }
        }
        for (int m = 0; m < R; m++) fm_row_scale(op + (size_t)m * D, D, dr[m]);
        unpack(os, s->ldo, op, i0, nb, h0, rep, D);
    }
}

/* The number of items of the call (paged_split) and, for item it, its sequence and heads. */
static int paged_items(const attn_shape *s, const attn_paged_seq *seqs, int n_seqs, int bq) {
    int n = 0;
    for (int i = 0; i < n_seqs; i++) n += s->n_kv_heads * paged_split(s, &seqs[i], bq);
    return n;
}

/* Runs item it; *seq and *first carry the item's sequence and that sequence's first item index
 * from one call to the next (items in increasing order; start both at 0). */
static void run_item(float *out, const float *q, const attn_paged_kv *kv, const attn_shape *s,
                     const attn_paged_seq *seqs, int bq, int it, int *seq, int *first, float *w) {
    const int H = s->n_kv_heads;
    if (it < *first) *seq = 0, *first = 0;
    while (it >= *first + H * paged_split(s, &seqs[*seq], bq)) *first += H * paged_split(s, &seqs[(*seq)++], bq);
    const attn_paged_seq *sq = &seqs[*seq];
    const int split = paged_split(s, sq, bq), rep = s->n_heads / H, k = it - *first;
    const int g = k / split, h0 = g * rep + (split == 1 ? 0 : k % split);
    paged_item(out + (size_t)sq->q0 * s->ldo, q + (size_t)sq->q0 * s->ldq, kv, s, sq, g, h0, split == 1 ? rep : 1, bq,
               w);
}

int attention_paged_forward(float *out, const float *q, const attn_paged_kv *kv, const attn_shape *s,
                            const attn_paged_seq *seqs, int n_seqs, float *work, size_t work_floats) {
    const int max_nkv = check_seqs(kv, s, seqs, n_seqs);
    if (max_nkv < 0) return -1;
    const size_t per = paged_thread_floats(s, max_nkv);
    if (work_floats < per)
        return err_set(ERR_INTERNAL, "paged attention: work buffer of %zu floats, %zu needed (size it with "
                       "attention_paged_work_floats)", work_floats, per);
    int T = kernels_threads();
    if ((size_t)T > work_floats / per) T = (int)(work_floats / per);
    const int bq = paged_bq(s, max_nkv), n_items = paged_items(s, seqs, n_seqs, bq);
    if (T > n_items) T = n_items;
    if (T < 1) T = 1;
#pragma omp parallel num_threads(T) if (T > 1)
    {
        float *w = work + per * (size_t)omp_get_thread_num();
        int seq = 0, first = 0;
#pragma omp for schedule(dynamic, 1)
        for (int it = 0; it < n_items; it++) run_item(out, q, kv, s, seqs, bq, it, &seq, &first, w);
    }
    return 0;
}

int attention_paged_part(float *out, const float *q, const attn_paged_kv *kv, const attn_shape *s,
                         const attn_paged_seq *seqs, int n_seqs, float *work, size_t work_floats, int t, int nt) {
    const int max_nkv = check_seqs(kv, s, seqs, n_seqs);
    if (max_nkv < 0) return -1;
    const size_t per = paged_thread_floats(s, max_nkv);
    if (work_floats < per * (size_t)nt)
        return err_set(ERR_INTERNAL, "paged attention: work buffer of %zu floats, %zu needed for %d threads",
                       work_floats, per * (size_t)nt, nt);
    const int bq = paged_bq(s, max_nkv), n_items = paged_items(s, seqs, n_seqs, bq);
    int seq = 0, first = 0;
    for (int it = t; it < n_items; it += nt) run_item(out, q, kv, s, seqs, bq, it, &seq, &first, work + per * (size_t)t);
    return 0;
}

int attention_paged_forward_ref(float *out, const float *q, const attn_paged_kv *kv, const attn_shape *s,
                                const attn_paged_seq *seqs, int n_seqs) {
    const int max_nkv = check_seqs(kv, s, seqs, n_seqs), W = s->n_kv_heads * s->head_dim;
    if (max_nkv < 0) return -1;
    float *k = xmalloc(sizeof(float) * ((size_t)max_nkv * W + 1)), *v = xmalloc(sizeof(float) * ((size_t)max_nkv * W + 1));
    int rc = k && v ? 0 : -1;
    for (int i = 0; i < n_seqs && !rc; i++) {
        const attn_paged_seq *sq = &seqs[i];
        for (int p = 0; p < sq->nkv; p++) {
            size_t src = ((size_t)sq->blocks[p / kv->block_size] * kv->block_size + p % kv->block_size) * kv->ldkv;
            memcpy(k + (size_t)p * W, kv->k + src, sizeof(float) * W);
            memcpy(v + (size_t)p * W, kv->v + src, sizeof(float) * W);
        }
        attn_shape sh = *s;
        sh.ldk = sh.ldv = W;
        attn_seq one = {.q0 = sq->q0, .nq = sq->nq, .k0 = 0, .nkv = sq->nkv};
        rc = attention_forward_ref(out, NULL, q, k, v, &sh, &one, 1);
    }
    free(k);
    free(v);
    return rc;
}
