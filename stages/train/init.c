/* init.c: the models of the `train` stage: configs read without weights (so that vocabulary
 * mismatches stop the stage before any work), seeded random students, loading, and the output
 * folder in the Hugging Face layout with the data set's tokenizer beside the weights. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "common/fsutil.h"
#include "model/checkpoint.h"
#include "model/hfconfig.h"
#include "model/tokenizer.h"
#include "stages/data/rng.h"
#include "stages/train/train.h"

int train_read_config(const char *path, model_config *cfg) { return checkpoint_read_config(path, cfg); }

static int get_int(const cJSON *o, const char *k, int *out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    if (!cJSON_IsNumber(v)) return err_set(ERR_INPUT, "init.%s is missing", k);
    *out = (int)v->valuedouble;
    return 0;
}

int train_config_from_arch(model_config *cfg, const cJSON *arch, const dataset *ds, int seq_len) {
    memset(cfg, 0, sizeof *cfg);
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(arch, "arch");
    const cJSON *th = cJSON_GetObjectItemCaseSensitive(arch, "rope_theta"),
                *eps = cJSON_GetObjectItemCaseSensitive(arch, "rms_eps"),
                *tie = cJSON_GetObjectItemCaseSensitive(arch, "tie_embeddings");
    if (!cJSON_IsString(a) || !cJSON_IsNumber(th) || !cJSON_IsNumber(eps))
        return err_set(ERR_INPUT, "init: arch, rope_theta and rms_eps are needed for a random model");
    snprintf(cfg->model_type, sizeof cfg->model_type, "%s", a->valuestring);
    int kv = 0, hd = 0, maxpos = 0;
    if (get_int(arch, "hidden", &cfg->hidden) || get_int(arch, "layers", &cfg->n_layers) ||
        get_int(arch, "heads", &cfg->n_heads) || get_int(arch, "kv_heads", &kv) ||
        get_int(arch, "intermediate", &cfg->intermediate) || get_int(arch, "head_dim", &hd) ||
        get_int(arch, "max_positions", &maxpos))
        return -1;
    cfg->n_kv_heads = kv > 0 ? kv : cfg->n_heads;
    if (hd <= 0) {
        if (cfg->n_heads <= 0 || cfg->hidden % cfg->n_heads)
            return err_set(ERR_INPUT, "init: hidden %d is not a multiple of heads %d; set head_dim", cfg->hidden,
                           cfg->n_heads);
        hd = cfg->hidden / cfg->n_heads;
    }
    cfg->head_dim = hd;
    cfg->vocab = ds->vocab;
    cfg->rms_eps = (float)eps->valuedouble;
    cfg->rope_theta = (float)th->valuedouble;
    cfg->tie_embeddings = cJSON_IsTrue(tie);
    cfg->attention_bias = !strcmp(cfg->model_type, "qwen2");
    cfg->max_pos = maxpos > 0 ? maxpos : (seq_len > 2048 ? seq_len : 2048);
    cfg->bos_id = ds->bos_id;
    cfg->eos_id = ds->eos_id;
    cfg->n_eos = ds->eos_id >= 0;
    cfg->eos_ids[0] = ds->eos_id;
    if (cfg->n_layers < 1 || cfg->n_layers > MODEL_MAX_LAYERS)
        return err_set(ERR_INPUT, "init: layers %d must be 1 to %d", cfg->n_layers, MODEL_MAX_LAYERS);
    for (int l = 0; l < cfg->n_layers; l++)
        cfg->layers[l] = (layer_config){cfg->n_heads, cfg->n_kv_heads, cfg->intermediate};
    if (config_validate(cfg)) return err_prefix("init: ");
    return 0;
}

int train_init_random(model *m, const model_config *cfg, double std, uint64_t seed) {
    model_weights w;
    if (weights_alloc(&w, cfg)) return err_prefix("random model: ");
    int nt = weights_tensors(&w, cfg, NULL, 0);
    weights_tensor *t = xmalloc(sizeof *t * (size_t)nt);
    if (!t) {
        weights_free(&w);
        return -1;
    }
    weights_tensors(&w, cfg, t, nt);
    drng r;
    drng_seed(&r, seed ^ 0x1a17ull);
    for (int i = 0; i < nt; i++) {
        size_t n = (size_t)t[i].shape[0] * (t[i].ndim == 2 ? (size_t)t[i].shape[1] : 1);
        const char *nm = t[i].name;
        size_t nl = strlen(nm);
        if (t[i].ndim == 2) {
            /* std 0: 1/sqrt(fan-in) (the embedding: 1/sqrt(hidden)), which small models train faster from */
            double sd = std > 0 ? std : 1.0 / sqrt((double)t[i].shape[1]);
            for (size_t k = 0; k < n; k++) t[i].data[k] = (float)(sd * drng_normal(&r));
        } else {
            /* 1-D: RMSNorm weights are 1, biases 0 (transformers' _init_weights) */
            float v = nl > 5 && !strcmp(nm + nl - 5, ".bias") ? 0.0f : 1.0f;
            for (size_t k = 0; k < n; k++) t[i].data[k] = v;
        }
    }
    free(t);
    if (model_init(m, cfg, &w)) {
        weights_free(&w);
        return -1;
    }
    return 0;
}

