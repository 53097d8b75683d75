/* linear_wint.c: integer weights (2..8 bits, groups, zero points) x fp32 activations, "W4A16":
 * the weights are dequantized inside the product, a panel of rows at a time (qlinear.c), never as
 * a fp32 copy of the whole matrix. The panel holds exactly the floats qweight_dequantize gives
 * (scale * (q - zero)), whichever kernel family unpacks them. */
#include "kernels/qlinear_internal.h"

void qwint_dequant_rows(float *w, const struct qlinear *q, int o0, int o1) {
    const int G = q->group_size, ng = q->n_groups, c = 1 << (q->bits - 1);
    for (int o = o0; o < o1; o++) {
        float *wr = w + (size_t)(o - o0) * q->n_in;
        const float *s = q->scales + (size_t)o * ng;
        for (int g = 0; g < ng; g++) {
            const int z = q->zeros ? q->zeros[(size_t)o * ng + g] : c;
            for (int j = g * G; j < (g + 1) * G; j++) wr[j] = s[g] * (float)(qwint_code(q, o, j) - z);
        }
    }
}

int linear_qwint_forward(float *out, int ldo, const float *x, int ldx, const linear *l, int n, int accumulate) {
    return qlinear_panel_forward(out, ldo, x, ldx, l->q, l->b, n, accumulate, qwint_dequant_rows);
}
