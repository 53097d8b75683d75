/* weights.h: the parameter layout of a decoder. Parameters, gradients and the two AdamW
 * moments all use this layout over one float allocation each (the llm.c idea): `mem` is
 * that allocation and every pointer below points into it. Shapes follow Hugging Face
 * ([out, in] for linear weights). */
#ifndef SMELT_MODEL_WEIGHTS_H
#define SMELT_MODEL_WEIGHTS_H

#include <stddef.h>
#include <stdint.h>

#include "model/config.h"

typedef struct {
    float *attn_norm; /* [hidden]                          input_layernorm */
    float *wq;        /* [n_heads*head_dim, hidden]        self_attn.q_proj */
    float *wk;        /* [n_kv_heads*head_dim, hidden]     self_attn.k_proj */
    float *wv;        /* [n_kv_heads*head_dim, hidden]     self_attn.v_proj */
    float *bq;        /* [n_heads*head_dim] or NULL        (attention_bias) */
    float *bk;        /* [n_kv_heads*head_dim] or NULL */
    float *bv;        /* [n_kv_heads*head_dim] or NULL */
    float *wo;        /* [hidden, n_heads*head_dim]        self_attn.o_proj */
    float *mlp_norm;  /* [hidden]                          post_attention_layernorm */
    float *w_gate;    /* [intermediate, hidden]            mlp.gate_proj */
    float *w_up;      /* [intermediate, hidden]            mlp.up_proj */
    float *w_down;    /* [hidden, intermediate]            mlp.down_proj */
} layer_weights;

typedef struct {
    float *embed;      /* [vocab, hidden]  model.embed_tokens */
    layer_weights layers[MODEL_MAX_LAYERS];
    float *final_norm; /* [hidden]         model.norm */
    float *lm_head;    /* [vocab, hidden]  lm_head; equals embed when tied */
    float *mem;        /* the one allocation, or NULL when the layout is over borrowed memory */
    size_t n_floats;   /* floats in the layout (tied head counted once) */
} model_weights;

/* One named tensor of the layout, in Hugging Face naming ("model.layers.3.mlp.up_proj.weight"). */
typedef struct {
    char name[96];
    float *data;
    int ndim;          /* 1 or 2 */
    int64_t shape[2];  /* [out, in] or [n] */
} weights_tensor;

/* Floats the layout of `c` needs. */
size_t weights_count(const model_config *c);
/* Points every tensor of w into mem (which holds weights_count(c) floats). */
void weights_layout(model_weights *w, const model_config *c, float *mem);
/* One zeroed allocation for the layout of c; returns 0 or -1. */
int weights_alloc(model_weights *w, const model_config *c);
void weights_free(model_weights *w);
/* The tensors of the layout in a fixed order (embed, then per layer, then norm, then lm_head
 * unless tied). Returns how many there are; fills at most `cap` entries of out. */
int weights_tensors(const model_weights *w, const model_config *c, weights_tensor *out, int cap);
/* Checks the sizes of c (positive, heads divide, layers within MODEL_MAX_LAYERS); 0 or -1 (ERR_INPUT). */
int config_validate(const model_config *c);

#endif
