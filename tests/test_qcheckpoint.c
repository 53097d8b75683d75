/* test_qcheckpoint.c: quantized checkpoints (model/qcheckpoint.h) and the one loader
 * (model/model_load.h) on the tiny fixture models (tests/fixtures):
 *   - every scheme x format round-trips: what qcheckpoint_load reads back equals, field for field
 *     and bit for bit, the qweights qcheckpoint_save was given, and the fp32 tensors are the
 *     source's (saved F32);
 *   - model_load on the saved folder gives a quantized model whose logits are bit for bit those of
 *     the in-memory model with the same qweights attached (same kernels, same numbers), and, for
 *     weight-only schemes, within fp32 rounding of the dense model over the dequantized weights
 *     (normalized error <= 64 * 32 * FLT_EPSILON: reductions of at most 32 terms over 2 layers,
 *     attention and norms included, as the engine tests bound fp32 forwards);
 *   - bad inputs are refused before anything is written, with the cause and the fix;
 *   - checkpoint_load refuses a quantized folder and names where it runs. */
#include <stdlib.h>
#include <string.h>

#include "common/fsutil.h"
#include "kernels/threads.h"
#include "model/checkpoint.h"
#include "model/kvcache.h"
#include "model/model_load.h"
#include "tests/ckpt_testutil.h"
#include "tests/engine_testutil.h"
#include "tests/qtestutil.h"

static const qt_scheme schemes[] = {
    {"w4a16 g8", QCKPT_COMPRESSED_TENSORS, QW_INT, 4, QA_NONE, 8, 0, 0, 1, 0},
    {"w4a16 g8 asym", QCKPT_COMPRESSED_TENSORS, QW_INT, 4, QA_NONE, 8, 1, 0, 0, 0},
    {"w3a16 g16", QCKPT_COMPRESSED_TENSORS, QW_INT, 3, QA_NONE, 16, 0, 0, 0, 0},
    {"w5a16 asym per channel", QCKPT_COMPRESSED_TENSORS, QW_INT, 5, QA_NONE, -1, 1, 0, 0, 0},
    {"w8a8 per channel", QCKPT_COMPRESSED_TENSORS, QW_INT, 8, QA_INT8, -1, 0, 0, 0, 0},
    {"w8a8 asym g8", QCKPT_COMPRESSED_TENSORS, QW_INT, 8, QA_INT8, 8, 1, 0, 1, 0},
    {"w4a8 g16", QCKPT_COMPRESSED_TENSORS, QW_INT, 4, QA_INT8, 16, 0, 0, 0, 0},
    {"fp8 per channel, fp8 act", QCKPT_COMPRESSED_TENSORS, QW_FP8, 8, QA_FP8, -1, 0, 0, 0, 0},
    {"fp8 per tensor", QCKPT_COMPRESSED_TENSORS, QW_FP8, 8, QA_NONE, -1, 0, 1, 1, 0},
    {"fp8 per tensor, fp8 act per tensor", QCKPT_COMPRESSED_TENSORS, QW_FP8, 8, QA_FP8_TENSOR, -1, 0, 1, 0, 0},
    {"gptq w4 g8", QCKPT_GPTQ, QW_INT, 4, QA_NONE, 8, 0, 0, 0, 0},
    {"gptq w4 g8 asym + head", QCKPT_GPTQ, QW_INT, 4, QA_NONE, 8, 1, 0, 1, 0},
    {"gptq w8 per channel", QCKPT_GPTQ, QW_INT, 8, QA_NONE, -1, 0, 0, 0, 0},
    {"gptq w2 g16 asym", QCKPT_GPTQ, QW_INT, 2, QA_NONE, 16, 1, 0, 0, 0},
    {"gptq w4 g8 act order", QCKPT_GPTQ, QW_INT, 4, QA_NONE, 8, 1, 0, 0, 1},
};

