/* qcheckpoint.c: saving and loading quantized checkpoints (see qcheckpoint.h): the checks every
 * format shares, the assembly of the safetensors file and config.json, and the loader that splits
 * a checkpoint into fp32 tensors (checkpoint.c) and quantized linears (the format's reader). */
#include "model/qcheckpoint.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "common/fsutil.h"
#include "model/checkpoint.h"
#include "model/hfconfig.h"
#include "model/qckpt_internal.h"

static const char *const format_names[] = {"none", "compressed-tensors", "gptq", "gguf"};

const char *qckpt_format_name(qckpt_format f) { return (unsigned)f <= QCKPT_GGUF ? format_names[f] : "?"; }

int qckpt_format_parse(const char *s, qckpt_format *f) {
    for (int i = QCKPT_COMPRESSED_TENSORS; i <= QCKPT_GGUF; i++)
        if (!strcmp(s, format_names[i])) {
            *f = (qckpt_format)i;
            return 0;
        }
    return err_set(ERR_INPUT, "unknown quantized checkpoint format '%s'; expected compressed-tensors, gptq or gguf", s);
}

static const qckpt_ops *ops_of(qckpt_format f) {
    return f == QCKPT_COMPRESSED_TENSORS ? &qckpt_ct_ops : f == QCKPT_GPTQ ? &qckpt_gptq_ops : NULL;
}

int qcheckpoint_check_scheme(qckpt_format f, qw_type type, int bits, qa_type act, int group_size, int asym,
                             int per_tensor, int n_in) {
    const char *name = qckpt_format_name(f);
    if (type != QW_INT && type != QW_FP8) return err_set(ERR_INPUT, "unknown quantized weight type %d", (int)type);
    if (type == QW_INT && (bits < 2 || bits > 8))
        return err_set(ERR_INPUT, "bits %d: integer quantization takes 2 to 8 bits", bits);
    if (group_size != -1 && (group_size < 1 || (n_in > 0 && n_in % group_size)))
        return err_set(ERR_INPUT, "group_size %d does not divide the input size %d; choose a divisor of it, or -1 for "
                       "one group per output channel", group_size, n_in);
    if (type == QW_FP8 && asym) return err_set(ERR_INPUT, "FP8 weights are symmetric (no zero point)");
    if (per_tensor && type != QW_FP8) return err_set(ERR_INPUT, "one scale per tensor is an FP8 layout");
    if ((type == QW_INT && (act == QA_FP8 || act == QA_FP8_TENSOR)) || (type == QW_FP8 && act == QA_INT8))
        return err_set(ERR_INPUT, "%s weights with %s activations: smelt runs integer weights with int8 or fp32 "
                       "activations and FP8 weights with FP8 or fp32 activations", type == QW_FP8 ? "FP8" : "integer",
                       act == QA_INT8 ? "int8" : "FP8");
    switch (f) {
    case QCKPT_COMPRESSED_TENSORS: return 0;
    case QCKPT_GPTQ:
        if (type != QW_INT) return err_set(ERR_INPUT, "format gptq holds integer weights only; write FP8 as compressed-tensors");
        if (act != QA_NONE)
            return err_set(ERR_INPUT, "format gptq has no activation quantization (W4A16-style); write W8A8 as "
                           "compressed-tensors");
        if (bits != 2 && bits != 4 && bits != 8)
            return err_set(ERR_INPUT, "format gptq packs 2, 4 or 8 bits per code into 32-bit words, not %d; choose 2, 4 "
                           "or 8 bits, or format compressed-tensors (any width from 2 to 8)", bits);
        return 0;
    case QCKPT_GGUF:
        if (type != QW_INT || act != QA_NONE || per_tensor || group_size != 32 || (bits != 8 && bits != 4) ||
            (bits == 8 && asym))
            return err_set(ERR_INPUT, "format gguf holds llama.cpp's Q8_0 (8 bits, symmetric), Q4_0 (4 bits, symmetric) "
                           "and Q4_1 (4 bits, asymmetric) blocks: integer weights in groups of 32 with fp32 activations "
                           "(llama.cpp quantizes activations itself), not %s%d-bit %s weights in groups of %d with %s "
                           "activations; choose one of those, or format compressed-tensors",
                           type == QW_FP8 ? "FP8 " : "", bits, asym ? "asymmetric" : "symmetric", group_size,
                           act == QA_NONE ? "fp32" : act == QA_INT8 ? "int8" : "FP8");
        return 0;
    default: return err_set(ERR_INPUT, "no quantized checkpoint format given (%s)", name);
    }
}

