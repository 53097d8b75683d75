/* linear_wint.c: integer weights (2..8 bits, groups, zero points) x fp32 activations, "W4A16".
 * Never a fp32 copy of the whole weight: up to QLINEAR_GEMV_ROWS tokens a fused GEMV reads each
 * packed byte once and decodes it in registers; more tokens, a panel of rows at a time is
 * dequantized for sgemm (qlinear.c). Every family decodes a weight to exactly the float
 * qweight_dequantize gives, scale * (q - zero) (one rounding; q - zero is exact in any integer or
 * float type), so the families differ only in the order of the sums:
 *   portable  plain C;
 *   AVX2      8 columns a vector: bytes widened, low/high nibble by mask/shift, q - zero in int32,
 *             converted and scaled;
 *   AVX-512   16 columns a vector; 4-bit and narrower codes through a 16-entry table per group
 *             (s * (i - zero) for i = 0..15, in one register) indexed by vpermps, which reads the
 *             low 4 bits of each lane: a byte gives its low nibble as it is and its high nibble
 *             after one shift. Wider codes as AVX2.
 * The SIMD families need every vector of 16 columns inside one group (q->simd); the portable one
 * takes any group. */
#include <string.h>

#include "kernels/qlinear_internal.h"

#if defined(__x86_64__)
#include <immintrin.h>
#endif

/* ---- portable ---- */

void qwint_chunk(float *w, const struct qlinear *q, int o, int c) {
    const uint8_t *ch = ql_chunk(q, o, c);
    const int G = q->group_size, ng = q->n_groups, c0 = 1 << (q->bits - 1), j0 = c * QL_CHUNK;
    const size_t s0 = (size_t)o * ng; /* the row's first scale */
    int g = ng == 1 ? 0 : j0 / G, gend = ng == 1 ? 1 << 30 : (g + 1) * G;
    if (ql_has_mins(q)) { /* w = scale * q + min (GGUF Q4_1) */
        for (int i = 0; i < QL_CHUNK; i++) {
            const int j = j0 + i;
            if (j >= gend) g++, gend += G;
            const int code = q->chunk_bytes == 16 ? (i < 16 ? ch[i] & 15 : ch[i - 16] >> 4) : ch[i];
            w[i] = j < q->n_in ? ql_scale(q, s0 + g) * (float)code + ql_min(q, s0 + g) : 0;
        }
        return;
    }
    if (j0 + QL_CHUNK <= gend && j0 + QL_CHUNK <= q->n_in) { /* the chunk in one group: straight loops */
        const float sg = ql_scale(q, s0 + g);
        const int z = q->zeros ? q->zeros[(size_t)o * ng + g] : c0;
        if (q->chunk_bytes == 16)
            for (int i = 0; i < 16; i++) w[i] = sg * (float)((ch[i] & 15) - z), w[i + 16] = sg * (float)((ch[i] >> 4) - z);
        else
            for (int i = 0; i < QL_CHUNK; i++) w[i] = sg * (float)(ch[i] - z);
        return;
    }
    for (int i = 0; i < QL_CHUNK; i++) {
        const int j = j0 + i;
        if (j >= q->n_in) {
            w[i] = 0;
            continue;
        }
        if (j >= gend) g++, gend += G;
        const int code = q->chunk_bytes == 16 ? (i < 16 ? ch[i] & 15 : ch[i - 16] >> 4) : ch[i];
        const int z = q->zeros ? q->zeros[(size_t)o * ng + g] : c0;
        w[i] = ql_scale(q, s0 + g) * (float)(code - z);
    }
}

void qwint_dequant_portable(float *w, int ldw, const struct qlinear *q, int o0, int o1) {
    qlinear_dequant_chunks(w, ldw, q, o0, o1, qwint_chunk);
}

void qwint_gemv_portable(float *out, int ldo, const float *x, int ldx, const struct qlinear *q, const float *b, int n,
                         int o0, int o1, int accumulate) {
    qlinear_gemv_chunks(out, ldo, x, ldx, q, b, n, o0, o1, accumulate, qwint_chunk);
}

#if defined(__x86_64__)

