/* qckpt_gguf.c: quantized models as GGUF files (llama.cpp), through the GGUF writer and reader of
 * model/gguf_*.h. A quantized linear goes into the ggml block type its qweight is, exactly:
 *
 *   Q8_0  8-bit symmetric, groups of 32:        {fp16 d = scale, int8 q = code - 128}     w = d * q
 *   Q4_0  4-bit symmetric, groups of 32:        {fp16 d = scale, nibbles = code}          w = d * (q - 8)
 *   Q4_1  4-bit with float minimums (mins), or with zero points whose -scale * zero is an fp16
 *         number, groups of 32:                  {fp16 d = scale, fp16 m = min, nibbles}  w = d * q + m
 *
 * (a 32-weight block's nibbles: byte i holds weight i low and weight i + 16 high). Anything else is
 * refused with the reason: other bits or group sizes, act order, quantized activations (a GGUF
 * holds weights; llama.cpp quantizes activations its own way), FP8. fp32 tensors (embeddings,
 * norms, linears left fp32) are written F32, so the file holds exactly the weights smelt
 * evaluated. A quantized lm_head of a tied model becomes its own output.weight beside an F32
 * token_embd (a GGUF ties by leaving output.weight out, which would make the embedding quantized):
 * the file then reads back untied, with the same weights.
 *
 * Reading: every linear stored as Q8_0, Q4_0 or Q4_1 comes back as that qweight (bit for bit what
 * was written; a tied file's quantized token_embd also becomes the quantized lm_head), the rest
 * dequantized to fp32 by gguf_model.c. Llama q/k rows are permuted as gguf_export.c does.
 * smelt's writer marks its files with smelt.quantized = true: model_load reads those quantized,
 * other GGUF files dense (the quantize stage reads llama.cpp's files as its fp32 input). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "common/fsutil.h"
#include "model/checkpoint.h"
#include "model/gguf_export.h"
#include "model/gguf_model.h"
#include "model/qckpt_internal.h"

#define QG 32 /* weights per block */

static int f16_exact(float x) { return st_f16_to_f32(st_f32_to_f16(x)) == x; }

/* The block type of w, or -1 with ERR_INPUT naming mod and what would fit. */
static int block_type(const qweight *w, const char *mod, ggml_type *t) {
    if (w->type != QW_INT)
        return err_set(ERR_INPUT, "%s: FP8 weights have no GGUF block type smelt writes (Q8_0, Q4_0, Q4_1); use format "
                       "compressed-tensors", mod);
    if (w->act != QA_NONE)
        return err_set(ERR_INPUT, "%s: a GGUF file holds weights only (llama.cpp quantizes activations its own way); "
                       "quantize with activations: none for format gguf, or use compressed-tensors", mod);
    if (w->group_size != QG || w->n_in % QG)
        return err_set(ERR_INPUT, "%s: groups of %d inputs; GGUF's Q8_0, Q4_0 and Q4_1 blocks are groups of 32 (choose "
                       "group_size 32)", mod, w->group_size);
    if (w->g_idx)
        return err_set(ERR_INPUT, "%s: act-order column groups (g_idx) have no GGUF form; quantize with static groups",
                       mod);
    if (w->bits == 8 && !w->zeros && !w->mins) *t = GGML_Q8_0;
    else if (w->bits == 4 && !w->zeros && !w->mins) *t = GGML_Q4_0;
    else if (w->bits == 4) *t = GGML_Q4_1;
    else
        return err_set(ERR_INPUT, "%s: %d-bit %s weights; GGUF holds 8-bit symmetric (Q8_0), 4-bit symmetric (Q4_0) and "
                       "4-bit asymmetric (Q4_1) groups of 32", mod, w->bits, w->zeros || w->mins ? "asymmetric" : "symmetric");
    const int ng = w->n_in / QG;
    for (int r = 0; r < w->n_out; r++)
        for (int g = 0; g < ng; g++) {
            const float s = w->scales[(size_t)r * ng + g];
            const float m = w->mins ? w->mins[(size_t)r * ng + g] : -s * (float)qweight_zero(w, r, g);
            if (!f16_exact(s) || (*t == GGML_Q4_1 && !f16_exact(m)))
                return err_set(ERR_INPUT, "%s: row %d, group %d: the %s (%.9g) is not an fp16 number, and GGUF stores "
                               "fp16 %s; round the scales to fp16 before choosing the codes (qcheckpoint_round_scales)%s",
                               mod, r, g, f16_exact(s) ? (w->mins ? "minimum" : "minimum -scale*zero") : "scale",
                               f16_exact(s) ? m : s, f16_exact(s) ? "minimums" : "scales",
                               f16_exact(s) ? ", and give Q4_1 float minimums (qweight_alloc_mins) rather than zero "
                                              "points whose scale*zero is not one"
                                            : "");
        }
    return 0;
}

