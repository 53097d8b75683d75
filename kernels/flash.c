/* flash.c: fused causal GQA attention for prefill and training (FlashAttention-2 on the CPU), the
 * fast path of attention_forward / attention_backward (attention.c) for head_dim a multiple of 16
 * on AVX-512 CPUs.
 *
 * Forward: an item is (sequence, kv head g, block of BQ queries); its rep = n_heads / n_kv_heads
 * query heads are packed as R = rep x BQ rows (rows r * nb + i) scaled by 1/sqrt(head_dim). Keys
 * go by blocks of BK = 64: S = Qs K^T (R x 64, a 4 KB-per-16-rows tile in L1), an online softmax
 * (running max m and sum l per row, the output rescaled when the max grows), O += P V. Scores and
 * probabilities never leave the cache; blocks past a tile's causal horizon are skipped.
 * Backward: an item is (sequence, kv head); key blocks outer, with their dK and dV accumulated in
 * the thread's buffer, query blocks inner: P = exp(S - lse) recomputed, dP = dO V^T,
 * dS = P (dP - rowsum(dO O)), dV += P^T dO, dK += dS^T Qs, dQ += scale dS K into a per-item dQ
 * buffer. Each output element belongs to one item and is summed in a fixed order, so results do
 * not depend on the thread count.
 *
 * Every product is one register-blocked micro-kernel (mm below): C[MR x 16 NV] += A B with A read
 * by broadcasts at any strides (so P^T and dS^T need no transpose) and B rows contiguous. */
#include <immintrin.h>
#include <math.h>
#include <omp.h>
#include <string.h>

#include "kernels/attention_internal.h"
#include "kernels/bf16.h"
#include "kernels/fastmath.h"
#include "kernels/threads.h"

#define F_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,fma")))
#define F_INLINE F_TARGET static inline __attribute__((always_inline))
#define B_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16,fma")))
#define B_INLINE B_TARGET static inline __attribute__((always_inline))
#define BK 64       /* keys per block */
#define ROWS 64     /* packed query rows per tile (rep x BQ) */

/* fastmath.h's fm_exp16 in AVX-512 intrinsics, operation for operation (so the same values): a
 * target function may not pass 64-byte vectors to a function compiled without AVX-512 (a build
 * without -march inlines nothing and the two ABIs differ). */
F_INLINE __m512 exp512(__m512 x) {
    const __m512 lo = _mm512_set1_ps(-87.3f), hi = _mm512_set1_ps(88.0f), magic = _mm512_set1_ps(FM_ROUND_MAGIC);
    x = _mm512_mask_mov_ps(x, _mm512_cmp_ps_mask(x, lo, _CMP_LT_OQ), lo);
    x = _mm512_mask_mov_ps(x, _mm512_cmp_ps_mask(x, hi, _CMP_GT_OQ), hi);
    const __m512 t = _mm512_add_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)), magic);
    const __m512 n = _mm512_sub_ps(t, magic);
    __m512 r = _mm512_sub_ps(x, _mm512_mul_ps(n, _mm512_set1_ps(0.693359375f)));
    r = _mm512_add_ps(r, _mm512_mul_ps(n, _mm512_set1_ps(2.12194440e-4f)));
    __m512 p = _mm512_set1_ps(1.9875691500e-4f);
    p = _mm512_add_ps(_mm512_mul_ps(p, r), _mm512_set1_ps(1.3981999507e-3f));
    p = _mm512_add_ps(_mm512_mul_ps(p, r), _mm512_set1_ps(8.3334519073e-3f));
    p = _mm512_add_ps(_mm512_mul_ps(p, r), _mm512_set1_ps(4.1665795894e-2f));
    p = _mm512_add_ps(_mm512_mul_ps(p, r), _mm512_set1_ps(1.6666665459e-1f));
    p = _mm512_add_ps(_mm512_mul_ps(p, r), _mm512_set1_ps(5.0000001201e-1f));
    p = _mm512_add_ps(_mm512_add_ps(_mm512_mul_ps(_mm512_mul_ps(p, r), r), r), _mm512_set1_ps(1.0f));
    const __m512i e = _mm512_slli_epi32(_mm512_add_epi32(_mm512_cvtps_epi32(n), _mm512_set1_epi32(127)), 23);
    return _mm512_mul_ps(p, _mm512_castsi512_ps(e));
}

/* ---- the micro-kernel ---- */

/* C[mr, 16 NV] = (acc ? C : 0) + A[mr, k] B[k, 16 NV]; A element (i, p) at a[i * ars + p * acs],
 * B row p at b + p * ldb. MRC rows are computed (rows past mr repeat row mr - 1 and are not
 * stored). */
