/* test_smollm2.c: the real SmolLM2-135M-Instruct GGUF file of ../shared through smelt, against
 * transformers loading the same file with gguf_file= (fixtures: tools/make_smollm2_fixtures.py).
 * - Tokenizer from the GGUF metadata: the ids of the 47 golden strings equal those of llama.cpp's
 *   `smollm` pre-tokenizer (digits one by one), which transformers' GGUF tokenizer matches on all
 *   but the string holding "½" (transformers does not know `smollm` and uses GPT-2's regex, which
 *   keeps "½" with the letters around it); the same file with tokenizer.ggml.pre = "gpt-2" gives
 *   transformers' ids on all 47. Chat-formatted conversations: text and ids equal.
 * - The tokenizer written back as a vocabulary-only GGUF reloads to the same ids.
 * - Chat templates: ChatML (the file's, Qwen2's) and Llama 3 render as jinja2 does.
 * - Logits on three prompts (one chat-formatted) within the fp32 tolerance below, the same top-1
 *   token, and greedy decoding of "What is the capital of France?" gives transformers' 12 tokens:
 *   "The capital of France is Paris.<|im_end|>".
 *
 * Logit tolerance (normalized: max|smelt - torch| / max|torch| over the recorded logits of a
 * position): both sides compute in fp32 with different summation orders; each reduction of
 * length n may differ by n eps (eps = 2^-23) on each side. A layer chains reductions of lengths
 * H (q/k/v), D + T (scores, softmax, values), Q (o), H (gate/up) and I (down); the head adds H:
 *     tol = 2 eps (L (2H + Q + I + D + T) + H),
 * with L = 30, H = Q = 576, I = 1536, D = 64 and T the prompt length: about 0.024.
 * Needs ../shared: skips (77) without it, fails with SMELT_REQUIRE_SHARED=1 (tests/shared_dir.h). */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/fsutil.h"
#include "kernels/threads.h"
#include "model/chat.h"
#include "model/checkpoint.h"
#include "model/gguf.h"
#include "model/gguf_write.h"
#include "model/model.h"
#include "model/tokenizer.h"
#include "tests/ckpt_testutil.h"
#include "tests/shared_dir.h"

static cJSON *fx;
static const char *model_path;

static int ids_equal(const int32_t *a, size_t na, const cJSON *b) {
    if ((int)na != cJSON_GetArraySize(b)) return 0;
    size_t i = 0;
    for (const cJSON *e = b->child; e; e = e->next, i++)
        if (a[i] != e->valueint) return 0;
    return 1;
}

static int encode_matches(const tokenizer *tok, const char *text, const cJSON *want) {
    int32_t *ids;
    size_t n;
    if (tokenizer_encode(tok, text, strlen(text), &ids, &n)) {
        t_fail(__FILE__, __LINE__, "encode failed: %s", err_msg());
        err_clear();
        return 0;
    }
    int ok = ids_equal(ids, n, want);
    free(ids);
    return ok;
}

/* ---- tokenizer ---- */

static void check_golden(const tokenizer *tok, const char *key, const char *what, int *n_ok, int *n) {
    *n_ok = *n = 0;
    for (const cJSON *g = cJSON_GetObjectItem(fx, "golden")->child; g; g = g->next, (*n)++) {
        const char *text = cJSON_GetObjectItem(g, "text")->valuestring;
        int ok = encode_matches(tok, text, cJSON_GetObjectItem(g, key));
        if (!ok && strcmp(key, "ids")) CHECK(0, "%s: golden string '%s' tokenizes differently", what, text);
        *n_ok += ok;
    }
}

