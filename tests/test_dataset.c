/* test_dataset.c: the split file format and meta.json of data artifacts (stages/data/dataset.h):
 * round trip of examples, masks, groups, prefixes and history cuts; the writer's prefix fixing;
 * the reader's refusal of every kind of damage (truncation, bad magic/version, out-of-range ids,
 * broken group numbering, a prefix that is not shared, cuts out of order or beyond the answer)
 * with a message naming the file; version 1 files (no cuts) still read; the budget rule
 * ds_fit_cuts; meta.json round trip with the tokenizer copied into the artifact. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/error.h"
#include "common/fsutil.h"
#include "stages/data/dataset.h"
#include "tests/check.h"
#include "tests/shared_dir.h"

static char tmpdir[256];

/* Example i of group g: a shared prefix [BOS g g g ...] of plen tokens, then i-specific tokens,
 * then an action token (label) at the end. */
static void make_example(int32_t *tok, uint8_t *mask, int *n, int g, int i, int plen, int label) {
    int k = 0;
    tok[k] = 256, mask[k++] = DS_TOK_PROMPT;
    while (k < plen) tok[k] = 'a' + g % 26, mask[k++] = DS_TOK_PROMPT;
    for (int j = 0; j <= i % 3; j++) tok[k] = '0' + i % 10, mask[k++] = DS_TOK_PROMPT;
    tok[k] = label ? 259 : 260, mask[k++] = DS_TOK_ACTION;
    *n = k;
}

static char *write_sample(const char *name, int n_groups, int per_group) {
    char *path = fs_join(tmpdir, name);
    ds_writer *w;
    CHECK_OK(ds_writer_new(&w, 261, 2));
    int32_t tok[64];
    uint8_t mask[64];
    for (int g = 0; g < n_groups; g++)
        for (int i = 0; i < per_group; i++) {
            int n, label = (g + i) % 2;
            make_example(tok, mask, &n, g, i, 5 + g % 4, label);
            /* groups 1, 3, ... have two "history lines" in the prefix: [1, 3) and [3, plen) */
            const uint32_t cuts[3] = {1, 3, (uint32_t)(5 + g % 4)};
            ds_example_in e = {.new_group = i == 0, .prefix_len = (uint32_t)(5 + g % 4), .member = (uint32_t)(100 + g),
                               .item = (uint32_t)i, .time = 1000 + i, .task = (uint16_t)(g % 2), .label = (int8_t)label,
                               .cuts = g % 2 ? cuts : NULL, .n_cuts = g % 2 ? 3 : 0};
            CHECK_OK(ds_writer_add(w, &e, tok, mask, (size_t)n));
        }
    CHECK_OK(ds_writer_finish(w, path));
    ds_writer_free(w);
    return path;
}

static void test_round_trip(void) {
    char *path = write_sample("rt.bin", 7, 4);
    ds_split s;
    CHECK_OK(ds_split_open(&s, path));
    CHECK_INT(s.n_examples, 28);
    CHECK_INT(s.n_groups, 7);
    CHECK_INT(s.vocab, 261);
    CHECK_INT(s.n_tasks, 2);
    CHECK_STR(s.name, "rt");
    int64_t total = 0;
    for (int64_t i = 0; i < s.n_examples; i++) {
        int g = (int)(i / 4), k = (int)(i % 4), n;
        int32_t tok[64];
        uint8_t mask[64];
        make_example(tok, mask, &n, g, k, 5 + g % 4, (g + k) % 2);
        const ds_example *e = &s.ex[i];
        CHECK_INT(e->n_tokens, n);
        CHECK(!memcmp(ds_example_tokens(&s, i), tok, sizeof(int32_t) * (size_t)n));
        CHECK(!memcmp(ds_example_mask(&s, i), mask, (size_t)n));
        CHECK_INT(e->group, g);
        CHECK_INT(e->member, 100 + g);
        CHECK_INT(e->item, k);
        CHECK_INT(e->time, 1000 + k);
        CHECK_INT(e->task, g % 2);
        CHECK_INT(e->label, (g + k) % 2);
        CHECK_INT(e->answer_pos, n - 1);
        CHECK_INT(e->prefix_len, 5 + g % 4);
        CHECK_INT(ds_group_end(&s, i), (g + 1) * 4);
        int nc;
        const uint32_t *c = ds_example_cuts(&s, i, &nc);
        CHECK_INT(nc, g % 2 ? 3 : 0);
        if (g % 2) CHECK(c && c[0] == 1 && c[1] == 3 && c[2] == (uint32_t)(5 + g % 4));
        total += n;
    }
    CHECK_INT(s.n_tokens, total);
    CHECK_INT(s.n_cuts, 3 * 4 * 3); /* groups 1, 3, 5: 4 examples of 3 cuts */
    ds_split_close(&s);
    free(path);
}

