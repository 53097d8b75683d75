/* eval_testmodel.h: random Llama models over a data set's vocabulary for the evaluate tests and
 * the prefix-sharing benchmark: weights ~ N(0, 1/sqrt(in)), norms 1, seeded (stages/data/rng.h). */
#ifndef SMELT_TESTS_EVAL_TESTMODEL_H
#define SMELT_TESTS_EVAL_TESTMODEL_H

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "model/model.h"
#include "stages/data/rng.h"

static inline model_config em_config(int hidden, int layers, int heads, int kv_heads, int inter, int vocab) {
    model_config c;
    memset(&c, 0, sizeof c);
    snprintf(c.model_type, sizeof c.model_type, "llama");
    c.hidden = hidden;
    c.n_layers = layers;
    c.n_heads = heads;
    c.n_kv_heads = kv_heads;
    c.head_dim = hidden / heads;
    c.intermediate = inter;
    c.vocab = vocab;
    c.rms_eps = 1e-5f;
    c.rope_theta = 10000.0f;
    c.tie_embeddings = 1;
    c.max_pos = 4096;
    c.bos_id = -1;
    c.eos_id = -1;
    for (int l = 0; l < layers; l++) c.layers[l] = (layer_config){heads, kv_heads, inter};
    return c;
}

/* A model with random weights (0 or -1). */
static inline int em_random_model(model *m, const model_config *c, uint64_t seed) {
    if (model_init(m, c, NULL)) return -1;
    drng r;
    drng_seed(&r, seed);
    weights_tensor t[4 * MODEL_MAX_LAYERS * 16];
    int n = weights_tensors(&m->w, &m->cfg, t, (int)(sizeof t / sizeof t[0]));
    for (int i = 0; i < n; i++) {
        size_t cnt = (size_t)t[i].shape[0] * (t[i].ndim == 2 ? (size_t)t[i].shape[1] : 1);
        int is_norm = strstr(t[i].name, "norm") != NULL;
        double sd = t[i].ndim == 2 ? 1.0 / sqrt((double)t[i].shape[1]) : 0;
        for (size_t j = 0; j < cnt; j++) t[i].data[j] = (float)((is_norm ? 1.0 : 0.0) + sd * drng_normal(&r));
    }
    return 0;
}

#endif
