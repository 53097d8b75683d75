/* attn_paged.h: causal grouped-query attention whose keys and values sit in a paged KV cache: a
 * pool of fixed-size blocks of block_size positions each, and per sequence a block table listing
 * which block holds its positions j*B .. j*B+B-1. The serving engine (model/engine.h) runs every
 * sequence of a batch through one call: prefill chunks (many queries) and decode steps (one query)
 * alike. Same conventions as attention.h (scores scaled by 1/sqrt(head_dim), query i of a
 * sequence with nq queries and nkv keys sits at position nkv - nq + i). */
#ifndef SMELT_KERNELS_ATTN_PAGED_H
#define SMELT_KERNELS_ATTN_PAGED_H

#include <stddef.h>

#include "kernels/attention.h"

/* One layer's pools. Position r of block b: keys at k + ((size_t)b * block_size + r) * ldkv (the
 * kv heads side by side, head g at column g * head_dim), values likewise in v. */
typedef struct {
    int block_size; /* positions per block (>= 1) */
    int n_blocks;   /* blocks in the pool (block ids are checked against it) */
    int ldkv;       /* floats per position row (>= n_kv_heads * head_dim) */
    const float *k, *v;
} attn_paged_kv;

typedef struct {
    int q0, nq;        /* query rows q0 .. q0+nq-1 of q and out */
    int nkv;           /* keys at positions 0 .. nkv-1 (nkv >= nq) */
    const int *blocks; /* [ceil(nkv / block_size)] block ids */
} attn_paged_seq;

/* Floats of the work buffer for sequences of at most max_nkv keys, for every kernel thread. */
size_t attention_paged_work_floats(const attn_shape *s, int max_nkv);

/* out: [*, ldo] ASSIGNED in the rows of the sequences' queries; q: [*, ldq]. Parallel over
 * (sequence, kv head) items (a decode sequence: (sequence, query head)); each item's result does not depend on the thread count. Tiles of
 * at least 8 packed query rows gather the item's keys and values and use matmul(); smaller ones
 * (decode) use vector loops over the blocks.
 * 0, or -1 (ERR_INTERNAL) for a work buffer too small, a bad sequence or a block id outside the
 * pool. */
int attention_paged_forward(float *out, const float *q, const attn_paged_kv *kv, const attn_shape *s,
                            const attn_paged_seq *seqs, int n_seqs, float *work, size_t work_floats);

/* Thread t's share (of nt, inside the caller's parallel region: a decode team) of
 * attention_paged_forward: items t, t + nt, ...; work holds attention_paged_work_floats floats for
 * at least nt threads, thread t using its own part. The same values as attention_paged_forward once
 * all nt threads have run. 0 or -1 (ERR_INTERNAL, as attention_paged_forward). */
int attention_paged_part(float *out, const float *q, const attn_paged_kv *kv, const attn_shape *s,
                         const attn_paged_seq *seqs, int n_seqs, float *work, size_t work_floats, int t, int nt);

/* The reference: gathers each sequence's keys and values into contiguous rows and runs
 * attention_forward_ref (double). 0 or -1 (ERR_NOMEM, ERR_INTERNAL). */
int attention_paged_forward_ref(float *out, const float *q, const attn_paged_kv *kv, const attn_shape *s,
                                const attn_paged_seq *seqs, int n_seqs);

#endif
