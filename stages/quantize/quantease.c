/* quantease.c: QuantEase (Behdin et al. 2023; FMCHISEL) in float64: cyclic coordinate descent on
 * f(W^) = tr((W^ - W) H (W^ - W)^T), H the damped Hessian. With the other columns fixed, the best
 * column j is the grid point nearest to
 *     u_j = W_j + sum_{k != j} (W_k - W^_k) H_kj / H_jj = P_j - sum_{k != j} W^_k Hh0_kj,
 * with P = W H D^-1 (D = diag H) and Hh0 = H D^-1 with a zero diagonal, so no update increases f.
 * T = W^ Hh0 is kept current: inside a block of QUANT_BLOCK columns the changes of the block's earlier
 * columns are added explicitly (O(rows * block) per column), and after the block one product adds them
 * to every column (T += Hh0[block, :]^T dW^): a sweep costs 2 n_in^2 flops per row, in products.
 * Everything is held transposed ([n_in, n_out]); rows are independent, so the column loop runs on fixed
 * chunks of QUANT_ROW_CHUNK rows and the products on fixed tiles of QUANT_GEMM_TILE, shared by the
 * OpenMP threads (the result does not depend on the thread count). The objective needs no extra product:
 *     f_r = sum_j (W^ - W)_rj d_j (T + W^ - P)_rj    ((W^ - W) H = ((T + W^ - P) D)).
 * Memory: n_in^2 + (4 n_in + QUANT_BLOCK) n_out doubles. */
#include <cblas.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "kernels/threads.h"
#include "stages/quantize/quant.h"

typedef struct {
    int n, out;
    double *wt, *pt, *what, *t, *dl; /* [n, out] x 4, dl [QUANT_BLOCK, out] */
    const double *hh0, *d;
} qe_state;

/* Sum over rows r0..r0+nr-1 of (W^ - W) H (W^ - W)^T. */
static double rows_objective(const qe_state *s, int r0, int nr) {
    double f = 0;
    for (int j = 0; j < s->n; j++) {
        const size_t o = (size_t)j * s->out + r0;
        for (int r = 0; r < nr; r++)
            f += (s->what[o + r] - s->wt[o + r]) * s->d[j] * (s->t[o + r] + s->what[o + r] - s->pt[o + r]);
    }
    return f;
}

/* The columns j1..j2-1 of rows r0..r0+nr-1: each set to its best grid point; dl gets the changes. */
static void block_rows(qweight *q, const quant_hessian *qh, const qe_state *s, int j1, int j2, int r0, int nr) {
    const int n = s->n, out = s->out, G = q->group_size;
    double acc[QUANT_ROW_CHUNK];
    for (int j = j1; j < j2; j++) {
        const int col = qh->perm[j], gi = col / G;
        const size_t o = (size_t)j * out + r0;
        for (int r = 0; r < nr; r++) acc[r] = s->pt[o + r] - s->t[o + r];
        for (int k = j1; k < j; k++) {
            const double a = s->hh0[(size_t)k * n + j];
            const double *dk = s->dl + (size_t)(k - j1) * out + r0;
            for (int r = 0; r < nr; r++) acc[r] -= a * dk[r];
        }
        double *dj = s->dl + (size_t)(j - j1) * out + r0;
        for (int r = 0; r < nr; r++) {
            const int c = qh->dead[col] ? qweight_zero(q, r0 + r, gi) : quant_code(q, r0 + r, gi, acc[r]);
            const double v = quant_value(q, r0 + r, gi, c);
            dj[r] = v - s->what[o + r];
            s->what[o + r] = v;
            q->codes[(size_t)(r0 + r) * n + col] = (uint8_t)c;
        }
    }
}

