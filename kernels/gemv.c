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

/* R input rows against weight rows j .. j + J - 1; R and J are constants
 * at each call (always_inline) so that the R x J accumulators stay in registers. */
#define GEMV_BODY(LOADW)                                                                                   \
    __m512 acc[GEMV_MAX_ROWS][4];                                                                          \
    _Pragma("GCC unroll 8") for (int r = 0; r < R; r++)                                                    \
        _Pragma("GCC unroll 4") for (int q = 0; q < J; q++) acc[r][q] = _mm512_setzero_ps();               \
    int kb = 0;                                                                                            \
    for (; kb <= k; kb += 16) {                                                                            \
        const __mmask16 m = k - kb >= 16 ? (__mmask16)0xffff : tail_mask(k - kb);                          \
        if (!m) break;                                                                                     \
        __m512 wv[4];                                                                                      \
        _Pragma("GCC unroll 4") for (int q = 0; q < J; q++) wv[q] = LOADW(q, kb, m);                       \
        _Pragma("GCC unroll 8") for (int r = 0; r < R; r++) {                                              \
            const __m512 xv = _mm512_maskz_loadu_ps(m, x + (size_t)r * ldx + kb);                          \
            _Pragma("GCC unroll 4") for (int q = 0; q < J; q++) acc[r][q] = _mm512_fmadd_ps(xv, wv[q], acc[r][q]); \
        }                                                                                                  \
    }                                                                                                      \
    _Pragma("GCC unroll 8") for (int r = 0; r < R; r++)                                                    \
        _Pragma("GCC unroll 4") for (int q = 0; q < J; q++) {                                              \
            float *yp = y + (size_t)r * ldy + j + q;                                                       \
            const float v = _mm512_reduce_add_ps(acc[r][q]);                                               \
            *yp = accumulate ? *yp + v : v;                                                                \
        }

#define LOAD_F32(q, kb, m) _mm512_maskz_loadu_ps((m), w + (size_t)(j + (q)) * ldw + (kb))

#define G_INLINE G_TARGET static inline __attribute__((always_inline))
G_INLINE void rows_f32(float *y, int ldy, const float *x, int ldx, const float *w, int ldw, const int R, int j,
                       const int J, int k, int accumulate) {
    GEMV_BODY(LOAD_F32)
}

/* Weight rows j0..j1-1 against R input rows: J rows at a time (R J <= 8 accumulators), one at the
 * end; R is a constant in each instantiation. */
#define GEMV_SPAN(FN, WT)                                                                               \
    G_INLINE void FN##_span(float *y, int ldy, const float *x, int ldx, const WT *w, int ldw, const int R, \
                            int j0, int j1, int k, int accumulate) {                                    \
        const int J = R <= 2 ? 4 : R <= 4 ? 2 : 1;                                                      \
        int j = j0;                                                                                     \
        for (; j + J <= j1; j += J) FN(y, ldy, x, ldx, w, ldw, R, j, J, k, accumulate);                  \
        for (; j < j1; j++) FN(y, ldy, x, ldx, w, ldw, R, j, 1, k, accumulate);                         \
    }                                                                                                   \
    G_TARGET static void FN##_any(float *y, int ldy, const float *x, int ldx, const WT *w, int ldw, int R, \
                                  int j0, int j1, int k, int accumulate) {                              \
        switch (R) {                                                                                    \
        case 1: FN##_span(y, ldy, x, ldx, w, ldw, 1, j0, j1, k, accumulate); break;                      \
        case 2: FN##_span(y, ldy, x, ldx, w, ldw, 2, j0, j1, k, accumulate); break;                      \
        case 3: FN##_span(y, ldy, x, ldx, w, ldw, 3, j0, j1, k, accumulate); break;                      \
        case 4: FN##_span(y, ldy, x, ldx, w, ldw, 4, j0, j1, k, accumulate); break;                      \
        case 5: FN##_span(y, ldy, x, ldx, w, ldw, 5, j0, j1, k, accumulate); break;                      \
        case 6: FN##_span(y, ldy, x, ldx, w, ldw, 6, j0, j1, k, accumulate); break;                      \
        case 7: FN##_span(y, ldy, x, ldx, w, ldw, 7, j0, j1, k, accumulate); break;                      \
        default: FN##_span(y, ldy, x, ldx, w, ldw, 8, j0, j1, k, accumulate); break;                     \
        }                                                                                               \
    }
GEMV_SPAN(rows_f32, float)

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