F_INLINE void mk_strip(float *c, int ldc, const float *a, int ars, int acs, const float *b, int ldb, int k, int mr,
                       int acc_in, const int MRC, const int NV) {
    __m512 acc[16][4];
    const float *ar[16];
#pragma GCC unroll 16
    for (int i = 0; i < MRC; i++) {
        ar[i] = a + (size_t)(i < mr ? i : mr - 1) * ars;
#pragma GCC unroll 4
        for (int q = 0; q < NV; q++)
            acc[i][q] = acc_in && i < mr ? _mm512_loadu_ps(c + (size_t)i * ldc + 16 * q) : _mm512_setzero_ps();
    }
    for (int p = 0; p < k; p++) {
        __m512 bv[4];
#pragma GCC unroll 4
        for (int q = 0; q < NV; q++) bv[q] = _mm512_loadu_ps(b + (size_t)p * ldb + 16 * q);
#pragma GCC unroll 16
        for (int i = 0; i < MRC; i++) {
            const __m512 av = _mm512_set1_ps(ar[i][(size_t)p * acs]);
#pragma GCC unroll 4
            for (int q = 0; q < NV; q++) acc[i][q] = _mm512_fmadd_ps(av, bv[q], acc[i][q]);
        }
    }
#pragma GCC unroll 16
    for (int i = 0; i < MRC; i++) {
        if (i >= mr) break;
#pragma GCC unroll 4
        for (int q = 0; q < NV; q++) _mm512_storeu_ps(c + (size_t)i * ldc + 16 * q, acc[i][q]);
    }
}

/* Rows per strip for NV vectors of columns: about 24 accumulators. */
#define MR_OF(NV) ((NV) == 4 ? 6 : (NV) == 3 ? 8 : (NV) == 2 ? 12 : 16)

#define STRIPS(NV)                                                                                          \
    for (int i0 = 0; i0 < m; i0 += MR_OF(NV))                                                               \
        mk_strip(c + (size_t)i0 * ldc + c0, ldc, a + (size_t)i0 * ars, ars, acs, b + c0, ldb, k,            \
                 m - i0 < MR_OF(NV) ? m - i0 : MR_OF(NV), acc, MR_OF(NV), NV)

/* C[m, n] = (acc ? C : 0) + A[m, k] B[k, n], n a multiple of 16 (column chunks of 64). */
F_TARGET static void mm(float *c, int ldc, const float *a, int ars, int acs, const float *b, int ldb, int m, int n,
                        int k, int acc) {
    for (int c0 = 0; c0 < n; c0 += 64) {
        switch ((n - c0 >= 64 ? 64 : n - c0) / 16) {
        case 4: STRIPS(4); break;
        case 3: STRIPS(3); break;
        case 2: STRIPS(2); break;
        default: STRIPS(1); break;
        }
    }
}

/* ---- the bf16 micro-kernel (attn_shape.bf16) ---- */

/* mk_strip over pairs of k with VDPBF16PS: word (i, p) of A at a[i * ars + p * acs] holds
 * bf16 A(i, 2p) | bf16 A(i, 2p + 1) << 16, row pair p of B at b + p * ldb holds 16 NV words
 * bf16 B(2p, c) | bf16 B(2p + 1, c) << 16; products exact in fp32, fp32 sums. */
B_INLINE void mkb_strip(float *c, int ldc, const uint32_t *a, int ars, int acs, const uint32_t *b, int ldb, int kp,
                        int mr, int acc_in, const int MRC, const int NV) {
    __m512 acc[16][4];
    const uint32_t *ar[16];
#pragma GCC unroll 16
    for (int i = 0; i < MRC; i++) {
        ar[i] = a + (size_t)(i < mr ? i : mr - 1) * ars;
#pragma GCC unroll 4
        for (int q = 0; q < NV; q++)
            acc[i][q] = acc_in && i < mr ? _mm512_loadu_ps(c + (size_t)i * ldc + 16 * q) : _mm512_setzero_ps();
    }
    for (int p = 0; p < kp; p++) {
        __m512bh bv[4];
#pragma GCC unroll 4
        for (int q = 0; q < NV; q++) bv[q] = (__m512bh)_mm512_loadu_si512(b + (size_t)p * ldb + 16 * q);
#pragma GCC unroll 16
        for (int i = 0; i < MRC; i++) {
            const __m512bh av = (__m512bh)_mm512_set1_epi32((int)ar[i][(size_t)p * acs]);
#pragma GCC unroll 4
            for (int q = 0; q < NV; q++) acc[i][q] = _mm512_dpbf16_ps(acc[i][q], av, bv[q]);
        }
    }
#pragma GCC unroll 16
    for (int i = 0; i < MRC; i++) {
        if (i >= mr) break;
#pragma GCC unroll 4
        for (int q = 0; q < NV; q++) _mm512_storeu_ps(c + (size_t)i * ldc + 16 * q, acc[i][q]);
    }
}

