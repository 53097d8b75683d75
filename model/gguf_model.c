/* gguf_model.c: Llama and Qwen2 GGUF files as smelt models. The config comes from the
 * `<arch>.*` keys (per-layer arrays of head counts or MLP widths are accepted: pruned models),
 * the tensors from llama.cpp's names (token_embd, blk.N.attn_q, ..., output_norm, output), each
 * dequantized to fp32 straight into the weights allocation. llama.cpp's converter permutes the
 * q/k rows of Llama attention from Hugging Face's rotate-half layout to interleaved pairs; the
 * loader undoes it (Qwen2 files are not permuted), and the writer (gguf_export.c) redoes it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "common/strbuf.h"
#include "model/checkpoint.h"
#include "model/gguf_model.h"

/* Hugging Face suffix (after "model.layers.N.") <-> llama.cpp suffix (after "blk.N."). */
static const char *const layer_names[][2] = {
    {"input_layernorm.weight", "attn_norm.weight"},
    {"self_attn.q_proj.weight", "attn_q.weight"},
    {"self_attn.k_proj.weight", "attn_k.weight"},
    {"self_attn.v_proj.weight", "attn_v.weight"},
    {"self_attn.q_proj.bias", "attn_q.bias"},
    {"self_attn.k_proj.bias", "attn_k.bias"},
    {"self_attn.v_proj.bias", "attn_v.bias"},
    {"self_attn.o_proj.weight", "attn_output.weight"},
    {"post_attention_layernorm.weight", "ffn_norm.weight"},
    {"mlp.gate_proj.weight", "ffn_gate.weight"},
    {"mlp.up_proj.weight", "ffn_up.weight"},
    {"mlp.down_proj.weight", "ffn_down.weight"},
};
static const char *const top_names[][2] = {
    {"model.embed_tokens.weight", "token_embd.weight"},
    {"model.norm.weight", "output_norm.weight"},
    {"lm_head.weight", "output.weight"},
};

int gguf_tensor_name(char *out, size_t n, const char *hf) {
    for (size_t i = 0; i < sizeof top_names / sizeof *top_names; i++)
        if (!strcmp(hf, top_names[i][0])) return snprintf(out, n, "%s", top_names[i][1]) < (int)n ? 0 : -1;
    int layer, used = 0;
    if (sscanf(hf, "model.layers.%d.%n", &layer, &used) != 1 || !used) return -1;
    for (size_t i = 0; i < sizeof layer_names / sizeof *layer_names; i++)
        if (!strcmp(hf + used, layer_names[i][0]))
            return snprintf(out, n, "blk.%d.%s", layer, layer_names[i][1]) < (int)n ? 0 : -1;
    return -1;
}

int gguf_qk_permuted(const char *arch) { return !strcmp(arch, "llama"); }

/* ---- config ---- */

/* An integer key, per layer: a scalar for all layers or an array of n_layers. 1 when absent. */
static int layer_ints(const gguf_file *f, const char *key, int n_layers, int lo, int hi, int *out) {
    const gguf_kv *kv = gguf_get(f, key);
    if (!kv) return 1;
    if (kv->type != GGUF_ARRAY) {
        int64_t v;
        if (gguf_get_int(f, key, lo, hi, &v)) return -1;
        for (int l = 0; l < n_layers; l++) out[l] = (int)v;
        return 0;
    }
    if (gguf_get_array(f, key, 0, (uint64_t)n_layers, &kv)) return -1;
    for (int l = 0; l < n_layers; l++) {
        double v = gguf_arr_num(kv, (uint64_t)l);
        if (!(v >= lo && v <= hi) || v != (int)v)
            return err_set(ERR_CORRUPT, "%s: %s[%d] is %g, outside %d..%d", f->path, key, l, v, lo, hi);
        out[l] = (int)v;
    }
    return 0;
}

static int missing(const gguf_file *f, const char *key) {
    return err_set(ERR_CORRUPT, "%s: metadata '%s' is missing; the file does not describe its model", f->path, key);
}

/* Required and optional getters: -1 on a bad or (required) missing value; optional ones leave
 * *out alone when the key is absent. */
static int req_int(const gguf_file *f, const char *key, int64_t lo, int64_t hi, int64_t *out) {
    int r = gguf_get_int(f, key, lo, hi, out);
    return r > 0 ? missing(f, key) : r;
}
static int opt_int(const gguf_file *f, const char *key, int64_t lo, int64_t hi, int *out) {
    int64_t v;
    int r = gguf_get_int(f, key, lo, hi, &v);
    if (r < 0) return -1;
    if (!r) *out = (int)v;
    return 0;
}
static int opt_float(const gguf_file *f, const char *key, float *out) {
    double d;
    int r = gguf_get_float(f, key, &d);
    if (r < 0) return -1;
    if (!r) *out = (float)d;
    return 0;
}

