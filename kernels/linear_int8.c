/* linear_int8.c: integer weights x int8 activations (W8A8 and, with fewer weight bits, W4A8 and
 * such): per-token activation quantization, then int8 x int8 -> int32 sums per group of the blocked
 * weight layout of qlinear_internal.h, in three kernel families chosen at run time:
 *   portable  plain C over the same layout;
 *   AVX2      signed 16-bit products (vpmaddwd), 8 rows at a time;
 *   AVX-512   VNNI (vpdpbusd: unsigned x signed bytes, 4 products per int32 lane), 16 rows by 4
 *             columns per instruction; the activations go in as x + 128 (unsigned) and the
 *             128 * sum(w) that adds is taken off with the precomputed row sums.
 * All three compute the same int32 sums and combine them with the same float operations, so they
 * agree bit for bit with each other and with qlinear_forward_ref. Threads split the row blocks. */
#include <math.h>
#include <omp.h>
#include <string.h>

#include "common/error.h"
#include "kernels/qlinear_internal.h"
#include "kernels/threads.h"

#if defined(__x86_64__)
#include <immintrin.h>
#endif

/* Tokens per pass over a row block: their accumulators stay in registers. */
#define QI8_TOK 4

/* acc (16 rows) -> out row of token t, through the scale of the token. */
static inline void finish_rows(float *out_t, const float *acc, float st, const float *b, int o0, int n_rows,
                               int accumulate) {
    for (int r = 0; r < n_rows; r++) qlinear_store(out_t + o0 + r, st * acc[r], b, o0 + r, accumulate);
}

void qint8_rows_portable(float *out, int ldo, const int8_t *xq, const float *xs, const int32_t *xsum,
                         const struct qlinear *q, const float *b, int n, int rb0, int rb1, int accumulate) {
    const int ng = q->n_groups, q4 = q->g4 / 4, k4q = q->k4 / 4;
    for (int rb = rb0; rb < rb1; rb++) {
        const int o0 = rb * 16, n_rows = q->n_out - o0 < 16 ? q->n_out - o0 : 16;
        for (int t = 0; t < n; t++) {
            const int8_t *xt = xq + (size_t)t * q->k4;
            float acc[16] = {0};
            for (int g = 0; g < ng; g++) {
                int32_t isum[16] = {0};
                for (int k = g * q4; k < (g + 1) * q4; k++) {
                    const int8_t *w = q->w8 + ((size_t)rb * k4q + k) * 64, *x = xt + (size_t)k * 4;
                    for (int r = 0; r < 16; r++)
                        isum[r] += x[0] * w[r * 4] + x[1] * w[r * 4 + 1] + x[2] * w[r * 4 + 2] + x[3] * w[r * 4 + 3];
                }
                const size_t gi = ((size_t)rb * ng + g) * 16;
                for (int r = 0; r < 16; r++) {
                    if (q->zc) isum[r] -= q->zc[gi + r] * xsum[(size_t)t * ng + g];
                    acc[r] = fmaf(q->scales[gi + r], (float)isum[r], acc[r]);
                }
            }
            finish_rows(out + (size_t)t * ldo, acc, xs[t], b, o0, n_rows, accumulate);
        }
    }
}

