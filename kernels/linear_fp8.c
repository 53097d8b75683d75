/* linear_fp8.c: FP8 E4M3 weights x fp32 activations, or x FP8 activations (a scale per token, or
 * one for all the tokens of the call), see qlinear.h. The same two paths as the integer weights
 * (linear_wint.c): a fused GEMV for a few tokens, dequantized panels times sgemm for more; every
 * family multiplies exactly the floats qweight_dequantize gives, scale * e4m3(code):
 *   portable  a 256-entry table of fp8_e4m3_to_float;
 *   AVX2, AVX-512  through IEEE half precision: the byte c placed as c << 7 in a 16-bit lane, sign
 *             moved to bit 15 (shift left 8, arithmetic shift right 1, clear bit 14), is the half
 *             whose value is e4m3(c) / 256 exactly (E4M3's 4-bit exponent, bias 7, sits in the low
 *             bits of the half's 5-bit exponent, bias 15; subnormals map to subnormals), and
 *             vcvtph2ps widens it exactly. Times scale * 256 (exact: a power of two; the build
 *             checks it is finite) that is the single rounding of scale * e4m3(c). NaN codes never
 *             reach a kernel (qlinear_build refuses them).
 * FP8 activations are quantized and dequantized first (s_t * e4m3 value, one rounding), so the
 * product sees exactly the activations an FP8 engine would. */
#include <omp.h>
#include <pthread.h>
#include <string.h>

#include "common/error.h"
#include "kernels/qlinear_internal.h"
#include "kernels/threads.h"

#if defined(__x86_64__)
#include <immintrin.h>
#endif

static float fp8_table[256];
static pthread_once_t fp8_once = PTHREAD_ONCE_INIT;
static void fp8_table_init(void) {
    for (int c = 0; c < 256; c++) fp8_table[c] = fp8_e4m3_to_float((uint8_t)c);
}

/* ---- portable ---- */

void qfp8_chunk(float *w, const struct qlinear *q, int o, int c) {
    pthread_once(&fp8_once, fp8_table_init);
    const uint8_t *ch = ql_chunk(q, o, c);
    const int G = q->group_size, ng = q->n_groups, j0 = c * QL_CHUNK;
    const size_t s0 = (size_t)o * ng; /* the row's first scale */
    int g = ng == 1 ? 0 : j0 / G, gend = ng == 1 ? 1 << 30 : (g + 1) * G;
    if (j0 + QL_CHUNK <= gend && j0 + QL_CHUNK <= q->n_in) { /* the chunk in one group */
        const float sg = ql_scale(q, s0 + g);
        for (int i = 0; i < QL_CHUNK; i++) w[i] = sg * fp8_table[ch[i]];
        return;
    }
    for (int i = 0; i < QL_CHUNK; i++) {
        const int j = j0 + i;
        if (j >= gend) g++, gend += G;
        w[i] = j < q->n_in ? ql_scale(q, s0 + g) * fp8_table[ch[i]] : 0;
    }
}

void qfp8_dequant_portable(float *w, int ldw, const struct qlinear *q, int o0, int o1) {
    qlinear_dequant_chunks(w, ldw, q, o0, o1, qfp8_chunk);
}

void qfp8_gemv_portable(float *out, int ldo, const float *x, int ldx, const struct qlinear *q, const float *b, int n,
                        int o0, int o1, int accumulate) {
    qlinear_gemv_chunks(out, ldo, x, ldx, q, b, n, o0, o1, accumulate, qfp8_chunk);
}

#if defined(__x86_64__)

/* scale * 256 of group g of row o (see the top of the file), and the column after the group (the
 * padding columns past the last group stay in it; vectors never straddle groups: q->simd). */
QL_AVX2 static inline float fp8_s256(const struct qlinear *q, int o, int g) {
    const size_t i = (size_t)o * q->n_groups + g;
    return (q->scales16 ? _cvtsh_ss(q->scales16[i]) : q->scales[i]) * 256.0f;
}
static inline int group_end(const struct qlinear *q, int g) {
    return g == q->n_groups - 1 ? 1 << 30 : (g + 1) * q->group_size;
}
/* The offset of column p's code from the row's chunk 0 (chunks QL_RB * 32 bytes apart). */
static inline size_t fp8_at(int p) { return (size_t)(p >> 5) * QL_RB * 32 + (p & 31); }