st_dtype qcheckpoint_scale_dtype(qckpt_format f) { return f == QCKPT_COMPRESSED_TENSORS ? ST_F32 : ST_F16; } /* GPTQ, GGUF */

void qcheckpoint_round_scales(qweight *w, qckpt_format f) {
    if (qcheckpoint_scale_dtype(f) != ST_F16) return;
    for (int i = 0; i < w->n_scales; i++) w->scales[i] = st_f16_to_f32(st_f32_to_f16(w->scales[i]));
}

/* ---- shared helpers of the formats ---- */

int qckpt_add(qckpt_out *o, const char *name, st_dtype raw_dtype, int ndim, int64_t d0, int64_t d1, void *raw,
              int borrow, const float *f32) {
    char *nm = xstrdup(name);
    int ok = nm != NULL;
    if (ok && o->n_owned + 2 > o->cap_owned) {
        int cap = o->cap_owned ? 2 * o->cap_owned : 64;
        void **p = xrealloc(o->owned, (size_t)cap * sizeof *p);
        if (p) o->owned = p, o->cap_owned = cap;
        ok = p != NULL;
    }
    if (ok && o->n == o->cap) {
        int cap = o->cap ? 2 * o->cap : 64;
        st_entry *p = xrealloc(o->e, (size_t)cap * sizeof *p);
        if (p) o->e = p, o->cap = cap;
        ok = p != NULL;
    }
    if (!ok) {
        free(nm);
        if (!borrow) free(raw);
        return -1;
    }
    o->owned[o->n_owned++] = nm;
    if (raw && !borrow) o->owned[o->n_owned++] = raw;
    st_entry *e = &o->e[o->n++];
    memset(e, 0, sizeof *e);
    e->name = nm, e->ndim = ndim, e->shape[0] = d0, e->shape[1] = d1;
    e->raw = raw, e->raw_dtype = raw_dtype, e->f32 = f32;
    return 0;
}

void qckpt_out_free(qckpt_out *o) {
    for (int i = 0; i < o->n_owned; i++) free(o->owned[i]);
    free(o->owned);
    free(o->e);
    memset(o, 0, sizeof *o);
}

void qckpt_pack_bits(uint32_t *words, const uint8_t *vals, size_t n, size_t stride, int bits) {
    memset(words, 0, (n * (size_t)bits + 31) / 32 * sizeof *words);
    for (size_t i = 0; i < n; i++) {
        const size_t bit = i * (size_t)bits, w = bit / 32, sh = bit % 32;
        const uint32_t v = vals[i * stride];
        words[w] |= v << sh;
        if (sh + (size_t)bits > 32) words[w + 1] |= v >> (32 - sh);
    }
}

void qckpt_unpack_bits(uint8_t *vals, size_t stride, const uint32_t *words, size_t n, int bits) {
    const uint32_t mask = (1u << bits) - 1;
    for (size_t i = 0; i < n; i++) {
        const size_t bit = i * (size_t)bits, w = bit / 32, sh = bit % 32;
        uint32_t v = words[w] >> sh;
        if (sh + (size_t)bits > 32) v |= words[w + 1] << (32 - sh);
        vals[i * stride] = (uint8_t)(v & mask);
    }
}

static const char *file_of(const st_set *s, const st_tensor *t) {
    int fi = 0;
    st_set_find(s, t->name, &fi);
    return s->files[fi].path;
}

