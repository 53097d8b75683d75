/* qweight.c: allocation, reference dequantization and sizes of quantized linear weights, and the
 * FP8 E4M3 conversions (see qweight.h). */
#include "kernels/qweight.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"

int qweight_alloc(qweight *q, int asym, int per_tensor) {
    q->codes = NULL, q->scales = NULL, q->zeros = NULL, q->g_idx = NULL, q->mins = NULL;
    if (q->n_out < 1 || q->n_in < 1)
        return err_set(ERR_INPUT, "quantized weight of shape [%d, %d]: both sizes must be positive", q->n_out, q->n_in);
    if (q->group_size < 1 || q->n_in % q->group_size)
        return err_set(ERR_INPUT, "group size %d does not divide the %d input columns; choose a divisor (or -1 for "
                       "one group per output channel)", q->group_size, q->n_in);
    if (q->type == QW_INT && (q->bits < 2 || q->bits > 8))
        return err_set(ERR_INPUT, "integer quantization needs 2 to 8 bits, not %d", q->bits);
    if (q->type == QW_FP8) {
        if (asym) return err_set(ERR_INPUT, "FP8 weights have no zero point");
        q->bits = 8;
    } else if (q->type != QW_INT) {
        return err_set(ERR_INPUT, "unknown quantized weight type %d", (int)q->type);
    }
    if (per_tensor && q->type != QW_FP8) return err_set(ERR_INPUT, "a single scale per tensor is an FP8 layout");
    const size_t n = (size_t)q->n_out * q->n_in, ng = (size_t)q->n_out * (q->n_in / q->group_size);
    q->n_scales = per_tensor ? 1 : (int)ng;
    q->codes = calloc(n, 1);
    q->scales = calloc((size_t)q->n_scales, sizeof(float));
    q->zeros = asym ? calloc(ng, 1) : NULL;
    if (!q->codes || !q->scales || (asym && !q->zeros)) {
        qweight_free(q);
        return err_set(ERR_NOMEM, "cannot allocate a quantized weight of shape [%d, %d]", q->n_out, q->n_in);
    }
    return 0;
}

void qweight_free(qweight *q) {
    free(q->codes), free(q->scales), free(q->zeros), free(q->g_idx), free(q->mins);
    q->codes = NULL, q->scales = NULL, q->zeros = NULL, q->g_idx = NULL, q->mins = NULL;
}

int qweight_alloc_mins(qweight *q) {
    if (q->type != QW_INT || q->zeros || !q->codes)
        return err_set(ERR_INPUT, "float minimums are for allocated integer weights without zero points");
    free(q->mins);
    q->mins = calloc((size_t)q->n_out * (q->n_in / q->group_size), sizeof(float));
    return q->mins ? 0 : err_set(ERR_NOMEM, "cannot allocate the minimums of a quantized weight");
}

int qweight_set_g_idx(qweight *q, const int32_t *g) {
    const int G = q->group_size, ng = q->n_in / G;
    int *count = calloc((size_t)ng, sizeof(int)), identity = 1;
    if (!count) return err_set(ERR_NOMEM, "cannot allocate the column groups of a quantized weight");
    for (int j = 0; j < q->n_in; j++) {
        if (g[j] < 0 || g[j] >= ng || ++count[g[j]] > G) {
            free(count);
            return err_set(ERR_INPUT, "g_idx[%d] = %d: the column groups must be %d groups of %d columns each "
                           "(act order permutes whole groups)", j, (int)g[j], ng, G);
        }
        identity &= g[j] == j / G;
    }
    free(count);
    free(q->g_idx);
    q->g_idx = NULL;
    if (identity) return 0;
    q->g_idx = malloc(sizeof(int32_t) * (size_t)q->n_in);
    if (!q->g_idx) return err_set(ERR_NOMEM, "cannot allocate the column groups of a quantized weight");
    memcpy(q->g_idx, g, sizeof(int32_t) * (size_t)q->n_in);
    return 0;
}

