/* qmodel.c: quantized linears attached to a model (see qmodel.h). */
#include "model/qmodel.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"

const char *const qlin_module[QLIN_N] = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
                                         "mlp.gate_proj",    "mlp.up_proj",      "mlp.down_proj"};
const char *const qlin_short[QLIN_N] = {"q", "k", "v", "o", "gate", "up", "down"};

/* The fused descriptors: which linears each stacks, in row order. */
static const struct { int first, n; } fused[4] = {{QLIN_Q, 3}, {QLIN_O, 1}, {QLIN_GATE, 2}, {QLIN_DOWN, 1}};

model_quant *model_quant_new(int n_layers) {
    if (n_layers < 1 || n_layers > MODEL_MAX_LAYERS) {
        err_set(ERR_INPUT, "a quantized model of %d layers; 1 to %d are supported", n_layers, MODEL_MAX_LAYERS);
        return NULL;
    }
    model_quant *q = xcalloc(1, sizeof *q);
    if (q) q->n_layers = n_layers;
    return q;
}

void model_quant_free(model_quant *q) {
    if (!q) return;
    for (int l = 0; l < q->n_layers; l++) {
        for (int k = 0; k < QLIN_N; k++) qweight_free(&q->lin[l][k]);
        for (int d = 0; d < 4; d++) qlinear_free(q->bound[l][d]);
    }
    qweight_free(&q->lm_head);
    qlinear_free(q->bound_head);
    free(q);
}

qweight *model_quant_at(model_quant *q, int layer, int k) { return k == QLIN_N ? &q->lm_head : &q->lin[layer][k]; }

void qlin_module_name(char *buf, size_t n, int layer, int k) {
    if (k == QLIN_N) snprintf(buf, n, "lm_head");
    else snprintf(buf, n, "model.layers.%d.%s", layer, qlin_module[k]);
}

void qlin_shape(const model_config *cfg, int layer, int k, int *n_out, int *n_in) {
    const int H = cfg->hidden;
    if (k == QLIN_N) {
        *n_out = cfg->vocab, *n_in = H;
        return;
    }
    const layer_config *lc = &cfg->layers[layer];
    const int Q = lc->n_heads * cfg->head_dim, KV = lc->n_kv_heads * cfg->head_dim, I = lc->intermediate;
    switch ((qlin_kind)k) {
    case QLIN_Q: *n_out = Q, *n_in = H; break;
    case QLIN_K:
    case QLIN_V: *n_out = KV, *n_in = H; break;
    case QLIN_O: *n_out = H, *n_in = Q; break;
    case QLIN_GATE:
    case QLIN_UP: *n_out = I, *n_in = H; break;
    default: *n_out = H, *n_in = I; break;
    }
}

static int check_shape(const model_config *cfg, const qweight *w, int layer, int k) {
    int n_out, n_in;
    qlin_shape(cfg, layer, k, &n_out, &n_in);
    if (w->n_out != n_out || w->n_in != n_in) {
        if (k == QLIN_N)
            return err_set(ERR_INPUT, "the quantized lm_head is [%d, %d] but the config implies [%d, %d]", w->n_out,
                           w->n_in, n_out, n_in);
        return err_set(ERR_INPUT, "layer %d %s: the quantized weight is [%d, %d] but the config implies [%d, %d]", layer,
                       qlin_module[k], w->n_out, w->n_in, n_out, n_in);
    }
    return 0;
}

/* Builds the payloads of layer l into out[4] (NULL where fp32). 0 or -1 (out freed). */
static int build_layer(qlinear *out[4], const model_quant *q, const model_config *cfg, int l) {
    memset(out, 0, 4 * sizeof *out);
    for (int d = 0; d < 4; d++) {
        const qweight *parts[3];
        int n_set = 0;
        for (int i = 0; i < fused[d].n && fused[d].first + i < QLIN_N; i++) {
            const qweight *w = &q->lin[l][fused[d].first + i];
            parts[i] = w;
            if (qweight_is_set(w)) {
                if (check_shape(cfg, w, l, fused[d].first + i)) goto fail;
                n_set++;
            }
        }
        if (!n_set) continue;
        if (n_set != fused[d].n) {
            err_set(ERR_INPUT, "layer %d: %s is quantized but %s is not; the fused projection (%s) needs all of its "
                    "parts quantized alike, or none", l, qlin_module[fused[d].first + (qweight_is_set(parts[0]) ? 0 : 1)],
                    qlin_module[fused[d].first + (qweight_is_set(parts[0]) ? (qweight_is_set(parts[1]) ? 2 : 1) : 0)],
                    d == 0 ? "q/k/v" : "gate/up");
            goto fail;
        }
        if (qlinear_build(&out[d], parts, fused[d].n)) {
            err_prefix("layer %d %s: ", l, fused[d].n > 1 ? (d == 0 ? "q/k/v" : "gate/up") : qlin_module[fused[d].first]);
            goto fail;
        }
    }
    return 0;
fail:
    for (int d = 0; d < 4; d++) qlinear_free(out[d]), out[d] = NULL;
    return -1;
}

void model_quant_bind(model *m) {
    model_quant *q = m->quant;
    if (!q) return;
    for (int l = 0; l < m->cfg.n_layers; l++) {
        const layer_weights *lw = &m->w.layers[l];
        if (q->bound[l][0]) m->lin[l].qkv = linear_qlinear(q->bound[l][0], m->cfg.attention_bias ? lw->bq : NULL);
        if (q->bound[l][1]) m->lin[l].o = linear_qlinear(q->bound[l][1], NULL);
        if (q->bound[l][2]) m->lin[l].gate_up = linear_qlinear(q->bound[l][2], NULL);
        if (q->bound[l][3]) m->lin[l].down = linear_qlinear(q->bound[l][3], NULL);
    }
    if (q->bound_head) m->lm_head = linear_qlinear(q->bound_head, NULL);
}

