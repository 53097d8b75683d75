/* swiglu.h: the SwiGLU activation of the Llama MLP, h = silu(gate) * up, forward and backward. */
#ifndef SMELT_KERNELS_SWIGLU_H
#define SMELT_KERNELS_SWIGLU_H

/* h: [n, dim] ASSIGNED; gate, up: [n, ld_in] (the first dim columns of each row are used). */
void swiglu_forward(float *h, const float *gate, const float *up, int ld_in, int n, int dim);
/* dgate, dup: [n, ld_in] ASSIGNED (may alias gate and up: each element is read before it is
 * written); dh: [n, dim]. */
void swiglu_backward(float *dgate, float *dup, const float *dh, const float *gate, const float *up, int ld_in,
                     int n, int dim);

void swiglu_forward_ref(float *h, const float *gate, const float *up, int ld_in, int n, int dim);
void swiglu_backward_ref(float *dgate, float *dup, const float *dh, const float *gate, const float *up, int ld_in,
                         int n, int dim);

#endif