#define STRIPS_B(NV)                                                                                        \
    for (int i0 = 0; i0 < m; i0 += MR_OF(NV))                                                               \
        mkb_strip(c + (size_t)i0 * ldc + c0, ldc, a + (size_t)i0 * ars, ars, acs, b + c0, ldb, kp,          \
                  m - i0 < MR_OF(NV) ? m - i0 : MR_OF(NV), acc, MR_OF(NV), NV)

/* mm in bf16: C[m, n] = (acc ? C : 0) + A B over kp pairs of k (layouts of mkb_strip). */
B_TARGET static void mmb(float *c, int ldc, const uint32_t *a, int ars, int acs, const uint32_t *b, int ldb, int m,
                         int n, int kp, int acc) {
    for (int c0 = 0; c0 < n; c0 += 64) {
        switch ((n - c0 >= 64 ? 64 : n - c0) / 16) {
        case 4: STRIPS_B(4); break;
        case 3: STRIPS_B(3); break;
        case 2: STRIPS_B(2); break;
        default: STRIPS_B(1); break;
        }
    }
}

/* 16 words bf16(e) | bf16(o) << 16 (rounded to nearest even, as bf16_from_f32). */
B_INLINE __m512i pair16(__m512 e, __m512 o) {
    const __m512i lo = _mm512_cvtepu16_epi32((__m256i)_mm512_cvtneps_pbh(e));
    return _mm512_or_si512(lo, _mm512_slli_epi32(_mm512_cvtepu16_epi32((__m256i)_mm512_cvtneps_pbh(o)), 16));
}

/* dst [rows, n] in bf16 (n a multiple of 16) from src rows at stride ld: as words, pairs along
 * the row (the A operand of products that reduce over the row). */
B_TARGET static void cvt_rows(uint32_t *dst, const float *src, int ld, int rows, int n) {
    for (int j = 0; j < rows; j++)
        for (int e = 0; e < n; e += 16)
            _mm256_storeu_si256((__m256i *)(dst + ((size_t)j * n + e) / 2),
                                (__m256i)_mm512_cvtneps_pbh(_mm512_loadu_ps(src + (size_t)j * ld + e)));
}

/* dst [ceil(rows / 2), n] words: pairs of rows of src (stride ld, n a multiple of 16), word
 * (p, c) = bf16 src(2p, c) | bf16 src(2p + 1, c) << 16, a missing last row zero (the B operand of
 * products that reduce over rows). */
B_TARGET static void cvt_row_pairs(uint32_t *dst, const float *src, int ld, int rows, int n) {
    for (int p = 0; 2 * p < rows; p++) {
        const float *r0 = src + (size_t)(2 * p) * ld, *r1 = r0 + ld;
        const int two = 2 * p + 1 < rows;
        for (int c = 0; c < n; c += 16)
            _mm512_storeu_si512(dst + (size_t)p * n + c,
                                pair16(_mm512_loadu_ps(r0 + c), two ? _mm512_loadu_ps(r1 + c) : _mm512_setzero_ps()));
    }
}

/* ---- packing and the column softmax ---- */

/* dst [D, Rp]: column r * nb + i = src row i0 + i, head g * rep + r, times `scale` (the transposed
 * tile of queries or of output gradients); columns past rep * nb are zero. */
static void pack_heads_t(float *dst, int Rp, const float *src, int ld, int i0, int nb, int g, int rep, int D,
                         float scale) {
    memset(dst, 0, sizeof(float) * (size_t)D * Rp);
    for (int r = 0; r < rep; r++)
        for (int i = 0; i < nb; i++) {
            const float *s = src + (size_t)(i0 + i) * ld + (size_t)(g * rep + r) * D;
            float *d = dst + (size_t)r * nb + i;
            for (int e = 0; e < D; e++) d[(size_t)e * Rp] = s[e] * scale;
        }
}

int flash_supported(const attn_shape *s) {
    static int avx = -1;
    if (avx < 0) {
        __builtin_cpu_init();
        avx = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl");
    }
    return avx && s->head_dim % 16 == 0 && s->head_dim <= 256 && s->n_heads / s->n_kv_heads <= ROWS;
}

