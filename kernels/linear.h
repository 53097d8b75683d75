/* linear.h: a linear layer y = x W^T + b as one descriptor, so that the model calls one function
 * for every projection whatever the weight format: fp32, or a quantized format (kernels/qlinear.h:
 * integer weights x int8 activations, integer weights x fp32 activations, FP8 weights), each a
 * linear_format value and a case in linear_forward. Backward exists for fp32 only (training runs
 * in fp32). */
#ifndef SMELT_KERNELS_LINEAR_H
#define SMELT_KERNELS_LINEAR_H

typedef enum {
    LINEAR_F32 = 0,   /* w: [n_out, n_in] floats */
    LINEAR_QINT8 = 1, /* q: a qlinear of integer weights, activations quantized to int8 per token */
    LINEAR_QWINT = 2, /* q: a qlinear of integer weights, fp32 activations (W4A16) */
    LINEAR_QFP8 = 3,  /* q: a qlinear of FP8 E4M3 weights, fp32 or FP8 activations */
} linear_format;

typedef struct {
    linear_format format;
    int n_out, n_in;
    const float *w; /* LINEAR_F32: [n_out, n_in] (Hugging Face layout) */
    const float *b; /* [n_out] or NULL */
    const void *q;  /* payload of quantized formats (scales, codes); NULL for fp32 */
} linear;

/* A fp32 descriptor over w [n_out, n_in] and b [n_out] (b may be NULL). */
linear linear_f32(const float *w, const float *b, int n_out, int n_in);

/* out[n, ldo] = x[n, ldx] W^T + b, or += with accumulate. Returns 0, or -1 (ERR_INTERNAL) for a
 * format this build cannot run, ERR_NOMEM when a quantized kernel cannot get its scratch. */
int linear_forward(float *out, int ldo, const float *x, int ldx, const linear *l, int n, int accumulate);

/* dx[n, ldx] = dy[n, ldy] W, or += with accumulate. fp32 only: -1 (ERR_INPUT) for other formats. */
int linear_backward_input(float *dx, int ldx, const float *dy, int ldy, const linear *l, int n, int accumulate);

/* Parameter gradients, always accumulated: dw[n_out, n_in] += dy^T x; db[n_out] += sum over rows of
 * dy (db may be NULL). dy: [n, ldy], x: [n, ldx]. */
void linear_backward_params(float *dw, float *db, const float *dy, int ldy, const float *x, int ldx, int n,
                            int n_out, int n_in);

/* Column sums, accumulated: db[m] += sum_i dy[i, 0..m). Each column is summed by one thread in row
 * order, so the result does not depend on the thread count. Reference: bias_grad_ref. */
void bias_grad(float *db, const float *dy, int ldy, int n, int m);
void bias_grad_ref(float *db, const float *dy, int ldy, int n, int m);

#endif
