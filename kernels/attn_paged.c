/* attn_paged.c: attention over a paged KV cache (see attn_paged.h). The tiling is attention.c's:
 * a prefill item is one kv head g of one sequence; its queries go in tiles of bq consecutive
 * positions times the rep = n_heads / n_kv_heads query heads that read head g, packed as rows
 * [r * bq + i]. It first gathers its keys and values of head g from their blocks into contiguous
 * [nkv, D] rows of the thread's buffer (2 nkv D floats copied, against 4 nq rep nkv D flops of
 * products), then each tile is two sgemm calls as in attention.c; sgemm calls per block
 * (n = block_size) would cost more in call overhead than the copy. A decode sequence (fewer than
 * PAGED_GEMM_ROWS packed rows) uses vector loops straight over the blocks: an sgemm of 1 to 7 rows
 * is slower than a dot product, and decode attention is bound by reading keys and values once; its
 * keys are split into ranges, each an item, whose partial softmaxes are merged (below). */
#include "kernels/attn_paged.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "kernels/fastmath.h"
#include "kernels/matmul.h"
#include "kernels/qlinear_internal.h"
#include "kernels/threads.h"

#if defined(__F16C__) || defined(__AVX512F__)
#include <immintrin.h>
#endif

#define PAGED_TILE_ROWS 128         /* packed query rows per tile */
#define PAGED_TILE_FLOATS (1 << 21) /* cap of one [rows x nkv] score tile (8 MB) at long contexts */
#define PAGED_GEMM_ROWS 8           /* tiles of fewer rows use vector loops */
#define PAGED_F16_ROWS 16           /* keys widened at a time from an fp16 cache (decode) */

static int paged_bq(const attn_shape *s, int max_nkv) {
    int rep = s->n_heads / s->n_kv_heads, bq = PAGED_TILE_ROWS / rep;
    long cap = PAGED_TILE_FLOATS / ((long)rep * (max_nkv > 0 ? max_nkv : 1));
    if (bq > cap) bq = (int)cap;
    return bq < 1 ? 1 : bq;
}

/* Per thread: a prefill tile's packed queries and outputs, scores and row sums, the gathered keys
 * and values; or a decode item's (fewer than PAGED_GEMM_ROWS rows: queries, outputs, scores, maxima
 * and sums). */
static size_t paged_thread_floats(const attn_shape *s, int max_nkv) {
    size_t rows = (size_t)(s->n_heads / s->n_kv_heads) * paged_bq(s, max_nkv), nkv = (size_t)(max_nkv > 0 ? max_nkv : 1);
    const size_t D = (size_t)s->head_dim, R = PAGED_GEMM_ROWS;
    const size_t pre = rows * D * 2 + rows * nkv + rows + 16 + 2 * nkv * D;
    const size_t dec = R * D * 2 + R * nkv + 2 * R + 16 + PAGED_F16_ROWS * D;
    return pre > dec ? pre : dec;
}

/* ---- fp16 caches ---- */

static uint16_t float_to_half(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    const uint16_t sign = (uint16_t)((x >> 16) & 0x8000);
    const uint32_t ax = x & 0x7FFFFFFFu;
    if (ax > 0x7F800000u) return sign | 0x7E00 | (uint16_t)((ax >> 13) & 0x3FF); /* NaN, quiet */
    if (ax >= 0x477FF000u) return sign | 0x7C00;                                 /* rounds past 65504 */
    if (ax >= 0x38800000u) /* normal: round to nearest even at bit 13, rebias 127 -> 15 */
        return sign | (uint16_t)((ax + 0x0FFFu + ((ax >> 13) & 1) - 0x38000000u) >> 13);
    float a;
    memcpy(&a, &ax, 4);
    return sign | (uint16_t)nearbyintf(a * 0x1p24f); /* subnormal or zero: units of 2^-24, exact scaling */
}

void attn_f16_to_f32(float *dst, const uint16_t *src, int n) {
    int i = 0;
#if defined(__AVX512F__)
    for (; i + 16 <= n; i += 16) _mm512_storeu_ps(dst + i, _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(src + i))));
#elif defined(__F16C__)
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(src + i))));
#endif
    for (; i < n; i++) dst[i] = ql_half(src[i]); /* exact (qlinear_internal.h) */
}

