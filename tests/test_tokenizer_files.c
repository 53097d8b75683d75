/* test_tokenizer_files.c: tokenizer file handling on small files written here: the features of
 * tokenizer.json (both merge forms, ignore_merges, added/special tokens with lstrip, rstrip and
 * single_word, Split behaviors, ByteLevel's own regex and prefix space) with expected ids worked
 * out by hand from the tiny vocabularies, and every malformed input we could think of (bad JSON,
 * unknown merge tokens, huge counts, truncated llama2.c files, missing files): each must fail
 * with a message naming the fault, never crash. Runs without ../shared (uses it when present). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/error.h"
#include "common/fsutil.h"
#include "common/strbuf.h"
#include "model/tokenizer.h"
#include "tests/shared_dir.h"

static int failures;
#define CHECK(cond, ...)                                          \
    do {                                                          \
        if (!(cond)) {                                            \
            failures++;                                           \
            fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__); \
            fprintf(stderr, __VA_ARGS__);                         \
            fputc('\n', stderr);                                  \
        }                                                         \
    } while (0)

static char tmpdir[] = "/tmp/smelt-test-tokfiles-XXXXXX";

static char *write_file(const char *name, const void *data, size_t n) {
    char *p = fs_join(tmpdir, name);
    char *slash = strrchr(p, '/');
    *slash = 0;
    fs_mkdir_p(p, 0755);
    *slash = '/';
    FILE *f = fopen(p, "wb");
    if (!f || fwrite(data, 1, n, f) != n || fclose(f)) {
        perror(p);
        exit(1);
    }
    return p;
}

static char *write_str(const char *name, const char *text) { return write_file(name, text, strlen(text)); }

/* GPT-2's byte-level alphabet, written out independently of model/tokenizer.c. */
static void put_bytelevel(strbuf *sb, unsigned b) {
    unsigned cp;
    if ((b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174) {
        cp = b;
    } else {
        unsigned n = 0;
        for (unsigned c = 0; c < b; c++)
            if (!((c >= 33 && c <= 126) || (c >= 161 && c <= 172) || c >= 174)) n++;
        cp = 256 + n;
    }
    if (cp == '"' || cp == '\\') sb_putc(sb, '\\');
    if (cp < 0x80) sb_putc(sb, (char)cp);
    else sb_putc(sb, (char)(0xC0 | cp >> 6)), sb_putc(sb, (char)(0x80 | (cp & 0x3F)));
}

/* A tokenizer.json with the 256 byte tokens (ids = byte values), the extra tokens
 * (byte-level strings, ids 256...), the given merges JSON, added tokens and pre-tokenizer. */
static char *tiny_json(const char *name, const char *const *extra, const char *merges, const char *added,
                       const char *pretok, int ignore_merges) {
    strbuf sb = STRBUF_INIT;
    sb_printf(&sb, "{\"version\": \"1.0\", \"added_tokens\": [%s], \"normalizer\": null, \"pre_tokenizer\": %s, "
                   "\"decoder\": {\"type\": \"ByteLevel\"}, \"model\": {\"type\": \"BPE\", \"ignore_merges\": %s, "
                   "\"vocab\": {",
              added, pretok, ignore_merges ? "true" : "false");
    for (unsigned b = 0; b < 256; b++) {
        sb_puts(&sb, b ? ", \"" : "\"");
        put_bytelevel(&sb, b);
        sb_printf(&sb, "\": %u", b);
    }
    for (int i = 0; extra && extra[i]; i++) sb_printf(&sb, ", \"%s\": %d", extra[i], 256 + i);
    sb_printf(&sb, "}, \"merges\": %s}}", merges);
    char *p = write_file(name, sb.buf, sb.len);
    sb_free(&sb);
    return p;
}

static void expect_ids(const tokenizer *tok, const char *text, const int32_t *want, size_t nwant, const char *what) {
    int32_t *ids;
    size_t n;
    int rc = tokenizer_encode(tok, text, strlen(text), &ids, &n);
    int ok = rc == 0 && n == nwant && !memcmp(ids, want, n * sizeof *ids);
    CHECK(ok, "%s: '%s'", what, text);
    if (!ok && rc == 0) {
        fprintf(stderr, "    got:");
        for (size_t i = 0; i < n; i++) fprintf(stderr, " %ld", (long)ids[i]);
        fputc('\n', stderr);
    }
    if (rc == 0) free(ids);
}

static tokenizer *must_load(const char *spec) {
    tokenizer *tok;
    if (tokenizer_load(&tok, spec)) {
        fprintf(stderr, "FAIL: loading %s: %s\n", spec, err_msg());
        exit(1);
    }
    return tok;
}

#define IDS(...) (const int32_t[]){__VA_ARGS__}, sizeof((const int32_t[]){__VA_ARGS__}) / sizeof(int32_t)

static const char *const EXTRA[] = {"ab", "abc", "Ġa", "Ġab", "bc", NULL}; /* ids 256..260 */
#define BYTELEVEL_PLAIN "{\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"use_regex\": false}"

static void test_features(void) {
    /* the same merges in both forms */
    char *str = tiny_json("str/tokenizer.json", EXTRA, "[\"Ġ a\", \"a b\", \"ab c\", \"Ġa b\"]", "", BYTELEVEL_PLAIN, 0);
    char *lst = tiny_json("lst/tokenizer.json", EXTRA, "[[\"Ġ\", \"a\"], [\"a\", \"b\"], [\"ab\", \"c\"], [\"Ġa\", \"b\"]]",
                          "", BYTELEVEL_PLAIN, 0);
    tokenizer *a = must_load(str), *b = must_load(lst);
    /* "abc ab" is one pre-token: Ġ+a (rank 0) -> Ġa, a+b -> ab, ab+c -> abc, Ġa+b -> Ġab */
    expect_ids(a, "abc ab", IDS(257, 259), "string merges");
    expect_ids(b, "abc ab", IDS(257, 259), "list merges");
    /* "bc" is in the vocabulary but no merge makes it: without ignore_merges it stays b, c */
    expect_ids(a, "bc", IDS('b', 'c'), "no merge for bc");
    expect_ids(a, "abab", IDS(256, 256), "repeated pair");
    tokenizer_free(a);
    tokenizer_free(b);

    /* ignore_merges: a pre-token that is a whole vocabulary entry is emitted as is */
    char *ign = tiny_json("ign/tokenizer.json", EXTRA, "[\"a b\"]", "", BYTELEVEL_PLAIN, 1);
    tokenizer *c = must_load(ign);
    expect_ids(c, "bc", IDS(260), "ignore_merges: bc");
    expect_ids(c, "abc", IDS(257), "ignore_merges: abc");
    expect_ids(c, "abcd", IDS(256, 'c', 'd'), "ignore_merges: abcd merges");
    tokenizer_free(c);

    /* leftmost merge first among equal ranks: "aaa" with merge a a -> [aa, a] */
    static const char *const AA[] = {"aa", NULL};
    char *aa = tiny_json("aa/tokenizer.json", AA, "[\"a a\"]", "", BYTELEVEL_PLAIN, 0);
    tokenizer *d = must_load(aa);
    expect_ids(d, "aaa", IDS(256, 'a'), "leftmost first");
    expect_ids(d, "aaaaa", IDS(256, 256, 'a'), "leftmost first x5");
    tokenizer_free(d);

    /* added tokens: special ones are never split; lstrip/rstrip swallow spaces; single_word
     * matches only between word boundaries; the longest match wins */
    const char *added =
        "{\"id\": 261, \"content\": \"<s>\", \"special\": true},"
        "{\"id\": 262, \"content\": \"<sep>\", \"special\": true, \"lstrip\": true, \"rstrip\": true},"
        "{\"id\": 263, \"content\": \"cat\", \"special\": false, \"single_word\": true},"
        "{\"id\": 264, \"content\": \"<sep>x\", \"special\": true}";
    char *add = tiny_json("add/tokenizer.json", EXTRA, "[\"a b\"]", added, BYTELEVEL_PLAIN, 0);
    tokenizer *e = must_load(add);
    expect_ids(e, "<s>ab<s>", IDS(261, 256, 261), "special tokens");
    expect_ids(e, "a  <sep>  b", IDS('a', 262, 'b'), "lstrip/rstrip");
    expect_ids(e, "cat cats", IDS(263, ' ', 'c', 'a', 't', 's'), "single_word");
    expect_ids(e, "<sep>xy", IDS(264, 'y'), "longest added token");
    CHECK(tokenizer_is_special(e, 261) && !tokenizer_is_special(e, 263), "special flags");
    CHECK(tokenizer_bos_id(e) == 261, "bos by name <s>");
    tokenizer_free(e);

    /* ByteLevel with its own GPT-2 regex and a prefix space: "ab ab" -> " ab", " ab" */
    char *gpt2 = tiny_json("gpt2/tokenizer.json", EXTRA, "[\"Ġ a\", \"Ġa b\", \"a b\"]", "",
                           "{\"type\": \"ByteLevel\", \"add_prefix_space\": true, \"use_regex\": true}", 0);
    tokenizer *f = must_load(gpt2);
    expect_ids(f, "ab ab", IDS(259, 259), "ByteLevel regex + prefix space");
    tokenizer_free(f);

    /* Split Removed drops the matches; Isolated keeps them as pieces */
    char *rem = tiny_json("rem/tokenizer.json", EXTRA, "[\"a b\"]", "",
                          "{\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": \"Split\", \"pattern\": {\"String\": "
                          "\"-\"}, \"behavior\": \"Removed\", \"invert\": false}, " BYTELEVEL_PLAIN "]}",
                          0);
    tokenizer *g = must_load(rem);
    expect_ids(g, "a-b-ab", IDS('a', 'b', 256), "Split Removed");
    tokenizer_free(g);
    char *iso = tiny_json("iso/tokenizer.json", EXTRA, "[\"a b\"]", "",
                          "{\"type\": \"Split\", \"pattern\": {\"Regex\": \"b\"}, \"behavior\": \"Isolated\"}", 0);
    tokenizer *h = must_load(iso);
    expect_ids(h, "abab", IDS('a', 'b', 'a', 'b'), "Split Isolated keeps pieces apart");
    tokenizer_free(h);
    /* a regex that needs more than the JIT's default 32 KiB stack on a long text */
    char *deep = tiny_json("deep/tokenizer.json", EXTRA, "[\"a b\"]", "",
                           "{\"type\": \"Split\", \"pattern\": {\"Regex\": \"(a|b)+x\"}, \"behavior\": \"Isolated\"}", 0);
    tokenizer *k = must_load(deep);
    size_t dl = 400001;
    char *dt = malloc(dl + 1);
    for (size_t i = 0; i < dl - 1; i++) dt[i] = "ab"[i % 2];
    dt[dl - 1] = 'x', dt[dl] = 0;
    int32_t *ids;
    size_t n;
    int rc = tokenizer_encode(k, dt, dl, &ids, &n);
    CHECK(rc == 0 && n == dl / 2 + 1 && ids[0] == 256 && ids[n - 1] == 'x', "deep regex: rc %d (%s), %zu ids", rc,
          err_msg(), n);
    if (!rc) free(ids);
    free(dt);
    tokenizer_free(k);
    free(str), free(lst), free(ign), free(aa), free(add), free(gpt2), free(rem), free(iso), free(deep);
}

/* ---- malformed input ---- */

static void expect_fail(const char *spec, const char *needle, const char *what) {
    tokenizer *tok = (tokenizer *)(uintptr_t)1;
    err_clear();
    int rc = tokenizer_load(&tok, spec);
    CHECK(rc == -1 && tok == NULL, "%s: loading succeeded", what);
    CHECK(err_kind_get() == ERR_INPUT || err_kind_get() == ERR_CORRUPT, "%s: error kind %d (%s)", what, err_kind_get(),
          err_msg());
    CHECK(strstr(err_msg(), needle) != NULL, "%s: message '%s' lacks '%s'", what, err_msg(), needle);
    if (rc == 0) tokenizer_free(tok);
}

static void fail_json(const char *name, const char *text, const char *needle) {
    char *p = write_str(name, text);
    expect_fail(p, needle, name);
    free(p);
}

static void test_bad_json(void) {
    fail_json("bad1/tokenizer.json", "{\"model\": {\"type\": \"BPE\", \"vocab\": {", "not valid JSON");
    fail_json("bad2/tokenizer.json", "{\"model\": {\"type\": \"WordPiece\", \"vocab\": {}}}", "not supported");
    fail_json("bad3/tokenizer.json", "{\"model\": 3}", "no \"model\" object");
    fail_json("bad4/tokenizer.json", "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": -1}, \"merges\": []}}", "id");
    fail_json("bad5/tokenizer.json", "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 1e12}, \"merges\": []}}",
              "out of range");
    fail_json("bad6/tokenizer.json", "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": \"x\"}, \"merges\": []}}",
              "not a number");
    fail_json("bad7/tokenizer.json", "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 0}, \"merges\": []}}",
              "defined twice");
    fail_json("bad8/tokenizer.json", "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": [\"a q\"]}}",
              "not in the vocabulary");
    fail_json("bad9/tokenizer.json",
              "{\"model\": {\"type\": \"BPE\", \"byte_fallback\": true, \"vocab\": {\"a\": 0}, \"merges\": []}}",
              "byte-level");
    fail_json("bad10/tokenizer.json", "[1, 2, 3]", "no \"model\" object");
    fail_json("bad11/tokenizer.json", "", "not valid JSON");
    /* structurally fine but lacking byte tokens, or with unsupported parts */
    char *p;
    p = tiny_json("bad12/tokenizer.json", EXTRA, "[\"ab\"]", "", BYTELEVEL_PLAIN, 0);
    expect_fail(p, "two tokens", "merge without a space"), free(p);
    p = tiny_json("bad13/tokenizer.json", EXTRA, "[\"a zz\"]", "", BYTELEVEL_PLAIN, 0);
    expect_fail(p, "'zz'", "merge of an unknown token"), free(p);
    p = tiny_json("bad14/tokenizer.json", EXTRA, "[[\"a\"]]", "", BYTELEVEL_PLAIN, 0);
    expect_fail(p, "neither", "merge list of one"), free(p);
    p = tiny_json("bad15/tokenizer.json", EXTRA, "[]", "", "{\"type\": \"Whitespace\"}", 0);
    expect_fail(p, "not supported", "unsupported pre-tokenizer"), free(p);
    p = tiny_json("bad16/tokenizer.json", EXTRA, "[]", "",
                  "{\"type\": \"Split\", \"pattern\": {\"Regex\": \"(\"}, \"behavior\": \"Isolated\"}", 0);
    expect_fail(p, "does not compile", "bad regex"), free(p);
    p = tiny_json("bad17/tokenizer.json", EXTRA, "[]", "{\"id\": 300}", BYTELEVEL_PLAIN, 0);
    expect_fail(p, "content", "added token without content"), free(p);
    p = tiny_json("bad18/tokenizer.json", EXTRA, "[\"a b\", \"ab c\", \"c ab\"]", "", BYTELEVEL_PLAIN, 0);
    expect_fail(p, "not in the vocabulary", "merge result absent"), free(p);
    fail_json("bad19/tokenizer.json",
              "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []}, \"decoder\": {\"type\": \"ByteLevel\"}}",
              "no token for the byte");
    /* a config naming an absent EOS */
    p = tiny_json("bad20/tokenizer.json", EXTRA, "[]", "", BYTELEVEL_PLAIN, 0);
    char *cfg = write_str("bad20/tokenizer_config.json", "{\"eos_token\": \"</nope>\"}");
    expect_fail(p, "</nope>", "config eos absent"), free(p), free(cfg);
    /* vocab.json */
    char *v = write_str("v1/vocab.json", "{\"a\": 0}");
    expect_fail(v, "merges.txt", "vocab.json without merges.txt"), free(v);
    strbuf sb = STRBUF_INIT;
    sb_putc(&sb, '{');
    for (unsigned b = 0; b < 256; b++) {
        sb_puts(&sb, b ? ", \"" : "\"");
        put_bytelevel(&sb, b);
        sb_printf(&sb, "\": %u", b);
    }
    sb_puts(&sb, ", \"ab\": 256}");
    v = write_file("v2/vocab.json", sb.buf, sb.len);
    char *m = write_str("v2/merges.txt", "#version: 0.2\na b\nb zz\n");
    expect_fail(v, "merges.txt line 3", "merges.txt unknown token");
    free(m);
    m = write_str("v2/merges.txt", "#version: 0.2\na b c\n");
    expect_fail(v, "two tokens", "merges.txt bad line");
    free(m);
    m = write_str("v2/merges.txt", "#version: 0.2\na b\n");
    tokenizer *ok = must_load(v);
    expect_ids(ok, "abab", IDS(256, 256), "vocab.json + merges.txt");
    tokenizer_free(ok);
    free(v), free(m);
    sb_free(&sb);
}

static void test_bad_tiktoken(void) {
    char *p;
    p = write_str("t1/x.model", "!!!! 0\n");
    expect_fail(p, "base64", "bad base64"), free(p);
    p = write_str("t2/x.model", "QQ==\n");
    expect_fail(p, "expected '<base64 token> <rank>'", "missing rank"), free(p);
    p = write_str("t3/x.model", "QQ== 0\nQg== 0\n");
    expect_fail(p, "defined twice", "duplicate rank"), free(p);
    p = write_str("t4/x.model", "QQ== 99999999999\n");
    expect_fail(p, "rank", "huge rank"), free(p);
    p = write_str("t5/x.model", "QQ== 0\n");
    expect_fail(p, "byte 0x00", "too few bytes"), free(p);
    p = write_str("t6/tokenizer.model", "\x0a\x05hello");
    expect_fail(p, "SentencePiece", "sentencepiece protobuf"), free(p);
    p = write_str("t7/x.model", "");
    expect_fail(p, "empty", "empty tiktoken"), free(p);
}

/* A synthetic llama2.c file: <unk>, <s>, </s>, the 256 <0xXX> pieces, then a few merges. */
static void llama2c_file(strbuf *sb) {
    int32_t max_len = 6;
    sb_reset(sb);
    sb_append(sb, (const char *)&max_len, 4);
    char piece[16];
    for (int i = 0; i < 3 + 256 + 4; i++) {
        static const char *const first[] = {"<unk>", "\n<s>\n", "\n</s>\n"};
        static const char *const last[] = {" ", "a", "b", "ab"};
        const char *s = i < 3 ? first[i] : i < 259 ? (snprintf(piece, sizeof piece, "<0x%02X>", i - 3), piece)
                                                   : last[i - 259];
        float score = i == 262 ? 5.0f : 0.0f;
        int32_t n = (int32_t)strlen(s);
        sb_append(sb, (const char *)&score, 4);
        sb_append(sb, (const char *)&n, 4);
        sb_append(sb, s, (size_t)n);
    }
}

static void test_bad_llama2c(void) {
    strbuf sb = STRBUF_INIT;
    llama2c_file(&sb);
    char *p = write_file("l/tok.bin", sb.buf, sb.len);
    tokenizer *tok = must_load(p);
    expect_ids(tok, "ab\xff", IDS(259, 262, 258), "synthetic llama2.c: prefix, merge, byte fallback");
    tokenizer_free(tok);
    free(p);
    /* every truncation inside a record must be caught; cuts at record ends are valid files */
    int caught = 0, cuts = 0;
    for (size_t cut = 0; cut < sb.len; cut += 1) {
        p = write_file("l/cut.bin", sb.buf, cut);
        err_clear();
        int rc = tokenizer_load(&tok, p);
        if (rc == 0) tokenizer_free(tok);
        else caught++;
        cuts++;
        free(p);
    }
    /* the valid cuts: after each of records 3..262 (a file needs <unk>, <s>, </s>) */
    CHECK(caught == cuts - 260, "truncations caught: %d of %d", caught, cuts);
    p = write_file("l/cut.bin", sb.buf, 4 + 8 + 5 + 3);
    expect_fail(p, "truncated", "truncated llama2.c"), free(p);
    p = write_file("l/short.bin", sb.buf, 3);
    expect_fail(p, "too short", "3-byte llama2.c"), free(p);
    int32_t huge = 0x7fffffff;
    memcpy(sb.buf + 4 + 4, &huge, 4); /* the length of token 0 */
    p = write_file("l/huge.bin", sb.buf, sb.len);
    expect_fail(p, "length 2147483647", "huge piece length"), free(p);
    int32_t neg = -5;
    memcpy(sb.buf + 4 + 4, &neg, 4);
    p = write_file("l/neg.bin", sb.buf, sb.len);
    expect_fail(p, "length -5", "negative piece length"), free(p);
    memcpy(sb.buf, &huge, 4);
    p = write_file("l/maxlen.bin", sb.buf, sb.len);
    expect_fail(p, "max_token_length", "huge max_token_length"), free(p);
    llama2c_file(&sb);
    p = write_file("l/two.bin", sb.buf, 4 + 8 + 5 + 8 + 5);
    expect_fail(p, "at least", "two tokens"), free(p);
    char real[4096];
    if (shared_file(real, sizeof real, "models/stories260K/tok512.bin", "the truncated tok512.bin cases")) {
        char *data;
        size_t len;
        if (!fs_read_file(real, 0, &data, &len)) {
            static const size_t cuts_at[] = {1, 4, 5, 11, 12, 13, 101, 3000, 6226};
            for (size_t i = 0; i < sizeof cuts_at / sizeof *cuts_at; i++) {
                char *q = write_file("l/tok512cut.bin", data, cuts_at[i]);
                expect_fail(q, cuts_at[i] < 4 ? "too short" : cuts_at[i] == 4 ? "at least" : "truncated",
                            "truncated tok512.bin");
                free(q);
            }
            free(data);
        } else {
            fprintf(stderr, "FAIL: cannot read %s: %s\n", real, err_msg());
            failures++;
        }
    }
    sb_free(&sb);
}

static void test_bad_specs(void) {
    expect_fail("/nonexistent/tokenizer.json", "does not exist", "missing file");
    expect_fail("", "no tokenizer given", "empty spec");
    expect_fail("builtin:words", "builtin:bytes", "unknown builtin");
    char *d = fs_join(tmpdir, "emptydir");
    fs_mkdir_p(d, 0755);
    expect_fail(d, "holds no tokenizer", "empty directory");
    free(d);
    tokenizer *tok = must_load("builtin:bytes");
    int32_t ids[] = {72, -1};
    char *text;
    size_t len;
    CHECK(tokenizer_decode(tok, ids, 2, &text, &len) == -1 && strstr(err_msg(), "-1"), "decode of id -1");
    tokenizer_free(tok);
}

int main(void) {
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    shared_dir(); /* fails at once when the folder is required and absent */
    test_features();
    test_bad_json();
    test_bad_tiktoken();
    test_bad_llama2c();
    test_bad_specs();
    fs_rm_rf(tmpdir);
    if (failures) {
        fprintf(stderr, "%d check(s) failed\n", failures);
        return 1;
    }
    printf("tokenizer file tests passed\n");
    return 0;
}
