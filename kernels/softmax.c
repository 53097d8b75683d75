/* softmax.c: row softmax and cross-entropy (see softmax.h). Rows are split across threads. */
#include "kernels/softmax.h"

#include <math.h>
#include <stddef.h>

#include "kernels/fastmath.h"
#include "kernels/threads.h"

/* e[j] = exp(x[j] - max) (e may alias x; NULL: not stored); returns the sum, *mx the max. */
static double row_exp(float *e, const float *x, int dim, float *mx_out) {
    const float mx = fm_row_max(x, dim);
    *mx_out = mx;
    return fm_row_exp_sum(e, x, dim, mx);
}

void softmax_forward(float *out, const float *x, int n, int dim) {
    const int nt = kernels_threads_for((double)n * dim, THR_EXP_FLOATS);
#pragma omp parallel for schedule(static) num_threads(nt) if (nt > 1)
    for (int i = 0; i < n; i++) {
        float *o = out + (size_t)i * dim, mx;
        fm_row_scale(o, dim, (float)(1.0 / row_exp(o, x + (size_t)i * dim, dim, &mx)));
    }
}

void softmax_forward_ref(float *out, const float *x, int n, int dim) {
    for (int i = 0; i < n; i++) {
        const float *xi = x + (size_t)i * dim;
        double mx = -INFINITY, sum = 0;
        for (int j = 0; j < dim; j++) mx = xi[j] > mx ? xi[j] : mx;
        for (int j = 0; j < dim; j++) sum += exp(xi[j] - mx);
        for (int j = 0; j < dim; j++) out[(size_t)i * dim + j] = (float)(exp(xi[j] - mx) / sum);
    }
}

void softmax_backward(float *dx, const float *y, const float *dy, int n, int dim) {
    const int nt = kernels_threads_for((double)n * dim, THR_EXP_FLOATS);
#pragma omp parallel for schedule(static) num_threads(nt) if (nt > 1)
    for (int i = 0; i < n; i++) {
        const float *yi = y + (size_t)i * dim, *gi = dy + (size_t)i * dim;
        float *di = dx + (size_t)i * dim;
        double dot = 0;
        int j = 0;
        while (j + FM_W <= dim) { /* float over 256-term blocks, double across (as the forward sums) */
            fm_f16 acc = fm_splat(0);
            const int end = j + 256 <= dim ? j + 256 : dim;
            for (; j + FM_W <= end; j += FM_W) acc += fm_ld(yi + j) * fm_ld(gi + j);
            dot += fm_hsum(acc);
        }
        for (; j < dim; j++) dot += yi[j] * gi[j];
        const float d = (float)dot;
#pragma omp simd
        for (j = 0; j < dim; j++) di[j] = yi[j] * (gi[j] - d);
    }
}

void softmax_backward_ref(float *dx, const float *y, const float *dy, int n, int dim) {
    for (int i = 0; i < n; i++) {
        const float *yi = y + (size_t)i * dim, *gi = dy + (size_t)i * dim;
        double dot = 0;
        for (int j = 0; j < dim; j++) dot += (double)yi[j] * gi[j];
        for (int j = 0; j < dim; j++) dx[(size_t)i * dim + j] = (float)(yi[j] * (gi[j] - dot));
    }
}

void cross_entropy(float *losses, float *dlogits, const float *logits, const int *targets, const float *weights,
                   int n, int vocab) {
    const int nt = kernels_threads_for((double)n * vocab, THR_EXP_FLOATS);
#pragma omp parallel for schedule(static) num_threads(nt) if (nt > 1)
    for (int i = 0; i < n; i++) {
        const float *z = logits + (size_t)i * vocab;
        float *d = dlogits ? dlogits + (size_t)i * vocab : NULL;
        const int t = targets[i];
        const float w = weights ? weights[i] : 1.0f;
        if (t < 0) {
            losses[i] = 0;
            if (d)
                for (int j = 0; j < vocab; j++) d[j] = 0;
            continue;
        }
        const float zt = z[t];
        float mx;
        const double sum = row_exp(d, z, vocab, &mx);
        if (d) {
            fm_row_scale(d, vocab, (float)(w / sum));
            d[t] -= w;
        }
        losses[i] = (float)(w * ((double)mx + log(sum) - zt));
    }
}

void cross_entropy_ref(float *losses, float *dlogits, const float *logits, const int *targets,
                       const float *weights, int n, int vocab) {
    for (int i = 0; i < n; i++) {
        const float *z = logits + (size_t)i * vocab;
        const int t = targets[i];
        const double w = weights ? weights[i] : 1.0;
        double mx = -INFINITY, sum = 0;
        for (int j = 0; j < vocab; j++) mx = z[j] > mx ? z[j] : mx;
        for (int j = 0; j < vocab; j++) sum += exp(z[j] - mx);
        losses[i] = t < 0 ? 0.0f : (float)(w * (mx + log(sum) - z[t]));
        if (dlogits)
            for (int j = 0; j < vocab; j++)
                dlogits[(size_t)i * vocab + j] = t < 0 ? 0.0f : (float)(w * (exp(z[j] - mx) / sum - (j == t)));
    }
}
