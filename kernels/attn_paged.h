/* attn_paged.h: causal grouped-query attention whose keys and values sit in a paged KV cache: a
 * pool of fixed-size blocks of block_size positions each, and per sequence a block table listing
 * which block holds its positions j*B .. j*B+B-1. The serving engine (model/engine.h) runs every
 * sequence of a batch through one call: prefill chunks (many queries) and decode steps (one query)
 * alike. Same conventions as attention.h (scores scaled by 1/sqrt(head_dim), query i of a
 * sequence with nq queries and nkv keys sits at position nkv - nq + i). */
#ifndef SMELT_KERNELS_ATTN_PAGED_H
#define SMELT_KERNELS_ATTN_PAGED_H

#include <stddef.h>
#include <stdint.h>

#include "kernels/attention.h"

/* One layer's pools. Position r of block b: keys at k + ((size_t)b * block_size + r) * ldkv (the
 * kv heads side by side, head g at column g * head_dim), values likewise in v. */
typedef struct {
    int block_size; /* positions per block (>= 1) */
    int n_blocks;   /* blocks in the pool (block ids are checked against it) */
    int ldkv;       /* numbers per position row (>= n_kv_heads * head_dim) */
    const float *k, *v;
    /* an fp16 cache (IEEE half, the same layout) instead of k and v; NULL: fp32. The kernel widens
     * each number exactly: the attention of the rounded keys and values. */
    const uint16_t *k16, *v16;
} attn_paged_kv;

/* dst[0..n) = the fp16 numbers src[0..n) as floats (exact), and back (round to nearest even, as
 * VCVTPS2PH; out of range: infinity). */
void attn_f16_to_f32(float *dst, const uint16_t *src, int n);
void attn_f32_to_f16(uint16_t *dst, const float *src, int n);

typedef struct {
    int q0, nq;        /* query rows q0 .. q0+nq-1 of q and out */
    int nkv;           /* keys at positions 0 .. nkv-1 (nkv >= nq) */
    const int *blocks; /* [ceil(nkv / block_size)] block ids */
} attn_paged_seq;

/* Floats of the work buffer of a call over these sequences, for every kernel thread: the decode
 * sequences' partial results, then each thread's tiles. */
size_t attention_paged_work_floats(const attn_shape *s, const attn_paged_seq *seqs, int n_seqs);

/* out: [*, ldo] ASSIGNED in the rows of the sequences' queries; q: [*, ldq]. Parallel over items: a
 * prefill sequence's are its kv heads; a decode sequence's (rep * nq < 8 packed rows) are (kv head,
 * range of 64 keys) pairs, each over all the query heads of its kv head, so each key is read once,
 * and their partial softmaxes (max, sum, unnormalized output per row) are merged in range order
 * afterwards. No value depends on the thread count. Tiles of at least 8 packed query rows gather
 * the item's keys and values and use matmul(); smaller ones use vector loops over the blocks.
 * 0, or -1 (ERR_INTERNAL) for a work buffer too small, a bad sequence or a block id outside the
 * pool. */
int attention_paged_forward(float *out, const float *q, const attn_paged_kv *kv, const attn_shape *s,
                            const attn_paged_seq *seqs, int n_seqs, float *work, size_t work_floats);

/* Thread t's share (of nt, inside the caller's parallel region: a decode team) of
 * attention_paged_forward: items t, t + nt, ...; work holds attention_paged_work_floats floats for
 * at least nt threads, thread t using its own part. When attention_paged_needs_merge says so, every
 * thread then waits for all (a barrier) and calls attention_paged_merge_part with the same
 * arguments; after that (and a barrier) out holds the same values as attention_paged_forward's.
 * 0 or -1 (ERR_INTERNAL, as attention_paged_forward). */
int attention_paged_part(float *out, const float *q, const attn_paged_kv *kv, const attn_shape *s,
                         const attn_paged_seq *seqs, int n_seqs, float *work, size_t work_floats, int t, int nt);
/* 1 when some decode sequence has keys in several ranges (its partial results need the merge). */
int attention_paged_needs_merge(const attn_shape *s, const attn_paged_seq *seqs, int n_seqs);
/* Thread t's share of the merge: the output rows of kv heads t, t + nt, ... of those sequences. */
void attention_paged_merge_part(float *out, const attn_shape *s, const attn_paged_seq *seqs, int n_seqs,
                                const float *work, int t, int nt);

/* The reference: gathers each sequence's keys and values into contiguous rows and runs
 * attention_forward_ref (double). 0 or -1 (ERR_NOMEM, ERR_INTERNAL). */
int attention_paged_forward_ref(float *out, const float *q, const attn_paged_kv *kv, const attn_shape *s,
                                const attn_paged_seq *seqs, int n_seqs);

#endif