/* Queries per tile, and the tile's padded column count. */
static int tile_queries(const attn_shape *s) {
    const int rep = s->n_heads / s->n_kv_heads, bq = ROWS / rep;
    return bq < 1 ? 1 : bq;
}
static int tile_cols(const attn_shape *s) { return (s->n_heads / s->n_kv_heads * tile_queries(s) + 15) & ~15; }

size_t flash_work_floats(const attn_shape *s, int max_nkv) {
    const size_t D = (size_t)s->head_dim, Rp = (size_t)tile_cols(s), bq = (size_t)tile_queries(s);
    const size_t tiles = ((size_t)max_nkv + bq - 1) / bq, rep = (size_t)(s->n_heads / s->n_kv_heads);
    const size_t fwd = D * Rp + Rp * D + BK * Rp + 4 * Rp + (D + BK) * Rp / 2 + 2 * (size_t)max_nkv * D;
    const size_t bwd = 2 * tiles * (D * Rp + 2 * Rp) + 2 * BK * Rp + 2 * BK * D + rep * (size_t)max_nkv * D +
                       tiles * D * Rp + 2 * tiles * rep * ((bq + 1) / 2) * D + 3 * BK * D / 2 + 3 * BK * Rp / 2;
    return ((fwd > bwd ? fwd : bwd) + 64 + 15) & ~(size_t)15;
}

/* Keys of the block starting at j0 that column r of the tile (query i0 + r % nb, at position
 * off + i0 + r % nb) sees, 0 .. bk; 0 for the padding columns. */
static void block_limits(int *lim, int Rp, int R, int nb, int off, int i0, int j0, int bk) {
    for (int r = 0; r < Rp; r++) {
        int n = r < R ? off + i0 + r % nb + 1 - j0 : 0;
        lim[r] = n < 0 ? 0 : n > bk ? bk : n;
    }
}

/* ---- forward ---- */

/* Queries i0 .. i0+nb-1 of one sequence, kv head g. q, out, lse at the sequence's first query row;
 * kh, vh: the head's keys and values, contiguous [nkv, D] (copied once per item: rows of the cache
 * or of q|k|v are 4 KB apart and would share L1 sets). The scores are kept transposed,
 * S^T [keys, query columns], so that the softmax over keys runs down the columns, 16 query rows
 * per vector. */