/* A version 1 file (64-byte header, no cuts) written from a version 2 file without cuts: still read. */
static void test_version1(void) {
    char *path = fs_join(tmpdir, "v2.bin"), *v1 = fs_join(tmpdir, "v1.bin"), *data;
    ds_writer *w;
    CHECK_OK(ds_writer_new(&w, 261, 1));
    int32_t tok[64];
    uint8_t mask[64];
    for (int i = 0; i < 3; i++) {
        int n;
        make_example(tok, mask, &n, 0, i, 4, i % 2);
        ds_example_in e = {.new_group = i == 0, .prefix_len = 4, .label = (int8_t)(i % 2)};
        CHECK_OK(ds_writer_add(w, &e, tok, mask, (size_t)n));
    }
    CHECK_OK(ds_writer_finish(w, path));
    ds_writer_free(w);
    size_t n;
    CHECK_OK(fs_read_file(path, 0, &data, &n));
    ds_header h;
    memcpy(&h, data, sizeof h);
    CHECK(h.n_cuts == 0 && h.cuts_offset == (h.mask_offset + h.n_tokens + 3) / 4 * 4);
    const size_t body = (size_t)(h.mask_offset + h.n_tokens) - sizeof h; /* examples, tokens, mask */
    h.version = 1, h.header_bytes = 64, h.tokens_offset -= 16, h.mask_offset -= 16;
    char *out = malloc(64 + body);
    memcpy(out, &h, 64);
    memcpy(out + 64, data + sizeof h, body);
    CHECK_OK(fs_write_atomic(v1, out, 64 + body));
    ds_split s;
    CHECK_OK(ds_split_open(&s, v1));
    int nc;
    CHECK(s.n_examples == 3 && s.n_cuts == 0 && !ds_example_cuts(&s, 2, &nc) && nc == 0);
    CHECK(!memcmp(ds_example_tokens(&s, 2), data + h.tokens_offset + 16 + 4 * s.ex[2].offset, 4 * s.ex[2].n_tokens));
    ds_split_close(&s);
    free(out), free(data), free(path), free(v1);
}

/* The budget rule: head 2 tokens, lines of 3, 4 and 3 tokens, tail 8 (20 in all). */
static void test_fit_cuts(void) {
    const uint32_t c[4] = {2, 5, 9, 12};
    CHECK_INT(ds_fit_cuts(c, 4, 20, 20), 0);
    CHECK_INT(ds_fit_cuts(c, 4, 20, 19), 1);  /* 17 */
    CHECK_INT(ds_fit_cuts(c, 4, 20, 16), 2);  /* 13 */
    CHECK_INT(ds_fit_cuts(c, 4, 20, 12), 3);  /* 10: head and tail only */
    CHECK_INT(ds_fit_cuts(c, 4, 20, 9), -1);  /* not even the head and the tail */
    CHECK_INT(ds_fit_cuts(NULL, 0, 20, 20), 0);
    CHECK_INT(ds_fit_cuts(NULL, 0, 20, 19), -1);
}

/* A declared prefix longer than what the group really shares is cut to the common part; a prefix
 * reaching the answer is cut to answer_pos - 1. */