/* The scale, zero point (0 with float minimums) and minimum (or 0) of group g of row o. */
/* (F16C's conversion for the fp16 payloads: one instruction; the SIMD targets include f16c) */
QL_AVX2 static inline float wint_scale(const struct qlinear *q, int o, int g) {
    const size_t i = (size_t)o * q->n_groups + g;
    return q->scales16 ? _cvtsh_ss(q->scales16[i]) : q->scales[i];
}
QL_AVX2 static inline int wint_zero(const struct qlinear *q, int o, int g) {
    return ql_has_mins(q) ? 0 : q->zeros ? q->zeros[(size_t)o * q->n_groups + g] : 1 << (q->bits - 1);
}
QL_AVX2 static inline float wint_min(const struct qlinear *q, int o, int g) {
    const size_t i = (size_t)o * q->n_groups + g;
    return q->mins16 ? _cvtsh_ss(q->mins16[i]) : q->mins ? q->mins[i] : 0.0f;
}

/* The column after group g (the padding columns past the last group stay in it: their
 * activations are zero). Vectors never straddle groups (q->simd). */
static inline int group_end(const struct qlinear *q, int g) {
    return g == q->n_groups - 1 ? 1 << 30 : (g + 1) * q->group_size;
}

/* The kernels below take the variant v (ql_wint_variant) as a constant: v & QL_V_NIB, codes of <= 4
 * bits in nibbles; v & QL_V_MIN, w = scale * q + min (else scale * (q - zero)). */

/* ---- AVX2: 8 columns a vector ---- */

#define I2 QL_AVX2 static inline __attribute__((always_inline))

typedef struct {
    __m256 s, m;
    __m256i z;
} wstate2;

I2 void state2(wstate2 *st, const struct qlinear *q, int o, int g) {
    st->s = _mm256_set1_ps(wint_scale(q, o, g));
    st->z = _mm256_set1_epi32(wint_zero(q, o, g));
    st->m = _mm256_set1_ps(wint_min(q, o, g));
}

/* The dequantized weights of columns p .. p+7 (p a multiple of 8) of the row whose chunk 0 is at
 * row (chunks QL_RB * chunk_bytes apart). */
I2 __m256 decode2(const uint8_t *row, int p, const wstate2 *st, const int v) {
    __m256i c;
    if (v & QL_V_NIB) { /* bytes p % 16 .. +7 of the chunk, low nibble for p % 32 < 16, else high */
        c = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(row + (size_t)(p >> 5) * QL_RB * 16 + (p & 15))));
        c = p & 16 ? _mm256_srli_epi32(c, 4) : _mm256_and_si256(c, _mm256_set1_epi32(15));
    } else {
        c = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(row + (size_t)(p >> 5) * QL_RB * 32 + (p & 31))));
    }
    const __m256 w = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(c, st->z)), st->s);
    return v & QL_V_MIN ? _mm256_add_ps(w, st->m) : w;
}

I2 void dequant2(float *w, int ldw, const struct qlinear *q, int o0, int o1, const int v) {
    const int K32 = qlinear_k32(q);
    for (int o = o0; o < o1; o++) {
        const uint8_t *row = ql_chunk(q, o, 0);
        float *wr = w + (size_t)(o - o0) * ldw;
        wstate2 st;
        int g = 0, gend = group_end(q, 0);
        state2(&st, q, o, 0);
        for (int p = 0; p < K32; p += 8) {
            if (p >= gend) state2(&st, q, o, ++g), gend = group_end(q, g);
            _mm256_storeu_ps(wr + p, decode2(row, p, &st, v));
        }
    }
}

QL_AVX2 void qwint_dequant_avx2(float *w, int ldw, const struct qlinear *q, int o0, int o1) {
    switch (ql_wint_variant(q)) {
    case 0: dequant2(w, ldw, q, o0, o1, 0); break;
    case 1: dequant2(w, ldw, q, o0, o1, 1); break;
    case 2: dequant2(w, ldw, q, o0, o1, 2); break;
    default: dequant2(w, ldw, q, o0, o1, 3); break;
    }
}