F_TARGET static void fwd_tile(float *out, float *lse, const float *q, const float *kh, const float *vh,
                              const attn_shape *s, int nq, int nkv, int g, int i0, int nb, float *w, int b16) {
    const int rep = s->n_heads / s->n_kv_heads, D = s->head_dim, R = rep * nb, Rp = (R + 15) & ~15;
    const float scale = 1.0f / sqrtf((float)D);
    float *qt = w, *o = qt + (size_t)D * Rp, *st = o + (size_t)Rp * D, *mx = st + (size_t)BK * Rp;
    float *l = mx + Rp, *alpha = l + Rp;
    int *lim = (int *)(alpha + Rp);
    /* bf16: the tile's queries as pairs along D, P as pairs along keys; kh, vh hold the item's keys
     * as bf16 rows and its values as pairs of rows (flash_forward) */
    uint32_t *qtb = (uint32_t *)(lim + Rp), *pw = qtb + (size_t)D * Rp / 2;
    const uint32_t *khb = (const uint32_t *)kh, *vhb = (const uint32_t *)vh;
    pack_heads_t(qt, Rp, q, s->ldq, i0, nb, g, rep, D, scale);
    if (b16) cvt_row_pairs(qtb, qt, Rp, D, Rp);
    memset(o, 0, sizeof(float) * (size_t)R * D);
    for (int r = 0; r < Rp; r++) mx[r] = -INFINITY, l[r] = 0;
    const int off = nkv - nq, kend = off + i0 + nb; /* the tile's last query sees keys < kend */
    const __m512 ninf = _mm512_set1_ps(-INFINITY);
    for (int j0 = 0; j0 < kend; j0 += BK) {
        const int bk = kend - j0 < BK ? kend - j0 : BK;
        if (b16) mmb(st, Rp, khb + (size_t)j0 * D / 2, D / 2, 1, qtb, Rp, bk, Rp, D / 2, 0); /* S^T = K Qs^T */
        else mm(st, Rp, kh + (size_t)j0 * D, D, 1, qt, Rp, bk, Rp, D, 0);
        block_limits(lim, Rp, R, nb, off, i0, j0, bk);
        for (int c = 0; c < Rp; c += 16) {
            const __m512i lv = _mm512_loadu_si512(lim + c);
            const __m512 m_old = _mm512_loadu_ps(mx + c);
            __m512 bm = ninf;
            for (int j = 0; j < bk; j++) {
                const __mmask16 vis = _mm512_cmpgt_epi32_mask(lv, _mm512_set1_epi32(j));
                bm = _mm512_mask_max_ps(bm, vis, bm, _mm512_loadu_ps(st + (size_t)j * Rp + c));
            }
            const __m512 m_new = _mm512_max_ps(m_old, bm);
            const __mmask16 live = _mm512_cmp_ps_mask(m_new, ninf, _CMP_NEQ_OQ); /* columns with a visible key */
            const __m512 a = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(m_old, ninf, _CMP_NEQ_OQ) & live,
                                                 exp512(_mm512_sub_ps(m_old, m_new)));
            __m512 sum = _mm512_setzero_ps();
            for (int j = 0; j < bk; j++) {
                const __mmask16 vis = _mm512_cmpgt_epi32_mask(lv, _mm512_set1_epi32(j)) & live;
                float *row = st + (size_t)j * Rp + c;
                const __m512 p = _mm512_maskz_mov_ps(vis, exp512(_mm512_sub_ps(_mm512_loadu_ps(row), m_new)));
                _mm512_storeu_ps(row, p);
                sum = _mm512_add_ps(sum, p);
            }
            _mm512_storeu_ps(l + c, _mm512_fmadd_ps(_mm512_loadu_ps(l + c), a, sum));
            _mm512_storeu_ps(alpha + c, a);
            _mm512_storeu_ps(mx + c, m_new);
        }
        for (int r = 0; r < R; r++)
            if (alpha[r] != 1.0f) fm_row_scale(o + (size_t)r * D, D, alpha[r]);
        /* O += P V: P[r, j] = st[j * Rp + r] */
        if (b16) {
            cvt_row_pairs(pw, st, Rp, bk, Rp);
            mmb(o, D, pw, 1, Rp, vhb + (size_t)j0 / 2 * D, D, R, D, (bk + 1) / 2, 1);
        } else {
            mm(o, D, st, 1, Rp, vh + (size_t)j0 * D, D, R, D, bk, 1);
        }
    }
    for (int r = 0; r < R; r++) {
        const int h = r / nb, i = r % nb;
        fm_row_scale(o + (size_t)r * D, D, 1.0f / l[r]);
        memcpy(out + (size_t)(i0 + i) * s->ldo + (size_t)(g * rep + h) * D, o + (size_t)r * D, sizeof(float) * D);
        if (lse) lse[(size_t)(i0 + i) * s->n_heads + g * rep + h] = mx[r] + logf(l[r]);
    }
}

/* Items of sequence a: its kv heads times its groups of `grp` query tiles. */
static long seq_items(const attn_seq *a, int H, int bq, int grp) {
    const int tiles = (a->nq + bq - 1) / bq;
    return (long)H * ((tiles + grp - 1) / grp);
}