int qckpt_gguf_check(const model_config *cfg, const model_quant *q) {
    if (config_validate(cfg)) return -1;
    if (q->n_layers != cfg->n_layers)
        return err_set(ERR_INPUT, "quantized linears for %d layers, but the config has %d", q->n_layers, cfg->n_layers);
    for (int i = 0; i <= cfg->n_layers * QLIN_N; i++) {
        const int head = i == cfg->n_layers * QLIN_N, l = head ? 0 : i / QLIN_N, k = head ? QLIN_N : i % QLIN_N;
        const qweight *w = head ? &q->lm_head : &q->lin[l][k];
        if (!qweight_is_set(w)) continue;
        char mod[96];
        qlin_module_name(mod, sizeof mod, l, k);
        int n_out, n_in;
        qlin_shape(cfg, l, k, &n_out, &n_in);
        ggml_type t;
        if (w->n_out != n_out || w->n_in != n_in)
            return err_set(ERR_INPUT, "%s: the quantized weight is [%d, %d] but the config implies [%d, %d]", mod,
                           w->n_out, w->n_in, n_out, n_in);
        if (block_type(w, mod, &t) || qckpt_check_codes(w, mod, "the weights to save", ERR_INPUT)) return -1;
    }
    return 0;
}

int qckpt_gguf_linear_bytes(size_t *bytes, const qweight *w) {
    ggml_type t;
    if (block_type(w, "the linear", &t)) return -1;
    *bytes = (size_t)w->n_out * (size_t)(w->n_in / QG) * ggml_type_size(t);
    return 0;
}

/* The HF row that goes to file row r of a q/k projection of `heads` heads (llama): the writer's
 * permutation (gguf_export.c) applied to the row indices; inverse 1 gives the reader's. perm [rows]. */
static int qk_rows(int *perm, int heads, int head_dim, int inverse) {
    const int rows = heads * head_dim;
    float *idx = malloc(sizeof(float) * (size_t)rows);
    if (!idx) return err_set(ERR_NOMEM, "cannot allocate a row permutation");
    for (int r = 0; r < rows; r++) idx[r] = (float)r;
    const int rc = rope_rows_to_hf(idx, heads, head_dim, 1, !inverse);
    for (int r = 0; !rc && r < rows; r++) perm[r] = (int)idx[r];
    free(idx);
    return rc;
}

