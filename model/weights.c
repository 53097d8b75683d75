/* weights.c: the parameter layout shared by weights, gradients and optimizer moments. */
#include "model/weights.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"

/* Walks the layout in its fixed order; with mem == NULL only counts (w is then scratch). */
static size_t layout_walk(model_weights *w, const model_config *c, float *mem) {
    size_t off = 0;
    const size_t H = (size_t)c->hidden;
#define TAKE(ptr, n)                          \
    do {                                      \
        if (mem) (ptr) = mem + off;           \
        off += (n);                           \
    } while (0)
    TAKE(w->embed, (size_t)c->vocab * H);
    for (int l = 0; l < c->n_layers; l++) {
        const layer_config *lc = &c->layers[l];
        size_t q = (size_t)lc->n_heads * c->head_dim, kv = (size_t)lc->n_kv_heads * c->head_dim;
        size_t I = (size_t)lc->intermediate;
        layer_weights *lw = &w->layers[l];
        TAKE(lw->attn_norm, H);
        TAKE(lw->wq, q * H);
        TAKE(lw->wk, kv * H);
        TAKE(lw->wv, kv * H);
        if (c->attention_bias) {
            TAKE(lw->bq, q);
            TAKE(lw->bk, kv);
            TAKE(lw->bv, kv);
        } else if (mem) {
            lw->bq = lw->bk = lw->bv = NULL;
        }
        TAKE(lw->wo, H * q);
        TAKE(lw->mlp_norm, H);
        TAKE(lw->w_gate, I * H);
        TAKE(lw->w_up, I * H);
        TAKE(lw->w_down, H * I);
    }
    TAKE(w->final_norm, H);
    if (c->tie_embeddings) {
        if (mem) w->lm_head = w->embed;
    } else {
        TAKE(w->lm_head, (size_t)c->vocab * H);
    }
#undef TAKE
    return off;
}

size_t weights_count(const model_config *c) {
    static _Thread_local model_weights scratch;
    return layout_walk(&scratch, c, NULL);
}

void weights_layout(model_weights *w, const model_config *c, float *mem) {
    memset(w, 0, sizeof *w);
    w->n_floats = layout_walk(w, c, mem);
}

int weights_alloc(model_weights *w, const model_config *c) {
    if (config_validate(c)) return -1;
    size_t n = weights_count(c);
    float *mem = xcalloc(n, sizeof(float));
    if (!mem) return -1;
    weights_layout(w, c, mem);
    w->mem = mem;
    return 0;
}

void weights_free(model_weights *w) {
    free(w->mem);
    memset(w, 0, sizeof *w);
}

static void put(weights_tensor *out, int cap, int *n, const char *name, float *data, int64_t d0, int64_t d1) {
    if (*n < cap) {
        weights_tensor *t = &out[*n];
        snprintf(t->name, sizeof t->name, "%s", name);
        t->data = data;
        t->ndim = d1 ? 2 : 1;
        t->shape[0] = d0;
        t->shape[1] = d1;
    }
    (*n)++;
}

int weights_tensors(const model_weights *w, const model_config *c, weights_tensor *out, int cap) {
    int n = 0;
    char name[96];
    const int64_t H = c->hidden, D = c->head_dim;
    put(out, cap, &n, "model.embed_tokens.weight", w->embed, c->vocab, H);
    for (int l = 0; l < c->n_layers; l++) {
        const layer_weights *lw = &w->layers[l];
        const layer_config *lc = &c->layers[l];
        int64_t q = lc->n_heads * D, kv = lc->n_kv_heads * D, I = lc->intermediate;
#define P(suffix, ptr, d0, d1)                                              \
    do {                                                                    \
        snprintf(name, sizeof name, "model.layers.%d.%s", l, suffix);       \
        put(out, cap, &n, name, ptr, d0, d1);                               \
    } while (0)
        P("input_layernorm.weight", lw->attn_norm, H, 0);
        P("self_attn.q_proj.weight", lw->wq, q, H);
        if (c->attention_bias) P("self_attn.q_proj.bias", lw->bq, q, 0);
        P("self_attn.k_proj.weight", lw->wk, kv, H);
        if (c->attention_bias) P("self_attn.k_proj.bias", lw->bk, kv, 0);
        P("self_attn.v_proj.weight", lw->wv, kv, H);
        if (c->attention_bias) P("self_attn.v_proj.bias", lw->bv, kv, 0);
        P("self_attn.o_proj.weight", lw->wo, H, q);
        P("post_attention_layernorm.weight", lw->mlp_norm, H, 0);
        P("mlp.gate_proj.weight", lw->w_gate, I, H);
        P("mlp.up_proj.weight", lw->w_up, I, H);
        P("mlp.down_proj.weight", lw->w_down, H, I);
#undef P
    }
    put(out, cap, &n, "model.norm.weight", w->final_norm, H, 0);
    if (!c->tie_embeddings) put(out, cap, &n, "lm_head.weight", w->lm_head, c->vocab, H);
    return n;
}

int config_validate(const model_config *c) {
    if (strcmp(c->model_type, "llama") && strcmp(c->model_type, "qwen2"))
        return err_set(ERR_INPUT, "model_type '%s' is not supported; expected llama or qwen2", c->model_type);
    if (c->hidden <= 0 || c->vocab <= 0 || c->head_dim <= 0)
        return err_set(ERR_INPUT, "hidden_size (%d), vocab_size (%d) and head_dim (%d) must be positive",
                       c->hidden, c->vocab, c->head_dim);
    if (c->n_layers <= 0 || c->n_layers > MODEL_MAX_LAYERS)
        return err_set(ERR_INPUT, "num_hidden_layers is %d; smelt supports 1 to %d", c->n_layers, MODEL_MAX_LAYERS);
    for (int l = 0; l < c->n_layers; l++) {
        const layer_config *lc = &c->layers[l];
        if (lc->n_heads <= 0 || lc->n_kv_heads <= 0 || lc->n_heads % lc->n_kv_heads)
            return err_set(ERR_INPUT, "layer %d: %d attention heads and %d key/value heads; the kv heads must "
                           "be positive and divide the heads", l, lc->n_heads, lc->n_kv_heads);
        if (lc->intermediate <= 0)
            return err_set(ERR_INPUT, "layer %d: intermediate size %d must be positive", l, lc->intermediate);
    }
    if (!(c->rms_eps > 0) || !(c->rope_theta > 0))
        return err_set(ERR_INPUT, "rms_norm_eps (%g) and rope_theta (%g) must be positive", c->rms_eps, c->rope_theta);
    return 0;
}