int qckpt_read_ints(int64_t **out, const st_set *s, const st_tensor *t, const char *what) {
    const size_t n = (size_t)t->n_elems, sz = st_dtype_size(t->dtype);
    const uint8_t *p = t->data;
    if (t->dtype != ST_I8 && t->dtype != ST_U8 && t->dtype != ST_I16 && t->dtype != ST_I32 && t->dtype != ST_I64)
        return err_set(ERR_INPUT, "%s: tensor '%s' (%s) is %s; an integer tensor was expected", file_of(s, t), t->name,
                       what, st_dtype_name(t->dtype));
    int64_t *v = xmalloc((n ? n : 1) * sizeof *v);
    if (!v) return -1;
    for (size_t i = 0; i < n; i++) {
        int8_t a;
        int16_t b;
        int32_t c;
        switch (t->dtype) {
        case ST_I8: memcpy(&a, p + i, 1), v[i] = a; break;
        case ST_U8: v[i] = p[i]; break;
        case ST_I16: memcpy(&b, p + 2 * i, 2), v[i] = b; break;
        case ST_I32: memcpy(&c, p + 4 * i, 4), v[i] = c; break;
        default: memcpy(&v[i], p + sz * i, 8); break;
        }
    }
    *out = v;
    return 0;
}

int qckpt_read_floats(float **out, const st_set *s, const st_tensor *t, const char *what) {
    if (t->dtype != ST_F32 && t->dtype != ST_F16 && t->dtype != ST_BF16)
        return err_set(ERR_INPUT, "%s: tensor '%s' (%s) is %s; F32, F16 or BF16 was expected", file_of(s, t), t->name,
                       what, st_dtype_name(t->dtype));
    float *v = xmalloc(((size_t)t->n_elems ? (size_t)t->n_elems : 1) * sizeof *v);
    if (!v || st_to_f32(v, t, file_of(s, t))) {
        free(v);
        return -1;
    }
    *out = v;
    return 0;
}

const st_tensor *qckpt_tensor(const st_set *s, const char *module, const char *param, int ndim, int64_t d0, int64_t d1,
                              int required) {
    char name[160];
    snprintf(name, sizeof name, "%s.%s", module, param);
    const st_tensor *t = st_set_find(s, name, NULL);
    if (!t) {
        if (required) err_set(ERR_INPUT, "%s: tensor '%s' is missing; the quantized checkpoint is incomplete", s->dir, name);
        return NULL;
    }
    int same = t->ndim == ndim && t->shape[0] == d0 && (ndim == 1 || t->shape[1] == d1);
    if (!same) {
        err_set(ERR_INPUT, "%s: tensor '%s' has %d dimension(s) [%lld%s%lld], expected [%lld%s%lld] from config.json and "
                "the quantization_config", file_of(s, t), name, t->ndim, (long long)t->shape[0], t->ndim > 1 ? ", " : "",
                t->ndim > 1 ? (long long)t->shape[1] : 0LL, (long long)d0, ndim > 1 ? ", " : "",
                ndim > 1 ? (long long)d1 : 0LL);
        return NULL;
    }
    return t;
}

int qckpt_check_codes(const qweight *w, const char *module, const char *file, err_kind kind) {
    const size_t n = (size_t)w->n_out * w->n_in, ng = (size_t)w->n_out * (w->n_in / w->group_size);
    const int top = w->type == QW_INT ? (1 << w->bits) - 1 : 255;
    for (size_t i = 0; i < n; i++) {
        if (w->type == QW_FP8 && (w->codes[i] & 0x7F) == 0x7F)
            return err_set(kind, "%s: %s holds a NaN FP8 weight (row %zu, column %zu)", file, module,
                           i / (size_t)w->n_in, i % (size_t)w->n_in);
        if (w->codes[i] > top)
            return err_set(kind, "%s: %s holds a code %d outside the %d-bit grid (row %zu, column %zu)", file,
                           module, w->codes[i], w->bits, i / (size_t)w->n_in, i % (size_t)w->n_in);
    }
    for (size_t i = 0; w->zeros && i < ng; i++)
        if (w->zeros[i] > top)
            return err_set(kind, "%s: %s has a zero point %d outside the %d-bit grid", file, module, w->zeros[i],
                           w->bits);
    for (int i = 0; i < w->n_scales; i++)
        if (!isfinite(w->scales[i]))
            return err_set(kind, "%s: %s has a scale that is not finite (%g)", file, module, w->scales[i]);
    for (size_t i = 0; w->mins && i < ng; i++)
        if (!isfinite(w->mins[i]))
            return err_set(kind, "%s: %s has a minimum that is not finite (%g)", file, module, w->mins[i]);
    return 0;
}

