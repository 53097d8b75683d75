/* linear_wint_bf16.c: the decode GEMV of symmetric W4A16-style linears (codes of <= 4 bits, no zero
 * points nor minimums, each 32-column chunk inside one group) on CPUs with AVX512_BF16: the
 * activations rounded to bf16 once per call, the weights decoded to bf16 by a 16-entry table and
 * multiplied with vdpbf16ps (32 products per instruction, fp32 sums), the group's scale applied once
 * per chunk. The fp32 kernel (linear_wint.c) needs two table lookups and two FMAs per 32 weights and
 * a row, this one about half as many instructions: decode of a 135M model is bound by these
 * instructions, not by the memory (docs/quantize.md).
 *
 * Arithmetic (tests/test_qlinear.c derives the bound): x~ = bf16(x) (round to nearest even,
 * |x~ - x| <= 2^-8 |x|); the codes' values q - 2^(b-1) (integers in [-8, 7]) are exact in bf16 and
 * their products with x~ exact in fp32; vdpbf16ps adds them in fp32 (round to nearest even, its
 * inputs' and outputs' subnormals flushed to zero); per chunk t = sum of the 32 products (two
 * instructions, each a pair per lane), acc = fma(t, scale, acc) per lane, then the 8 lanes of a row
 * summed in a fixed tree. The order of the sums depends neither on the row range nor on the token
 * count, so a split of the rows among threads changes no value.
 *
 * Layout: the payload's block of QL_RB = 4 rows holds chunk c of its rows as 64 consecutive bytes
 * (16 per row: byte i = column i in the low nibble, column i + 16 in the high one). Widened to 16-bit
 * words, rows 0 and 1 fill one 512-bit vector (words 0..15 row 0, 16..31 row 1): the low nibbles are
 * columns 0..15 of both rows, the high nibbles columns 16..31. So the activations of a chunk are kept
 * as two vectors of 32 bf16, [x0..x15, x0..x15] and [x16..x31, x16..x31], and vdpbf16ps gives in
 * lanes 0..7 row 0's partial sums and in lanes 8..15 row 1's. */
#include "kernels/qlinear_internal.h"

#if defined(__x86_64__)
#include <immintrin.h>

#define QL_BF16 __attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16,avx2,fma,f16c")))
#define IB QL_BF16 static inline __attribute__((always_inline))

/* xb [n][n_chunks][64] = the bf16 activations of the n tokens x [n, ldx] (qlinear_k32 columns, the
 * padding ones zero), each chunk as the two duplicated halves above. */
QL_BF16 static void bf16_acts(uint16_t *xb, const float *x, int ldx, int n, int nch) {
    for (int t = 0; t < n; t++)
        for (int c = 0; c < nch; c++) {
            const float *xc = x + (size_t)t * ldx + (size_t)c * QL_CHUNK;
            uint16_t *d = xb + ((size_t)t * nch + c) * 64;
            const __m256i lo = (__m256i)_mm512_cvtneps_pbh(_mm512_loadu_ps(xc));
            const __m256i hi = (__m256i)_mm512_cvtneps_pbh(_mm512_loadu_ps(xc + 16));
            _mm512_store_si512((void *)d, _mm512_inserti64x4(_mm512_castsi256_si512(lo), lo, 1));
            _mm512_store_si512((void *)(d + 32), _mm512_inserti64x4(_mm512_castsi256_si512(hi), hi, 1));
        }
}

/* The sum of the 8 lanes of row half h (0: lanes 0..7, 1: lanes 8..15) of v, in a fixed tree. */
IB float half_sum(__m512 v, int h) {
    const __m256 r = h ? _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)) : _mm512_castps512_ps256(v);
    const __m128 a = _mm_add_ps(_mm256_castps256_ps128(r), _mm256_extractf128_ps(r, 1));
    const __m128 a2 = _mm_add_ps(a, _mm_movehl_ps(a, a));
    return _mm_cvtss_f32(_mm_add_ss(a2, _mm_movehdup_ps(a2)));
}

/* R tokens x the 4 rows of the block starting at row o (a multiple of QL_RB); rows past o1 are
 * computed (the padding rows decode to finite values times scale 0) but not stored. */
