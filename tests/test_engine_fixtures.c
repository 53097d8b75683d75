/* test_engine_fixtures.c: the engine against Hugging Face transformers (fixtures written by
 * tools/make_fixtures.py and tools/check_hf_load.py, see tests/fixtures/README.md): for every
 * fixture model, logits at every position of a packed batch, the mean next-token loss, the
 * gradient of every parameter, 10 AdamW steps (losses and final parameters), and the logits of
 * the checkpoints smelt saves (fp32, bf16) against transformers' logits after reloading them;
 * and stories260K (llama2.c import) against transformers on the converted weights.
 *
 * Tolerances (normalized: max|smelt - torch| / max|torch| per tensor): both sides run fp32 with
 * different summation orders, so every reduction may differ by its length times eps. A layer
 * chains reductions of lengths H (q/k/v), D + T (scores, softmax, values), Q (o), H (gate/up),
 * I (down); the head adds H, and the loss and its gradient the vocabulary V and the N tokens a
 * weight gradient sums over. Each side carries such an error:
 *     logits:    2 eps (L (2H + Q + I + D + T) + H)
 *     loss, grads: the same + 2 eps (V + N), doubled for the backward pass.
 * AdamW: an update is lr * m / (sqrt(v) + eps), insensitive to the gradient's scale but not to its
 * sign; an entry whose gradient is smaller than its own rounding noise may move by up to 2 lr per
 * step in either implementation. Entries are checked against
 *     |p - p_torch| <= steps * lr * min(2, 4 * grad_tol * max|g| / |g|)  + 4 eps |p|,
 * where g is transformers' first-step gradient of that entry and grad_tol the gradient tolerance
 * above: exact agreement is required wherever the gradient is well above its rounding noise. */
#include <unistd.h>

#include "common/fsutil.h"
#include "engine_testutil.h"
#include "kernels/threads.h"
#include "model/checkpoint.h"
#include "model/model.h"
#include "model/optim.h"
#include "tests/shared_dir.h"

static const char *src_dir;

static const st_tensor *need(const st_file *f, const char *name) {
    const st_tensor *t = st_find(f, name);
    if (!t) {
        printf("FAIL %s: tensor %s is missing (regenerate with tools/make_fixtures.py)\n", f->path, name);
        exit(1);
    }
    return t;
}

static float *load_f32(const st_file *f, const char *name, size_t *n) {
    const st_tensor *t = need(f, name);
    float *x = tu_alloc(t->n_elems);
    if (st_to_f32(x, t, f->path)) {
        printf("FAIL %s\n", err_msg());
        exit(1);
    }
    if (n) *n = t->n_elems;
    return x;
}

static int *load_i32(const st_file *f, const char *name, int *n) {
    const st_tensor *t = need(f, name);
    if (t->dtype != ST_I32) {
        printf("FAIL %s: %s is not I32\n", f->path, name);
        exit(1);
    }
    int *x = malloc(sizeof(int) * (t->n_elems + 1));
    memcpy(x, t->data, sizeof(int) * t->n_elems);
    *n = (int)t->n_elems;
    return x;
}

static double tol_logits(const model_config *c, int T) {
    const int Q = c->n_heads * c->head_dim;
    return 2 * TU_EPS * (c->n_layers * (2.0 * c->hidden + Q + c->intermediate + c->head_dim + T) + c->hidden);
}

static double tol_grad(const model_config *c, int T, int N) {
    return 2 * (tol_logits(c, T) + 2 * TU_EPS * (c->vocab + N));
}

/* Logits [n, vocab] of a packed batch. */
static float *batch_logits(model *m, const int *tokens, const int *lens, int n, int n_seqs) {
    model_batch b = {.tokens = tokens, .seq_lens = lens, .n_tokens = n, .n_seqs = n_seqs};
    const float *hid;
    float *lg = tu_alloc((size_t)n * m->cfg.vocab);
    if (model_forward(m, &b, &hid) || model_logits(m, lg, hid, n)) {
        printf("FAIL forward: %s\n", err_msg());
        exit(1);
    }
    return lg;
}

