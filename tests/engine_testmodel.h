/* engine_testmodel.h: tiny random models for the engine tests: configs that cover every tensor
 * kind (q/k/v biases, untied and tied heads, Llama 3 RoPE scaling, GQA, head_dim != hidden/heads,
 * per-layer sizes of a pruned model) and weights whose values are multiples of 2^-16, so that
 * finite-difference steps of 2^-7 are exact in fp32. */
#ifndef SMELT_TESTS_ENGINE_TESTMODEL_H
#define SMELT_TESTS_ENGINE_TESTMODEL_H

#include "engine_testutil.h"
#include "model/model.h"

/* kind 0: qwen2-like (biases, untied, pruned second layer); 1: llama tied with Llama 3 scaling;
 * 2: llama untied, MHA, plain RoPE, 3 layers. */
static inline model_config tm_config(int kind) {
    model_config c;
    memset(&c, 0, sizeof c);
    snprintf(c.model_type, sizeof c.model_type, "%s", kind == 0 ? "qwen2" : "llama");
    c.hidden = 24;
    c.n_layers = kind == 2 ? 3 : 2;
    c.n_heads = 4;
    c.n_kv_heads = kind == 2 ? 4 : 2;
    c.head_dim = 8;
    c.intermediate = 40;
    c.vocab = 50;
    c.rms_eps = 1e-5f;
    c.rope_theta = 10000.0f;
    c.tie_embeddings = kind == 1;
    c.attention_bias = kind == 0;
    c.max_pos = 128;
    c.bos_id = 1;
    c.eos_id = 2;
    if (kind == 1) { /* wavelengths 6.3, 63, 628, 6283 vs 16 and 64: all three bands */
        c.rope_scaling = ROPE_SCALING_LLAMA3;
        c.rope_factor = 8;
        c.rope_low_freq_factor = 1;
        c.rope_high_freq_factor = 4;
        c.rope_original_max_pos = 64;
    }
    for (int l = 0; l < c.n_layers; l++) {
        c.layers[l].n_heads = c.n_heads;
        c.layers[l].n_kv_heads = c.n_kv_heads;
        c.layers[l].intermediate = c.intermediate;
    }
    if (kind == 0) { /* a pruned layer: half the heads, one kv group, narrower MLP */
        c.layers[1].n_heads = 2;
        c.layers[1].n_kv_heads = 1;
        c.layers[1].intermediate = 20;
    }
    return c;
}

static inline float tm_q16(double x) { return (float)(nearbyint(x * 65536.0) / 65536.0); }

/* Random weights: matrices ~ N(0, 1/sqrt(in)) (scaled up to make the loss surface curve), norms
 * 1 + N(0, 0.1), biases N(0, 0.1), all rounded to multiples of 2^-16. */
static inline void tm_randomize(model *m, uint64_t seed) {
    tu_seed(seed);
    weights_tensor t[4 * MODEL_MAX_LAYERS * 16];
    int n = weights_tensors(&m->w, &m->cfg, t, (int)(sizeof t / sizeof t[0]));
    for (int i = 0; i < n; i++) {
        size_t cnt = (size_t)t[i].shape[0] * (t[i].ndim == 2 ? (size_t)t[i].shape[1] : 1);
        int is_norm = strstr(t[i].name, "norm") != NULL;
        double sd = t[i].ndim == 2 ? 1.5 / sqrt((double)t[i].shape[1]) : 0.1;
        for (size_t j = 0; j < cnt; j++) t[i].data[j] = tm_q16((is_norm ? 1.0 : 0.0) + sd * tu_normal());
    }
}

#endif