IB void block_bf16(float *out, int ldo, const uint16_t *xb, const struct qlinear *q, const float *b, const int R, int o,
                   int o1, int accumulate, __m512i tab, const int h16) {
    const int nch = q->n_chunks, ng = q->n_groups, cpg = ng == 1 ? 1 << 30 : q->group_size / QL_CHUNK;
    const uint8_t *blk = q->wq + (size_t)(o / QL_RB) * nch * QL_RB * 16;
    const size_t bs0 = (size_t)(o / QL_RB) * ng * QL_RB; /* the block's first scale */
    const __m512i i01 = _mm512_set_epi32(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0);
    const __m512i i23 = _mm512_set_epi32(3, 3, 3, 3, 3, 3, 3, 3, 2, 2, 2, 2, 2, 2, 2, 2);
    __m512 acc[QLINEAR_GEMV_ROWS][2];
    QL_UNROLL for (int r = 0; r < R; r++) acc[r][0] = acc[r][1] = _mm512_setzero_ps();
    __m512 s01 = _mm512_setzero_ps(), s23 = s01;
    for (int c = 0, g = 0, gnext = 0; c < nch; c++) {
        if (c == gnext) { /* a new group: the scales of the 4 rows, spread to their lanes */
            const __m128 s = h16 ? _mm_cvtph_ps(_mm_loadl_epi64((const __m128i *)(q->bscales16 + bs0 + (size_t)g * QL_RB)))
                                 : _mm_loadu_ps(q->bscales + bs0 + (size_t)g * QL_RB);
            const __m512 s4 = _mm512_castps128_ps512(s);
            s01 = _mm512_permutexvar_ps(i01, s4), s23 = _mm512_permutexvar_ps(i23, s4);
            g++, gnext += cpg;
        }
        const __m512i raw = _mm512_loadu_si512((const void *)(blk + (size_t)c * QL_RB * 16));
        const __m512i c01 = _mm512_cvtepu8_epi16(_mm512_castsi512_si256(raw));
        const __m512i c23 = _mm512_cvtepu8_epi16(_mm512_extracti64x4_epi64(raw, 1));
        /* vpermw reads the low 5 bits of each word: the table holds its 16 entries twice */
        const __m512bh w01l = (__m512bh)_mm512_permutexvar_epi16(c01, tab);
        const __m512bh w01h = (__m512bh)_mm512_permutexvar_epi16(_mm512_srli_epi16(c01, 4), tab);
        const __m512bh w23l = (__m512bh)_mm512_permutexvar_epi16(c23, tab);
        const __m512bh w23h = (__m512bh)_mm512_permutexvar_epi16(_mm512_srli_epi16(c23, 4), tab);
        QL_UNROLL for (int r = 0; r < R; r++) {
            const uint16_t *xc = xb + ((size_t)r * nch + c) * 64;
            const __m512bh xl = (__m512bh)_mm512_load_si512((const void *)xc);
            const __m512bh xh = (__m512bh)_mm512_load_si512((const void *)(xc + 32));
            const __m512 t01 = _mm512_dpbf16_ps(_mm512_dpbf16_ps(_mm512_setzero_ps(), xl, w01l), xh, w01h);
            const __m512 t23 = _mm512_dpbf16_ps(_mm512_dpbf16_ps(_mm512_setzero_ps(), xl, w23l), xh, w23h);
            acc[r][0] = _mm512_fmadd_ps(t01, s01, acc[r][0]);
            acc[r][1] = _mm512_fmadd_ps(t23, s23, acc[r][1]);
        }
    }
    QL_UNROLL for (int r = 0; r < R; r++)
        for (int j = 0; j < QL_RB && o + j < o1; j++)
            qlinear_store(out + (size_t)r * ldo + o + j, half_sum(acc[r][j >> 1], j & 1), b, o + j, accumulate);
}

IB void span_bf16(float *out, int ldo, const uint16_t *xb, const struct qlinear *q, const float *b, const int R, int o0,
                  int o1, int accumulate, __m512i tab) {
    if (q->bscales16)
        for (int o = o0; o < o1; o += QL_RB) block_bf16(out, ldo, xb, q, b, R, o, o1, accumulate, tab, 1);
    else
        for (int o = o0; o < o1; o += QL_RB) block_bf16(out, ldo, xb, q, b, R, o, o1, accumulate, tab, 0);
}

QL_BF16 void qwint_gemv_bf16(float *out, int ldo, const float *x, int ldx, const struct qlinear *q, const float *b,
                             int n, int o0, int o1, int accumulate) {
    const int nch = q->n_chunks;
    uint16_t *xb = qlinear_scratch(QL_SLOT_BF16, (size_t)n * nch * 64 * sizeof(uint16_t));
    if (!xb) { /* no scratch: the fp32 kernel (it needs none) gives the product within tighter bounds */
        qwint_gemv_avx512(out, ldo, x, ldx, q, b, n, o0, o1, accumulate);
        return;
    }
    bf16_acts(xb, x, ldx, n, nch);
    /* the table: word i (and i + 16) = bf16(i - 2^(bits-1)), exact */
    const __m512 v = _mm512_sub_ps(_mm512_setr_ps(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                   _mm512_set1_ps((float)(1 << (q->bits - 1))));
    const __m256i t16 = (__m256i)_mm512_cvtneps_pbh(v);
    const __m512i tab = _mm512_inserti64x4(_mm512_castsi256_si512(t16), t16, 1);
    switch (n) { /* the token count a constant: the accumulators stay registers */
    case 1: span_bf16(out, ldo, xb, q, b, 1, o0, o1, accumulate, tab); break;
    case 2: span_bf16(out, ldo, xb, q, b, 2, o0, o1, accumulate, tab); break;
    case 3: span_bf16(out, ldo, xb, q, b, 3, o0, o1, accumulate, tab); break;
    case 4: span_bf16(out, ldo, xb, q, b, 4, o0, o1, accumulate, tab); break;
    default: /* 5 .. QLINEAR_GEMV_ROWS tokens (not the decode path): one at a time */
        for (int t = 0; t < n; t++)
            span_bf16(out + (size_t)t * ldo, ldo, xb + (size_t)t * nch * 64, q, b, 1, o0, o1, accumulate, tab);
        break;
    }
}

#endif