#if defined(__x86_64__)
__attribute__((target("avx2,fma"))) void qint8_rows_avx2(float *out, int ldo, const int8_t *xq, const float *xs,
                                                         const int32_t *xsum, const struct qlinear *q, const float *b,
                                                         int n, int rb0, int rb1, int accumulate) {
    const int ng = q->n_groups, q4 = q->g4 / 4, k4q = q->k4 / 4;
    const __m256i fix = _mm256_setr_epi32(0, 1, 4, 5, 2, 3, 6, 7); /* lane order after hadd */
    for (int rb = rb0; rb < rb1; rb++) {
        const int o0 = rb * 16, n_rows = q->n_out - o0 < 16 ? q->n_out - o0 : 16;
        for (int t0 = 0; t0 < n; t0 += QI8_TOK) {
            const int nt = n - t0 < QI8_TOK ? n - t0 : QI8_TOK;
            __m256 acc[QI8_TOK][2];
            for (int t = 0; t < QI8_TOK; t++) acc[t][0] = acc[t][1] = _mm256_setzero_ps();
            for (int g = 0; g < ng; g++) {
                /* per token, 4 vectors of 4 rows x 2 pair-sums each */
                __m256i s[QI8_TOK][4];
                for (int t = 0; t < QI8_TOK; t++) s[t][0] = s[t][1] = s[t][2] = s[t][3] = _mm256_setzero_si256();
                for (int k = g * q4; k < (g + 1) * q4; k++) {
                    const int8_t *w = q->w8 + ((size_t)rb * k4q + k) * 64;
                    __m256i w16[4];
                    for (int h = 0; h < 4; h++)
                        w16[h] = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(w + h * 16)));
                    for (int t = 0; t < nt; t++) {
                        int32_t x4;
                        memcpy(&x4, xq + (size_t)(t0 + t) * q->k4 + (size_t)k * 4, 4);
                        const __m256i xv = _mm256_cvtepi8_epi16(_mm_set1_epi32(x4));
                        for (int h = 0; h < 4; h++) s[t][h] = _mm256_add_epi32(s[t][h], _mm256_madd_epi16(w16[h], xv));
                    }
                }
                const size_t gi = ((size_t)rb * ng + g) * 16;
                for (int t = 0; t < nt; t++)
                    for (int h = 0; h < 2; h++) {
                        /* rows 8h..8h+7: hadd of the pair sums, then back into row order */
                        __m256i isum = _mm256_permutevar8x32_epi32(_mm256_hadd_epi32(s[t][2 * h], s[t][2 * h + 1]), fix);
                        if (q->zc) {
                            const __m256i zc = _mm256_loadu_si256((const __m256i *)(q->zc + gi + 8 * h));
                            isum = _mm256_sub_epi32(isum, _mm256_mullo_epi32(zc, _mm256_set1_epi32(xsum[(size_t)(t0 + t) * ng + g])));
                        }
                        const __m256 sc = _mm256_loadu_ps(q->scales + gi + 8 * h);
                        acc[t][h] = _mm256_fmadd_ps(sc, _mm256_cvtepi32_ps(isum), acc[t][h]);
                    }
            }
            for (int t = 0; t < nt; t++) {
                float a[16];
                _mm256_storeu_ps(a, acc[t][0]);
                _mm256_storeu_ps(a + 8, acc[t][1]);
                finish_rows(out + (size_t)(t0 + t) * ldo, a, xs[t0 + t], b, o0, n_rows, accumulate);
            }
        }
    }
}

/* One group's dot products: s0[t] (row block w0) and, with two, s1[t] (the next row block, w1)
 * += q4 quads of 16 rows x 4 columns against nt tokens' codes (x0, rows k4 apart). The codes are
 * unsigned here (x + 128, flipped by the caller: linear_int8's acts), as vpdpbusd wants its first
 * operand; the 128 * sum(w) this adds is taken off with the row sums. Two row blocks share each
 * broadcast activation and give two independent chains of vpdpbusd. */
#define I512_INT8 __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,fma"))) static inline \
    __attribute__((always_inline))
I512_INT8 void dp_group(__m512i *s0, __m512i *s1, const int8_t *w0, const int8_t *w1, const int8_t *x0, int k4, int q4,
                        const int nt, const int two) {
    for (int k = 0; k < q4; k++) {
        __m512i wa = _mm512_loadu_si512(w0 + (size_t)k * 64), wb = two ? _mm512_loadu_si512(w1 + (size_t)k * 64) : wa;
        /* in registers: GCC would fold the loads into every vpdpbusd, a 64-byte load per product */
        __asm__("" : "+v"(wa), "+v"(wb));
        _Pragma("GCC unroll 4") for (int t = 0; t < nt; t++) {
            int32_t x4;
            memcpy(&x4, x0 + (size_t)t * k4 + (size_t)k * 4, 4);
            const __m512i xv = _mm512_set1_epi32(x4);
            s0[t] = _mm512_dpbusd_epi32(s0[t], xv, wa);
            if (two) s1[t] = _mm512_dpbusd_epi32(s1[t], xv, wb);
        }
    }
}

