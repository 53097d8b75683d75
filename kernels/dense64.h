/* dense64.h: float64 dense linear algebra for the layer-wise compression solvers (OSSCAR's greedy
 * elimination and re-solve; ALGORITHMS.md §3): products, Cholesky factorization, triangular solves
 * and the inverse of a symmetric positive definite matrix. All matrices are row-major.
 *
 * Threads: smelt keeps OpenBLAS single-threaded (threads.h), so each call here splits its work into
 * tiles of a FIXED size (never derived from the thread count) and runs one single-threaded BLAS or
 * LAPACK call per tile on the kernel threads. The result is therefore bitwise the same on any thread
 * count. Called inside a parallel region, a call runs its tiles on the calling thread. */
#ifndef SMELT_KERNELS_DENSE64_H
#define SMELT_KERNELS_DENSE64_H

/* C[m, n] = alpha * op(A) op(B) + beta * C, with op as in matmul.h: op(A) is [m, k] (A is [m, lda]
 * or, with ta, [k, lda] transposed), op(B) is [k, n] (B [k, ldb] or, with tb, [n, ldb]). beta == 0
 * overwrites C. */
void d_gemm(double *c, int ldc, const double *a, int lda, int ta, const double *b, int ldb, int tb, int m, int n, int k,
            double alpha, double beta);

/* In-place Cholesky factorization A = L L^T of a symmetric positive definite a [n, lda >= n]: its
 * lower triangle becomes L (the strict upper triangle is zeroed). Reads only the lower triangle.
 * 0, or -1 (ERR_STAGE naming the first column whose pivot is not positive: the matrix is not
 * positive definite, raise the damping). */
int d_cholesky(double *a, int lda, int n);

/* Solves with a Cholesky factor l [n, ldl] (lower): trans == 0: L X = B; trans == 1: L^T X = B.
 * b [n, ldb >= nrhs] is overwritten with X. */
void d_trsm_left(double *b, int ldb, const double *l, int ldl, int n, int nrhs, int trans);
/* Solves X L^T = B for x [m, ldb >= n] in place (the row form: each row x_i = b_i L^{-T}). */
void d_trsm_right_lt(double *b, int ldb, const double *l, int ldl, int m, int n);
/* Solves A X = B with A = L L^T (both triangular solves), b [n, ldb >= nrhs] in place. */
void d_chol_solve(double *b, int ldb, const double *l, int ldl, int n, int nrhs);

/* out [n, ldo]: its lower triangle = L^{-1} for a lower triangular l [n, ldl] with a nonzero
 * diagonal, zeros above it. out and l must not overlap. */
void d_tri_inverse(double *out, int ldo, const double *l, int ldl, int n);

/* out [n, ldo] = A^{-1} (both triangles) from the Cholesky factor l of A; l is overwritten (it
 * becomes L^{-1}). out and l must not overlap. 0 or -1. */
int d_chol_inverse(double *out, int ldo, double *l, int ldl, int n);

/* Floating-point operations of the calls above since the last reset (for benchmarks). */
double d_flops(void);
void d_flops_reset(void);

#endif