int quantease_quantize(qweight *q, float *w_hat, const float *w, const quant_hessian *qh, int sweeps, double *objective) {
    const int n = qh->n, out = q->n_out, G = q->group_size;
    if (q->n_in != n || q->type != QW_INT) return err_set(ERR_INTERNAL, "quantease_quantize: shapes or type disagree");
    /* threads by work size: each sweep is about out n^2 multiply-adds (kernels/threads.h) */
    const int n_chunks = (out + QUANT_ROW_CHUNK - 1) / QUANT_ROW_CHUNK,
              threads = kernels_threads_for(out * (double)n * n, THR_GEMM_MACS);
    const size_t big = (size_t)n * out;
    double *hh0 = malloc(sizeof(double) * (size_t)n * n), *d = malloc(sizeof(double) * (size_t)n);
    double *mem = malloc(sizeof(double) * (4 * big + (size_t)QUANT_BLOCK * out));
    double *obj = calloc((size_t)n_chunks * (sweeps + 1), sizeof(double));
    if (!hh0 || !d || !mem || !obj) {
        free(hh0), free(d), free(mem), free(obj);
        return err_set(ERR_NOMEM, "QuantEase: cannot allocate %.1f MiB for a [%d, %d] weight",
                       8.0 * (4.0 * big + (double)n * n) / 1048576.0, out, n);
    }
    qe_state s = {n, out, mem, mem + big, mem + 2 * big, mem + 3 * big, mem + 4 * big, hh0, d};
    for (int j = 0; j < n; j++) d[j] = qh->h[(size_t)j * n + j];
    for (int k = 0; k < n; k++)
        for (int j = 0; j < n; j++) hh0[(size_t)k * n + j] = k == j ? 0.0 : qh->h[(size_t)k * n + j] / d[j];
    for (int k = 0; k < n; k++) {
        const int j = qh->perm[k];
        for (int r = 0; r < out; r++) {
            const size_t o = (size_t)r * n + j;
            s.wt[(size_t)k * out + r] = qh->dead[j] ? 0.0 : w[o];
            s.what[(size_t)k * out + r] = quant_value(q, r, j / G, q->codes[o]);
        }
    }
    memcpy(s.pt, s.wt, sizeof(double) * big); /* P^T = Hh0^T W^T + W^T (Hh has a unit diagonal) */
    memset(s.t, 0, sizeof(double) * big);     /* T = Hh0^T W^^T */
#pragma omp parallel num_threads(threads) if (threads > 1)
    {
        quant_gemm_tn_tiles(s.pt, out, hh0, n, s.wt, out, n, out, n, 1.0);
        quant_gemm_tn_tiles(s.t, out, hh0, n, s.what, out, n, out, n, 1.0);
        for (int sweep = 0; sweep <= sweeps; sweep++) {
            for (int j1 = 0; sweep > 0 && j1 < n; j1 += QUANT_BLOCK) {
                const int j2 = j1 + QUANT_BLOCK < n ? j1 + QUANT_BLOCK : n;
#pragma omp for schedule(dynamic, 1)
                for (int c = 0; c < n_chunks; c++) {
                    const int r0 = c * QUANT_ROW_CHUNK;
                    block_rows(q, qh, &s, j1, j2, r0, out - r0 < QUANT_ROW_CHUNK ? out - r0 : QUANT_ROW_CHUNK);
                }
                quant_gemm_tn_tiles(s.t, out, hh0 + (size_t)j1 * n, n, s.dl, out, n, out, j2 - j1, 1.0);
            }
#pragma omp for schedule(dynamic, 1)
            for (int c = 0; c < n_chunks; c++) {
                const int r0 = c * QUANT_ROW_CHUNK;
                obj[(size_t)c * (sweeps + 1) + sweep] = rows_objective(&s, r0, out - r0 < QUANT_ROW_CHUNK ? out - r0 : QUANT_ROW_CHUNK);
            }
        }
    }
    for (int t = 0; objective && t <= sweeps; t++) {
        double f = 0;
        for (int c = 0; c < n_chunks; c++) f += obj[(size_t)c * (sweeps + 1) + t];
        objective[t] = f;
    }
    for (int r = 0; r < out; r++)
        for (int j = 0; j < n; j++) {
            const size_t o = (size_t)r * n + j;
            w_hat[o] = quant_value(q, r, j / G, q->codes[o]);
        }
    free(hh0), free(d), free(mem), free(obj);
    return 0;
}