/* The stop tokens: eos, then end-of-turn and end-of-message when the file names them. */
static int stop_tokens(const gguf_file *f, model_config *c) {
    static const char *const stops[] = {"tokenizer.ggml.eos_token_id", "tokenizer.ggml.eot_token_id",
                                        "tokenizer.ggml.eom_token_id"};
    c->bos_id = c->eos_id = -1;
    if (opt_int(f, "tokenizer.ggml.bos_token_id", 0, c->vocab - 1, &c->bos_id)) return -1;
    for (size_t i = 0; i < sizeof stops / sizeof *stops; i++) {
        int v = -1;
        if (opt_int(f, stops[i], 0, c->vocab - 1, &v)) return -1;
        int dup = v < 0;
        for (int k = 0; k < c->n_eos; k++) dup |= c->eos_ids[k] == v;
        if (!dup) c->eos_ids[c->n_eos++] = v;
    }
    c->eos_id = c->n_eos ? c->eos_ids[0] : -1;
    return 0;
}

/* Everything that is not a size: norms, RoPE, context, vocabulary, head tying, biases. */
static int config_rest(const gguf_file *f, const char *arch, model_config *c) {
    char key[96];
    int64_t v;
    double d;
    snprintf(key, sizeof key, "%s.attention.layer_norm_rms_epsilon", arch);
    int r = gguf_get_float(f, key, &d);
    if (r) return r > 0 ? missing(f, key) : -1;
    c->rms_eps = (float)d;
    c->rope_theta = 10000.0f;
    snprintf(key, sizeof key, "%s.rope.freq_base", arch);
    if (opt_float(f, key, &c->rope_theta)) return -1;
    snprintf(key, sizeof key, "%s.rope.scaling.type", arch);
    char *stype = NULL;
    if ((r = gguf_get_string(f, key, &stype)) < 0) return -1;
    int scaled = !r && strcmp(stype, "none");
    if (scaled) err_set(ERR_INPUT, "%s: rope scaling '%s' is not supported (smelt reads plain RoPE GGUF files)", f->path, stype);
    free(stype);
    if (scaled) return -1;
    if (gguf_find_tensor(f, "rope_freqs.weight"))
        return err_set(ERR_INPUT, "%s: the file carries Llama 3.1 RoPE frequency factors (rope_freqs.weight), which smelt "
                       "cannot map back to rope_scaling parameters; load the Hugging Face checkpoint instead", f->path);
    c->max_pos = 2048;
    snprintf(key, sizeof key, "%s.context_length", arch);
    if (opt_int(f, key, 1, 1 << 30, &c->max_pos)) return -1;
    const gguf_tensor *emb = gguf_find_tensor(f, "token_embd.weight");
    if (!emb || emb->n_dims != 2)
        return err_set(ERR_CORRUPT, "%s: tensor token_embd.weight is %s; a model has a [hidden, vocab] embedding", f->path,
                       emb ? "not 2-dimensional" : "missing");
    c->vocab = (int)emb->ne[1];
    snprintf(key, sizeof key, "%s.vocab_size", arch);
    if ((r = gguf_get_int(f, key, 1, 1 << 30, &v)) < 0) return -1;
    if (!r && v != c->vocab)
        return err_set(ERR_CORRUPT, "%s: %s is %lld but token_embd.weight has %d rows", f->path, key, (long long)v, c->vocab);
    c->tie_embeddings = gguf_find_tensor(f, "output.weight") == NULL;
    c->attention_bias = gguf_find_tensor(f, "blk.0.attn_q.bias") != NULL;
    return stop_tokens(f, c);
}

