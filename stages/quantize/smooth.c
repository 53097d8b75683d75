/* smooth.c: SmoothQuant (Xiao et al. 2023): per input channel j, s_j = max|X_j|^alpha /
 * max|W_.j|^(1 - alpha) (both floored at 1e-5, as the reference implementation does), the weight
 * maximum taken over every linear that reads channel j. Dividing the preceding RMSNorm's weight by s and
 * multiplying the readers' columns by s leaves the float model's function unchanged (x/s times s W)
 * while moving the activations' outlier channels into the weights, which int8 per-channel weights
 * absorb better than int8 per-token activations. */
#include <math.h>

#include "stages/quantize/quant.h"

#define SMOOTH_FLOOR 1e-5

void smooth_scales(float *s, const float *act_max, const float *const *w, const int *n_out, int n_w, int n_in,
                   double alpha) {
    for (int j = 0; j < n_in; j++) {
        double wm = 0;
        for (int k = 0; k < n_w; k++)
            for (int r = 0; r < n_out[k]; r++) wm = fmax(wm, fabs((double)w[k][(size_t)r * n_in + j]));
        wm = fmax(wm, SMOOTH_FLOOR);
        double v = pow(fmax((double)act_max[j], 0.0), alpha) / pow(wm, 1.0 - alpha);
        s[j] = (float)fmax(v, SMOOTH_FLOOR);
    }
}

void smooth_apply(float *norm, float *const *w, const int *n_out, int n_w, int n_in, double *h, const float *s) {
    for (int j = 0; j < n_in; j++) norm[j] /= s[j];
    for (int k = 0; k < n_w; k++)
        for (int r = 0; r < n_out[k]; r++)
            for (int j = 0; j < n_in; j++) w[k][(size_t)r * n_in + j] *= s[j];
    if (h)
        for (int i = 0; i < n_in; i++)
            for (int j = 0; j < n_in; j++) h[(size_t)i * n_in + j] /= (double)s[i] * (double)s[j];
}
