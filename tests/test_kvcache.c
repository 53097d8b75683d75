/* test_kvcache.c: KV-cache inference against the training forward. Prefill + one-token decode
 * steps must give, at every position, the logits of one full forward of the sequence; chunked
 * prefill (inputs longer than MODEL_INFER_CHUNK) and shared-prefix reuse (truncate, copy) too.
 * Tolerance: the two paths compute the same sums in different orders (attention tiles of other
 * shapes, other GEMM blockings), so each fp32 reduction may differ by its length times eps; a
 * layer chains reductions of lengths 2H + Q + I + D + T, the head one of length H, and both
 * sides carry such an error: tol = 2 eps (L (2H + Q + I + D + T) + H), normalized by max|logit|. */
#include "engine_testmodel.h"
#include "kernels/threads.h"

static double kv_tol(const model_config *c, int T) {
    const int Q = c->n_heads * c->head_dim;
    return 2 * TU_EPS * (c->n_layers * (2.0 * c->hidden + Q + c->intermediate + c->head_dim + T) + c->hidden);
}

/* Logits of one full training forward of tokens[0..n) as one sequence: [n, vocab]. */
static float *full_logits(model *m, const int *tokens, int n) {
    model_batch b = {.tokens = tokens, .seq_lens = &n, .n_tokens = n, .n_seqs = 1};
    const float *hid;
    float *lg = tu_alloc((size_t)n * m->cfg.vocab);
    if (model_forward(m, &b, &hid) || model_logits(m, lg, hid, n)) {
        printf("FAIL full forward: %s\n", err_msg());
        exit(1);
    }
    return lg;
}

static void test_decode(int kind) {
    model_config cfg = tm_config(kind);
    model m;
    const int T = 24, P = 9, V = cfg.vocab;
    if (model_init(&m, &cfg, NULL) || model_reserve_train(&m, 64)) exit(1);
    tm_randomize(&m, 7 + kind);
    int tok[24];
    for (int i = 0; i < T; i++) tok[i] = (int)(tu_next() % V);
    float *ref = full_logits(&m, tok, T);
    kv_cache kv;
    tu_expect(kv_cache_init(&kv, &cfg, T) == 0, "kv_cache_init: %s", err_msg());
    float *got = tu_alloc((size_t)T * V);
    int rows[24];
    for (int i = 0; i < P; i++) rows[i] = i;
    tu_expect(model_extend(&m, &kv, tok, P, rows, P, got) == 0, "prefill: %s", err_msg());
    for (int i = P; i < T; i++) tu_expect(model_decode(&m, &kv, tok[i], got + (size_t)i * V) == 0, "decode: %s", err_msg());
    tu_expect(kv.len == T, "cache length %d after %d tokens", kv.len, T);
    char what[128];
    snprintf(what, sizeof what, "kind %d: prefill %d + %d decode steps vs full forward, all positions", kind, P, T - P);
    tu_expect_close(what, got, ref, (size_t)T * V, kv_tol(&cfg, T));
    tu_expect(model_decode(&m, &kv, tok[0], got) != 0 && err_kind_get() == ERR_INPUT, "a full cache must be refused");

    /* shared prefix: prefix once, then two candidates by copy and by truncate */
    const int S = 6;
    kv_cache fork;
    tu_expect(kv_cache_init(&fork, &cfg, T) == 0, "fork init");
    float last1[64], last2[64], last3[64];
    tu_expect(kv_cache_truncate(&kv, P) == 0 && kv.len == P, "truncate to the prefix");
    tu_expect(kv_cache_copy(&fork, &kv, -1) == 0 && fork.len == P, "copy the prefix");
    int cand2[6];
    for (int i = 0; i < S; i++) cand2[i] = (int)(tu_next() % V);
    tu_expect(model_extend(&m, &fork, tok + P, S, NULL, 1, last1) == 0, "candidate 1 on the copy: %s", err_msg());
    tu_expect(model_extend(&m, &kv, cand2, S, NULL, 1, last2) == 0, "candidate 2: %s", err_msg());
    tu_expect(kv_cache_truncate(&kv, P) == 0, "truncate again");
    tu_expect(model_extend(&m, &kv, tok + P, S, NULL, 1, last3) == 0, "candidate 1 again: %s", err_msg());
    tu_expect(!memcmp(last1, last3, sizeof(float) * V),
              "the same suffix on a copied prefix and on a truncated cache must give identical logits");
    snprintf(what, sizeof what, "kind %d: candidate 1 after a shared prefix vs full forward", kind);
    tu_expect_close(what, last1, ref + (size_t)(P + S - 1) * V, V, kv_tol(&cfg, T));
    int seq2[32];
    memcpy(seq2, tok, sizeof(int) * P);
    memcpy(seq2 + P, cand2, sizeof(int) * S);
    float *ref2 = full_logits(&m, seq2, P + S);
    snprintf(what, sizeof what, "kind %d: candidate 2 after a shared prefix vs full forward", kind);
    tu_expect_close(what, last2, ref2 + (size_t)(P + S - 1) * V, V, kv_tol(&cfg, T));

    /* bad input */
    int bad_tok = V;
    tu_expect(model_extend(&m, &fork, &bad_tok, 1, NULL, 1, last1) != 0 && err_kind_get() == ERR_INPUT &&
                  fork.len == P + S,
              "an out-of-vocabulary token is refused and leaves the cache as it was");
    int bad_rows[2] = {1, 0};
    tu_expect(model_extend(&m, &fork, tok, 2, bad_rows, 2, got) != 0, "descending logit rows are refused");
    tu_expect(kv_cache_truncate(&fork, P + S + 1) != 0, "truncating beyond the length is refused");
    model_config other = tm_config(kind == 2 ? 0 : 2);
    kv_cache wrong;
    tu_expect(kv_cache_init(&wrong, &other, 8) == 0, "init");
    tu_expect(model_decode(&m, &wrong, 0, got) != 0 && err_kind_get() == ERR_INPUT, /* other layer count or kv width */
              "a cache of another architecture is refused");
    kv_cache_free(&wrong);
    kv_cache_free(&fork);
    kv_cache_free(&kv);
    free(ref), free(ref2), free(got);
    model_free(&m);
}

