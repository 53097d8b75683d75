/* cuda_twin.h: what the CUDA twin tests share: moving host floats to and from the device in a
 * dtype, rounding host data to a dtype (so the CPU reference sees exactly the values the GPU reads),
 * and the element-wise check |got - ref| <= bound that every case reports as its worst ratio.
 *
 * Units of the bounds: EPS32 = 2^-23 per fp32 rounding (twice the unit roundoff: it also covers
 * truncating tensor-core accumulation and device intrinsics within 1 ulp), EPS64 = 2^-52, and the
 * unit roundoff of a storage dtype: u(f32) = 2^-24, u(bf16) = 2^-8, u(f16) = 2^-11, paid once when a
 * result is stored in that dtype, plus half its smallest subnormal for results too small for u
 * (2^-25 in fp16). */
#ifndef SMELT_TESTS_CUDA_TWIN_H
#define SMELT_TESTS_CUDA_TWIN_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "kernels/cuda/cuda_ops.h"
#include "model/safetensors.h"

#define EPS32 (1.0 / 8388608.0)
#define EPS64 (1.0 / 4503599627370496.0)

static inline double tw_u(cu_dtype dt) {
    return dt == CU_F32 ? 1.0 / 16777216.0 : dt == CU_BF16 ? 1.0 / 256.0 : 1.0 / 2048.0;
}
/* half the smallest subnormal of dt: the absolute error of storing a number too small for u */
static inline double tw_eta(cu_dtype dt) { return dt == CU_F32 ? 0x1p-150 : dt == CU_BF16 ? 0x1p-134 : 0x1p-25; }
/* the error of storing x in dt */
static inline double tw_st(cu_dtype dt, double x) { return tw_u(dt) * fabs(x) + tw_eta(dt); }

/* round to nearest even (NaN quieted), as __float2bfloat16 */
static inline uint16_t tw_bf16_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7f800000u) == 0x7f800000u && (u & 0x7fffffu)) return (uint16_t)((u >> 16) | 0x40u);
    return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}
static inline float tw_bf16_float(uint16_t b) {
    uint32_t u = (uint32_t)b << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}
/* fp16 through the project's own conversions (round to nearest even; no _Float16, which clang 14
 * lacks on x86): an implementation independent of the emulation's __float2half */
static inline uint16_t tw_f16_bits(float f) { return st_f32_to_f16(f); }
static inline float tw_f16_float(uint16_t b) { return st_f16_to_f32(b); }
static inline float tw_round(float x, cu_dtype dt) {
    return dt == CU_F32 ? x : dt == CU_BF16 ? tw_bf16_float(tw_bf16_bits(x)) : tw_f16_float(tw_f16_bits(x));
}
static inline void tw_round_n(float *x, size_t n, cu_dtype dt) {
    for (size_t i = 0; i < n; i++) x[i] = tw_round(x[i], dt);
}

/* ---- device buffers: every one is freed by tw_free_all at the end of a case ---- */

#define TW_MAX_BUFS 64
extern void *tw_bufs[TW_MAX_BUFS];
extern int tw_nbufs;
extern cu_ctx *tw_ctx;
extern int tw_failures, tw_cases;
extern uint64_t tw_rng;
/* the definitions, in the file with main() */
#define TW_GLOBALS                      \
    void *tw_bufs[TW_MAX_BUFS];         \
    int tw_nbufs, tw_failures, tw_cases; \
    cu_ctx *tw_ctx;                     \
    uint64_t tw_rng = 1

