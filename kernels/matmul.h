/* matmul.h: the one general matrix product of smelt. Every matmul of the CPU engine goes through
 * matmul() (cblas_sgemm); matmul_ref() is the plain triple loop (double accumulation) the tests
 * compare it with. Row-major. Called outside a parallel region, it splits the product into one
 * block per kernel thread (threads.h); inside one (attention tiles), it is a single-threaded sgemm. */
#ifndef SMELT_KERNELS_MATMUL_H
#define SMELT_KERNELS_MATMUL_H

/* C[m, n] = alpha * op(A) op(B) + beta * C, where
 *   op(A) is [m, k]: A is [m, lda >= k], or with trans_a its transpose, A being [k, lda >= m];
 *   op(B) is [k, n]: B is [k, ldb >= n], or with trans_b its transpose, B being [n, ldb >= k];
 *   C is [m, ldc >= n]. beta == 0 overwrites C (NaN in C is not propagated). */
void matmul(float *c, int ldc, const float *a, int lda, int trans_a, const float *b, int ldb, int trans_b,
            int m, int n, int k, float alpha, float beta);
void matmul_ref(float *c, int ldc, const float *a, int lda, int trans_a, const float *b, int ldb, int trans_b,
                int m, int n, int k, float alpha, float beta);

/* Floating-point operations of matmul calls since the last reset (for benchmarks). */
double matmul_flops(void);
void matmul_flops_reset(void);
/* Adds the FLOPs of a product made elsewhere (gemm_bf16). */
void matmul_flops_add(double flops);

#endif
