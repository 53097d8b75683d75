/* quantease.c: QuantEase (Behdin et al. 2023; FMCHISEL) in float64: cyclic coordinate descent on
 * f(W^) = tr((W^ - W) H (W^ - W)^T), H the damped Hessian. With the other columns fixed, the best
 * column j is the grid point nearest to
 *     u_j = W_j + sum_{k != j} (W_k - W^_k) H_kj / H_jj = P_j - sum_{k != j} W^_k Hh0_kj,
 * with P = W H D^-1 (D = diag H) and Hh0 = H D^-1 with a zero diagonal, so no update increases f.
 * T = W^ Hh0 is kept current: inside a block of QUANT_BLOCK columns the changes of the block's earlier
 * columns are added explicitly (O(rows * block) per column), and after the block one dgemm adds them
 * to every column (T += Hh0[block, :]^T dW^): a sweep costs 2 n_in^2 flops per row, in GEMMs.
 * Rows are independent: fixed chunks of QUANT_ROW_CHUNK rows, one per OpenMP thread at a time, held
 * transposed ([n_in, rows]). The objective needs no extra product:
 *     f_r = sum_j (W^ - W)_rj d_j (T + W^ - P)_rj    ((W^ - W) H = ((T + W^ - P) D)).
 * Memory: n_in^2 doubles shared, 4 n_in QUANT_ROW_CHUNK + QUANT_BLOCK QUANT_ROW_CHUNK per thread. */
#include <cblas.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "kernels/threads.h"
#include "stages/quantize/quant.h"

typedef struct {
    double *wt, *pt, *what, *t, *dl, *acc;
} qe_scratch;

/* Sum over the chunk's rows of (W^ - W) H (W^ - W)^T. */
static double chunk_objective(const qe_scratch *s, const double *d, int n, int nr) {
    double f = 0;
    for (int j = 0; j < n; j++) {
        const size_t o = (size_t)j * nr;
        for (int r = 0; r < nr; r++)
            f += (s->what[o + r] - s->wt[o + r]) * d[j] * (s->t[o + r] + s->what[o + r] - s->pt[o + r]);
    }
    return f;
}

/* Rows r0 .. r0+nr-1; obj[0..sweeps] receives the chunk's objective. */
static void qe_rows(qweight *q, float *w_hat, const float *w, const quant_hessian *qh, const double *hh0,
                    const double *d, int sweeps, int r0, int nr, const qe_scratch *s, double *obj) {
    const int n = qh->n, G = q->group_size;
    for (int k = 0; k < n; k++) {
        const int j = qh->perm[k];
        for (int r = 0; r < nr; r++) {
            const size_t o = (size_t)(r0 + r) * n + j;
            s->wt[(size_t)k * nr + r] = qh->dead[j] ? 0.0 : w[o];
            s->what[(size_t)k * nr + r] = quant_value(q, r0 + r, j / G, q->codes[o]);
        }
    }
    /* P^T = Hh^T W^T = Hh0^T W^T + W^T (Hh has a unit diagonal); T = Hh0^T W^^T */
    cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, n, nr, n, 1.0, hh0, n, s->wt, nr, 0.0, s->pt, nr);
    for (size_t i = 0; i < (size_t)n * nr; i++) s->pt[i] += s->wt[i];
    cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, n, nr, n, 1.0, hh0, n, s->what, nr, 0.0, s->t, nr);
    obj[0] = chunk_objective(s, d, n, nr);
    for (int sweep = 1; sweep <= sweeps; sweep++) {
        for (int j1 = 0; j1 < n; j1 += QUANT_BLOCK) {
            const int j2 = j1 + QUANT_BLOCK < n ? j1 + QUANT_BLOCK : n;
            for (int j = j1; j < j2; j++) {
                const int col = qh->perm[j], gi = col / G;
                const size_t o = (size_t)j * nr;
                for (int r = 0; r < nr; r++) s->acc[r] = s->pt[o + r] - s->t[o + r];
                for (int k = j1; k < j; k++) {
                    const double a = hh0[(size_t)k * n + j];
                    const double *dk = s->dl + (size_t)(k - j1) * nr;
                    for (int r = 0; r < nr; r++) s->acc[r] -= a * dk[r];
                }
                double *dj = s->dl + (size_t)(j - j1) * nr;
                for (int r = 0; r < nr; r++) {
                    const int c = qh->dead[col] ? qweight_zero(q, r0 + r, gi) : quant_code(q, r0 + r, gi, s->acc[r]);
                    const double v = quant_value(q, r0 + r, gi, c);
                    dj[r] = v - s->what[o + r];
                    s->what[o + r] = v;
                    q->codes[(size_t)(r0 + r) * n + col] = (uint8_t)c;
                }
            }
            cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, n, nr, j2 - j1, 1.0, hh0 + (size_t)j1 * n, n, s->dl, nr,
                        1.0, s->t, nr);
        }
        obj[sweep] = chunk_objective(s, d, n, nr);
    }
    for (int r = 0; r < nr; r++)
        for (int j = 0; j < n; j++) {
            const size_t o = (size_t)(r0 + r) * n + j;
            w_hat[o] = quant_value(q, r0 + r, j / G, q->codes[o]);
        }
}

