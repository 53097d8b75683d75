/* attention.h: causal grouped-query attention over packed sequences (each sequence attends only to
 * itself), forward and backward, every product through matmul() (BLAS) on tiles of query rows so
 * that the causal half is mostly skipped. Work is split across threads by (sequence, kv head); the
 * backward recomputes the probabilities from the saved log-sum-exp instead of storing [T x T]. */
#ifndef SMELT_KERNELS_ATTENTION_H
#define SMELT_KERNELS_ATTENTION_H

#include <stddef.h>

typedef struct {
    int n_heads;    /* query heads; head h reads kv head h / (n_heads / n_kv_heads) (GQA) */
    int n_kv_heads;
    int head_dim;
    int ldq, ldk, ldv, ldo; /* row strides of q (and dq), k (dk), v (dv), out (dout) */
    int bf16; /* 1: the fused kernels' products in bf16 (bf16-rounded operands, fp32 sums; softmax
               * statistics, exp and dS in fp32) on CPUs with AVX512_BF16; fp32 elsewhere */
} attn_shape;

/* One sequence of a batch. Its queries are rows q0 .. q0+nq-1 of q, out, lse (and dq, dout); its
 * keys and values rows k0 .. k0+nkv-1 of k, v (and dk, dv). Query i sits at position nkv - nq + i
 * and sees keys 0 .. nkv-nq+i: nkv == nq in training, nkv = cache length in inference. */
typedef struct {
    int q0, nq, k0, nkv;
} attn_seq;

/* Floats of the `work` buffer for sequences of at most max_nkv keys, for every kernel thread. */
size_t attention_work_floats(const attn_shape *s, int max_nkv);

/* out: [*, ldo] (heads h at h*head_dim; ASSIGNED), lse: [*, n_heads] log-sum-exp of the scaled
 * scores (ASSIGNED; NULL when no backward follows), q: [*, ldq], k, v: [*, ldk/ldv]. Scores are
 * scaled by 1/sqrt(head_dim). work: attention_work_floats(s, max nkv) floats (work_floats).
 * Returns 0, or -1 (ERR_INTERNAL) when work is too small for one thread or a sequence is invalid. */
int attention_forward(float *out, float *lse, const float *q, const float *k, const float *v, const attn_shape *s,
                      const attn_seq *seqs, int n_seqs, float *work, size_t work_floats);

/* dq (rows of the queries), dk, dv (rows of the keys): ASSIGNED in their head columns (the other
 * columns of those rows are untouched). dout, out: [*, ldo]; lse from the forward. */
int attention_backward(float *dq, float *dk, float *dv, const float *dout, const float *out, const float *lse,
                       const float *q, const float *k, const float *v, const attn_shape *s, const attn_seq *seqs,
                       int n_seqs, float *work, size_t work_floats);

/* Decode: the nq query rows of ONE query head against nkv cached keys and values of its kv head,
 * on the calling thread (the decode team of model_infer.c gives each thread its heads). Query i
 * sits at position nkv - nq + i and sees keys 0 .. nkv-nq+i. out: row i at out + i*ldo (head_dim
 * floats, ASSIGNED); q: row i at q + i*ldq; k, v: key j at k + j*ldk, v + j*ldv; scores: nkv floats
 * of scratch. Scores scaled by 1/sqrt(head_dim); sums of exp in double, as attention_forward. */
void attention_decode_head(float *out, int ldo, const float *q, int ldq, const float *k, int ldk, const float *v,
                           int ldv, int nq, int nkv, int head_dim, float *scores);

/* Plain loops in double, the reference of the two above. 0 or -1 (ERR_NOMEM). */
int attention_forward_ref(float *out, float *lse, const float *q, const float *k, const float *v,
                          const attn_shape *s, const attn_seq *seqs, int n_seqs);
int attention_backward_ref(float *dq, float *dk, float *dv, const float *dout, const float *q, const float *k,
                           const float *v, const attn_shape *s, const attn_seq *seqs, int n_seqs);

#endif