static void test_prefix_fixing(void) {
    char *path = fs_join(tmpdir, "fix.bin");
    ds_writer *w;
    CHECK_OK(ds_writer_new(&w, 261, 1));
    int32_t a[] = {256, 1, 2, 3, 4, 259}, b[] = {256, 1, 2, 9, 4, 260}, c[] = {256, 7, 259};
    uint8_t m6[] = {0, 0, 0, 0, 0, 1}, m3[] = {0, 0, 1};
    ds_example_in e = {.new_group = 1, .prefix_len = 5, .label = 1};
    CHECK_OK(ds_writer_add(w, &e, a, m6, 6));
    e.new_group = 0, e.label = 0;
    CHECK_OK(ds_writer_add(w, &e, b, m6, 6));
    e.new_group = 1, e.prefix_len = 3, e.label = 1;
    CHECK_OK(ds_writer_add(w, &e, c, m3, 3));
    /* writer refusals */
    int32_t bad[] = {256, 999};
    uint8_t mb[] = {0, 0}, m_first[] = {1, 0};
    CHECK(ds_writer_add(w, &e, bad, mb, 2) == -1 && err_kind_get() == ERR_INPUT);
    CHECK(ds_writer_add(w, &e, a, m_first, 2) == -1);
    e.label = 1;
    uint8_t m_none[] = {0, 0, 0, 0, 0, 0};
    CHECK(ds_writer_add(w, &e, a, m_none, 6) == -1); /* labelled without an action token */
    const uint32_t one[1] = {2}, past[2] = {2, 6}, back[3] = {1, 4, 3};
    e.cuts = one, e.n_cuts = 1;
    CHECK(ds_writer_add(w, &e, a, m6, 6) == -1 && strstr(err_msg(), "history cuts")); /* a lone cut */
    e.cuts = past, e.n_cuts = 2;
    CHECK(ds_writer_add(w, &e, a, m6, 6) == -1 && strstr(err_msg(), "answer position")); /* beyond the answer */
    e.cuts = back, e.n_cuts = 3;
    CHECK(ds_writer_add(w, &e, a, m6, 6) == -1); /* not increasing */
    e.cuts = NULL, e.n_cuts = 0;
    CHECK_INT(ds_writer_examples(w), 3);
    CHECK_OK(ds_writer_finish(w, path));
    ds_writer_free(w);
    ds_split s;
    CHECK_OK(ds_split_open(&s, path));
    CHECK_INT(s.ex[0].prefix_len, 3);
    CHECK_INT(s.ex[1].prefix_len, 3);
    CHECK_INT(s.ex[2].prefix_len, 1);
    CHECK_INT(s.n_groups, 2);
    ds_split_close(&s);
    free(path);
}

/* Writes a damaged copy of src (bytes [off, off+len) replaced by val, or the file cut at cut) and
 * checks that the reader refuses it with ERR_CORRUPT and a message naming the file. */
static void expect_corrupt(const char *src, long off, const void *val, size_t len, long cut, const char *what) {
    char *data;
    size_t n;
    CHECK_OK(fs_read_file(src, 0, &data, &n));
    char *path = fs_join(tmpdir, "bad.bin");
    if (off >= 0 && (size_t)off + len <= n) memcpy(data + off, val, len);
    if (cut >= 0) n = (size_t)cut;
    CHECK_OK(fs_write_atomic(path, data, n));
    ds_split s;
    int rc = ds_split_open(&s, path);
    if (rc != -1 || err_kind_get() != ERR_CORRUPT || !strstr(err_msg(), "bad.bin")) {
        fprintf(stderr, "damage '%s' not detected properly: rc %d, '%s'\n", what, rc, err_msg());
        check_failed_count++;
    }
    if (!rc) ds_split_close(&s);
    free(data);
    free(path);
}

