/* swiglu.c: silu(gate) * up (see swiglu.h). silu(g) = g / (1 + exp(-g)), as torch computes it. */
#include "kernels/swiglu.h"

#include <math.h>
#include <stddef.h>

#include "kernels/fastmath.h"
#include "kernels/threads.h"

void swiglu_forward(float *h, const float *gate, const float *up, int ld_in, int n, int dim) {
    const int nt = kernels_threads_for((double)n * dim, THR_EXP_FLOATS);
#pragma omp parallel for schedule(static) num_threads(nt) if (nt > 1)
    for (int i = 0; i < n; i++) {
        const float *g = gate + (size_t)i * ld_in, *u = up + (size_t)i * ld_in;
        float *o = h + (size_t)i * dim;
        int j = 0;
        for (; j + FM_W <= dim; j += FM_W) {
            const fm_f16 gv = fm_ld(g + j);
            fm_st(o + j, gv / (1.0f + fm_exp16(-gv)) * fm_ld(u + j));
        }
        for (; j < dim; j++) o[j] = g[j] / (1.0f + fm_expf(-g[j])) * u[j];
    }
}

void swiglu_backward(float *dgate, float *dup, const float *dh, const float *gate, const float *up, int ld_in,
                     int n, int dim) {
    const int nt = kernels_threads_for((double)n * dim, THR_EXP_FLOATS);
#pragma omp parallel for schedule(static) num_threads(nt) if (nt > 1)
    for (int i = 0; i < n; i++) {
        const float *g = gate + (size_t)i * ld_in, *u = up + (size_t)i * ld_in, *d = dh + (size_t)i * dim;
        float *dg = dgate + (size_t)i * ld_in, *du = dup + (size_t)i * ld_in;
        int j = 0;
        for (; j + FM_W <= dim; j += FM_W) {
            const fm_f16 gj = fm_ld(g + j), uj = fm_ld(u + j), dj = fm_ld(d + j), s = fm_sigmoid16(gj);
            const fm_f16 silu = gj * s;
            fm_st(dg + j, dj * uj * (s * (1.0f + gj * (1.0f - s))));
            fm_st(du + j, dj * silu);
        }
        for (; j < dim; j++) {
            float gj = g[j], uj = u[j], s = fm_sigmoidf(gj);
            float silu = gj * s;
            dg[j] = d[j] * uj * (s * (1.0f + gj * (1.0f - s)));
            du[j] = d[j] * silu;
        }
    }
}

void swiglu_forward_ref(float *h, const float *gate, const float *up, int ld_in, int n, int dim) {
    for (int i = 0; i < n; i++)
        for (int j = 0; j < dim; j++) {
            double g = gate[(size_t)i * ld_in + j];
            h[(size_t)i * dim + j] = (float)(g / (1.0 + exp(-g)) * up[(size_t)i * ld_in + j]);
        }
}

void swiglu_backward_ref(float *dgate, float *dup, const float *dh, const float *gate, const float *up, int ld_in,
                         int n, int dim) {
    for (int i = 0; i < n; i++)
        for (int j = 0; j < dim; j++) {
            size_t a = (size_t)i * ld_in + j;
            double g = gate[a], u = up[a], d = dh[(size_t)i * dim + j], s = 1.0 / (1.0 + exp(-g));
            dgate[a] = (float)(d * u * s * (1.0 + g * (1.0 - s)));
            dup[a] = (float)(d * g * s);
        }
}