/* ---- AVX2: 8 columns a vector ---- */

#define I2 QL_AVX2 static inline __attribute__((always_inline))

/* e4m3(c) / 256 of 8 codes, as halves widened to floats. */
I2 __m256 decode2(const uint8_t *p) {
    __m128i h = _mm_cvtepu8_epi16(_mm_loadl_epi64((const __m128i *)p));
    h = _mm_and_si128(_mm_srai_epi16(_mm_slli_epi16(h, 8), 1), _mm_set1_epi16((short)0xBFFF));
    return _mm256_cvtph_ps(h);
}

QL_AVX2 void qfp8_dequant_avx2(float *w, int ldw, const struct qlinear *q, int o0, int o1) {
    const int K32 = qlinear_k32(q);
    for (int o = o0; o < o1; o++) {
        const uint8_t *row = ql_chunk(q, o, 0);
        float *wr = w + (size_t)(o - o0) * ldw, s256 = fp8_s256(q, o, 0);
        int g = 0, gend = group_end(q, 0);
        for (int p = 0; p < K32; p += 8) {
            if (p >= gend) s256 = fp8_s256(q, o, ++g), gend = group_end(q, g);
            _mm256_storeu_ps(wr + p, _mm256_mul_ps(decode2(row + fp8_at(p)), _mm256_set1_ps(s256)));
        }
    }
}

I2 void rows2(float *out, int ldo, const float *x, int ldx, const struct qlinear *q, const float *b, const int R, int o,
              const int J, int accumulate, const int unused) {
    (void)unused;
    const int K32 = qlinear_k32(q);
    __m256 acc[QLINEAR_GEMV_ROWS][4], sv[4];
    int g = 0, gend = group_end(q, 0);
    QL_UNROLL for (int j = 0; j < J; j++) sv[j] = _mm256_set1_ps(fp8_s256(q, o + j, 0));
    QL_UNROLL for (int r = 0; r < R; r++)
        QL_UNROLL for (int j = 0; j < J; j++) acc[r][j] = _mm256_setzero_ps();
    for (int p = 0; p < K32; p += 8) {
        if (p >= gend) {
            gend = group_end(q, ++g);
            QL_UNROLL for (int j = 0; j < J; j++) sv[j] = _mm256_set1_ps(fp8_s256(q, o + j, g));
        }
        QL_UNROLL for (int j = 0; j < J; j++) {
            const __m256 w = _mm256_mul_ps(decode2(ql_chunk(q, o + j, 0) + fp8_at(p)), sv[j]);
            QL_UNROLL for (int r = 0; r < R; r++) acc[r][j] = _mm256_fmadd_ps(_mm256_loadu_ps(x + (size_t)r * ldx + p), w, acc[r][j]);
        }
    }
    QL_UNROLL for (int r = 0; r < R; r++)
        QL_UNROLL for (int j = 0; j < J; j++)
            qlinear_store(out + (size_t)r * ldo + o + j, ql_hsum8(acc[r][j]), b, o + j, accumulate);
}

QL_GEMV_ENTRY(qfp8_gemv_avx2, QL_AVX2, rows2, QL_J_AVX2, 0)

/* ---- AVX-512: 16 columns a vector ---- */

#define I512 QL_AVX512 static inline __attribute__((always_inline))

I512 __m512 decode512(const uint8_t *p) {
    __m256i h = _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)p));
    h = _mm256_and_si256(_mm256_srai_epi16(_mm256_slli_epi16(h, 8), 1), _mm256_set1_epi16((short)0xBFFF));
    return _mm512_cvtph_ps(h);
}

QL_AVX512 void qfp8_dequant_avx512(float *w, int ldw, const struct qlinear *q, int o0, int o1) {
    const int K32 = qlinear_k32(q);
    for (int o = o0; o < o1; o++) {
        const uint8_t *row = ql_chunk(q, o, 0);
        float *wr = w + (size_t)(o - o0) * ldw, s256 = fp8_s256(q, o, 0);
        int g = 0, gend = group_end(q, 0);
        for (int p = 0; p < K32; p += 16) {
            if (p >= gend) s256 = fp8_s256(q, o, ++g), gend = group_end(q, g);
            _mm512_storeu_ps(wr + p, _mm512_mul_ps(decode512(row + fp8_at(p)), _mm512_set1_ps(s256)));
        }
    }
}

