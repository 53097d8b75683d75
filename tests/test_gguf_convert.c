/* test_gguf_convert.c: models and tokenizers written as GGUF by smelt and read back.
 * - The fixture models (llama GQA, tied, Qwen2 with biases; hidden 16, so 2-D weights fall back
 *   to F16 for the block formats): F32 GGUF reloads bit for bit (the Llama q/k permutation and
 *   its inverse cancel exactly), F16/BF16 within half an ulp of their format.
 * - SmolLM2 (../shared) -> GGUF Q8_0, Q4_0, Q4_1 read back within each format's rounding, checked
 *   per block of 32 (the round trip through a Hugging Face folder is tests/gguf_cli.sh):
 *     Q8_0  |w - w'| <= d (1/2 + 127 * 2^-11)        d = max|w| / 127 (fp16 d rounds by 2^-11)
 *     Q4_0  |w - w'| <= |d| (1 + 16 * 2^-11)          d = w_maxabs / -8 (the clamp at 15 costs 1 d)
 *     Q4_1  |w - w'| <= d (1/2 + 15 * 2^-11) + |min| 2^-11 + d 2^-20   d = (max - min) / 15
 * - Tokenizers as vocabulary-only GGUF files: Llama 3 (tiktoken) and Qwen2 (vocab.json) exported and
 *   reloaded give llama.cpp's golden ids (pre-tokenizers llama-bpe and qwen2); the llama2.c
 *   tokenizer (tok512.bin) exported as a SentencePiece ("llama") GGUF with stories260K's weights
 *   encodes like the original and the weights come back bit for bit.
 * Parts needing ../shared skip with one line each (tests/shared_dir.h). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/fsutil.h"
#include "model/checkpoint.h"
#include "model/gguf.h"
#include "model/gguf_export.h"
#include "model/tokenizer.h"
#include "tests/ckpt_testutil.h"
#include "tests/shared_dir.h"

static int have_shared(const char *rel, char *path, size_t n) { return shared_file(path, n, rel, rel); }

/* Compares every tensor of two models of the same config; bound(type, a, b, n) says how far
 * b may be from a (n values of one row). Returns the number of tensors out of bounds. */
typedef int (*within_fn)(ggml_type t, const float *a, const float *b, int64_t n);

static int exact(ggml_type t, const float *a, const float *b, int64_t n) {
    (void)t;
    return !memcmp(a, b, (size_t)n * sizeof(float));
}

/* F16/BF16: round to nearest gives a relative error of at most 2^-11 / 2^-8 (normal values). */
static int half_ulp(ggml_type t, const float *a, const float *b, int64_t n) {
    float rel = t == GGML_BF16 ? 0x1p-8f : 0x1p-11f;
    for (int64_t i = 0; i < n; i++)
        if (fabsf(a[i] - b[i]) > rel * fabsf(a[i]) + 0x1p-24f) return 0;
    return 1;
}

static int block_rounding(ggml_type t, const float *a, const float *b, int64_t n) {
    if (t == GGML_F32) return exact(t, a, b, n);
    for (int64_t k = 0; k + 32 <= n; k += 32) {
        float amax = 0, vmax = 0, mn = a[k], mx = a[k];
        for (int j = 0; j < 32; j++) {
            float v = a[k + j];
            if (fabsf(v) > amax) amax = fabsf(v), vmax = v;
            mn = fminf(mn, v), mx = fmaxf(mx, v);
        }
        float bound;
        if (t == GGML_Q8_0) bound = amax / 127 * (0.5f + 127 * 0x1p-11f);
        else if (t == GGML_Q4_0) bound = fabsf(vmax / 8) * (1 + 16 * 0x1p-11f);
        else bound = (mx - mn) / 15 * (0.5f + 15 * 0x1p-11f + 0x1p-20f) + fabsf(mn) * 0x1p-11f;
        for (int j = 0; j < 32; j++)
            if (fabsf(a[k + j] - b[k + j]) > bound + 0x1p-24f) {
                fprintf(stderr, "  block at %lld: |%g - %g| > %g\n", (long long)k, a[k + j], b[k + j], bound);
                return 0;
            }
    }
    return 1;
}

static int compare_models(const model_config *c, const model_weights *a, const model_weights *b, ggml_type t,
                          within_fn ok, const char *what) {
    int n = weights_tensors(a, c, NULL, 0), bad = 0;
    weights_tensor *ta = calloc((size_t)n, sizeof *ta), *tb = calloc((size_t)n, sizeof *tb);
    weights_tensors(a, c, ta, n);
    weights_tensors(b, c, tb, n);
    for (int i = 0; i < n; i++) {
        int64_t rows = ta[i].ndim == 2 ? ta[i].shape[0] : 1, cols = ta[i].ndim == 2 ? ta[i].shape[1] : ta[i].shape[0];
        /* 1-D tensors stay F32; rows that are not whole blocks fall back to F16 */
        ggml_type tt = ta[i].ndim == 1 ? GGML_F32 : (cols % ggml_blck_size(t) ? GGML_F16 : t);
        within_fn f = tt == GGML_F32 ? exact : (tt == GGML_F16 || tt == GGML_BF16) ? half_ulp : ok;
        int good = 1;
        for (int64_t r = 0; r < rows && good; r++) good = f(tt, ta[i].data + r * cols, tb[i].data + r * cols, cols);
        if (!good) {
            CHECK(0, "%s: tensor %s (%s) is not within its format's rounding", what, ta[i].name, ggml_type_name(tt));
            bad++;
        }
    }
    free(ta), free(tb);
    return bad;
}

