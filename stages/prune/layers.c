/* layers.c: the pruned groups in a decoder's weights: zeroing the producers' rows while the
 * calibration pass runs, and the physical shrink at the end (rows of q/k/v/gate/up and columns of
 * o/down of removed groups dropped; per-layer sizes in the config). */
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "stages/prune/prune.h"

int prune_masks_init(prune_masks *mk, const model_config *c) {
    memset(mk, 0, sizeof *mk);
    mk->n_layers = c->n_layers;
    for (int l = 0; l < c->n_layers; l++) {
        mk->mlp[l] = xmalloc((size_t)c->layers[l].intermediate);
        mk->kv[l] = xmalloc((size_t)c->layers[l].n_kv_heads);
        if (!mk->mlp[l] || !mk->kv[l]) return prune_masks_free(mk), -1;
        memset(mk->mlp[l], 1, (size_t)c->layers[l].intermediate);
        memset(mk->kv[l], 1, (size_t)c->layers[l].n_kv_heads);
    }
    return 0;
}

void prune_masks_free(prune_masks *mk) {
    for (int l = 0; l < mk->n_layers; l++) free(mk->mlp[l]), free(mk->kv[l]);
    memset(mk, 0, sizeof *mk);
}

void prune_zero_attention(model *m, int l, const unsigned char *keep_kv) {
    const model_config *c = &m->cfg;
    const layer_config *lc = &c->layers[l];
    layer_weights *w = &m->w.layers[l];
    const size_t H = (size_t)c->hidden, D = (size_t)c->head_dim;
    const int rep = lc->n_heads / lc->n_kv_heads;
    for (int g = 0; g < lc->n_kv_heads; g++) {
        if (keep_kv[g]) continue;
        const size_t q0 = (size_t)g * rep * D, qn = (size_t)rep * D, k0 = (size_t)g * D;
        memset(w->wq + q0 * H, 0, sizeof(float) * qn * H);
        memset(w->wk + k0 * H, 0, sizeof(float) * D * H);
        memset(w->wv + k0 * H, 0, sizeof(float) * D * H);
        if (c->attention_bias) {
            memset(w->bq + q0, 0, sizeof(float) * qn);
            memset(w->bk + k0, 0, sizeof(float) * D);
            memset(w->bv + k0, 0, sizeof(float) * D);
        }
    }
}

void prune_zero_mlp(model *m, int l, const unsigned char *keep) {
    const size_t H = (size_t)m->cfg.hidden;
    layer_weights *w = &m->w.layers[l];
    for (int j = 0; j < m->cfg.layers[l].intermediate; j++)
        if (!keep[j]) {
            memset(w->w_gate + (size_t)j * H, 0, sizeof(float) * H);
            memset(w->w_up + (size_t)j * H, 0, sizeof(float) * H);
        }
}

float *prune_layer_span(const model *m, int l, size_t *n) {
    const layer_weights *w = &m->w.layers[l];
    const size_t H = (size_t)m->cfg.hidden, I = (size_t)m->cfg.layers[l].intermediate;
    *n = (size_t)(w->w_down + H * I - w->attn_norm);
    return w->attn_norm;
}

static int count_kept(const unsigned char *keep, int n) {
    int k = 0;
    for (int i = 0; i < n; i++) k += keep[i] != 0;
    return k;
}

/* dst [rows kept, cols] = the rows of src [n_rows, cols] whose block (of `block` rows) is kept. */
static void copy_rows(float *dst, const float *src, const unsigned char *keep, int n_blocks, size_t block, size_t cols) {
    for (int b = 0; b < n_blocks; b++)
        if (keep[b]) {
            memcpy(dst, src + (size_t)b * block * cols, sizeof(float) * block * cols);
            dst += block * cols;
        }
}

/* dst [rows, kept columns] = the columns of src [rows, n_blocks * block] whose block is kept. */
static void copy_cols(float *dst, const float *src, const unsigned char *keep, int n_blocks, size_t block, size_t rows) {
    const size_t in = (size_t)n_blocks * block;
    for (size_t r = 0; r < rows; r++)
        for (int b = 0; b < n_blocks; b++)
            if (keep[b]) {
                memcpy(dst, src + r * in + (size_t)b * block, sizeof(float) * block);
                dst += block;
            }
}

int prune_shrink(model_config *out_cfg, model_weights *out_w, const model *m, const prune_masks *mk) {
    const model_config *c = &m->cfg;
    *out_cfg = *c;
    for (int l = 0; l < c->n_layers; l++) {
        const layer_config *lc = &c->layers[l];
        const int rep = lc->n_heads / lc->n_kv_heads, kv = count_kept(mk->kv[l], lc->n_kv_heads);
        out_cfg->layers[l] = (layer_config){kv * rep, kv, count_kept(mk->mlp[l], lc->intermediate)};
    }
    out_cfg->n_heads = out_cfg->layers[0].n_heads;
    out_cfg->n_kv_heads = out_cfg->layers[0].n_kv_heads;
    out_cfg->intermediate = out_cfg->layers[0].intermediate;
    if (weights_alloc(out_w, out_cfg)) return -1;
    const size_t H = (size_t)c->hidden, D = (size_t)c->head_dim;
    memcpy(out_w->embed, m->w.embed, sizeof(float) * (size_t)c->vocab * H);
    memcpy(out_w->final_norm, m->w.final_norm, sizeof(float) * H);
    if (!c->tie_embeddings) memcpy(out_w->lm_head, m->w.lm_head, sizeof(float) * (size_t)c->vocab * H);
    for (int l = 0; l < c->n_layers; l++) {
        const layer_config *lc = &c->layers[l];
        const layer_weights *s = &m->w.layers[l];
        layer_weights *d = &out_w->layers[l];
        const int nkv = lc->n_kv_heads, I = lc->intermediate;
        const size_t rep = (size_t)(lc->n_heads / nkv);
        const unsigned char *kk = mk->kv[l], *km = mk->mlp[l];
        memcpy(d->attn_norm, s->attn_norm, sizeof(float) * H);
        memcpy(d->mlp_norm, s->mlp_norm, sizeof(float) * H);
        copy_rows(d->wq, s->wq, kk, nkv, rep * D, H);
        copy_rows(d->wk, s->wk, kk, nkv, D, H);
        copy_rows(d->wv, s->wv, kk, nkv, D, H);
        if (c->attention_bias) {
            copy_rows(d->bq, s->bq, kk, nkv, rep * D, 1);
            copy_rows(d->bk, s->bk, kk, nkv, D, 1);
            copy_rows(d->bv, s->bv, kk, nkv, D, 1);
        }
        copy_cols(d->wo, s->wo, kk, nkv, rep * D, H);
        copy_rows(d->w_gate, s->w_gate, km, I, 1, H);
        copy_rows(d->w_up, s->w_up, km, I, 1, H);
        copy_cols(d->w_down, s->w_down, km, I, 1, H);
    }
    return 0;
}
