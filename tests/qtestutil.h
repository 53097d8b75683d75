/* qtestutil.h: what the quantized-model tests share: round-to-nearest quantization of a model's
 * linears exactly as ALGORITHMS.md section 4 defines it (the tests' independent way to make
 * qweights; the quantize stage has its own), and a scheme table. */
#ifndef SMELT_TESTS_QTESTUTIL_H
#define SMELT_TESTS_QTESTUTIL_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "kernels/qweight.h"
#include "model/qcheckpoint.h"
#include "model/weights.h"
#include "model/qmodel.h"

typedef struct {
    const char *name;
    qckpt_format format;
    qw_type type;
    int bits;
    qa_type act;
    int group;      /* -1: per output channel */
    int asym;
    int per_tensor; /* FP8 */
    int head;       /* quantize lm_head too (untied models) */
    int act_order;  /* integer groups taken in a permuted column order (GPTQ act order: g_idx) */
} qt_scheme;

/* The act-order column groups of the tests: column (i * 5) % n_in is the i-th column taken, groups of
 * G consecutive taken columns (5 is coprime with every input size of the fixture models). */
static inline int qt_act_order(qweight *q) {
    int32_t *g = malloc(sizeof(int32_t) * (size_t)q->n_in);
    if (!g) return -1;
    for (int i = 0; i < q->n_in; i++) g[(size_t)i * 5 % q->n_in] = i / q->group_size;
    const int rc = qweight_set_g_idx(q, g);
    free(g);
    return rc;
}

/* RTN of w [n_out, n_in] into q (allocated here). Integer grids: symmetric s = 2 max|w| / (2^b - 1),
 * z = 2^(b-1); asymmetric s = (max(0, max w) - min(0, min w)) / (2^b - 1), z = round(-min / s);
 * q = clamp(round(w / s) + z, 0, 2^b - 1). FP8: s = max|w| / 448, code = e4m3(w / s) (|w / s| <= 448
 * up to rounding: clamp first). A zero group gets scale 1. Scales are rounded to what the format
 * stores (qcheckpoint_scale_dtype) before the codes are chosen. */
