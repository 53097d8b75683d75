/* test_tokenizer.c: tokenizers against independent references: llama.cpp's golden ids for
 * Llama 3 and Qwen2, Meta's own check, a Python port of llama2.c's encode (tok512.bin), and
 * Hugging Face transformers' encodings of the tokenizer.json files smelt writes
 * (tools/tokenizer_hf_check.py); plus round trips of seeded random text (valid and invalid
 * UTF-8), thread safety and a long-word case that only an O(n log n) merge finishes.
 * Needs ../shared (tests/shared_dir.h: skips with 77 without it). */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/error.h"
#include "common/fsutil.h"
#include "common/sha256.h"
#include "model/tokenizer.h"
#include "tests/shared_dir.h"

static int failures;
#define CHECK(cond, ...)                                              \
    do {                                                              \
        if (!(cond)) {                                                \
            failures++;                                               \
            fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);     \
            fprintf(stderr, __VA_ARGS__);                             \
            fputc('\n', stderr);                                      \
        }                                                             \
    } while (0)

static const char *shared_root, *source_dir;

static char *path2(const char *a, const char *b) {
    char *p = fs_join(a, b);
    if (!p) abort();
    return p;
}

/* ---- fixtures: strings separated by "\n__ggml_vocab_test__\n" (as llama.cpp's
 * test-tokenizer-0 splits them), and one line of ids per string ---- */

typedef struct {
    char **s;
    size_t *len;
    size_t n;
} strlist;

typedef struct {
    int32_t **ids;
    size_t *n;
    size_t count;
    char header[512]; /* a leading "# ..." line, if any */
} idlist;

static void read_strings(const char *path, strlist *out) {
    static const char sep[] = "\n__ggml_vocab_test__\n";
    char *raw;
    size_t len;
    memset(out, 0, sizeof *out);
    if (fs_read_file(path, 0, &raw, &len)) {
        fprintf(stderr, "cannot read %s: %s\n", path, err_msg());
        exit(1);
    }
    size_t cap = 16, pos = 0;
    out->s = malloc(cap * sizeof *out->s);
    out->len = malloc(cap * sizeof *out->len);
    while (pos < len) {
        char *next = memmem(raw + pos, len - pos, sep, sizeof sep - 1);
        size_t end = next ? (size_t)(next - raw) : len;
        if (out->n == cap) {
            cap *= 2;
            out->s = realloc(out->s, cap * sizeof *out->s);
            out->len = realloc(out->len, cap * sizeof *out->len);
        }
        out->s[out->n] = malloc(end - pos + 1);
        memcpy(out->s[out->n], raw + pos, end - pos);
        out->s[out->n][end - pos] = 0;
        out->len[out->n++] = end - pos;
        if (!next) break;
        pos = end + sizeof sep - 1;
    }
    free(raw);
}

static void append_strings(strlist *a, const strlist *b) {
    a->s = realloc(a->s, (a->n + b->n) * sizeof *a->s);
    a->len = realloc(a->len, (a->n + b->n) * sizeof *a->len);
    for (size_t i = 0; i < b->n; i++) {
        a->s[a->n + i] = malloc(b->len[i] + 1);
        memcpy(a->s[a->n + i], b->s[i], b->len[i] + 1);
        a->len[a->n + i] = b->len[i];
    }
    a->n += b->n;
}

static void free_strings(strlist *l) {
    for (size_t i = 0; i < l->n; i++) free(l->s[i]);
    free(l->s);
    free(l->len);
}