int gguf_model_config(const gguf_file *f, model_config *c) {
    memset(c, 0, sizeof *c);
    char *arch = NULL;
    int r = gguf_get_string(f, "general.architecture", &arch);
    if (r) return r < 0 ? -1 : missing(f, "general.architecture");
    int rc = -1;
    if (strcmp(arch, "llama") && strcmp(arch, "qwen2")) {
        err_set(ERR_INPUT, "%s: architecture '%s' is not supported; smelt reads llama (Llama 2/3, SmolLM, Mistral) and "
                "qwen2 GGUF files", f->path, arch);
        goto out;
    }
    snprintf(c->model_type, sizeof c->model_type, "%s", arch);
    char key[96];
    int64_t v;
    int heads[MODEL_MAX_LAYERS], kv[MODEL_MAX_LAYERS], inter[MODEL_MAX_LAYERS];
    snprintf(key, sizeof key, "%s.block_count", arch);
    if (req_int(f, key, 1, MODEL_MAX_LAYERS, &v)) goto out;
    c->n_layers = (int)v;
    snprintf(key, sizeof key, "%s.embedding_length", arch);
    if (req_int(f, key, 1, 1 << 20, &v)) goto out;
    c->hidden = (int)v;
    snprintf(key, sizeof key, "%s.attention.head_count", arch);
    if ((r = layer_ints(f, key, c->n_layers, 1, 1 << 16, heads))) {
        if (r > 0) missing(f, key);
        goto out;
    }
    snprintf(key, sizeof key, "%s.attention.head_count_kv", arch);
    if ((r = layer_ints(f, key, c->n_layers, 1, 1 << 16, kv)) < 0) goto out;
    if (r > 0) memcpy(kv, heads, sizeof(int) * (size_t)c->n_layers);
    snprintf(key, sizeof key, "%s.feed_forward_length", arch);
    if ((r = layer_ints(f, key, c->n_layers, 1, 1 << 24, inter))) {
        if (r > 0) missing(f, key);
        goto out;
    }
    for (int l = 0; l < c->n_layers; l++) c->layers[l] = (layer_config){heads[l], kv[l], inter[l]};
    c->n_heads = heads[0], c->n_kv_heads = kv[0], c->intermediate = inter[0];
    c->head_dim = c->hidden / c->n_heads;
    snprintf(key, sizeof key, "%s.attention.key_length", arch);
    if (opt_int(f, key, 2, 1 << 16, &c->head_dim)) goto out;
    static const char *const same_as_head[] = {"attention.value_length", "rope.dimension_count"};
    for (int i = 0; i < 2; i++) {
        int x = c->head_dim;
        snprintf(key, sizeof key, "%s.%s", arch, same_as_head[i]);
        if (opt_int(f, key, 1, 1 << 16, &x)) goto out;
        if (x != c->head_dim) {
            err_set(ERR_INPUT, "%s: %s is %d but the head dimension is %d; smelt runs models whose values and RoPE "
                    "span the whole head", f->path, key, x, c->head_dim);
            goto out;
        }
    }
    if (config_rest(f, arch, c)) goto out;
    if (config_validate(c)) {
        err_prefix("%s: ", f->path);
        goto out;
    }
    rc = 0;
out:
    free(arch);
    return rc;
}

/* ---- weights ---- */

static void ggml_shape_str(char *buf, size_t n, const gguf_tensor *t) {
    size_t o = (size_t)snprintf(buf, n, "[");
    for (int d = t->n_dims - 1; d >= 0 && o < n; d--) o += (size_t)snprintf(buf + o, n - o, "%lld%s", (long long)t->ne[d], d ? ", " : "]");
}

/* The GGUF tensor of one expected weight: present, of the HF shape reversed, of a readable type. */
static int check_tensor(const gguf_file *f, const weights_tensor *wt, const char *gname, const gguf_tensor **out) {
    const gguf_tensor *t = gguf_find_tensor(f, gname);
    char want[64], got[96];
    if (wt->ndim == 2) snprintf(want, sizeof want, "[%lld, %lld]", (long long)wt->shape[0], (long long)wt->shape[1]);
    else snprintf(want, sizeof want, "[%lld]", (long long)wt->shape[0]);
    if (!t)
        return err_set(ERR_CORRUPT, "%s: tensor '%s' (%s, shape %s from the metadata) is missing; the file does not match "
                       "its metadata", f->path, gname, wt->name, want);
    int same = t->n_dims == wt->ndim && t->ne[0] == wt->shape[wt->ndim - 1] && (wt->ndim == 1 || t->ne[1] == wt->shape[0]);
    if (!same) {
        ggml_shape_str(got, sizeof got, t);
        return err_set(ERR_CORRUPT, "%s: tensor '%s' has shape %s (outermost first) but the metadata implies %s; the file "
                       "does not match its metadata", f->path, gname, got, want);
    }
    if (!ggml_can_dequantize(t->type))
        return err_set(ERR_INPUT, "%s: tensor '%s' is %s, which smelt cannot convert to fp32 (it reads F32, F16, BF16, "
                       "Q4_0, Q4_1, Q5_0, Q5_1, Q8_0 and Q2_K..Q6_K); re-quantize the model", f->path, gname,
                       ggml_type_name(t->type));
    *out = t;
    return 0;
}