static const char *const models[] = {"llama_gqa", "qwen2_bias", "llama_tied"};

/* Logits of tokens [n] (every position) with a fresh KV cache. */
static float *logits_of(model *m, const int *tokens, int n) {
    kv_cache kv;
    float *lg = malloc(sizeof(float) * (size_t)n * m->cfg.vocab);
    int rows[64];
    for (int i = 0; i < n; i++) rows[i] = i;
    if (!lg || kv_cache_init(&kv, &m->cfg, n) || model_extend(m, &kv, tokens, n, rows, n, lg)) {
        t_fail(__FILE__, __LINE__, "forward: %s", err_msg());
        free(lg);
        return NULL;
    }
    kv_cache_free(&kv);
    return lg;
}

static void round_trip(const char *fixture, const qt_scheme *s) {
    model_config cfg;
    model_weights w;
    EXPECT_OK(checkpoint_load(t_fixture(fixture), &cfg, &w), fixture);
    if (!w.mem) return;
    qt_scheme sc = *s;
    if (cfg.tie_embeddings) sc.head = 0;
    model_quant *q = qt_quantize_model(&cfg, &w, &sc);
    CHECK(q != NULL, "%s %s: quantize: %s", fixture, s->name, err_msg());
    char dir[256];
    snprintf(dir, sizeof dir, "%s/%s-%s", t_tmpdir(), fixture, s->name);
    for (char *p = dir + strlen(t_tmpdir()) + 1; *p; p++)
        if (*p == ' ' || *p == ',' || *p == '+') *p = '_';
    if (s->format == QCKPT_GPTQ && s->bits == 2 && !strcmp(fixture, "qwen2_bias")) {
        /* k_proj and v_proj have 8 rows: 16 two-bit codes per word do not fit GPTQ's packing */
        EXPECT_ERR(qcheckpoint_save(dir, &cfg, &w, q, s->format, ST_F32), ERR_INPUT, "k_proj", "16 codes per 32-bit word");
        CHECK(!fs_exists(dir), "nothing written");
        model_quant_free(q);
        weights_free(&w);
        return;
    }
    EXPECT_OK(qcheckpoint_save(dir, &cfg, &w, q, s->format, ST_F32), s->name);

    /* the probe and the reader */
    qckpt_format f;
    char desc[96];
    CHECK(model_path_is_quantized(dir, &f, desc, sizeof desc) == 1 && f == s->format, "%s: probe says %s", s->name, desc);
    model_config c2;
    model_weights w2;
    model_quant *q2 = NULL;
    EXPECT_OK(qcheckpoint_load(dir, &c2, &w2, &q2), s->name);
    if (q2) {
        CHECK(t_config_equal(&cfg, &c2), "%s: config", s->name);
        char why[256];
        for (int l = 0; l <= cfg.n_layers; l++)
            for (int k = 0; k < (l == cfg.n_layers ? 1 : QLIN_N); k++) {
                const int kk = l == cfg.n_layers ? QLIN_N : k, ll = l == cfg.n_layers ? 0 : l;
                const qweight *a = model_quant_at(q, ll, kk), *b = model_quant_at(q2, ll, kk);
                if (qweight_is_set(a) != qweight_is_set(b))
                    t_fail(__FILE__, __LINE__, "%s %s: layer %d linear %d quantized %d, read back %d", fixture, s->name,
                           l, k, qweight_is_set(a), qweight_is_set(b));
                else if (qweight_is_set(a) && !qt_qweight_equal(a, b, why, sizeof why))
                    t_fail(__FILE__, __LINE__, "%s %s: layer %d linear %d: %s", fixture, s->name, l, k, why);
            }
        /* the fp32 tensors: equal, except the quantized linears' (zeros in the reader's model) */
        weights_tensor t1[64], t2[64];
        int n = weights_tensors(&w, &cfg, t1, 64);
        weights_tensors(&w2, &c2, t2, 64);
        for (int i = 0; i < n; i++) {
            int quantized = strstr(t1[i].name, "_proj.weight") != NULL || (!strcmp(t1[i].name, "lm_head.weight") && sc.head);
            size_t len = (size_t)t1[i].shape[0] * (t1[i].ndim > 1 ? (size_t)t1[i].shape[1] : 1);
            if (!quantized && memcmp(t1[i].data, t2[i].data, len * sizeof(float)))
                t_fail(__FILE__, __LINE__, "%s %s: %s differs after the round trip", fixture, s->name, t1[i].name);
        }
        weights_free(&w2);
        model_quant_free(q2);
    }

    /* the one loader runs it quantized, as the in-memory model does */
    model ml, mm, md;
    EXPECT_OK(model_load(&ml, dir), "model_load");
    CHECK(model_is_quantized(&ml), "%s: model_load gives a quantized model", s->name);
    model_weights wc;
    EXPECT_OK(weights_alloc(&wc, &cfg), "alloc");
    memcpy(wc.mem, w.mem, w.n_floats * sizeof(float));
    EXPECT_OK(model_init(&mm, &cfg, &wc), "init");
    EXPECT_OK(model_attach_quant(&mm, q), "attach");
    /* the dense model over the dequantized weights */
    for (int l = 0; l <= cfg.n_layers; l++)
        for (int k = 0; k < (l == cfg.n_layers ? 1 : QLIN_N); k++) {
            const qweight *a = model_quant_at(q, l == cfg.n_layers ? 0 : l, l == cfg.n_layers ? QLIN_N : k);
            if (qweight_is_set(a)) qweight_dequantize((float *)qt_dense(&w, l == cfg.n_layers ? 0 : l, l == cfg.n_layers ? QLIN_N : k), a);
        }
    EXPECT_OK(model_init(&md, &cfg, &w), "dense init");
    static const int tokens[] = {1, 7, 30, 12, 55, 3, 9, 40, 21, 2, 63, 17};
    const int nt = (int)(sizeof tokens / sizeof tokens[0]);
    float *a = logits_of(&ml, tokens, nt), *b = logits_of(&mm, tokens, nt), *d = logits_of(&md, tokens, nt);
    if (a && b && d) {
        const size_t nl = (size_t)nt * cfg.vocab;
        CHECK(!memcmp(a, b, nl * sizeof(float)), "%s %s: model_load's logits differ from the in-memory quantized model's",
              fixture, s->name);
        const double e = tu_nerr(a, d, nl), tol = 64.0 * 32 * 1.1920929e-7;
        if (s->act == QA_NONE) CHECK(e <= tol, "%s %s: %.3e from the dequantized dense model (tol %.3e)", fixture, s->name, e, tol);
        else CHECK(e > tol, "%s %s: activation quantization changes the logits (%.3e)", fixture, s->name, e);
    }
    free(a), free(b), free(d);
    model_free(&ml), model_free(&mm), model_free(&md);
}

