/* gptq.c: GPTQ (Frantar et al. 2022) in float64. The weights are held transposed, wt [n_in, n_out] (a
 * column of W is a contiguous row of wt), and columns go in blocks of QUANT_BLOCK:
 *   for each column i of the block: q_i = Quant(w_i); e_i = (w_i - q_i) / U_ii;
 *                                   w_k -= e_i U_ik for the later columns k of the block;
 *   after the block: W[:, later] -= E U[block, later] (one product: the lazy batch update).
 * Output rows are independent given U (the upper Cholesky factor of H_lambda^-1): inside a block the
 * column loop runs on fixed chunks of QUANT_ROW_CHUNK rows, the block update on fixed tiles of
 * QUANT_GEMM_TILE columns of W, both shared by the OpenMP threads, so the result does not depend on the
 * thread count. Memory: (n_in + QUANT_BLOCK) n_out doubles.
 * The objective comes for free: the updates give W - W^ = E U row by row (E the scaled errors e_i), and
 * H_lambda = U^-1 U^-T, so tr((W^ - W) H_lambda (W^ - W)^T) = ||E||^2, summed per row chunk in a fixed
 * order. */
#include <cblas.h>
#include <omp.h>
#include <stdlib.h>

#include "common/error.h"
#include "kernels/threads.h"
#include "stages/quantize/quant.h"

/* The columns i1..i2-1 of rows r0 .. r0+nr-1: quantize, record the scaled errors in e [QUANT_BLOCK,
 * n_out], update the block's later columns. */
static double block_rows(qweight *q, float *w_hat, const quant_hessian *qh, int static_groups, double *wt, double *e,
                         int i1, int i2, int r0, int nr) {
    const int n = qh->n, out = q->n_out, G = q->group_size;
    const double *U = qh->u;
    double f = 0; /* sum of e^2: this block's share of the objective (gptq_quantize) */
    for (int i = i1; i < i2; i++) {
        const int j = qh->perm[i], gi = j / G;
        double *x = wt + (size_t)i * out + r0, *ei = e + (size_t)(i - i1) * out + r0;
        if (!static_groups && j % G == 0)
            for (int r = 0; r < nr; r++) quant_grid_set(q, r0 + r, gi, x + r, out);
        const double d = U[(size_t)i * n + i];
        for (int r = 0; r < nr; r++) {
            const size_t o = (size_t)(r0 + r) * n + j;
            const int c = quant_code(q, r0 + r, gi, x[r]);
            const float v = quant_value(q, r0 + r, gi, c);
            q->codes[o] = (uint8_t)c;
            w_hat[o] = v;
            ei[r] = (x[r] - v) / d;
            f += ei[r] * ei[r];
        }
        for (int k = i + 1; k < i2; k++) {
            const double u = U[(size_t)i * n + k];
            double *xk = wt + (size_t)k * out + r0;
            for (int r = 0; r < nr; r++) xk[r] -= u * ei[r];
        }
    }
    return f;
}

int gptq_quantize(qweight *q, float *w_hat, double *objective, const float *w, const quant_hessian *qh, int static_groups) {
    const int n = qh->n, out = q->n_out;
    if (!qh->u) return err_set(ERR_INTERNAL, "gptq_quantize: the Hessian is not factored");
    if (q->n_in != n || q->type != QW_INT) return err_set(ERR_INTERNAL, "gptq_quantize: shapes or type disagree");
    if (!static_groups)
        for (int k = 0; k < n; k++)
            if (qh->perm[k] != k)
                return err_set(ERR_INPUT, "GPTQ with act order needs static groups (scales from the original weights)");
    const int n_chunks = (out + QUANT_ROW_CHUNK - 1) / QUANT_ROW_CHUNK;
    double *wt = malloc(sizeof(double) * (size_t)n * out), *e = malloc(sizeof(double) * (size_t)QUANT_BLOCK * out);
    double *part = calloc((size_t)n_chunks, sizeof(double)); /* per row chunk: sum of e^2 over its blocks */
    if (!wt || !e || !part) {
        free(wt), free(e), free(part);
        return err_set(ERR_NOMEM, "GPTQ: cannot allocate %.1f MiB for a [%d, %d] weight", 8.0 * (n + QUANT_BLOCK) * out / 1048576.0,
                       out, n);
    }
    for (int k = 0; k < n; k++) {
        const int j = qh->perm[k];
        for (int r = 0; r < out; r++) wt[(size_t)k * out + r] = qh->dead[j] ? 0.0 : w[(size_t)r * n + j];
    }
    /* threads by work size: the block updates are about out n^2 / 2 multiply-adds (kernels/threads.h) */
    const int threads = kernels_threads_for(0.5 * out * (double)n * n, THR_GEMM_MACS);
#pragma omp parallel num_threads(threads) if (threads > 1)
    for (int i1 = 0; i1 < n; i1 += QUANT_BLOCK) {
        const int i2 = i1 + QUANT_BLOCK < n ? i1 + QUANT_BLOCK : n;
#pragma omp for schedule(dynamic, 1)
        for (int c = 0; c < n_chunks; c++) {
            const int r0 = c * QUANT_ROW_CHUNK, nr = out - r0 < QUANT_ROW_CHUNK ? out - r0 : QUANT_ROW_CHUNK;
            part[c] += block_rows(q, w_hat, qh, static_groups, wt, e, i1, i2, r0, nr);
        }
        /* wt[i2:, :] -= U[i1:i2, i2:]^T E */
        quant_gemm_tn_tiles(wt + (size_t)i2 * out, out, qh->u + (size_t)i1 * n + i2, n, e, out, n - i2, out, i2 - i1, -1.0);
    }
    if (objective) {
        *objective = 0;
        for (int c = 0; c < n_chunks; c++) *objective += part[c];
    }
    free(wt), free(e), free(part);
    return 0;
}