/* Every tensor of the file must be one the config implies; the others are listed. */
static int check_extra(const gguf_file *f, char (*gnames)[96], int n) {
    strbuf extra = STRBUF_INIT;
    int n_extra = 0;
    for (int64_t i = 0; i < f->n_tensors; i++) {
        const char *name = f->tensors[i].name;
        int known = 0;
        for (int k = 0; k < n && !known; k++) known = !strcmp(name, gnames[k]);
        if (known) continue;
        if (n_extra < 5) sb_printf(&extra, "%s'%s'", n_extra ? ", " : "", name);
        n_extra++;
    }
    int rc = 0;
    if (n_extra)
        rc = err_set(ERR_INPUT, "%s: %d tensor(s) that a plain llama/qwen2 model does not have: %s%s; smelt reads "
                     "decoders with RMSNorm, RoPE, grouped-query attention and a SwiGLU MLP", f->path, n_extra,
                     sb_str(&extra), n_extra > 5 ? ", ..." : "");
    sb_free(&extra);
    return rc;
}

/* The expected tensors of cfg (shape only: data NULL), their GGUF names and the file's tensors,
 * each checked; every tensor of the file must be one of them. Arrays of n (returned) entries. */
static int match_tensors(const gguf_file *f, const model_config *cfg, weights_tensor **wt_out, char (**gn_out)[96],
                         const gguf_tensor ***src_out) {
    model_weights shape_only;
    memset(&shape_only, 0, sizeof shape_only);
    int n = weights_tensors(&shape_only, cfg, NULL, 0);
    weights_tensor *wt = xcalloc((size_t)n, sizeof *wt);
    char(*gnames)[96] = xcalloc((size_t)n, sizeof *gnames);
    const gguf_tensor **src = xcalloc((size_t)n, sizeof *src);
    int rc = -1;
    if (!wt || !gnames || !src) goto out;
    weights_tensors(&shape_only, cfg, wt, n);
    for (int i = 0; i < n; i++) {
        if (gguf_tensor_name(gnames[i], sizeof gnames[i], wt[i].name)) {
            err_set(ERR_INTERNAL, "no GGUF name for %s", wt[i].name);
            goto out;
        }
        if (check_tensor(f, &wt[i], gnames[i], &src[i])) goto out;
    }
    if (check_extra(f, gnames, n)) goto out;
    rc = n;
out:
    if (rc < 0) {
        free(wt), free(gnames), free(src);
        wt = NULL, gnames = NULL, src = NULL;
    }
    *wt_out = wt, *gn_out = gnames, *src_out = src;
    return rc;
}

int gguf_model_check(const gguf_file *f, const model_config *cfg) {
    weights_tensor *wt;
    char(*gnames)[96];
    const gguf_tensor **src;
    int n = match_tensors(f, cfg, &wt, &gnames, &src);
    free(wt), free(gnames), free(src);
    return n < 0 ? -1 : 0;
}

int gguf_model_load_file(const gguf_file *f, model_config *cfg, model_weights *w) {
    return gguf_model_load_file_except(f, cfg, w, NULL, NULL);
}

int gguf_model_load_file_except(const gguf_file *f, model_config *cfg, model_weights *w,
                                int (*skip)(void *ctx, const char *hf_name), void *ctx) {
    memset(w, 0, sizeof *w);
    if (gguf_model_config(f, cfg)) return -1;
    weights_tensor *wt;
    char(*gnames)[96];
    const gguf_tensor **src;
    int n = match_tensors(f, cfg, &wt, &gnames, &src), rc = -1;
    if (n < 0 || weights_alloc(w, cfg)) goto out;
    weights_tensors(w, cfg, wt, n); /* the same order, now with data pointers */
    for (int i = 0; i < n; i++)
        if (!(skip && skip(ctx, wt[i].name)) &&
            ggml_dequantize(wt[i].data, src[i]->data, src[i]->type, (int64_t)src[i]->n_elems)) {
            err_prefix("%s: tensor %s: ", f->path, gnames[i]);
            goto out;
        }
    if (gguf_qk_permuted(cfg->model_type))
        for (int l = 0; l < cfg->n_layers; l++) {
            const layer_config *lc = &cfg->layers[l];
            if (rope_rows_to_hf(w->layers[l].wq, lc->n_heads, cfg->head_dim, cfg->hidden, 0) ||
                rope_rows_to_hf(w->layers[l].wk, lc->n_kv_heads, cfg->head_dim, cfg->hidden, 0))
                goto out;
        }
    rc = 0;
out:
    if (rc) weights_free(w);
    free(wt);
    free(gnames);
    free(src);
    return rc;
}

int gguf_model_load(const char *path, model_config *cfg, model_weights *w) {
    gguf_file f;
    memset(w, 0, sizeof *w);
    if (gguf_open(&f, path)) return -1;
    int rc = gguf_model_load_file(&f, cfg, w);
    gguf_close(&f);
    return rc;
}

int gguf_model_read_config(const char *path, model_config *cfg) {
    gguf_file f;
    if (gguf_open(&f, path)) return -1;
    int rc = gguf_model_config(&f, cfg);
    gguf_close(&f);
    return rc;
}
