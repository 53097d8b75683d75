/* test_quant_model.c: SmoothQuant on whole models (random models of tests/engine_testmodel.h: Qwen2 with
 * biases and a pruned layer, Llama tied with Llama 3 RoPE, Llama MHA; norms with outlier channels x30):
 * layer by layer, the per-channel maxima of |x| at the q/k/v and gate/up inputs (model/layerwise.h)
 * give s (alpha 0.8), folded into input_layernorm / post_attention_layernorm and the readers' columns.
 * The smoothed float model's logits equal the original's within float tolerance, the scales really
 * move (max s / min s > 10), and folding into the norms alone (a wrong fold) changes the logits.
 * Also: the fp32 forward on weights set to their int4 codes' values equals the quantized kernels'
 * forward (what lets the quantize stage advance weight-only layers with sgemm). */
#include "engine_testmodel.h"
#include "model/layerwise.h"
#include "model/qmodel.h"
#include "stages/quantize/quant.h"

enum { NT = 18, NSEQ = 3 };
static const int lens[NSEQ] = {7, 5, 6};

typedef struct {
    float *amax[MODEL_SITE_N];
} maxes;

static int tap(void *ctx, model_site site, const float *x, int n, int in) {
    maxes *m = ctx;
    for (int t = 0; t < n; t++)
        for (int j = 0; j < in; j++) m->amax[site][j] = fmaxf(m->amax[site][j], fabsf(x[(size_t)t * in + j]));
    return 0;
}

static void logits_of(model *m, const int *tok, float *logits) {
    model_batch b = {.tokens = tok, .seq_lens = lens, .n_tokens = NT, .n_seqs = NSEQ};
    float *h = tu_alloc((size_t)NT * m->cfg.hidden);
    if (model_forward_hidden(m, &b, h) || model_logits(m, logits, h, NT)) printf("FAIL forward: %s\n", err_msg());
    free(h);
}

/* Smooths every layer of m (weights too unless norms_only); returns max s / min s. */
static double smooth_model(model *m, const int *tok, int norms_only) {
    layerwise *lw;
    if (layerwise_open(&lw, m, tok, lens, NSEQ, 64)) return 0;
    double ratio = 1;
    for (int l = 0; l < m->cfg.n_layers; l++) {
        const model_config *c = &m->cfg;
        const int H = c->hidden, Q = c->layers[l].n_heads * c->head_dim, KV = c->layers[l].n_kv_heads * c->head_dim,
                  I = c->layers[l].intermediate;
        maxes mx = {{tu_alloc(H), NULL, tu_alloc(H), NULL}};
        model_tap t = {.sites = MODEL_SITE_BIT(MODEL_SITE_QKV) | MODEL_SITE_BIT(MODEL_SITE_GATE_UP), .fn = tap, .ctx = &mx};
        layer_weights *w = &m->w.layers[l];
        if (layerwise_capture(lw, &t)) printf("FAIL capture: %s\n", err_msg());
        float *s = tu_alloc(H);
        float *attn[3] = {w->wq, w->wk, w->wv}, *mlp[2] = {w->w_gate, w->w_up};
        int no_attn[3] = {Q, KV, KV}, no_mlp[2] = {I, I};
        for (int part = 0; part < 2; part++) {
            smooth_scales(s, mx.amax[part ? MODEL_SITE_GATE_UP : MODEL_SITE_QKV], (const float *const *)(part ? mlp : attn),
                          part ? no_mlp : no_attn, part ? 2 : 3, H, 0.8);
            float mn = s[0], mxs = s[0];
            for (int j = 0; j < H; j++) mn = fminf(mn, s[j]), mxs = fmaxf(mxs, s[j]);
            ratio = fmax(ratio, mxs / mn);
            smooth_apply(part ? w->mlp_norm : w->attn_norm, part ? mlp : attn, part ? no_mlp : no_attn,
                         norms_only ? 0 : part ? 2 : 3, H, NULL, s);
        }
        free(s), free(mx.amax[0]), free(mx.amax[2]);
        if (layerwise_advance(lw)) printf("FAIL advance: %s\n", err_msg());
    }
    layerwise_close(lw);
    return ratio;
}

/* The quantize stage's next-layer forward for weight-only schemes (stages/quantize/pass.c): with every
 * linear's fp32 weights set to exactly the values of its codes (RTN int4 per channel), the fp32 forward
 * gives the logits the quantized kernels give (model_attach_quant): the same products, summed in
 * another order. Bound: both forwards' own rounding, as for the smoothed model below. */
