/* linear.h: a linear layer y = x W^T + b as one descriptor, so that the model calls one function
 * for every projection whatever the weight format, each a linear_format value and a case in
 * linear_forward: fp32 weights (training and inference; with `bf16_compute` the products round
 * their operands to bf16 and sum in fp32: mixed-precision training), bf16 weights (inference
 * storage: half the bytes), or a quantized format (kernels/qlinear.h: integer weights x int8
 * activations, integer weights x fp32 activations, FP8 weights). Backward exists for fp32 weights
 * only.
 *
 * Rows: one row of x in fp32 (a decode step), and up to GEMV_MAX_ROWS rows with bf16 weights,
 * stream the weights once (kernels/gemv.h, threads split the outputs); more rows, and every
 * mixed-precision product, run a GEMM (matmul, or gemm_bf16). fp32 rows of a GEMM do not depend
 * on how many rows the call has. The decode teams (model_infer.c, the serving engine's
 * engine_forward.c) stream up to GEMV_MAX_ROWS rows of the formats linear_streams accepts (every
 * format: the quantized ones through qlinear_forward_cols) with linear_forward_cols. */
#ifndef SMELT_KERNELS_LINEAR_H
#define SMELT_KERNELS_LINEAR_H

#include "kernels/bf16.h"

typedef enum {
    LINEAR_F32 = 0,   /* w: [n_out, n_in] floats */
    LINEAR_QINT8 = 1, /* q: a qlinear of integer weights, activations quantized to int8 per token */
    LINEAR_QWINT = 2, /* q: a qlinear of integer weights, fp32 activations (W4A16) */
    LINEAR_QFP8 = 3,  /* q: a qlinear of FP8 E4M3 weights, fp32 or FP8 activations */
    LINEAR_BF16 = 4,  /* q: the weights packed in bf16 (a gemm_bf16_b of B = W^T, bf16.h) */
} linear_format;

typedef struct {
    linear_format format;
    int n_out, n_in;
    const float *w;    /* LINEAR_F32: [n_out, n_in] (Hugging Face layout) */
    const float *b;    /* [n_out] or NULL */
    const void *q;     /* payload of the other formats (bf16 weights, scales, codes); NULL for fp32 */
    int bf16_compute;  /* LINEAR_F32: GEMMs (forward and backward) multiply bf16-rounded operands
                        * with fp32 sums (gemm_bf16); set only where bf16_available() */
} linear;

/* A fp32 descriptor over w [n_out, n_in] and b [n_out] (b may be NULL). */
linear linear_f32(const float *w, const float *b, int n_out, int n_in);
/* A bf16 descriptor over weights packed with gemm_bf16_pack_b(pw, W, n_in, 1, n_out, n_in) and
 * b [n_out] fp32 (may be NULL). */
linear linear_bf16(const gemm_bf16_b *pw, const float *b);

/* out[n, ldo] = x[n, ldx] W^T + b, or += with accumulate. Returns 0, or -1 (ERR_INTERNAL) for a
 * format this build cannot run, ERR_NOMEM when a bf16 or quantized kernel cannot get its scratch. */
int linear_forward(float *out, int ldo, const float *x, int ldx, const linear *l, int n, int accumulate);

/* The forward of output columns [j0, j1) only, for n <= GEMV_MAX_ROWS rows, on the calling thread
 * (a decode team splits the outputs itself). Bias included. 0, or -1 for a format without it. */
int linear_forward_cols(float *out, int ldo, const float *x, int ldx, const linear *l, int n, int j0, int j1,
                        int accumulate);

/* 1 when linear_forward_cols runs this descriptor's format (the decode team needs it), and the
 * granularity of column ranges that read each weight once (ranges cut elsewhere read more). */
int linear_streams(const linear *l);
int linear_col_align(const linear *l);

/* dx[n, ldx] = dy[n, ldy] W, or += with accumulate. fp32 only: -1 (ERR_INPUT) for other formats. */
int linear_backward_input(float *dx, int ldx, const float *dy, int ldy, const linear *l, int n, int accumulate);

/* Parameter gradients, always accumulated: dw[n_out, n_in] += dy^T x; db[n_out] += sum over rows of
 * dy (db may be NULL). dy: [n, ldy], x: [n, ldx]. bf16_compute: the product in bf16 (gemm_bf16).
 * 0, or -1 (ERR_NOMEM for a bf16 product's packing buffers). */
int linear_backward_params(float *dw, float *db, const float *dy, int ldy, const float *x, int ldx, int n, int n_out,
                           int n_in, int bf16_compute);

/* Column sums, accumulated: db[m] += sum_i dy[i, 0..m). Each column is summed by one thread in row
 * order, so the result does not depend on the thread count. Reference: bias_grad_ref. */
void bias_grad(float *db, const float *dy, int ldy, int n, int m);
void bias_grad_ref(float *db, const float *dy, int ldy, int n, int m);

#endif
