/* rope.c: rotary embeddings (see rope.h). */
#include "kernels/rope.h"

#include <math.h>
#include <stddef.h>

#include "kernels/threads.h"

void rope_inv_freq(float *inv_freq, int head_dim, float theta, const rope_scaling *s) {
    int half = head_dim / 2;
    for (int i = 0; i < half; i++) {
        /* transformers: 1.0 / (base ** (arange(0, dim, 2).float() / dim)), all in fp32 */
        float e = (float)(2 * i) / (float)head_dim;
        inv_freq[i] = 1.0f / powf(theta, e);
    }
    if (!s || !s->llama3) return;
    /* transformers' _compute_llama3_parameters, in fp32 */
    float low_wavelen = (float)s->original_max_pos / s->low_freq_factor;
    float high_wavelen = (float)s->original_max_pos / s->high_freq_factor;
    for (int i = 0; i < half; i++) {
        float f = inv_freq[i];
        float wavelen = (float)(2 * M_PI) / f;
        float scaled = wavelen > low_wavelen ? f / s->factor : f;
        if (!(wavelen < high_wavelen) && !(wavelen > low_wavelen)) {
            float smooth = ((float)s->original_max_pos / wavelen - s->low_freq_factor) /
                           (s->high_freq_factor - s->low_freq_factor);
            scaled = (1 - smooth) * scaled / s->factor + smooth * scaled;
        }
        inv_freq[i] = scaled;
    }
}

void rope_tables(float *cos_t, float *sin_t, const float *inv_freq, int pos0, int n_pos, int half) {
    const int nt = kernels_threads_for((double)n_pos * half * 8, THR_ROW_FLOATS); /* cos and sin in double */
#pragma omp parallel for schedule(static) num_threads(nt) if (nt > 1)
    for (int p = 0; p < n_pos; p++)
        for (int i = 0; i < half; i++) {
            float a = (float)(pos0 + p) * inv_freq[i]; /* one fp32 rounding, as torch's matmul of K=1 */
            cos_t[(size_t)p * half + i] = (float)cos((double)a);
            sin_t[(size_t)p * half + i] = (float)sin((double)a);
        }
}

/* sign = +1: forward rotation; -1: its transpose. */
static void rope_apply(float *x, int ldx, const int *pos, const float *cos_t, const float *sin_t, int n,
                       int n_heads, int head_dim, float sign) {
    int half = head_dim / 2;
    const int nt = kernels_threads_for((double)n * n_heads * head_dim, THR_ROW_FLOATS);
#pragma omp parallel for schedule(static) num_threads(nt) if (nt > 1)
    for (int t = 0; t < n; t++) {
        const float *c = cos_t + (size_t)pos[t] * half, *s = sin_t + (size_t)pos[t] * half;
        for (int h = 0; h < n_heads; h++) {
            float *x1 = x + (size_t)t * ldx + (size_t)h * head_dim, *x2 = x1 + half;
#pragma omp simd
            for (int i = 0; i < half; i++) {
                float a = x1[i], b = x2[i], si = sign * s[i];
                x1[i] = a * c[i] - b * si;
                x2[i] = b * c[i] + a * si;
            }
        }
    }
}

void rope_forward(float *x, int ldx, const int *pos, const float *cos_t, const float *sin_t, int n, int n_heads,
                  int head_dim) {
    rope_apply(x, ldx, pos, cos_t, sin_t, n, n_heads, head_dim, 1.0f);
}

void rope_backward(float *dx, int ldx, const int *pos, const float *cos_t, const float *sin_t, int n,
                   int n_heads, int head_dim) {
    rope_apply(dx, ldx, pos, cos_t, sin_t, n, n_heads, head_dim, -1.0f);
}

static void rope_apply_ref(float *x, int ldx, const int *pos, const float *cos_t, const float *sin_t, int n,
                           int n_heads, int head_dim, double sign) {
    int half = head_dim / 2;
    for (int t = 0; t < n; t++)
        for (int h = 0; h < n_heads; h++)
            for (int i = 0; i < half; i++) {
                float *x1 = x + (size_t)t * ldx + (size_t)h * head_dim + i, *x2 = x1 + half;
                double c = cos_t[(size_t)pos[t] * half + i], s = sign * sin_t[(size_t)pos[t] * half + i];
                double a = *x1, b = *x2;
                *x1 = (float)(a * c - b * s);
                *x2 = (float)(b * c + a * s);
            }
}

void rope_forward_ref(float *x, int ldx, const int *pos, const float *cos_t, const float *sin_t, int n,
                      int n_heads, int head_dim) {
    rope_apply_ref(x, ldx, pos, cos_t, sin_t, n, n_heads, head_dim, 1.0);
}

void rope_backward_ref(float *dx, int ldx, const int *pos, const float *cos_t, const float *sin_t, int n,
                       int n_heads, int head_dim) {
    rope_apply_ref(dx, ldx, pos, cos_t, sin_t, n, n_heads, head_dim, -1.0);
}
