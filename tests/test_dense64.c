/* test_dense64.c: the float64 kernels of kernels/dense64.h against plain loops, over sizes that
 * cross their tiles (product tiles 256 x 512, Cholesky panels 256, solve tiles 128/256):
 *   - d_gemm, every transposition, with beta 0 and 1: |C - ref| <= 2 k eps64 sum |a||b| per entry;
 *   - d_cholesky: |L L^T - A| <= 4 n eps64 max|A| (backward stable) and L lower with a zero upper
 *     triangle; a matrix that is not positive definite is refused naming the column;
 *   - d_trsm_left (both), d_trsm_right_lt, d_chol_solve, d_chol_inverse: residuals |A X - B| <=
 *     8 n eps64 cond(A) max|B|, with A built well conditioned (cond <= 4, so the bound is tight);
 *   - d_tri_inverse (dtrtri diagonal blocks of 256 merged pairwise by dtrmm tiles of 512): on a
 *     1700 x 1700 L (levels 256..1024, the last merge 1024 + 676 with two row and two column tiles)
 *     and small sizes, zeros above the diagonal exactly and |L X - I| <= 2 n eps64 (|L| |X|) per
 *     entry: each entry of X is a sum of at most n products formed by triangular products and solves
 *     whose rounding is bounded by n eps |L||X| (Higham, Accuracy and Stability, ch. 14: the
 *     blocked "X21 = -X22 L21 X11" methods), doubled for the two products of a merge; and X against
 *     plain forward substitution (column by column, the unblocked method) within 8 n eps64 cond(L)
 *     max|X| (L = I + E with a random strictly lower E of 2-norm <= 1/2: cond(L) <= 3);
 *   - each result bitwise the same on 1 and 2 threads (the tiles do not depend on the count). */
#include <float.h>

#include "engine_testutil.h"
#include "kernels/dense64.h"
#include "kernels/threads.h"

static double *dalloc(size_t n) {
    double *p = calloc(n ? n : 1, sizeof(double));
    if (!p) exit(1);
    return p;
}
static double *drandn(size_t n) {
    double *p = dalloc(n);
    for (size_t i = 0; i < n; i++) p[i] = tu_normal();
    return p;
}
static double *dcopy(const double *a, size_t n) {
    double *p = dalloc(n);
    memcpy(p, a, n * sizeof(double));
    return p;
}

/* A = X^T X / rows + I: eigenvalues in [1, 1 + (1 + sqrt(n/rows))^2] (Marchenko-Pastur), so cond(A)
 * <= 4 for rows = 2 n. */
static double *spd(int n) {
    const int rows = 2 * n;
    double *x = drandn((size_t)rows * n), *a = dalloc((size_t)n * n);
    for (int i = 0; i < n; i++)
        for (int j = 0; j <= i; j++) {
            double s = 0;
            for (int r = 0; r < rows; r++) s += x[(size_t)r * n + i] * x[(size_t)r * n + j];
            a[(size_t)i * n + j] = a[(size_t)j * n + i] = s / rows + (i == j);
        }
    free(x);
    return a;
}

