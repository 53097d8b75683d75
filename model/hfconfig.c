/* hfconfig.c: Hugging Face config.json <-> model_config (llama, qwen2). Reading is strict
 * about types and ranges and names the field at fault; defaults follow transformers 5's
 * LlamaConfig / Qwen2Config. Writing emits the legacy-compatible keys (rope_theta,
 * rope_scaling, torch_dtype) that transformers 4/5, vLLM and SGLang all read. */
#include "model/hfconfig.h"

#include <cjson/cJSON.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "common/fsutil.h"
#include "model/weights.h"

#define CONFIG_MAX_BYTES (16u << 20)

/* Upper bounds that keep every size product far inside 64 bits; far above real models. */
#define MAX_HIDDEN (1 << 20)
#define MAX_VOCAB (1 << 24)
#define MAX_INTERMEDIATE (1 << 22)
#define MAX_HEADS 4096
#define MAX_HEAD_DIM 4096

typedef struct {
    const cJSON *root;
    const char *path;
    int quantized_ok; /* the caller reads quantization_config itself (qcheckpoint.c) */
} jctx;

static int bad(const jctx *j, const char *key, const cJSON *v, const char *expected) {
    char *s = v ? cJSON_PrintUnformatted(v) : NULL;
    char shown[80];
    snprintf(shown, sizeof shown, "%s", s ? s : "(missing)");
    free(s);
    return err_set(ERR_INPUT, "%s: \"%s\" is %s; expected %s (fix config.json)", j->path, key, shown, expected);
}

/* An integer field in [lo, hi]. Absent or null: *out = dflt, or an error when required. */
static int get_int(const jctx *j, const cJSON *obj, const char *key, int required, int dflt, int lo, int hi, int *out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!v || cJSON_IsNull(v)) {
        if (required) return err_set(ERR_INPUT, "%s: \"%s\" is missing; a %s config needs it", j->path, key,
                                     "llama/qwen2");
        *out = dflt;
        return 0;
    }
    if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble) || v->valuedouble < lo || v->valuedouble > hi) {
        char exp[96];
        snprintf(exp, sizeof exp, "an integer from %d to %d", lo, hi);
        return bad(j, key, v, exp);
    }
    *out = (int)v->valuedouble;
    return 0;
}

static int get_float(const jctx *j, const cJSON *obj, const char *key, float dflt, float *out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!v || cJSON_IsNull(v)) {
        *out = dflt;
        return 0;
    }
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble) || !(v->valuedouble > 0) || v->valuedouble > 3.0e38)
        return bad(j, key, v, "a positive number");
    *out = (float)v->valuedouble;
    return 0;
}

static int get_bool(const jctx *j, const cJSON *obj, const char *key, int dflt, int *out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!v || cJSON_IsNull(v)) {
        *out = dflt;
        return 0;
    }
    if (!cJSON_IsBool(v)) return bad(j, key, v, "true or false");
    *out = cJSON_IsTrue(v);
    return 0;
}

/* bos/eos: an integer, a list of integers (the first is the id; eos keeps up to MODEL_MAX_EOS), or null. */
static int get_token_ids(const jctx *j, const char *key, int dflt, int *first, int *ids, int *n_ids) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j->root, key);
    if (n_ids) *n_ids = 0;
    *first = dflt;
    if (!v) return 0;
    if (cJSON_IsNull(v)) {
        *first = -1;
        return 0;
    }
    if (cJSON_IsNumber(v)) {
        int id;
        if (get_int(j, j->root, key, 1, 0, 0, INT_MAX, &id)) return -1;
        *first = id;
        if (n_ids) {
            ids[0] = id;
            *n_ids = 1;
        }
        return 0;
    }
    if (!cJSON_IsArray(v)) return bad(j, key, v, "a token id, a list of token ids, or null");
    int n = 0;
    *first = -1;
    for (const cJSON *e = v->child; e; e = e->next) {
        if (!cJSON_IsNumber(e) || e->valuedouble != floor(e->valuedouble) || e->valuedouble < 0 ||
            e->valuedouble > INT_MAX)
            return bad(j, key, v, "a list of non-negative integer token ids");
        if (n == 0) *first = (int)e->valuedouble;
        if (n_ids && n < MODEL_MAX_EOS) ids[n] = (int)e->valuedouble;
        n++;
    }
    if (n_ids) *n_ids = n < MODEL_MAX_EOS ? n : MODEL_MAX_EOS;
    return 0;
}

