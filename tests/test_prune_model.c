/* test_prune_model.c: the whole pruning pass (stages/prune/pass.c, layers.c) on the fixture models
 * of tests/fixtures (transformers-made tiny Llama/Qwen2 models), with seeded random calibration
 * sequences:
 *   - the physically shrunk model computes the same logits as the model with the pruned rows and
 *     columns zeroed (what the pass ran on): the removed terms are exact zeros, so only summation
 *     order differs (tolerance: the engine tests' 2 eps (L (2H + Q + I + D + T) + H));
 *   - its config has the kept sizes (num_key_value_heads, num_attention_heads = kept groups x
 *     heads per group, intermediate_size, head_dim unchanged), tied embeddings stay tied, and a
 *     uniform result is a standard config (no smelt_layers) while a per-layer plan round-trips;
 *   - transformers loads the pruned checkpoints committed in tests/fixtures/pruned/ (made by this
 *     program with --write-fixtures, read back by tools/make_prune_fixtures.py) and its logits
 *     equal smelt's on them; the pass still produces those checkpoints (sizes equal, weights within
 *     fp32 rounding: 2^-22 of each tensor's largest entry, since the float64 solver may round its
 *     last bit differently on another BLAS);
 *   - the two orders (together, attention_first) and the baselines run; each layer reports what
 *     it removed;
 *   - inputs: dense prunes every layer on the unpruned model's inputs;
 *   - a layer checkpoint restores the layer bitwise; another fingerprint or a damaged file is refused;
 *   - docs/prune.md's parameter table lists the stage's schema.
 * Usage: test_prune_model [--write-fixtures DIR]
 *        test_prune_model --compare DIR_A DIR_B TOL: exits 1 unless both checkpoints have the same
 *        sizes and every tensor agrees within TOL (normalized, max|a - b| / max|b|); for tests/prune/mpi.sh. */
#include <unistd.h>

#include "common/fsutil.h"
#include "doc_params.h"
#include "engine_testutil.h"
#include "kernels/threads.h"
#include "model/checkpoint.h"
#include "model/hfconfig.h"
#include "stages/prune/prune.h"

static const char *src_dir = ".";

typedef struct {
    const char *name, *fixture;
    prune_method method;
    prune_order order;
    int ls;
    prune_plan_layer plan[2];
    int hf; /* uniform: committed in tests/fixtures/pruned/<name> with transformers' logits */
} pcase;

static const pcase cases[] = {
    {"llama_gqa", "llama_gqa", PRUNE_OSSCAR, PRUNE_ORDER_TOGETHER, 4, {{12, 1}, {12, 1}}, 1},
    {"qwen2_bias", "qwen2_bias", PRUNE_OSSCAR, PRUNE_ORDER_ATTENTION_FIRST, 0, {{8, 1}, {8, 1}}, 1},
    {"llama_tied", "llama_tied", PRUNE_ACTIVATION, PRUNE_ORDER_TOGETHER, 0, {{16, 2}, {16, 2}}, 1},
    {"per_layer", "llama_gqa", PRUNE_MAGNITUDE, PRUNE_ORDER_TOGETHER, 0, {{4, 0}, {20, 1}}, 0},
};

static double tol_logits(const model_config *c, int T) {
    int Q = 0, I = 0;
    for (int l = 0; l < c->n_layers; l++) {
        if (c->layers[l].n_heads * c->head_dim > Q) Q = c->layers[l].n_heads * c->head_dim;
        if (c->layers[l].intermediate > I) I = c->layers[l].intermediate;
    }
    return 2 * TU_EPS * (c->n_layers * (2.0 * c->hidden + Q + I + c->head_dim + T) + c->hidden);
}

static float *logits_of(const model_config *cfg, const model_weights *w, const int *tok, const int *lens, int n, int ns) {
    model m;
    model_weights copy;
    if (weights_alloc(&copy, cfg)) printf("FAIL %s\n", err_msg()), exit(1);
    memcpy(copy.mem, w->mem, sizeof(float) * w->n_floats);
    if (model_init(&m, cfg, &copy) || model_reserve_train(&m, n)) printf("FAIL init: %s\n", err_msg()), exit(1);
    model_batch b = {.tokens = tok, .seq_lens = lens, .n_tokens = n, .n_seqs = ns};
    const float *hid;
    float *lg = tu_alloc((size_t)n * cfg->vocab);
    if (model_forward(&m, &b, &hid) || model_logits(&m, lg, hid, n)) printf("FAIL forward: %s\n", err_msg()), exit(1);
    model_free(&m);
    return lg;
}