/* acc[t] (16 rows of row block rb) += scale * (the group's exact int32 sum). */
I512_INT8 void group_acc(__m512 *acc, const __m512i *s, const struct qlinear *q, const int32_t *xsum, int rb, int g,
                         int t0, int nt) {
    const int ng = q->n_groups;
    const size_t gi = ((size_t)rb * ng + g) * 16;
    const __m512i rs = _mm512_mullo_epi32(_mm512_loadu_si512(q->rowsum + gi), _mm512_set1_epi32(128));
    const __m512 sc = _mm512_loadu_ps(q->scales + gi);
    for (int t = 0; t < nt; t++) {
        __m512i isum = _mm512_sub_epi32(s[t], rs);
        if (q->zc)
            isum = _mm512_sub_epi32(isum, _mm512_mullo_epi32(_mm512_loadu_si512(q->zc + gi),
                                                             _mm512_set1_epi32(xsum[(size_t)(t0 + t) * ng + g])));
        acc[t] = _mm512_fmadd_ps(sc, _mm512_cvtepi32_ps(isum), acc[t]);
    }
}

__attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,fma"))) void
qint8_rows_avx512(float *out, int ldo, const int8_t *xq, const float *xs, const int32_t *xsum, const struct qlinear *q,
                  const float *b, int n, int rb0, int rb1, int accumulate) {
    const int ng = q->n_groups, q4 = q->g4 / 4, k4q = q->k4 / 4;
    /* many tokens: pairs of row blocks (two chains, each broadcast used twice); a few tokens (decode,
     * bound by the weight stream): one block at a time, the weights read as one sequential stream */
    const int pair = n > 2;
    for (int rb = rb0; rb < rb1; rb += 1 + pair) {
        const int two = pair && rb + 1 < rb1;
        for (int t0 = 0; t0 < n; t0 += QI8_TOK) {
            const int nt = n - t0 < QI8_TOK ? n - t0 : QI8_TOK;
            __m512 acc0[QI8_TOK], acc1[QI8_TOK];
            for (int t = 0; t < QI8_TOK; t++) acc0[t] = acc1[t] = _mm512_setzero_ps();
            for (int g = 0; g < ng; g++) {
                __m512i s0[QI8_TOK], s1[QI8_TOK];
                for (int t = 0; t < QI8_TOK; t++) s0[t] = s1[t] = _mm512_setzero_si512();
                const int8_t *w = q->w8 + ((size_t)rb * k4q + (size_t)g * q4) * 64;
                const int8_t *x0 = xq + (size_t)t0 * q->k4 + (size_t)g * q->g4;
#define DP(NT, TWO) dp_group(s0, s1, w, w + (size_t)k4q * 64, x0, q->k4, q4, NT, TWO)
                switch (nt * 2 + two) { /* constant counts: the sums stay in registers */
                case 2: DP(1, 0); break;
                case 3: DP(1, 1); break;
                case 4: DP(2, 0); break;
                case 5: DP(2, 1); break;
                case 6: DP(3, 0); break;
                case 7: DP(3, 1); break;
                case 2 * QI8_TOK: DP(QI8_TOK, 0); break;
                default: DP(QI8_TOK, 1); break;
                }
#undef DP
                group_acc(acc0, s0, q, xsum, rb, g, t0, nt);
                if (two) group_acc(acc1, s1, q, xsum, rb + 1, g, t0, nt);
            }
            for (int h = 0; h <= two; h++) {
                const int o0 = (rb + h) * 16, n_rows = q->n_out - o0 < 16 ? q->n_out - o0 : 16;
                for (int t = 0; t < nt; t++) {
                    float a[16];
                    _mm512_storeu_ps(a, h ? acc1[t] : acc0[t]);
                    finish_rows(out + (size_t)(t0 + t) * ldo, a, xs[t0 + t], b, o0, n_rows, accumulate);
                }
            }
        }
    }
}
#else
void qint8_rows_avx2(float *out, int ldo, const int8_t *xq, const float *xs, const int32_t *xsum,
                     const struct qlinear *q, const float *b, int n, int rb0, int rb1, int accumulate) {
    qint8_rows_portable(out, ldo, xq, xs, xsum, q, b, n, rb0, rb1, accumulate);
}
void qint8_rows_avx512(float *out, int ldo, const int8_t *xq, const float *xs, const int32_t *xsum,
                       const struct qlinear *q, const float *b, int n, int rb0, int rb1, int accumulate) {
    qint8_rows_portable(out, ldo, xq, xs, xsum, q, b, n, rb0, rb1, accumulate);
}
#endif

/* Quantizes the activations of n tokens into the padded group layout: xq [n][k4], scales xs [n],
 * and (asymmetric weights) the per-group sums of the codes xsum [n][n_groups]. */