void attn_f32_to_f16(uint16_t *dst, const float *src, int n) {
    int i = 0;
#if defined(__F16C__)
    for (; i + 8 <= n; i += 8)
        _mm_storeu_si128((__m128i *)(dst + i),
                         _mm256_cvtps_ph(_mm256_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
#endif
    for (; i < n; i++) dst[i] = float_to_half(src[i]);
}

/* Keys (p32/p16 = the pool's k/k16) or values of kv head g at positions j0 .. j0+cnt-1 of one block as
 * fp32 rows: the pool's own (*ld = ldkv) or, from an fp16 pool, widened into buf [cnt, D] (*ld = D). */
static const float *kv_rows(const float *p32, const uint16_t *p16, const attn_paged_kv *kv, const attn_paged_seq *sq,
                            int g, int D, int j0, int cnt, float *buf, int *ld) {
    const int B = kv->block_size;
    const size_t off = ((size_t)sq->blocks[j0 / B] * B + j0 % B) * kv->ldkv + (size_t)g * D;
    if (!p16) {
        *ld = kv->ldkv;
        return p32 + off;
    }
    for (int r = 0; r < cnt; r++) attn_f16_to_f32(buf + (size_t)r * D, p16 + off + (size_t)r * kv->ldkv, D);
    *ld = D;
    return buf;
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

/* A decode sequence (its tiles stay under PAGED_GEMM_ROWS rows: vector loops) splits its keys into
 * ranges of PAGED_SPLIT_KEYS: one item per (kv head, key range) takes the rep query heads of that
 * kv head, so each key and value is read from memory once (by one thread), and 2 threads share a
 * 512-key step evenly (24 items) instead of both reading every kv head. The ranges' partial results
 * (each row's max, sum of exponentials and unnormalized output) are merged afterwards in range
 * order; a sequence of one range writes its output directly. The split depends on nkv only, never
 * on the thread count, so neither does any value. A prefill sequence has one item per kv head. */
#define PAGED_SPLIT_KEYS 64

static int is_decode(const attn_shape *s, const attn_paged_seq *sq) {
    return (s->n_heads / s->n_kv_heads) * sq->nq < PAGED_GEMM_ROWS;
}

/* Key ranges of a decode sequence (1 for a prefill one). */
static int paged_ranges(const attn_shape *s, const attn_paged_seq *sq) {
    if (!is_decode(s, sq) || sq->nkv <= PAGED_SPLIT_KEYS) return 1;
    return (sq->nkv + PAGED_SPLIT_KEYS - 1) / PAGED_SPLIT_KEYS;
}

/* Floats of the partial results of sequence sq (0 unless it is a decode sequence of several
 * ranges): per range and packed row, {max, sum, output[D]}. */
static size_t seq_partial_floats(const attn_shape *s, const attn_paged_seq *sq) {
    const int S = paged_ranges(s, sq);
    return S > 1 ? (size_t)S * s->n_heads * sq->nq * (s->head_dim + 2) : 0;
}

static int max_nkv_of(const attn_paged_seq *seqs, int n_seqs) {
    int mx = 0;
    for (int i = 0; i < n_seqs; i++) mx = seqs[i].nkv > mx ? seqs[i].nkv : mx;
    return mx;
}

static size_t partial_floats(const attn_shape *s, const attn_paged_seq *seqs, int n_seqs) {
    size_t n = 0;
    for (int i = 0; i < n_seqs; i++) n += seq_partial_floats(s, &seqs[i]);
    return (n + 15) & ~(size_t)15;
}

size_t attention_paged_work_floats(const attn_shape *s, const attn_paged_seq *seqs, int n_seqs) {
    return partial_floats(s, seqs, n_seqs) + paged_thread_floats(s, max_nkv_of(seqs, n_seqs)) * (size_t)kernels_threads();
}

/* sc[m, j0 + r] = scale * q_m . k_r for the cnt keys of one block (vector loops). With AVX-512 and
 * D a multiple of 16: each key's D numbers are loaded once for all R rows, each dot product is
 * D / 16 vector FMAs and one tree sum of the 16 lanes (_mm512_reduce_add_ps; a plain reduction
 * loop compiles to 16 dependent scalar adds per key, which made decode attention cost as much as
 * every linear of the layer). */
#if defined(__AVX512F__)
/* The 16 lane sums of a[0..15] as one vector, lane j = sum of a[j]: pairs of vectors added half
 * against half (128-bit blocks, then lanes) four times, about 2 shuffles a key instead of a tree of
 * its own per key; the last permutation puts the keys in order. */
static inline __attribute__((always_inline)) __m512 lane_sums16(const __m512 *a) {
    __m512 b[8], c[4], d[2];
    for (int i = 0; i < 8; i++)
        b[i] = _mm512_add_ps(_mm512_shuffle_f32x4(a[i], a[i + 8], 0x44), _mm512_shuffle_f32x4(a[i], a[i + 8], 0xEE));
    for (int i = 0; i < 4; i++) /* blocks: keys i, i + 8, i + 4, i + 12 */
        c[i] = _mm512_add_ps(_mm512_shuffle_f32x4(b[i], b[i + 4], 0x88), _mm512_shuffle_f32x4(b[i], b[i + 4], 0xDD));
    for (int i = 0; i < 2; i++)
        d[i] = _mm512_add_ps(_mm512_shuffle_ps(c[i], c[i + 2], 0x44), _mm512_shuffle_ps(c[i], c[i + 2], 0xEE));
    const __m512 e = _mm512_add_ps(_mm512_shuffle_ps(d[0], d[1], 0x88), _mm512_shuffle_ps(d[0], d[1], 0xDD));
    /* lane 4k + j of e holds key (k = 0, 2, 1, 3 -> 0, 8, 4, 12) + (j = 0, 1, 2, 3 -> 0, 2, 1, 3) */
    return _mm512_permutexvar_ps(_mm512_setr_epi32(0, 2, 1, 3, 8, 10, 9, 11, 4, 6, 5, 7, 12, 14, 13, 15), e);
}
#endif

static void scores_small(float *sc, int ldsc, const float *qp, int R, const float *kb, int ldkv, int cnt, int D,
                         float scale) {
#if defined(__AVX512F__)
    if (D == 64 && cnt >= 16) { /* 16 keys at a time, their sums transposed together (lane_sums16) */
        for (int m = 0; m < R; m++) {
            const float *qm = qp + (size_t)m * 64;
            const __m512 q0 = _mm512_loadu_ps(qm), q1 = _mm512_loadu_ps(qm + 16), q2 = _mm512_loadu_ps(qm + 32),
                         q3 = _mm512_loadu_ps(qm + 48);
            int r = 0;
            for (; r + 16 <= cnt; r += 16) {
                __m512 a[16];
                _Pragma("GCC unroll 16") for (int j = 0; j < 16; j++) {
                    const float *kr = kb + (size_t)(r + j) * ldkv;
                    a[j] = _mm512_fmadd_ps(_mm512_loadu_ps(kr + 48), q3,
                                           _mm512_fmadd_ps(_mm512_loadu_ps(kr + 32), q2,
                                                           _mm512_fmadd_ps(_mm512_loadu_ps(kr + 16), q1,
                                                                           _mm512_mul_ps(_mm512_loadu_ps(kr), q0))));
                }
                _mm512_storeu_ps(sc + (size_t)m * ldsc + r, _mm512_mul_ps(lane_sums16(a), _mm512_set1_ps(scale)));
            }
            for (; r < cnt; r++) {
                const float *kr = kb + (size_t)r * ldkv;
                const __m512 acc = _mm512_fmadd_ps(_mm512_loadu_ps(kr + 48), q3,
                                                   _mm512_fmadd_ps(_mm512_loadu_ps(kr + 32), q2,
                                                                   _mm512_fmadd_ps(_mm512_loadu_ps(kr + 16), q1,
                                                                                   _mm512_mul_ps(_mm512_loadu_ps(kr), q0))));
                sc[(size_t)m * ldsc + r] = _mm512_reduce_add_ps(acc) * scale;
            }
        }
        return;
    }
    if (D % 16 == 0) {
        for (int r = 0; r < cnt; r++) {
            const float *kr = kb + (size_t)r * ldkv;
            for (int m = 0; m < R; m++) {
                const float *qm = qp + (size_t)m * D;
                __m512 acc = _mm512_mul_ps(_mm512_loadu_ps(kr), _mm512_loadu_ps(qm));
                for (int e = 16; e < D; e += 16) acc = _mm512_fmadd_ps(_mm512_loadu_ps(kr + e), _mm512_loadu_ps(qm + e), acc);
                sc[(size_t)m * ldsc + r] = _mm512_reduce_add_ps(acc) * scale;
            }
        }
        return;
    }
#endif
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

#if defined(__AVX512F__)
/* NR rows (a constant after inlining) of values_small for D = 64: their outputs in 4 NR registers
 * while the values stream, each value's 64 numbers loaded once for the NR rows. */
static inline __attribute__((always_inline)) void values_rows64(float *op, const float *p, int ldp, const int NR,
                                                                 const float *vb, int ldkv, int cnt) {
    __m512 acc[4][4];
    for (int i = 0; i < NR; i++)
        for (int e = 0; e < 4; e++) acc[i][e] = _mm512_loadu_ps(op + (size_t)i * 64 + 16 * e);
    for (int r = 0; r < cnt; r++) {
        const float *vr = vb + (size_t)r * ldkv;
        const __m512 v0 = _mm512_loadu_ps(vr), v1 = _mm512_loadu_ps(vr + 16), v2 = _mm512_loadu_ps(vr + 32),
                     v3 = _mm512_loadu_ps(vr + 48);
        for (int i = 0; i < NR; i++) {
            const __m512 w = _mm512_set1_ps(p[(size_t)i * ldp + r]);
            acc[i][0] = _mm512_fmadd_ps(w, v0, acc[i][0]);
            acc[i][1] = _mm512_fmadd_ps(w, v1, acc[i][1]);
            acc[i][2] = _mm512_fmadd_ps(w, v2, acc[i][2]);
            acc[i][3] = _mm512_fmadd_ps(w, v3, acc[i][3]);
        }
    }
    for (int i = 0; i < NR; i++)
        for (int e = 0; e < 4; e++) _mm512_storeu_ps(op + (size_t)i * 64 + 16 * e, acc[i][e]);
}
#endif

/* op[m] += sum_r p[m, r] v_r over the cnt values of one block (vector loops). With AVX-512 and
 * D = 64 (SmolLM2's, Llama's head size): up to 4 rows' outputs stay in registers while the values
 * stream (values_rows64); the same FMAs in the same order per element. */
static void values_small(float *op, const float *p, int ldp, int R, const float *vb, int ldkv, int cnt, int D) {
#if defined(__AVX512F__)
    if (D == 64) {
        for (int m0 = 0; m0 < R; m0 += 4) {
            float *o = op + (size_t)m0 * 64;
            const float *pm = p + (size_t)m0 * ldp;
            switch (R - m0 < 4 ? R - m0 : 4) {
            case 1: values_rows64(o, pm, ldp, 1, vb, ldkv, cnt); break;
            case 2: values_rows64(o, pm, ldp, 2, vb, ldkv, cnt); break;
            case 3: values_rows64(o, pm, ldp, 3, vb, ldkv, cnt); break;
            default: values_rows64(o, pm, ldp, 4, vb, ldkv, cnt); break;
            }
        }
        return;
    }
#endif
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

/* A prefill item: query heads h0 .. h0+rep-1 of one sequence, which read kv head g; qs and os point
 * at the sequence's first query row. Every row's scores, softmax and values are computed alone. */
static void prefill_item(float *os, const float *qs, const attn_paged_kv *kv, const attn_shape *s,
                         const attn_paged_seq *sq, int g, int h0, int rep, int bq, float *w) {
    const int D = s->head_dim, B = kv->block_size, nq = sq->nq, nkv = sq->nkv;
    const float scale = 1.0f / sqrtf((float)D);
    const size_t rows = (size_t)rep * bq;
    float *qp = w, *op = qp + rows * D, *kc = op + rows * D, *vc = kc + (size_t)nkv * D, *sc = vc + (size_t)nkv * D;
    for (int j0 = 0; j0 < nkv; j0 += B) { /* this head's keys and values, contiguous (fp32) */
        const int cnt = nkv - j0 < B ? nkv - j0 : B;
        const size_t base = (size_t)sq->blocks[j0 / B] * B * kv->ldkv + (size_t)g * D;
        for (int r = 0; r < cnt; r++) {
            const size_t src = base + (size_t)r * kv->ldkv, dst = (size_t)(j0 + r) * D;
            if (kv->k16) {
                attn_f16_to_f32(kc + dst, kv->k16 + src, D);
                attn_f16_to_f32(vc + dst, kv->v16 + src, D);
            } else {
                memcpy(kc + dst, kv->k + src, sizeof(float) * D);
                memcpy(vc + dst, kv->v + src, sizeof(float) * D);
            }
        }
    }
    for (int i0 = 0; i0 < nq; i0 += bq) {
        const int nb = nq - i0 < bq ? nq - i0 : bq, R = rep * nb, kend = nkv - nq + i0 + nb;
        float *dr = sc + (size_t)R * kend; /* [R] 1 / rowsum, after the scores */
        pack(qp, qs, s->ldq, i0, nb, h0, rep, D);
        if (R >= PAGED_GEMM_ROWS) matmul(sc, kend, qp, D, 0, kc, D, 1, R, kend, D, scale, 0);
        else scores_small(sc, kend, qp, R, kc, D, kend, D, scale); /* the last tile of a prefill */
        for (int m = 0; m < R; m++) {
            const int lim = nkv - nq + i0 + m % nb + 1;
            float *row = sc + (size_t)m * kend;
            const float mx = fm_row_max(row, lim);
            const double sum = fm_row_exp_sum(row, row, lim, mx);
            for (int j = lim; j < kend; j++) row[j] = 0;
            dr[m] = (float)(1.0 / sum);
        }
        if (R >= PAGED_GEMM_ROWS) matmul(op, D, sc, kend, 0, vc, D, 0, R, D, kend, 1.0f, 0);
        else {
            memset(op, 0, sizeof(float) * (size_t)R * D);
            values_small(op, sc, kend, R, vc, D, kend, D);
        }
        for (int m = 0; m < R; m++) fm_row_scale(op + (size_t)m * D, D, dr[m]);
        unpack(os, s->ldo, op, i0, nb, h0, rep, D);
    }
}

/* A decode item: the rep query heads of kv head g (rows r * nq + i) over keys [k0, k1). With part
 * NULL (the sequence's only range) the output goes to os; else row m's {max, sum, output} to
 * part + m (D + 2) (a row with no key in the range: max -inf, sum 0, output 0). */
static void decode_item(float *os, float *part, const float *qs, const attn_paged_kv *kv, const attn_shape *s,
                        const attn_paged_seq *sq, int g, int k0, int k1, float *w) {
    const int D = s->head_dim, B = kv->block_size, nq = sq->nq, nkv = sq->nkv, rep = s->n_heads / s->n_kv_heads;
    const int R = rep * nq, n = k1 - k0;
    const float scale = 1.0f / sqrtf((float)D);
    float *qp = w, *op = qp + (size_t)R * D, *sc = op + (size_t)R * D, *mxs = sc + (size_t)R * n, *sums = mxs + R;
    float *kf = sums + R; /* [PAGED_F16_ROWS, D] keys or values widened from an fp16 cache */
    const int cap = kv->k16 ? PAGED_F16_ROWS : B;
    pack(qp, qs, s->ldq, 0, nq, g * rep, rep, D);
    for (int j0 = k0; j0 < k1;) {
        int cnt = B - j0 % B < k1 - j0 ? B - j0 % B : k1 - j0, ld;
        cnt = cnt < cap ? cnt : cap;
        const float *kb = kv_rows(kv->k, kv->k16, kv, sq, g, D, j0, cnt, kf, &ld);
        scores_small(sc + (j0 - k0), n, qp, R, kb, ld, cnt, D, scale);
        j0 += cnt;
    }
    for (int m = 0; m < R; m++) {
        const int lim = nkv - nq + m % nq + 1, e = (lim < k1 ? lim : k1) - k0;
        float *row = sc + (size_t)m * n;
        mxs[m] = e > 0 ? fm_row_max(row, e) : -__builtin_inff();
        const double sum = e > 0 ? fm_row_exp_sum(row, row, e, mxs[m]) : 0;
        for (int j = e > 0 ? e : 0; j < n; j++) row[j] = 0;
        sums[m] = part ? (float)sum : (float)(1.0 / sum);
    }
    memset(op, 0, sizeof(float) * (size_t)R * D);
    for (int j0 = k0; j0 < k1;) {
        int cnt = B - j0 % B < k1 - j0 ? B - j0 % B : k1 - j0, ld;
        cnt = cnt < cap ? cnt : cap;
        const float *vb = kv_rows(kv->v, kv->v16, kv, sq, g, D, j0, cnt, kf, &ld);
        values_small(op, sc + (j0 - k0), n, R, vb, ld, cnt, D);
        j0 += cnt;
    }
    if (!part) {
        for (int m = 0; m < R; m++) fm_row_scale(op + (size_t)m * D, D, sums[m]);
        unpack(os, s->ldo, op, 0, nq, g * rep, rep, D);
        return;
    }
    for (int m = 0; m < R; m++) {
        float *pm = part + (size_t)m * (D + 2);
        pm[0] = mxs[m], pm[1] = sums[m];
        memcpy(pm + 2, op + (size_t)m * D, sizeof(float) * D);
    }
}

/* Merges the ranges of kv head g of a decode sequence: row m's output is
 * sum_r exp(max_r - M) o_r / sum_r exp(max_r - M) sum_r, M the largest max, in range order. */
static void merge_head(float *os, const float *part, const attn_shape *s, const attn_paged_seq *sq, int g, int S) {
    const int D = s->head_dim, nq = sq->nq, rep = s->n_heads / s->n_kv_heads, R = rep * nq;
    const size_t stride = (size_t)R * (D + 2); /* one range's rows */
    const float *p0 = part + (size_t)g * S * stride;
    for (int m = 0; m < R; m++) {
        float M = -__builtin_inff();
        for (int r = 0; r < S; r++) M = p0[r * stride + (size_t)m * (D + 2)] > M ? p0[r * stride + (size_t)m * (D + 2)] : M;
        float *o = os + (size_t)(m % nq) * s->ldo + (size_t)(g * rep + m / nq) * D;
        double L = 0;
        for (int e = 0; e < D; e++) o[e] = 0;
        for (int r = 0; r < S; r++) {
            const float *pm = p0 + r * stride + (size_t)m * (D + 2);
            if (pm[1] == 0) continue; /* no key of this row in the range */
            const float f = fm_expf(pm[0] - M);
            L += (double)f * pm[1];
            for (int e = 0; e < D; e++) o[e] += f * pm[2 + e];
        }
        const float inv = (float)(1.0 / L);
        for (int e = 0; e < D; e++) o[e] *= inv;
    }
}

/* Items: one per kv head of each prefill sequence, one per (kv head, key range) of each decode
 * sequence (paged_ranges), in sequence order. A cursor walks them in increasing order from one call
 * to the next (start it zeroed): the sequence of the item, its first item, and the offset of its
 * partial results. */
typedef struct {
    int seq, first;
    size_t part;
} item_cursor;

static int paged_items(const attn_shape *s, const attn_paged_seq *seqs, int n_seqs) {
    int n = 0;
    for (int i = 0; i < n_seqs; i++) n += s->n_kv_heads * paged_ranges(s, &seqs[i]);
    return n;
}

static void run_item(float *out, const float *q, const attn_paged_kv *kv, const attn_shape *s,
                     const attn_paged_seq *seqs, int bq, int it, item_cursor *c, float *partials, float *w) {
    const int H = s->n_kv_heads;
    if (it < c->first) *c = (item_cursor){0};
    while (it >= c->first + H * paged_ranges(s, &seqs[c->seq])) {
        c->first += H * paged_ranges(s, &seqs[c->seq]);
        c->part += seq_partial_floats(s, &seqs[c->seq]);
        c->seq++;
    }
    const attn_paged_seq *sq = &seqs[c->seq];
    float *os = out + (size_t)sq->q0 * s->ldo;
    const float *qs = q + (size_t)sq->q0 * s->ldq;
    const int S = paged_ranges(s, sq), k = it - c->first, g = k / S, r = k % S;
    if (!is_decode(s, sq)) {
        const int rep = s->n_heads / H;
        prefill_item(os, qs, kv, s, sq, g, g * rep, rep, bq, w);
        return;
    }
    const int k0 = r * PAGED_SPLIT_KEYS, k1 = S == 1 ? sq->nkv : k0 + PAGED_SPLIT_KEYS < sq->nkv ? k0 + PAGED_SPLIT_KEYS : sq->nkv;
    float *part = S == 1 ? NULL : partials + c->part + (size_t)k * (s->n_heads / H) * sq->nq * (s->head_dim + 2);
    decode_item(os, part, qs, kv, s, sq, g, k0, k1, w);
}

/* Merge unit u (of the decode sequences of several ranges, one per kv head, in sequence order);
 * returns 0 once u is past the last. */
static int run_merge(float *out, const attn_shape *s, const attn_paged_seq *seqs, int n_seqs, int u,
                     const float *partials) {
    size_t off = 0;
    for (int i = 0; i < n_seqs; i++) {
        const int S = paged_ranges(s, &seqs[i]);
        if (S > 1) {
            if (u < s->n_kv_heads) {
                merge_head(out + (size_t)seqs[i].q0 * s->ldo, partials + off, s, &seqs[i], u, S);
                return 1;
            }
            u -= s->n_kv_heads;
        }
        off += seq_partial_floats(s, &seqs[i]);
    }
    return 0;
}

static int merge_units(const attn_shape *s, const attn_paged_seq *seqs, int n_seqs) {
    int n = 0;
    for (int i = 0; i < n_seqs; i++) n += paged_ranges(s, &seqs[i]) > 1 ? s->n_kv_heads : 0;
    return n;
}

/* The call's layout of the work buffer: the partial results, then `per` floats per thread. */
static int work_layout(const attn_shape *s, const attn_paged_seq *seqs, int n_seqs, size_t work_floats, int nt,
                       int *bq, size_t *part, size_t *per) {
    const int max_nkv = max_nkv_of(seqs, n_seqs);
    *bq = paged_bq(s, max_nkv);
    *part = partial_floats(s, seqs, n_seqs);
    *per = paged_thread_floats(s, max_nkv);
    if (work_floats < *part + *per * (size_t)nt)
        return err_set(ERR_INTERNAL, "paged attention: work buffer of %zu floats, %zu needed for %d threads (size it "
                       "with attention_paged_work_floats)", work_floats, *part + *per * (size_t)nt, nt);
    return 0;
}

int attention_paged_forward(float *out, const float *q, const attn_paged_kv *kv, const attn_shape *s,
                            const attn_paged_seq *seqs, int n_seqs, float *work, size_t work_floats) {
    if (check_seqs(kv, s, seqs, n_seqs) < 0) return -1;
    int bq;
    size_t part, per;
    if (work_layout(s, seqs, n_seqs, work_floats, 1, &bq, &part, &per)) return -1;
    int T = kernels_threads();
    if ((size_t)T > (work_floats - part) / per) T = (int)((work_floats - part) / per);
    const int n_items = paged_items(s, seqs, n_seqs), n_merge = merge_units(s, seqs, n_seqs);
    if (T > n_items) T = n_items;
    if (T < 1) T = 1;
#pragma omp parallel num_threads(T) if (T > 1)
    {
        float *w = work + part + per * (size_t)omp_get_thread_num();
        item_cursor c = {0};
#pragma omp for schedule(dynamic, 1)
        for (int it = 0; it < n_items; it++) run_item(out, q, kv, s, seqs, bq, it, &c, work, w);
#pragma omp for schedule(static, 1)
        for (int u = 0; u < n_merge; u++) run_merge(out, s, seqs, n_seqs, u, work);
    }
    return 0;
}

int attention_paged_part(float *out, const float *q, const attn_paged_kv *kv, const attn_shape *s,
                         const attn_paged_seq *seqs, int n_seqs, float *work, size_t work_floats, int t, int nt) {
    if (check_seqs(kv, s, seqs, n_seqs) < 0) return -1;
    int bq;
    size_t part, per;
    if (work_layout(s, seqs, n_seqs, work_floats, nt, &bq, &part, &per)) return -1;
    const int n_items = paged_items(s, seqs, n_seqs);
    item_cursor c = {0};
    for (int it = t; it < n_items; it += nt) run_item(out, q, kv, s, seqs, bq, it, &c, work, work + part + per * (size_t)t);
    return 0;
}

int attention_paged_needs_merge(const attn_shape *s, const attn_paged_seq *seqs, int n_seqs) {
    return merge_units(s, seqs, n_seqs) > 0;
}

void attention_paged_merge_part(float *out, const attn_shape *s, const attn_paged_seq *seqs, int n_seqs,
                                const float *work, int t, int nt) {
    const int n_merge = merge_units(s, seqs, n_seqs);
    for (int u = t; u < n_merge; u += nt) run_merge(out, s, seqs, n_seqs, u, work);
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
            if (kv->k16) {
                attn_f16_to_f32(k + (size_t)p * W, kv->k16 + src, W);
                attn_f16_to_f32(v + (size_t)p * W, kv->v16 + src, W);
            } else {
                memcpy(k + (size_t)p * W, kv->k + src, sizeof(float) * W);
                memcpy(v + (size_t)p * W, kv->v + src, sizeof(float) * W);
            }
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