__attribute__((noreturn)) static inline void tw_die(const char *what) {
    fprintf(stderr, "FAIL: %s: %s\n", what, err_msg());
    exit(1);
}
#define TW_TRY(call)                    \
    do {                                \
        if ((call) != 0) tw_die(#call); \
    } while (0)
static inline void *tw_dev(size_t bytes) {
    void *p = NULL;
    if (tw_nbufs == TW_MAX_BUFS || cu_alloc(tw_ctx, &p, bytes, "a test buffer")) tw_die("device allocation");
    tw_bufs[tw_nbufs++] = p;
    return p;
}
static inline void tw_free_all(void) {
    for (int i = 0; i < tw_nbufs; i++) cu_free(tw_ctx, tw_bufs[i]);
    tw_nbufs = 0;
}
/* A device copy of h[n] in dtype dt (h should already be rounded to dt). */
static inline void *tw_put(const float *h, size_t n, cu_dtype dt) {
    void *d = tw_dev(n * cu_dtype_size(dt) + 16);
    if (dt == CU_F32) {
        if (cu_upload(tw_ctx, d, h, n * 4)) tw_die("upload");
    } else {
        uint16_t *b = malloc(n * 2 + 2);
        for (size_t i = 0; i < n; i++) b[i] = dt == CU_BF16 ? tw_bf16_bits(h[i]) : tw_f16_bits(h[i]);
        if (cu_upload(tw_ctx, d, b, n * 2) || cu_sync(tw_ctx)) tw_die("upload");
        free(b);
    }
    return d;
}
static inline void *tw_put_raw(const void *h, size_t bytes) {
    void *d = tw_dev(bytes + 16);
    if (cu_upload(tw_ctx, d, h, bytes) || cu_sync(tw_ctx)) tw_die("upload");
    return d;
}
/* h[n] = the device values d[n] of dtype dt, as floats (waits for the stream). */
static inline void tw_get(float *h, const void *d, size_t n, cu_dtype dt) {
    if (dt == CU_F32) {
        if (cu_download(tw_ctx, h, d, n * 4)) tw_die("download");
        return;
    }
    uint16_t *b = malloc(n * 2 + 2);
    if (cu_download(tw_ctx, b, d, n * 2)) tw_die("download");
    for (size_t i = 0; i < n; i++) h[i] = dt == CU_BF16 ? tw_bf16_float(b[i]) : tw_f16_float(b[i]);
    free(b);
}

/* ---- checks ---- */

/* The worst |got - ref| / bound over n elements (a NaN, or a difference where the bound is 0, is
 * infinite). */
static inline double tw_worst(const float *got, const double *ref, const double *bound, size_t n) {
    double w = 0;
    size_t at = 0;
    for (size_t i = 0; i < n; i++) {
        if ((double)got[i] == ref[i]) continue; /* infinities too */
        const double d = fabs((double)got[i] - ref[i]);
        const double r = !(d == d) ? INFINITY : bound[i] > 0 ? d / bound[i] : INFINITY;
        if (r > w) w = r, at = i;
    }
    if (w > 1 && getenv("SMELT_TWIN_VERBOSE")) /* where the worst element is, for debugging */
        fprintf(stderr, "  worst at %zu of %zu: got %.9g ref %.9g bound %.3g\n", at, n, got[at], ref[at], bound[at]);
    return w;
}
/* Prints the case's line and counts a failure when worst > 1. */
static inline void tw_report(const char *op, const char *shape, cu_dtype dt, const char *what, double worst) {
    tw_cases++;
    const int ok = worst <= 1.0;
    if (!ok) tw_failures++;
    printf("%-22s %-5s %-34s %-8s worst err/bound %8.3g  %s\n", op, cu_dtype_name(dt), shape, what, worst,
           ok ? "ok" : "FAIL");
}

static inline void tw_seed(uint64_t s) { tw_rng = s * 0x9E3779B97F4A7C15ull + 1; }
static inline double tw_uniform(void) {
    uint64_t x = tw_rng;
    x ^= x >> 12, x ^= x << 25, x ^= x >> 27;
    tw_rng = x;
    return (double)((x * 0x2545F4914F6CDD1Dull) >> 11) * (1.0 / 9007199254740992.0);
}
static inline double tw_normal(void) {
    double u = tw_uniform() + 1e-300, v = tw_uniform();
    return sqrt(-2.0 * log(u)) * cos(2 * M_PI * v);
}
/* n normal floats times scale, rounded to dt. */
static inline float *tw_randn(size_t n, double scale, cu_dtype dt) {
    float *p = malloc((n ? n : 1) * sizeof(float));
    for (size_t i = 0; i < n; i++) p[i] = tw_round((float)(scale * tw_normal()), dt);
    return p;
}
static inline double *tw_dalloc(size_t n) { return calloc(n ? n : 1, sizeof(double)); }
static inline float *tw_falloc(size_t n) { return calloc(n ? n : 1, sizeof(float)); }

/* Without a CUDA device: one line, and ctest's skip code, or a failure when SMELT_REQUIRE_GPU=1. */
static inline int tw_no_device(void) {
    printf("skipped: no CUDA device\n");
    const char *req = getenv("SMELT_REQUIRE_GPU");
    if (req && !strcmp(req, "1")) {
        fprintf(stderr, "FAIL: SMELT_REQUIRE_GPU=1 but no CUDA device is visible (nvidia-smi; CUDA_VISIBLE_DEVICES)\n");
        return 1;
    }
    return 77;
}

/* The attention cases (cuda_twin_attn.c) and one distillation case (cuda_twin_distill.c). */
void tw_attention_cases(int large);
void tw_distill_case(int n, int vocab, float temp, float wf, float wr, float wj, float beta, cu_dtype dt);
void tw_distill_refusals(void);

#endif
