/* hessian.c: the Hessian of the layer-wise objective as GPTQ and QuantEase use it: dead columns,
 * damping lambda = damp * mean(diag H), act order, and the upper Cholesky factor of H_lambda^-1 with
 * damping retries (kernels/dense64.h, float64). */
#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "common/log.h"
#include "kernels/dense64.h"
#include "kernels/gram.h"
#include "kernels/threads.h"
#include "stages/quantize/quant.h"


void quant_hessian_free(quant_hessian *qh) {
    free(qh->h), free(qh->perm), free(qh->dead), free(qh->u);
    memset(qh, 0, sizeof *qh);
}

static const double *diag_key; /* qsort context: sort by decreasing diagonal, stable by index */
static int by_diag_desc(const void *a, const void *b) {
    const int i = *(const int *)a, j = *(const int *)b;
    if (diag_key[i] != diag_key[j]) return diag_key[i] > diag_key[j] ? -1 : 1;
    return (i > j) - (i < j);
}

int quant_hessian_prepare(quant_hessian *qh, const double *h, int n, double damp, int act_order) {
    memset(qh, 0, sizeof *qh);
    qh->n = n;
    qh->damp = damp;
    qh->h = xmalloc(sizeof(double) * (size_t)n * n);
    qh->perm = xmalloc(sizeof(int) * (size_t)n);
    qh->dead = xcalloc((size_t)n, 1);
    double *diag = xmalloc(sizeof(double) * (size_t)n);
    if (!qh->h || !qh->perm || !qh->dead || !diag) {
        free(diag);
        quant_hessian_free(qh);
        return -1;
    }
    double mean = 0;
    for (int j = 0; j < n; j++) {
        diag[j] = h[(size_t)j * n + j];
        if (!isfinite(diag[j]) || diag[j] < 0) {
            const double bad = diag[j];
            free(diag);
            quant_hessian_free(qh);
            return err_set(ERR_STAGE, "the Hessian's diagonal entry %d is %g: the calibration inputs hold NaN or "
                           "infinite values", j, bad);
        }
        if (diag[j] == 0) qh->dead[j] = 1, qh->n_dead++, diag[j] = 1;
        mean += diag[j];
    }
    mean /= n;
    qh->mean_diag = mean;
    qh->lambda = damp * mean;
    for (int j = 0; j < n; j++) qh->perm[j] = j;
    if (act_order) {
        diag_key = diag;
        qsort(qh->perm, (size_t)n, sizeof(int), by_diag_desc);
    }
    for (int a = 0; a < n; a++)
        for (int b = 0; b < n; b++) {
            const int i = qh->perm[a], j = qh->perm[b];
            qh->h[(size_t)a * n + b] = i == j ? diag[i] + qh->lambda : h[(size_t)i * n + j];
        }
    free(diag);
    return 0;
}

/* u = the upper Cholesky factor of h^-1 (h^-1 = U^T U), or -1 (error set) when h is not positive
 * definite in floating point. With J the order reversal, J h J = L L^T gives h^-1 = (J L^-1 J)^T (J L^-1 J)
 * and J L^-1 J is upper triangular with a positive diagonal: U itself. One Cholesky factorization and
 * one triangular inverse (2 n^3 / 3 flops) instead of LAPACK's potrf, potri and potrf again (4 n^3 / 3),
 * on kernels/dense64.h's fixed tiles (threaded, bitwise the same on any thread count). scratch: n^2. */
static int factor_once(double *u, double *scratch, const double *h, int n) {
    const size_t nn = (size_t)n * n;
    for (size_t i = 0; i < nn; i++) scratch[i] = h[nn - 1 - i]; /* J h J: both orders reversed */
    if (d_cholesky(scratch, n, n)) return -1;
    d_tri_inverse(u, n, scratch, n, n);
    for (size_t i = 0; i < nn / 2; i++) { /* J L^-1 J in place */
        const double t = u[i];
        u[i] = u[nn - 1 - i], u[nn - 1 - i] = t;
    }
    return 0;
}

int quant_hessian_factor(quant_hessian *qh, const char *what) {
    const int n = qh->n;
    if (!qh->u && !(qh->u = xmalloc(sizeof(double) * (size_t)n * n))) return -1;
    double *scratch = xmalloc(sizeof(double) * (size_t)n * n);
    if (!scratch) return -1;
    for (;;) {
        if (!factor_once(qh->u, scratch, qh->h, n)) break;
        if (qh->retries == QUANT_MAX_RETRIES) {
            free(scratch);
            return err_set(ERR_STAGE, "%s: the Cholesky factorization of the damped Hessian failed even with damp %g; the "
                           "calibration inputs are degenerate (too few tokens?): give more calibration data or raise "
                           "damp", what, qh->damp);
        }
        const double old_lambda = qh->lambda, old = qh->damp;
        /* a zero damping (damp: 0) first becomes 1e-4 of the mean diagonal */
        qh->damp = old > 0 ? old * 10 : 1e-4;
        qh->lambda = old > 0 ? old_lambda * 10 : 1e-4 * qh->mean_diag;
        qh->retries++;
        for (int j = 0; j < n; j++) qh->h[(size_t)j * n + j] += qh->lambda - old_lambda;
        log_warn("%s: %s (damp %g); retrying with damp %g", what, err_msg(), old, qh->damp);
    }
    free(scratch);
    return 0;
}