static void test_fixture_models(void) {
    static const char *const fixtures[] = {"llama_gqa", "llama_tied", "qwen2_bias"};
    static const ggml_type types[] = {GGML_F32, GGML_F16, GGML_BF16, GGML_Q8_0};
    for (size_t f = 0; f < 3; f++) {
        model_config c, c2;
        model_weights w, w2;
        EXPECT_OK(checkpoint_load(t_fixture(fixtures[f]), &c, &w), fixtures[f]);
        if (!w.mem) continue;
        for (size_t k = 0; k < 4; k++) {
            char name[64];
            snprintf(name, sizeof name, "%s_%s.gguf", fixtures[f], ggml_type_name(types[k]));
            const char *path = t_path(name);
            EXPECT_OK(gguf_save_model(path, &c, &w, NULL, types[k], fixtures[f]), name);
            EXPECT_OK(checkpoint_load(path, &c2, &w2), name);
            if (!w2.mem) continue;
            CHECK(t_config_equal(&c, &c2), "%s: the config survives", name);
            compare_models(&c, &w, &w2, types[k], block_rounding, name);
            weights_free(&w2);
        }
        weights_free(&w);
    }
    printf("fixture models: F32 GGUF bit-exact, F16/BF16/Q8_0 within rounding (llama GQA, tied, qwen2 bias)\n");
}

static void test_smollm2(void) {
    char path[4096];
    if (!have_shared("models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf", path, sizeof path)) return;
    model_config c, c2;
    model_weights w, w2;
    tokenizer *tok = NULL;
    EXPECT_OK(checkpoint_load(path, &c, &w), "SmolLM2");
    EXPECT_OK(tokenizer_load(&tok, path), "its tokenizer");
    if (!w.mem || !tok) return;
    static const ggml_type types[] = {GGML_Q8_0, GGML_Q4_0, GGML_Q4_1};
    for (int k = 0; k < 3; k++) {
        char name[64];
        snprintf(name, sizeof name, "smollm2_%s.gguf", ggml_type_name(types[k]));
        const char *out = t_path(name);
        EXPECT_OK(gguf_save_model(out, &c, &w, tok, types[k], "SmolLM2"), name);
        EXPECT_OK(checkpoint_load(out, &c2, &w2), name);
        if (!w2.mem) continue;
        CHECK(t_config_equal(&c, &c2), "%s: config", name);
        int bad = compare_models(&c, &w, &w2, types[k], block_rounding, name);
        printf("SmolLM2 -> %s -> smelt: %s\n", name, bad ? "OUT OF BOUNDS" : "every block within the format's rounding");
        weights_free(&w2);
        unlink(out);
    }
    tokenizer_free(tok);
    weights_free(&w);
}

/* ---- tokenizers ---- */

static char *read_all(const char *path, size_t *len) {
    char *s = NULL;
    if (fs_read_file(path, 0, &s, len)) {
        CHECK(0, "%s", err_msg());
        err_clear();
    }
    return s;
}

/* The golden strings (separated by "\n__ggml_vocab_test__\n") against one line of ids each. */
static int golden(const tokenizer *tok, const char *out_name, const char *what) {
    char inp[4096], outp[4096];
    snprintf(inp, sizeof inp, "%s/tokenizers/golden/vocab-test.inp", shared_dir());
    snprintf(outp, sizeof outp, "%s/tokenizers/golden/%s", shared_dir(), out_name);
    size_t li, lo;
    char *in = read_all(inp, &li), *ids = read_all(outp, &lo);
    if (!in || !ids) return 0;
    static const char sep[] = "\n__ggml_vocab_test__\n";
    int n = 0, ok = 0;
    char *p = in, *line = ids;
    while (p && *line) {
        char *next = strstr(p, sep);
        size_t len = next ? (size_t)(next - p) : strlen(p);
        char *nl = strchr(line, '\n');
        if (nl) *nl = 0;
        int32_t *got;
        size_t ng;
        int good = 0;
        if (tokenizer_encode(tok, p, len, &got, &ng) == 0) {
            good = 1;
            char *q = line;
            size_t k = 0;
            for (; good; k++) {
                char *end;
                long v = strtol(q, &end, 10);
                if (end == q) break;
                good = k < ng && got[k] == v;
                q = end;
            }
            good = good && k == ng;
            free(got);
        }
        if (!good) CHECK(0, "%s: golden string %d ('%.*s') differs", what, n, (int)len, p);
        ok += good;
        n++;
        line = nl ? nl + 1 : line + strlen(line);
        p = next ? next + strlen(sep) : NULL;
    }
    free(in), free(ids);
    printf("%s: %d of %d golden strings as llama.cpp\n", what, ok, n);
    return ok;
}

