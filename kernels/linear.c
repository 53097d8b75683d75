/* linear.c: the linear layer over matmul(), gemm_bf16() and the weight-streaming products (see
 * linear.h). */
#include "kernels/linear.h"

#include <omp.h>
#include <stddef.h>
#include <stdlib.h>

#include "common/error.h"
#include "kernels/gemv.h"
#include "kernels/matmul.h"
#include "kernels/qlinear.h"
#include "kernels/threads.h"

linear linear_f32(const float *w, const float *b, int n_out, int n_in) {
    linear l = {.format = LINEAR_F32, .n_out = n_out, .n_in = n_in, .w = w, .b = b, .q = NULL};
    return l;
}

linear linear_bf16(const gemm_bf16_b *pw, const float *b) {
    linear l = {.format = LINEAR_BF16, .n_out = pw->n, .n_in = pw->k, .w = NULL, .b = b, .q = pw};
    return l;
}

static void add_bias(float *out, int ldo, const float *b, int n, int j0, int j1) {
    const int nt = kernels_threads_for((double)n * (j1 - j0), THR_ROW_FLOATS);
#pragma omp parallel for schedule(static) num_threads(nt) if (nt > 1)
    for (int i = 0; i < n; i++) {
        float *o = out + (size_t)i * ldo;
#pragma omp simd
        for (int j = j0; j < j1; j++) o[j] += b[j];
    }
}

int linear_forward_cols(float *out, int ldo, const float *x, int ldx, const linear *l, int n, int j0, int j1,
                        int accumulate) {
    if (n > GEMV_MAX_ROWS)
        return err_set(ERR_INTERNAL, "linear_forward_cols: %d rows (at most %d)", n, GEMV_MAX_ROWS);
    switch (l->format) {
    case LINEAR_F32: gemv_f32(out, ldo, x, ldx, l->w, l->n_in, n, j0, j1, l->n_in, accumulate); break;
    case LINEAR_BF16: gemv_bf16_packed(out, ldo, x, ldx, (const gemm_bf16_b *)l->q, n, j0, j1, accumulate); break;
    case LINEAR_QINT8:
    case LINEAR_QWINT:
    case LINEAR_QFP8: /* the quantized GEMVs, bias included; every row summed as linear_forward sums it */
        return qlinear_forward_cols(out, ldo, x, ldx, l, n, j0, j1, accumulate);
    default: return err_set(ERR_INTERNAL, "linear layer format %d has no column-range forward", (int)l->format);
    }
    if (l->b)
        for (int i = 0; i < n; i++)
            for (int j = j0; j < j1; j++) out[(size_t)i * ldo + j] += l->b[j];
    return 0;
}

int linear_streams(const linear *l) {
    return l->format == LINEAR_F32 || l->format == LINEAR_BF16 || l->format == LINEAR_QINT8 || l->format == LINEAR_QWINT ||
           l->format == LINEAR_QFP8;
}
int linear_col_align(const linear *l) { return l->format == LINEAR_BF16 ? GEMM_BF16_NR : 16; }

/* Few rows: every thread streams its share of the weight rows once (outputs in multiples of 16). */
static int forward_streamed(float *out, int ldo, const float *x, int ldx, const linear *l, int n, int accumulate) {
    const size_t bytes = (size_t)l->n_out * l->n_in * (l->format == LINEAR_BF16 ? 2 : 4);
    const int nt = kernels_threads_for((double)bytes / 4, THR_GEMV_FLOATS);
    int rc = 0;
#pragma omp parallel num_threads(nt) if (nt > 1) reduction(| : rc)
    {
        int lo, hi;
        split_range(l->n_out, omp_get_thread_num(), omp_get_num_threads(), linear_col_align(l), &lo, &hi);
        if (hi > lo) rc |= linear_forward_cols(out, ldo, x, ldx, l, n, lo, hi, accumulate) != 0;
    }
    return rc ? -1 : 0;
}