/* rope_theta and the scaling, from legacy rope_theta/rope_scaling or transformers 5's rope_parameters. */
static int parse_rope(const jctx *j, model_config *c) {
    const cJSON *scaling = cJSON_GetObjectItemCaseSensitive(j->root, "rope_scaling");
    const cJSON *params = cJSON_GetObjectItemCaseSensitive(j->root, "rope_parameters");
    const char *skey = "rope_scaling";
    if (scaling && !cJSON_IsNull(scaling) && !cJSON_IsObject(scaling))
        return bad(j, "rope_scaling", scaling, "an object or null");
    if (params && !cJSON_IsNull(params) && !cJSON_IsObject(params))
        return bad(j, "rope_parameters", params, "an object or null");
    if (!scaling || cJSON_IsNull(scaling)) {
        scaling = cJSON_IsObject(params) ? params : NULL;
        skey = "rope_parameters";
    }
    const cJSON *top_theta = cJSON_GetObjectItemCaseSensitive(j->root, "rope_theta");
    if (top_theta && !cJSON_IsNull(top_theta)) {
        if (get_float(j, j->root, "rope_theta", 10000.0f, &c->rope_theta)) return -1;
    } else if (cJSON_IsObject(params)) {
        jctx pj = {params, j->path, j->quantized_ok};
        if (get_float(&pj, params, "rope_theta", 10000.0f, &c->rope_theta)) return err_prefix("rope_parameters: ");
    } else {
        c->rope_theta = 10000.0f;
    }
    c->rope_scaling = ROPE_SCALING_NONE;
    if (!scaling) return 0;
    const cJSON *partial = cJSON_GetObjectItemCaseSensitive(scaling, "partial_rotary_factor");
    if (partial && !(cJSON_IsNumber(partial) && partial->valuedouble == 1.0))
        return bad(j, "partial_rotary_factor", partial, "1.0 (smelt applies RoPE to the whole head)");
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(scaling, "rope_type");
    if (!type) type = cJSON_GetObjectItemCaseSensitive(scaling, "type");
    if (!type || cJSON_IsNull(type)) return 0;
    if (!cJSON_IsString(type)) return bad(j, "rope_type", type, "a string");
    if (!strcmp(type->valuestring, "default")) return 0;
    if (strcmp(type->valuestring, "llama3"))
        return err_set(ERR_INPUT, "%s: %s.rope_type is \"%s\"; smelt implements only \"default\" and \"llama3\" RoPE "
                       "(use a model without that RoPE scaling, or add it to kernels/rope)", j->path, skey,
                       type->valuestring);
    jctx sj = {scaling, j->path, j->quantized_ok};
    c->rope_scaling = ROPE_SCALING_LLAMA3;
    const char *need[] = {"factor", "low_freq_factor", "high_freq_factor"};
    float *dst[] = {&c->rope_factor, &c->rope_low_freq_factor, &c->rope_high_freq_factor};
    for (int i = 0; i < 3; i++) {
        if (!cJSON_GetObjectItemCaseSensitive(scaling, need[i]))
            return err_set(ERR_INPUT, "%s: %s has rope_type llama3 but no \"%s\"; add it", j->path, skey, need[i]);
        if (get_float(&sj, scaling, need[i], 1.0f, dst[i])) return err_prefix("%s: ", skey);
    }
    if (!(c->rope_high_freq_factor > c->rope_low_freq_factor))
        return err_set(ERR_INPUT, "%s: %s.high_freq_factor (%g) must be larger than low_freq_factor (%g)", j->path,
                       skey, c->rope_high_freq_factor, c->rope_low_freq_factor);
    /* transformers falls back to max_position_embeddings, and so do we */
    if (get_int(&sj, scaling, "original_max_position_embeddings", 0, c->max_pos, 1, INT_MAX,
                &c->rope_original_max_pos))
        return err_prefix("%s: ", skey);
    return 0;
}

