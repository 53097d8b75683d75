/* quant.h: the quantization algorithms of the `quantize` stage (ALGORITHMS.md section 4), each on one
 * linear weight W [n_out, n_in] (Hugging Face layout) and, where it uses calibration data, the float64
 * Gram matrix H = X^T X [n_in, n_in] of the layer's inputs X (kernels/gram.h). Every algorithm fills a
 * qweight (kernels/qweight.h: one code per weight, group scales, zero points) and w_hat, the weights the
 * codes stand for (bitwise qweight_dequantize(q)), which the layer-by-layer pass puts back into the model.
 *
 *   RTN        each weight to its nearest grid point (grid.c)
 *   GPTQ       columns in order (or act order), error fed forward through the upper Cholesky factor of
 *              H_lambda^-1, blocks of 128 columns with lazy batch updates (one GEMM per block) (gptq.c)
 *   QuantEase  cyclic coordinate descent on tr((W^ - W) H_lambda (W^ - W)^T), started from GPTQ or RTN,
 *              with P = W H D^-1 precomputed and one GEMM per block of columns (quantease.c)
 *   SmoothQuant per-channel scales folded into the preceding RMSNorm and the reading linears (smooth.c)
 *   FP8        E4M3 weights, one scale per tensor or per output channel (grid.c)
 *
 * All three integer methods share one grid, computed from the ORIGINAL weights ("static groups", as
 * FMCHISEL and llmcompressor do), so they differ only in which grid point each weight gets. Scales are
 * rounded to fp16-representable values (every export format can store them exactly) and floored at
 * 2^-24 (a group of zeros). The algorithms are row-separable: rows are processed in fixed chunks of
 * QUANT_ROW_CHUNK by the OpenMP threads, so the result does not depend on the thread count. */
#ifndef SMELT_STAGES_QUANTIZE_QUANT_H
#define SMELT_STAGES_QUANTIZE_QUANT_H

#include <stdint.h>

#include "kernels/qweight.h"

#define QUANT_ROW_CHUNK 64   /* output rows per unit of parallel work (column loops) */
#define QUANT_GEMM_TILE 128  /* rows of a product's output per unit of parallel work (block updates) */
#define QUANT_BLOCK 128      /* GPTQ / QuantEase columns per lazy (GEMM) update */
#define QUANT_MAX_RETRIES 6  /* Cholesky retries, damping x10 each */

/* The integer grid (ALGORITHMS.md): asymmetric s = (max(0,max w) - min(0,min w)) / (2^b - 1),
 * z = round(-min / s); symmetric s = 2 max|w| / (2^b - 1), z = 2^(b-1); q = clamp(round(w/s) + z, 0,
 * 2^b - 1) (round half to even); w^ = s (q - z). */
typedef struct {
    int bits;        /* 2..8 */
    int group_size;  /* divides n_in; n_in (or -1 at parse time) is one group per output channel */
    int sym;
    int scale_bits;  /* significant bits of the scales: 0 for fp16's 11; fewer keep scale * zero an fp16
                      * number too (11 - bits: what GGUF's Q4_1 stores as its minimum -scale * zero) */
} quant_grid;

/* Allocates q (QW_INT, n_out x n_in, act QA_NONE) and computes every group's scale and zero point
 * from w [n_out, n_in] (rows of groups flagged in `dead` are ignored: NULL for none). 0 or -1. */
int quant_grid_init(qweight *q, const float *w, int n_out, int n_in, const quant_grid *g, const uint8_t *dead);
/* The code of x in the grid of row r, group gi; and the value a code stands for (as float, exactly
 * qweight_dequantize's product). */
static inline int quant_code(const qweight *q, int r, int gi, double x) {
    const int ng = q->n_in / q->group_size, maxq = (1 << q->bits) - 1;
    const double s = q->scales[(int64_t)r * ng + gi];
    const int z = qweight_zero(q, r, gi);
    double v = __builtin_nearbyint(x / s) + z;
    return v < 0 ? 0 : v > maxq ? maxq : (int)v;
}
static inline float quant_value(const qweight *q, int r, int gi, int code) {
    const int ng = q->n_in / q->group_size;
    return q->scales[(int64_t)r * ng + gi] * (float)(code - qweight_zero(q, r, gi));
}
/* Dynamic groups: (re)computes the scale and zero of group gi of row r from the values x[0..G)
 * (stride ldx), scales of fp16's 11 significant bits (the stage runs static groups only). */
void quant_grid_set(qweight *q, int r, int gi, const double *x, int ldx);

/* RTN codes on the grid already in q (dead columns: the zero point); w_hat = their values. */
void quant_grid_codes(qweight *q, float *w_hat, const float *w, const uint8_t *dead);

/* RTN: q allocated and filled, w_hat [n_out, n_in] = its values. 0 or -1. */
int quant_rtn(qweight *q, float *w_hat, const float *w, int n_out, int n_in, const quant_grid *g);

/* FP8 E4M3 weights: scale max|W| / 448 per tensor (per_channel 0) or per output row, codes of
 * clamp(w / scale, -448, 448) rounded to nearest even (fp8_e4m3_from_float). A zero tensor/row gets
 * scale 1. act is recorded in q. 0 or -1. */
int quant_fp8(qweight *q, float *w_hat, const float *w, int n_out, int n_in, int per_channel, qa_type act);

/* ---- the Hessian shared by GPTQ and QuantEase (hessian.c) ---- */