static void quantize_acts(int8_t *xq, float *xs, int32_t *xsum, const float *x, int ldx, const struct qlinear *q,
                          int n) {
    const int G = q->group_size, ng = q->n_groups;
    const int nt = kernels_threads_for((double)n * q->n_in, THR_ROW_FLOATS);
#pragma omp parallel for schedule(static) num_threads(nt) if (nt > 1)
    for (int t = 0; t < n; t++) {
        int8_t *row = xq + (size_t)t * q->k4;
        /* quantize into the row's tail, then move the groups to their padded places front to back:
         * group g goes to g * g4 from ng * (g4 - G) + g * G, never past the source of group g + 1 */
        signed char *dense = (signed char *)row + (q->k4 - q->n_in);
        qlinear_quant_int8(dense, &xs[t], x + (size_t)t * ldx, q->n_in);
        if (q->g4 != G)
            for (int g = 0; g < ng; g++) {
                memmove(row + (size_t)g * q->g4, dense + (size_t)g * G, (size_t)G);
                memset(row + (size_t)g * q->g4 + G, 0, (size_t)(q->g4 - G));
            }
        if (xsum)
            for (int g = 0; g < ng; g++) {
                int32_t s = 0;
                for (int j = 0; j < G; j++) s += row[(size_t)g * q->g4 + j];
                xsum[(size_t)t * ng + g] = s;
            }
    }
}

typedef void (*qint8_rows_fn)(float *out, int ldo, const int8_t *xq, const float *xs, const int32_t *xsum,
                              const struct qlinear *q, const float *b, int n, int rb0, int rb1, int accumulate);

static qint8_rows_fn rows_fn(void) {
    const qlinear_isa_kind isa = qlinear_isa();
    return isa >= QISA_AVX512 ? qint8_rows_avx512 : isa == QISA_AVX2 ? qint8_rows_avx2 : qint8_rows_portable;
}

/* The activations of n tokens quantized into the calling thread's scratch (the per-token scale is
 * the same in any column order). 0 or -1. */
static int acts(int8_t **xq, float **xs, int32_t **xsum, const float *x, int ldx, const struct qlinear *q, int n) {
    if (!(x = qlinear_input(x, ldx, q, n, 0, &ldx))) return -1; /* act order: the payload's column order */
    *xq = qlinear_scratch(0, (size_t)n * q->k4);
    *xs = qlinear_scratch(1, (size_t)n * sizeof(float));
    *xsum = q->zc ? qlinear_scratch(2, (size_t)n * q->n_groups * sizeof(int32_t)) : NULL;
    if (!*xq || !*xs || (q->zc && !*xsum)) return -1;
    quantize_acts(*xq, *xs, *xsum, x, ldx, q, n);
    if (qlinear_isa() >= QISA_AVX512) /* VNNI multiplies unsigned by signed bytes: x + 128 (sums taken first) */
        for (size_t i = 0; i < (size_t)n * q->k4; i++) (*xq)[i] = (int8_t)((uint8_t)(*xq)[i] ^ 0x80);
    return 0;
}

int qint8_forward_rows(float *out, int ldo, const float *x, int ldx, const struct qlinear *q, const float *b, int n,
                       int o0, int o1, int accumulate) {
    int8_t *xq;
    float *xs;
    int32_t *xsum;
    if (acts(&xq, &xs, &xsum, x, ldx, q, n)) return -1;
    rows_fn()(out, ldo, xq, xs, xsum, q, b, n, o0 / 16, (o1 + 15) / 16, accumulate);
    return 0;
}

int linear_qint8_forward(float *out, int ldo, const float *x, int ldx, const linear *l, int n, int accumulate) {
    const struct qlinear *q = l->q;
    if (n <= 0) return 0;
    int8_t *xq;
    float *xs;
    int32_t *xsum;
    if (acts(&xq, &xs, &xsum, x, ldx, q, n)) return -1;
    const qint8_rows_fn rows = rows_fn();
    const int n_rb = q->n_out16 / 16;
    int nt = qlinear_threads(n, q->n_out, q->n_in, (size_t)q->n_out16 * q->k4);
    if (nt > n_rb) nt = n_rb;
#pragma omp parallel num_threads(nt) if (nt > 1)
    {
        const int t = omp_get_thread_num(), cnt = omp_get_num_threads();
        const int rb0 = (int)((long)n_rb * t / cnt), rb1 = (int)((long)n_rb * (t + 1) / cnt);
        if (rb1 > rb0) rows(out, ldo, xq, xs, xsum, q, l->b, n, rb0, rb1, accumulate);
    }
    return 0;
}