static int *read_i32(const st_file *f, const char *name, int *n) {
    const st_tensor *t = st_find(f, name);
    if (!t || t->dtype != ST_I32) printf("FAIL %s: no I32 tensor %s\n", f->path, name), exit(1);
    int *x = malloc(sizeof(int) * (t->n_elems + 1));
    memcpy(x, t->data, sizeof(int) * t->n_elems);
    *n = (int)t->n_elems;
    return x;
}

/* Runs one case: prunes the fixture model, checks it, and (write_dir) saves the pruned checkpoint. */
static void run_case(const pcase *pc, const char *write_dir) {
    char *dir = xasprintf("%s/tests/fixtures/%s", src_dir, pc->fixture);
    char *refp = fs_join(dir, "reference.safetensors");
    model_config cfg;
    model_weights w;
    model m;
    st_file ref;
    if (checkpoint_load(dir, &cfg, &w) || model_init(&m, &cfg, &w) || st_open(&ref, refp))
        printf("FAIL %s: %s\n", pc->name, err_msg()), exit(1);
    int n, ns;
    int *tok = read_i32(&ref, "tokens", &n), *lens = read_i32(&ref, "seq_lens", &ns);
    /* calibration: 8 seeded sequences of 12..20 tokens */
    enum { CS = 8 };
    int clens[CS], ctok[CS * 20], ct = 0;
    tu_seed(4242);
    for (int s = 0; s < CS; s++) {
        clens[s] = 12 + (int)(tu_next() % 9);
        for (int i = 0; i < clens[s]; i++) ctok[ct++] = (int)(tu_next() % cfg.vocab);
    }
    prune_opts o = {.solver = {.method = pc->method, .damp = 0.01, .update_every = 1, .ls_iterations = pc->ls,
                               .refit = 1, .want_error = 1},
                    .order = pc->order, .chunk_tokens = 40};
    for (int l = 0; l < cfg.n_layers; l++) o.plan[l] = pc->plan[l];
    prune_masks mk;
    prune_layer_stats st[2];
    if (prune_masks_init(&mk, &cfg) || prune_model(&m, ctok, clens, CS, &mk, st, &o))
        printf("FAIL %s: prune: %s\n", pc->name, err_msg()), exit(1);
    for (int l = 0; l < cfg.n_layers; l++) {
        tu_expect(st[l].removed_mlp == pc->plan[l].mlp && st[l].removed_attn == pc->plan[l].kv,
                  "%s layer %d: removed %g neurons and %g KV groups (asked %d, %d)", pc->name, l, st[l].removed_mlp,
                  st[l].removed_attn, pc->plan[l].mlp, pc->plan[l].kv);
        tu_expect((pc->plan[l].mlp == 0) == isnan(st[l].rel_error_mlp) && (pc->plan[l].kv == 0) == isnan(st[l].rel_error_attn),
                  "%s layer %d: a relative error exactly for each pruned part", pc->name, l);
        tu_expect(!(st[l].rel_error_mlp < 0) && !(st[l].rel_error_attn < 0), "%s layer %d: errors >= 0", pc->name, l);
    }
    model_config sc;
    model_weights sw;
    if (prune_shrink(&sc, &sw, &m, &mk)) printf("FAIL shrink: %s\n", err_msg()), exit(1);
    int sizes_ok = 1;
    for (int l = 0; l < cfg.n_layers; l++) {
        const layer_config *a = &cfg.layers[l], *b = &sc.layers[l];
        const int kv = a->n_kv_heads - pc->plan[l].kv;
        sizes_ok &= b->n_kv_heads == kv && b->n_heads == kv * (a->n_heads / a->n_kv_heads) &&
                    b->intermediate == a->intermediate - pc->plan[l].mlp;
    }
    tu_expect(sizes_ok && sc.head_dim == cfg.head_dim, "%s: the shrunk config has the kept sizes and the same head_dim",
              pc->name);
    tu_expect(sc.tie_embeddings == cfg.tie_embeddings && (!sc.tie_embeddings || sw.lm_head == sw.embed),
              "%s: tied embeddings stay tied", pc->name);
    tu_expect(config_is_uniform(&sc) == pc->hf, "%s: the config is %s", pc->name, pc->hf ? "uniform" : "per-layer");
    int max_len = 0;
    for (int s = 0; s < ns; s++) max_len = lens[s] > max_len ? lens[s] : max_len;
    float *zeroed = logits_of(&cfg, &m.w, tok, lens, n, ns), *shrunk = logits_of(&sc, &sw, tok, lens, n, ns);
    char what[160];
    snprintf(what, sizeof what, "%s: shrunk model logits == zeroed model logits", pc->name);
    tu_expect_close(what, shrunk, zeroed, (size_t)n * cfg.vocab, tol_logits(&cfg, max_len));

    /* smelt's save reloads as the same model (per-layer sizes included) */
    char tmpl[] = "/tmp/smelt-prune-XXXXXX";
    if (!mkdtemp(tmpl)) printf("FAIL mkdtemp\n"), exit(1);
    const char *out = write_dir ? write_dir : tmpl;
    char *sub = fs_join(out, pc->name);
    model_config rc;
    model_weights rw;
    tu_expect(checkpoint_save(sub, &sc, &sw, ST_F32) == 0 && checkpoint_load(sub, &rc, &rw) == 0, "%s: save/load: %s",
              pc->name, err_msg());
    tu_expect(rw.n_floats == sw.n_floats && !memcmp(rw.mem, sw.mem, sizeof(float) * sw.n_floats) &&
                  !memcmp(rc.layers, sc.layers, sizeof(layer_config) * sc.n_layers),
              "%s: the saved checkpoint reloads bitwise with its per-layer sizes", pc->name);
    char *cfgtext = NULL;
    size_t cl;
    char *cp = fs_join(sub, "config.json");
    if (cp && fs_read_file(cp, 0, &cfgtext, &cl) == 0)
        tu_expect((strstr(cfgtext, "smelt_layers") == NULL) == pc->hf, "%s: config.json %s smelt_layers", pc->name,
                  pc->hf ? "is standard, without" : "lists per-layer sizes in");
    weights_free(&rw);
    free(cp), free(cfgtext);

    if (pc->hf && !write_dir) {
        /* the committed pruned checkpoint: the pass still makes it, and transformers' logits equal smelt's */
        char *fx = xasprintf("%s/tests/fixtures/pruned/%s", src_dir, pc->name), *hfp = fs_join(fx, "hf_logits.safetensors");
        model_config fc;
        model_weights fw;
        st_file hf;
        if (checkpoint_load(fx, &fc, &fw) || st_open(&hf, hfp))
            printf("FAIL %s: %s (regenerate with tools/make_prune_fixtures.py)\n", pc->name, err_msg()), exit(1);
        tu_expect(!memcmp(fc.layers, sc.layers, sizeof(layer_config) * sc.n_layers) && fw.n_floats == sw.n_floats,
                  "%s: the committed pruned checkpoint has the sizes the pass makes", pc->name);
        weights_tensor ta[64], tb[64];
        int nt = weights_tensors(&sw, &sc, ta, 64);
        weights_tensors(&fw, &fc, tb, 64);
        for (int t = 0; t < nt && fw.n_floats == sw.n_floats; t++) {
            size_t cnt = (size_t)ta[t].shape[0] * (ta[t].ndim == 2 ? (size_t)ta[t].shape[1] : 1);
            snprintf(what, sizeof what, "%s: %.96s == committed", pc->name, ta[t].name);
            tu_expect_close(what, ta[t].data, tb[t].data, cnt, ldexp(1, -22));
        }
        int hn, hns;
        int *htok = read_i32(&hf, "tokens", &hn), *hlens = read_i32(&hf, "seq_lens", &hns);
        const st_tensor *lt = st_find(&hf, "logits");
        float *want = tu_alloc((size_t)hn * fc.vocab), *got = logits_of(&fc, &fw, htok, hlens, hn, hns);
        if (!lt || st_to_f32(want, lt, hfp)) printf("FAIL %s: logits: %s\n", pc->name, err_msg()), exit(1);
        snprintf(what, sizeof what, "%s: transformers' logits on the pruned checkpoint == smelt's", pc->name);
        tu_expect_close(what, got, want, (size_t)hn * fc.vocab, tol_logits(&fc, max_len));
        st_close(&hf);
        weights_free(&fw);
        free(fx), free(hfp), free(htok), free(hlens), free(want), free(got);
    }
    fs_rm_rf(tmpl);
    free(sub), free(zeroed), free(shrunk);
    weights_free(&sw);
    prune_masks_free(&mk);
    model_free(&m);
    st_close(&ref);
    free(dir), free(refp), free(tok), free(lens);
}