/* The blocks of w, file row r being w's row rows[r] (rows NULL: the same order). */
static void *blocks_of(const qweight *w, ggml_type t, const int *rows, size_t *n_bytes) {
    const int ng = w->n_in / QG;
    const size_t bs = ggml_type_size(t);
    *n_bytes = (size_t)w->n_out * ng * bs;
    uint8_t *out = malloc(*n_bytes);
    if (!out) {
        err_set(ERR_NOMEM, "cannot allocate %zu bytes of GGUF blocks", *n_bytes);
        return NULL;
    }
    for (int fr = 0; fr < w->n_out; fr++) {
        const int r = rows ? rows[fr] : fr;
        for (int g = 0; g < ng; g++) {
            uint8_t *b = out + ((size_t)fr * ng + g) * bs;
            const uint8_t *c = w->codes + (size_t)r * w->n_in + (size_t)g * QG;
            const float s = w->scales[(size_t)r * ng + g];
            const uint16_t d = st_f32_to_f16(s);
            b[0] = (uint8_t)d, b[1] = (uint8_t)(d >> 8);
            if (t == GGML_Q8_0) {
                for (int j = 0; j < QG; j++) b[2 + j] = (uint8_t)(int8_t)((int)c[j] - 128);
                continue;
            }
            uint8_t *qs = b + 2;
            if (t == GGML_Q4_1) {
                const float m = w->mins ? w->mins[(size_t)r * ng + g] : -s * (float)qweight_zero(w, r, g);
                const uint16_t mh = st_f32_to_f16(m);
                b[2] = (uint8_t)mh, b[3] = (uint8_t)(mh >> 8);
                qs = b + 4;
            }
            for (int j = 0; j < 16; j++) qs[j] = (uint8_t)(c[j] | c[j + 16] << 4);
        }
    }
    return out;
}

/* The quantized linear of HF tensor `name` in q (and its layer, kind), or NULL. */
static const qweight *linear_of(const model_config *cfg, const model_quant *q, const char *name, int *layer, int *kind) {
    char mod[96];
    for (int l = 0; l < cfg->n_layers; l++)
        for (int k = 0; k < QLIN_N; k++) {
            qlin_module_name(mod, sizeof mod, l, k);
            const size_t ml = strlen(mod);
            if (!strncmp(name, mod, ml) && !strcmp(name + ml, ".weight")) {
                *layer = l, *kind = k;
                return qweight_is_set(&q->lin[l][k]) ? &q->lin[l][k] : NULL;
            }
        }
    *layer = 0, *kind = QLIN_N;
    return !strcmp(name, "lm_head.weight") && qweight_is_set(&q->lm_head) ? &q->lm_head : NULL;
}

/* Adds a quantized linear as blocks (q/k rows of llama permuted); the blocks are kept in *owned. */
static int add_linear(gguf_writer *gw, const model_config *cfg, const qweight *w, int l, int k, const char *gname,
                      void **owned) {
    ggml_type t;
    int *rows = NULL, rc = -1;
    char mod[96];
    qlin_module_name(mod, sizeof mod, l, k);
    if (block_type(w, mod, &t)) return -1;
    if ((k == QLIN_Q || k == QLIN_K) && gguf_qk_permuted(cfg->model_type)) {
        rows = malloc(sizeof(int) * (size_t)w->n_out);
        const int heads = k == QLIN_Q ? cfg->layers[l].n_heads : cfg->layers[l].n_kv_heads;
        if (!rows || qk_rows(rows, heads, cfg->head_dim, 0)) goto out;
    }
    size_t n_bytes;
    *owned = blocks_of(w, t, rows, &n_bytes);
    const int64_t ne[2] = {w->n_in, w->n_out};
    rc = *owned && gguf_add_tensor_raw(gw, gname, 2, ne, t, *owned, n_bytes) == 0 ? 0 : -1;
out:
    free(rows);
    return rc;
}

/* general.file_type: the type of most quantized weights (F32 when none). */
static ggml_type main_type(const model_config *cfg, const model_quant *q) {
    size_t count[GGML_N_TYPES] = {0};
    ggml_type best = GGML_F32;
    for (int i = 0; i <= cfg->n_layers * QLIN_N; i++) {
        const qweight *w = i == cfg->n_layers * QLIN_N ? &q->lm_head : &q->lin[i / QLIN_N][i % QLIN_N];
        ggml_type t;
        if (!qweight_is_set(w) || block_type(w, "?", &t)) continue;
        count[t] += (size_t)w->n_out * w->n_in;
        if (count[t] > count[best] || best == GGML_F32) best = t;
    }
    err_clear();
    return best;
}

