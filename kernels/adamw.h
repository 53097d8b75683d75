/* adamw.h: the optimizer arithmetic over flat float buffers: AdamW exactly as torch.optim.AdamW
 * computes it (single-tensor CPU path: decoupled weight decay, bias correction, fp32 elementwise
 * operations in torch's order and rounding), a deterministic sum of squares and grad-norm clipping. */
#ifndef SMELT_KERNELS_ADAMW_H
#define SMELT_KERNELS_ADAMW_H

#include <stddef.h>

typedef struct {
    double lr;           /* this step's learning rate (after any schedule) */
    double beta1, beta2; /* 0.9, 0.999 */
    double eps;          /* 1e-8 */
    double weight_decay; /* decoupled: p *= 1 - lr * weight_decay */
} adamw_hparams;

/* One step over n floats, in place: p (parameters), m, v (first and second moments) are updated,
 * g (gradient) is read and multiplied by grad_scale first (fp32, as torch's clip_grad_norm_ scales
 * gradients in place; 1 when not clipping; g itself is not modified). step: the step number
 * counting this one (1 on the first step). decay: 0 skips weight decay for this buffer (norms and
 * biases, when the caller chooses so). */
void adamw_update(float *p, float *m, float *v, const float *g, float grad_scale, size_t n, const adamw_hparams *h,
                  long step, int decay);
/* The same formula in double (the reference for the test; it is not bitwise torch). */
void adamw_update_ref(float *p, float *m, float *v, const float *g, float grad_scale, size_t n,
                      const adamw_hparams *h, long step, int decay);

/* Sum of x[i]^2 in double, over fixed blocks whose size depends on n only (deterministic). */
double sum_squares(const float *x, size_t n);
double sum_squares_ref(const float *x, size_t n);

/* x[i] *= s over n floats. */
void scale_floats(float *x, size_t n, float s);

/* torch.nn.utils.clip_grad_norm_ over one flat gradient buffer: norm = sqrt(sum g^2); when
 * max_norm > 0 and norm > max_norm, g *= max_norm / (norm + 1e-6). Returns the norm before clipping. */
double clip_grad_norm(float *g, size_t n, double max_norm);

#endif