static void test_corruption(void) {
    char *path = write_sample("src.bin", 3, 3);
    size_t ex0 = sizeof(ds_header), tok0 = sizeof(ds_header) + 9 * 48;
    uint32_t u32;
    int32_t i32;
    uint64_t u64;
    expect_corrupt(path, -1, NULL, 0, 10, "shorter than the header");
    expect_corrupt(path, -1, NULL, 0, 200, "truncated");
    expect_corrupt(path, 0, "XXXX", 4, -1, "magic");
    u32 = 3, expect_corrupt(path, 8, &u32, 4, -1, "version");
    u32 = 64, expect_corrupt(path, 12, &u32, 4, -1, "header_bytes");
    u64 = 1ull << 50, expect_corrupt(path, 16, &u64, 8, -1, "huge n_examples");
    u64 = 99, expect_corrupt(path, 32, &u64, 8, -1, "n_groups");
    u32 = 200, expect_corrupt(path, 40, &u32, 4, -1, "vocab smaller than ids");
    i32 = 5000, expect_corrupt(path, (long)tok0 + 8, &i32, 4, -1, "token id");
    i32 = -1, expect_corrupt(path, (long)tok0, &i32, 4, -1, "negative token id");
    u64 = 3, expect_corrupt(path, (long)ex0, &u64, 8, -1, "example offset");
    u32 = 0, expect_corrupt(path, (long)ex0 + 16, &u32, 4, -1, "n_tokens 0");
    u32 = 1u << 30, expect_corrupt(path, (long)ex0 + 16, &u32, 4, -1, "n_tokens huge");
    u32 = 40, expect_corrupt(path, (long)ex0 + 20, &u32, 4, -1, "prefix_len beyond answer");
    u32 = 2, expect_corrupt(path, (long)ex0 + 24, &u32, 4, -1, "answer_pos");
    u32 = 5, expect_corrupt(path, (long)ex0 + 48 + 28, &u32, 4, -1, "group jump");
    uint16_t u16 = 7;
    expect_corrupt(path, (long)ex0 + 40, &u16, 2, -1, "task");
    int8_t lab = 3;
    expect_corrupt(path, (long)ex0 + 42, &lab, 1, -1, "label");
    i32 = 'z', expect_corrupt(path, (long)tok0 + 4 * (1 + 9), &i32, 4, -1, "prefix not shared"); /* example 1, token 1 */
    /* a mask value out of range: the mask section starts after every token */
    ds_split s;
    CHECK_OK(ds_split_open(&s, path));
    long mask0 = (long)(tok0 + 4 * (size_t)s.n_tokens);
    int64_t nt = s.n_tokens;
    ds_split_close(&s);
    uint8_t mv = 9;
    expect_corrupt(path, mask0 + 2, &mv, 1, -1, "mask value");
    mv = DS_TOK_RESPONSE;
    expect_corrupt(path, mask0 + 2, &mv, 1, -1, "answer earlier than answer_pos");
    mv = DS_TOK_RESPONSE;
    expect_corrupt(path, mask0 + nt - 1, &mv, 1, -1, "labelled example without action token");
    /* cuts: group 1 (examples 3..5) owns 3 cuts each, [1, 3, 6); the section is the file's end */
    size_t size;
    char *d;
    CHECK_OK(fs_read_file(path, 0, &d, &size));
    free(d);
    long cuts0 = (long)size - 9 * 4, cf4 = (long)ex0 + 4 * 48 + 44; /* example 4's cut_first */
    u32 = 2, expect_corrupt(path, cf4, &u32, 4, -1, "cuts out of order (cut_first goes back)");
    u32 = 5, expect_corrupt(path, cf4, &u32, 4, -1, "one cut for an example");
    u32 = 0, expect_corrupt(path, cuts0, &u32, 4, -1, "cut at position 0");
    u32 = 1, expect_corrupt(path, cuts0 + 4, &u32, 4, -1, "cuts not increasing");
    u32 = 40, expect_corrupt(path, cuts0 + 8, &u32, 4, -1, "cut beyond the answer");
    u64 = 10, expect_corrupt(path, 64, &u64, 8, -1, "n_cuts");
    expect_corrupt(path, -1, NULL, 0, (long)size - 2, "truncated cuts");
    free(path);
}

static void test_empty_split(void) {
    char *path = fs_join(tmpdir, "empty.bin");
    ds_writer *w;
    CHECK_OK(ds_writer_new(&w, 261, 1));
    CHECK_OK(ds_writer_finish(w, path));
    ds_writer_free(w);
    ds_split s;
    CHECK_OK(ds_split_open(&s, path));
    CHECK_INT(s.n_examples, 0);
    CHECK_INT(s.n_groups, 0);
    ds_split_close(&s);
    free(path);
}