static void test_tokenizer_files(void) {
    char path[4096];
    static const struct {
        const char *rel, *golden, *what;
    } cases[] = {
        {"tokenizers/llama3/tokenizer.model", "ggml-vocab-llama-bpe.gguf.out", "Llama 3 as GGUF (llama-bpe)"},
        {"tokenizers/qwen2/vocab.json", "ggml-vocab-qwen2.gguf.out", "Qwen2 as GGUF (qwen2)"},
    };
    for (size_t i = 0; i < 2; i++) {
        if (!have_shared(cases[i].rel, path, sizeof path)) continue;
        tokenizer *tok = NULL, *back = NULL;
        EXPECT_OK(tokenizer_load(&tok, path), cases[i].rel);
        const char *out = t_path("vocab.gguf");
        EXPECT_OK(tokenizer_save_gguf(tok, out), "save");
        EXPECT_OK(tokenizer_load(&back, out), "reload");
        if (back) {
            CHECK(tokenizer_format(back) == TOKENIZER_GGUF && tokenizer_vocab_size(back) == tokenizer_vocab_size(tok) &&
                      tokenizer_bos_id(back) == tokenizer_bos_id(tok) && tokenizer_eos_id(back) == tokenizer_eos_id(tok) &&
                      tokenizer_add_bos(back) == tokenizer_add_bos(tok),
                  "%s: vocabulary, BOS/EOS and add-BOS survive", cases[i].what);
            golden(back, cases[i].golden, cases[i].what);
        }
        tokenizer_free(tok);
        tokenizer_free(back);
    }
}

/* llama2.c model and tokenizer -> one GGUF with a SentencePiece tokenizer. */
static void test_stories260k(void) {
    char bin[4096], tokp[4096];
    if (!have_shared("models/stories260K/stories260K.bin", bin, sizeof bin) ||
        !have_shared("models/stories260K/tok512.bin", tokp, sizeof tokp))
        return;
    model_config c, c2;
    model_weights w, w2;
    tokenizer *tok = NULL, *back = NULL;
    EXPECT_OK(checkpoint_load(bin, &c, &w), "stories260K");
    EXPECT_OK(tokenizer_load(&tok, tokp), "tok512");
    if (!w.mem || !tok) return;
    const char *out = t_path("stories.gguf");
    EXPECT_OK(gguf_save_model(out, &c, &w, tok, GGML_F32, "stories260K"), "save");
    EXPECT_OK(checkpoint_load(out, &c2, &w2), "reload");
    EXPECT_OK(tokenizer_load(&back, out), "SPM tokenizer from GGUF");
    if (w2.mem) {
        CHECK(!compare_models(&c, &w, &w2, GGML_F32, exact, "stories260K"), "stories260K weights bit for bit");
        weights_free(&w2);
    }
    if (back) {
        static const char *const texts[] = {"Once upon a time, there was a little girl named Lily.", " two  spaces\n\n",
                                            "\xc3\xa9t\xc3\xa9 \xe2\x82\xac 12345", ""};
        int same = 0;
        for (int i = 0; i < 4; i++) {
            int32_t *a, *b;
            size_t na, nb;
            EXPECT_OK(tokenizer_encode(tok, texts[i], strlen(texts[i]), &a, &na), "encode");
            EXPECT_OK(tokenizer_encode(back, texts[i], strlen(texts[i]), &b, &nb), "encode");
            int eq = na == nb && !memcmp(a, b, na * sizeof *a);
            CHECK(eq, "tok512 via GGUF encodes '%s' like tok512.bin", texts[i]);
            same += eq;
            char *d;
            size_t dl;
            EXPECT_OK(tokenizer_decode(back, b, nb, &d, &dl), "decode");
            CHECK(dl == strlen(texts[i]) && !memcmp(d, texts[i], dl), "decode(encode) round trip");
            free(d), free(a), free(b);
        }
        CHECK(tokenizer_bos_id(back) == 1 && tokenizer_eos_id(back) == 2 && tokenizer_add_bos(back),
              "SentencePiece: BOS 1 added, EOS 2");
        printf("stories260K + tok512 as one GGUF: weights bit-exact, %d of 4 texts tokenized alike\n", same);
        tokenizer_free(back);
    }
    tokenizer_free(tok);
    weights_free(&w);
}

int main(void) {
    shared_dir(); /* fails at once when the folder is required and absent */
    test_fixture_models();
    test_tokenizer_files();
    test_stories260k();
    test_smollm2();
    return t_finish("test_gguf_convert");
}
