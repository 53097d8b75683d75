/* gram.c: H += X^T X in float64 over BLAS (dsyrk on diagonal tiles, dgemm above them). Rows are
 * converted to double GRAM_ROWS at a time; each 256-column tile of the upper triangle belongs to
 * one OpenMP thread, and the tiles' sums do not depend on which thread runs them. */
#include "kernels/gram.h"

#include <cblas.h>
#include <omp.h>
#include <stdlib.h>

#include "common/error.h"
#include "kernels/threads.h"

enum { GRAM_ROWS = 256, GRAM_TILE = 256 };

int gram_accumulate(double *h, const float *x, int ldx, int n, int d) {
    if (n <= 0 || d <= 0) return 0;
    const int rows = n < GRAM_ROWS ? n : GRAM_ROWS, nt = (d + GRAM_TILE - 1) / GRAM_TILE;
    double *xd = malloc(sizeof(double) * (size_t)rows * d);
    if (!xd) return err_set(ERR_NOMEM, "cannot allocate %.1f MiB to accumulate a Gram matrix", rows * d * 8.0 / 1048576.0);
    const int n_tiles = nt * (nt + 1) / 2;
    for (int r0 = 0; r0 < n; r0 += rows) {
        const int nb = n - r0 < rows ? n - r0 : rows;
        /* nb d (d + 1) / 2 multiply-adds of the upper triangle, threads by work size */
        const int threads = kernels_threads_for(0.5 * nb * d * (d + 1.0), THR_GEMM_MACS);
        for (int i = 0; i < nb; i++)
            for (int j = 0; j < d; j++) xd[(size_t)i * d + j] = x[(size_t)(r0 + i) * ldx + j];
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads) if (threads > 1 && n_tiles > 1)
        for (int t = 0; t < n_tiles; t++) {
            int ti = 0, rem = t; /* tile (ti, tj) with ti <= tj, row-major over the upper triangle */
            while (rem >= nt - ti) rem -= nt - ti, ti++;
            const int tj = ti + rem, i0 = ti * GRAM_TILE, j0 = tj * GRAM_TILE;
            const int ni = d - i0 < GRAM_TILE ? d - i0 : GRAM_TILE, nj = d - j0 < GRAM_TILE ? d - j0 : GRAM_TILE;
            double *c = h + (size_t)i0 * d + j0;
            if (ti == tj)
                cblas_dsyrk(CblasRowMajor, CblasUpper, CblasTrans, ni, nb, 1.0, xd + i0, d, 1.0, c, d);
            else
                cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, ni, nj, nb, 1.0, xd + i0, d, xd + j0, d, 1.0, c, d);
        }
    }
    free(xd);
    return 0;
}

void gram_symmetrize(double *h, int d) {
    for (int i = 0; i < d; i++)
        for (int j = 0; j < i; j++) h[(size_t)i * d + j] = h[(size_t)j * d + i];
}

void gram_accumulate_ref(double *h, const float *x, int ldx, int n, int d) {
    for (int i = 0; i < d; i++)
        for (int j = 0; j < d; j++) {
            double s = 0;
            for (int r = 0; r < n; r++) s += (double)x[(size_t)r * ldx + i] * x[(size_t)r * ldx + j];
            h[(size_t)i * d + j] += s;
        }
}