static void test_meta(const char *tok_spec, const char *expect_format) {
    char *dir = fs_join(tmpdir, "art");
    fs_rm_rf(dir);
    CHECK_OK(fs_mkdir_p(dir, 0755));
    tokenizer *tok;
    CHECK_OK(tokenizer_load(&tok, tok_spec));
    if (!tok) return;
    dataset ds;
    memset(&ds, 0, sizeof ds);
    snprintf(ds.source, sizeof ds.source, "synthetic");
    snprintf(ds.kind, sizeof ds.kind, "ranking");
    snprintf(ds.role, sizeof ds.role, "dataset");
    CHECK_OK(dataset_copy_tokenizer(&ds, tok, dir));
    snprintf(ds.yes_text, sizeof ds.yes_text, " yes");
    snprintf(ds.no_text, sizeof ds.no_text, " no");
    ds.yes_id = 1, ds.no_id = 2;
    ds_task tasks[2] = {{"like", "Will the member like the item?"}, {"save", "Will the member save \"it\"?\n"}};
    ds.tasks = tasks;
    ds.n_tasks = 2;
    ds.n_splits = 1;
    ds_split_info *si = &ds.splits[0];
    snprintf(si->name, sizeof si->name, "train");
    snprintf(si->file, sizeof si->file, "train.bin");
    /* a split with the tokenizer's vocabulary */
    ds_writer *w;
    CHECK_OK(ds_writer_new(&w, tokenizer_vocab_size(tok), 2));
    int32_t t[] = {1, 2, 1};
    uint8_t m[] = {0, 0, 1};
    ds_example_in e = {.new_group = 1, .label = 1};
    CHECK_OK(ds_writer_add(w, &e, t, m, 3));
    char *bin = fs_join(dir, "train.bin");
    CHECK_OK(ds_writer_finish(w, bin));
    ds_writer_free(w);
    si->examples = 1, si->tokens = 3, si->groups = 1, si->positives = 1, si->max_tokens = 3;
    ds.params = cJSON_Parse("{\"source\": \"synthetic\", \"members\": 3}");
    CHECK_OK(dataset_write_meta(&ds, dir));
    cJSON_Delete(ds.params);
    free(ds.tokenizer_spec);

    dataset rd;
    CHECK_OK(dataset_open(&rd, dir));
    CHECK_STR(rd.source, "synthetic");
    CHECK_STR(rd.kind, "ranking");
    CHECK_STR(rd.tokenizer_format, expect_format);
    CHECK_INT(rd.vocab, tokenizer_vocab_size(tok));
    CHECK_INT(rd.bos_id, tokenizer_bos_id(tok));
    CHECK_INT(rd.n_tasks, 2);
    CHECK_STR(rd.tasks[1].instruction, "Will the member save \"it\"?\n");
    CHECK_STR(rd.yes_text, " yes");
    CHECK_INT(rd.yes_id, 1);
    CHECK(rd.params && cJSON_GetObjectItem(rd.params, "members"));
    tokenizer *tok2 = NULL;
    CHECK_OK(dataset_tokenizer_load(&rd, &tok2));
    if (tok2) {
        /* the copy encodes like the original */
        const char *txt = "Toy Story (1995): rated 4/5, yes";
        int32_t *a, *b;
        size_t na, nb;
        CHECK_OK(tokenizer_encode(tok, txt, strlen(txt), &a, &na));
        CHECK_OK(tokenizer_encode(tok2, txt, strlen(txt), &b, &nb));
        CHECK(na == nb && !memcmp(a, b, na * sizeof *a));
        free(a);
        free(b);
        CHECK(strncmp(tokenizer_source(tok2), dir, strlen(dir)) == 0 || !strcmp(expect_format, "builtin-bytes"));
        tokenizer_free(tok2);
    }
    ds_split s;
    CHECK_OK(dataset_split_open(&rd, "train", &s));
    CHECK_INT(s.n_examples, 1);
    ds_split_close(&s);
    CHECK(dataset_split_open(&rd, "valid", &s) == -1 && strstr(err_msg(), "it has: train"));
    dataset_close(&rd);

    /* damaged meta.json files */
    char *meta = fs_join(dir, "meta.json");
    const char *bad[] = {"{", "{\"format\": \"other\"}", "{\"format\": \"smelt-dataset\", \"version\": 99}", NULL};
    for (int i = 0; bad[i]; i++) {
        CHECK_OK(fs_write_atomic(meta, bad[i], strlen(bad[i])));
        CHECK(dataset_open(&rd, dir) == -1 && strstr(err_msg(), "meta.json"));
    }
    unlink(meta);
    CHECK(dataset_open(&rd, dir) == -1 && strstr(err_msg(), "not a data artifact"));
    free(meta);
    free(bin);
    tokenizer_free(tok);
    free(dir);
}

int main(void) {
    shared_dir(); /* fails at once when the folder is required and absent */
    snprintf(tmpdir, sizeof tmpdir, "/tmp/smelt-test-dataset-%d", (int)getpid());
    CHECK_OK(fs_mkdir_p(tmpdir, 0755));
    test_round_trip();
    test_version1();
    test_fit_cuts();
    test_prefix_fixing();
    test_corruption();
    test_empty_split();
    test_meta("builtin:bytes", "builtin-bytes");
    char tok512[4096];
    if (shared_file(tok512, sizeof tok512, "models/stories260K/tok512.bin", "the copied-tokenizer case"))
        test_meta(tok512, "llama2c");
    fs_rm_rf(tmpdir);
    return check_report("test_dataset");
}