static int parse_layers(const jctx *j, model_config *c) {
    const cJSON *arr = cJSON_GetObjectItemCaseSensitive(j->root, "smelt_layers");
    if (!arr || cJSON_IsNull(arr)) {
        config_fill_uniform(c);
        return 0;
    }
    if (!cJSON_IsArray(arr) || cJSON_GetArraySize(arr) != c->n_layers) {
        char exp[96];
        snprintf(exp, sizeof exp, "a list of %d per-layer objects (one per hidden layer)", c->n_layers);
        return bad(j, "smelt_layers", arr, exp);
    }
    int l = 0;
    for (const cJSON *e = arr->child; e; e = e->next, l++) {
        if (!cJSON_IsObject(e)) return bad(j, "smelt_layers", e, "objects {num_attention_heads, num_key_value_heads, intermediate_size}");
        jctx lj = {e, j->path, j->quantized_ok};
        layer_config *lc = &c->layers[l];
        if (get_int(&lj, e, "num_attention_heads", 1, 0, 1, MAX_HEADS, &lc->n_heads) ||
            get_int(&lj, e, "num_key_value_heads", 0, lc->n_heads, 1, MAX_HEADS, &lc->n_kv_heads) ||
            get_int(&lj, e, "intermediate_size", 1, 0, 1, MAX_INTERMEDIATE, &lc->intermediate))
            return err_prefix("smelt_layers[%d]: ", l);
    }
    const layer_config *l0 = &c->layers[0];
    if (l0->n_heads != c->n_heads || l0->n_kv_heads != c->n_kv_heads || l0->intermediate != c->intermediate)
        return err_set(ERR_INPUT, "%s: smelt_layers[0] (%d heads, %d kv heads, intermediate %d) differs from the "
                       "top-level keys (%d, %d, %d); they must hold layer 0's sizes", j->path, l0->n_heads,
                       l0->n_kv_heads, l0->intermediate, c->n_heads, c->n_kv_heads, c->intermediate);
    return 0;
}

