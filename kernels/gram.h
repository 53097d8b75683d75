/* gram.h: Gram matrices of calibration inputs, H += X^T X, accumulated in float64 (ALGORITHMS.md:
 * the Hessian of the layer-wise objective of OSSCAR, GPTQ and QuantEase). The sum over rows is done
 * block by block in a fixed order, and the upper triangle is split into tiles computed by one thread
 * each, so the result is bitwise the same on any thread count. */
#ifndef SMELT_KERNELS_GRAM_H
#define SMELT_KERNELS_GRAM_H

/* h: [d, d] float64, ACCUMULATED in its upper triangle (row <= column); x: [n, ldx >= d] floats.
 * Call gram_symmetrize once after the last accumulation. 0 or -1 (ERR_NOMEM). */
int gram_accumulate(double *h, const float *x, int ldx, int n, int d);
/* Copies the upper triangle of h [d, d] into its lower triangle. */
void gram_symmetrize(double *h, int d);
/* The plain loop (every entry of h, both triangles, accumulated), the reference of the tests. */
void gram_accumulate_ref(double *h, const float *x, int ldx, int n, int d);

#endif
