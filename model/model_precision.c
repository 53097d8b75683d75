/* model_precision.c: the precision of a model's products and the linear descriptors that carry
 * it (see model_set_precision in model.h): fp32; mixed bf16 (bf16 products over the fp32
 * weights, for training); or bf16 storage (bf16 copies of the linear weights and the LM head,
 * for inference). */
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "model/model.h"
#include "model/qmodel.h"

/* bf16 values of the copies: every layer's q|k|v, o, gate|up, down, and the LM head. */
static size_t bf16_count(const model_config *c) {
    const size_t H = (size_t)c->hidden, D = (size_t)c->head_dim;
    size_t n = (size_t)c->vocab * H;
    for (int l = 0; l < c->n_layers; l++) {
        const layer_config *lc = &c->layers[l];
        const size_t q = lc->n_heads * D, kv = lc->n_kv_heads * D, I = (size_t)lc->intermediate;
        n += (q + 2 * kv) * H + H * q + 2 * I * H + H * I;
    }
    return n;
}

/* A descriptor over w [n_out, n_in]: its bf16 copy at *h (converted now, *h advanced) when the
 * model keeps copies, else fp32 with mixed-precision products when asked. */
static linear bind(const float *w, const float *b, int n_out, int n_in, bf16 **h, int mixed) {
    if (*h) {
        const size_t n = (size_t)n_out * n_in;
        bf16_from_f32_n(*h, w, n);
        linear l = linear_bf16(*h, b, n_out, n_in);
        *h += n;
        return l;
    }
    linear l = linear_f32(w, b, n_out, n_in);
    l.bf16_compute = mixed;
    return l;
}

void model_bind_linears(model *m) {
    const model_config *c = &m->cfg;
    const int H = c->hidden, D = c->head_dim, mixed = m->precision == MODEL_BF16;
    bf16 *h = m->w_bf16;
    for (int l = 0; l < c->n_layers; l++) {
        const layer_config *lc = &c->layers[l];
        const layer_weights *lw = &m->w.layers[l];
        const int q = lc->n_heads * D, kv = lc->n_kv_heads * D, I = lc->intermediate;
        m->lin[l].qkv = bind(lw->wq, c->attention_bias ? lw->bq : NULL, q + 2 * kv, H, &h, mixed);
        m->lin[l].o = bind(lw->wo, NULL, H, q, &h, mixed);
        m->lin[l].gate_up = bind(lw->w_gate, NULL, 2 * I, H, &h, mixed);
        m->lin[l].down = bind(lw->w_down, NULL, H, I, &h, mixed);
    }
    m->lm_head = bind(m->w.lm_head, NULL, c->vocab, H, &h, mixed);
    if (m->lm_packed.panels) { /* the packed head follows the weights (without it the head packs per call) */
        gemm_bf16_b_free(&m->lm_packed);
        if (gemm_bf16_pack_w(&m->lm_packed, (const bf16 *)m->lm_head.q, H, c->vocab, H)) err_clear();
    }
    model_quant_bind(m);
}

int model_set_precision(model *m, model_precision p, int bf16_weights) {
    if (p == MODEL_BF16 && !bf16_available()) p = MODEL_FP32;
    gemm_bf16_b_free(&m->lm_packed);
    free(m->w_bf16);
    m->w_bf16 = NULL;
    m->n_bf16 = 0;
    m->precision = p;
    if (p == MODEL_BF16 && bf16_weights) {
        const size_t n = bf16_count(&m->cfg);
        m->w_bf16 = malloc(sizeof(bf16) * n);
        if (!m->w_bf16) {
            m->precision = MODEL_FP32;
            model_bind_linears(m);
            return err_set(ERR_NOMEM, "cannot allocate %.1f MiB for the bf16 copies of the weights", n * 2.0 / 1048576.0);
        }
        m->n_bf16 = n;
    }
    model_bind_linears(m);
    /* the LM head runs over chunks of rows (teachers, long outputs): pack it once */
    if (m->w_bf16 && gemm_bf16_pack_w(&m->lm_packed, (const bf16 *)m->lm_head.q, m->cfg.hidden, m->cfg.vocab,
                                      m->cfg.hidden)) {
        model_set_precision(m, MODEL_FP32, 0);
        return -1;
    }
    return (int)p;
}

const char *model_precision_name(model_precision p) { return p == MODEL_BF16 ? "bf16" : "fp32"; }

int model_precision_parse(const char *s, model_precision *p) {
    if (!strcmp(s, "fp32")) *p = MODEL_FP32;
    else if (!strcmp(s, "bf16")) *p = MODEL_BF16;
    else return err_set(ERR_INPUT, "precision '%s' is not known; use fp32 or bf16", s);
    return 0;
}
