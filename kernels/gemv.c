/* gemv.c: weight-streaming products of a few rows (see gemv.h). Each y[r, j] is summed in 16
 * lanes over k (blocks of 16 in order, the tail masked), then the lanes are added in a fixed
 * tree: the same arithmetic whether a weight row is processed alone or beside others, so a split
 * of [0, n_out) among threads does not change any value. AVX-512 where the CPU has it (checked at
 * run time), else the same loops in plain C. */
#include "kernels/gemv.h"

#include <immintrin.h>
#include <math.h>

#define G_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,fma")))

void split_range(int n, int t, int nt, int align, int *lo, int *hi) {
    long per = ((long)n + nt - 1) / nt;
    per = (per + align - 1) / align * align;
    long a = per * t, b = a + per;
    *lo = (int)(a < n ? a : n);
    *hi = (int)(b < n ? b : n);
}

static int have_avx512(void) {
    static int v = -1;
    if (v < 0) {
        __builtin_cpu_init();
        v = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl");
    }
    return v;
}

static inline __mmask16 tail_mask(int n) { return (__mmask16)((1u << n) - 1); }

/* R input rows against weight row j, R a constant at each call (always_inline) so that the R
 * accumulators stay in registers. One weight row at a time, on purpose: the rows of [j0, j1) are
 * adjacent, so the reads form ONE ascending stream that the hardware prefetchers follow. Blocks of
 * 2-4 rows read side by side (independent accumulators, one pass over x) were 2.2x slower from
 * memory on Zen 4 (k = 576, 512 MiB of weights: 6.6 against 15.0 GB/s on one core, the plain
 * sum 15.0), the prefetchers losing interleaved streams 2-9 KB apart; one FMA chain per row (4
 * cycles per 64 bytes) is far above the memory rate. */
#define G_INLINE G_TARGET static inline __attribute__((always_inline))
G_INLINE void row_f32(float *y, int ldy, const float *x, int ldx, const float *w, int ldw, const int R, int j, int k,
                      int accumulate) {
    __m512 acc[GEMV_MAX_ROWS];
    _Pragma("GCC unroll 8") for (int r = 0; r < R; r++) acc[r] = _mm512_setzero_ps();
    const float *wr = w + (size_t)j * ldw;
    int kb = 0;
    for (; kb + 16 <= k; kb += 16) {
        const __m512 wv = _mm512_loadu_ps(wr + kb);
        _Pragma("GCC unroll 8") for (int r = 0; r < R; r++)
            acc[r] = _mm512_fmadd_ps(_mm512_loadu_ps(x + (size_t)r * ldx + kb), wv, acc[r]);
    }
    if (kb < k) { /* the tail, masked: zeros add nothing to the lanes */
        const __mmask16 m = tail_mask(k - kb);
        const __m512 wv = _mm512_maskz_loadu_ps(m, wr + kb);
        _Pragma("GCC unroll 8") for (int r = 0; r < R; r++)
            acc[r] = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, x + (size_t)r * ldx + kb), wv, acc[r]);
    }
    _Pragma("GCC unroll 8") for (int r = 0; r < R; r++) {
        float *yp = y + (size_t)r * ldy + j;
        const float v = _mm512_reduce_add_ps(acc[r]);
        *yp = accumulate ? *yp + v : v;
    }
}

/* Weight rows j0..j1-1 against R input rows, in order; R is a constant in each instantiation. */
#define ROWS_CASE(RC)                                                                                     \
    case RC:                                                                                              \
        for (int j = j0; j < j1; j++) row_f32(y, ldy, x, ldx, w, ldw, RC, j, k, accumulate);             \
        break;
G_TARGET static void rows_f32_any(float *y, int ldy, const float *x, int ldx, const float *w, int ldw, int R, int j0,
                                  int j1, int k, int accumulate) {
    switch (R) {
        ROWS_CASE(1)
        ROWS_CASE(2)
        ROWS_CASE(3)
        ROWS_CASE(4)
        ROWS_CASE(5)
        ROWS_CASE(6)
        ROWS_CASE(7)
    default:
        for (int j = j0; j < j1; j++) row_f32(y, ldy, x, ldx, w, ldw, 8, j, k, accumulate);
        break;
    }
}

/* Plain C in the same shape: 16 lane sums over k, then a tree over the lanes. */
static float lanes_sum(const float *l) {
    float a[8], b[4], c[2];
    for (int i = 0; i < 8; i++) a[i] = l[i] + l[i + 8];
    for (int i = 0; i < 4; i++) b[i] = a[i] + a[i + 4];
    for (int i = 0; i < 2; i++) c[i] = b[i] + b[i + 2];
    return c[0] + c[1];
}

static void row_plain(float *y, int ldy, const float *x, int ldx, const float *w, int ldw, int R, int j, int k,
                      int accumulate) {
    for (int r = 0; r < R; r++) {
        float l[16] = {0};
        const float *xr = x + (size_t)r * ldx;
        for (int kk = 0; kk < k; kk++) {
            l[kk % 16] = fmaf(xr[kk], w[(size_t)j * ldw + kk], l[kk % 16]);
        }
        float *yp = y + (size_t)r * ldy + j, v = lanes_sum(l);
        *yp = accumulate ? *yp + v : v;
    }
}

void gemv_f32(float *y, int ldy, const float *x, int ldx, const float *w, int ldw, int n_rows, int j0, int j1, int k,
              int accumulate) {
    if (!have_avx512()) {
        for (int j = j0; j < j1; j++) row_plain(y, ldy, x, ldx, w, ldw, n_rows, j, k, accumulate);
        return;
    }
    rows_f32_any(y, ldy, x, ldx, w, ldw, n_rows, j0, j1, k, accumulate);
}

void gemv_ref(float *y, int ldy, const float *x, int ldx, const float *w, const bf16 *w_bf16, int ldw, int n_rows, int j0,
              int j1, int k, int accumulate) {
    for (int r = 0; r < n_rows; r++)
        for (int j = j0; j < j1; j++) {
            double s = 0;
            for (int kk = 0; kk < k; kk++)
                s += (double)x[(size_t)r * ldx + kk] *
                     (w_bf16 ? bf16_to_f32(w_bf16[(size_t)j * ldw + kk]) : w[(size_t)j * ldw + kk]);
            float *yp = y + (size_t)r * ldy + j;
            *yp = (float)(accumulate ? *yp + s : s);
        }
}