static void check_gemm(int m, int n, int k, int ta, int tb, double beta) {
    const int lda = ta ? m + 3 : k + 3, ldb = tb ? k + 1 : n + 1, ldc = n + 2;
    double *a = drandn((size_t)(ta ? k : m) * lda), *b = drandn((size_t)(tb ? n : k) * ldb), *c0 = drandn((size_t)m * ldc);
    double *c1 = dcopy(c0, (size_t)m * ldc), *c2 = dcopy(c0, (size_t)m * ldc);
    kernels_set_threads(1);
    d_gemm(c1, ldc, a, lda, ta, b, ldb, tb, m, n, k, 0.75, beta);
    kernels_set_threads(2);
    d_gemm(c2, ldc, a, lda, ta, b, ldb, tb, m, n, k, 0.75, beta);
    double worst = 0;
    for (int i = 0; i < m; i++)
        for (int j = 0; j < n; j++) {
            double s = 0, bound = 0;
            for (int p = 0; p < k; p++) {
                double av = ta ? a[(size_t)p * lda + i] : a[(size_t)i * lda + p];
                double bv = tb ? b[(size_t)j * ldb + p] : b[(size_t)p * ldb + j];
                s += av * bv, bound += fabs(av * bv);
            }
            double ref = 0.75 * s + beta * c0[(size_t)i * ldc + j];
            bound = 2 * (k + 2) * DBL_EPSILON * (bound + fabs(c0[(size_t)i * ldc + j]));
            double e = fabs(c1[(size_t)i * ldc + j] - ref) / bound;
            if (e > worst) worst = e;
        }
    tu_expect(worst <= 1, "d_gemm %dx%dx%d ta %d tb %d beta %g: error %.3g of the bound", m, n, k, ta, tb, beta, worst);
    tu_expect(!memcmp(c1, c2, sizeof(double) * (size_t)m * ldc), "d_gemm %dx%dx%d: 1 and 2 threads bitwise equal", m, n, k);
    free(a), free(b), free(c0), free(c1), free(c2);
}

/* max |A X - B| / max |B| for A [n, n], X and B [n, nrhs]. */
static double residual(const double *a, const double *x, const double *b, int n, int nrhs) {
    double md = 0, mb = 0;
    for (int i = 0; i < n; i++)
        for (int j = 0; j < nrhs; j++) {
            double s = 0;
            for (int p = 0; p < n; p++) s += a[(size_t)i * n + p] * x[(size_t)p * nrhs + j];
            md = fmax(md, fabs(s - b[(size_t)i * nrhs + j]));
            mb = fmax(mb, fabs(b[(size_t)i * nrhs + j]));
        }
    return md / mb;
}

