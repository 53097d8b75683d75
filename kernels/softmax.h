/* softmax.h: row softmax and the losses over rows of logits. Losses return per-row values (the
 * caller sums them in a fixed order) and the gradient with respect to the logits. */
#ifndef SMELT_KERNELS_SOFTMAX_H
#define SMELT_KERNELS_SOFTMAX_H

/* out: [n, dim] ASSIGNED (may alias x); x: [n, dim]. */
void softmax_forward(float *out, const float *x, int n, int dim);
void softmax_forward_ref(float *out, const float *x, int n, int dim);
/* dx: [n, dim] ASSIGNED (may alias dy) = y * (dy - sum_j dy_j y_j), the gradient through y = softmax(x);
 * y: [n, dim] the forward output; dy: [n, dim]. For losses written on probabilities (distillation). */
void softmax_backward(float *dx, const float *y, const float *dy, int n, int dim);
void softmax_backward_ref(float *dx, const float *y, const float *dy, int n, int dim);

/* Weighted cross-entropy of each row of logits against its target.
 * losses: [n] ASSIGNED, w_i * (logsumexp(z_i) - z_i[t_i]); 0 for rows with targets[i] < 0 (ignored).
 * dlogits: [n, vocab] ASSIGNED (may alias logits; NULL when only the loss is wanted):
 *          w_i * (softmax(z_i) - onehot(t_i)), zero for ignored rows.
 * logits: [n, vocab]; targets: [n] in [0, vocab) or negative; weights: [n] or NULL (all 1). */
void cross_entropy(float *losses, float *dlogits, const float *logits, const int *targets, const float *weights,
                   int n, int vocab);
void cross_entropy_ref(float *losses, float *dlogits, const float *logits, const int *targets,
                       const float *weights, int n, int vocab);

#endif
