/* gptq.c: GPTQ (Frantar et al. 2022) in float64. Output rows are independent given U (the upper
 * Cholesky factor of H_lambda^-1), so rows are processed in fixed chunks of QUANT_ROW_CHUNK, one
 * chunk per OpenMP thread at a time. Within a chunk the weights are held transposed, wc [n_in, rows]
 * (a column of W is a contiguous row of wc), and columns go in blocks of QUANT_BLOCK:
 *   for each column i of the block: q_i = Quant(w_i); e_i = (w_i - q_i) / U_ii;
 *                                   w_k -= e_i U_ik for the later columns k of the block;
 *   after the block: W[:, later] -= E U[block, later] (one dgemm: the lazy batch update).
 * Memory per thread: (n_in + QUANT_BLOCK) x QUANT_ROW_CHUNK doubles. */
#include <cblas.h>
#include <omp.h>
#include <stdlib.h>

#include "common/error.h"
#include "kernels/threads.h"
#include "stages/quantize/quant.h"

/* Rows r0 .. r0+nr-1. wc: [n, nr], e: [QUANT_BLOCK, nr] scratch. */
static void gptq_rows(qweight *q, float *w_hat, const float *w, const quant_hessian *qh, int static_groups, int r0,
                      int nr, double *wc, double *e) {
    const int n = qh->n, G = q->group_size;
    const double *U = qh->u;
    for (int k = 0; k < n; k++) {
        const int j = qh->perm[k];
        for (int r = 0; r < nr; r++) wc[(size_t)k * nr + r] = qh->dead[j] ? 0.0 : w[(size_t)(r0 + r) * n + j];
    }
    for (int i1 = 0; i1 < n; i1 += QUANT_BLOCK) {
        const int i2 = i1 + QUANT_BLOCK < n ? i1 + QUANT_BLOCK : n;
        for (int i = i1; i < i2; i++) {
            const int j = qh->perm[i], gi = j / G;
            double *x = wc + (size_t)i * nr, *ei = e + (size_t)(i - i1) * nr;
            if (!static_groups && j % G == 0)
                for (int r = 0; r < nr; r++) quant_grid_set(q, r0 + r, gi, x + r, nr);
            const double d = U[(size_t)i * n + i];
            for (int r = 0; r < nr; r++) {
                const size_t o = (size_t)(r0 + r) * n + j;
                const int c = quant_code(q, r0 + r, gi, x[r]);
                const float v = quant_value(q, r0 + r, gi, c);
                q->codes[o] = (uint8_t)c;
                w_hat[o] = v;
                ei[r] = (x[r] - v) / d;
            }
            for (int k = i + 1; k < i2; k++) {
                const double u = U[(size_t)i * n + k];
                double *xk = wc + (size_t)k * nr;
                for (int r = 0; r < nr; r++) xk[r] -= u * ei[r];
            }
        }
        if (i2 < n) /* wc[i2:, :] -= U[i1:i2, i2:]^T E */
            cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, n - i2, nr, i2 - i1, -1.0, U + (size_t)i1 * n + i2, n, e,
                        nr, 1.0, wc + (size_t)i2 * nr, nr);
    }
}

int gptq_quantize(qweight *q, float *w_hat, const float *w, const quant_hessian *qh, int static_groups) {
    const int n = qh->n, n_out = q->n_out;
    if (!qh->u) return err_set(ERR_INTERNAL, "gptq_quantize: the Hessian is not factored");
    if (q->n_in != n || q->type != QW_INT) return err_set(ERR_INTERNAL, "gptq_quantize: shapes or type disagree");
    if (!static_groups)
        for (int k = 0; k < n; k++)
            if (qh->perm[k] != k)
                return err_set(ERR_INPUT, "GPTQ with act order needs static groups (scales from the original weights)");
    const int n_chunks = (n_out + QUANT_ROW_CHUNK - 1) / QUANT_ROW_CHUNK, threads = kernels_threads();
    int failed = 0;
#pragma omp parallel num_threads(threads) if (threads > 1 && n_chunks > 1) reduction(| : failed)
    {
        double *wc = malloc(sizeof(double) * (size_t)n * QUANT_ROW_CHUNK);
        double *e = malloc(sizeof(double) * (size_t)QUANT_BLOCK * QUANT_ROW_CHUNK);
#pragma omp for schedule(dynamic, 1)
        for (int c = 0; c < n_chunks; c++) {
            if (!wc || !e) {
                failed = 1;
                continue;
            }
            const int r0 = c * QUANT_ROW_CHUNK, nr = n_out - r0 < QUANT_ROW_CHUNK ? n_out - r0 : QUANT_ROW_CHUNK;
            gptq_rows(q, w_hat, w, qh, static_groups, r0, nr, wc, e);
        }
        free(wc), free(e);
    }
    if (failed) return err_set(ERR_NOMEM, "GPTQ: cannot allocate %.1f MiB of scratch per thread",
                               8.0 * (n + QUANT_BLOCK) * QUANT_ROW_CHUNK / 1048576.0);
    return 0;
}