static void test_tokenizer(tokenizer *tok) {
    int ok, n;
    check_golden(tok, "ids_smollm", "smollm", &ok, &n);
    printf("tokenizer: %d of %d golden strings equal llama.cpp's smollm pre-tokenizer\n", ok, n);
    CHECK(n == 47, "47 golden strings (46 and the empty one after the last separator)");
    check_golden(tok, "ids", "transformers", &ok, &n);
    CHECK(ok == n - 1, "transformers' GGUF tokenizer differs on exactly one string, found %d", n - ok);
    printf("tokenizer: %d of %d equal transformers' own GGUF tokenizer (it splits \"½\" with GPT-2's regex)\n", ok, n);
    CHECK(!tokenizer_add_bos(tok) && tokenizer_bos_id(tok) == 1 && tokenizer_eos_id(tok) == 2,
          "no BOS added (add_bos_token false); bos 1, eos 2");
    CHECK(tokenizer_add_bos(tok) == cJSON_IsTrue(cJSON_GetObjectItem(fx, "add_bos")), "add_bos as transformers");
    /* chat conversations through the file's template */
    chat_template t;
    EXPECT_OK(chat_template_parse(&t, tokenizer_chat_template(tok)), "the chat template");
    CHECK(t.family == CHAT_CHATML && t.default_system &&
              !strcmp(t.default_system, "You are a helpful AI assistant named SmolLM, trained by Hugging Face"),
          "ChatML with SmolLM2's default system message");
    int n_chat = 0;
    for (const cJSON *c = cJSON_GetObjectItem(fx, "chat")->child; c; c = c->next, n_chat++) {
        chat_message m[8];
        int k = 0;
        for (const cJSON *e = cJSON_GetObjectItem(c, "messages")->child; e && k < 8; e = e->next, k++)
            m[k] = (chat_message){cJSON_GetObjectItem(e, "role")->valuestring, cJSON_GetObjectItem(e, "content")->valuestring};
        strbuf sb = STRBUF_INIT;
        EXPECT_OK(chat_render(&sb, &t, m, k, cJSON_IsTrue(cJSON_GetObjectItem(c, "add_generation_prompt")), NULL), "render");
        CHECK(!strcmp(sb_str(&sb), cJSON_GetObjectItem(c, "text")->valuestring), "chat %d renders as transformers: %s",
              n_chat, sb_str(&sb));
        CHECK(encode_matches(tok, sb_str(&sb), cJSON_GetObjectItem(c, "ids")), "chat %d: ids as transformers", n_chat);
        sb_free(&sb);
    }
    chat_template_free(&t);
    printf("chat: %d conversations render and tokenize as transformers' apply_chat_template\n", n_chat);
}

/* The other families: Qwen2's template (ChatML with a `set system_message`) and Llama 3's. */
static void test_templates(void) {
    int n = 0;
    for (const cJSON *c = cJSON_GetObjectItem(fx, "templates")->child; c; c = c->next, n++) {
        chat_template t;
        EXPECT_OK(chat_template_parse(&t, cJSON_GetObjectItem(c, "template")->valuestring), "template");
        chat_message m[8];
        int k = 0;
        for (const cJSON *e = cJSON_GetObjectItem(c, "messages")->child; e && k < 8; e = e->next, k++)
            m[k] = (chat_message){cJSON_GetObjectItem(e, "role")->valuestring, cJSON_GetObjectItem(e, "content")->valuestring};
        strbuf sb = STRBUF_INIT;
        EXPECT_OK(chat_render(&sb, &t, m, k, cJSON_IsTrue(cJSON_GetObjectItem(c, "add_generation_prompt")),
                              cJSON_GetObjectItem(c, "bos")->valuestring),
                  "render");
        CHECK(!strcmp(sb_str(&sb), cJSON_GetObjectItem(c, "text")->valuestring), "%s template, case %d: %s",
              cJSON_GetObjectItem(c, "family")->valuestring, n, sb_str(&sb));
        sb_free(&sb);
        chat_template_free(&t);
    }
    chat_template t;
    EXPECT_ERR(chat_template_parse(&t, "{{ messages }}"), ERR_INPUT, "ChatML", "Llama 3");
    EXPECT_ERR(chat_template_parse(&t, NULL), ERR_INPUT, "no chat template");
    printf("chat: %d Qwen2 and Llama 3 renderings equal jinja2's\n", n);
}

/* Vocabulary-only GGUF files: smelt's own export reloads to the same tokenizer; the file's
 * metadata with pre = "gpt-2" gives transformers' GPT-2-regex ids. */
