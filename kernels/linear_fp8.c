/* linear_fp8.c: FP8 E4M3 weights x fp32 activations, or x FP8 activations quantized per token
 * (qlinear.h). Codes decode exactly (a 256-entry table of fp8_e4m3_to_float); a panel of rows is
 * dequantized at a time (scale * value, as qweight_dequantize) and multiplied in fp32 (qlinear.c).
 * FP8 activations are quantized and dequantized first (s_t * e4m3 value, one rounding), so the
 * product sees exactly the activations an FP8 engine would. */
#include <pthread.h>

#include "common/error.h"
#include "kernels/qlinear_internal.h"

static float fp8_table[256];
static pthread_once_t fp8_once = PTHREAD_ONCE_INIT;
static void fp8_table_init(void) {
    for (int c = 0; c < 256; c++) fp8_table[c] = fp8_e4m3_to_float((uint8_t)c);
}

void qfp8_dequant_rows(float *w, const struct qlinear *q, int o0, int o1) {
    pthread_once(&fp8_once, fp8_table_init);
    const int G = q->group_size, ng = q->n_groups;
    for (int o = o0; o < o1; o++) {
        float *wr = w + (size_t)(o - o0) * q->n_in;
        const uint8_t *cr = q->codes + (size_t)o * q->n_in;
        const float *s = q->scales + (size_t)o * ng;
        for (int g = 0; g < ng; g++)
            for (int j = g * G; j < (g + 1) * G; j++) wr[j] = s[g] * fp8_table[cr[j]];
    }
}

int linear_qfp8_forward(float *out, int ldo, const float *x, int ldx, const linear *l, int n, int accumulate) {
    const struct qlinear *q = l->q;
    if (q->act != QA_FP8) return qlinear_panel_forward(out, ldo, x, ldx, q, l->b, n, accumulate, qfp8_dequant_rows);
    pthread_once(&fp8_once, fp8_table_init);
    float *xd = qlinear_scratch(0, (size_t)n * q->n_in * sizeof(float));
    uint8_t *codes = qlinear_scratch(1, (size_t)q->n_in);
    if (!xd || !codes) return -1;
    for (int t = 0; t < n; t++) {
        float st;
        qlinear_quant_fp8(codes, &st, x + (size_t)t * ldx, q->n_in);
        for (int j = 0; j < q->n_in; j++) xd[(size_t)t * q->n_in + j] = st * fp8_table[codes[j]];
    }
    return qlinear_panel_forward(out, ldo, xd, q->n_in, q, l->b, n, accumulate, qfp8_dequant_rows);
}
