/* matmul.c: the BLAS wrapper and its scalar reference (see matmul.h). */
#include "kernels/matmul.h"

#include <cblas.h>
#include <stddef.h>

static double flops_total = 0;

void matmul(float *c, int ldc, const float *a, int lda, int trans_a, const float *b, int ldb, int trans_b,
            int m, int n, int k, float alpha, float beta) {
    if (m <= 0 || n <= 0) return;
    if (k <= 0) { /* an empty sum: C = beta * C */
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++) c[(size_t)i * ldc + j] = beta == 0 ? 0 : beta * c[(size_t)i * ldc + j];
        return;
    }
    flops_total += 2.0 * m * n * k;
    cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans, m, n, k,
                alpha, a, lda, b, ldb, beta, c, ldc);
}

void matmul_ref(float *c, int ldc, const float *a, int lda, int trans_a, const float *b, int ldb, int trans_b,
                int m, int n, int k, float alpha, float beta) {
    for (int i = 0; i < m; i++)
        for (int j = 0; j < n; j++) {
            double s = 0;
            for (int p = 0; p < k; p++) {
                double av = trans_a ? a[(size_t)p * lda + i] : a[(size_t)i * lda + p];
                double bv = trans_b ? b[(size_t)j * ldb + p] : b[(size_t)p * ldb + j];
                s += av * bv;
            }
            float *cij = &c[(size_t)i * ldc + j];
            *cij = (float)(alpha * s + (beta == 0 ? 0.0 : (double)beta * *cij));
        }
}

double matmul_flops(void) { return flops_total; }
void matmul_flops_reset(void) { flops_total = 0; }