/* An input longer than one inference chunk is prefilled in chunks. */
static void test_chunked_prefill(void) {
    model_config cfg = tm_config(2);
    const int T = 600, V = cfg.vocab; /* MODEL_INFER_CHUNK is 512 */
    model m;
    if (model_init(&m, &cfg, NULL) || model_reserve_train(&m, T)) exit(1);
    tm_randomize(&m, 77);
    int *tok = malloc(sizeof(int) * T);
    for (int i = 0; i < T; i++) tok[i] = (int)(tu_next() % V);
    float *ref = full_logits(&m, tok, T);
    int rows[5] = {0, 300, 511, 512, T - 1};
    float *got = tu_alloc(5 * (size_t)V), *want = tu_alloc(5 * (size_t)V);
    for (int r = 0; r < 5; r++) memcpy(want + (size_t)r * V, ref + (size_t)rows[r] * V, sizeof(float) * V);
    kv_cache kv;
    tu_expect(kv_cache_init(&kv, &cfg, T) == 0, "init");
    tu_expect(model_extend(&m, &kv, tok, T, rows, 5, got) == 0, "chunked prefill: %s", err_msg());
    tu_expect_close("prefill of 600 tokens in chunks of 512 vs full forward (rows 0, 300, 511, 512, 599)", got, want,
                    5 * (size_t)V, kv_tol(&cfg, T));
    kv_cache_free(&kv);
    free(tok), free(ref), free(got), free(want);
    model_free(&m);
}

/* Bad input to the model API: an error of kind ERR_INPUT naming the problem, never a crash. */
static void test_bad_input(void) {
    model_config cfg = tm_config(0);
    model m;
    tu_expect(model_init(&m, &cfg, NULL) == 0, "init");
    int tok[8] = {1, 2, 3, 4, 5, 6, 7, 8}, lens[2] = {5, 3}, bad_lens[2] = {5, 2}, zero_len[2] = {8, 0};
    model_batch b = {.tokens = tok, .seq_lens = lens, .n_tokens = 8, .n_seqs = 2};
    const float *hid;
    tu_expect(model_forward(&m, &b, &hid) != 0 && strstr(err_msg(), "model_reserve_train"),
              "forward before model_reserve_train: %s", err_msg());
    tu_expect(model_reserve_train(&m, 6) == 0, "reserve");
    tu_expect(model_forward(&m, &b, &hid) != 0 && err_kind_get() == ERR_INPUT && strstr(err_msg(), "8 tokens"),
              "more tokens than reserved: %s", err_msg());
    tu_expect(model_reserve_train(&m, 8) == 0, "reserve again (resize)");
    b.seq_lens = bad_lens;
    tu_expect(model_forward(&m, &b, &hid) != 0 && strstr(err_msg(), "add up"), "lengths that do not add up: %s",
              err_msg());
    b.seq_lens = zero_len;
    tu_expect(model_forward(&m, &b, &hid) != 0 && strstr(err_msg(), "length 0"), "an empty sequence: %s", err_msg());
    b.seq_lens = lens;
    tok[6] = cfg.vocab;
    tu_expect(model_forward(&m, &b, &hid) != 0 && strstr(err_msg(), "vocabulary"), "a token out of range: %s", err_msg());
    tok[6] = -3;
    tu_expect(model_forward(&m, &b, &hid) != 0 && strstr(err_msg(), "vocabulary"), "a negative token: %s", err_msg());
    tok[6] = 7;
    float dh[8 * 24];
    tu_expect(model_backward(&m, dh) != 0, "backward after a failed forward is refused");
    int targets[8] = {1, 2, 3, -1, 4, 5, 999, -1};
    lm_ce_ctx ce = {.targets = targets, .weights = NULL};
    double loss;
    tu_expect(model_forward(&m, &b, &hid) == 0, "forward: %s", err_msg());
    tu_expect(model_lm_loss(&m, hid, dh, 8, lm_loss_ce, &ce, &loss) != 0 && strstr(err_msg(), "target 999"),
              "a target out of range: %s", err_msg());
    model_free(&m);
    model_config odd = cfg;
    odd.head_dim = 7;
    tu_expect(model_init(&m, &odd, NULL) != 0 && err_kind_get() == ERR_INPUT, "an odd head_dim: %s", err_msg());
    model_config gqa = cfg;
    gqa.layers[0].n_kv_heads = 3;
    tu_expect(model_init(&m, &gqa, NULL) != 0 && err_kind_get() == ERR_INPUT, "kv heads that do not divide: %s",
              err_msg());
    model_weights wrong;
    model_config small = tm_config(2);
    tu_expect(weights_alloc(&wrong, &small) == 0, "alloc");
    tu_expect(model_init(&m, &cfg, &wrong) != 0 && wrong.mem, "weights of another layout are refused (and kept)");
    weights_free(&wrong);
    kv_cache kv;
    tu_expect(kv_cache_init(&kv, &cfg, 0) != 0, "a cache of capacity 0 is refused");
}

int main(int argc, char **argv) {
    tu_verbose = argc > 1 && !strcmp(argv[1], "-v");
    kernels_set_threads(0);
    for (int kind = 0; kind < 3; kind++) test_decode(kind);
    test_chunked_prefill();
    test_bad_input();
    return tu_finish("test_kvcache");
}
