/* bench_dense64.c: the float64 kernels of kernels/dense64.h that OSSCAR's G = H_λ⁻¹ is made of, at
 * one size n, beside OpenBLAS's own (multi-threaded) LAPACK on the same matrix and threads: the
 * tiled product n x n x n (the BLAS-3 rate every other kernel is measured against), the Cholesky
 * factorization (vs dpotrf), the triangular inverse (vs dtrtri) and the SPD inverse from the factor
 * (vs dtrtri + dlauum, i.e. dpotri). Each kernel runs `reps` times; the best time is printed with
 * its GFLOP/s (n³/3 for each of the Cholesky, the triangular inverse and L⁻ᵀL⁻¹). Asserts nothing.
 * usage: bench_dense64 [n [threads [reps]]] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "kernels/dense64.h"
#include "kernels/threads.h"

extern void dpotrf_(const char *uplo, const int *n, double *a, const int *lda, int *info);
extern void dtrtri_(const char *uplo, const char *diag, const int *n, double *a, const int *lda, int *info);
extern void dlauum_(const char *uplo, const int *n, double *a, const int *lda, int *info);
extern void openblas_set_num_threads(int n);

static double best = 0;
static void tick(double t0) {
    const double t = time_monotonic() - t0;
    if (best == 0 || t < best) best = t;
}
static void report(const char *what, double gflop) {
    printf("%-44s %8.3f s  %6.1f GFLOP/s\n", what, best, gflop / best);
    best = 0;
}

int main(int argc, char **argv) {
    const int n = argc > 1 ? atoi(argv[1]) : 4096, reps = argc > 3 ? atoi(argv[3]) : 2;
    const int threads = kernels_set_threads(argc > 2 ? atoi(argv[2]) : 0);
    const size_t nn = (size_t)n * n;
    double *x = malloc(sizeof(double) * nn), *a = malloc(sizeof(double) * nn), *l = malloc(sizeof(double) * nn);
    double *w = malloc(sizeof(double) * nn), *g = malloc(sizeof(double) * nn);
    if (!x || !a || !l || !w || !g) return fprintf(stderr, "out of memory\n"), 1;
    uint64_t s = 88172645463325252ull;
    for (size_t i = 0; i < nn; i++) {
        s ^= s << 13, s ^= s >> 7, s ^= s << 17;
        x[i] = (double)(s >> 11) * 0x1p-53 - 0.5;
    }
    d_gemm(a, n, x, n, 1, x, n, 0, n, n, n, 1.0 / n, 0.0); /* A = XᵀX / n + I: well conditioned */
    for (int i = 0; i < n; i++) a[(size_t)i * n + i] += 1.0;
    const double cube = (double)n * n * n;
    printf("n %d, %d threads\n", n, threads);
    for (int r = 0; r < reps; r++) {
        const double t0 = time_monotonic();
        d_gemm(w, n, x, n, 0, a, n, 0, n, n, n, 1.0, 0.0);
        tick(t0);
    }
    report("smelt d_gemm n x n x n", 2 * cube / 1e9);
    for (int r = 0; r < reps; r++) {
        memcpy(l, a, sizeof(double) * nn);
        const double t0 = time_monotonic();
        if (d_cholesky(l, n, n)) return fprintf(stderr, "not positive definite\n"), 1;
        tick(t0);
    }
    report("smelt d_cholesky", cube / 3e9);
    for (int r = 0; r < reps; r++) {
        const double t0 = time_monotonic();
        d_tri_inverse(w, n, l, n, n);
        tick(t0);
    }
    report("smelt d_tri_inverse", cube / 3e9);
    for (int r = 0; r < reps; r++) {
        memcpy(w, l, sizeof(double) * nn);
        const double t0 = time_monotonic();
        if (d_chol_inverse(g, n, w, n, n)) return 1;
        tick(t0);
    }
    report("smelt d_chol_inverse (L^-1, L^-T L^-1, mirror)", 2 * cube / 3e9);
    /* OpenBLAS's LAPACK on its own threads (column-major "U" = the row-major lower triangle) */
    openblas_set_num_threads(threads);
    int info = 0;
    for (int r = 0; r < reps; r++) {
        memcpy(w, a, sizeof(double) * nn);
        const double t0 = time_monotonic();
        dpotrf_("U", &n, w, &n, &info);
        tick(t0);
    }
    report("OpenBLAS dpotrf", cube / 3e9);
    for (int r = 0; r < reps; r++) {
        memcpy(w, l, sizeof(double) * nn);
        const double t0 = time_monotonic();
        dtrtri_("U", "N", &n, w, &n, &info);
        tick(t0);
    }
    report("OpenBLAS dtrtri", cube / 3e9);
    for (int r = 0; r < reps; r++) {
        memcpy(w, l, sizeof(double) * nn);
        dtrtri_("U", "N", &n, w, &n, &info);
        const double t0 = time_monotonic();
        dlauum_("U", &n, w, &n, &info);
        tick(t0);
    }
    report("OpenBLAS dlauum (one triangle of L^-T L^-1)", cube / 3e9);
    openblas_set_num_threads(1);
    free(x), free(a), free(l), free(w), free(g);
    return info != 0;
}