/* ---- saving ---- */

static const qweight *set_at(const model_quant *q, int l, int k) {
    const qweight *w = k == QLIN_N ? &q->lm_head : &q->lin[l][k];
    return qweight_is_set(w) ? w : NULL;
}

/* The rules of format f for one quantized linear that need no model config (mod names it). */
static int check_fits(const qweight *w, qckpt_format f, const char *mod) {
    if (qcheckpoint_check_scheme(f, w->type, w->bits, w->act, w->group_size == w->n_in ? -1 : w->group_size,
                                 w->zeros != NULL, w->n_scales == 1 && w->type == QW_FP8, w->n_in))
        return err_prefix("%s: ", mod);
    if (w->mins && f != QCKPT_GGUF)
        return err_set(ERR_INPUT, "%s: float minimums (w = scale * q + min) are GGUF's Q4_1 layout; use format gguf, or "
                       "zero points for %s", mod, qckpt_format_name(f));
    if (w->g_idx && f != QCKPT_GPTQ)
        return err_set(ERR_INPUT, "%s: act-order column groups (g_idx) are a GPTQ layout (compressed-tensors 0.20 "
                       "dropped its \"actorder\": \"group\"); use format gptq, or quantize with static groups", mod);
    if (f == QCKPT_GPTQ && (w->n_out % (32 / w->bits) || w->n_in % (32 / w->bits)))
        return err_set(ERR_INPUT, "%s: format gptq packs %d codes per 32-bit word along both dimensions, which must "
                       "divide [%d, %d]; use format compressed-tensors", mod, 32 / w->bits, w->n_out, w->n_in);
    return 0;
}

/* One quantized linear against the config and the format. */
static int check_linear(const model_config *cfg, const qweight *w, int l, int k, qckpt_format f) {
    char mod[96];
    qlin_module_name(mod, sizeof mod, l, k);
    int n_out, n_in;
    qlin_shape(cfg, l, k, &n_out, &n_in);
    if (w->n_out != n_out || w->n_in != n_in)
        return err_set(ERR_INPUT, "%s: the quantized weight is [%d, %d] but the config implies [%d, %d]", mod, w->n_out,
                       w->n_in, n_out, n_in);
    if (check_fits(w, f, mod)) return -1;
    if (qckpt_check_codes(w, mod, "the weights to save", ERR_INPUT)) return err_prefix("%s: ", mod);
    for (int i = 0; qcheckpoint_scale_dtype(f) == ST_F16 && i < w->n_scales; i++)
        if (st_f16_to_f32(st_f32_to_f16(w->scales[i])) != w->scales[i])
            return err_set(ERR_INPUT, "%s: scale %d (%.9g) is not an fp16 number, and format %s stores fp16 scales; "
                           "round the scales with qcheckpoint_round_scales before choosing the codes", mod, i,
                           w->scales[i], qckpt_format_name(f));
    return 0;
}