static void test_errors(void) {
    model_config cfg;
    model_weights w;
    EXPECT_OK(checkpoint_load(t_fixture("llama_gqa"), &cfg, &w), "load");
    qt_scheme s = {"w4", QCKPT_GPTQ, QW_INT, 4, QA_NONE, 8, 0, 0, 0, 0};
    model_quant *q = qt_quantize_model(&cfg, &w, &s);
    const char *dir = t_path("refused");
    /* bits 3 in GPTQ: refused before anything is written */
    q->lin[1][QLIN_UP].bits = 3;
    EXPECT_ERR(qcheckpoint_save(dir, &cfg, &w, q, QCKPT_GPTQ, ST_F32), ERR_INPUT, "layer", "up_proj", "2, 4 or 8 bits",
               "compressed-tensors");
    CHECK(!fs_exists(dir), "nothing is written for a refused save");
    q->lin[1][QLIN_UP].bits = 4;
    q->lin[0][QLIN_K].scales[3] = 0.1f; /* not an fp16 number */
    EXPECT_ERR(qcheckpoint_save(dir, &cfg, &w, q, QCKPT_GPTQ, ST_F32), ERR_INPUT, "k_proj", "not an fp16 number",
               "qcheckpoint_round_scales");
    qcheckpoint_round_scales(&q->lin[0][QLIN_K], QCKPT_GPTQ);
    q->lin[0][QLIN_O].act = QA_INT8;
    EXPECT_ERR(qcheckpoint_save(dir, &cfg, &w, q, QCKPT_GPTQ, ST_F32), ERR_INPUT, "o_proj", "no activation quantization");
    q->lin[0][QLIN_O].act = QA_NONE;
    q->lin[0][QLIN_O].codes[5] = 16; /* off the 4-bit grid */
    EXPECT_ERR(qcheckpoint_save(dir, &cfg, &w, q, QCKPT_COMPRESSED_TENSORS, ST_F32), ERR_INPUT, "o_proj", "outside the 4-bit grid");
    q->lin[0][QLIN_O].codes[5] = 15;
    EXPECT_ERR(qcheckpoint_save(dir, &cfg, &w, q, QCKPT_GGUF, ST_F32), ERR_INPUT, "GGUF", "groups of 32");
    CHECK(!fs_exists(dir), "nothing is written for a refused GGUF save");
    /* act-order column groups are a GPTQ layout */
    CHECK(qt_act_order(&q->lin[0][QLIN_DOWN]) == 0 && q->lin[0][QLIN_DOWN].g_idx, "act order set");
    EXPECT_ERR(qcheckpoint_save(dir, &cfg, &w, q, QCKPT_COMPRESSED_TENSORS, ST_F32), ERR_INPUT, "down_proj", "g_idx",
               "format gptq");
    free(q->lin[0][QLIN_DOWN].g_idx), q->lin[0][QLIN_DOWN].g_idx = NULL;
    EXPECT_ERR(qcheckpoint_save(dir, &cfg, &w, q, QCKPT_COMPRESSED_TENSORS, ST_I8), ERR_INPUT, "F32, BF16 or F16");
    /* a partly quantized fused projection: GPTQ refuses it, and so does a model */
    qweight keep = q->lin[1][QLIN_V];
    memset(&q->lin[1][QLIN_V], 0, sizeof keep);
    EXPECT_ERR(qcheckpoint_save(dir, &cfg, &w, q, QCKPT_GPTQ, ST_F32), ERR_INPUT, "model.layers.1.self_attn.v_proj is not quantized");
    model m;
    model_weights wc;
    EXPECT_OK(weights_alloc(&wc, &cfg), "alloc");
    EXPECT_OK(model_init(&m, &cfg, &wc), "init");
    EXPECT_ERR(model_attach_quant(&m, q), ERR_INPUT, "layer 1", "v_proj", "fused projection");
    CHECK(!model_is_quantized(&m), "a refused attach leaves the model fp32");
    model_free(&m);
    q->lin[1][QLIN_V] = keep;
    /* a compressed-tensors folder is refused by the fp32 loader with where it runs */
    EXPECT_OK(qcheckpoint_save(dir, &cfg, &w, q, QCKPT_COMPRESSED_TENSORS, ST_BF16), "save bf16");
    model_config c2;
    model_weights w2;
    EXPECT_ERR(checkpoint_load(dir, &c2, &w2), ERR_INPUT, "quantized checkpoint", "compressed-tensors pack-quantized",
               "evaluate, generate");
    /* a quantization_config smelt does not read */
    char *cj = NULL;
    size_t len;
    char *cp = fs_join(dir, "config.json");
    if (fs_read_file(cp, 1 << 20, &cj, &len) == 0) {
        char *at = strstr(cj, "\"group\"");
        if (at) memcpy(at, "\"block\"", 7);
        t_write(cp, cj, len);
        EXPECT_ERR(model_load(&m, dir), ERR_INPUT, "group_0", "block");
    }
    free(cj), free(cp);
    model_free(&m);
    model_quant_free(q);
    weights_free(&w);
}