typedef struct {
    int n;
    double *h;        /* [n, n] H with dead columns set to 1 on the diagonal, + lambda I, in the
                       * processing order (permuted by perm) */
    int *perm;        /* [n] perm[k] = original column processed k-th (identity without act order) */
    uint8_t *dead;    /* [n] by ORIGINAL column: H_jj was 0 (no input): its weights are set to 0 */
    int n_dead;
    double damp;      /* the relative damping in force (raised by Cholesky retries) */
    double mean_diag; /* mean(diag H) after the dead fix */
    double lambda;    /* damp * mean_diag */
    int retries;      /* Cholesky failures overcome by raising damp x10 */
    double *u;        /* [n, n] upper Cholesky factor of h^-1 (GPTQ), NULL until quant_hessian_factor */
} quant_hessian;

/* Copies h [n, n] (symmetric, undamped), fixes dead columns, adds lambda = damp mean(diag) to the
 * diagonal and orders the columns by decreasing diag(H) when act_order (stable: ties keep their order).
 * 0 or -1. */
int quant_hessian_prepare(quant_hessian *qh, const double *h, int n, double damp, int act_order);
/* u = upper Cholesky factor of qh->h^-1 (h = L L^T, h^-1, then its factor). When a factorization fails
 * the damping is raised x10 (qh->h, lambda, damp, retries updated; a warning is logged) up to
 * QUANT_MAX_RETRIES times, then ERR_STAGE. `what` names the layer in messages. 0 or -1. */
int quant_hessian_factor(quant_hessian *qh, const char *what);
void quant_hessian_free(quant_hessian *qh);

/* ---- GPTQ (gptq.c) ---- */

/* q: from quant_grid_init (static groups); with static_groups 0 (only without act order) the scale
 * and zero of each group are recomputed from the updated weights when its first column is reached.
 * w [n_out, n_in], qh prepared and factored. Codes of q filled, w_hat = their values; objective (may
 * be NULL) = tr((W^ - W) H_lambda (W^ - W)^T) with qh's damped H (dead columns zeroed in W), as the sum
 * of the squared scaled errors e_i (the identity W - W^ = E U). 0 or -1. */
int gptq_quantize(qweight *q, float *w_hat, double *objective, const float *w, const quant_hessian *qh, int static_groups);

/* ---- QuantEase (quantease.c) ---- */

/* Coordinate descent from the codes already in q (a GPTQ or RTN result on the same grid), `sweeps`
 * cyclic passes over the columns in qh's order. objective[0..sweeps] (may be NULL) receives
 * tr((W^ - W) H_lambda (W^ - W)^T) before the first sweep and after each. Codes of q updated, w_hat =
 * their values. 0 or -1. */
int quantease_quantize(qweight *q, float *w_hat, const float *w, const quant_hessian *qh, int sweeps, double *objective);

/* ---- errors ---- */

/* c[m, ldc] += alpha a^T b for a [k, lda >= m] and b [k, ldb >= n], split into fixed tiles of
 * QUANT_GEMM_TILE rows of c shared by the threads of the enclosing OpenMP parallel region (an orphaned
 * `omp for`: every thread of the region must call it; it ends with a barrier). Each tile is one dgemm
 * whatever the thread count, so the result does not depend on it. */
void quant_gemm_tn_tiles(double *c, int ldc, const double *a, int lda, const double *b, int ldb, int m, int n, int k,
                         double alpha);

/* err = tr((W^ - W) H (W^ - W)^T) and ref = tr(W H W^T) for h [n_in, n_in] (H = X^T X: err/ref is
 * ||X W^T - X W^T||^2 / ||X W^T||^2 on the calibration inputs X). float64, fixed order. 0 or -1. */
int quant_layer_error(double *err, double *ref, const float *w, const float *w_hat, const double *h, int n_out, int n_in);

/* ref = tr(W H W^T) = <W^T W, H> for h [n_in, n_in] symmetric: W^T W accumulated in float64 by
 * kernels/gram.h (n_out n_in^2 / 2 multiply-adds, half of a product with H). 0 or -1. */
int quant_layer_ref(double *ref, const float *w, const double *h, int n_out, int n_in);
/* The undamped error tr((W^ - W) H (W^ - W)^T) from the damped objective f = tr((W^ - W) H_lambda
 * (W^ - W)^T) that GPTQ and QuantEase return (computed with dead columns zeroed in W): f - lambda
 * ||W^ - W||^2 over the live columns (H + dead fix + lambda I differs from H by lambda I there, and a
 * dead column adds nothing to either side). O(n_out n_in) instead of a product with H. */
double quant_error_from_objective(double f, const float *w, const float *w_hat, const quant_hessian *qh, int n_out);

/* ---- SmoothQuant (smooth.c) ---- */

/* s[j] = max(act_max[j]^alpha / max(wmax[j], 1e-5)^(1 - alpha), 1e-5), wmax[j] the largest |W_ij| over
 * every linear of w[0..n_w) (each [n_out[k], n_in]) that reads channel j. */
void smooth_scales(float *s, const float *act_max, const float *const *w, const int *n_out, int n_w, int n_in,
                   double alpha);
/* Folds s into a norm weight (norm[j] /= s[j]) and the columns of the reading linears (W[:, j] *= s[j]),
 * and into their Gram matrix h [n_in, n_in] (h_jk /= s_j s_k; may be NULL). */
void smooth_apply(float *norm, float *const *w, const int *n_out, int n_w, int n_in, double *h, const float *s);

/* Dynamic per-token activation quantization as the quantized kernels run it (for error measurement):
 * xq [n, d] = the values x [n, d] becomes (int8: s_t = max|x_t|/127, q = round(x/s_t); fp8: s_t =
 * max(max|x_t|/448, 1/(448*512)), E4M3 codes). QA_NONE copies. */
void act_fake_quant(float *xq, const float *x, int n, int d, qa_type act);

#endif