/* inputs: dense: the stream passes the unpruned layers, so layer 1 is pruned on the dense model's
 * inputs: bitwise what pruning layer 1 alone (layer 0 untouched) gives with the default inputs. */
static void check_dense_inputs(const char *fixture) {
    char *dir = xasprintf("%s/tests/fixtures/%s", src_dir, fixture);
    model_config cfg;
    model_weights w;
    model a, b;
    if (checkpoint_load(dir, &cfg, &w) || model_init(&a, &cfg, &w) || checkpoint_load(dir, &cfg, &w) ||
        model_init(&b, &cfg, &w))
        printf("FAIL %s\n", err_msg()), exit(1);
    int tok[48], lens[3] = {16, 16, 16};
    tu_seed(11);
    for (int i = 0; i < 48; i++) tok[i] = (int)(tu_next() % cfg.vocab);
    prune_opts oa = {.solver = {.method = PRUNE_OSSCAR, .damp = 0.01, .update_every = 1, .want_error = 1},
                     .dense_inputs = 1, .chunk_tokens = 48, .plan = {{10, 1}, {8, 1}}};
    prune_opts ob = oa;
    ob.dense_inputs = 0;
    ob.plan[0] = (prune_plan_layer){0, 0};
    prune_masks ma, mb;
    prune_layer_stats sa[2], sb[2];
    if (prune_masks_init(&ma, &cfg) || prune_masks_init(&mb, &cfg) || prune_model(&a, tok, lens, 3, &ma, sa, &oa) ||
        prune_model(&b, tok, lens, 3, &mb, sb, &ob))
        printf("FAIL %s\n", err_msg()), exit(1);
    size_t n;
    const float *la = prune_layer_span(&a, 1, &n), *lb = prune_layer_span(&b, 1, &n);
    tu_expect(!memcmp(la, lb, n * sizeof(float)) && sa[1].rel_error_mlp == sb[1].rel_error_mlp &&
                  sa[1].rel_error_attn == sb[1].rel_error_attn && sa[0].removed_mlp == 10,
              "%s, inputs dense: layer 1 pruned on the unpruned model's inputs (bitwise as pruning it alone)", fixture);
    prune_masks_free(&ma), prune_masks_free(&mb);
    model_free(&a), model_free(&b);
    free(dir);
}

