/* rmsnorm.c: RMSNorm forward and backward (see rmsnorm.h). Rows are split across threads; the
 * weight gradient is reduced per column block in row order, independent of the thread count. */
#include "kernels/rmsnorm.h"

#include <math.h>
#include <stddef.h>

#include "kernels/threads.h"

void rmsnorm_forward(float *out, float *rstd, const float *x, const float *w, int n, int d, float eps) {
    const int nt = kernels_threads_for((double)n * d, THR_ROW_FLOATS);
#pragma omp parallel for schedule(static) num_threads(nt) if (nt > 1)
    for (int i = 0; i < n; i++) {
        const float *xi = x + (size_t)i * d;
        float *oi = out + (size_t)i * d;
        float ss = 0;
#pragma omp simd reduction(+ : ss)
        for (int j = 0; j < d; j++) ss += xi[j] * xi[j];
        float r = 1.0f / sqrtf(ss / (float)d + eps);
        if (rstd) rstd[i] = r;
#pragma omp simd
        for (int j = 0; j < d; j++) oi[j] = w[j] * (xi[j] * r);
    }
}

void rmsnorm_backward(float *dx, float *dw, const float *dout, const float *x, const float *w, const float *rstd,
                      int n, int d) {
    const int nt = kernels_threads_for(2.0 * n * d, THR_ROW_FLOATS);
#pragma omp parallel num_threads(nt) if (nt > 1)
    {
#pragma omp for schedule(static)
        for (int i = 0; i < n; i++) {
            const float *xi = x + (size_t)i * d, *gi = dout + (size_t)i * d;
            float *dxi = dx + (size_t)i * d;
            float r = rstd[i], dot = 0;
#pragma omp simd reduction(+ : dot)
            for (int j = 0; j < d; j++) dot += w[j] * gi[j] * xi[j];
            float c = r * r * r * dot / (float)d;
#pragma omp simd
            for (int j = 0; j < d; j++) dxi[j] += r * (w[j] * gi[j]) - c * xi[j];
        }
        int n_blocks = (d + 63) / 64;
#pragma omp for schedule(static)
        for (int bk = 0; bk < n_blocks; bk++) {
            int j0 = bk * 64, j1 = j0 + 64 < d ? j0 + 64 : d;
            float acc[64] = {0};
            for (int i = 0; i < n; i++) {
                const float *xi = x + (size_t)i * d, *gi = dout + (size_t)i * d;
                float r = rstd[i];
#pragma omp simd
                for (int j = j0; j < j1; j++) acc[j - j0] += gi[j] * (xi[j] * r);
            }
            for (int j = j0; j < j1; j++) dw[j] += acc[j - j0];
        }
    }
}

void rmsnorm_forward_ref(float *out, float *rstd, const float *x, const float *w, int n, int d, float eps) {
    for (int i = 0; i < n; i++) {
        const float *xi = x + (size_t)i * d;
        double ss = 0;
        for (int j = 0; j < d; j++) ss += (double)xi[j] * xi[j];
        double r = 1.0 / sqrt(ss / d + eps);
        if (rstd) rstd[i] = (float)r;
        for (int j = 0; j < d; j++) out[(size_t)i * d + j] = (float)(w[j] * (xi[j] * r));
    }
}

void rmsnorm_backward_ref(float *dx, float *dw, const float *dout, const float *x, const float *w,
                          const float *rstd, int n, int d) {
    for (int i = 0; i < n; i++) {
        const float *xi = x + (size_t)i * d, *gi = dout + (size_t)i * d;
        double r = rstd[i], dot = 0;
        for (int j = 0; j < d; j++) dot += (double)w[j] * gi[j] * xi[j];
        for (int j = 0; j < d; j++) dx[(size_t)i * d + j] += (float)(r * w[j] * gi[j] - r * r * r * dot / d * xi[j]);
    }
    for (int j = 0; j < d; j++) {
        double s = 0;
        for (int i = 0; i < n; i++) s += (double)dout[(size_t)i * d + j] * x[(size_t)i * d + j] * rstd[i];
        dw[j] += (float)s;
    }
}