/* Mean next-token cross-entropy of the batch; gradients accumulated into m->grad. */
static double loss_and_grad(model *m, const model_batch *b) {
    int *targets = malloc(sizeof(int) * b->n_tokens);
    float *w = tu_alloc(b->n_tokens), *dh = tu_alloc((size_t)b->n_tokens * m->cfg.hidden);
    int cnt = model_batch_targets(b, targets);
    for (int i = 0; i < b->n_tokens; i++) w[i] = 1.0f / (float)cnt;
    lm_ce_ctx ce = {.targets = targets, .weights = w};
    const float *hid;
    double loss = NAN;
    if (model_forward(m, b, &hid) || model_lm_loss(m, hid, dh, b->n_tokens, lm_loss_ce, &ce, &loss) ||
        model_backward(m, dh))
        printf("FAIL loss/backward: %s\n", err_msg()), exit(1);
    free(targets), free(w), free(dh);
    return loss;
}

/* Logits of a checkpoint smelt saves in dtype, reloaded, vs transformers' logits of the same file. */
static void check_reload(const model *m, const char *fixture, st_dtype dtype, const char *key) {
    char tmpl[] = "/tmp/smelt-engine-XXXXXX";
    if (!mkdtemp(tmpl)) printf("FAIL mkdtemp\n"), exit(1);
    char *reload = xasprintf("%s/%s/hf_reload.safetensors", src_dir, fixture);
    st_file rf;
    if (st_open(&rf, reload)) printf("FAIL %s\n", err_msg()), exit(1);
    int n, ns;
    int *tok = load_i32(&rf, "tokens", &n), *lens = load_i32(&rf, "seq_lens", &ns);
    float *want = load_f32(&rf, key, NULL);
    model_config cfg;
    model_weights w;
    model m2;
    tu_expect(checkpoint_save(tmpl, &m->cfg, &m->w, dtype) == 0, "%s: checkpoint_save: %s", fixture, err_msg());
    tu_expect(checkpoint_load(tmpl, &cfg, &w) == 0, "%s: reload: %s", fixture, err_msg());
    tu_expect(model_init(&m2, &cfg, &w) == 0 && model_reserve_train(&m2, n) == 0, "init: %s", err_msg());
    float *got = batch_logits(&m2, tok, lens, n, ns);
    char what[160];
    snprintf(what, sizeof what, "%s: logits of smelt's %s save vs transformers' reload (%s)", fixture,
             dtype == ST_F32 ? "fp32" : "bf16", key);
    tu_expect_close(what, got, want, (size_t)n * cfg.vocab, tol_logits(&cfg, n));
    model_free(&m2);
    fs_rm_rf(tmpl);
    st_close(&rf);
    free(reload), free(tok), free(lens), free(want), free(got);
}