int train_load_model(model *m, const char *path) {
    model_config cfg;
    model_weights w;
    if (checkpoint_load(path, &cfg, &w)) return err_prefix("loading %s: ", path);
    if (model_init(m, &cfg, &w)) {
        weights_free(&w);
        return err_prefix("%s: ", path);
    }
    return 0;
}

int train_layers_config(model_config *out, const model_config *full, const int *keep, int n) {
    if (n < 1) return err_set(ERR_INPUT, "init.layers is empty; list the layers the student keeps, e.g. [0, 2, 4]");
    for (int j = 0; j < n; j++) {
        if (keep[j] < 0 || keep[j] >= full->n_layers)
            return err_set(ERR_INPUT, "init.layers[%d] is %d, but the model of init.from has %d layers (0 to %d); "
                           "list only layers that exist", j, keep[j], full->n_layers, full->n_layers - 1);
        if (j > 0 && keep[j] <= keep[j - 1])
            return err_set(ERR_INPUT, "init.layers must be strictly increasing, but [%d] is %d after %d; list each "
                           "kept layer once, in order", j, keep[j], keep[j - 1]);
    }
    *out = *full;
    out->n_layers = n;
    for (int j = 0; j < n; j++) out->layers[j] = full->layers[keep[j]];
    for (int j = n; j < MODEL_MAX_LAYERS; j++) out->layers[j] = (layer_config){0, 0, 0};
    return config_validate(out) ? err_prefix("init.layers: ") : 0;
}

/* The source tensor of student tensor `name`: "model.layers.J.x" comes from "model.layers.keep[J].x",
 * every other name from itself. */
static const weights_tensor *layer_source(const weights_tensor *src, int n_src, const char *name, const int *keep) {
    char want[sizeof src->name];
    int j, off = 0;
    if (sscanf(name, "model.layers.%d.%n", &j, &off) == 1 && off > 0)
        snprintf(want, sizeof want, "model.layers.%d.%s", keep[j], name + off);
    else
        snprintf(want, sizeof want, "%s", name);
    for (int i = 0; i < n_src; i++)
        if (!strcmp(src[i].name, want)) return &src[i];
    return NULL;
}

int train_init_layers(model *m, const char *path, const int *keep, int n) {
    model_config full, cfg;
    model_weights fw, w;
    if (checkpoint_load(path, &full, &fw)) return err_prefix("loading %s: ", path);
    if (train_layers_config(&cfg, &full, keep, n) || weights_alloc(&w, &cfg)) {
        weights_free(&fw);
        return err_prefix("%s: ", path);
    }
    int ns = weights_tensors(&fw, &full, NULL, 0), nd = weights_tensors(&w, &cfg, NULL, 0), rc = 0;
    weights_tensor *src = xmalloc(sizeof *src * (size_t)ns), *dst = xmalloc(sizeof *dst * (size_t)nd);
    if (!src || !dst) rc = -1;
    else {
        weights_tensors(&fw, &full, src, ns);
        weights_tensors(&w, &cfg, dst, nd);
    }
    for (int i = 0; !rc && i < nd; i++) {
        const weights_tensor *s = layer_source(src, ns, dst[i].name, keep);
        size_t cnt = (size_t)dst[i].shape[0] * (dst[i].ndim == 2 ? (size_t)dst[i].shape[1] : 1);
        if (!s || s->ndim != dst[i].ndim || s->shape[0] != dst[i].shape[0] || (s->ndim == 2 && s->shape[1] != dst[i].shape[1]))
            rc = err_set(ERR_INTERNAL, "the student's tensor %s has no source of its shape in %s", dst[i].name, path);
        else
            memcpy(dst[i].data, s->data, cnt * sizeof(float));
    }
    free(src), free(dst);
    weights_free(&fw);
    if (!rc && model_init(m, &cfg, &w)) rc = err_prefix("%s: ", path);
    if (rc) weights_free(&w);
    return rc;
}

typedef struct {
    const char *dst;
} copy_ctx;

static int copy_one(const char *rel, const char *abs, void *ctx) {
    const copy_ctx *c = ctx;
    if (strchr(rel, '/')) return 0; /* the tokenizer folder is flat */
    char *d = fs_join(c->dst, rel);
    int rc = d ? fs_copy_file(d, abs) : -1;
    free(d);
    return rc;
}

int train_save_model(const char *out_dir, const model *m, const dataset *ds, st_dtype dtype) {
    if (checkpoint_save(out_dir, &m->cfg, &m->w, dtype)) return err_prefix("saving the model: ");
    tokenizer *tok = NULL;
    int rc = dataset_tokenizer_load(ds, &tok);
    if (!rc && strncmp(ds->tokenizer_spec, "builtin:", 8)) {
        copy_ctx c = {out_dir};
        rc = fs_walk_files(ds->tokenizer_spec, copy_one, &c);
    }
    /* tokenizer.json and tokenizer_config.json written by smelt for every byte-level tokenizer (over
     * the copies, keeping their other config keys): builtin:bytes and tiktoken have no file
     * transformers reads, and a copied tokenizer.json may not add the BOS smelt puts before every
     * prompt; the written files make AutoTokenizer(prompt) give exactly the ids smelt used */
    if (!rc && tokenizer_format(tok) != TOKENIZER_LLAMA2C) rc = tokenizer_save_hf(tok, out_dir);
    tokenizer_free(tok);
    if (rc) return err_prefix("writing the tokenizer beside the model: ");
    return 0;
}