/* R tokens x J rows o .. o+J-1 (R, J, v constants after inlining). */
I2 void rows2(float *out, int ldo, const float *x, int ldx, const struct qlinear *q, const float *b, const int R, int o,
              const int J, int accumulate, const int v) {
    const int K32 = qlinear_k32(q);
    __m256 acc[QLINEAR_GEMV_ROWS][4];
    wstate2 st[4];
    QL_UNROLL for (int r = 0; r < R; r++)
        QL_UNROLL for (int j = 0; j < J; j++) acc[r][j] = _mm256_setzero_ps();
    int g = 0, gend = group_end(q, 0);
    QL_UNROLL for (int j = 0; j < J; j++) state2(&st[j], q, o + j, 0);
    for (int p = 0; p < K32; p += 8) {
        if (p >= gend) {
            gend = group_end(q, ++g);
            QL_UNROLL for (int j = 0; j < J; j++) state2(&st[j], q, o + j, g);
        }
        QL_UNROLL for (int j = 0; j < J; j++) {
            const __m256 w = decode2(ql_chunk(q, o + j, 0), p, &st[j], v);
            QL_UNROLL for (int r = 0; r < R; r++) acc[r][j] = _mm256_fmadd_ps(_mm256_loadu_ps(x + (size_t)r * ldx + p), w, acc[r][j]);
        }
    }
    QL_UNROLL for (int r = 0; r < R; r++)
        QL_UNROLL for (int j = 0; j < J; j++)
            qlinear_store(out + (size_t)r * ldo + o + j, ql_hsum8(acc[r][j]), b, o + j, accumulate);
}

QL_GEMV_ENTRY(qwint_gemv_avx2, QL_AVX2, rows2, QL_J_AVX2, ql_wint_variant(q))

/* ---- AVX-512: 16 columns a vector ---- */

#define I512 QL_AVX512 static inline __attribute__((always_inline))

typedef struct {
    __m512 tab; /* nibbles: the 16 weights of the codes i = 0..15 */
    __m512 s, m;
    __m512i z;
} wstate512;

I512 void state512(wstate512 *st, const struct qlinear *q, int o, int g, const int v) {
    const float s = wint_scale(q, o, g), m = wint_min(q, o, g);
    const int z = wint_zero(q, o, g);
    if (v & QL_V_NIB) {
        const __m512 iota = _mm512_setr_ps(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
        /* i - z is exact in float: the same single rounding as s * (float)(q - z); with minimums
         * s * i then + m, the two roundings of s * (float)q + m */
        st->tab = v & QL_V_MIN ? _mm512_add_ps(_mm512_mul_ps(iota, _mm512_set1_ps(s)), _mm512_set1_ps(m))
                               : _mm512_mul_ps(_mm512_sub_ps(iota, _mm512_set1_ps((float)z)), _mm512_set1_ps(s));
    } else {
        st->s = _mm512_set1_ps(s);
        st->z = _mm512_set1_epi32(z);
        st->m = _mm512_set1_ps(m);
    }
}

/* The dequantized weights of columns p .. p+15 (p a multiple of 16) of the row whose chunk 0 is
 * at row (chunks QL_RB * chunk_bytes apart). */
I512 __m512 decode512(const uint8_t *row, int p, const wstate512 *st, const int v) {
    if (v & QL_V_NIB) {
        __m512i c = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(row + (size_t)(p >> 5) * QL_RB * 16)));
        if (p & 16) c = _mm512_srli_epi32(c, 4);
        return _mm512_permutexvar_ps(c, st->tab);
    }
    const __m512i c = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(row + (size_t)(p >> 5) * QL_RB * 32 + (p & 31))));
    const __m512 w = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(c, st->z)), st->s);
    return v & QL_V_MIN ? _mm512_add_ps(w, st->m) : w;
}

I512 void dequant512(float *w, int ldw, const struct qlinear *q, int o0, int o1, const int v) {
    const int K32 = qlinear_k32(q);
    for (int o = o0; o < o1; o++) {
        const uint8_t *row = ql_chunk(q, o, 0);
        float *wr = w + (size_t)(o - o0) * ldw;
        wstate512 st;
        int g = 0, gend = group_end(q, 0);
        state512(&st, q, o, 0, v);
        for (int p = 0; p < K32; p += 16) {
            if (p >= gend) state512(&st, q, o, ++g, v), gend = group_end(q, g);
            _mm512_storeu_ps(wr + p, decode512(row, p, &st, v));
        }
    }
}