int model_attach_quant(model *m, model_quant *q) {
    if (m->quant) return err_set(ERR_INPUT, "the model already has quantized linears attached");
    if (q->n_layers != m->cfg.n_layers)
        return err_set(ERR_INPUT, "quantized linears for %d layers, but the model has %d", q->n_layers, m->cfg.n_layers);
    int l = 0;
    for (; l < q->n_layers; l++)
        if (build_layer(q->bound[l], q, &m->cfg, l)) break;
    qlinear *head = NULL;
    if (l == q->n_layers && qweight_is_set(&q->lm_head)) {
        const qweight *hp = &q->lm_head;
        if (check_shape(&m->cfg, hp, 0, QLIN_N) || qlinear_build(&head, &hp, 1)) l = -1;
    }
    if (l != q->n_layers) {
        for (int i = 0; i < q->n_layers; i++)
            for (int d = 0; d < 4; d++) qlinear_free(q->bound[i][d]), q->bound[i][d] = NULL;
        return -1;
    }
    q->bound_head = head;
    m->quant = q;
    model_bind_linears(m);
    return 0;
}

int model_quant_rebind_layer(model *m, int l) {
    model_quant *q = m->quant;
    if (!q || l < 0 || l >= m->cfg.n_layers)
        return err_set(ERR_INPUT, "model_quant_rebind_layer: no quantized linears attached, or layer %d out of range", l);
    qlinear *fresh[4];
    if (build_layer(fresh, q, &m->cfg, l)) return -1;
    for (int d = 0; d < 4; d++) {
        qlinear_free(q->bound[l][d]);
        q->bound[l][d] = fresh[d];
    }
    model_bind_linears(m); /* fp32 descriptors first (a part may have gone back to fp32), then these */
    return 0;
}

int model_is_quantized(const model *m) {
    const model_quant *q = m->quant;
    if (!q) return 0;
    if (q->bound_head) return 1;
    for (int l = 0; l < q->n_layers; l++)
        for (int d = 0; d < 4; d++)
            if (q->bound[l][d]) return 1;
    return 0;
}

size_t model_weight_bytes(const model *m) {
    size_t floats = m->w.n_floats, packed = 0;
    const model_quant *q = m->quant;
    for (int l = 0; q && l <= q->n_layers; l++)
        for (int k = 0; k < (l == q->n_layers ? 1 : QLIN_N); k++) {
            const qweight *w = l == q->n_layers ? &q->lm_head : &q->lin[l][k];
            if (!qweight_is_set(w)) continue;
            packed += qweight_packed_bytes(w);
            /* a quantized tied head does not remove the embedding it is tied to */
            if (!(l == q->n_layers && m->cfg.tie_embeddings)) floats -= (size_t)w->n_out * w->n_in;
        }
    return floats * sizeof(float) + packed;
}

void qweight_describe(char *buf, size_t n, const qweight *w) {
    char grp[32];
    if (w->type == QW_FP8 && w->n_scales == 1) snprintf(grp, sizeof grp, "per tensor");
    else if (w->group_size == w->n_in) snprintf(grp, sizeof grp, "per channel");
    else snprintf(grp, sizeof grp, "group %d", w->group_size);
    const char *act = w->act == QA_INT8 ? "int8 activations per token"
                      : w->act == QA_FP8 ? "fp8 activations per token"
                      : w->act == QA_FP8_TENSOR ? "fp8 activations per tensor"
                                                : "fp32 activations";
    if (w->type == QW_FP8) snprintf(buf, n, "fp8 e4m3 %s, %s", grp, act);
    else snprintf(buf, n, "int%d %s%s %s, %s", w->bits, grp, w->g_idx ? " act order" : "",
                  w->mins ? "with minimums" : w->zeros ? "asymmetric" : "symmetric", act);
}

int model_quant_summary(strbuf *out, const model_quant *q) {
    enum { MAX_KINDS = 8 };
    char kinds[MAX_KINDS][96];
    int count[MAX_KINDS] = {0}, n_kinds = 0, n_fp32 = 0, head_fp32 = 0, rc = 0;
    for (int l = 0; l <= q->n_layers; l++)
        for (int k = 0; k < (l == q->n_layers ? 1 : QLIN_N); k++) {
            const qweight *w = l == q->n_layers ? &q->lm_head : &q->lin[l][k];
            if (!qweight_is_set(w)) {
                if (l == q->n_layers) head_fp32 = 1;
                else n_fp32++;
                continue;
            }
            char d[96];
            qweight_describe(d, sizeof d, w);
            int i = 0;
            while (i < n_kinds && strcmp(kinds[i], d)) i++;
            if (i == n_kinds && n_kinds < MAX_KINDS) snprintf(kinds[n_kinds++], sizeof kinds[0], "%s", d);
            if (i < MAX_KINDS) count[i]++;
        }
    for (int i = 0; i < n_kinds; i++) rc |= sb_printf(out, "%s%d %s", i ? "; " : "", count[i], kinds[i]);
    if (n_fp32 || head_fp32)
        rc |= sb_printf(out, "%s%d fp32%s", n_kinds ? "; " : "", n_fp32 + head_fp32,
                        head_fp32 ? (n_fp32 ? " (lm_head and layer linears)" : " (lm_head)") : "");
    return rc ? -1 : 0;
}