int quantease_quantize(qweight *q, float *w_hat, const float *w, const quant_hessian *qh, int sweeps, double *objective) {
    const int n = qh->n, n_out = q->n_out;
    if (q->n_in != n || q->type != QW_INT) return err_set(ERR_INTERNAL, "quantease_quantize: shapes or type disagree");
    const int n_chunks = (n_out + QUANT_ROW_CHUNK - 1) / QUANT_ROW_CHUNK, threads = kernels_threads();
    double *hh0 = xmalloc(sizeof(double) * (size_t)n * n), *d = xmalloc(sizeof(double) * (size_t)n);
    double *obj = xcalloc((size_t)n_chunks * (sweeps + 1), sizeof(double));
    if (!hh0 || !d || !obj) {
        free(hh0), free(d), free(obj);
        return -1;
    }
    for (int j = 0; j < n; j++) d[j] = qh->h[(size_t)j * n + j];
    for (int k = 0; k < n; k++)
        for (int j = 0; j < n; j++) hh0[(size_t)k * n + j] = k == j ? 0.0 : qh->h[(size_t)k * n + j] / d[j];
    int failed = 0;
    const size_t per = (size_t)n * QUANT_ROW_CHUNK;
#pragma omp parallel num_threads(threads) if (threads > 1 && n_chunks > 1) reduction(| : failed)
    {
        double *mem = malloc(sizeof(double) * (4 * per + (size_t)(QUANT_BLOCK + 1) * QUANT_ROW_CHUNK));
        qe_scratch s = {0};
        if (mem) s = (qe_scratch){mem, mem + per, mem + 2 * per, mem + 3 * per, mem + 4 * per,
                                  mem + 4 * per + (size_t)QUANT_BLOCK * QUANT_ROW_CHUNK};
#pragma omp for schedule(dynamic, 1)
        for (int c = 0; c < n_chunks; c++) {
            if (!mem) {
                failed = 1;
                continue;
            }
            const int r0 = c * QUANT_ROW_CHUNK, nr = n_out - r0 < QUANT_ROW_CHUNK ? n_out - r0 : QUANT_ROW_CHUNK;
            qe_rows(q, w_hat, w, qh, hh0, d, sweeps, r0, nr, &s, obj + (size_t)c * (sweeps + 1));
        }
        free(mem);
    }
    if (!failed && objective)
        for (int t = 0; t <= sweeps; t++) {
            double f = 0;
            for (int c = 0; c < n_chunks; c++) f += obj[(size_t)c * (sweeps + 1) + t];
            objective[t] = f;
        }
    free(hh0), free(d), free(obj);
    if (failed) return err_set(ERR_NOMEM, "QuantEase: cannot allocate %.1f MiB of scratch per thread",
                               8.0 * (4.0 * per + QUANT_BLOCK * QUANT_ROW_CHUNK) / 1048576.0);
    return 0;
}
