/* rmsnorm.h: RMSNorm as in Hugging Face Llama: y = w * (x * rsqrt(mean(x^2) + eps)), fp32.
 * The *_ref versions are the plain loops (double sums) the fast ones are tested against. */
#ifndef SMELT_KERNELS_RMSNORM_H
#define SMELT_KERNELS_RMSNORM_H

/* out: [n, d] (may alias x), rstd: [n] (1/rms of each row, kept for backward; may be NULL),
 * x: [n, d], w: [d]. */
void rmsnorm_forward(float *out, float *rstd, const float *x, const float *w, int n, int d, float eps);
/* dx: [n, d] ACCUMULATED (+=, it is a residual-stream gradient), dw: [d] ACCUMULATED (+=),
 * dout: [n, d], x: [n, d] the forward input, w: [d], rstd: [n] from the forward. */
void rmsnorm_backward(float *dx, float *dw, const float *dout, const float *x, const float *w, const float *rstd,
                      int n, int d);

void rmsnorm_forward_ref(float *out, float *rstd, const float *x, const float *w, int n, int d, float eps);
void rmsnorm_backward_ref(float *dx, float *dw, const float *dout, const float *x, const float *w,
                          const float *rstd, int n, int d);

#endif