static void read_ids(const char *path, idlist *out) {
    FILE *f = fopen(path, "r");
    memset(out, 0, sizeof *out);
    if (!f) {
        fprintf(stderr, "cannot open %s\n", path);
        exit(1);
    }
    char *line = NULL;
    size_t cap = 0, lcap = 0;
    ssize_t r;
    while ((r = getline(&line, &lcap, f)) >= 0) {
        if (line[0] == '#') {
            snprintf(out->header, sizeof out->header, "%s", line);
            continue;
        }
        if (out->count == cap) {
            cap = cap ? cap * 2 : 64;
            out->ids = realloc(out->ids, cap * sizeof *out->ids);
            out->n = realloc(out->n, cap * sizeof *out->n);
        }
        int32_t *ids = malloc(((size_t)r / 2 + 1) * sizeof *ids);
        size_t n = 0;
        for (char *p = line, *end;; p = end) {
            long v = strtol(p, &end, 10);
            if (end == p) break;
            ids[n++] = (int32_t)v;
        }
        out->ids[out->count] = ids;
        out->n[out->count++] = n;
    }
    free(line);
    fclose(f);
}

static void free_ids(idlist *l) {
    for (size_t i = 0; i < l->count; i++) free(l->ids[i]);
    free(l->ids);
    free(l->n);
}

static void print_ids(const char *what, const int32_t *ids, size_t n) {
    fprintf(stderr, "    %s:", what);
    for (size_t i = 0; i < n; i++) fprintf(stderr, " %ld", (long)ids[i]);
    fputc('\n', stderr);
}

/* Encodes each string, compares with the expected ids, and checks decode(encode(x)) == x. */
static void check_encodings(const tokenizer *tok, const char *name, const strlist *s, const idlist *want) {
    CHECK(s->n == want->count, "%s: %zu strings but %zu lines of ids", name, s->n, want->count);
    size_t bad = 0;
    for (size_t i = 0; i < s->n && i < want->count; i++) {
        int32_t *ids;
        size_t n;
        if (tokenizer_encode(tok, s->s[i], s->len[i], &ids, &n)) {
            CHECK(0, "%s: string %zu: encode failed: %s", name, i, err_msg());
            continue;
        }
        int same = n == want->n[i] && (n == 0 || !memcmp(ids, want->ids[i], n * sizeof *ids));
        CHECK(same, "%s: string %zu '%.60s' encodes differently", name, i, s->s[i]);
        if (!same && bad++ < 5) {
            print_ids("expected", want->ids[i], want->n[i]);
            print_ids("got     ", ids, n);
        }
        char *text;
        size_t len;
        int rc = tokenizer_decode(tok, ids, n, &text, &len);
        CHECK(rc == 0 && len == s->len[i] && !memcmp(text, s->s[i], len), "%s: string %zu does not round-trip", name, i);
        free(text);
        free(ids);
    }
}

static tokenizer *load_or_die(const char *spec) {
    tokenizer *tok;
    if (tokenizer_load(&tok, spec)) {
        fprintf(stderr, "FAIL: loading %s: %s\n", spec, err_msg());
        exit(1);
    }
    return tok;
}

static void check_ids(const tokenizer *tok, const char *text, const int32_t *want, size_t nwant) {
    int32_t *ids;
    size_t n;
    int rc = tokenizer_encode(tok, text, strlen(text), &ids, &n);
    CHECK(rc == 0 && n == nwant && !memcmp(ids, want, n * sizeof *ids), "'%s' with %s", text, tokenizer_source(tok));
    if (rc == 0 && (n != nwant || memcmp(ids, want, n * sizeof *ids))) {
        print_ids("expected", want, nwant);
        print_ids("got     ", ids, n);
    }
    free(ids);
}

/* ---- seeded random text ---- */

static uint64_t rng_state = 0x5eed1234abcdULL;
static uint32_t rnd(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state >> 16);
}

