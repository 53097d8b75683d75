/* matmul.c: the BLAS wrapper and its scalar reference (see matmul.h). */
#include "kernels/matmul.h"

#include <cblas.h>
#include <omp.h>
#include <stddef.h>

#include "kernels/threads.h"

static double flops_total = 0;

void matmul(float *c, int ldc, const float *a, int lda, int trans_a, const float *b, int ldb, int trans_b,
            int m, int n, int k, float alpha, float beta) {
    if (m <= 0 || n <= 0) return;
    if (k <= 0) { /* an empty sum: C = beta * C */
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++) c[(size_t)i * ldc + j] = beta == 0 ? 0 : beta * c[(size_t)i * ldc + j];
        return;
    }
    const CBLAS_TRANSPOSE ta = trans_a ? CblasTrans : CblasNoTrans, tb = trans_b ? CblasTrans : CblasNoTrans;
    if (m == 1) { /* one row (a decode step): a matrix-vector product, split by output columns */
        const int incx = trans_a ? lda : 1;
        const int nt = kernels_threads_for((double)n * k, THR_GEMV_FLOATS);
        const double f1 = 2.0 * n * k;
#pragma omp atomic
        flops_total += f1;
#pragma omp parallel num_threads(nt) if (nt > 1)
        {
            const int t = omp_get_thread_num(), cnt = omp_get_num_threads();
            int step = (n + cnt - 1) / cnt;
            step = (step + 15) & ~15;
            const int lo = t * step, hi = lo + step < n ? lo + step : n;
            if (hi > lo) {
                if (trans_b) /* y = B x, B: [n, ldb] */
                    cblas_sgemv(CblasRowMajor, CblasNoTrans, hi - lo, k, alpha, b + (size_t)lo * ldb, ldb, a, incx, beta,
                                c + lo, 1);
                else /* y = B^T x, B: [k, ldb] */
                    cblas_sgemv(CblasRowMajor, CblasTrans, k, hi - lo, alpha, b + lo, ldb, a, incx, beta, c + lo, 1);
            }
        }
        return;
    }
    const double f = 2.0 * m * n * k;
#pragma omp atomic
    flops_total += f;
    const int T = kernels_threads_for((double)m * n * k, THR_GEMM_MACS);
    if (T <= 1) {
        cblas_sgemm(CblasRowMajor, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
        return;
    }
    /* One block of C per thread: rows when C is taller than wide, else columns. Each block is a
     * whole-K product, so every element is summed in the same order whatever the thread count. */
    const int by_rows = m >= n, len = by_rows ? m : n;
#pragma omp parallel num_threads(T)
    {
        const int t = omp_get_thread_num(), nt = omp_get_num_threads();
        int step = (len + nt - 1) / nt;
        step = (step + 15) & ~15; /* whole 16-wide micro-tiles per block */
        const int lo = t * step, hi = lo + step < len ? lo + step : len;
        if (hi > lo) {
            if (by_rows)
                cblas_sgemm(CblasRowMajor, ta, tb, hi - lo, n, k, alpha, trans_a ? a + lo : a + (size_t)lo * lda, lda,
                            b, ldb, beta, c + (size_t)lo * ldc, ldc);
            else
                cblas_sgemm(CblasRowMajor, ta, tb, m, hi - lo, k, alpha, a, lda,
                            trans_b ? b + (size_t)lo * ldb : b + lo, ldb, beta, c + lo, ldc);
        }
    }
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
void matmul_flops_add(double flops) {
#pragma omp atomic
    flops_total += flops;
}
