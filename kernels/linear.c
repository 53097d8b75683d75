/* linear.c: the linear layer over matmul() (see linear.h). */
#include "kernels/linear.h"

#include <stddef.h>

#include "common/error.h"
#include "kernels/matmul.h"
#include "kernels/qlinear.h"

linear linear_f32(const float *w, const float *b, int n_out, int n_in) {
    linear l = {.format = LINEAR_F32, .n_out = n_out, .n_in = n_in, .w = w, .b = b, .q = NULL};
    return l;
}

static void add_bias(float *out, int ldo, const float *b, int n, int m) {
#pragma omp parallel for schedule(static) if ((size_t)n * m > 32768)
    for (int i = 0; i < n; i++) {
        float *o = out + (size_t)i * ldo;
#pragma omp simd
        for (int j = 0; j < m; j++) o[j] += b[j];
    }
}

int linear_forward(float *out, int ldo, const float *x, int ldx, const linear *l, int n, int accumulate) {
    switch (l->format) {
    case LINEAR_F32:
        matmul(out, ldo, x, ldx, 0, l->w, l->n_in, 1, n, l->n_out, l->n_in, 1.0f, accumulate ? 1.0f : 0.0f);
        if (l->b) add_bias(out, ldo, l->b, n, l->n_out);
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
    matmul(dx, ldx, dy, ldy, 0, l->w, l->n_in, 0, n, l->n_in, l->n_out, 1.0f, accumulate ? 1.0f : 0.0f);
    return 0;
}

void linear_backward_params(float *dw, float *db, const float *dy, int ldy, const float *x, int ldx, int n,
                            int n_out, int n_in) {
    matmul(dw, n_in, dy, ldy, 1, x, ldx, 0, n_out, n_in, n, 1.0f, 1.0f);
    if (db) bias_grad(db, dy, ldy, n, n_out);
}

void bias_grad(float *db, const float *dy, int ldy, int n, int m) {
    /* Column blocks of 64 per task: each column is reduced by one thread, rows in order. */
    int n_blocks = (m + 63) / 64;
#pragma omp parallel for schedule(static) if ((size_t)n * m > 32768)
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