I512 void rows512(float *out, int ldo, const float *x, int ldx, const struct qlinear *q, const float *b, const int R,
                  int o, const int J, int accumulate, const int unused) {
    (void)unused;
    const int K32 = qlinear_k32(q);
    __m512 acc[QLINEAR_GEMV_ROWS][4], sv[4];
    int g = 0, gend = group_end(q, 0);
    QL_UNROLL for (int j = 0; j < J; j++) sv[j] = _mm512_set1_ps(fp8_s256(q, o + j, 0));
    QL_UNROLL for (int r = 0; r < R; r++)
        QL_UNROLL for (int j = 0; j < J; j++) acc[r][j] = _mm512_setzero_ps();
    for (int p = 0; p < K32; p += 16) {
        if (p >= gend) {
            gend = group_end(q, ++g);
            QL_UNROLL for (int j = 0; j < J; j++) sv[j] = _mm512_set1_ps(fp8_s256(q, o + j, g));
        }
        QL_UNROLL for (int j = 0; j < J; j++) {
            const __m512 w = _mm512_mul_ps(decode512(ql_chunk(q, o + j, 0) + fp8_at(p)), sv[j]);
            QL_UNROLL for (int r = 0; r < R; r++) acc[r][j] = _mm512_fmadd_ps(_mm512_loadu_ps(x + (size_t)r * ldx + p), w, acc[r][j]);
        }
    }
    QL_UNROLL for (int r = 0; r < R; r++)
        QL_UNROLL for (int j = 0; j < J; j++)
            qlinear_store(out + (size_t)r * ldo + o + j, _mm512_reduce_add_ps(acc[r][j]), b, o + j, accumulate);
}

QL_GEMV_ENTRY(qfp8_gemv_avx512, QL_AVX512, rows512, QL_J_AVX512, 0)

#endif

const float *qfp8_acts(const float *x, int ldx, const struct qlinear *q, int n) {
    pthread_once(&fp8_once, fp8_table_init);
    const int K = q->n_in, K32 = qlinear_k32(q);
    if (!(x = qlinear_input(x, ldx, q, n, 0, &ldx))) return NULL; /* act order: the payload's column order */
    float *xd = qlinear_scratch(0, (size_t)n * K32 * sizeof(float));
    uint8_t *codes = qlinear_scratch(1, (size_t)n * K);
    if (!xd || !codes) return NULL;
    const float s_all = q->act == QA_FP8_TENSOR ? qlinear_fp8_tensor_scale(x, ldx, n, K) : 0;
    const int nt = kernels_threads_for((double)n * K, THR_ROW_FLOATS);
#pragma omp parallel for schedule(static) num_threads(nt) if (nt > 1)
    for (int t = 0; t < n; t++) {
        uint8_t *c = codes + (size_t)t * K;
        float st = s_all, *d = xd + (size_t)t * K32;
        if (q->act == QA_FP8_TENSOR) qlinear_quant_fp8_with(c, st, x + (size_t)t * ldx, K);
        else qlinear_quant_fp8(c, &st, x + (size_t)t * ldx, K);
        for (int j = 0; j < K; j++) d[j] = st * fp8_table[c[j]];
        memset(d + K, 0, sizeof(float) * (K32 - K));
    }
    return xd;
}

int linear_qfp8_forward(float *out, int ldo, const float *x, int ldx, const linear *l, int n, int accumulate) {
    const struct qlinear *q = l->q;
    if (n <= 0) return 0;
    if (q->act == QA_NONE) return qlinear_float_forward(out, ldo, x, ldx, q, l->b, n, accumulate, 0);
    if (!(x = qfp8_acts(x, ldx, q, n))) return -1;
    return qlinear_float_forward(out, ldo, x, qlinear_k32(q), q, l->b, n, accumulate, 1);
}
