/* adamw.c: AdamW, sum of squares and clipping (see adamw.h). */
#include "kernels/adamw.h"

#include <math.h>

#include "kernels/threads.h"

void adamw_update(float *p, float *m, float *v, const float *g, float grad_scale, size_t n, const adamw_hparams *h,
                  long step, int decay) {
    /* Scalars are computed in double and rounded to float where torch converts a Python float to
     * the tensor's dtype; each tensor operation is one fp32 rounding in torch's order. */
    const float keep = (float)(1.0 - h->lr * h->weight_decay);
    const float w1 = (float)(1.0 - h->beta1); /* exp_avg.lerp_(grad, 1 - beta1): fma(w, g - m, m) */
    const float b2 = (float)h->beta2, w2 = (float)(1.0 - h->beta2);
    const double bc1 = 1.0 - pow(h->beta1, (double)step), bc2 = 1.0 - pow(h->beta2, (double)step);
    const float neg_step = (float)(-(h->lr / bc1)), bc2_sqrt = (float)sqrt(bc2), eps = (float)h->eps;
    const int do_decay = decay && h->weight_decay != 0;
    const int nt = kernels_threads_for((double)n * 7, THR_STREAM_FLOATS); /* p, m, v read and written, g read */
#pragma omp parallel for simd schedule(static) num_threads(nt) if (nt > 1)
    for (size_t i = 0; i < n; i++) {
        float pi = p[i], gi = grad_scale == 1.0f ? g[i] : g[i] * grad_scale;
        if (do_decay) pi = pi * keep;
        float mi = fmaf(w1, gi - m[i], m[i]);
        float vi = v[i] * b2;
        vi = vi + w2 * gi * gi;
        float denom = sqrtf(vi) / bc2_sqrt + eps;
        p[i] = pi + neg_step * mi / denom;
        m[i] = mi;
        v[i] = vi;
    }
}

void adamw_update_ref(float *p, float *m, float *v, const float *g, float grad_scale, size_t n,
                      const adamw_hparams *h, long step, int decay) {
    double bc1 = 1.0 - pow(h->beta1, (double)step), bc2 = 1.0 - pow(h->beta2, (double)step);
    for (size_t i = 0; i < n; i++) {
        double pi = p[i], gi = (double)g[i] * grad_scale;
        if (decay) pi *= 1.0 - h->lr * h->weight_decay;
        double mi = h->beta1 * m[i] + (1 - h->beta1) * gi;
        double vi = h->beta2 * v[i] + (1 - h->beta2) * gi * gi;
        pi -= h->lr / bc1 * mi / (sqrt(vi) / sqrt(bc2) + h->eps);
        p[i] = (float)pi;
        m[i] = (float)mi;
        v[i] = (float)vi;
    }
}

#define SUMSQ_MAX_BLOCKS 256

double sum_squares(const float *x, size_t n) {
    size_t bs = n / SUMSQ_MAX_BLOCKS + 1;
    if (bs < 4096) bs = 4096;
    int nb = (int)((n + bs - 1) / bs);
    double part[SUMSQ_MAX_BLOCKS + 1];
    const int nt = kernels_threads_for((double)n, THR_STREAM_FLOATS);
#pragma omp parallel for schedule(static) num_threads(nt) if (nt > 1)
    for (int b = 0; b < nb; b++) {
        size_t i0 = (size_t)b * bs, i1 = i0 + bs < n ? i0 + bs : n;
        double s = 0;
#pragma omp simd reduction(+ : s)
        for (size_t i = i0; i < i1; i++) s += (double)x[i] * x[i];
        part[b] = s;
    }
    double s = 0;
    for (int b = 0; b < nb; b++) s += part[b];
    return s;
}

double sum_squares_ref(const float *x, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; i++) s += (double)x[i] * x[i];
    return s;
}

void scale_floats(float *x, size_t n, float s) {
    const int nt = kernels_threads_for(2.0 * n, THR_STREAM_FLOATS);
#pragma omp parallel for simd schedule(static) num_threads(nt) if (nt > 1)
    for (size_t i = 0; i < n; i++) x[i] *= s;
}

double clip_grad_norm(float *g, size_t n, double max_norm) {
    double norm = sqrt(sum_squares(g, n));
    if (max_norm > 0 && norm > max_norm) scale_floats(g, n, (float)(max_norm / (norm + 1e-6)));
    return norm;
}
