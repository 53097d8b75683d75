/* dense64.c: float64 products, Cholesky, triangular solves and SPD inverses over single-threaded
 * BLAS/LAPACK calls on fixed tiles (see dense64.h). The Cholesky factorization is blocked and
 * right-looking (panel: LAPACK dpotrf on a diagonal block, a triangular solve of the rows below it,
 * then a rank-NB update of the trailing lower triangle by tiles); the inverse is L^{-T} L^{-1}, the
 * triangular inverse by column blocks and the product by tiles of its upper triangle. */
#include "kernels/dense64.h"

#include <cblas.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "kernels/threads.h"

/* OpenBLAS's LAPACK (C implementation, no hidden string-length arguments). Column-major: called on
 * a row-major lower triangle with uplo "U", since that is the same memory. */
extern void dpotrf_(const char *uplo, const int *n, double *a, const int *lda, int *info);

enum {
    D_TM = 256,   /* rows of a product tile */
    D_TN = 512,   /* columns of a product tile */
    D_NB = 256,   /* Cholesky panel and trailing-update tile */
    D_RHS = 128,  /* right-hand-side columns of one triangular-solve tile */
    D_ROWS = 256, /* rows of one right-side triangular-solve tile */
};
/* Below this many multiply-adds a call runs as one BLAS call: a parallel region costs more. */
#define D_SPLIT_MIN (1 << 20)

static double flops_total = 0;
double d_flops(void) { return flops_total; }
void d_flops_reset(void) { flops_total = 0; }
static void count(double f) {
#pragma omp atomic
    flops_total += f;
}

/* Threads for n_tiles tiles of about `work` multiply-adds in all (1 inside a parallel region). */
static int d_threads(int n_tiles, double work) {
    if (n_tiles < 2 || work < D_SPLIT_MIN || omp_in_parallel()) return 1;
    return kernels_threads();
}

void d_gemm(double *c, int ldc, const double *a, int lda, int ta, const double *b, int ldb, int tb, int m, int n, int k,
            double alpha, double beta) {
    if (m <= 0 || n <= 0) return;
    if (k <= 0) {
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++) c[(size_t)i * ldc + j] = beta == 0 ? 0 : beta * c[(size_t)i * ldc + j];
        return;
    }
    count(2.0 * m * n * k);
    const CBLAS_TRANSPOSE cta = ta ? CblasTrans : CblasNoTrans, ctb = tb ? CblasTrans : CblasNoTrans;
    const int mt = (m + D_TM - 1) / D_TM, nt = (n + D_TN - 1) / D_TN, tiles = mt * nt;
    const int T = d_threads(tiles, (double)m * n * k);
#pragma omp parallel for schedule(dynamic, 1) num_threads(T) if (T > 1)
    for (int t = 0; t < tiles; t++) {
        const int i0 = (t / nt) * D_TM, j0 = (t % nt) * D_TN;
        const int mi = m - i0 < D_TM ? m - i0 : D_TM, nj = n - j0 < D_TN ? n - j0 : D_TN;
        const double *ap = ta ? a + i0 : a + (size_t)i0 * lda;
        const double *bp = tb ? b + (size_t)j0 * ldb : b + j0;
        cblas_dgemm(CblasRowMajor, cta, ctb, mi, nj, k, alpha, ap, lda, bp, ldb, beta, c + (size_t)i0 * ldc + j0, ldc);
    }
}

static void trsm_right_tiles(double *b, int ldb, const double *l, int ldl, int m, int n) {
    const int tiles = (m + D_ROWS - 1) / D_ROWS, T = d_threads(tiles, (double)m * n * n / 2);
#pragma omp parallel for schedule(dynamic, 1) num_threads(T) if (T > 1)
    for (int t = 0; t < tiles; t++) {
        const int r0 = t * D_ROWS, rows = m - r0 < D_ROWS ? m - r0 : D_ROWS;
        cblas_dtrsm(CblasRowMajor, CblasRight, CblasLower, CblasTrans, CblasNonUnit, rows, n, 1.0, l, ldl,
                    b + (size_t)r0 * ldb, ldb);
    }
}

void d_trsm_right_lt(double *b, int ldb, const double *l, int ldl, int m, int n) {
    if (m <= 0 || n <= 0) return;
    count((double)m * n * n);
    trsm_right_tiles(b, ldb, l, ldl, m, n);
}