struct save_ctx {
    const model_config *cfg;
    const model_quant *q;
};

static int skip_quantized(void *ctx, const char *name) {
    const struct save_ctx *sc = ctx;
    int l, k;
    return linear_of(sc->cfg, sc->q, name, &l, &k) != NULL;
}

int qcheckpoint_save_gguf(const char *path, const model_config *cfg, const model_weights *w, const model_quant *q,
                          const tokenizer *tok, const char *name) {
    gguf_writer *gw = gguf_writer_new();
    const int n = weights_tensors(w, cfg, NULL, 0);
    weights_tensor *wt = xcalloc((size_t)n, sizeof *wt);
    void **owned = xcalloc((size_t)n + 1, sizeof *owned);
    float *fp32_copies = NULL;
    int rc = -1, n_owned = 0;
    if (!gw || !wt || !owned || qckpt_gguf_check(cfg, q)) goto out; /* before any work */
    weights_tensors(w, cfg, wt, n);
    struct save_ctx sc = {cfg, q};
    if (gguf_export_metadata(gw, cfg, tok, main_type(cfg, q), name) || gguf_set_bool(gw, "smelt.quantized", 1) ||
        gguf_export_weights_except(gw, cfg, w, GGML_F32, &fp32_copies, skip_quantized, &sc))
        goto out;
    for (int i = 0; i < n; i++) {
        int l, k;
        const qweight *qw = linear_of(cfg, q, wt[i].name, &l, &k);
        char gname[96];
        if (!qw) continue;
        if (gguf_tensor_name(gname, sizeof gname, wt[i].name) || add_linear(gw, cfg, qw, l, k, gname, &owned[n_owned++]))
            goto out;
    }
    /* tied: the quantized head as output.weight of its own (the file reads back untied) */
    if (cfg->tie_embeddings && qweight_is_set(&q->lm_head) &&
        add_linear(gw, cfg, &q->lm_head, 0, QLIN_N, "output.weight", &owned[n_owned++]))
        goto out;
    rc = gguf_writer_write(gw, path);
out:
    for (int i = 0; i < n_owned; i++) free(owned[i]);
    free(owned), free(wt), free(fp32_copies);
    gguf_writer_free(gw);
    return rc ? err_prefix("writing GGUF %s: ", path) : 0;
}

/* ---- reading ---- */

static int is_linear_name(const char *name) {
    if (!strcmp(name, "lm_head.weight")) return 1;
    for (int k = 0; k < QLIN_N; k++) {
        char suffix[64];
        snprintf(suffix, sizeof suffix, ".%s.weight", qlin_module[k]);
        const size_t n = strlen(name), m = strlen(suffix);
        if (!strncmp(name, "model.layers.", 13) && n > m && !strcmp(name + n - m, suffix)) return 1;
    }
    return 0;
}

/* The file's tensor of HF tensor `name` when its type is one smelt runs quantized. */
static const gguf_tensor *block_tensor(const gguf_file *f, const char *name) {
    char g[96];
    if (gguf_tensor_name(g, sizeof g, name)) return NULL;
    const gguf_tensor *t = gguf_find_tensor(f, g);
    return t && (t->type == GGML_Q8_0 || t->type == GGML_Q4_0 || t->type == GGML_Q4_1) ? t : NULL;
}

static int skip_blocks(void *ctx, const char *name) { return is_linear_name(name) && block_tensor(ctx, name); }

