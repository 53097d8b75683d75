/* grid.c: the integer grid of a weight (scales and zero points per group, from the original weights),
 * round-to-nearest (RTN), FP8 E4M3 weights, and dynamic per-token activation fake quantization. */
#include <math.h>
#include <string.h>

#include "common/error.h"
#include "stages/quantize/quant.h"

#define SCALE_FLOOR 5.9604644775390625e-8 /* 2^-24: the smallest positive fp16 */

/* The nearest fp16-representable value of a positive s with at most `sig` significant bits (11: any
 * fp16 number; round half to even), as float: exports store scales in fp16 (GPTQ, GGUF) and must
 * give back exactly the weights smelt evaluated. With sig = 11 - bits, scale * z for any code z of
 * `bits` bits has at most 11 significant bits and an exponent >= -24: an fp16 number too (GGUF Q4_1
 * stores the minimum -scale * zero in fp16). */
static float scale_fp16(double s, int sig) {
    if (!(s > SCALE_FLOOR)) return (float)SCALE_FLOOR;
    int e;
    frexp(s, &e);                         /* s in [2^(e-1), 2^e) */
    int ue = e - 1 < -14 ? -14 : e - 1;   /* fp16 subnormals share the spacing of the lowest binade */
    double step = ldexp(1.0, ue - (sig - 1)); /* sig - 1 mantissa bits */
    if (step < SCALE_FLOOR) step = SCALE_FLOOR;
    double v = nearbyint(s / step) * step;
    if (v > 65504.0) v = 65504.0;         /* callers check the range; keep the value finite */
    return (float)v;
}

/* Scale and zero of one group from its range [lo, hi] (0 included, as every format needs 0 on the grid). */
static void grid_from_range(float *s, uint8_t *z, double lo, double hi, int bits, int sym, int sig) {
    const int maxq = (1 << bits) - 1;
    if (lo > 0) lo = 0;
    if (hi < 0) hi = 0;
    if (sym) {
        double m = fmax(-lo, hi);
        *s = scale_fp16(2.0 * m / maxq, sig);
        return;
    }
    *s = scale_fp16((hi - lo) / maxq, sig);
    double zz = nearbyint(-lo / *s);
    *z = (uint8_t)(zz < 0 ? 0 : zz > maxq ? maxq : zz);
}

int quant_grid_init(qweight *q, const float *w, int n_out, int n_in, const quant_grid *g, const uint8_t *dead) {
    memset(q, 0, sizeof *q);
    q->type = QW_INT;
    q->bits = g->bits;
    q->act = QA_NONE;
    q->n_out = n_out, q->n_in = n_in;
    q->group_size = g->group_size < 0 ? n_in : g->group_size;
    if (qweight_alloc(q, !g->sym, 0)) return -1;
    const int G = q->group_size, ng = n_in / G;
    for (int r = 0; r < n_out; r++)
        for (int gi = 0; gi < ng; gi++) {
            double lo = 0, hi = 0;
            for (int j = gi * G; j < (gi + 1) * G; j++) {
                if (dead && dead[j]) continue;
                double v = w[(size_t)r * n_in + j];
                if (!isfinite(v)) {
                    qweight_free(q);
                    return err_set(ERR_INPUT, "weight [%d, %d] is %g: a model with NaN or infinite weights cannot be "
                                   "quantized", r, j, v);
                }
                lo = v < lo ? v : lo, hi = v > hi ? v : hi;
            }
            uint8_t z = 0;
            grid_from_range(&q->scales[(size_t)r * ng + gi], &z, lo, hi, g->bits, g->sym,
                            g->scale_bits > 0 ? g->scale_bits : 11);
            if (q->zeros) q->zeros[(size_t)r * ng + gi] = z;
            if (fmax(-lo, hi) > 60000.0 * ((1 << g->bits) - 1) / 2) {
                qweight_free(q);
                return err_set(ERR_INPUT, "a weight of magnitude %g needs a scale beyond fp16's range (65504)", fmax(-lo, hi));
            }
        }
    return 0;
}