int flash_forward(float *out, float *lse, const float *q, const float *k, const float *v, const attn_shape *s,
                  const attn_seq *seqs, int n_seqs, float *work, size_t work_floats, int max_nkv) {
    const int H = s->n_kv_heads, bq = tile_queries(s), D = s->head_dim, b16 = s->bf16 && bf16_available();
    const size_t per = flash_work_floats(s, max_nkv);
    long n_tiles = 0;
    double macs = 0;
    for (int i = 0; i < n_seqs; i++) {
        n_tiles += (long)H * ((seqs[i].nq + bq - 1) / bq);
        macs += 2.0 * seqs[i].nq * (seqs[i].nkv - seqs[i].nq / 2.0) * D * s->n_heads;
    }
    int T = kernels_threads_for(macs, THR_ATTN_MACS);
    if ((size_t)T > work_floats / per) T = (int)(work_floats / per);
    if (T > n_tiles) T = (int)n_tiles;
    if (T < 1) T = 1;
    /* items: (sequence, kv head, group of query tiles), about 4 per thread (the keys and values an
     * item reads are copied once per item); numbered through the sequences in order */
    const int grp = n_tiles / (4 * T) > 1 ? (int)(n_tiles / (4 * T)) : 1;
    long n_items = 0;
    for (int i = 0; i < n_seqs; i++) n_items += seq_items(&seqs[i], H, bq, grp);
#pragma omp parallel num_threads(T) if (T > 1)
    {
        float *w = work + per * (size_t)omp_get_thread_num(), *kh = w + per - 2 * (size_t)max_nkv * D - 16;
        float *vh = kh + (size_t)max_nkv * D;
        int sq = 0;
        long base = 0; /* items of the sequences before sq */
#pragma omp for schedule(dynamic, 1)
        for (long it = 0; it < n_items; it++) {
            while (it < base) sq--, base -= seq_items(&seqs[sq], H, bq, grp);
            while (it >= base + seq_items(&seqs[sq], H, bq, grp)) base += seq_items(&seqs[sq], H, bq, grp), sq++;
            const attn_seq *a = &seqs[sq];
            const long local = it - base;
            const int g = (int)(local % H), t0 = (int)(local / H) * grp, tiles = (a->nq + bq - 1) / bq;
            const int t1 = t0 + grp < tiles ? t0 + grp : tiles;
            const int last = t1 * bq < a->nq ? t1 * bq : a->nq, kend = a->nkv - a->nq + last; /* keys the item reads */
            const float *ks = k + (size_t)a->k0 * s->ldk + (size_t)g * D, *vs = v + (size_t)a->k0 * s->ldv + (size_t)g * D;
            if (b16) { /* keys as bf16 rows, values as pairs of rows (the last one zero when kend is odd) */
                cvt_rows((uint32_t *)kh, ks, s->ldk, kend, D);
                cvt_row_pairs((uint32_t *)vh, vs, s->ldv, kend, D);
            } else {
                for (int j = 0; j < kend; j++) {
                    memcpy(kh + (size_t)j * D, ks + (size_t)j * s->ldk, sizeof(float) * D);
                    memcpy(vh + (size_t)j * D, vs + (size_t)j * s->ldv, sizeof(float) * D);
                }
            }
            for (int t = t0; t < t1; t++) {
                const int i0 = t * bq, nb = a->nq - i0 < bq ? a->nq - i0 : bq;
                fwd_tile(out + (size_t)a->q0 * s->ldo, lse ? lse + (size_t)a->q0 * s->n_heads : NULL,
                         q + (size_t)a->q0 * s->ldq, kh, vh, s, a->nq, a->nkv, g, i0, nb, w, b16);
            }
        }
    }
    return 0;
}

/* ---- backward ---- */

/* One sequence, kv head g (pointers at the sequence's first rows). The transposed tiles of the
 * scaled queries and of the output gradients, with each column's lse and rowsum(dO O), are
 * packed once; then key blocks (outer) against query tiles (inner), transposed as in the forward:
 * P^T = exp(S^T - lse), dP^T = V dO^T, dS^T = scale P^T (dP^T - rowsum(dO O)). */
