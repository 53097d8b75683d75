/* attention.h: causal grouped-query attention of ONE sequence, forward and backward, with every
 * product through matmul() (BLAS) on tiles of query rows, so that the causal half is mostly skipped.
 * Packed batches call it once per sequence (each sequence attends only to itself). The backward
 * recomputes the probabilities from the saved log-sum-exp instead of storing [T x T] per head. */
#ifndef SMELT_KERNELS_ATTENTION_H
#define SMELT_KERNELS_ATTENTION_H

#include <stddef.h>

typedef struct {
    int nq;         /* query rows; query i sits at position nkv - nq + i and sees keys 0 .. nkv-nq+i */
    int nkv;        /* key/value rows (>= nq): a KV cache's length after this step, or nq in training */
    int n_heads;    /* query heads; head h reads kv head h / (n_heads / n_kv_heads) (GQA) */
    int n_kv_heads;
    int head_dim;
    int ldq, ldk, ldv, ldo; /* row strides of q (and dq), k (dk), v (dv), out (dout) */
} attn_shape;

/* Floats of the `work` buffer the two functions below need for shape s. */
size_t attention_work_floats(const attn_shape *s);

/* out: [nq, ldo] (heads h at h*head_dim; ASSIGNED), lse: [nq, n_heads] log-sum-exp of the scaled scores
 * (ASSIGNED; may be NULL when no backward follows), q: [nq, ldq] (n_heads heads), k, v: [nkv, ldk/ldv]
 * (n_kv_heads heads). Scores are scaled by 1/sqrt(head_dim). */
void attention_forward(float *out, float *lse, const float *q, const float *k, const float *v,
                       const attn_shape *s, float *work);

/* dq: [nq, ldq], dk: [nkv, ldk], dv: [nkv, ldv], all ASSIGNED (their head columns; other columns of
 * the rows are untouched). dout, out: [nq, ldo]; lse from the forward. */
void attention_backward(float *dq, float *dk, float *dv, const float *dout, const float *out, const float *lse,
                        const float *q, const float *k, const float *v, const attn_shape *s, float *work);

/* Plain loops in double, the reference of the two above (no work buffer). */
void attention_forward_ref(float *out, float *lse, const float *q, const float *k, const float *v,
                           const attn_shape *s);
void attention_backward_ref(float *dq, float *dk, float *dv, const float *dout, const float *out,
                            const float *lse, const float *q, const float *k, const float *v, const attn_shape *s);

#endif