/* Everything a writer relies on, before anything is written. */
static int check_save(const model_config *cfg, const model_quant *q, qckpt_format f, st_dtype dtype) {
    if (!ops_of(f)) return qcheckpoint_check_scheme(f, QW_INT, 4, QA_NONE, -1, 0, 0, 0);
    if (dtype != ST_F32 && dtype != ST_BF16 && dtype != ST_F16)
        return err_set(ERR_INPUT, "cannot write the fp32 tensors as %s; choose F32, BF16 or F16", st_dtype_name(dtype));
    if (config_validate(cfg)) return -1;
    if (q->n_layers != cfg->n_layers)
        return err_set(ERR_INPUT, "quantized linears for %d layers, but the config has %d", q->n_layers, cfg->n_layers);
    if (cfg->tie_embeddings && set_at(q, 0, QLIN_N))
        return err_set(ERR_INPUT, "lm_head is quantized but tied to the embedding (tie_word_embeddings); keep lm_head in "
                       "full precision (ignore: [lm_head]) or untie it first");
    for (int l = 0; l < cfg->n_layers; l++)
        for (int k = 0; k < QLIN_N; k++)
            if (set_at(q, l, k) && check_linear(cfg, set_at(q, l, k), l, k, f)) return -1;
    if (set_at(q, 0, QLIN_N) && check_linear(cfg, set_at(q, 0, QLIN_N), 0, QLIN_N, f)) return -1;
    return ops_of(f)->check ? ops_of(f)->check(cfg, q) : 0;
}

int qcheckpoint_linear_bytes(size_t *bytes, const qweight *w, qckpt_format f) {
    *bytes = 0;
    if (f == QCKPT_GGUF) return qckpt_gguf_linear_bytes(bytes, w);
    const qckpt_ops *ops = ops_of(f);
    if (!ops) return qcheckpoint_check_scheme(f, QW_INT, 4, QA_NONE, -1, 0, 0, 0);
    if (check_fits(w, f, "the linear")) return -1;
    /* the writer's own tensors of the linear, assembled and counted, never written */
    qckpt_out out = {0};
    int rc = ops->write_linear(&out, "m", w);
    for (int i = 0; !rc && i < out.n; i++) {
        const st_entry *e = &out.e[i];
        *bytes += st_dtype_size(e->raw_dtype) * (size_t)e->shape[0] * (size_t)(e->ndim == 2 ? e->shape[1] : 1);
    }
    qckpt_out_free(&out);
    return rc;
}

/* config.json: the model's config with "quantization_config" added as the last key. */
static int save_config(const char *path, const model_config *cfg, const model_quant *q, const qckpt_ops *ops,
                       st_dtype dtype) {
    strbuf sb = STRBUF_INIT;
    const char *tdt = dtype == ST_F32 ? "float32" : dtype == ST_BF16 ? "bfloat16" : "float16";
    int rc = hfconfig_to_json(&sb, cfg, tdt);
    if (!rc && (sb.len < 3 || strcmp(sb.buf + sb.len - 3, "\n}\n")))
        rc = err_set(ERR_INTERNAL, "hfconfig_to_json no longer ends its object with a newline and '}'");
    if (!rc) {
        sb.len -= 3;
        sb.buf[sb.len] = 0;
        rc = sb_puts(&sb, ",\n  \"quantization_config\": ");
        rc = rc || ops->config_json(&sb, cfg, q) || sb_puts(&sb, "\n}\n") ? -1 : 0;
    }
    if (!rc) rc = fs_write_atomic(path, sb.buf, sb.len);
    sb_free(&sb);
    return rc;
}