/* The layer checkpoint: saved, counted, restored bitwise into a fresh copy of the unpruned model;
 * another fingerprint does not count; a damaged file is refused naming the fault. */
static void check_ckpt(const char *fixture) {
    char *dir = xasprintf("%s/tests/fixtures/%s", src_dir, fixture);
    model_config cfg;
    model_weights w;
    model m, fresh;
    if (checkpoint_load(dir, &cfg, &w) || model_init(&m, &cfg, &w) || checkpoint_load(dir, &cfg, &w) ||
        model_init(&fresh, &cfg, &w))
        printf("FAIL %s\n", err_msg()), exit(1);
    int tok[40], lens[2] = {20, 20};
    tu_seed(7);
    for (int i = 0; i < 40; i++) tok[i] = (int)(tu_next() % cfg.vocab);
    prune_opts o = {.solver = {.method = PRUNE_OSSCAR, .damp = 0.01, .update_every = 2, .want_error = 1},
                    .chunk_tokens = 40, .plan = {{6, 1}, {6, 1}}};
    prune_masks mk, mk2;
    prune_layer_stats st[2], st2;
    if (prune_masks_init(&mk, &cfg) || prune_masks_init(&mk2, &cfg) || prune_model(&m, tok, lens, 2, &mk, st, &o))
        printf("FAIL %s\n", err_msg()), exit(1);
    char tmpl[] = "/tmp/smelt-prune-ckpt-XXXXXX";
    if (!mkdtemp(tmpl)) exit(1);
    tu_expect(prune_ckpt_save_layer(tmpl, "fp-a", &m, &mk, &st[0], 0) == 0, "save layer 0: %s", err_msg());
    tu_expect(prune_ckpt_layers(tmpl, "fp-a", &fresh) == 1, "one layer checkpointed");
    tu_expect(prune_ckpt_layers(tmpl, "fp-b", &fresh) == 0, "another stage's fingerprint does not count");
    size_t n;
    const float *a = prune_layer_span(&m, 0, &n), *b = prune_layer_span(&fresh, 0, &n);
    tu_expect(prune_ckpt_load_layer(tmpl, "fp-a", &fresh, &mk2, &st2, 0) == 0 && !memcmp(a, b, n * sizeof(float)) &&
                  !memcmp(mk.mlp[0], mk2.mlp[0], (size_t)cfg.layers[0].intermediate) &&
                  !memcmp(&st[0], &st2, sizeof st2),
              "layer 0 restored bitwise (weights, masks, stats): %s", err_msg());
    char *f = xasprintf("%s/layer-0000.bin", tmpl);
    FILE *fp = fopen(f, "r+b");
    if (fp) fseek(fp, 300, SEEK_SET), fputc('x', fp), fclose(fp);
    tu_expect(prune_ckpt_load_layer(tmpl, "fp-a", &fresh, &mk2, &st2, 0) != 0 && strstr(err_msg(), "damaged"),
              "a damaged layer checkpoint is refused: %s", err_msg());
    fs_rm_rf(tmpl);
    free(f), free(dir);
    prune_masks_free(&mk), prune_masks_free(&mk2);
    model_free(&m), model_free(&fresh);
}

