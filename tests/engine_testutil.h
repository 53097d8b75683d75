/* engine_testutil.h: what the engine tests share: a seeded RNG, buffers, and comparisons that
 * count failures loudly (every check prints its measured error next to its tolerance). */
#ifndef SMELT_TESTS_ENGINE_TESTUTIL_H
#define SMELT_TESTS_ENGINE_TESTUTIL_H

#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"

static int tu_failures = 0;
static int tu_checks = 0;
static int tu_verbose = 0;

static uint64_t tu_rng = 0x9E3779B97F4A7C15ull;
static inline void tu_seed(uint64_t s) { tu_rng = s * 0x9E3779B97F4A7C15ull + 1; }
static inline uint64_t tu_next(void) {
    uint64_t x = tu_rng;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    tu_rng = x;
    return x * 0x2545F4914F6CDD1Dull;
}
static inline double tu_uniform(void) { return (double)(tu_next() >> 11) * (1.0 / 9007199254740992.0); }
static inline double tu_normal(void) {
    double u = tu_uniform() + 1e-300, v = tu_uniform();
    return sqrt(-2.0 * log(u)) * cos(2 * M_PI * v);
}

static inline float *tu_alloc(size_t n) {
    float *p = calloc(n ? n : 1, sizeof(float));
    if (!p) {
        fprintf(stderr, "out of memory (%zu floats)\n", n);
        exit(1);
    }
    return p;
}
static inline float *tu_randn(size_t n, double scale) {
    float *p = tu_alloc(n);
    for (size_t i = 0; i < n; i++) p[i] = (float)(scale * tu_normal());
    return p;
}
static inline float *tu_copy(const float *a, size_t n) {
    float *p = tu_alloc(n);
    memcpy(p, a, n * sizeof(float));
    return p;
}

/* Normalized max error max|got - ref| / max|ref| (or the absolute error when ref is all zero). */
static inline double tu_nerr(const float *got, const float *ref, size_t n) {
    double md = 0, mr = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - ref[i]);
        if (!(d == d)) return INFINITY; /* NaN */
        if (d > md) md = d;
        if (fabs(ref[i]) > mr) mr = fabs(ref[i]);
    }
    return mr > 0 ? md / mr : md;
}

static inline int tu_expect_close(const char *what, const float *got, const float *ref, size_t n, double tol) {
    double e = tu_nerr(got, ref, n);
    tu_checks++;
    int ok = e <= tol;
    if (!ok) tu_failures++;
    if (!ok || tu_verbose) printf("%s %-60s err %.3e  tol %.3e\n", ok ? "ok  " : "FAIL", what, e, tol);
    return ok;
}

static inline int tu_expect(int cond, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
#include <stdarg.h>
static inline int tu_expect(int cond, const char *fmt, ...) {
    tu_checks++;
    if (!cond) {
        tu_failures++;
        va_list ap;
        va_start(ap, fmt);
        printf("FAIL ");
        vprintf(fmt, ap);
        printf("\n");
        va_end(ap);
    }
    return cond;
}

static inline int tu_finish(const char *name) {
    printf("%s: %d checks, %d failures\n", name, tu_checks, tu_failures);
    return tu_failures ? 1 : 0;
}

#define TU_EPS ((double)FLT_EPSILON)

#endif