static void check_cholesky(int n, int nrhs) {
    double *a = spd(n), *l1 = dcopy(a, (size_t)n * n), *l2 = dcopy(a, (size_t)n * n);
    kernels_set_threads(1);
    tu_expect(d_cholesky(l1, n, n) == 0, "cholesky %d: %s", n, err_msg());
    kernels_set_threads(2);
    tu_expect(d_cholesky(l2, n, n) == 0, "cholesky %d: %s", n, err_msg());
    tu_expect(!memcmp(l1, l2, sizeof(double) * (size_t)n * n), "cholesky %d: 1 and 2 threads bitwise equal", n);
    double worst = 0, amax = 0;
    int upper_zero = 1;
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++) {
            double s = 0;
            for (int p = 0; p <= (i < j ? i : j); p++) s += l1[(size_t)i * n + p] * l1[(size_t)j * n + p];
            worst = fmax(worst, fabs(s - a[(size_t)i * n + j]));
            amax = fmax(amax, fabs(a[(size_t)i * n + j]));
            if (j > i && l1[(size_t)i * n + j] != 0) upper_zero = 0;
        }
    tu_expect(worst <= 4 * n * DBL_EPSILON * amax, "cholesky %d: |LL^T - A| = %.3g (bound %.3g)", n, worst,
              4 * n * DBL_EPSILON * amax);
    tu_expect(upper_zero, "cholesky %d: the strict upper triangle is zero", n);
    const double tol = 8 * n * DBL_EPSILON * 4;
    /* solves */
    double *b = drandn((size_t)n * nrhs), *x = dcopy(b, (size_t)n * nrhs), *x2 = dcopy(b, (size_t)n * nrhs);
    kernels_set_threads(1);
    d_chol_solve(x, nrhs, l1, n, n, nrhs);
    kernels_set_threads(2);
    d_chol_solve(x2, nrhs, l1, n, n, nrhs);
    double r = residual(a, x, b, n, nrhs);
    tu_expect(r <= tol, "chol_solve %d (%d rhs): residual %.3g (tol %.3g)", n, nrhs, r, tol);
    tu_expect(!memcmp(x, x2, sizeof(double) * (size_t)n * nrhs), "chol_solve %d: 1 and 2 threads bitwise equal", n);
    /* L X = B and L^T X = B separately, against L and L^T as dense matrices */
    double *lt = dalloc((size_t)n * n);
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++) lt[(size_t)i * n + j] = l1[(size_t)j * n + i];
    memcpy(x, b, sizeof(double) * (size_t)n * nrhs);
    d_trsm_left(x, nrhs, l1, n, n, nrhs, 0);
    r = residual(l1, x, b, n, nrhs);
    tu_expect(r <= tol, "trsm L %d: residual %.3g", n, r);
    memcpy(x, b, sizeof(double) * (size_t)n * nrhs);
    d_trsm_left(x, nrhs, l1, n, n, nrhs, 1);
    r = residual(lt, x, b, n, nrhs);
    tu_expect(r <= tol, "trsm L^T %d: residual %.3g", n, r);
    /* X L^T = B for rows: (L X^T = B^T) */
    double *br = drandn((size_t)nrhs * n), *xr = dcopy(br, (size_t)nrhs * n), *xt = dalloc((size_t)n * nrhs),
           *bt = dalloc((size_t)n * nrhs);
    d_trsm_right_lt(xr, n, l1, n, nrhs, n);
    for (int i = 0; i < nrhs; i++)
        for (int j = 0; j < n; j++) xt[(size_t)j * nrhs + i] = xr[(size_t)i * n + j], bt[(size_t)j * nrhs + i] = br[(size_t)i * n + j];
    r = residual(l1, xt, bt, n, nrhs);
    tu_expect(r <= tol, "trsm right L^T %d: residual %.3g", n, r);
    /* inverse */
    double *inv1 = dalloc((size_t)n * n), *inv2 = dalloc((size_t)n * n), *eye = dalloc((size_t)n * n);
    for (size_t i = 0; i < (size_t)n * n; i++) inv1[i] = inv2[i] = NAN; /* the output is written, never read */
    double *lc = dcopy(l1, (size_t)n * n);
    kernels_set_threads(1);
    tu_expect(d_chol_inverse(inv1, n, lc, n, n) == 0, "inverse %d", n);
    memcpy(lc, l1, sizeof(double) * (size_t)n * n);
    kernels_set_threads(2);
    tu_expect(d_chol_inverse(inv2, n, lc, n, n) == 0, "inverse %d", n);
    for (int i = 0; i < n; i++) eye[(size_t)i * n + i] = 1;
    r = residual(a, inv1, eye, n, n);
    tu_expect(r <= tol, "inverse %d: |A A^-1 - I| %.3g (tol %.3g)", n, r, tol);
    int sym = 1;
    for (int i = 0; i < n; i++)
        for (int j = 0; j < i; j++) sym &= inv1[(size_t)i * n + j] == inv1[(size_t)j * n + i];
    tu_expect(sym, "inverse %d is exactly symmetric", n);
    tu_expect(!memcmp(inv1, inv2, sizeof(double) * (size_t)n * n), "inverse %d: 1 and 2 threads bitwise equal", n);
    free(a), free(l1), free(l2), free(b), free(x), free(x2), free(lt), free(br), free(xr), free(xt), free(bt);
    free(inv1), free(inv2), free(eye), free(lc);
}