static int compare(const char *a, const char *b, double tol) {
    model_config ca, cb;
    model_weights wa, wb;
    if (checkpoint_load(a, &ca, &wa) || checkpoint_load(b, &cb, &wb)) return printf("FAIL %s\n", err_msg()), 1;
    if (memcmp(ca.layers, cb.layers, sizeof(layer_config) * ca.n_layers) || wa.n_floats != wb.n_floats)
        return printf("FAIL %s and %s have different sizes\n", a, b), 1;
    weights_tensor ta[4 * MODEL_MAX_LAYERS * 16], tb[4 * MODEL_MAX_LAYERS * 16];
    const int nt = weights_tensors(&wa, &ca, ta, 4 * MODEL_MAX_LAYERS * 16);
    weights_tensors(&wb, &cb, tb, 4 * MODEL_MAX_LAYERS * 16);
    double worst = 0;
    for (int t = 0; t < nt; t++) {
        size_t cnt = (size_t)ta[t].shape[0] * (ta[t].ndim == 2 ? (size_t)ta[t].shape[1] : 1);
        worst = fmax(worst, tu_nerr(ta[t].data, tb[t].data, cnt));
    }
    printf("%s: largest normalized difference over %d tensors %.3g (tolerance %.3g)\n", worst <= tol ? "ok" : "FAIL", nt,
           worst, tol);
    weights_free(&wa), weights_free(&wb);
    return worst <= tol ? 0 : 1;
}

int main(int argc, char **argv) {
    if (argc == 5 && !strcmp(argv[1], "--compare")) return compare(argv[2], argv[3], atof(argv[4]));
    const char *write_dir = argc > 2 && !strcmp(argv[1], "--write-fixtures") ? argv[2] : NULL;
    if (getenv("SMELT_SOURCE_DIR")) src_dir = getenv("SMELT_SOURCE_DIR");
    kernels_set_threads(0);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        if (!write_dir || cases[i].hf) run_case(&cases[i], write_dir);
    if (!write_dir) {
        check_ckpt("qwen2_bias");
        check_dense_inputs("llama_gqa");
        tu_checks++;
        if (doc_params_check("prune", "docs/prune.md")) tu_failures++;
    }
    return tu_finish("test_prune_model");
}