/* The quantize stage's flow: attach a model_quant with no layer quantized, quantize layer by layer
 * and rebind each; the result runs exactly as the same qweights attached at once. Also the byte
 * count of a quantized model. */
static void test_rebind(void) {
    model_config cfg;
    model_weights w, w2;
    EXPECT_OK(checkpoint_load(t_fixture("qwen2_bias"), &cfg, &w), "load");
    EXPECT_OK(weights_alloc(&w2, &cfg), "alloc");
    memcpy(w2.mem, w.mem, w.n_floats * sizeof(float));
    qt_scheme s = {"w8a8 g8", QCKPT_COMPRESSED_TENSORS, QW_INT, 8, QA_INT8, 8, 1, 0, 0, 0};
    model_quant *all = qt_quantize_model(&cfg, &w, &s), *empty = model_quant_new(cfg.n_layers);
    model a, b;
    EXPECT_OK(model_init(&a, &cfg, &w), "init a");
    EXPECT_OK(model_init(&b, &cfg, &w2), "init b");
    const size_t dense_bytes = model_weight_bytes(&b);
    EXPECT_OK(model_attach_quant(&a, all), "attach all");
    EXPECT_OK(model_attach_quant(&b, empty), "attach empty");
    CHECK(!model_is_quantized(&b), "an empty model_quant leaves the model fp32");
    CHECK(model_weight_bytes(&b) == dense_bytes, "an fp32 model counts 4 bytes per parameter");
    for (int l = 0; l < cfg.n_layers; l++) {
        for (int k = 0; k < QLIN_N; k++) {
            int n_out, n_in;
            qlin_shape(&cfg, l, k, &n_out, &n_in);
            EXPECT_OK(qt_rtn(model_quant_at(b.quant, l, k), qt_dense(&b.w, l, k), n_out, n_in, &s), "rtn");
        }
        EXPECT_OK(model_quant_rebind_layer(&b, l), "rebind");
        CHECK(model_is_quantized(&b), "layer %d rebound", l);
    }
    static const int tokens[] = {3, 9, 27, 61, 4, 12, 36};
    float *la = logits_of(&a, tokens, 7), *lb = logits_of(&b, tokens, 7);
    CHECK(la && lb && !memcmp(la, lb, sizeof(float) * 7 * cfg.vocab), "layer-by-layer rebinding runs as attaching at once");
    /* 8-bit codes + fp16 scales + 8-bit zeros per group of 8 instead of 4 bytes per weight */
    size_t lin = 0, packed = 0;
    for (int l = 0; l < cfg.n_layers; l++)
        for (int k = 0; k < QLIN_N; k++) {
            const qweight *q = model_quant_at(a.quant, l, k);
            lin += (size_t)q->n_out * q->n_in;
            packed += (size_t)q->n_out * q->n_in * 1 + (size_t)q->n_out * (q->n_in / 8) * 3;
        }
    CHECK(model_weight_bytes(&a) == dense_bytes - 4 * lin + packed, "bytes of the quantized model: %zu, expected %zu",
          model_weight_bytes(&a), dense_bytes - 4 * lin + packed);
    EXPECT_ERR(model_quant_rebind_layer(&a, cfg.n_layers), ERR_INPUT, "out of range");
    free(la), free(lb);
    model_free(&a), model_free(&b);
}

int main(void) {
    test_rebind();
    kernels_set_threads(1);
    for (size_t m = 0; m < sizeof models / sizeof models[0]; m++)
        for (size_t s = 0; s < sizeof schemes / sizeof schemes[0]; s++) round_trip(models[m], &schemes[s]);
    test_errors();
    return t_finish("test_qcheckpoint");
}