static int parse_root(const jctx *j, model_config *c) {
    const cJSON *r = j->root;
    const cJSON *mt = cJSON_GetObjectItemCaseSensitive(r, "model_type");
    if (!cJSON_IsString(mt)) return bad(j, "model_type", mt, "\"llama\" or \"qwen2\"");
    if (strcmp(mt->valuestring, "llama") && strcmp(mt->valuestring, "qwen2"))
        return err_set(ERR_INPUT, "%s: model_type \"%s\" is not supported; smelt loads llama and qwen2 models",
                       j->path, mt->valuestring);
    snprintf(c->model_type, sizeof c->model_type, "%s", mt->valuestring);
    const int qwen = !strcmp(c->model_type, "qwen2");
    if (!j->quantized_ok && cJSON_GetObjectItemCaseSensitive(r, "quantization_config"))
        return err_set(ERR_INPUT, "%s: the model is quantized (quantization_config); smelt loads dense F32/F16/BF16 "
                       "checkpoints only: dequantize it first", j->path);
    const cJSON *act = cJSON_GetObjectItemCaseSensitive(r, "hidden_act");
    if (act && !(cJSON_IsString(act) && !strcmp(act->valuestring, "silu")))
        return bad(j, "hidden_act", act, "\"silu\" (the SwiGLU MLP of llama/qwen2)");
    if (get_int(j, r, "hidden_size", 1, 0, 1, MAX_HIDDEN, &c->hidden) ||
        get_int(j, r, "num_hidden_layers", 1, 0, 1, MODEL_MAX_LAYERS, &c->n_layers) ||
        get_int(j, r, "num_attention_heads", 1, 0, 1, MAX_HEADS, &c->n_heads) ||
        get_int(j, r, "num_key_value_heads", 0, c->n_heads, 1, MAX_HEADS, &c->n_kv_heads) ||
        get_int(j, r, "intermediate_size", 1, 0, 1, MAX_INTERMEDIATE, &c->intermediate) ||
        get_int(j, r, "vocab_size", 1, 0, 1, MAX_VOCAB, &c->vocab) ||
        get_int(j, r, "max_position_embeddings", 0, qwen ? 32768 : 2048, 1, INT_MAX, &c->max_pos) ||
        get_float(j, r, "rms_norm_eps", 1e-6f, &c->rms_eps) ||
        get_bool(j, r, "tie_word_embeddings", 0, &c->tie_embeddings))
        return -1;
    const cJSON *hd = cJSON_GetObjectItemCaseSensitive(r, "head_dim");
    if (hd && !cJSON_IsNull(hd)) {
        if (get_int(j, r, "head_dim", 1, 0, 2, MAX_HEAD_DIM, &c->head_dim)) return -1;
    } else {
        if (c->hidden % c->n_heads)
            return err_set(ERR_INPUT, "%s: hidden_size %d is not a multiple of num_attention_heads %d and there is "
                           "no head_dim; add \"head_dim\"", j->path, c->hidden, c->n_heads);
        c->head_dim = c->hidden / c->n_heads;
    }
    if (c->head_dim < 2 || c->head_dim > MAX_HEAD_DIM)
        return err_set(ERR_INPUT, "%s: head_dim (hidden_size %d / num_attention_heads %d = %d) must be from 2 to %d; "
                       "fix config.json", j->path, c->hidden, c->n_heads, c->head_dim, MAX_HEAD_DIM);
    if (c->head_dim % 2)
        return err_set(ERR_INPUT, "%s: head_dim %d is odd; RoPE rotates pairs, so it must be even", j->path, c->head_dim);
    if (qwen) {
        /* HF Qwen2 always has q/k/v biases (and none on o_proj); the key is not consulted */
        c->attention_bias = 1;
        int sliding;
        if (get_bool(j, r, "use_sliding_window", 0, &sliding)) return -1;
        if (sliding)
            return err_set(ERR_INPUT, "%s: use_sliding_window is true; smelt implements full attention only (set it "
                           "false if the model was trained without it)", j->path);
    } else {
        int bias, mlp_bias;
        if (get_bool(j, r, "attention_bias", 0, &bias) || get_bool(j, r, "mlp_bias", 0, &mlp_bias)) return -1;
        if (bias || mlp_bias)
            return err_set(ERR_INPUT, "%s: %s is true; smelt's llama has no biases on o_proj or the MLP (only "
                           "qwen2's q/k/v biases are supported)", j->path, bias ? "attention_bias" : "mlp_bias");
        c->attention_bias = 0;
    }
    if (get_token_ids(j, "bos_token_id", qwen ? -1 : 1, &c->bos_id, NULL, NULL) ||
        get_token_ids(j, "eos_token_id", qwen ? -1 : 2, &c->eos_id, c->eos_ids, &c->n_eos))
        return -1;
    if (!cJSON_GetObjectItemCaseSensitive(r, "eos_token_id") && c->eos_id >= 0) {
        c->eos_ids[0] = c->eos_id;
        c->n_eos = 1;
    }
    const cJSON *types = cJSON_GetObjectItemCaseSensitive(r, "layer_types");
    for (const cJSON *e = cJSON_IsArray(types) ? types->child : NULL; e; e = e->next)
        if (!cJSON_IsString(e) || strcmp(e->valuestring, "full_attention"))
            return bad(j, "layer_types", e, "\"full_attention\" for every layer (smelt has no sliding-window attention)");
    if (parse_rope(j, c) || parse_layers(j, c)) return -1;
    if (config_validate(c)) return err_prefix("%s: ", j->path);
    return 0;
}

