/* attention_internal.h: the fused attention kernels (flash.c) behind attention_forward and
 * attention_backward (attention.c); nothing else includes it. */
#ifndef SMELT_KERNELS_ATTENTION_INTERNAL_H
#define SMELT_KERNELS_ATTENTION_INTERNAL_H

#include "kernels/attention.h"

/* 1 when the fused kernels run this shape on this CPU (AVX-512, head_dim a multiple of 16 up to
 * 256); otherwise attention.c uses its BLAS tiles. */
int flash_supported(const attn_shape *s);
/* Work floats of one thread for sequences of at most max_nkv keys (a multiple of 16). */
size_t flash_work_floats(const attn_shape *s, int max_nkv);
/* attention_forward / attention_backward over validated sequences (max_nkv their largest nkv). */
int flash_forward(float *out, float *lse, const float *q, const float *k, const float *v, const attn_shape *s,
                  const attn_seq *seqs, int n_seqs, float *work, size_t work_floats, int max_nkv);
int flash_backward(float *dq, float *dk, float *dv, const float *dout, const float *out, const float *lse,
                   const float *q, const float *k, const float *v, const attn_shape *s, const attn_seq *seqs,
                   int n_seqs, float *work, size_t work_floats, int max_nkv);

#endif