void d_trsm_left(double *b, int ldb, const double *l, int ldl, int n, int nrhs, int trans) {
    if (n <= 0 || nrhs <= 0) return;
    count((double)n * n * nrhs);
    const int tiles = (nrhs + D_RHS - 1) / D_RHS, T = d_threads(tiles, (double)n * n * nrhs / 2);
#pragma omp parallel for schedule(dynamic, 1) num_threads(T) if (T > 1)
    for (int t = 0; t < tiles; t++) {
        const int j0 = t * D_RHS, w = nrhs - j0 < D_RHS ? nrhs - j0 : D_RHS;
        cblas_dtrsm(CblasRowMajor, CblasLeft, CblasLower, trans ? CblasTrans : CblasNoTrans, CblasNonUnit, n, w, 1.0, l,
                    ldl, b + j0, ldb);
    }
}

void d_chol_solve(double *b, int ldb, const double *l, int ldl, int n, int nrhs) {
    d_trsm_left(b, ldb, l, ldl, n, nrhs, 0);
    d_trsm_left(b, ldb, l, ldl, n, nrhs, 1);
}

/* The trailing update A22 -= A21 A21^T on the lower triangle of a22 [r, lda], a21 [r, kb], by
 * tiles of D_NB (diagonal tiles: dsyrk; below them: dgemm). */
static void trailing_update(double *a22, const double *a21, int lda, int r, int kb) {
    const int nt = (r + D_NB - 1) / D_NB, tiles = nt * (nt + 1) / 2;
    const int T = d_threads(tiles, (double)r * r * kb / 2);
#pragma omp parallel for schedule(dynamic, 1) num_threads(T) if (T > 1)
    for (int t = 0; t < tiles; t++) {
        int ti = 0, rem = t; /* tile (ti, tj) with tj <= ti, row by row over the lower triangle */
        while (rem > ti) rem -= ti + 1, ti++;
        const int tj = rem, i0 = ti * D_NB, j0 = tj * D_NB;
        const int ni = r - i0 < D_NB ? r - i0 : D_NB, nj = r - j0 < D_NB ? r - j0 : D_NB;
        double *c = a22 + (size_t)i0 * lda + j0;
        if (ti == tj)
            cblas_dsyrk(CblasRowMajor, CblasLower, CblasNoTrans, ni, kb, -1.0, a21 + (size_t)i0 * lda, lda, 1.0, c, lda);
        else
            cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, ni, nj, kb, -1.0, a21 + (size_t)i0 * lda, lda,
                        a21 + (size_t)j0 * lda, lda, 1.0, c, lda);
    }
}

int d_cholesky(double *a, int lda, int n) {
    if (n <= 0) return 0;
    count((double)n * n * n / 3);
    for (int k0 = 0; k0 < n; k0 += D_NB) {
        const int kb = n - k0 < D_NB ? n - k0 : D_NB, r = n - k0 - kb;
        double *a11 = a + (size_t)k0 * lda + k0;
        int info = 0;
        dpotrf_("U", &kb, a11, &lda, &info);
        if (info != 0)
            return err_set(ERR_STAGE, "Cholesky factorization: the pivot of column %d of %d is not positive (the "
                           "matrix is not positive definite in floating point); raise the damping",
                           k0 + (info > 0 ? info - 1 : 0), n);
        if (r == 0) break;
        double *a21 = a + (size_t)(k0 + kb) * lda + k0;
        trsm_right_tiles(a21, lda, a11, lda, r, kb);
        trailing_update(a21 + kb, a21, lda, r, kb);
    }
    for (int i = 0; i < n; i++) memset(a + (size_t)i * lda + i + 1, 0, sizeof(double) * (size_t)(n - i - 1));
    return 0;
}