static int parse_text(model_config *cfg, const char *json, size_t len, const char *path, int quantized_ok) {
    memset(cfg, 0, sizeof *cfg);
    cfg->bos_id = cfg->eos_id = -1;
    if (!path) path = "config.json";
    cJSON *root = cJSON_ParseWithLength(json, len);
    if (!root || !cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return err_set(ERR_INPUT, "%s is not a JSON object; expected a Hugging Face config.json", path);
    }
    jctx j = {root, path, quantized_ok};
    int rc = parse_root(&j, cfg);
    cJSON_Delete(root);
    return rc;
}

int hfconfig_parse(model_config *cfg, const char *json, size_t len, const char *path) {
    return parse_text(cfg, json, len, path, 0);
}

static int load_file(model_config *cfg, const char *path, int quantized_ok) {
    char *text = NULL;
    size_t len = 0;
    if (fs_read_file(path, CONFIG_MAX_BYTES, &text, &len)) return -1;
    int rc = parse_text(cfg, text, len, path, quantized_ok);
    free(text);
    return rc;
}

int hfconfig_load(model_config *cfg, const char *path) { return load_file(cfg, path, 0); }
int hfconfig_load_quantized(model_config *cfg, const char *path) { return load_file(cfg, path, 1); }

/* ---- writing ---- */

int config_is_uniform(const model_config *c) {
    for (int l = 0; l < c->n_layers; l++) {
        const layer_config *lc = &c->layers[l];
        if (lc->n_heads != c->n_heads || lc->n_kv_heads != c->n_kv_heads || lc->intermediate != c->intermediate)
            return 0;
    }
    return 1;
}

void config_fill_uniform(model_config *c) {
    for (int l = 0; l < c->n_layers && l < MODEL_MAX_LAYERS; l++)
        c->layers[l] = (layer_config){c->n_heads, c->n_kv_heads, c->intermediate};
}

/* The shortest decimal that reads back as the same float (1e-05, not 9.99999975e-06); whole
 * numbers as "10000.0". Always with a '.' or an exponent, so that Python reads a float. */
static int put_float(strbuf *sb, float v) {
    char buf[48];
    if (v == floorf(v) && fabsf(v) < 1e15f) return sb_printf(sb, "%.1f", (double)v);
    for (int prec = 1; prec <= 9; prec++) {
        snprintf(buf, sizeof buf, "%.*g", prec, (double)v);
        if (strtof(buf, NULL) == v) break;
    }
    if (!strpbrk(buf, ".e")) return sb_printf(sb, "%s.0", buf);
    return sb_puts(sb, buf);
}

static int put_ids(strbuf *sb, const char *key, int id, const int *ids, int n) {
    int rc = sb_printf(sb, ",\n  \"%s\": ", key);
    if (n > 1) {
        rc |= sb_putc(sb, '[');
        for (int i = 0; i < n; i++) rc |= sb_printf(sb, "%s%d", i ? ", " : "", ids[i]);
        return rc | sb_putc(sb, ']');
    }
    return id >= 0 ? rc | sb_printf(sb, "%d", id) : rc | sb_puts(sb, "null");
}