static void test_vocab_files(const tokenizer *tok) {
    const char *path = t_path("vocab.gguf");
    EXPECT_OK(tokenizer_save_gguf(tok, path), "tokenizer_save_gguf");
    tokenizer *back = NULL;
    EXPECT_OK(tokenizer_load(&back, path), "reloading it");
    if (back) {
        int ok, n;
        check_golden(back, "ids_smollm", "reloaded", &ok, &n);
        CHECK(ok == n && tokenizer_add_bos(back) == 0 && tokenizer_bos_id(back) == 1 && tokenizer_eos_id(back) == 2 &&
                  tokenizer_chat_template(back) && !strcmp(tokenizer_chat_template(back), tokenizer_chat_template(tok)),
              "the vocabulary-only GGUF reloads to the same tokenizer");
        tokenizer_free(back);
    }
    gguf_file f;
    EXPECT_OK(gguf_open(&f, model_path), "open");
    gguf_writer *w = gguf_writer_new();
    for (int64_t i = 0; i < f.n_kv; i++)
        if (strcmp(f.kv[i].key, "tokenizer.ggml.pre")) EXPECT_OK(gguf_copy_kv(w, &f.kv[i]), f.kv[i].key);
    EXPECT_OK(gguf_set_str(w, "tokenizer.ggml.pre", "gpt-2", 5), "pre");
    const char *p2 = t_path("gpt2.gguf");
    EXPECT_OK(gguf_writer_write(w, p2), "write");
    gguf_writer_free(w);
    gguf_close(&f);
    back = NULL;
    EXPECT_OK(tokenizer_load(&back, p2), "gpt-2 variant");
    if (back) {
        int ok, n;
        check_golden(back, "ids", "gpt-2", &ok, &n);
        CHECK(ok == n, "pre gpt-2: %d of %d golden strings as transformers", ok, n);
        printf("pre-tokenizer gpt-2: %d of %d golden strings equal transformers'\n", ok, n);
        tokenizer_free(back);
    }
}

/* ---- logits and greedy decoding ---- */

static void test_logits(model *m) {
    const int L = 30, H = 576, Q = 576, I = 1536, D = 64;
    const double eps = 0x1p-23;
    const cJSON *fixed = cJSON_GetObjectItem(fx, "fixed_ids");
    for (const cJSON *p = cJSON_GetObjectItem(fx, "logits")->child; p; p = p->next) {
        const cJSON *ids = cJSON_GetObjectItem(p, "ids"), *rows = cJSON_GetObjectItem(p, "rows");
        int T = cJSON_GetArraySize(ids), n_rows = cJSON_GetArraySize(rows);
        int *tok = malloc(sizeof(int) * (size_t)T), out_rows[8];
        for (int i = 0; i < T; i++) tok[i] = cJSON_GetArrayItem(ids, i)->valueint;
        for (int r = 0; r < n_rows; r++) out_rows[r] = cJSON_GetObjectItem(cJSON_GetArrayItem(rows, r), "pos")->valueint;
        float *logits = malloc(sizeof(float) * (size_t)n_rows * (size_t)m->cfg.vocab);
        kv_cache kv;
        EXPECT_OK(kv_cache_init(&kv, &m->cfg, T), "kv cache");
        EXPECT_OK(model_extend(m, &kv, tok, T, out_rows, n_rows, logits), "forward");
        double tol = 2 * eps * (L * (2.0 * H + Q + I + D + T) + H), worst = 0;
        for (int r = 0; r < n_rows; r++) {
            const cJSON *row = cJSON_GetArrayItem(rows, r);
            const float *z = logits + (size_t)r * (size_t)m->cfg.vocab;
            double scale = cJSON_GetObjectItem(row, "max_abs")->valuedouble, err = 0;
            const cJSON *tid = cJSON_GetObjectItem(row, "top_ids"), *tv = cJSON_GetObjectItem(row, "top");
            for (int k = 0; k < cJSON_GetArraySize(tid); k++)
                err = fmax(err, fabs(z[cJSON_GetArrayItem(tid, k)->valueint] - cJSON_GetArrayItem(tv, k)->valuedouble));
            const cJSON *fv = cJSON_GetObjectItem(row, "fixed");
            for (int k = 0; k < cJSON_GetArraySize(fixed); k++)
                err = fmax(err, fabs(z[cJSON_GetArrayItem(fixed, k)->valueint] - cJSON_GetArrayItem(fv, k)->valuedouble));
            int arg = 0;
            for (int v = 1; v < m->cfg.vocab; v++)
                if (z[v] > z[arg]) arg = v;
            CHECK(arg == cJSON_GetArrayItem(tid, 0)->valueint, "%s pos %d: top-1 %d, transformers %d",
                  cJSON_GetObjectItem(p, "label")->valuestring, out_rows[r], arg, cJSON_GetArrayItem(tid, 0)->valueint);
            worst = fmax(worst, err / scale);
        }
        CHECK(worst <= tol, "%s: normalized logit error %.3g above the tolerance %.3g",
              cJSON_GetObjectItem(p, "label")->valuestring, worst, tol);
        printf("logits %-9s T=%3d: normalized error %.2e (tolerance %.2e), top-1 equal\n",
               cJSON_GetObjectItem(p, "label")->valuestring, T, worst, tol);
        kv_cache_free(&kv);
        free(tok);
        free(logits);
    }
}

