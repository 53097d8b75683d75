/* softmax.c: row softmax and cross-entropy (see softmax.h). Rows are split across threads. */
#include "kernels/softmax.h"

#include <math.h>
#include <stddef.h>

#include "kernels/fastmath.h"

/* e[j] = exp(x[j] - max) (e may alias x); returns the sum, *mx the max. */
static float row_exp(float *e, const float *x, int dim, float *mx_out) {
    float mx = -INFINITY;
    double sum = 0; /* in double: vocabulary rows reach 150k terms */
#pragma omp simd reduction(max : mx)
    for (int j = 0; j < dim; j++) mx = x[j] > mx ? x[j] : mx;
#pragma omp simd reduction(+ : sum)
    for (int j = 0; j < dim; j++) {
        e[j] = fm_expf(x[j] - mx);
        sum += e[j];
    }
    *mx_out = mx;
    return (float)sum;
}

void softmax_forward(float *out, const float *x, int n, int dim) {
#pragma omp parallel for schedule(static) if ((size_t)n * dim > 16384)
    for (int i = 0; i < n; i++) {
        float *o = out + (size_t)i * dim, mx;
        float inv = 1.0f / row_exp(o, x + (size_t)i * dim, dim, &mx);
#pragma omp simd
        for (int j = 0; j < dim; j++) o[j] *= inv;
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

void cross_entropy(float *losses, float *dlogits, const float *logits, const int *targets, const float *weights,
                   int n, int vocab) {
#pragma omp parallel for schedule(static) if ((size_t)n * vocab > 16384)
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
        double sum;
        if (d) {
            sum = row_exp(d, z, vocab, &mx);
            const float scale = (float)(w / sum);
#pragma omp simd
            for (int j = 0; j < vocab; j++) d[j] *= scale;
            d[t] -= w;
        } else {
            mx = -INFINITY;
            sum = 0;
#pragma omp simd reduction(max : mx)
            for (int j = 0; j < vocab; j++) mx = z[j] > mx ? z[j] : mx;
#pragma omp simd reduction(+ : sum)
            for (int j = 0; j < vocab; j++) sum += fm_expf(z[j] - mx);
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
