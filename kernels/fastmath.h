/* fastmath.h: exp and sigmoid as straight-line float code that compilers vectorize inside
 * `#pragma omp simd` loops (libm's expf does not vectorize without -ffast-math). Cephes expf
 * polynomial: relative error about 2 ulp over the clamped range [-87.3, 88]; below -87.3 it
 * returns ~1e-38 instead of a denormal or 0, which no softmax or sigmoid here can tell apart. */
#ifndef SMELT_KERNELS_FASTMATH_H
#define SMELT_KERNELS_FASTMATH_H

#include <math.h>
#include <stdint.h>

#pragma omp declare simd
static inline float fm_expf(float x) {
    x = x < -87.3f ? -87.3f : x;
    x = x > 88.0f ? 88.0f : x;
    float n = floorf(x * 1.44269504088896341f + 0.5f);
    float r = x - n * 0.693359375f;
    r = r + n * 2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    union {
        int32_t i;
        float f;
    } s;
    s.i = ((int32_t)n + 127) << 23;
    return p * s.f;
}

#pragma omp declare simd
static inline float fm_sigmoidf(float x) { return 1.0f / (1.0f + fm_expf(-x)); }

#endif