int linear_forward(float *out, int ldo, const float *x, int ldx, const linear *l, int n, int accumulate) {
    if (n <= 0) return 0;
    /* fp32 with 2..GEMV_MAX_ROWS rows stays on matmul: its rows are bitwise independent of how
     * many rows a call has (LM-head chunks of any size give the same logits) */
    if ((l->format == LINEAR_F32 && n == 1 && !l->bf16_compute) || (l->format == LINEAR_BF16 && n <= GEMV_MAX_ROWS))
        return forward_streamed(out, ldo, x, ldx, l, n, accumulate);
    switch (l->format) {
    case LINEAR_F32:
        if (l->bf16_compute) {
            if (gemm_bf16(out, ldo, x, ldx, 0, l->w, l->n_in, 1, n, l->n_out, l->n_in, 1.0f, accumulate ? 1.0f : 0.0f))
                return -1;
        } else {
            matmul(out, ldo, x, ldx, 0, l->w, l->n_in, 1, n, l->n_out, l->n_in, 1.0f, accumulate ? 1.0f : 0.0f);
        }
        if (l->b) add_bias(out, ldo, l->b, n, 0, l->n_out);
        return 0;
    case LINEAR_BF16:
        if (gemm_bf16_packed(out, ldo, x, ldx, 0, (const gemm_bf16_b *)l->q, n, 1.0f, accumulate ? 1.0f : 0.0f))
            return -1;
        if (l->b) add_bias(out, ldo, l->b, n, 0, l->n_out);
        return 0;
    case LINEAR_QINT8: return linear_qint8_forward(out, ldo, x, ldx, l, n, accumulate);
    case LINEAR_QWINT: return linear_qwint_forward(out, ldo, x, ldx, l, n, accumulate);
    case LINEAR_QFP8: return linear_qfp8_forward(out, ldo, x, ldx, l, n, accumulate);
    }
    return err_set(ERR_INTERNAL, "linear layer format %d is not supported by this build", (int)l->format);
}

int linear_backward_input(float *dx, int ldx, const float *dy, int ldy, const linear *l, int n, int accumulate) {
    if (l->format != LINEAR_F32)
        return err_set(ERR_INPUT, "backward through a quantized linear layer (format %d) is not supported; "
                       "train the fp32 model and quantize afterwards", (int)l->format);
    if (l->bf16_compute)
        return gemm_bf16(dx, ldx, dy, ldy, 0, l->w, l->n_in, 0, n, l->n_in, l->n_out, 1.0f, accumulate ? 1.0f : 0.0f);
    matmul(dx, ldx, dy, ldy, 0, l->w, l->n_in, 0, n, l->n_in, l->n_out, 1.0f, accumulate ? 1.0f : 0.0f);
    return 0;
}

int linear_backward_params(float *dw, float *db, const float *dy, int ldy, const float *x, int ldx, int n, int n_out,
                           int n_in, int bf16_compute) {
    if (bf16_compute) {
        if (gemm_bf16(dw, n_in, dy, ldy, 1, x, ldx, 0, n_out, n_in, n, 1.0f, 1.0f)) return -1;
    } else {
        matmul(dw, n_in, dy, ldy, 1, x, ldx, 0, n_out, n_in, n, 1.0f, 1.0f);
    }
    if (db) bias_grad(db, dy, ldy, n, n_out);
    return 0;
}

void bias_grad(float *db, const float *dy, int ldy, int n, int m) {
    /* Column blocks of 64 per task: each column is reduced by one thread, rows in order. */
    int n_blocks = (m + 63) / 64;
    const int nt = kernels_threads_for((double)n * m, THR_ROW_FLOATS);
#pragma omp parallel for schedule(static) num_threads(nt) if (nt > 1)
    for (int bk = 0; bk < n_blocks; bk++) {
        int j0 = bk * 64, j1 = j0 + 64 < m ? j0 + 64 : m;
        float acc[64];
        for (int j = j0; j < j1; j++) acc[j - j0] = 0;
        for (int i = 0; i < n; i++) {
            const float *r = dy + (size_t)i * ldy;
#pragma omp simd
            for (int j = j0; j < j1; j++) acc[j - j0] += r[j];
        }
        for (int j = j0; j < j1; j++) db[j] += acc[j - j0];
    }
}

void bias_grad_ref(float *db, const float *dy, int ldy, int n, int m) {
    for (int j = 0; j < m; j++) {
        double s = 0;
        for (int i = 0; i < n; i++) s += dy[(size_t)i * ldy + j];
        db[j] += (float)s;
    }
}