static size_t put_utf8(char *o, uint32_t cp) {
    if (cp < 0x80) return o[0] = (char)cp, 1;
    if (cp < 0x800) return o[0] = (char)(0xC0 | cp >> 6), o[1] = (char)(0x80 | (cp & 0x3F)), 2;
    if (cp < 0x10000) {
        o[0] = (char)(0xE0 | cp >> 12), o[1] = (char)(0x80 | ((cp >> 6) & 0x3F)), o[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (char)(0xF0 | cp >> 18), o[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (char)(0x80 | ((cp >> 6) & 0x3F)), o[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* Random valid UTF-8 (mostly ASCII and common scripts, any scalar value now and then), or
 * random bytes when raw. */
static size_t random_text(char *buf, size_t max_chars, int raw) {
    size_t n = 0, k = rnd() % (max_chars + 1);
    for (size_t i = 0; i < k; i++) {
        if (raw) {
            buf[n++] = (char)(rnd() & 0xFF);
            continue;
        }
        uint32_t r = rnd() % 100, cp;
        if (r < 50) cp = 32 + rnd() % 95;
        else if (r < 60) cp = " \n\t\r"[rnd() % 4];
        else if (r < 70) cp = 0xA0 + rnd() % 0x500;
        else if (r < 80) cp = 0x4E00 + rnd() % 0x5000;
        else if (r < 85) cp = 0x1F300 + rnd() % 0x300;
        else if (r < 90) cp = 0x2000 + rnd() % 0x70;
        else {
            do cp = rnd() % 0x110000;
            while (cp >= 0xD800 && cp <= 0xDFFF);
        }
        n += put_utf8(buf + n, cp);
    }
    return n;
}

static void check_random_roundtrips(const tokenizer *tok, int count) {
    char *buf = malloc(4 * 200 + 4);
    for (int t = 0; t < count; t++) {
        int raw = t % 4 == 3; /* one in four is arbitrary bytes: invalid UTF-8 */
        size_t len = random_text(buf, 200, raw);
        int32_t *ids;
        size_t n;
        char *text;
        size_t tl;
        int rc = tokenizer_encode(tok, buf, len, &ids, &n);
        CHECK(rc == 0, "%s: encode of random text %d failed: %s", tokenizer_source(tok), t, err_msg());
        if (rc) continue;
        int ok = 1;
        for (size_t i = 0; i < n; i++) ok &= ids[i] >= 0 && ids[i] < tokenizer_vocab_size(tok);
        rc = tokenizer_decode(tok, ids, n, &text, &tl);
        CHECK(ok && rc == 0 && tl == len && !memcmp(text, buf, len), "%s: random %s text %d does not round-trip",
              tokenizer_source(tok), raw ? "byte" : "UTF-8", t);
        free(text);
        free(ids);
    }
    free(buf);
}

/* ---- tests ---- */

static void test_golden(const tokenizer *llama3, const tokenizer *qwen2) {
    char *gdir = path2(shared_root, "tokenizers/golden");
    char *inp = path2(gdir, "vocab-test.inp"), *l3 = path2(gdir, "ggml-vocab-llama-bpe.gguf.out"),
         *q2 = path2(gdir, "ggml-vocab-qwen2.gguf.out");
    strlist s;
    idlist a, b;
    read_strings(inp, &s);
    read_ids(l3, &a);
    read_ids(q2, &b);
    CHECK(s.n == 46, "expected the 46 golden strings, read %zu", s.n);
    check_encodings(llama3, "llama3 golden", &s, &a);
    check_encodings(qwen2, "qwen2 golden", &s, &b);
    free_strings(&s);
    free_ids(&a);
    free_ids(&b);
    free(inp), free(l3), free(q2), free(gdir);
    /* Meta's check from the Llama 3 repository */
    static const int32_t meta[] = {2028, 374, 264, 1296, 11914, 13};
    check_ids(llama3, "This is a test sentence.", meta, 6);
}

static void test_specials(const tokenizer *llama3, const tokenizer *qwen2, const tokenizer *bytes) {
    CHECK(tokenizer_vocab_size(llama3) == 128256, "llama3 vocab %ld", (long)tokenizer_vocab_size(llama3));
    CHECK(tokenizer_bos_id(llama3) == 128000 && tokenizer_eos_id(llama3) == 128001, "llama3 bos/eos");
    CHECK(tokenizer_token_id(llama3, "<|begin_of_text|>") == 128000, "llama3 <|begin_of_text|>");
    CHECK(tokenizer_token_id(llama3, "<|eot_id|>") == 128009, "llama3 <|eot_id|>");
    CHECK(tokenizer_token_id(llama3, "<|reserved_special_token_250|>") == 128255, "llama3 last reserved");
    CHECK(tokenizer_is_special(llama3, 128009) && !tokenizer_is_special(llama3, 2028), "llama3 is_special");
    CHECK(tokenizer_token_id(llama3, " test") == 1296, "llama3 ' test'");
    CHECK(tokenizer_token_id(llama3, "no such token, surely") == -1, "absent token");
    static const int32_t with_special[] = {128000, 9906, 128009};
    check_ids(llama3, "<|begin_of_text|>Hello<|eot_id|>", with_special, 3);
    CHECK(tokenizer_vocab_size(qwen2) == 151646, "qwen2 vocab %ld", (long)tokenizer_vocab_size(qwen2));
    CHECK(tokenizer_token_id(qwen2, "<|endoftext|>") == 151643 && tokenizer_token_id(qwen2, "<|im_start|>") == 151644,
          "qwen2 specials");
    CHECK(tokenizer_eos_id(qwen2) == 151645 && tokenizer_bos_id(qwen2) == -1, "qwen2 eos from tokenizer_config.json");
    CHECK(tokenizer_vocab_size(bytes) == TOKENIZER_BYTES_VOCAB, "builtin vocab");
    CHECK(tokenizer_bos_id(bytes) == TOKENIZER_BYTES_BOS && tokenizer_eos_id(bytes) == TOKENIZER_BYTES_EOS, "bytes bos");
    CHECK(tokenizer_token_id(bytes, " yes") == TOKENIZER_BYTES_YES && tokenizer_token_id(bytes, " no") == TOKENIZER_BYTES_NO,
          "bytes yes/no");
    CHECK(tokenizer_token_id(bytes, "<|pad|>") == TOKENIZER_BYTES_PAD, "bytes pad");
    static const int32_t yes[] = {'O', 'K', '?', TOKENIZER_BYTES_YES, TOKENIZER_BYTES_EOS};
    check_ids(bytes, "OK? yes<|end_of_text|>", yes, 5);
    int32_t bad = 999999;
    char *text;
    size_t len;
    CHECK(tokenizer_decode(llama3, &bad, 1, &text, &len) == -1 && strstr(err_msg(), "999999"), "decode of a bad id");
    CHECK(tokenizer_piece(llama3, -1, &len) == NULL && tokenizer_piece(llama3, 128256, &len) == NULL, "piece range");
}

static void test_llama2c(void) {
    char *tpath = path2(shared_root, "models/stories260K/tok512.bin");
    char *dir = path2(source_dir, "tests/data/tokenizer");
    char *inp = path2(dir, "llama2c.inp"), *outp = path2(dir, "llama2c.out");
    tokenizer *tok = load_or_die(tpath);
    CHECK(tokenizer_vocab_size(tok) == 512 && tokenizer_bos_id(tok) == 1 && tokenizer_eos_id(tok) == 2, "tok512 sizes");
    strlist s;
    idlist want;
    read_strings(inp, &s);
    read_ids(outp, &want);
    check_encodings(tok, "llama2c (Python port of run.c)", &s, &want);
    /* BOS decodes to nothing and the dummy-prefix space goes, as sentencepiece decodes */
    static const int32_t story[] = {1, 403, 407, 261, 378};
    char *text;
    size_t len;
    CHECK(tokenizer_decode(tok, story, 5, &text, &len) == 0 && !strcmp(text, "Once upon a time"), "decode '%s'", text);
    free(text);
    check_random_roundtrips(tok, 400);
    CHECK(tokenizer_save_hf(tok, "/nonexistent-dir-smelt") == -1 && strstr(err_msg(), "llama2.c"), "save of llama2.c");
    tokenizer_free(tok);
    free_strings(&s);
    free_ids(&want);
    free(tpath), free(dir), free(inp), free(outp);
}

/* smelt writes tokenizer.json; transformers encoded the strings with it (tools/
 * tokenizer_hf_check.py); smelt must write the same bytes and, loading them back, encode
 * the same ids. The original tokenizer must agree as well. */
static void test_saved_hf(const char *name, const tokenizer *orig, const char *tmp) {
    char *dir = path2(source_dir, "tests/data/tokenizer");
    char fixture[64];
    snprintf(fixture, sizeof fixture, "hf_%s.out", name);
    char *fpath = path2(dir, fixture), *gpath = path2(shared_root, "tokenizers/golden/vocab-test.inp");
    char *epath = path2(dir, "extra.inp"), *rpath = path2(dir, "random.inp");
    char *out = path2(tmp, name);
    CHECK(tokenizer_save_hf(orig, out) == 0, "%s: save: %s", name, err_msg());
    char *tj = path2(out, "tokenizer.json"), *tc = path2(out, "tokenizer_config.json");
    char h1[SHA256_HEX_LEN + 1] = "", h2[SHA256_HEX_LEN + 1] = "", want[512];
    sha256_file(h1, tj, NULL);
    sha256_file(h2, tc, NULL);
    idlist ids;
    read_ids(fpath, &ids);
    snprintf(want, sizeof want, "# sha256 tokenizer.json %s tokenizer_config.json %s ", h1, h2);
    CHECK(!strncmp(ids.header, want, strlen(want)),
          "%s: the saved files differ from those transformers checked; rerun tools/tokenizer_hf_check.py\n"
          "    fixture: %s    now:     %s", name, ids.header, want);
    strlist s, e, r;
    read_strings(gpath, &s);
    read_strings(epath, &e);
    read_strings(rpath, &r);
    append_strings(&s, &e);
    append_strings(&s, &r);
    tokenizer *back = load_or_die(out);
    CHECK(tokenizer_format(back) == TOKENIZER_HF_JSON, "%s: saved format", name);
    CHECK(tokenizer_vocab_size(back) == tokenizer_vocab_size(orig) && tokenizer_bos_id(back) == tokenizer_bos_id(orig) &&
              tokenizer_eos_id(back) == tokenizer_eos_id(orig), "%s: saved sizes/bos/eos", name);
    char what[96];
    snprintf(what, sizeof what, "%s saved tokenizer.json vs transformers", name);
    check_encodings(back, what, &s, &ids);
    snprintf(what, sizeof what, "%s original vs transformers", name);
    check_encodings(orig, what, &s, &ids);
    check_random_roundtrips(back, 200);
    /* saving what was loaded from the saved tokenizer.json writes the same bytes again */
    char again_name[64];
    snprintf(again_name, sizeof again_name, "%s-again", name);
    char *again = path2(tmp, again_name), *tj2 = path2(again, "tokenizer.json"), *tc2 = path2(again, "tokenizer_config.json");
    char h3[SHA256_HEX_LEN + 1] = "", h4[SHA256_HEX_LEN + 1] = "";
    CHECK(tokenizer_save_hf(back, again) == 0, "%s: second save: %s", name, err_msg());
    sha256_file(h3, tj2, NULL);
    sha256_file(h4, tc2, NULL);
    CHECK(!strcmp(h1, h3) && !strcmp(h2, h4), "%s: save(load(save(x))) differs from save(x)", name);
    free(again), free(tj2), free(tc2);
    tokenizer_free(back);
    free_strings(&s);
    free_strings(&e);
    free_strings(&r);
    free_ids(&ids);
    free(dir), free(fpath), free(gpath), free(epath), free(rpath), free(out), free(tj), free(tc);
}

typedef struct {
    const tokenizer *tok;
    const strlist *s;
    int32_t **ids;
    size_t *n;
    int rc;
} thread_job;

static void *thread_encode(void *arg) {
    thread_job *j = arg;
    for (int rep = 0; rep < 20; rep++)
        for (size_t i = 0; i < j->s->n; i++) {
            int32_t *ids;
            size_t n;
            if (tokenizer_encode(j->tok, j->s->s[i], j->s->len[i], &ids, &n)) j->rc = -1;
            else if (rep == 0) j->ids[i] = ids, j->n[i] = n;
            else {
                if (n != j->n[i] || memcmp(ids, j->ids[i], n * sizeof *ids)) j->rc = -1;
                free(ids);
            }
        }
    return NULL;
}

static void test_threads(const tokenizer *tok) {
    char *gpath = path2(shared_root, "tokenizers/golden/vocab-test.inp");
    strlist s;
    read_strings(gpath, &s);
    thread_job jobs[2];
    pthread_t th[2];
    for (int t = 0; t < 2; t++) {
        jobs[t] = (thread_job){tok, &s, calloc(s.n, sizeof(int32_t *)), calloc(s.n, sizeof(size_t)), 0};
        pthread_create(&th[t], NULL, thread_encode, &jobs[t]);
    }
    for (int t = 0; t < 2; t++) pthread_join(th[t], NULL);
    CHECK(jobs[0].rc == 0 && jobs[1].rc == 0, "concurrent encodes disagree or fail");
    for (size_t i = 0; i < s.n; i++) {
        CHECK(jobs[0].n[i] == jobs[1].n[i] && !memcmp(jobs[0].ids[i], jobs[1].ids[i], jobs[0].n[i] * sizeof(int32_t)),
              "threads disagree on string %zu", i);
        free(jobs[0].ids[i]);
        free(jobs[1].ids[i]);
    }
    for (int t = 0; t < 2; t++) free(jobs[t].ids), free(jobs[t].n);
    free_strings(&s);
    free(gpath);
}

/* One 1 MiB pre-token of letters: an O(n^2) merge would not finish within the test timeout. */
static void test_long_word(const tokenizer *tok) {
    size_t len = 1 << 20;
    char *text = malloc(len);
    for (size_t i = 0; i < len; i++) text[i] = "abcdefghij"[(i * 7 + i / 13) % 10];
    int32_t *ids;
    size_t n;
    char *back;
    size_t bl;
    int rc = tokenizer_encode(tok, text, len, &ids, &n);
    CHECK(rc == 0 && n > 0 && n < len, "long word: encode (%zu tokens)", n);
    if (!rc) {
        CHECK(tokenizer_decode(tok, ids, n, &back, &bl) == 0 && bl == len && !memcmp(back, text, len),
              "long word: round trip");
        free(back);
        free(ids);
    }
    free(text);
}

int main(void) {
    shared_root = shared_dir();
    source_dir = getenv("SMELT_SOURCE_DIR");
    if (!source_dir) source_dir = ".";
    char probe[4096];
    if (!shared_file(probe, sizeof probe, "tokenizers/golden/vocab-test.inp", "every tokenizer test here (golden strings)"))
        return SHARED_SKIPPED_ALL;
    char *l3p = path2(shared_root, "tokenizers/llama3/tokenizer.model");
    char *q2p = path2(shared_root, "tokenizers/qwen2/vocab.json");
    tokenizer *llama3 = load_or_die(l3p), *qwen2 = load_or_die(q2p), *bytes = load_or_die("builtin:bytes");
    free(l3p), free(q2p);
    CHECK(tokenizer_format(llama3) == TOKENIZER_TIKTOKEN && tokenizer_format(qwen2) == TOKENIZER_HF_VOCAB, "formats");

    test_golden(llama3, qwen2);
    test_specials(llama3, qwen2, bytes);
    test_llama2c();
    char tmp[] = "/tmp/smelt-test-tokenizer-XXXXXX";
    if (!mkdtemp(tmp)) {
        perror("mkdtemp");
        return 1;
    }
    test_saved_hf("bytes", bytes, tmp);
    test_saved_hf("llama3", llama3, tmp);
    test_saved_hf("qwen2", qwen2, tmp);
    fs_rm_rf(tmp);
    check_random_roundtrips(llama3, 400);
    check_random_roundtrips(qwen2, 400);
    check_random_roundtrips(bytes, 400);
    test_threads(llama3);
    test_long_word(llama3);
    test_long_word(qwen2);

    tokenizer_free(llama3);
    tokenizer_free(qwen2);
    tokenizer_free(bytes);
    if (failures) {
        fprintf(stderr, "%d check(s) failed\n", failures);
        return 1;
    }
    printf("tokenizer tests passed\n");
    return 0;
}
