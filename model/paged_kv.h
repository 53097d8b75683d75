/* paged_kv.h: the block pool of the serving engine's KV cache. One allocation, sized by a memory
 * budget, holds n_blocks blocks; a block holds block_size positions of keys and values for every
 * layer (layers may differ in kv width after pruning). Blocks are reference counted: a running
 * sequence holds each block of its block table, and the prefix cache (model/radix.h) holds the
 * blocks it keeps; a block returns to the free list when its last holder releases it. */
#ifndef SMELT_MODEL_PAGED_KV_H
#define SMELT_MODEL_PAGED_KV_H

#include <stddef.h>
#include <stdint.h>

#include "kernels/attn_paged.h"
#include "model/config.h"

typedef struct {
    int block_size;                 /* positions per block */
    int n_blocks;
    int n_layers;
    int kv_width[MODEL_MAX_LAYERS]; /* n_kv_heads * head_dim of each layer */
    int f16;                        /* 1: keys and values in fp16 (k16, v16), else fp32 (k, v) */
    float *k[MODEL_MAX_LAYERS];     /* [n_blocks, block_size, kv_width[l]] keys after RoPE */
    float *v[MODEL_MAX_LAYERS];     /* [n_blocks, block_size, kv_width[l]] values */
    uint16_t *k16[MODEL_MAX_LAYERS], *v16[MODEL_MAX_LAYERS]; /* the same in fp16 */
    void *mem;                      /* the one allocation (owned) */
    int *ref;                       /* [n_blocks] holders of each block; 0: free */
    int *free_ids;                  /* [n_blocks] a stack of free block ids */
    int n_free;
} kv_pool;

/* Bytes one block takes for the architecture cfg (f16: an fp16 cache, 2 bytes a number, else 4). */
size_t kv_pool_block_bytes(const model_config *cfg, int block_size, int f16);
/* A pool of as many blocks as budget_bytes holds, fp16 or fp32. 0 or -1 (ERR_INPUT when the budget
 * holds no block or block_size < 1, naming the bytes one block needs; ERR_NOMEM). */
int kv_pool_init(kv_pool *p, const model_config *cfg, int block_size, size_t budget_bytes, int f16);
void kv_pool_free(kv_pool *p);
/* A free block with one holder, or -1 when none is free (no error recorded: the caller evicts). */
int kv_pool_alloc(kv_pool *p);
void kv_pool_retain(kv_pool *p, int block);
/* Drops one holder; the block is free again when none is left. */
void kv_pool_release(kv_pool *p, int block);
/* The layer's pools as the paged attention kernel reads them. */
attn_paged_kv kv_pool_layer(const kv_pool *p, int layer);

#endif