void qweight_dequantize(float *w, const qweight *q) {
    const int G = q->group_size, ng = q->n_in / G;
    for (int r = 0; r < q->n_out; r++)
        for (int j = 0; j < q->n_in; j++) {
            const size_t i = (size_t)r * q->n_in + j;
            const int g = qweight_group(q, j);
            const float s = q->n_scales == 1 ? q->scales[0] : q->scales[(size_t)r * ng + g];
            if (q->type == QW_FP8) w[i] = s * fp8_e4m3_to_float(q->codes[i]);
            else if (q->mins) w[i] = s * (float)q->codes[i] + q->mins[(size_t)r * ng + g];
            else w[i] = s * (float)((int)q->codes[i] - qweight_zero(q, r, g));
        }
}

size_t qweight_packed_bytes(const qweight *q) {
    const size_t n = (size_t)q->n_out * q->n_in, ng = (size_t)q->n_out * (q->n_in / q->group_size);
    size_t bytes = (n * (size_t)q->bits + 7) / 8 + (size_t)q->n_scales * 2;
    if (q->zeros) bytes += (ng * (size_t)q->bits + 7) / 8;
    if (q->mins) bytes += ng * 2; /* fp16, as GGUF Q4_1 stores them */
    return bytes;
}

float fp8_e4m3_to_float(uint8_t code) {
    const int sign = code >> 7, e = (code >> 3) & 15, m = code & 7;
    if (e == 15 && m == 7) return sign ? -NAN : NAN;
    float v = e ? ldexpf(1.0f + m / 8.0f, e - 7) : ldexpf((float)m, -9);
    return sign ? -v : v;
}

uint8_t fp8_e4m3_from_float(float x) {
    uint32_t bits;
    memcpy(&bits, &x, 4);
    const uint8_t sign = (uint8_t)((bits >> 31) << 7);
    if (isnan(x)) return sign | 0x7F;
    float a = fabsf(x);
    if (a >= 448.0f) return sign | 0x7E; /* saturate (see qweight.h) */
    /* The grid spacing in the binade of a is 2^(e-3) (3 mantissa bits); a / step and q * step are
     * exact (powers of two), so nearbyintf's round-half-to-even is the only rounding. */
    int e;
    frexpf(a, &e);           /* a = f * 2^e, f in [0.5, 1): the binade [2^(e-1), 2^e) */
    int ue = e - 1;          /* unbiased exponent of a */
    if (ue < -6) ue = -6;    /* subnormals share the spacing of the lowest normal binade */
    const float step = ldexpf(1.0f, ue - 3); /* 3 mantissa bits */
    float q = nearbyintf(a / step);          /* round half to even (default rounding mode); exact division */
    float v = q * step;
    if (v >= 448.0f) return sign | 0x7E;
    if (v == 0) return sign;
    int ve;
    frexpf(v, &ve);
    int be = ve - 1 + 7; /* biased exponent */
    if (be <= 0) return sign | (uint8_t)(v / ldexpf(1.0f, -9)); /* subnormal: m * 2^-9 */
    const int m = (int)(v / ldexpf(1.0f, ve - 1 - 3)) - 8;
    return sign | (uint8_t)(be << 3) | (uint8_t)m;
}

uint8_t fp8_e4m3_from_float_fast(float x) {
    uint32_t a;
    memcpy(&a, &x, 4);
    const uint8_t sign = (uint8_t)((a >> 24) & 0x80);
    a &= 0x7FFFFFFFu;
    if (a > 0x7F800000u) return sign | 0x7F; /* NaN */
    if (a >= 0x43E00000u) return sign | 0x7E; /* |x| >= 448 and infinities saturate */
    if (a < 0x3C800000u) {                    /* |x| < 2^-6: multiples of 2^-9; x * 2^9 is exact */
        float f;
        memcpy(&f, &a, 4);
        return sign | (uint8_t)nearbyintf(f * 512.0f); /* 0..8 (8: the smallest normal, code 0x08) */
    }
    /* normal: round the 23-bit mantissa to 3 bits, half to even (a carry moves to the exponent),
     * then rebias the exponent from 127 to 7; below 448 the result is at most 0x7E */
    a += 0x7FFFFu + ((a >> 20) & 1);
    return sign | (uint8_t)((a >> 20) - (120u << 3));
}