static inline int qt_rtn(qweight *q, const float *w, int n_out, int n_in, const qt_scheme *s) {
    *q = (qweight){.type = s->type, .bits = s->type == QW_FP8 ? 8 : s->bits, .act = s->act, .n_out = n_out,
                   .n_in = n_in, .group_size = s->group < 0 ? n_in : s->group};
    /* GGUF's asymmetric blocks (Q4_1) hold a float minimum, not a zero point: ggml's rule below */
    const int mins = s->format == QCKPT_GGUF && s->asym;
    if (qweight_alloc(q, s->asym && !mins, s->per_tensor) || (mins && qweight_alloc_mins(q))) return -1;
    if (s->act_order && q->group_size < n_in && qt_act_order(q)) return -1;
    const int G = q->group_size, ng = n_in / G, top = (1 << q->bits) - 1;
    int *cols = malloc(sizeof(int) * (size_t)n_in); /* the columns of each group, groups in order */
    if (!cols) return -1;
    for (int g = 0, k = 0; g < ng; g++)
        for (int j = 0; j < n_in; j++)
            if (qweight_group(q, j) == g) cols[k++] = j;
    float tmax = 0;
    for (size_t i = 0; i < (size_t)n_out * n_in; i++) tmax = fmaxf(tmax, fabsf(w[i]));
    for (int r = 0; r < n_out; r++)
        for (int g = 0; g < ng; g++) {
            const float *wr = w + (size_t)r * n_in;
            const int *gc = cols + (size_t)g * G; /* x[j] = wr[gc[j]]: the group's weights */
#define x(j) wr[gc[j]]
            float mx = 0, mn = 0, am = 0;
            for (int j = 0; j < G; j++) mx = fmaxf(mx, x(j)), mn = fminf(mn, x(j)), am = fmaxf(am, fabsf(x(j)));
            const size_t si = s->per_tensor ? 0 : (size_t)r * ng + g;
            float sc;
            if (q->type == QW_FP8) sc = (s->per_tensor ? tmax : am) / 448.0f;
            else if (mins) { /* ggml Q4_1: d = (max - min) / 15, m = min, q = round((w - m) / d) (fp16 d, m) */
                float lo = x(0), hi = x(0);
                for (int j = 1; j < G; j++) lo = fminf(lo, x(j)), hi = fmaxf(hi, x(j));
                sc = (hi - lo) / (float)top;
                if (!(sc > 0)) sc = 1.0f;
                sc = st_f16_to_f32(st_f32_to_f16(sc));
                const float m = st_f16_to_f32(st_f32_to_f16(lo));
                q->scales[(size_t)r * ng + g] = sc, q->mins[(size_t)r * ng + g] = m;
                for (int j = 0; j < G; j++) {
                    const int v = (int)nearbyintf((x(j) - m) / sc);
                    q->codes[(size_t)r * n_in + gc[j]] = (uint8_t)(v < 0 ? 0 : v > top ? top : v);
                }
                continue;
            } else sc = s->asym ? (mx - mn) / (float)top : 2.0f * am / (float)top;
            if (!(sc > 0)) sc = 1.0f;
            if (qcheckpoint_scale_dtype(s->format) == ST_F16) sc = st_f16_to_f32(st_f32_to_f16(sc));
            q->scales[si] = sc;
            int z = 1 << (q->bits - 1);
            if (q->zeros) {
                z = (int)nearbyintf(-mn / sc);
                z = z < 0 ? 0 : z > top ? top : z;
                q->zeros[(size_t)r * ng + g] = (uint8_t)z;
            }
            for (int j = 0; j < G; j++) {
                uint8_t *c = &q->codes[(size_t)r * n_in + gc[j]];
                if (q->type == QW_FP8) {
                    *c = fp8_e4m3_from_float(fminf(fmaxf(x(j) / sc, -448.0f), 448.0f));
                } else {
                    int v = (int)nearbyintf(x(j) / sc) + z;
                    *c = (uint8_t)(v < 0 ? 0 : v > top ? top : v);
                }
            }
#undef x
        }
    free(cols);
    return 0;
}

/* Synthetic models for the formats the tiny fixtures (hidden 16) cannot hold, such as GGUF's groups
 * of 32: "synth_llama" (hidden 64, 2 layers, 4 heads / 2 kv heads of 16, MLP 96, vocab 96, untied)
 * and "synth_llama_tied" (the same, tied). Weights from a fixed generator: linears uniform with
 * the variance of N(0, 1/fan_in), embeddings 0.5 scale, norms 1 + 0.1 u. 0 or -1. */
static inline int qt_synthetic(const char *name, model_config *cfg, model_weights *w) {
    memset(cfg, 0, sizeof *cfg);
    snprintf(cfg->model_type, sizeof cfg->model_type, "llama");
    cfg->hidden = 64, cfg->n_layers = 2, cfg->n_heads = 4, cfg->n_kv_heads = 2, cfg->head_dim = 16;
    cfg->intermediate = 96, cfg->vocab = 96, cfg->rms_eps = 1e-5f, cfg->rope_theta = 10000, cfg->max_pos = 128;
    cfg->bos_id = 1, cfg->eos_id = 2, cfg->n_eos = 1, cfg->eos_ids[0] = 2;
    cfg->tie_embeddings = !strcmp(name, "synth_llama_tied");
    if (!cfg->tie_embeddings && strcmp(name, "synth_llama"))
        return err_set(ERR_INPUT, "no synthetic model named '%s'", name);
    for (int l = 0; l < cfg->n_layers; l++) cfg->layers[l] = (layer_config){4, 2, 96};
    if (weights_alloc(w, cfg)) return -1;
    uint64_t st = 0x5EED5EEDull;
    weights_tensor t[64];
    const int n = weights_tensors(w, cfg, t, 64);
    for (int i = 0; i < n; i++) {
        const size_t len = (size_t)t[i].shape[0] * (t[i].ndim > 1 ? (size_t)t[i].shape[1] : 1);
        const int norm = t[i].ndim == 1, embed = strstr(t[i].name, "embed_tokens") != NULL;
        const double a = norm ? 0.1 : embed ? 0.5 * 1.7320508 : 1.7320508 / sqrt((double)t[i].shape[1]);
        for (size_t j = 0; j < len; j++) {
            st += 0x9E3779B97F4A7C15ull; /* splitmix64 */
            uint64_t z = st;
            z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull, z = (z ^ (z >> 27)) * 0x94D049BB133111EBull, z ^= z >> 31;
            const double u = 2.0 * (double)(z >> 11) / 9007199254740992.0 - 1.0; /* [-1, 1) */
            t[i].data[j] = (float)((norm ? 1.0 : 0.0) + a * u);
        }
    }
    return 0;
}