int hfconfig_to_json(strbuf *out, const model_config *cfg, const char *torch_dtype) {
    if (config_validate(cfg)) return err_prefix("writing config.json: ");
    /* the top-level keys hold layer 0's sizes (the standard keys are uniform ones) */
    model_config copy = *cfg;
    const model_config *c = &copy;
    copy.n_heads = copy.layers[0].n_heads;
    copy.n_kv_heads = copy.layers[0].n_kv_heads;
    copy.intermediate = copy.layers[0].intermediate;
    const int qwen = !strcmp(c->model_type, "qwen2");
    const layer_config *l0 = &c->layers[0];
    int rc = sb_printf(out, "{\n  \"architectures\": [\"%s\"],\n  \"model_type\": \"%s\"",
                       qwen ? "Qwen2ForCausalLM" : "LlamaForCausalLM", c->model_type);
    rc |= sb_printf(out, ",\n  \"hidden_size\": %d,\n  \"intermediate_size\": %d,\n  \"num_hidden_layers\": %d", c->hidden,
                    l0->intermediate, c->n_layers);
    rc |= sb_printf(out, ",\n  \"num_attention_heads\": %d,\n  \"num_key_value_heads\": %d,\n  \"head_dim\": %d",
                    l0->n_heads, l0->n_kv_heads, c->head_dim);
    rc |= sb_printf(out, ",\n  \"vocab_size\": %d,\n  \"hidden_act\": \"silu\",\n  \"max_position_embeddings\": %d",
                    c->vocab, c->max_pos);
    rc |= sb_puts(out, ",\n  \"rms_norm_eps\": ");
    rc |= put_float(out, c->rms_eps);
    rc |= sb_puts(out, ",\n  \"rope_theta\": ");
    rc |= put_float(out, c->rope_theta);
    if (c->rope_scaling == ROPE_SCALING_LLAMA3) {
        rc |= sb_puts(out, ",\n  \"rope_scaling\": {\"rope_type\": \"llama3\", \"factor\": ");
        rc |= put_float(out, c->rope_factor);
        rc |= sb_puts(out, ", \"low_freq_factor\": ");
        rc |= put_float(out, c->rope_low_freq_factor);
        rc |= sb_puts(out, ", \"high_freq_factor\": ");
        rc |= put_float(out, c->rope_high_freq_factor);
        rc |= sb_printf(out, ", \"original_max_position_embeddings\": %d}", c->rope_original_max_pos);
    } else {
        rc |= sb_puts(out, ",\n  \"rope_scaling\": null");
    }
    rc |= sb_printf(out, ",\n  \"tie_word_embeddings\": %s", c->tie_embeddings ? "true" : "false");
    if (qwen) rc |= sb_puts(out, ",\n  \"use_sliding_window\": false");
    else rc |= sb_puts(out, ",\n  \"attention_bias\": false,\n  \"mlp_bias\": false");
    rc |= put_ids(out, "bos_token_id", c->bos_id, NULL, 0);
    rc |= put_ids(out, "eos_token_id", c->eos_id, c->eos_ids, c->n_eos);
    if (torch_dtype) rc |= sb_printf(out, ",\n  \"torch_dtype\": \"%s\"", torch_dtype);
    rc |= sb_puts(out, ",\n  \"use_cache\": true");
    if (!config_is_uniform(c)) {
        rc |= sb_puts(out, ",\n  \"smelt_layers\": [");
        for (int l = 0; l < c->n_layers; l++) {
            const layer_config *lc = &c->layers[l];
            rc |= sb_printf(out, "%s\n    {\"num_attention_heads\": %d, \"num_key_value_heads\": %d, "
                            "\"intermediate_size\": %d}", l ? "," : "", lc->n_heads, lc->n_kv_heads, lc->intermediate);
        }
        rc |= sb_puts(out, "\n  ]");
    }
    rc |= sb_puts(out, "\n}\n");
    return rc ? -1 : 0;
}

int hfconfig_save(const char *path, const model_config *cfg, const char *torch_dtype) {
    strbuf sb = STRBUF_INIT;
    int rc = hfconfig_to_json(&sb, cfg, torch_dtype);
    if (!rc) rc = fs_write_atomic(path, sb.buf, sb.len);
    sb_free(&sb);
    return rc;
}

int hfconfig_save_generation(const char *path, const model_config *c) {
    strbuf sb = STRBUF_INIT;
    int rc = sb_puts(&sb, "{\n  \"_from_model_config\": true");
    if (c->bos_id >= 0) rc |= put_ids(&sb, "bos_token_id", c->bos_id, NULL, 0);
    if (c->eos_id >= 0) rc |= put_ids(&sb, "eos_token_id", c->eos_id, c->eos_ids, c->n_eos);
    rc |= sb_puts(&sb, "\n}\n");
    if (!rc) rc = fs_write_atomic(path, sb.buf, sb.len);
    sb_free(&sb);
    return rc;
}