static void weight_only_forward(int kind, const int *tok) {
    model_config cfg = tm_config(kind);
    model m;
    model_quant *mq = model_quant_new(cfg.n_layers);
    if (!mq || model_init(&m, &cfg, NULL)) {
        printf("FAIL init: %s\n", err_msg());
        tu_failures++;
        return;
    }
    tm_randomize(&m, 300 + kind);
    for (int l = 0; l < cfg.n_layers; l++) {
        layer_weights *w = &m.w.layers[l];
        float *wk[QLIN_N] = {w->wq, w->wk, w->wv, w->wo, w->w_gate, w->w_up, w->w_down};
        for (int k = 0; k < QLIN_N; k++) {
            int no, ni;
            qlin_shape(&cfg, l, k, &no, &ni);
            const quant_grid g = {.bits = 4, .group_size = ni, .sym = 1};
            float *wh = tu_alloc((size_t)no * ni);
            if (quant_rtn(model_quant_at(mq, l, k), wh, wk[k], no, ni, &g)) printf("FAIL rtn: %s\n", err_msg()), tu_failures++;
            memcpy(wk[k], wh, sizeof(float) * (size_t)no * ni);
            free(wh);
        }
    }
    float *ref = tu_alloc((size_t)NT * cfg.vocab), *got = tu_alloc((size_t)NT * cfg.vocab);
    logits_of(&m, tok, ref); /* fp32 sgemm on w = w_hat */
    if (model_attach_quant(&m, mq)) printf("FAIL attach: %s\n", err_msg()), tu_failures++, model_quant_free(mq);
    tu_expect(model_is_quantized(&m), "kind %d: the quantized kernels are bound", kind);
    logits_of(&m, tok, got);
    const double tol = 4 * TU_EPS * (cfg.n_layers * (2.0 * cfg.hidden + 32 + cfg.intermediate + 7) + 2 * cfg.hidden);
    char what[96];
    snprintf(what, sizeof what, "model kind %d: fp32 forward on w_hat == int4 kernels' forward", kind);
    tu_expect_close(what, got, ref, (size_t)NT * cfg.vocab, tol);
    free(ref), free(got);
    model_free(&m);
}

int main(void) {
    tu_verbose = getenv("VERBOSE") != NULL;
    for (int kind = 0; kind < 3; kind++) {
        model_config cfg = tm_config(kind);
        model m, bad;
        if (model_init(&m, &cfg, NULL) || model_init(&bad, &cfg, NULL)) return 1;
        tm_randomize(&m, 100 + kind);
        for (int l = 0; l < cfg.n_layers; l++) /* outlier channels in the activations */
            m.w.layers[l].attn_norm[3] *= 30, m.w.layers[l].mlp_norm[cfg.hidden - 2] *= 30;
        memcpy(bad.w.mem, m.w.mem, sizeof(float) * m.w.n_floats);
        int tok[NT];
        tu_seed(7 + kind);
        for (int i = 0; i < NT; i++) tok[i] = (int)(tu_next() % (uint64_t)cfg.vocab);
        float *ref = tu_alloc((size_t)NT * cfg.vocab), *got = tu_alloc((size_t)NT * cfg.vocab);
        logits_of(&m, tok, ref);
        double ratio = smooth_model(&m, tok, 0);
        logits_of(&m, tok, got);
        /* Folding rounds each norm weight and each weight once more (2 eps relative each): as a
         * perturbation of the inputs it passes through every layer's reductions, like the forward's own
         * rounding; the bound of test_layerwise's stream (2 eps (L (2H + Q + I + T) + H)), doubled, and
         * the LM head's H terms. */
        const double tol = 4 * TU_EPS * (cfg.n_layers * (2.0 * cfg.hidden + 32 + cfg.intermediate + 7) + 2 * cfg.hidden);
        char what[96];
        snprintf(what, sizeof what, "model kind %d: smoothed logits == original (s spread %.0fx)", kind, ratio);
        tu_expect_close(what, got, ref, (size_t)NT * cfg.vocab, tol);
        tu_expect(ratio > 10, "kind %d: the scales move (max/min %.1f)", kind, ratio);
        smooth_model(&bad, tok, 1);
        logits_of(&bad, tok, got);
        tu_expect(tu_nerr(got, ref, (size_t)NT * cfg.vocab) > 100 * tol, "kind %d: folding into the norms alone changes "
                  "the logits (%.2e)", kind, tu_nerr(got, ref, (size_t)NT * cfg.vocab));
        free(ref), free(got);
        model_free(&m), model_free(&bad);
        weight_only_forward(kind, tok);
    }
    return tu_finish("test_quant_model");
}
