/* fastmath.h: exp and sigmoid as straight-line float code, in a scalar form and a 16-lane form
 * (GCC/clang vector extensions: AVX-512 where -march has it, pairs of AVX2 registers otherwise),
 * because libm's expf does not vectorize and GCC at -O2 does not vectorize loops around an inlined
 * exp. Both forms do the same operations in the same order, so a row's tail (scalar) and body
 * (vector) agree bitwise with any split. Cephes expf polynomial after a round-to-nearest range
 * reduction: relative error about 2 ulp over the clamped range [-87.3, 88]; below -87.3 it returns
 * ~1e-38 instead of a denormal or 0, which no softmax or sigmoid here can tell apart. */
#ifndef SMELT_KERNELS_FASTMATH_H
#define SMELT_KERNELS_FASTMATH_H

#include <stdint.h>
#include <string.h>

/* The 16-lane types pass through static inline functions only, so the ABI note compilers give for
 * 64-byte vectors without AVX-512 (a Debug or fuzz build without -march=native) does not apply. */
#pragma GCC diagnostic ignored "-Wpsabi"

#define FM_W 16
typedef float fm_f16 __attribute__((vector_size(64)));
typedef int32_t fm_i16 __attribute__((vector_size(64)));

/* 1.5 * 2^23: adding then subtracting it rounds a float of magnitude < 2^22 to the nearest integer
 * (ties to even) in the default rounding mode; no fast-math flag may be in effect. */
#define FM_ROUND_MAGIC 12582912.0f

static inline float fm_expf(float x) {
    x = x < -87.3f ? -87.3f : x;
    x = x > 88.0f ? 88.0f : x;
    float t = x * 1.44269504088896341f + FM_ROUND_MAGIC;
    float n = t - FM_ROUND_MAGIC;
    float r = x - n * 0.693359375f;
    r = r + n * 2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    /* a NaN input (a model with non-finite weights) stays NaN through p; converting it to int
     * would be undefined */
    int32_t e = ((n == n ? (int32_t)n : 0) + 127) * (1 << 23);
    float s;
    memcpy(&s, &e, sizeof s);
    return p * s;
}

static inline float fm_sigmoidf(float x) { return 1.0f / (1.0f + fm_expf(-x)); }

static inline fm_f16 fm_ld(const float *p) {
    fm_f16 v;
    memcpy(&v, p, sizeof v);
    return v;
}
static inline void fm_st(float *p, fm_f16 v) { memcpy(p, &v, sizeof v); }
static inline fm_f16 fm_splat(float x) { return (fm_f16){0} + x; }
/* lanes of a where m is set (all ones), else of b */
static inline fm_f16 fm_sel(fm_i16 m, fm_f16 a, fm_f16 b) { return (fm_f16)((m & (fm_i16)a) | (~m & (fm_i16)b)); }
static inline fm_f16 fm_vmax(fm_f16 a, fm_f16 b) { return fm_sel(a > b, a, b); }
static inline float fm_hmax(fm_f16 v) {
    float m = v[0];
    for (int i = 1; i < FM_W; i++) m = v[i] > m ? v[i] : m;
    return m;
}
static inline double fm_hsum(fm_f16 v) {
    double s = 0;
    for (int i = 0; i < FM_W; i++) s += v[i];
    return s;
}

static inline fm_f16 fm_exp16(fm_f16 x) {
    x = fm_sel(x < -87.3f, fm_splat(-87.3f), x);
    x = fm_sel(x > 88.0f, fm_splat(88.0f), x);
    fm_f16 t = x * 1.44269504088896341f + FM_ROUND_MAGIC;
    fm_f16 n = t - FM_ROUND_MAGIC;
    fm_f16 r = x - n * 0.693359375f;
    r = r + n * 2.12194440e-4f;
    fm_f16 p = fm_splat(1.9875691500e-4f);
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    fm_i16 e = (__builtin_convertvector(n, fm_i16) + 127) * (1 << 23);
    return p * (fm_f16)e;
}

static inline fm_f16 fm_sigmoid16(fm_f16 x) { return 1.0f / (1.0f + fm_exp16(-x)); }

/* ---- rows ---- */

static inline float fm_row_max(const float *x, int n) {
    int j = 0;
    float m = -__builtin_inff();
    if (n >= FM_W) {
        fm_f16 vm = fm_ld(x);
        for (j = FM_W; j + FM_W <= n; j += FM_W) vm = fm_vmax(vm, fm_ld(x + j));
        m = fm_hmax(vm);
    }
    for (; j < n; j++) m = x[j] > m ? x[j] : m;
    return m;
}

/* e[j] = exp(x[j] - sub) for j < n (e may alias x; e NULL: not stored); returns the sum, in
 * float over blocks of 256 terms (16 per lane) and in double across blocks. */
static inline double fm_row_exp_sum(float *e, const float *x, int n, float sub) {
    double sum = 0;
    int j = 0;
    while (j + FM_W <= n) {
        fm_f16 acc = fm_splat(0);
        int end = j + 256 <= n ? j + 256 : n;
        for (; j + FM_W <= end; j += FM_W) {
            fm_f16 ev = fm_exp16(fm_ld(x + j) - sub);
            if (e) fm_st(e + j, ev);
            acc += ev;
        }
        sum += fm_hsum(acc);
    }
    for (; j < n; j++) {
        float ev = fm_expf(x[j] - sub);
        if (e) e[j] = ev;
        sum += ev;
    }
    return sum;
}

static inline void fm_row_scale(float *x, int n, float s) {
    int j = 0;
    for (; j + FM_W <= n; j += FM_W) fm_st(x + j, fm_ld(x + j) * s);
    for (; j < n; j++) x[j] *= s;
}

#endif
