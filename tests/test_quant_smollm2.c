/* test_quant_smollm2.c: the quantizers on the first two layers of the real SmolLM2-135M
 * (../shared/models/smollm2-135m-instruct, or $SMELT_SMOLLM2), calibrated on two English sentences (86
 * tokens of its tokenizer, written below): for every linear of both layers, W4 group 64 symmetric,
 * QuantEase (3 sweeps) <= GPTQ <= RTN in layer-wise error and QuantEase's objective never increases;
 * layer 1 is calibrated on the GPTQ-quantized outputs of layer 0, as the stage does. Skips (77) when the
 * model is absent (a failure under SMELT_REQUIRE_SHARED=1). The GGUF (Q4_1, dequantized by smelt's reader)
 * and the folder transformers converts it to give the same errors to the printed digit. */
#include "engine_testutil.h"
#include "model/checkpoint.h"
#include "model/layerwise.h"
#include "shared_dir.h"
#include "site_grams.h"
#include "stages/quantize/quant.h"

/* "The quick brown fox jumps over the lazy dog. A user who watched Toy Story, Jumanji and The Lion King in
 * 1995 rated comedies highly; would they like Finding Nemo? Answer yes or no." and "Quantization maps
 * every weight of a linear layer to a point of a small grid, and GPTQ feeds the rounding error of each
 * column forward into the columns that are not yet quantized." (SmolLM2's tokenizer, no BOS) */
static const int toks[] = {
    504,   2365, 6354,  16438, 27003, 690,   260,  23790, 2767,  30,    330,   2914, 617,  12635, 25399, 10124,
    28,    530,  3490,  10381, 284,   378,   22836, 3261, 281,   216,   33,    41,   41,   37,    18361, 379,
    12854, 3452, 43,    736,   502,   702,   19540, 38339, 95,   47,    19842, 9805, 355,  787,   30,    24696,
    1237,  7034, 897,   2613,  282,   253,   7974, 4070,  288,   253,   1225,  282,  253,  1165,  6983,  28,
    284,   452,  9848,  65,    17586, 260,   42186, 4514, 282,   971,   4556,  3703, 618,  260,   8935,  338,
    359,   441,  2408,  3324,  1005,  30};
static const int lens[2] = {47, 39};

int main(void) {
    tu_verbose = getenv("VERBOSE") != NULL;
    char path[4096];
    if (!shared_smollm2(path, sizeof path, "quantizing SmolLM2's first layers")) return SHARED_SKIPPED_ALL;
    model m;
    layerwise *lw;
    if (site_grams_open(&m, &lw, path, toks, lens, 2, 128)) return printf("FAIL loading %s: %s\n", path, err_msg()), 1;
    const model_config cfg = m.cfg;
    const quant_grid g = {4, 64, 1, 0};
    for (int l = 0; l < 2; l++) {
        site_grams gr = {{0}, {0}};
        model_tap t = {.sites = 0xF, .fn = site_grams_tap, .ctx = &gr, .partial = 1};
        if (!tu_expect(layerwise_capture(lw, &t) == 0, "capture: %s", err_msg())) break;
        for (int s = 0; s < MODEL_SITE_N; s++) gram_symmetrize(gr.h[s], gr.in[s]);
        layer_weights *lwt = &m.w.layers[l];
        const int H = cfg.hidden, Q = cfg.n_heads * cfg.head_dim, KV = cfg.n_kv_heads * cfg.head_dim, I = cfg.intermediate;
        struct { const char *name; float *w; int out, in; model_site site; } lin[7] = {
            {"q", lwt->wq, Q, H, MODEL_SITE_QKV},           {"k", lwt->wk, KV, H, MODEL_SITE_QKV},
            {"v", lwt->wv, KV, H, MODEL_SITE_QKV},          {"o", lwt->wo, H, Q, MODEL_SITE_O},
            {"gate", lwt->w_gate, I, H, MODEL_SITE_GATE_UP}, {"up", lwt->w_up, I, H, MODEL_SITE_GATE_UP},
            {"down", lwt->w_down, H, I, MODEL_SITE_DOWN}};
        for (int k = 0; k < 7; k++) {
            const size_t n = (size_t)lin[k].out * lin[k].in;
            float *wh = tu_alloc(n), *wg = tu_alloc(n);
            double e[3], ref, obj[4];
            const double *h = gr.h[lin[k].site];
            qweight q;
            quant_hessian qh;
            int ok = quant_rtn(&q, wh, lin[k].w, lin[k].out, lin[k].in, &g) == 0 &&
                     quant_layer_error(&e[0], &ref, lin[k].w, wh, h, lin[k].out, lin[k].in) == 0;
            qweight_free(&q);
            ok = ok && quant_hessian_prepare(&qh, h, lin[k].in, 0.01, 0) == 0 &&
                 quant_grid_init(&q, lin[k].w, lin[k].out, lin[k].in, &g, qh.dead) == 0 &&
                 quant_hessian_factor(&qh, lin[k].name) == 0 && gptq_quantize(&q, wg, NULL, lin[k].w, &qh, 1) == 0 &&
                 quant_layer_error(&e[1], &ref, lin[k].w, wg, h, lin[k].out, lin[k].in) == 0 &&
                 quantease_quantize(&q, wh, lin[k].w, &qh, 3, obj) == 0 &&
                 quant_layer_error(&e[2], &ref, lin[k].w, wh, h, lin[k].out, lin[k].in) == 0;
            if (tu_verbose) printf("layer %d %-4s RTN %.4e GPTQ %.4e QuantEase %.4e\n", l, lin[k].name, e[0] / ref,
                                   e[1] / ref, e[2] / ref);
            tu_expect(ok && e[2] <= e[1] && e[1] < e[0], "SmolLM2 layer %d %s: QuantEase %.4e <= GPTQ %.4e <= RTN %.4e %s",
                      l, lin[k].name, e[2] / ref, e[1] / ref, e[0] / ref, ok ? "" : err_msg());
            tu_expect(ok && obj[1] <= obj[0] * (1 + 1e-12) && obj[2] <= obj[1] * (1 + 1e-12) && obj[3] <= obj[2] * (1 + 1e-12),
                      "SmolLM2 layer %d %s: objective never increases (%.4e %.4e %.4e %.4e)", l, lin[k].name, obj[0],
                      obj[1], obj[2], obj[3]);
            memcpy(lin[k].w, wg, sizeof(float) * n); /* the next layer sees GPTQ's outputs */
            qweight_free(&q);
            quant_hessian_free(&qh);
            free(wh), free(wg);
        }
        site_grams_free(&gr);
        if (!tu_expect(layerwise_advance(lw) == 0, "advance: %s", err_msg())) break;
    }
    layerwise_close(lw);
    model_free(&m);
    return tu_finish("test_quant_smollm2");
}