static void check_tri_inverse(int n) {
    /* L = I + E, E strictly lower with entries N(0, 1) / (4 sqrt n): ||E||_2 <= 2 sqrt(n) / (4 sqrt n)
     * = 1/2 (the norm of a random n x n matrix of such entries), so cond(L) <= 1.5 / 0.5 = 3 */
    double *a = dalloc((size_t)n * n);
    for (int i = 0; i < n; i++) {
        for (int j = 0; j < i; j++) a[(size_t)i * n + j] = tu_normal() / (4 * sqrt(n));
        a[(size_t)i * n + i] = 1;
    }
    double *x1 = dalloc((size_t)n * n), *x2 = dalloc((size_t)n * n), *ref = dalloc((size_t)n * n);
    for (size_t i = 0; i < (size_t)n * n; i++) x1[i] = x2[i] = NAN; /* written, never read */
    kernels_set_threads(1);
    d_tri_inverse(x1, n, a, n, n);
    kernels_set_threads(2);
    d_tri_inverse(x2, n, a, n, n);
    tu_expect(!memcmp(x1, x2, sizeof(double) * (size_t)n * n), "tri_inverse %d: 1 and 2 threads bitwise equal", n);
    for (int j = 0; j < n; j++) /* the unblocked reference: L x = e_j by forward substitution */
        for (int i = j; i < n; i++) {
            double s = i == j ? 1.0 : 0.0;
            for (int p = j; p < i; p++) s -= a[(size_t)i * n + p] * ref[(size_t)p * n + j];
            ref[(size_t)i * n + j] = s / a[(size_t)i * n + i];
        }
    int upper_zero = 1;
    double worst = 0, dmax = 0, xmax = 0;
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++) {
            const double x = x1[(size_t)i * n + j];
            if (j > i) {
                upper_zero &= x == 0;
                continue;
            }
            double s = 0, mag = 0; /* (L X)_ij = sum over j <= p <= i */
            for (int p = j; p <= i; p++) {
                s += a[(size_t)i * n + p] * x1[(size_t)p * n + j];
                mag += fabs(a[(size_t)i * n + p] * x1[(size_t)p * n + j]);
            }
            worst = fmax(worst, fabs(s - (i == j)) / (2.0 * n * DBL_EPSILON * mag));
            dmax = fmax(dmax, fabs(x - ref[(size_t)i * n + j]));
            xmax = fmax(xmax, fabs(x));
        }
    tu_expect(upper_zero, "tri_inverse %d: zeros above the diagonal", n);
    tu_expect(worst <= 1, "tri_inverse %d: |LX - I| is %.3g of 2 n eps |L||X|", n, worst);
    tu_expect(dmax <= 8.0 * n * DBL_EPSILON * 3 * xmax, "tri_inverse %d: |X - unblocked| %.3g (bound %.3g)", n, dmax,
              8.0 * n * DBL_EPSILON * 3 * xmax);
    printf("tri_inverse %d: |LX - I| at most %.3g of its bound, |X - unblocked| %.3g of max|X|\n", n, worst, dmax / xmax);
    free(a), free(x1), free(x2), free(ref);
}

static void check_not_pd(void) {
    const int n = 300;
    double *a = spd(n);
    a[(size_t)280 * n + 280] = -5; /* column 280, in the second panel */
    tu_expect(d_cholesky(a, n, n) != 0 && strstr(err_msg(), "column 280") && strstr(err_msg(), "damping"),
              "not positive definite: %s", err_msg());
    free(a);
}

int main(void) {
    tu_seed(7);
    const int g[][3] = {{1, 1, 1}, {5, 7, 3}, {300, 530, 40}, {520, 70, 130}, {33, 1100, 9}};
    for (size_t i = 0; i < sizeof g / sizeof g[0]; i++)
        for (int ta = 0; ta < 2; ta++)
            for (int tb = 0; tb < 2; tb++) check_gemm(g[i][0], g[i][1], g[i][2], ta, tb, (ta + tb) % 2 ? 1.0 : 0.0);
    const int ns[][2] = {{1, 1}, {17, 3}, {256, 5}, {600, 140}};
    for (size_t i = 0; i < sizeof ns / sizeof ns[0]; i++) check_cholesky(ns[i][0], ns[i][1]);
    const int nt[] = {1, 5, 256, 257, 600, 1700};
    for (size_t i = 0; i < sizeof nt / sizeof nt[0]; i++) check_tri_inverse(nt[i]);
    check_not_pd();
    return tu_finish("test_dense64");
}
