/* adamw.c: AdamW, sum of squares and clipping (see adamw.h). */
#include "kernels/adamw.h"

#include <immintrin.h>
#include <math.h>
#include <omp.h>
#include <stdint.h>

#include "kernels/threads.h"

/* The step's scalars, rounded to float where torch converts a Python float to the tensor's dtype. */
typedef struct {
    float keep, w1, b2, w2, neg_step, bc2_sqrt, eps, gs;
    int decay, scaled;
} adamw_k;

/* One element: each tensor operation is one fp32 rounding in torch's order (the code is built
 * with -ffp-contract=off, so a * b + c stays two roundings). */
static inline void adamw_one(float *p, float *m, float *v, const float *g, const adamw_k *k) {
    float pi = *p, gi = k->scaled ? *g * k->gs : *g;
    if (k->decay) pi = pi * k->keep;
    float mi = fmaf(k->w1, gi - *m, *m); /* exp_avg.lerp_(grad, 1 - beta1): fma(w, g - m, m) */
    float vi = *v * k->b2;
    vi = vi + k->w2 * gi * gi;
    float denom = sqrtf(vi) / k->bc2_sqrt + k->eps;
    *p = pi + k->neg_step * mi / denom;
    *m = mi;
    *v = vi;
}

/* Elements i0 .. i1-1 with AVX-512: the same operations lane by lane (IEEE multiply, fma, divide
 * and square root round exactly as the scalar ones, so the results are bitwise adamw_one's). The
 * three outputs are written with non-temporal stores when they share an alignment: p, m and v
 * are streams of 4 bytes per parameter that the step does not read again, and a plain store first
 * reads each line (10 streams of traffic instead of 7). */
#define AW_TARGET __attribute__((target("avx512f,fma")))
AW_TARGET static void adamw_avx512(float *p, float *m, float *v, const float *g, size_t i0, size_t i1, const adamw_k *k) {
    size_t i = i0;
    const int same = ((uintptr_t)p & 63) == ((uintptr_t)m & 63) && ((uintptr_t)p & 63) == ((uintptr_t)v & 63) &&
                     ((uintptr_t)p & 3) == 0;
    if (same)
        for (; i < i1 && ((uintptr_t)(p + i) & 63); i++) adamw_one(p + i, m + i, v + i, g + i, k);
    const __m512 keep = _mm512_set1_ps(k->keep), w1 = _mm512_set1_ps(k->w1), b2 = _mm512_set1_ps(k->b2),
                 w2 = _mm512_set1_ps(k->w2), ns = _mm512_set1_ps(k->neg_step), bc = _mm512_set1_ps(k->bc2_sqrt),
                 eps = _mm512_set1_ps(k->eps), gs = _mm512_set1_ps(k->gs);
    for (; i + 16 <= i1; i += 16) {
        __m512 pi = _mm512_loadu_ps(p + i), gi = _mm512_loadu_ps(g + i), mo = _mm512_loadu_ps(m + i);
        if (k->scaled) gi = _mm512_mul_ps(gi, gs);
        if (k->decay) pi = _mm512_mul_ps(pi, keep);
        const __m512 mi = _mm512_fmadd_ps(w1, _mm512_sub_ps(gi, mo), mo);
        __m512 vi = _mm512_mul_ps(_mm512_loadu_ps(v + i), b2);
        vi = _mm512_add_ps(vi, _mm512_mul_ps(_mm512_mul_ps(w2, gi), gi));
        const __m512 denom = _mm512_add_ps(_mm512_div_ps(_mm512_sqrt_ps(vi), bc), eps);
        const __m512 pn = _mm512_add_ps(pi, _mm512_div_ps(_mm512_mul_ps(ns, mi), denom));
        if (same) {
            _mm512_stream_ps(p + i, pn), _mm512_stream_ps(m + i, mi), _mm512_stream_ps(v + i, vi);
        } else {
            _mm512_storeu_ps(p + i, pn), _mm512_storeu_ps(m + i, mi), _mm512_storeu_ps(v + i, vi);
        }
    }
    for (; i < i1; i++) adamw_one(p + i, m + i, v + i, g + i, k);
    if (same) _mm_sfence(); /* the streamed lines are visible before the caller's barrier */
}

void adamw_update(float *p, float *m, float *v, const float *g, float grad_scale, size_t n, const adamw_hparams *h,
                  long step, int decay) {
    /* Scalars are computed in double and rounded to float where torch converts a Python float to
     * the tensor's dtype; each tensor operation is one fp32 rounding in torch's order. */
    const double bc1 = 1.0 - pow(h->beta1, (double)step), bc2 = 1.0 - pow(h->beta2, (double)step);
    const adamw_k k = {.keep = (float)(1.0 - h->lr * h->weight_decay), .w1 = (float)(1.0 - h->beta1),
                       .b2 = (float)h->beta2, .w2 = (float)(1.0 - h->beta2), .neg_step = (float)(-(h->lr / bc1)),
                       .bc2_sqrt = (float)sqrt(bc2), .eps = (float)h->eps, .gs = grad_scale,
                       .decay = decay && h->weight_decay != 0, .scaled = grad_scale != 1.0f};
    static int avx = -1;
    if (avx < 0) {
        __builtin_cpu_init();
        avx = __builtin_cpu_supports("avx512f");
    }
    const int nt = kernels_threads_for((double)n * 7, THR_STREAM_FLOATS); /* p, m, v read and written, g read */
#pragma omp parallel num_threads(nt) if (nt > 1)
    {
        const int t = omp_get_thread_num(), T = omp_get_num_threads();
        const size_t i0 = n * t / T / 16 * 16, i1 = t == T - 1 ? n : n * (t + 1) / T / 16 * 16;
        if (avx) adamw_avx512(p, m, v, g, i0, i1, &k);
        else
            for (size_t i = i0; i < i1; i++) adamw_one(p + i, m + i, v + i, g + i, &k);
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
