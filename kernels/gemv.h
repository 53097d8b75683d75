/* gemv.h: products of a few rows with a weight matrix read once, the memory-bound half of
 * inference (a decode step, a short suffix): y[r, j] = sum_k x[r, k] W[j, k] for output columns
 * j in [j0, j1). Each weight row streams from memory once and multiplies every input row, so a
 * step reads each weight byte once whatever the number of rows (up to GEMV_MAX_ROWS).
 * fp32 weights here; bf16 weights in their packed layout: gemv_bf16_packed (bf16.h). No threads
 * here: callers split [0, n_out) among threads (linear_forward, the decode team of model_infer.c),
 * and each y[r, j] is one fixed-order sum whatever the split. */
#ifndef SMELT_KERNELS_GEMV_H
#define SMELT_KERNELS_GEMV_H

#include "kernels/bf16.h"

/* Rows of x up to which linear_forward streams the weights instead of a GEMM: at 8 rows a
 * weight row still serves every input row from registers, and the product stays bound by the
 * weight bytes (bench_sweep's decode and evaluate columns). */
#define GEMV_MAX_ROWS 8

/* y: [n_rows, ldy] columns j0..j1-1 ASSIGNED (or += with accumulate); x: [n_rows, ldx]; w: [*, ldw]
 * rows j0..j1-1 are read; k: the reduction length. n_rows <= GEMV_MAX_ROWS. */
void gemv_f32(float *y, int ldy, const float *x, int ldx, const float *w, int ldw, int n_rows, int j0, int j1, int k,
              int accumulate);
/* The reference: sums in double. w_bf16 != NULL selects the bf16 weights. */
void gemv_ref(float *y, int ldy, const float *x, int ldx, const float *w, const bf16 *w_bf16, int ldw, int n_rows, int j0,
              int j1, int k, int accumulate);

/* [lo, hi) of t's share of n items among nt, in whole multiples of `align` (the last share ends at n). */
void split_range(int n, int t, int nt, int align, int *lo, int *hi);

#endif