/* w = the qweight of tensor t ([n_out, n_in] in HF order; HF row r is the file's row rows[r], or r). */
static int qweight_of_blocks(qweight *w, const gguf_tensor *t, int n_out, int n_in, const int *rows, const char *mod,
                             const char *path) {
    *w = (qweight){.type = QW_INT, .bits = t->type == GGML_Q8_0 ? 8 : 4, .act = QA_NONE, .n_out = n_out, .n_in = n_in,
                   .group_size = QG};
    if (qweight_alloc(w, 0, 0) || (t->type == GGML_Q4_1 && qweight_alloc_mins(w))) {
        qweight_free(w);
        return -1;
    }
    const int ng = n_in / QG;
    const size_t bs = ggml_type_size(t->type);
    for (int r = 0; r < n_out; r++) {
        const int fr = rows ? rows[r] : r;
        for (int g = 0; g < ng; g++) {
            const uint8_t *b = t->data + ((size_t)fr * ng + g) * bs;
            uint8_t *c = w->codes + (size_t)r * n_in + (size_t)g * QG;
            w->scales[(size_t)r * ng + g] = st_f16_to_f32((uint16_t)(b[0] | b[1] << 8));
            if (t->type == GGML_Q8_0) {
                for (int j = 0; j < QG; j++) c[j] = (uint8_t)((int)(int8_t)b[2 + j] + 128);
                continue;
            }
            const uint8_t *qs = b + 2;
            if (t->type == GGML_Q4_1) {
                w->mins[(size_t)r * ng + g] = st_f16_to_f32((uint16_t)(b[2] | b[3] << 8));
                qs = b + 4;
            }
            for (int j = 0; j < 16; j++) c[j] = qs[j] & 15, c[j + 16] = qs[j] >> 4;
        }
    }
    if (qckpt_check_codes(w, mod, path, ERR_CORRUPT)) {
        qweight_free(w);
        return -1;
    }
    return 0;
}

int qcheckpoint_load_gguf(const char *path, model_config *cfg, model_weights *w, model_quant **q) {
    gguf_file f;
    *q = NULL;
    memset(w, 0, sizeof *w);
    if (gguf_open(&f, path)) return -1;
    model_quant *mq = NULL;
    int *rows = NULL, rc = -1, n_set = 0;
    if (gguf_model_load_file_except(&f, cfg, w, skip_blocks, &f) || !(mq = model_quant_new(cfg->n_layers))) goto out;
    for (int i = 0; i <= cfg->n_layers * QLIN_N; i++) {
        const int head = i == cfg->n_layers * QLIN_N, l = head ? 0 : i / QLIN_N, k = head ? QLIN_N : i % QLIN_N;
        char mod[96], name[128];
        qlin_module_name(mod, sizeof mod, l, k);
        snprintf(name, sizeof name, "%s.weight", mod);
        /* a tied head is token_embd itself: quantized when that is */
        const gguf_tensor *t = block_tensor(&f, head && cfg->tie_embeddings ? "model.embed_tokens.weight" : name);
        if (!t) continue;
        int n_out, n_in;
        qlin_shape(cfg, l, k, &n_out, &n_in);
        free(rows);
        rows = NULL;
        if ((k == QLIN_Q || k == QLIN_K) && gguf_qk_permuted(cfg->model_type)) {
            rows = malloc(sizeof(int) * (size_t)n_out);
            if (!rows || qk_rows(rows, k == QLIN_Q ? cfg->layers[l].n_heads : cfg->layers[l].n_kv_heads, cfg->head_dim, 1))
                goto out;
        }
        if (qweight_of_blocks(model_quant_at(mq, l, k), t, n_out, n_in, rows, mod, path)) goto out;
        n_set++;
    }
    rc = 0;
out:
    free(rows);
    gguf_close(&f);
    if (rc) {
        model_quant_free(mq);
        weights_free(w);
        return err_prefix("reading %s: ", path);
    }
    if (n_set) *q = mq;
    else model_quant_free(mq);
    return 0;
}

int qcheckpoint_gguf_marked(const char *path) {
    gguf_file f;
    if (gguf_open(&f, path)) return -1;
    int v = 0;
    const int r = gguf_get_bool(&f, "smelt.quantized", &v);
    gguf_close(&f);
    return r < 0 ? -1 : r == 0 && v;
}