/* out's lower triangle = L^{-1} (zeros above), by blocks of columns: L[j0:, j0:] X = I[j0:, j0:j1]. */
static void tri_inverse(double *out, int ldo, const double *l, int ldl, int n) {
    const int cb = (n + D_RHS - 1) / D_RHS;
    const int T = d_threads(cb, (double)n * n * n / 6);
#pragma omp parallel for schedule(dynamic, 1) num_threads(T) if (T > 1)
    for (int t = 0; t < cb; t++) {
        const int j0 = t * D_RHS, w = n - j0 < D_RHS ? n - j0 : D_RHS;
        for (int i = 0; i < n; i++) { /* zeros above the diagonal too: step 2 reads them */
            double *row = out + (size_t)i * ldo + j0;
            memset(row, 0, sizeof(double) * (size_t)w);
            if (i >= j0 && i < j0 + w) row[i - j0] = 1.0;
        }
        cblas_dtrsm(CblasRowMajor, CblasLeft, CblasLower, CblasNoTrans, CblasNonUnit, n - j0, w, 1.0,
                    l + (size_t)j0 * ldl + j0, ldl, out + (size_t)j0 * ldo + j0, ldo);
    }
}

void d_tri_inverse(double *out, int ldo, const double *l, int ldl, int n) {
    if (n <= 0) return;
    count((double)n * n * n / 3);
    tri_inverse(out, ldo, l, ldl, n);
}

int d_chol_inverse(double *out, int ldo, double *l, int ldl, int n) {
    if (n <= 0) return 0;
    count((double)n * n * n * 2 / 3);
    /* 1. out's lower triangle = L^{-1} */
    tri_inverse(out, ldo, l, ldl, n);
    /* 2. A^{-1} = L^{-T} L^{-1}: tile (I, J), I <= J, sums rows r >= J0 of column blocks I and J of
     * L^{-1} (zero above). Off-diagonal tiles write the strict upper triangle, which no tile reads;
     * diagonal tiles read their own block, so they go second, through a scratch tile. */
    const int nt = (n + D_NB - 1) / D_NB, n_off = nt * (nt - 1) / 2;
    int T = d_threads(n_off, (double)n * n * n / 6);
#pragma omp parallel for schedule(dynamic, 1) num_threads(T) if (T > 1)
    for (int t = 0; t < n_off; t++) {
        int ti = 0, rem = t; /* tile (ti, tj), ti < tj, row by row over the strict upper triangle */
        while (rem >= nt - 1 - ti) rem -= nt - 1 - ti, ti++;
        const int tj = ti + 1 + rem, i0 = ti * D_NB, j0 = tj * D_NB;
        const int ni = n - i0 < D_NB ? n - i0 : D_NB, nj = n - j0 < D_NB ? n - j0 : D_NB;
        cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, ni, nj, n - j0, 1.0, out + (size_t)j0 * ldo + i0, ldo,
                    out + (size_t)j0 * ldo + j0, ldo, 0.0, out + (size_t)i0 * ldo + j0, ldo);
    }
    double *scratch = xmalloc(sizeof(double) * (size_t)nt * D_NB * D_NB);
    if (!scratch) return -1;
    T = d_threads(nt, (double)n * n * D_NB);
#pragma omp parallel for schedule(dynamic, 1) num_threads(T) if (T > 1)
    for (int ti = 0; ti < nt; ti++) {
        const int i0 = ti * D_NB, ni = n - i0 < D_NB ? n - i0 : D_NB;
        double *s = scratch + (size_t)ti * D_NB * D_NB;
        cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, ni, ni, n - i0, 1.0, out + (size_t)i0 * ldo + i0, ldo,
                    out + (size_t)i0 * ldo + i0, ldo, 0.0, s, ni);
    }
    for (int ti = 0; ti < nt; ti++) {
        const int i0 = ti * D_NB, ni = n - i0 < D_NB ? n - i0 : D_NB;
        const double *s = scratch + (size_t)ti * D_NB * D_NB;
        for (int i = 0; i < ni; i++) memcpy(out + (size_t)(i0 + i) * ldo + i0, s + (size_t)i * ni, sizeof(double) * ni);
    }
    free(scratch);
    /* 3. the lower triangle mirrors the upper, by 64 x 64 tiles (a transposed copy) */
    const int mt = (n + 63) / 64;
    T = d_threads(mt, (double)n * n);
#pragma omp parallel for schedule(dynamic, 1) num_threads(T) if (T > 1)
    for (int ti = 0; ti < mt; ti++)
        for (int j0 = 0; j0 <= ti * 64; j0 += 64)
            for (int i = ti * 64; i < n && i < ti * 64 + 64; i++)
                for (int j = j0; j < i && j < j0 + 64; j++) out[(size_t)i * ldo + j] = out[(size_t)j * ldo + i];
    return 0;
}