static void check_fixture(const char *name) {
    char *dir = xasprintf("%s/tests/fixtures/%s", src_dir, name), *refp = fs_join(dir, "reference.safetensors");
    model_config cfg;
    model_weights w;
    model m;
    st_file ref;
    if (checkpoint_load(dir, &cfg, &w) || model_init(&m, &cfg, &w) || st_open(&ref, refp))
        printf("FAIL %s: %s\n", name, err_msg()), exit(1);
    int N, ns;
    int *tok = load_i32(&ref, "tokens", &N), *lens = load_i32(&ref, "seq_lens", &ns);
    int max_len = 0;
    for (int s = 0; s < ns; s++) max_len = lens[s] > max_len ? lens[s] : max_len;
    if (model_reserve_train(&m, N)) printf("FAIL %s\n", err_msg()), exit(1);
    const double tl = tol_logits(&cfg, max_len), tg = tol_grad(&cfg, max_len, N);
    char what[200];

    /* logits */
    float *want = load_f32(&ref, "logits", NULL), *got = batch_logits(&m, tok, lens, N, ns);
    snprintf(what, sizeof what, "%s: logits [%d x %d], packed %d sequences", name, N, cfg.vocab, ns);
    tu_expect_close(what, got, want, (size_t)N * cfg.vocab, tl);

    /* loss and every gradient */
    model_batch b = {.tokens = tok, .seq_lens = lens, .n_tokens = N, .n_seqs = ns};
    model_zero_grad(&m);
    float loss = (float)loss_and_grad(&m, &b), *want_loss = load_f32(&ref, "loss", NULL);
    snprintf(what, sizeof what, "%s: mean next-token loss %.7f vs %.7f", name, loss, want_loss[0]);
    tu_expect_close(what, &loss, want_loss, 1, tg);
    weights_tensor tw[64], tgd[64];
    int nt = weights_tensors(&m.w, &cfg, tw, 64);
    weights_tensors(&m.grad, &cfg, tgd, 64);
    float **g_ref = calloc(nt, sizeof(float *)); /* kept for the AdamW bound */
    for (int t = 0; t < nt; t++) {
        char key[128];
        snprintf(key, sizeof key, "grad.%.100s", tw[t].name);
        size_t cnt;
        g_ref[t] = load_f32(&ref, key, &cnt);
        snprintf(what, sizeof what, "%s: d loss / d %.100s", name, tw[t].name);
        tu_expect_close(what, tgd[t].data, g_ref[t], cnt, tg);
    }

    /* 10 AdamW steps with the fixture's hyper-parameters (reference.json; lr 0.01, betas 0.9/0.95,
     * eps 1e-8, weight decay 0.1 on every tensor, no clipping) */
    const double lr = 0.01;
    optim_config oc = {.beta1 = 0.9, .beta2 = 0.95, .eps = 1e-8, .weight_decay = 0.1, .clip = 0, .decay_all = 1,
                       .schedule = {.kind = LR_CONSTANT, .lr = lr}};
    optimizer opt;
    tu_expect(optim_init(&opt, &m, &oc) == 0, "optim_init: %s", err_msg());
    float *want_l = load_f32(&ref, "adamw_loss", NULL), got_l[10];
    for (int s = 0; s < 10; s++) {
        model_zero_grad(&m);
        got_l[s] = (float)loss_and_grad(&m, &b);
        tu_expect(optim_step(&opt, &m) == 0, "optim_step: %s", err_msg());
    }
    snprintf(what, sizeof what, "%s: losses before each of 10 AdamW steps", name);
    tu_expect_close(what, got_l, want_l, 10, 10 * tg);
    for (int t = 0; t < nt; t++) {
        char key[128];
        snprintf(key, sizeof key, "adamw.%.100s", tw[t].name);
        size_t cnt;
        float *pw = load_f32(&ref, key, &cnt);
        double gmax = 0, worst = 0;
        for (size_t i = 0; i < cnt; i++) gmax = fmax(gmax, fabs(g_ref[t][i]));
        size_t bad = 0, worst_i = 0;
        for (size_t i = 0; i < cnt; i++) {
            double sens = fmin(2.0, 4 * tg * gmax / fabs(g_ref[t][i]));
            double tol = 10 * lr * sens + 4 * TU_EPS * fabs(pw[i]) + 1e-30;
            double r = fabs(tw[t].data[i] - pw[i]) / tol;
            if (!(r <= 1)) bad++;
            if (r > worst) worst = r, worst_i = i;
        }
        tu_checks++;
        if (bad) tu_failures++;
        if (bad || tu_verbose)
            printf("%s %s: %s after 10 AdamW steps: %zu/%zu entries outside the bound (worst %.3f at %zu: %.8f vs "
                   "%.8f)\n", bad ? "FAIL" : "ok  ", name, tw[t].name, bad, cnt, worst, worst_i,
                   tw[t].data[worst_i], pw[worst_i]);
        free(pw);
    }
    optim_free(&opt);
    for (int t = 0; t < nt; t++) free(g_ref[t]);
    free(g_ref);

    /* the checkpoints smelt writes, as transformers read them back (weights before AdamW) */
    model orig;
    model_weights w0;
    if (checkpoint_load(dir, &cfg, &w0) || model_init(&orig, &cfg, &w0)) printf("FAIL %s\n", err_msg()), exit(1);
    char *fx = xasprintf("tests/fixtures/%s", name);
    check_reload(&orig, fx, ST_F32, "logits.f32");
    check_reload(&orig, fx, ST_BF16, "logits.bf16");
    free(fx);
    model_free(&orig);
    st_close(&ref);
    model_free(&m);
    free(dir), free(refp), free(tok), free(lens), free(want), free(got), free(want_loss), free(want_l);
}

