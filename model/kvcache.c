/* kvcache.c: the KV cache's allocation, truncation and prefix copies (see kvcache.h). */
#include "model/kvcache.h"

#include <stdlib.h>
#include <string.h>

#include "common/error.h"

size_t kv_cache_bytes(const model_config *cfg, int capacity) {
    size_t n = 0;
    for (int l = 0; l < cfg->n_layers; l++) n += 2 * (size_t)capacity * cfg->layers[l].n_kv_heads * cfg->head_dim;
    return n * sizeof(float);
}

int kv_cache_init(kv_cache *c, const model_config *cfg, int capacity) {
    memset(c, 0, sizeof *c);
    if (capacity < 1)
        return err_set(ERR_INPUT, "a KV cache needs a capacity of at least 1 position (got %d)", capacity);
    size_t bytes = kv_cache_bytes(cfg, capacity);
    float *mem = malloc(bytes ? bytes : 1);
    if (!mem)
        return err_set(ERR_NOMEM, "cannot allocate a KV cache of %d positions (%.1f MiB); use a shorter context",
                       capacity, bytes / 1048576.0);
    c->n_layers = cfg->n_layers;
    c->capacity = capacity;
    c->mem = mem;
    c->n_floats = bytes / sizeof(float);
    size_t off = 0;
    for (int l = 0; l < cfg->n_layers; l++) {
        int w = cfg->layers[l].n_kv_heads * cfg->head_dim;
        c->kv_width[l] = w;
        c->k[l] = mem + off;
        off += (size_t)capacity * w;
        c->v[l] = mem + off;
        off += (size_t)capacity * w;
    }
    return 0;
}

void kv_cache_free(kv_cache *c) {
    free(c->mem);
    memset(c, 0, sizeof *c);
}

int kv_cache_truncate(kv_cache *c, int len) {
    if (len < 0 || len > c->len)
        return err_set(ERR_INPUT, "cannot truncate a KV cache of %d positions to %d; the length must be 0..%d",
                       c->len, len, c->len);
    c->len = len;
    return 0;
}

int kv_cache_matches(const kv_cache *c, const model_config *cfg) {
    if (c->n_layers != cfg->n_layers) return 0;
    for (int l = 0; l < cfg->n_layers; l++)
        if (c->kv_width[l] != cfg->layers[l].n_kv_heads * cfg->head_dim) return 0;
    return 1;
}

int kv_cache_copy(kv_cache *dst, const kv_cache *src, int len) {
    if (len < 0) len = src->len;
    if (len > src->len)
        return err_set(ERR_INPUT, "cannot copy %d positions from a KV cache holding %d", len, src->len);
    if (len > dst->capacity)
        return err_set(ERR_INPUT, "the destination KV cache holds %d positions, %d were asked; allocate it larger",
                       dst->capacity, len);
    int same = dst->n_layers == src->n_layers;
    for (int l = 0; same && l < src->n_layers; l++) same = dst->kv_width[l] == src->kv_width[l];
    if (!same) return err_set(ERR_INPUT, "the two KV caches belong to different architectures (layer sizes differ)");
    if (dst != src)
        for (int l = 0; l < src->n_layers; l++) {
            size_t n = (size_t)len * src->kv_width[l] * sizeof(float);
            memcpy(dst->k[l], src->k[l], n);
            memcpy(dst->v[l], src->v[l], n);
        }
    dst->len = len;
    return 0;
}