void quant_grid_set(qweight *q, int r, int gi, const double *x, int ldx) {
    double lo = 0, hi = 0;
    for (int j = 0; j < q->group_size; j++) {
        double v = x[(size_t)j * ldx];
        lo = v < lo ? v : lo, hi = v > hi ? v : hi;
    }
    const int ng = q->n_in / q->group_size;
    uint8_t z = 0;
    grid_from_range(&q->scales[(size_t)r * ng + gi], &z, lo, hi, q->bits, q->zeros == NULL, 11);
    if (q->zeros) q->zeros[(size_t)r * ng + gi] = z;
}

void quant_grid_codes(qweight *q, float *w_hat, const float *w, const uint8_t *dead) {
    const int G = q->group_size;
    for (int r = 0; r < q->n_out; r++)
        for (int j = 0; j < q->n_in; j++) {
            const size_t i = (size_t)r * q->n_in + j;
            int c = dead && dead[j] ? qweight_zero(q, r, j / G) : quant_code(q, r, j / G, w[i]);
            q->codes[i] = (uint8_t)c;
            w_hat[i] = quant_value(q, r, j / G, c);
        }
}

int quant_rtn(qweight *q, float *w_hat, const float *w, int n_out, int n_in, const quant_grid *g) {
    if (quant_grid_init(q, w, n_out, n_in, g, NULL)) return -1;
    quant_grid_codes(q, w_hat, w, NULL);
    return 0;
}

int quant_fp8(qweight *q, float *w_hat, const float *w, int n_out, int n_in, int per_channel, qa_type act) {
    memset(q, 0, sizeof *q);
    q->type = QW_FP8;
    q->act = act;
    q->n_out = n_out, q->n_in = n_in, q->group_size = n_in;
    if (qweight_alloc(q, 0, !per_channel)) return -1;
    const int n_rows = per_channel ? 1 : n_out; /* rows sharing one scale */
    for (int s0 = 0; s0 < n_out; s0 += n_rows) {
        float m = 0;
        for (size_t i = (size_t)s0 * n_in; i < (size_t)(s0 + n_rows) * n_in; i++) {
            if (!isfinite(w[i])) {
                qweight_free(q);
                return err_set(ERR_INPUT, "weight %zu is %g: a model with NaN or infinite weights cannot be quantized",
                               i, (double)w[i]);
            }
            m = fmaxf(m, fabsf(w[i]));
        }
        const float s = m > 0 ? m / 448.0f : 1.0f;
        q->scales[per_channel ? s0 : 0] = s;
        for (size_t i = (size_t)s0 * n_in; i < (size_t)(s0 + n_rows) * n_in; i++) {
            float x = fminf(fmaxf(w[i] / s, -448.0f), 448.0f);
            q->codes[i] = fp8_e4m3_from_float(x);
            w_hat[i] = s * fp8_e4m3_to_float(q->codes[i]);
        }
    }
    return 0;
}

void act_fake_quant(float *xq, const float *x, int n, int d, qa_type act) {
    for (int t = 0; t < n; t++) {
        const float *xr = x + (size_t)t * d;
        float *o = xq + (size_t)t * d;
        if (act == QA_NONE) {
            memcpy(o, xr, sizeof(float) * (size_t)d);
            continue;
        }
        float m = 0;
        for (int j = 0; j < d; j++) m = fmaxf(m, fabsf(xr[j]));
        if (act == QA_INT8) {
            const float s = m > 0 ? m / 127.0f : 1.0f;
            for (int j = 0; j < d; j++) o[j] = s * nearbyintf(xr[j] / s);
        } else {
            const float s = fmaxf(m / 448.0f, 1.0f / (448.0f * 512.0f));
            for (int j = 0; j < d; j++) o[j] = s * fp8_e4m3_to_float(fp8_e4m3_from_float(fminf(fmaxf(xr[j] / s, -448), 448)));
        }
    }
}