/* stories260K: the real llama2.c checkpoint from ../shared, converted to the HF layout. */
static int check_stories(void) {
    char path[4096];
    if (!shared_file(path, sizeof path, "models/stories260K/stories260K.bin", "the stories260K logits")) return 0;
    char *bin = xstrdup(path);
    model_config cfg;
    model_weights w;
    model m;
    if (checkpoint_load(bin, &cfg, &w) || model_init(&m, &cfg, &w)) printf("FAIL %s\n", err_msg()), exit(1);
    char *refp = xasprintf("%s/tests/fixtures/stories260K/reference.safetensors", src_dir);
    st_file ref;
    if (st_open(&ref, refp)) printf("FAIL %s\n", err_msg()), exit(1);
    int n;
    int *tok = load_i32(&ref, "tokens", &n);
    float *want = load_f32(&ref, "logits", NULL);
    if (model_reserve_train(&m, n)) printf("FAIL %s\n", err_msg()), exit(1);
    float *got = batch_logits(&m, tok, &n, n, 1);
    char what[128];
    snprintf(what, sizeof what, "stories260K: logits of %d tokens vs transformers", n);
    tu_expect_close(what, got, want, (size_t)n * cfg.vocab, tol_logits(&cfg, n));
    /* the same through the KV cache, one token at a time */
    kv_cache kv;
    float *dec = tu_alloc((size_t)n * cfg.vocab);
    tu_expect(kv_cache_init(&kv, &cfg, n) == 0, "kv init");
    for (int i = 0; i < n; i++) tu_expect(model_decode(&m, &kv, tok[i], dec + (size_t)i * cfg.vocab) == 0, "decode");
    snprintf(what, sizeof what, "stories260K: KV-cache decode of %d tokens vs transformers", n);
    tu_expect_close(what, dec, want, (size_t)n * cfg.vocab, tol_logits(&cfg, n));
    kv_cache_free(&kv);
    check_reload(&m, "tests/fixtures/stories260K", ST_F32, "logits.f32");
    check_reload(&m, "tests/fixtures/stories260K", ST_BF16, "logits.bf16");
    st_close(&ref);
    model_free(&m);
    free(bin), free(refp), free(tok), free(want), free(got), free(dec);
    return 1;
}

int main(int argc, char **argv) {
    tu_verbose = argc > 1 && !strcmp(argv[1], "-v");
    src_dir = getenv("SMELT_SOURCE_DIR");
    shared_dir(); /* fails at once when the folder is required and absent */
    if (!src_dir) src_dir = ".";
    kernels_set_threads(0);
    static const char *fixtures[] = {"llama_gqa", "llama_tied", "llama_rope3", "qwen2_bias"};
    for (int i = 0; i < 4; i++) check_fixture(fixtures[i]);
    int ran = check_stories();
    int rc = tu_finish("test_engine_fixtures");
    if (!rc && !ran) return SHARED_SKIPPED_ALL; /* the fixtures ran, stories260K did not: say so to ctest */
    return rc;
}
