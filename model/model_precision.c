/* model_precision.c: the precision of a model's products and the linear descriptors that carry
 * it (see model_set_precision in model.h): fp32; mixed bf16 (bf16 products over the fp32
 * weights, for training); or bf16 storage (bf16 copies of the linear weights and the LM head in the
 * packed layout of the bf16 products, for inference). */
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "model/model.h"
#include "model/qmodel.h"

/* A descriptor over w [n_out, n_in]: its bf16 copy in *pw (packed now) when the model keeps
 * copies, else fp32 with mixed-precision products when asked. A failed packing leaves the fp32
 * descriptor (same results up to bf16 rounding; the error is cleared). */
static linear bind(const float *w, const float *b, int n_out, int n_in, gemm_bf16_b *pw, int mixed) {
    if (pw) {
        if (!gemm_bf16_pack_b(pw, w, n_in, 1, n_out, n_in)) return linear_bf16(pw, b);
        err_clear();
    }
    linear l = linear_f32(w, b, n_out, n_in);
    l.bf16_compute = mixed;
    return l;
}

void model_bind_linears(model *m) {
    const model_config *c = &m->cfg;
    const int H = c->hidden, D = c->head_dim, mixed = m->precision == MODEL_BF16;
    gemm_bf16_b *pw = m->w_bf16;
    for (int l = 0; l < c->n_layers; l++) {
        const layer_config *lc = &c->layers[l];
        const layer_weights *lw = &m->w.layers[l];
        const int q = lc->n_heads * D, kv = lc->n_kv_heads * D, I = lc->intermediate;
        m->lin[l].qkv = bind(lw->wq, c->attention_bias ? lw->bq : NULL, q + 2 * kv, H, pw ? pw++ : NULL, mixed);
        m->lin[l].o = bind(lw->wo, NULL, H, q, pw ? pw++ : NULL, mixed);
        m->lin[l].gate_up = bind(lw->w_gate, NULL, 2 * I, H, pw ? pw++ : NULL, mixed);
        m->lin[l].down = bind(lw->w_down, NULL, H, I, pw ? pw++ : NULL, mixed);
    }
    m->lm_head = bind(m->w.lm_head, NULL, c->vocab, H, pw, mixed);
    model_quant_bind(m);
}

static void free_copies(model *m) {
    for (int i = 0; i < m->n_bf16; i++) gemm_bf16_b_free(&m->w_bf16[i]);
    free(m->w_bf16);
    m->w_bf16 = NULL;
    m->n_bf16 = 0;
}

int model_set_precision(model *m, model_precision p, int bf16_weights) {
    if (p == MODEL_BF16 && !bf16_available()) p = MODEL_FP32;
    free_copies(m);
    m->precision = p;
    if (p == MODEL_BF16 && bf16_weights) {
        const int n = 4 * m->cfg.n_layers + 1;
        m->w_bf16 = xcalloc((size_t)n, sizeof *m->w_bf16);
        if (!m->w_bf16) {
            m->precision = MODEL_FP32;
            model_bind_linears(m);
            return err_prefix("bf16 copies of the weights: ");
        }
        m->n_bf16 = n;
    }
    model_bind_linears(m);
    if (m->w_bf16 && m->lm_head.format != LINEAR_BF16) { /* a packing failed: no half-bf16 model */
        free_copies(m);
        m->precision = MODEL_FP32;
        model_bind_linears(m);
        return err_set(ERR_NOMEM, "cannot allocate the bf16 copies of the weights (%zu parameters)",
                       model_n_params(&m->cfg));
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