int qcheckpoint_save(const char *dir, const model_config *cfg, const model_weights *w, const model_quant *q,
                     qckpt_format f, st_dtype dtype) {
    if (f == QCKPT_GGUF) { /* one file: dir itself when it names one, else dir/model.gguf */
        if (qckpt_gguf_check(cfg, q)) return err_prefix("saving %s: ", dir);
        if (str_ends_with(dir, ".gguf")) return qcheckpoint_save_gguf(dir, cfg, w, q, NULL, NULL);
        char *path = fs_join(dir, "model.gguf");
        const int rc = !path || fs_mkdir_p(dir, 0755) ? -1 : qcheckpoint_save_gguf(path, cfg, w, q, NULL, NULL);
        free(path);
        return rc;
    }
    if (check_save(cfg, q, f, dtype)) return err_prefix("saving %s: ", dir);
    const qckpt_ops *ops = ops_of(f);
    int n = weights_tensors(w, cfg, NULL, 0);
    weights_tensor *wt = xcalloc((size_t)n, sizeof *wt);
    qckpt_out out = {0};
    char *st_path = fs_join(dir, "model.safetensors"), *cfg_path = fs_join(dir, "config.json");
    char *gen_path = fs_join(dir, "generation_config.json");
    int rc = -1;
    if (!wt || !st_path || !cfg_path || !gen_path || fs_mkdir_p(dir, 0755)) goto done;
    weights_tensors(w, cfg, wt, n);
    for (int i = 0; i < n; i++) {
        /* a quantized linear's weight is replaced by the format's tensors of that module */
        const qweight *qw = NULL;
        char mod[96] = "";
        for (int l = 0; !qw && l < cfg->n_layers; l++)
            for (int k = 0; !qw && k < QLIN_N; k++) {
                qlin_module_name(mod, sizeof mod, l, k);
                size_t ml = strlen(mod);
                if (!strncmp(wt[i].name, mod, ml) && !strcmp(wt[i].name + ml, ".weight")) qw = set_at(q, l, k);
            }
        if (!qw && !strcmp(wt[i].name, "lm_head.weight") && (qw = set_at(q, 0, QLIN_N))) snprintf(mod, sizeof mod, "lm_head");
        if (qw ? ops->write_linear(&out, mod, qw)
               : qckpt_add(&out, wt[i].name, ST_F32, wt[i].ndim, wt[i].shape[0], wt[i].shape[1], NULL, 1, wt[i].data))
            goto done;
    }
    static const char *const meta[] = {"format", "pt"};
    if (st_write(st_path, out.e, out.n, dtype, meta, 1) || hfconfig_save_generation(gen_path, cfg) ||
        save_config(cfg_path, cfg, q, ops, dtype))
        goto done;
    rc = 0;
done:
    if (rc) err_prefix("saving %s: ", dir);
    qckpt_out_free(&out);
    free(wt), free(st_path), free(cfg_path), free(gen_path);
    return rc;
}

/* ---- loading ---- */

/* The folder of an HF checkpoint path (a folder, or a file in it). */
static char *hf_dir(const char *path) {
    if (fs_is_dir(path)) return xstrdup(path);
    const char *slash = strrchr(path, '/');
    return slash ? xstrndup(path, (size_t)(slash - path)) : xstrdup(".");
}

/* Parses dir/config.json; *qc is its quantization_config (NULL when absent). 0 or -1. */
static int read_qconfig(const char *path, cJSON **root, const cJSON **qc) {
    *root = NULL, *qc = NULL;
    char *dir = hf_dir(path), *cfg = dir ? fs_join(dir, "config.json") : NULL, *text = NULL;
    size_t len = 0;
    int rc = -1;
    if (!cfg) goto done;
    if (!fs_exists(cfg)) { /* not an HF checkpoint: nothing quantized to tell */
        rc = 0;
        goto done;
    }
    if (fs_read_file(cfg, 16u << 20, &text, &len)) goto done;
    *root = cJSON_ParseWithLength(text, len);
    if (!*root || !cJSON_IsObject(*root)) {
        err_set(ERR_INPUT, "%s is not a JSON object", cfg);
        goto done;
    }
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(*root, "quantization_config");
    if (v && !cJSON_IsNull(v) && !cJSON_IsObject(v)) {
        err_set(ERR_INPUT, "%s: \"quantization_config\" is not an object", cfg);
        goto done;
    }
    *qc = cJSON_IsObject(v) ? v : NULL;
    rc = 0;
done:
    if (rc) cJSON_Delete(*root), *root = NULL;
    free(dir), free(cfg), free(text);
    return rc;
}

