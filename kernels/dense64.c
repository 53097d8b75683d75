/* dense64.c: float64 products, Cholesky, triangular solves and SPD inverses over single-threaded
 * BLAS/LAPACK calls on fixed tiles (see dense64.h). The Cholesky factorization is blocked and
 * right-looking (panel: LAPACK dpotrf on a diagonal block, a triangular solve of the rows below it,
 * then a rank-NB update of the trailing lower triangle by tiles); the inverse is L^{-T} L^{-1}, the
 * triangular inverse by LAPACK dtrtri on diagonal blocks merged pairwise with dtrmm tiles, the
 * product by column strips of its upper triangle (dgemm + dsyrk), then mirrored. */
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
extern void dtrtri_(const char *uplo, const char *diag, const int *n, double *a, const int *lda, int *info);

enum {
    D_TM = 256,   /* rows of a product tile */
    D_TN = 512,   /* columns of a product tile */
    D_NB = 256,   /* Cholesky panel and trailing-update tile */
    D_RHS = 128,  /* right-hand-side columns of one triangular-solve tile */
    D_ROWS = 256, /* rows of one right-side triangular-solve tile */
    D_TRI = 256,  /* diagonal blocks of the triangular inverse (LAPACK dtrtri) */
    D_TT = 512,   /* rows / columns of one triangular-product tile of the inverse's merges */
    D_LS = 512,   /* column strips of L^{-T} L^{-1} */
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

/* out's lower triangle = L^{-1} (zeros above). Diagonal blocks of D_TRI are inverted by LAPACK's
 * dtrtri (single-threaded, one block per tile), then merged pairwise, level by level (blocks of
 * D_TRI, 2 D_TRI, 4 D_TRI, ...): for L = [L11 0; L21 L22] with X11 = L11^{-1} and X22 = L22^{-1}
 * known, X21 = -X22 (L21 X11), two triangular products (dtrmm) by tiles of D_TT rows of L21 X11,
 * then D_TT columns of X21. Nearly all of the n^3/3 flops are in the dtrmm tiles of the top levels,
 * which run at the BLAS-3 rate; the tiles are fixed, so the result does not depend on the threads. */
static int merge_tiles(int n, int span, int by_rows, int t, int *s, int *n1, int *n2, int *off) {
    int count = 0;
    for (int s0 = 0; s0 < n; s0 += 2 * span) {
        const int a = n - s0 < span ? n - s0 : span, b = n - s0 - a < span ? n - s0 - a : span;
        if (b <= 0) continue;
        const int k = ((by_rows ? b : a) + D_TT - 1) / D_TT;
        if (t >= count && t < count + k) *s = s0, *n1 = a, *n2 = b, *off = (t - count) * D_TT;
        count += k;
    }
    return count;
}

static void tri_inverse(double *out, int ldo, const double *l, int ldl, int n) {
    int T = d_threads(n / 64 + 1, (double)n * n);
#pragma omp parallel for schedule(static) num_threads(T) if (T > 1)
    for (int i = 0; i < n; i++) { /* the lower triangle of l, zeros above */
        memcpy(out + (size_t)i * ldo, l + (size_t)i * ldl, sizeof(double) * (size_t)(i + 1));
        memset(out + (size_t)i * ldo + i + 1, 0, sizeof(double) * (size_t)(n - i - 1));
    }
    const int nb = (n + D_TRI - 1) / D_TRI;
    T = d_threads(nb, (double)n * D_TRI * D_TRI / 6);
#pragma omp parallel for schedule(dynamic, 1) num_threads(T) if (T > 1)
    for (int b = 0; b < nb; b++) {
        const int b0 = b * D_TRI, w = n - b0 < D_TRI ? n - b0 : D_TRI;
        int info = 0;
        dtrtri_("U", "N", &w, out + (size_t)b0 * ldo + b0, &ldo, &info); /* nonzero diagonal: info == 0 */
    }
    for (int span = D_TRI; span < n; span *= 2)
        for (int by_rows = 1; by_rows >= 0; by_rows--) {
            int s, n1, n2, off;
            const int tiles = merge_tiles(n, span, by_rows, -1, &s, &n1, &n2, &off);
            T = d_threads(tiles, (double)n * span * span / 2);
#pragma omp parallel for schedule(dynamic, 1) num_threads(T) if (T > 1) private(s, n1, n2, off)
            for (int t = 0; t < tiles; t++) {
                merge_tiles(n, span, by_rows, t, &s, &n1, &n2, &off);
                double *x11 = out + (size_t)s * ldo + s, *x21 = out + (size_t)(s + n1) * ldo + s, *x22 = x21 + n1;
                if (by_rows) { /* rows off.. of L21 X11, in place (x21 holds L21) */
                    const int r = n2 - off < D_TT ? n2 - off : D_TT;
                    cblas_dtrmm(CblasRowMajor, CblasRight, CblasLower, CblasNoTrans, CblasNonUnit, r, n1, 1.0, x11, ldo,
                                x21 + (size_t)off * ldo, ldo);
                } else { /* columns off.. of X21 = -X22 (L21 X11) */
                    const int c = n1 - off < D_TT ? n1 - off : D_TT;
                    cblas_dtrmm(CblasRowMajor, CblasLeft, CblasLower, CblasNoTrans, CblasNonUnit, n2, c, -1.0, x22, ldo,
                                x21 + off, ldo);
                }
            }
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
    /* 2. A^{-1} = L^{-T} L^{-1}, its upper triangle by column strips of D_LS: strip J (columns j0..j1)
     * is rows 0..j0 = X[j0:, :j0]^T X[j0:, J] (one dgemm: X = L^{-1} is zero above its diagonal, so
     * rows r >= j0 are the whole sum) and its diagonal block X[j0:, J]^T X[j0:, J] (dsyrk into a
     * scratch tile: the strip reads that block of X). A strip writes only where X is zero and no
     * other strip reads (rows < j0 of its columns) and its own diagonal block after reading it. */
    const int nt = (n + D_LS - 1) / D_LS;
    double *scratch = xmalloc(sizeof(double) * (size_t)nt * D_LS * D_LS);
    if (!scratch) return -1;
    int T = d_threads(nt, (double)n * n * n / 6);
#pragma omp parallel for schedule(dynamic, 1) num_threads(T) if (T > 1)
    for (int tj = 0; tj < nt; tj++) {
        const int j0 = tj * D_LS, nj = n - j0 < D_LS ? n - j0 : D_LS;
        const double *xj = out + (size_t)j0 * ldo + j0;
        double *sc = scratch + (size_t)tj * D_LS * D_LS;
        if (j0 > 0)
            cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, j0, nj, n - j0, 1.0, out + (size_t)j0 * ldo, ldo, xj,
                        ldo, 0.0, out + j0, ldo);
        cblas_dsyrk(CblasRowMajor, CblasUpper, CblasTrans, nj, n - j0, 1.0, xj, ldo, 0.0, sc, nj);
        for (int i = 0; i < nj; i++)
            memcpy(out + (size_t)(j0 + i) * ldo + j0 + i, sc + (size_t)i * nj + i, sizeof(double) * (size_t)(nj - i));
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
