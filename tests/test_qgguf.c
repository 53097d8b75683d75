/* test_qgguf.c: quantized models as GGUF files (model/qckpt_gguf.c). The independent readings
 * (gguf-py's GGUFReader and dequantize, transformers' gguf_file= loader) are test_qexport's GGUF
 * cases; here:
 *   1. round trips on a synthetic Llama (hidden 64: groups of 32) in Q8_0, Q4_0 and Q4_1 (float
 *      minimums, and zero points whose -scale*zero is an fp16 number), untied and tied with a
 *      quantized head: every qweight reads back bit for bit (q/k rows permuted both ways), every
 *      fp32 tensor too, and the dense GGUF loader of gguf_model.c (which shares no code with the
 *      writer and was checked against gguf-py) reads each quantized linear as exactly
 *      qweight_dequantize's floats; model_load runs the file quantized and gives the in-memory
 *      quantized model's logits bit for bit;
 *   2. refusals before anything is written: group 16, 3 bits, 8-bit asymmetric, int8 activations,
 *      FP8, act order, a zero point whose -scale*zero is not an fp16 number;
 *   3. llama.cpp's own SmolLM2-135M Q4_1 file (../shared) run quantized (model_load_quantized_gguf:
 *      210 Q4_1 linears with minimums, the tied Q8_0 embedding as the LM head): its weights are
 *      the dense loader's bit for bit, and its logits the dense model's within the fp32 bound;
 *      written back with its tokenizer as DIR/model.gguf (the quantize stage's format gguf), the
 *      folder's tokenizer encodes as the original and model_load(DIR) gives the same qweights. */
#include <stdlib.h>
#include <string.h>

#include "common/fsutil.h"
#include "kernels/threads.h"
#include "model/checkpoint.h"
#include "model/kvcache.h"
#include "model/model_load.h"
#include "model/tokenizer.h"
#include "tests/ckpt_testutil.h"
#include "tests/engine_testutil.h"
#include "tests/qtestutil.h"
#include "tests/shared_dir.h"

static const int tokens[] = {1, 7, 30, 12, 55, 3, 9, 40, 21, 2, 63, 17};
#define NT ((int)(sizeof tokens / sizeof tokens[0]))

static float *logits_of(model *m, int n) {
    kv_cache kv;
    int rows[NT];
    for (int i = 0; i < n; i++) rows[i] = i;
    float *out = malloc(sizeof(float) * (size_t)n * m->cfg.vocab);
    if (!out || kv_cache_init(&kv, &m->cfg, n)) return free(out), NULL;
    if (model_extend(m, &kv, tokens, n, rows, n, out)) free(out), out = NULL;
    kv_cache_free(&kv);
    return out;
}

/* Scales (and zero-point minimums) that are fp16 numbers: powers of two. */
static void pow2_scales(model_quant *q, int n_layers) {
    for (int l = 0; l <= n_layers; l++)
        for (int k = 0; k < (l == n_layers ? 1 : QLIN_N); k++) {
            qweight *w = model_quant_at(q, l == n_layers ? 0 : l, l == n_layers ? QLIN_N : k);
            for (int i = 0; qweight_is_set(w) && i < w->n_scales; i++) w->scales[i] = 1.0f / (float)(64 << (i % 3));
        }
}

