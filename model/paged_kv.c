/* paged_kv.c: the KV block pool (see paged_kv.h). */
#include "model/paged_kv.h"

#include <stdlib.h>
#include <string.h>

#include "common/error.h"

size_t kv_pool_block_bytes(const model_config *cfg, int block_size, int f16) {
    size_t n = 0;
    for (int l = 0; l < cfg->n_layers; l++) n += 2 * (size_t)block_size * cfg->layers[l].n_kv_heads * cfg->head_dim;
    return n * (f16 ? sizeof(uint16_t) : sizeof(float));
}

int kv_pool_init(kv_pool *p, const model_config *cfg, int block_size, size_t budget_bytes, int f16) {
    memset(p, 0, sizeof *p);
    if (block_size < 1) return err_set(ERR_INPUT, "a KV block needs at least 1 position (got %d)", block_size);
    const size_t per = kv_pool_block_bytes(cfg, block_size, f16);
    const size_t n = per ? budget_bytes / per : 0;
    if (n < 1)
        return err_set(ERR_INPUT, "a KV budget of %.3f MiB holds no block of %d positions (%.3f MiB each); raise "
                       "kv_budget_mb", budget_bytes / 1048576.0, block_size, per / 1048576.0);
    if (n > (size_t)1 << 30) return err_set(ERR_INPUT, "a KV budget of %zu blocks is too many; lower it", n);
    p->block_size = block_size;
    p->n_blocks = (int)n;
    p->n_layers = cfg->n_layers;
    p->f16 = f16;
    p->mem = malloc(per * n);
    p->ref = calloc(n, sizeof *p->ref);
    p->free_ids = malloc(n * sizeof *p->free_ids);
    if (!p->mem || !p->ref || !p->free_ids) {
        kv_pool_free(p);
        return err_set(ERR_NOMEM, "cannot allocate a KV pool of %.1f MiB; lower kv_budget_mb", per * n / 1048576.0);
    }
    size_t off = 0; /* in numbers */
    for (int l = 0; l < cfg->n_layers; l++) {
        const size_t w = (size_t)cfg->layers[l].n_kv_heads * cfg->head_dim;
        p->kv_width[l] = (int)w;
        if (f16) p->k16[l] = (uint16_t *)p->mem + off, p->v16[l] = (uint16_t *)p->mem + off + n * block_size * w;
        else p->k[l] = (float *)p->mem + off, p->v[l] = (float *)p->mem + off + n * block_size * w;
        off += 2 * n * block_size * w;
    }
    /* the stack pops block 0 first, then 1, ...: allocation order is deterministic */
    for (int i = 0; i < (int)n; i++) p->free_ids[i] = (int)n - 1 - i;
    p->n_free = (int)n;
    return 0;
}

void kv_pool_free(kv_pool *p) {
    free(p->mem);
    free(p->ref);
    free(p->free_ids);
    memset(p, 0, sizeof *p);
}

int kv_pool_alloc(kv_pool *p) {
    if (p->n_free == 0) return -1;
    int b = p->free_ids[--p->n_free];
    p->ref[b] = 1;
    return b;
}

void kv_pool_retain(kv_pool *p, int block) { p->ref[block]++; }

void kv_pool_release(kv_pool *p, int block) {
    if (--p->ref[block] == 0) p->free_ids[p->n_free++] = block;
}

attn_paged_kv kv_pool_layer(const kv_pool *p, int layer) {
    return (attn_paged_kv){.block_size = p->block_size, .n_blocks = p->n_blocks, .ldkv = p->kv_width[layer],
                           .k = p->k[layer], .v = p->v[layer], .k16 = p->k16[layer], .v16 = p->v16[layer]};
}