QL_AVX512 void qwint_dequant_avx512(float *w, int ldw, const struct qlinear *q, int o0, int o1) {
    switch (ql_wint_variant(q)) {
    case 0: dequant512(w, ldw, q, o0, o1, 0); break;
    case 1: dequant512(w, ldw, q, o0, o1, 1); break;
    case 2: dequant512(w, ldw, q, o0, o1, 2); break;
    default: dequant512(w, ldw, q, o0, o1, 3); break;
    }
}

I512 void rows512(float *out, int ldo, const float *x, int ldx, const struct qlinear *q, const float *b, const int R,
                  int o, const int J, int accumulate, const int v) {
    const int K32 = qlinear_k32(q);
    __m512 acc[QLINEAR_GEMV_ROWS][4];
    wstate512 st[4];
    QL_UNROLL for (int r = 0; r < R; r++)
        QL_UNROLL for (int j = 0; j < J; j++) acc[r][j] = _mm512_setzero_ps();
    int g = 0, gend = group_end(q, 0);
    QL_UNROLL for (int j = 0; j < J; j++) state512(&st[j], q, o + j, 0, v);
    if (v & QL_V_NIB) /* a chunk of 32 columns per step, its 16 bytes loaded once for both halves */
        for (int p = 0; p < K32; p += 32) {
            __m512i c[4];
            if (p >= gend) {
                gend = group_end(q, ++g);
                QL_UNROLL for (int j = 0; j < J; j++) state512(&st[j], q, o + j, g, v);
            }
            QL_UNROLL for (int j = 0; j < J; j++) {
                c[j] = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)ql_chunk(q, o + j, p >> 5)));
                const __m512 w = _mm512_permutexvar_ps(c[j], st[j].tab);
                QL_UNROLL for (int r = 0; r < R; r++)
                    acc[r][j] = _mm512_fmadd_ps(_mm512_loadu_ps(x + (size_t)r * ldx + p), w, acc[r][j]);
            }
            if (p + 16 >= gend) {
                gend = group_end(q, ++g);
                QL_UNROLL for (int j = 0; j < J; j++) state512(&st[j], q, o + j, g, v);
            }
            QL_UNROLL for (int j = 0; j < J; j++) {
                const __m512 w = _mm512_permutexvar_ps(_mm512_srli_epi32(c[j], 4), st[j].tab);
                QL_UNROLL for (int r = 0; r < R; r++)
                    acc[r][j] = _mm512_fmadd_ps(_mm512_loadu_ps(x + (size_t)r * ldx + p + 16), w, acc[r][j]);
            }
        }
    else
        for (int p = 0; p < K32; p += 16) {
            if (p >= gend) {
                gend = group_end(q, ++g);
                QL_UNROLL for (int j = 0; j < J; j++) state512(&st[j], q, o + j, g, v);
            }
            QL_UNROLL for (int j = 0; j < J; j++) {
                const __m512 w = decode512(ql_chunk(q, o + j, 0), p, &st[j], v);
                QL_UNROLL for (int r = 0; r < R; r++)
                    acc[r][j] = _mm512_fmadd_ps(_mm512_loadu_ps(x + (size_t)r * ldx + p), w, acc[r][j]);
            }
        }
    QL_UNROLL for (int r = 0; r < R; r++)
        QL_UNROLL for (int j = 0; j < J; j++)
            qlinear_store(out + (size_t)r * ldo + o + j, _mm512_reduce_add_ps(acc[r][j]), b, o + j, accumulate);
}

QL_GEMV_ENTRY(qwint_gemv_avx512, QL_AVX512, rows512, QL_J_AVX512, ql_wint_variant(q))

#endif

int linear_qwint_forward(float *out, int ldo, const float *x, int ldx, const linear *l, int n, int accumulate) {
    return qlinear_float_forward(out, ldo, x, ldx, l->q, l->b, n, accumulate, 0);
}