static void round_trip(const char *model_name, const qt_scheme *s, int zero_points) {
    model_config cfg;
    model_weights w;
    EXPECT_OK(qt_synthetic(model_name, &cfg, &w), model_name);
    qt_scheme sc = *s;
    if (zero_points) sc.format = QCKPT_COMPRESSED_TENSORS; /* RTN with zero points, not GGUF minimums */
    model_quant *q = qt_quantize_model(&cfg, &w, &sc);
    CHECK(q != NULL, "%s %s: quantize", model_name, s->name);
    if (!q) return weights_free(&w);
    if (zero_points) pow2_scales(q, cfg.n_layers);
    char dir[512];
    snprintf(dir, sizeof dir, "%s/%s-%s%s", t_tmpdir(), model_name, s->name, zero_points ? "-zp" : "");
    for (char *p = dir + strlen(t_tmpdir()) + 1; *p; p++)
        if (*p == ' ' || *p == ',' || *p == '(' || *p == ')') *p = '_';
    EXPECT_OK(qcheckpoint_save(dir, &cfg, &w, q, QCKPT_GGUF, ST_F32), s->name);
    char *file = fs_join(dir, "model.gguf");
    qckpt_format f;
    CHECK(model_path_is_quantized(dir, &f, NULL, 0) == 1 && f == QCKPT_GGUF, "%s: the folder is a quantized GGUF",
          s->name);

    /* the quantized reader: the same qweights (or, from zero points, the same weights as minimums) */
    model_config c2;
    model_weights w2;
    model_quant *q2 = NULL;
    EXPECT_OK(qcheckpoint_load_gguf(file, &c2, &w2, &q2), s->name);
    const int head = s->head, untied = cfg.tie_embeddings && head;
    CHECK(c2.tie_embeddings == (cfg.tie_embeddings && !head), "%s: tied %d, read back %d", s->name, cfg.tie_embeddings,
          c2.tie_embeddings);
    for (int l = 0; q2 && l <= cfg.n_layers; l++)
        for (int k = 0; k < (l == cfg.n_layers ? 1 : QLIN_N); k++) {
            const int ll = l == cfg.n_layers ? 0 : l, kk = l == cfg.n_layers ? QLIN_N : k;
            const qweight *a = model_quant_at(q, ll, kk), *b = model_quant_at(q2, ll, kk);
            char why[256];
            CHECK(qweight_is_set(a) == qweight_is_set(b), "%s: layer %d linear %d quantized %d, read back %d", s->name, l,
                  k, qweight_is_set(a), qweight_is_set(b));
            if (!qweight_is_set(a) || !qweight_is_set(b)) continue;
            if (!zero_points) {
                CHECK(qt_qweight_equal(a, b, why, sizeof why), "%s: layer %d linear %d: %s", s->name, l, k, why);
                continue;
            }
            float *da = malloc(sizeof(float) * (size_t)a->n_out * a->n_in), *db = malloc(sizeof(float) * (size_t)a->n_out * a->n_in);
            qweight_dequantize(da, a), qweight_dequantize(db, b);
            CHECK(b->mins && !memcmp(da, db, sizeof(float) * (size_t)a->n_out * a->n_in),
                  "%s: layer %d linear %d: zero points read back as the same weights (minimums)", s->name, l, k);
            free(da), free(db);
        }
    /* the fp32 tensors, equal (the quantized linears' entries are zeros in the reader's model) */
    weights_tensor t1[64], t2[64];
    const int n1 = weights_tensors(&w, &cfg, t1, 64), n2 = weights_tensors(&w2, &c2, t2, 64);
    CHECK(n2 == n1 + untied, "%s: %d tensors, read back %d", s->name, n1, n2);
    for (int i = 0; i < n1 && n2 == n1 + untied; i++)
        if (!strstr(t1[i].name, "_proj.weight") && strcmp(t1[i].name, "lm_head.weight")) {
            const size_t len = (size_t)t1[i].shape[0] * (t1[i].ndim > 1 ? (size_t)t1[i].shape[1] : 1);
            CHECK(!memcmp(t1[i].data, t2[i].data, len * sizeof(float)), "%s: %s differs", s->name, t1[i].name);
        }
    /* the dense loader of gguf_model.c: each quantized linear as exactly the dequantized floats */
    model_config c3;
    model_weights w3;
    EXPECT_OK(checkpoint_load(file, &c3, &w3), "dense GGUF load");
    for (int l = 0; w3.mem && l <= cfg.n_layers; l++)
        for (int k = 0; k < (l == cfg.n_layers ? 1 : QLIN_N); k++) {
            const int ll = l == cfg.n_layers ? 0 : l, kk = l == cfg.n_layers ? QLIN_N : k;
            const qweight *a = model_quant_at(q, ll, kk);
            if (!qweight_is_set(a)) continue;
            float *da = malloc(sizeof(float) * (size_t)a->n_out * a->n_in);
            qweight_dequantize(da, a);
            CHECK(!memcmp(da, qt_dense(&w3, ll, kk), sizeof(float) * (size_t)a->n_out * a->n_in),
                  "%s: the dense GGUF loader reads layer %d linear %d as other floats", s->name, l, k);
            free(da);
        }
    if (w3.mem) weights_free(&w3);
    if (q2) weights_free(&w2), model_quant_free(q2);

    /* model_load runs it quantized, as the in-memory model */
    model ml, mm;
    EXPECT_OK(model_load(&ml, dir), "model_load");
    CHECK(model_is_quantized(&ml), "%s: model_load gives a quantized model", s->name);
    EXPECT_OK(model_init(&mm, &cfg, &w), "init");
    EXPECT_OK(model_attach_quant(&mm, q), "attach");
    float *a = logits_of(&ml, NT), *b = logits_of(&mm, NT);
    CHECK(a && b && !memcmp(a, b, sizeof(float) * (size_t)NT * cfg.vocab),
          "%s: model_load's logits differ from the in-memory quantized model's", s->name);
    free(a), free(b), free(file);
    model_free(&ml), model_free(&mm);
}