/* Sum over rows r0..r0+nr-1 (nr <= QUANT_GEMM_TILE) of a_r H a_r^T, for a = W^ - W (delta) or W.
 * scratch: 2 nr n doubles. */
static double rows_quadratic(const float *w, const float *w_hat, const double *h, int n, int r0, int nr, double *a,
                             double *ah) {
    for (int r = 0; r < nr; r++)
        for (int j = 0; j < n; j++) {
            const size_t o = (size_t)(r0 + r) * n + j;
            a[(size_t)r * n + j] = w_hat ? (double)w_hat[o] - (double)w[o] : (double)w[o];
        }
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, nr, n, n, 1.0, a, n, h, n, 0.0, ah, n);
    double f = 0;
    for (size_t i = 0; i < (size_t)nr * n; i++) f += a[i] * ah[i];
    return f;
}

int quant_layer_error(double *err, double *ref, const float *w, const float *w_hat, const double *h, int n_out, int n_in) {
    /* threads by work size: two products of n_out n_in^2 multiply-adds (kernels/threads.h) */
    const int n_chunks = (n_out + QUANT_GEMM_TILE - 1) / QUANT_GEMM_TILE,
              threads = kernels_threads_for(2.0 * n_out * (double)n_in * n_in, THR_GEMM_MACS);
    double *part = xcalloc((size_t)n_chunks * 2, sizeof(double));
    if (!part) return -1;
    int failed = 0;
#pragma omp parallel num_threads(threads) if (threads > 1 && n_chunks > 1) reduction(| : failed)
    {
        double *a = malloc(sizeof(double) * 2 * (size_t)QUANT_GEMM_TILE * n_in);
#pragma omp for schedule(dynamic, 1)
        for (int c = 0; c < n_chunks; c++) {
            if (!a) {
                failed = 1;
                continue;
            }
            const int r0 = c * QUANT_GEMM_TILE, nr = n_out - r0 < QUANT_GEMM_TILE ? n_out - r0 : QUANT_GEMM_TILE;
            double *ah = a + (size_t)QUANT_GEMM_TILE * n_in;
            part[2 * c] = rows_quadratic(w, w_hat, h, n_in, r0, nr, a, ah);
            part[2 * c + 1] = rows_quadratic(w, NULL, h, n_in, r0, nr, a, ah);
        }
        free(a);
    }
    *err = *ref = 0;
    for (int c = 0; c < n_chunks; c++) *err += part[2 * c], *ref += part[2 * c + 1];
    free(part);
    return failed ? err_set(ERR_NOMEM, "cannot allocate scratch for the layer error") : 0;
}

void quant_gemm_tn_tiles(double *c, int ldc, const double *a, int lda, const double *b, int ldb, int m, int n, int k,
                         double alpha) {
    const int tiles = (m + QUANT_GEMM_TILE - 1) / QUANT_GEMM_TILE;
#pragma omp for schedule(dynamic, 1)
    for (int t = 0; t < tiles; t++) {
        const int m0 = t * QUANT_GEMM_TILE, mt = m - m0 < QUANT_GEMM_TILE ? m - m0 : QUANT_GEMM_TILE;
        if (k > 0 && n > 0)
            cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, mt, n, k, alpha, a + m0, lda, b, ldb, 1.0,
                        c + (size_t)m0 * ldc, ldc);
    }
}

int quant_layer_ref(double *ref, const float *w, const double *h, int n_out, int n_in) {
    double *g = xcalloc((size_t)n_in * n_in, sizeof(double));
    if (!g) return -1;
    if (gram_accumulate(g, w, n_in, n_out, n_in)) {
        free(g);
        return -1;
    }
    /* <G, H> over the upper triangle G holds: the diagonal once, the rest twice (H symmetric) */
    double f = 0;
    for (int i = 0; i < n_in; i++) {
        const double *gi = g + (size_t)i * n_in, *hi = h + (size_t)i * n_in;
        double off = 0;
        for (int j = i + 1; j < n_in; j++) off += gi[j] * hi[j];
        f += gi[i] * hi[i] + 2 * off;
    }
    free(g);
    *ref = f;
    return 0;
}

double quant_error_from_objective(double f, const float *w, const float *w_hat, const quant_hessian *qh, int n_out) {
    const int n = qh->n;
    double d2 = 0;
    for (int r = 0; r < n_out; r++)
        for (int j = 0; j < n; j++) {
            if (qh->dead[j]) continue;
            const double d = (double)w_hat[(size_t)r * n + j] - (double)w[(size_t)r * n + j];
            d2 += d * d;
        }
    return f - qh->lambda * d2;
}