int qcheckpoint_probe(const char *path, qckpt_format *f, char *desc, size_t desc_len) {
    cJSON *root;
    const cJSON *qc;
    if (f) *f = QCKPT_NONE;
    if (desc && desc_len) desc[0] = 0;
    if (read_qconfig(path, &root, &qc)) return -1;
    if (!qc) {
        cJSON_Delete(root);
        return 0;
    }
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(qc, "quant_method");
    const char *method = cJSON_IsString(m) ? m->valuestring : "(no quant_method)";
    const cJSON *fmt = cJSON_GetObjectItemCaseSensitive(qc, "format");
    if (f) *f = !strcmp(method, "compressed-tensors") ? QCKPT_COMPRESSED_TENSORS : !strcmp(method, "gptq") ? QCKPT_GPTQ : QCKPT_NONE;
    if (desc && desc_len)
        snprintf(desc, desc_len, "%s%s%s", method, cJSON_IsString(fmt) ? " " : "", cJSON_IsString(fmt) ? fmt->valuestring : "");
    cJSON_Delete(root);
    return 1;
}

typedef struct {
    const model_quant *q;
    const model_config *cfg;
    const char *const *params;
} skip_ctx;

/* The dense loader leaves to the format reader: the .weight of a quantized linear, and the format's
 * tensors of quantized linears. */
static int skip_quantized(void *ctx, const char *name) {
    const skip_ctx *c = ctx;
    const char *dot = strrchr(name, '.');
    if (!dot) return 0;
    char mod[128];
    snprintf(mod, sizeof mod, "%.*s", (int)(dot - name), name);
    const qweight *w = NULL;
    int l;
    if (!strcmp(mod, "lm_head")) w = set_at(c->q, 0, QLIN_N);
    else if (sscanf(mod, "model.layers.%d.", &l) == 1 && l >= 0 && l < c->q->n_layers)
        for (int k = 0; k < QLIN_N && !w; k++) {
            char want[96];
            qlin_module_name(want, sizeof want, l, k);
            if (!strcmp(mod, want)) w = set_at(c->q, l, k);
        }
    if (!w) return 0;
    if (!strcmp(dot + 1, "weight")) return 1;
    for (int i = 0; c->params[i]; i++)
        if (!strcmp(dot + 1, c->params[i])) return 1;
    return 0;
}

int qcheckpoint_load(const char *path, model_config *cfg, model_weights *w, model_quant **q) {
    memset(w, 0, sizeof *w);
    *q = NULL;
    cJSON *root = NULL;
    const cJSON *qc;
    char *dir = hf_dir(path), *cfg_path = dir ? fs_join(dir, "config.json") : NULL;
    st_set s;
    memset(&s, 0, sizeof s);
    model_quant *mq = NULL;
    int rc = -1;
    if (!cfg_path || read_qconfig(path, &root, &qc)) goto done;
    if (!qc) {
        err_set(ERR_INPUT, "%s has no quantization_config: it is not a quantized checkpoint", cfg_path);
        goto done;
    }
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(qc, "quant_method");
    const char *method = cJSON_IsString(m) ? m->valuestring : "";
    const qckpt_ops *ops = ops_of(!strcmp(method, "compressed-tensors") ? QCKPT_COMPRESSED_TENSORS
                                  : !strcmp(method, "gptq")              ? QCKPT_GPTQ
                                                                         : QCKPT_NONE);
    if (!ops) {
        err_set(ERR_INPUT, "%s: quant_method '%s' is not one smelt reads (compressed-tensors, gptq)", cfg_path, method);
        goto done;
    }
    if (hfconfig_load_quantized(cfg, cfg_path) || st_set_open(&s, path) || !(mq = model_quant_new(cfg->n_layers)))
        goto done;
    if (ops->read(mq, qc, &s, cfg)) goto done;
    skip_ctx sc = {.q = mq, .cfg = cfg, .params = ops->params};
    if (checkpoint_load_hf_except(path, cfg, w, skip_quantized, &sc)) goto done;
    *q = mq;
    mq = NULL;
    rc = 0;
done:
    if (rc) err_prefix("loading the quantized checkpoint %s: ", path);
    model_quant_free(mq);
    st_set_close(&s);
    cJSON_Delete(root);
    free(dir), free(cfg_path);
    return rc;
}
