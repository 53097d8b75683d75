/* rope.h: rotary position embeddings in the Hugging Face convention (rotate_half: dimension i pairs
 * with i + head_dim/2), with the Llama 3 frequency scaling. Frequencies and angles are computed in
 * fp32 the way transformers computes them, so tables agree with its cos/sin to about 1 ulp. */
#ifndef SMELT_KERNELS_ROPE_H
#define SMELT_KERNELS_ROPE_H

typedef struct {
    int llama3;             /* 0: plain RoPE; 1: Llama 3 frequency scaling with the fields below */
    float factor;           /* rope_scaling.factor (8 for Llama 3.1) */
    float low_freq_factor;  /* 1 */
    float high_freq_factor; /* 4 */
    int original_max_pos;   /* original_max_position_embeddings (8192) */
} rope_scaling;

/* inv_freq: [head_dim/2]; theta: rope_theta; s may be NULL (no scaling). */
void rope_inv_freq(float *inv_freq, int head_dim, float theta, const rope_scaling *s);
/* cos_t, sin_t: [n_pos, half] for positions pos0 .. pos0+n_pos-1, angle = fl32(pos * inv_freq[i]). */
void rope_tables(float *cos_t, float *sin_t, const float *inv_freq, int pos0, int n_pos, int half);

/* In place on x: [n, ldx], whose rows start with n_heads heads of head_dim floats; pos: [n] position
 * of each row, indexing the tables (cos_t, sin_t: [*, head_dim/2]). */
void rope_forward(float *x, int ldx, const int *pos, const float *cos_t, const float *sin_t, int n, int n_heads,
                  int head_dim);
/* The transpose: in place on dx (a gradient, ASSIGNED: dx becomes R^T dx). */
void rope_backward(float *dx, int ldx, const int *pos, const float *cos_t, const float *sin_t, int n,
                   int n_heads, int head_dim);

void rope_forward_ref(float *x, int ldx, const int *pos, const float *cos_t, const float *sin_t, int n,
                      int n_heads, int head_dim);
void rope_backward_ref(float *dx, int ldx, const int *pos, const float *cos_t, const float *sin_t, int n,
                       int n_heads, int head_dim);

#endif