F_TARGET static void bwd_item(float *dq, float *dk, float *dv, const float *dout, const float *out, const float *lse,
                              const float *q, const float *k, const float *v, const attn_shape *s, int nq, int nkv,
                              int g, float *w, int b16) {
    const int rep = s->n_heads / s->n_kv_heads, D = s->head_dim, bq = tile_queries(s), Rp = tile_cols(s);
    const int tiles = (nq + bq - 1) / bq, off = nkv - nq;
    const float scale = 1.0f / sqrtf((float)D);
    float *qt = w, *dot = qt + (size_t)tiles * D * Rp, *lsev = dot + (size_t)tiles * D * Rp;
    float *div = lsev + (size_t)tiles * Rp, *pt = div + (size_t)tiles * Rp, *dst = pt + (size_t)BK * Rp;
    float *dka = dst + (size_t)BK * Rp, *dva = dka + (size_t)BK * D, *dqp = dva + (size_t)BK * D; /* dQ rows r nq + i */
    int lim[ROWS + 16];
    /* bf16 (b16): the tiles of queries and output gradients as pairs along D; per tile and head the
     * query and output-gradient rows as pairs of rows; per key block the keys and values as bf16
     * rows and the keys as pairs of rows; per block and tile P^T and dS^T as bf16 rows (pairs along
     * queries) and dS as pairs along keys */
    const int hb = (bq + 1) / 2;
    uint32_t *qtb = (uint32_t *)(dqp + (size_t)rep * nq * D), *dotb = qtb + (size_t)tiles * D * Rp / 2;
    uint32_t *qpr = dotb + (size_t)tiles * D * Rp / 2, *dopr = qpr + (size_t)tiles * rep * hb * D;
    uint32_t *khb = dopr + (size_t)tiles * rep * hb * D, *vhb = khb + (size_t)BK * D / 2, *kpr = vhb + (size_t)BK * D / 2;
    uint32_t *ptb = kpr + (size_t)BK / 2 * D, *dsb = ptb + (size_t)BK * Rp / 2, *dsw = dsb + (size_t)BK * Rp / 2;
    for (int t = 0; t < tiles; t++) {
        const int i0 = t * bq, nb = nq - i0 < bq ? nq - i0 : bq;
        pack_heads_t(qt + (size_t)t * D * Rp, Rp, q, s->ldq, i0, nb, g, rep, D, scale);
        pack_heads_t(dot + (size_t)t * D * Rp, Rp, dout, s->ldo, i0, nb, g, rep, D, 1.0f);
        if (b16) {
            cvt_row_pairs(qtb + (size_t)t * D * Rp / 2, qt + (size_t)t * D * Rp, Rp, D, Rp);
            cvt_row_pairs(dotb + (size_t)t * D * Rp / 2, dot + (size_t)t * D * Rp, Rp, D, Rp);
            for (int r = 0; r < rep; r++) {
                const size_t col = (size_t)(g * rep + r) * D, at = ((size_t)t * rep + r) * hb * D;
                cvt_row_pairs(qpr + at, q + (size_t)i0 * s->ldq + col, s->ldq, nb, D);
                cvt_row_pairs(dopr + at, dout + (size_t)i0 * s->ldo + col, s->ldo, nb, D);
            }
        }
        for (int c = 0; c < Rp; c++) {
            float lv = 0, dv_ = 0;
            if (c < rep * nb) {
                const int r = c / nb, i = i0 + c % nb;
                const size_t col = (size_t)(g * rep + r) * D;
                const float *d = dout + (size_t)i * s->ldo + col, *o = out + (size_t)i * s->ldo + col;
                for (int e = 0; e < D; e++) dv_ += d[e] * o[e];
                lv = lse[(size_t)i * s->n_heads + g * rep + r];
            }
            lsev[(size_t)t * Rp + c] = lv;
            div[(size_t)t * Rp + c] = dv_;
        }
    }
    memset(dqp, 0, sizeof(float) * (size_t)rep * nq * D);
    const __m512 vscale = _mm512_set1_ps(scale);
    for (int j0 = 0; j0 < nkv; j0 += BK) {
        const int bk = nkv - j0 < BK ? nkv - j0 : BK;
        const float *kb = k + (size_t)j0 * s->ldk + (size_t)g * D, *vb = v + (size_t)j0 * s->ldv + (size_t)g * D;
        memset(dka, 0, sizeof(float) * (size_t)BK * D);
        memset(dva, 0, sizeof(float) * (size_t)BK * D);
        if (b16) {
            cvt_rows(khb, kb, s->ldk, bk, D);
            cvt_rows(vhb, vb, s->ldv, bk, D);
            cvt_row_pairs(kpr, kb, s->ldk, bk, D);
        }
        const int first = j0 - off > 0 ? j0 - off : 0; /* the first query that sees key j0 */
        for (int t = first / bq; t < tiles; t++) {
            const int i0 = t * bq, nb = nq - i0 < bq ? nq - i0 : bq, R = rep * nb;
            const float *qtt = qt + (size_t)t * D * Rp, *dott = dot + (size_t)t * D * Rp;
            if (b16) {
                mmb(pt, Rp, khb, D / 2, 1, qtb + (size_t)t * D * Rp / 2, Rp, bk, Rp, D / 2, 0);
                mmb(dst, Rp, vhb, D / 2, 1, dotb + (size_t)t * D * Rp / 2, Rp, bk, Rp, D / 2, 0);
            } else {
                mm(pt, Rp, kb, s->ldk, 1, qtt, Rp, bk, Rp, D, 0);  /* S^T = K Qs^T */
                mm(dst, Rp, vb, s->ldv, 1, dott, Rp, bk, Rp, D, 0); /* dP^T = V dO^T */
            }
            block_limits(lim, Rp, R, nb, off, i0, j0, bk);
            for (int c = 0; c < Rp; c += 16) {
                const __m512i lv = _mm512_loadu_si512(lim + c);
                const __m512 l = _mm512_loadu_ps(lsev + (size_t)t * Rp + c), d = _mm512_loadu_ps(div + (size_t)t * Rp + c);
                for (int j = 0; j < bk; j++) {
                    const __mmask16 vis = _mm512_cmpgt_epi32_mask(lv, _mm512_set1_epi32(j));
                    float *pr = pt + (size_t)j * Rp + c, *dr = dst + (size_t)j * Rp + c;
                    const __m512 p = _mm512_maskz_mov_ps(vis, exp512(_mm512_sub_ps(_mm512_loadu_ps(pr), l)));
                    _mm512_storeu_ps(pr, p);
                    _mm512_storeu_ps(dr, _mm512_mul_ps(_mm512_mul_ps(p, _mm512_sub_ps(_mm512_loadu_ps(dr), d)), vscale));
                }
            }
            if (b16) {
                cvt_rows(ptb, pt, Rp, bk, Rp);
                cvt_rows(dsb, dst, Rp, bk, Rp);
                cvt_row_pairs(dsw, dst, Rp, bk, Rp);
            }
            for (int r = 0; r < rep; r++) {
                const size_t col = (size_t)(g * rep + r) * D, at = ((size_t)t * rep + r) * hb * D;
                /* dV += P^T dO and dK += dS^T Q over the nb queries of head r (rows of memory); in bf16
                 * the pairs of queries of head r start at word r nb / 2 of a row of P^T: a tile of an
                 * odd number of queries (the last of a sequence) takes the fp32 products here */
                if (b16 && nb % 2 == 0) {
                    mmb(dva, D, ptb + (size_t)r * nb / 2, Rp / 2, 1, dopr + at, D, bk, D, nb / 2, 1);
                    mmb(dka, D, dsb + (size_t)r * nb / 2, Rp / 2, 1, qpr + at, D, bk, D, nb / 2, 1);
                } else {
                    mm(dva, D, pt + (size_t)r * nb, Rp, 1, dout + (size_t)i0 * s->ldo + col, s->ldo, bk, D, nb, 1);
                    mm(dka, D, dst + (size_t)r * nb, Rp, 1, q + (size_t)i0 * s->ldq + col, s->ldq, bk, D, nb, 1);
                }
                /* dQ += dS K: dS[i, j] = dst[j * Rp + r nb + i] */
                if (b16) mmb(dqp + ((size_t)r * nq + i0) * D, D, dsw + (size_t)r * nb, 1, Rp, kpr, D, nb, D, (bk + 1) / 2, 1);
                else mm(dqp + ((size_t)r * nq + i0) * D, D, dst + (size_t)r * nb, 1, Rp, kb, s->ldk, nb, D, bk, 1);
            }
        }
        for (int j = 0; j < bk; j++) {
            memcpy(dk + (size_t)(j0 + j) * s->ldk + (size_t)g * D, dka + (size_t)j * D, sizeof(float) * D);
            memcpy(dv + (size_t)(j0 + j) * s->ldv + (size_t)g * D, dva + (size_t)j * D, sizeof(float) * D);
        }
    }
    for (int r = 0; r < rep; r++)
        for (int i = 0; i < nq; i++)
            memcpy(dq + (size_t)i * s->ldq + (size_t)(g * rep + r) * D, dqp + ((size_t)r * nq + i) * D, sizeof(float) * D);
}