static void test_greedy(model *m, const tokenizer *tok) {
    const cJSON *g = cJSON_GetObjectItem(fx, "greedy");
    const cJSON *pids = cJSON_GetObjectItem(g, "prompt_ids"), *want = cJSON_GetObjectItem(g, "ids");
    int T = cJSON_GetArraySize(pids), N = cJSON_GetArraySize(want);
    int *ids = malloc(sizeof(int) * (size_t)(T + N));
    for (int i = 0; i < T; i++) ids[i] = cJSON_GetArrayItem(pids, i)->valueint;
    float *z = malloc(sizeof(float) * (size_t)m->cfg.vocab);
    kv_cache kv;
    EXPECT_OK(kv_cache_init(&kv, &m->cfg, T + N), "kv");
    EXPECT_OK(model_extend(m, &kv, ids, T, NULL, 1, z), "prefill");
    int32_t got[64];
    for (int k = 0; k < N; k++) {
        int arg = 0;
        for (int v = 1; v < m->cfg.vocab; v++)
            if (z[v] > z[arg]) arg = v;
        got[k] = arg;
        if (k + 1 < N) EXPECT_OK(model_decode(m, &kv, arg, z), "decode");
    }
    char *text = NULL;
    size_t len;
    EXPECT_OK(tokenizer_decode(tok, got, (size_t)N, &text, &len), "decode text");
    CHECK(ids_equal(got, (size_t)N, want), "greedy ids equal transformers' (%s)", text ? text : "?");
    CHECK(text && !strcmp(text, cJSON_GetObjectItem(g, "text")->valuestring) &&
              !strncmp(text, "The capital of France is Paris.", 31),
          "greedy text: '%s'", text ? text : "?");
    printf("greedy: '%s'\n", text ? text : "?");
    free(text);
    kv_cache_free(&kv);
    free(ids);
    free(z);
}

int main(void) {
    static char path[4096];
    if (!shared_file(path, sizeof path, "models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf",
                     "every SmolLM2 check"))
        return SHARED_SKIPPED_ALL;
    model_path = path;
    char fpath[4200], *text;
    size_t len;
    snprintf(fpath, sizeof fpath, "%s/reference.json", t_fixture("smollm2"));
    if (fs_read_file(fpath, 0, &text, &len)) {
        fprintf(stderr, "FAIL: %s (run tools/make_smollm2_fixtures.py)\n", err_msg());
        return 1;
    }
    fx = cJSON_Parse(text);
    free(text);
    tokenizer *tok = NULL;
    EXPECT_OK(tokenizer_load(&tok, path), "the GGUF tokenizer");
    if (tok) {
        test_tokenizer(tok);
        test_vocab_files(tok);
    }
    test_templates();
    model_config cfg;
    model_weights w;
    model m;
    memset(&m, 0, sizeof m);
    EXPECT_OK(checkpoint_load(path, &cfg, &w), "checkpoint_load of the GGUF file");
    if (w.mem && model_init(&m, &cfg, &w) == 0) {
        CHECK(cfg.n_layers == 30 && cfg.hidden == 576 && cfg.n_heads == 9 && cfg.n_kv_heads == 3 && cfg.head_dim == 64 &&
                  cfg.intermediate == 1536 && cfg.vocab == 49152 && cfg.tie_embeddings && cfg.rope_theta == 100000.0f &&
                  cfg.max_pos == 8192 && cfg.rms_eps == 1e-5f && !strcmp(cfg.model_type, "llama") && cfg.bos_id == 1 &&
                  cfg.eos_id == 2,
              "the config transformers builds (30 layers, 576, 9/3 heads, 1536, vocab 49152, tied, theta 1e5)");
        test_logits(&m);
        if (tok) test_greedy(&m, tok);
        model_free(&m);
    }
    tokenizer_free(tok);
    cJSON_Delete(fx);
    return t_finish("test_smollm2");
}