/* The fp32 weight of linear k of layer l (k == QLIN_N: lm_head). */
static inline const float *qt_dense(const model_weights *w, int l, int k) {
    const layer_weights *lw = &w->layers[l];
    switch (k) {
    case QLIN_Q: return lw->wq;
    case QLIN_K: return lw->wk;
    case QLIN_V: return lw->wv;
    case QLIN_O: return lw->wo;
    case QLIN_GATE: return lw->w_gate;
    case QLIN_UP: return lw->w_up;
    case QLIN_DOWN: return lw->w_down;
    default: return w->lm_head;
    }
}

/* A model_quant with every linear of every layer (and lm_head when s->head) quantized by RTN. */
static inline model_quant *qt_quantize_model(const model_config *cfg, const model_weights *w, const qt_scheme *s) {
    model_quant *q = model_quant_new(cfg->n_layers);
    if (!q) return NULL;
    for (int l = 0; l <= cfg->n_layers; l++)
        for (int k = 0; k < QLIN_N; k++) {
            const int head = l == cfg->n_layers;
            if (head && (k || !s->head)) break;
            int n_out, n_in;
            qlin_shape(cfg, head ? 0 : l, head ? QLIN_N : k, &n_out, &n_in);
            if (qt_rtn(model_quant_at(q, head ? 0 : l, head ? QLIN_N : k), qt_dense(w, head ? 0 : l, head ? QLIN_N : k),
                       n_out, n_in, s)) {
                model_quant_free(q);
                return NULL;
            }
        }
    return q;
}

/* Two qweights hold the same quantized weight, field for field and bit for bit. */
static inline int qt_qweight_equal(const qweight *a, const qweight *b, char *why, size_t n) {
    if (a->type != b->type || a->bits != b->bits || a->act != b->act || a->n_out != b->n_out || a->n_in != b->n_in ||
        a->group_size != b->group_size || a->n_scales != b->n_scales || !a->zeros != !b->zeros) {
        snprintf(why, n, "layout differs (type %d/%d bits %d/%d act %d/%d [%d,%d]/[%d,%d] group %d/%d scales %d/%d "
                 "zeros %d/%d)", a->type, b->type, a->bits, b->bits, a->act, b->act, a->n_out, a->n_in, b->n_out,
                 b->n_in, a->group_size, b->group_size, a->n_scales, b->n_scales, !!a->zeros, !!b->zeros);
        return 0;
    }
    const size_t nc = (size_t)a->n_out * a->n_in, ng = (size_t)a->n_out * (a->n_in / a->group_size);
    if (memcmp(a->codes, b->codes, nc)) return snprintf(why, n, "codes differ"), 0;
    if (memcmp(a->scales, b->scales, (size_t)a->n_scales * sizeof(float))) return snprintf(why, n, "scales differ"), 0;
    if (a->zeros && memcmp(a->zeros, b->zeros, ng)) return snprintf(why, n, "zero points differ"), 0;
    if (!a->mins != !b->mins || (a->mins && memcmp(a->mins, b->mins, sizeof(float) * ng)))
        return snprintf(why, n, "minimums differ"), 0;
    if (!a->g_idx != !b->g_idx || (a->g_idx && memcmp(a->g_idx, b->g_idx, sizeof(int32_t) * (size_t)a->n_in)))
        return snprintf(why, n, "column groups (g_idx) differ"), 0;
    return 1;
}

#endif