int flash_backward(float *dq, float *dk, float *dv, const float *dout, const float *out, const float *lse,
                   const float *q, const float *k, const float *v, const attn_shape *s, const attn_seq *seqs,
                   int n_seqs, float *work, size_t work_floats, int max_nkv) {
    const int H = s->n_kv_heads, items = n_seqs * H, b16 = s->bf16 && bf16_available();
    const size_t per = flash_work_floats(s, max_nkv);
    double macs = 0;
    for (int i = 0; i < n_seqs; i++) macs += 5.0 * seqs[i].nq * (seqs[i].nkv - seqs[i].nq / 2.0) * s->head_dim * s->n_heads;
    int T = kernels_threads_for(macs, THR_ATTN_MACS);
    if ((size_t)T > work_floats / per) T = (int)(work_floats / per);
    if (T > items) T = items;
    if (T < 1) T = 1;
#pragma omp parallel num_threads(T) if (T > 1)
    {
        float *w = work + per * (size_t)omp_get_thread_num();
#pragma omp for schedule(dynamic, 1)
        for (int it = 0; it < items; it++) {
            const attn_seq *a = &seqs[it / H];
            const size_t qo = (size_t)a->q0, ko = (size_t)a->k0;
            bwd_item(dq + qo * s->ldq, dk + ko * s->ldk, dv + ko * s->ldv, dout + qo * s->ldo, out + qo * s->ldo,
                     lse + qo * s->n_heads, q + qo * s->ldq, k + ko * s->ldk, v + ko * s->ldv, s, a->nq, a->nkv,
                     it % H, w, b16);
        }
    }
    return 0;
}