/* Each rule refuses before anything is written. */
static void refusals(void) {
    model_config cfg;
    model_weights w;
    EXPECT_OK(qt_synthetic("synth_llama", &cfg, &w), "synthetic");
    const char *dir = t_path("gguf-refused");
    static const struct {
        qt_scheme s;
        const char *want;
    } bad[] = {
        {{"g16", QCKPT_COMPRESSED_TENSORS, QW_INT, 4, QA_NONE, 16, 0, 0, 0, 0}, "groups of 32"},
        {{"3 bits", QCKPT_COMPRESSED_TENSORS, QW_INT, 3, QA_NONE, 32, 0, 0, 0, 0}, "Q4_0"},
        {{"8-bit asym", QCKPT_COMPRESSED_TENSORS, QW_INT, 8, QA_NONE, 32, 1, 0, 0, 0}, "8-bit asymmetric"},
        {{"w8a8", QCKPT_COMPRESSED_TENSORS, QW_INT, 8, QA_INT8, 32, 0, 0, 0, 0}, "weights only"},
        {{"fp8", QCKPT_COMPRESSED_TENSORS, QW_FP8, 8, QA_NONE, -1, 0, 0, 0, 0}, "FP8"},
        {{"act order", QCKPT_GPTQ, QW_INT, 4, QA_NONE, 32, 0, 0, 0, 1}, "act-order"},
        {{"zero points", QCKPT_COMPRESSED_TENSORS, QW_INT, 4, QA_NONE, 32, 1, 0, 0, 0}, "not an fp16 number"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        model_quant *q = qt_quantize_model(&cfg, &w, &bad[i].s);
        CHECK(q != NULL, "%s: quantize", bad[i].s.name);
        if (!q) continue;
        if (bad[i].s.format == QCKPT_GPTQ) pow2_scales(q, cfg.n_layers); /* fp16 scales: only act order is wrong */
        EXPECT_ERR(qcheckpoint_save(dir, &cfg, &w, q, QCKPT_GGUF, ST_F32), ERR_INPUT, bad[i].want);
        CHECK(!fs_exists(dir), "%s: nothing written", bad[i].s.name);
        model_quant_free(q);
    }
    weights_free(&w);
}

/* The quantize stage's GGUF output for a real model: SmolLM2's quantized linears written back
 * (qcheckpoint_save_gguf) with the file's tokenizer into DIR/model.gguf; tokenizer_load(DIR) finds it
 * there and encodes a sentence to the original's ids (the whole vocabulary carried over), and
 * model_load(DIR) gives back the same qweights. */
static void rewrite_with_tokenizer(const model *mq, const char *path) {
    char dir[1024], file[1100];
    snprintf(dir, sizeof dir, "%s/smollm2-q", t_tmpdir());
    snprintf(file, sizeof file, "%s/model.gguf", dir);
    tokenizer *tok = NULL, *back = NULL;
    EXPECT_OK(tokenizer_load(&tok, path), "SmolLM2's tokenizer");
    CHECK(fs_mkdir_p(dir, 0755) == 0, "mkdir %s", dir);
    EXPECT_OK(qcheckpoint_save_gguf(file, &mq->cfg, &mq->w, mq->quant, tok, "SmolLM2 rewritten"), "rewrite");
    EXPECT_OK(tokenizer_load(&back, dir), "the tokenizer of a folder holding model.gguf");
    static const char text[] = "The capital of France is Paris; 12 apples, d\xc3\xa9j\xc3\xa0 vu!";
    int32_t *ia = NULL, *ib = NULL;
    size_t na = 0, nb = 0;
    if (tok && back && !tokenizer_encode(tok, text, strlen(text), &ia, &na) &&
        !tokenizer_encode(back, text, strlen(text), &ib, &nb))
        CHECK(na == nb && na > 5 && !memcmp(ia, ib, na * sizeof *ia) &&
                  tokenizer_vocab_size(tok) == tokenizer_vocab_size(back),
              "the rewritten file's tokenizer: %zu ids vs the original's %zu", nb, na);
    else
        CHECK(0, "encoding with the original and the rewritten tokenizer: %s", err_msg());
    free(ia), free(ib);
    tokenizer_free(tok), tokenizer_free(back);
    model m2;
    EXPECT_OK(model_load(&m2, dir), "model_load of the folder");
    if (!m2.quant) return;
    int same = 1;
    for (int l = 0; l < mq->cfg.n_layers; l += mq->cfg.n_layers - 1)
        for (int k = 0; k < QLIN_N; k++) {
            const qweight *a = model_quant_at(mq->quant, l, k), *b = model_quant_at(m2.quant, l, k);
            const size_t n = (size_t)a->n_out * a->n_in, ng = n / a->group_size;
            same &= qweight_is_set(b) && b->n_out == a->n_out && b->n_in == a->n_in && !!b->mins == !!a->mins &&
                    !memcmp(a->codes, b->codes, n) && !memcmp(a->scales, b->scales, ng * sizeof(float)) &&
                    (!a->mins || !memcmp(a->mins, b->mins, ng * sizeof(float)));
        }
    CHECK(same, "the rewritten SmolLM2 reads back with the same qweights (first and last layer)");
    model_free(&m2);
    fs_rm_rf(dir);
}

/* llama.cpp's SmolLM2 Q4_1 file, quantized and dense. */
static void smollm2(void) {
    char path[1024];
    if (!shared_file(path, sizeof path, "models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf",
                     "SmolLM2 Q4_1 run quantized"))
        return;
    model mq, md;
    EXPECT_OK(model_load_quantized_gguf(&mq, path), "quantized load");
    EXPECT_OK(model_load(&md, path), "dense load (a llama.cpp file loads dense)");
    CHECK(model_is_quantized(&mq) && !model_is_quantized(&md), "quantized %d, dense %d", model_is_quantized(&mq),
          model_is_quantized(&md));
    if (!mq.quant || !md.w.mem) return;
    int n_q41 = 0;
    for (int l = 0; l < mq.cfg.n_layers; l++)
        for (int k = 0; k < QLIN_N; k++) {
            const qweight *a = model_quant_at(mq.quant, l, k);
            n_q41 += qweight_is_set(a) && a->bits == 4 && a->mins;
            if (l == 0 || l == mq.cfg.n_layers - 1) { /* first and last layer: every linear, bit for bit */
                float *da = malloc(sizeof(float) * (size_t)a->n_out * a->n_in);
                qweight_dequantize(da, a);
                CHECK(!memcmp(da, qt_dense(&md.w, l, k), sizeof(float) * (size_t)a->n_out * a->n_in),
                      "SmolLM2 layer %d linear %d: the quantized weights are not the dense loader's", l, k);
                free(da);
            }
        }
    const qweight *h = &mq.quant->lm_head;
    CHECK(n_q41 == 7 * mq.cfg.n_layers && mq.cfg.tie_embeddings && qweight_is_set(h) && h->bits == 8 && !h->mins,
          "SmolLM2: %d Q4_1 linears (of %d), tied head quantized %d (bits %d)", n_q41, 7 * mq.cfg.n_layers,
          qweight_is_set(h), h->bits);
    /* logits of 4 tokens: the same weights, sums in another order: within the fp32 bound of the
     * engine tests, 2 eps (L (2 H + Q + I + D + T) + H) of the logits' scale */
    const int n = 4;
    float *a = logits_of(&mq, n), *b = logits_of(&md, n);
    const model_config *c = &mq.cfg;
    const double tol = 2 * 1.1920929e-7 *
                       (c->n_layers * (2.0 * c->hidden + c->n_heads * c->head_dim + c->intermediate + c->head_dim + n) +
                        c->hidden);
    const double e = a && b ? tu_nerr(a, b, (size_t)n * c->vocab) : 1;
    CHECK(e <= tol, "SmolLM2 quantized logits %.3e from the dense model's (tol %.3e)", e, tol);
    free(a), free(b);
    model_free(&md);
    rewrite_with_tokenizer(&mq, path);
    model_free(&mq);
}

int main(void) {
    shared_dir();
    kernels_set_threads(1);
    static const qt_scheme schemes[] = {
        {"q8_0 head", QCKPT_GGUF, QW_INT, 8, QA_NONE, 32, 0, 0, 1, 0},
        {"q4_0", QCKPT_GGUF, QW_INT, 4, QA_NONE, 32, 0, 0, 0, 0},
        {"q4_1 head", QCKPT_GGUF, QW_INT, 4, QA_NONE, 32, 1, 0, 1, 0},
    };
    for (size_t i = 0; i < sizeof schemes / sizeof *schemes; i++) {
        round_trip("synth_llama", &schemes[i], 0);
        round_trip("synth_llama_tied", &schemes[i], 0);
    }
    round_trip("synth_llama", &schemes[2], 1); /* zero points with fp16 minimums: written as Q4_1 */
    refusals();
    smollm2();
    return t_finish("test_qgguf");
}
