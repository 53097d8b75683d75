/* kvcache.h: the per-sequence key/value cache of inference. One allocation holds every layer's
 * keys and values for `capacity` positions (layers may differ in kv width after pruning); `len`
 * positions are filled. Shared prefixes are reused by truncating back to the prefix length or by
 * copying a prefix into another cache (the evaluate stage scores k candidates after one prefill). */
#ifndef SMELT_MODEL_KVCACHE_H
#define SMELT_MODEL_KVCACHE_H

#include <stddef.h>

#include "model/config.h"

typedef struct {
    int n_layers;
    int capacity;                     /* positions the cache can hold */
    int len;                          /* positions filled: 0 .. len-1 */
    int kv_width[MODEL_MAX_LAYERS];   /* n_kv_heads * head_dim of each layer */
    float *k[MODEL_MAX_LAYERS];       /* [capacity, kv_width[l]] keys after RoPE */
    float *v[MODEL_MAX_LAYERS];       /* [capacity, kv_width[l]] values */
    float *mem;                       /* the one allocation (owned) */
    size_t n_floats;
} kv_cache;

/* A cache for up to capacity positions of the architecture cfg. 0 or -1 (ERR_NOMEM naming the
 * size, ERR_INPUT for capacity < 1). */
int kv_cache_init(kv_cache *c, const model_config *cfg, int capacity);
void kv_cache_free(kv_cache *c);
/* Bytes a cache of that capacity takes. */
size_t kv_cache_bytes(const model_config *cfg, int capacity);
/* Forgets positions len .. c->len-1 (keeps the prefix 0 .. len-1). 0, or -1 (ERR_INPUT) when
 * len is negative or beyond c->len. */
int kv_cache_truncate(kv_cache *c, int len);
/* Copies the first len positions of src into dst (same architecture; dst->capacity >= len) and
 * sets dst->len = len. len < 0 means all of src. 0 or -1 (ERR_INPUT). */
int kv_cache_copy(kv_cache *dst, const kv_cache *src, int len);
/* 1 when c was made for cfg's layer sizes. */
int kv_cache_matches(const kv_cache *c, const model_config *cfg);

#endif
