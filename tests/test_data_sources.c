/* test_data_sources.c: the data stage's file sources on small files this test writes: generic
 * interactions (CSV with item and member tables; JSONL with action and task columns), pairs
 * (Alpaca JSON list with Yes./No. answers -> a ranking set; chat messages; prompt/response), text
 * documents (a folder, chunking), the MovieLens ml-100k layout (Latin-1 u.item, u.user) as a folder
 * and as a zip, malformed inputs (each error names the file and the line), a tokenizer given as
 * a path (Qwen2's, copied into the artifact; needs ../shared), and a GGUF model file as the
 * tokenizer with `template: chat` (SmolLM2: ChatML records, a vocabulary-only tokenizer.gguf in the
 * artifact, no BOS since the model adds none; needs ../shared). */
#include <archive.h>
#include <archive_entry.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/log.h"
#include "tests/check.h"
#include "tests/data_testutil.h"
#include "tests/shared_dir.h"

static char tmp[256];

static void put(const char *name, const char *text) {
    char *p = fs_join(tmp, name);
    CHECK_OK(fs_write_atomic(p, text, strlen(text)));
    free(p);
}

/* Opens tmp/out's split; returns the number of examples or -1. */
static int64_t open_out(const char *split, dataset *ds, ds_split *s) {
    char *dir = fs_join(tmp, "out");
    int rc = dataset_open(ds, dir);
    free(dir);
    if (rc) return -1;
    if (dataset_split_open(ds, split, s)) {
        dataset_close(ds);
        return -1;
    }
    return s->n_examples;
}

/* Every example of every split, decoded and concatenated (for "contains" checks). */
static char *all_text(void) {
    strbuf sb = STRBUF_INIT;
    const char *names[] = {"train", "valid", "test"};
    for (int k = 0; k < 3; k++) {
        dataset ds;
        ds_split s;
        if (open_out(names[k], &ds, &s) < 0) continue;
        for (int64_t i = 0; i < s.n_examples; i++) {
            char *t = dt_decode(&s, i);
            sb_printf(&sb, "%s\n====\n", t);
            free(t);
        }
        ds_split_close(&s);
        dataset_close(&ds);
    }
    if (!sb.buf) sb_puts(&sb, "");
    return sb_detach(&sb);
}

static void test_interactions_csv(void) {
    put("items.csv", "item,title,genre,tags\ni1,The Hobbit,fantasy,fantasy|adventure\ni2,\"Dune, Part One\",scifi,scifi\n"
                     "i3,Emma,romance,romance\ni4,Alien,scifi,scifi|horror\n");
    put("members.csv", "member,age,city\nu1,34,Paris\nu2,51,Oslo\n");
    strbuf sb = STRBUF_INIT;
    sb_puts(&sb, "member,item,label,timestamp\n");
    const char *items[] = {"i1", "i2", "i3", "i4"}, *labels[] = {"yes", "no", "1", "0", "true", "false"};
    for (int u = 1; u <= 3; u++)
        for (int k = 0; k < 8; k++)
            sb_printf(&sb, "u%d,%s,%s,%d\r\n", u, items[(u + k) % 4], labels[(u * k) % 6], 1000 + 10 * k + u);
    put("inter.csv", sb_str(&sb));
    sb_free(&sb);
    dt_metrics ms;
    CHECK_OK(dt_build(tmp, "    source: interactions\n    path: inter.csv\n    items_path: items.csv\n"
                           "    members_path: members.csv\n    item_columns: {id: item, text: [title, genre], tags: tags}\n"
                           "    member_columns: {id: member, text: [age, city]}\n    candidates: 2\n    min_history: 1\n"
                           "    split: {valid: 0.2, test: 0.2}\n", 1, &ms));
    CHECK(dt_get(&ms, "events") == 24 && dt_get(&ms, "members") == 3 && dt_get(&ms, "items") == 4);
    char *t = all_text();
    CHECK(strstr(t, "Member u1: 34 (Paris)\n") != NULL);
    CHECK(strstr(t, "Member u3\n") != NULL); /* no row in the member table */
    CHECK(strstr(t, "Candidate: Dune, Part One (scifi)\nAnswer:") != NULL);
    CHECK(strstr(t, "- The Hobbit (fantasy): yes\n") != NULL || strstr(t, "- The Hobbit (fantasy): no\n") != NULL);
    CHECK(strstr(t, "Will the member like the candidate?") != NULL);
    free(t);
    dataset ds;
    ds_split s;
    CHECK(open_out("test", &ds, &s) > 0);
    CHECK_STR(ds.source, "interactions");
    ds_split_close(&s);
    dataset_close(&ds);
}

static void test_interactions_jsonl(void) {
    put("items.jsonl", "{\"id\": 1, \"name\": \"Red Shoes\"}\n{\"id\": 2, \"name\": \"Blue Hat\"}\n{\"id\": 3, \"name\": \"Scarf\"}\n");
    strbuf sb = STRBUF_INIT;
    const char *acts[] = {"click", "like", "skip", "share"};
    for (int k = 0; k < 16; k++)
        sb_printf(&sb, "{\"user\": \"m%d\", \"item\": %d, \"action\": \"%s\", \"ts\": %d%s}\n", k % 2, 1 + k % 3, acts[k % 4],
                  100 + k, k % 4 == 3 ? ", \"task\": \"share\"" : ", \"task\": \"like\"");
    put("events.jsonl", sb_str(&sb));
    sb_free(&sb);
    dt_metrics ms;
    CHECK_OK(dt_build(tmp, "    source: interactions\n    path: events.jsonl\n    items_path: items.jsonl\n"
                           "    columns: {member: user, item: item, time: ts, action: action, task: task}\n"
                           "    item_columns: {id: id, text: [name]}\n    positive: [like, share]\n    negative: [skip]\n"
                           "    tasks: [like, share]\n    min_history: 0\n    candidates: 3\n    split: {valid: 0, test: 0.25}\n",
                     2, &ms));
    CHECK(dt_get(&ms, "events") == 16 && dt_get(&ms, "members") == 2);
    char *t = all_text();
    CHECK(strstr(t, "- Red Shoes: click\n") != NULL); /* history-only events are shown */
    CHECK(strstr(t, "Candidate: Red Shoes\n") != NULL);
    free(t);
    /* clicks are never examples; shares are examples of task share only */
    const char *names[] = {"train", "valid", "test"};
    int64_t examples = 0;
    for (int k = 0; k < 3; k++) {
        dataset ds;
        ds_split s;
        CHECK(open_out(names[k], &ds, &s) >= 0);
        for (int64_t i = 0; i < s.n_examples; i++) {
            CHECK(s.ex[i].task == 0 || s.ex[i].label == 1);
            examples++;
        }
        ds_split_close(&s);
        dataset_close(&ds);
    }
    CHECK_INT(examples, 12); /* 16 events, 4 clicks */
}

static void test_pairs(void) {
    /* Alpaca-style JSON list whose outputs are Yes./No.: a ranking set with label tokens */
    put("alpaca.json", "[{\"instruction\": \"Will the user like Alien?\", \"input\": \"History: Aliens, Predator\", "
                       "\"output\": \"Yes.\"},\n {\"instruction\": \"Will the user like Emma?\", \"input\": \"\", "
                       "\"output\": \"No.\"},\n {\"instruction\": \"Is it good?\", \"output\": \"yes\"}]");
    CHECK_OK(dt_build(tmp, "    source: pairs\n    path: alpaca.json\n    split: {valid: 0, test: 0}\n", 1, NULL));
    dataset ds;
    ds_split s;
    CHECK(open_out("train", &ds, &s) == 3);
    CHECK_STR(ds.kind, "ranking");
    CHECK_INT(ds.yes_id, 259);
    for (int64_t i = 0; i < s.n_examples; i++) {
        const ds_example *e = &s.ex[i];
        const int32_t *t = ds_example_tokens(&s, i);
        const uint8_t *m = ds_example_mask(&s, i);
        CHECK_INT(t[e->answer_pos], i == 1 ? 260 : 259);
        CHECK_INT(e->label, i == 1 ? 0 : 1);
        CHECK_INT(m[e->answer_pos], DS_TOK_ACTION);
        CHECK_INT(t[e->n_tokens - 1], 257); /* EOS, a response target */
        CHECK_INT(m[e->n_tokens - 1], DS_TOK_RESPONSE);
        char *txt = dt_decode_n(&s, i, e->answer_pos);
        CHECK(strstr(txt, "### Instruction:\n") && strstr(txt, "### Response:\n"));
        CHECK((strstr(txt, "### Input:\n") != NULL) == (i == 0));
        free(txt);
    }
    CHECK_INT(s.ex[0].n_tokens - s.ex[0].answer_pos, 3); /* " yes" "." EOS */
    ds_split_close(&s);
    dataset_close(&ds);
    /* the same with answers: text is a generative set */
    CHECK_OK(dt_build(tmp, "    source: pairs\n    path: alpaca.json\n    answers: text\n    split: {valid: 0, test: 0}\n", 1, NULL));
    CHECK(open_out("train", &ds, &s) == 3);
    CHECK_STR(ds.kind, "generative");
    CHECK(s.ex[0].label == DS_LABEL_NONE && ds.yes_id == -1);
    ds_split_close(&s);
    dataset_close(&ds);
    /* chat messages and prompt/response records (JSONL), custom field names */
    put("chat.jsonl", "{\"messages\": [{\"role\": \"system\", \"content\": \"Be brief.\"}, {\"role\": \"user\", \"content\": "
                      "\"Recommend a film.\"}, {\"role\": \"assistant\", \"content\": \"Alien (1979).\"}]}\n\n"
                      "{\"q\": \"2+2?\", \"a\": \"4\"}\n");
    CHECK_OK(dt_build(tmp, "    source: pairs\n    path: chat.jsonl\n    fields: {prompt: q, response: a}\n"
                           "    split: {valid: 0, test: 0}\n", 1, NULL));
    CHECK(open_out("train", &ds, &s) == 2);
    CHECK_STR(ds.kind, "generative");
    char *t0 = dt_decode(&s, 0), *t1 = dt_decode(&s, 1);
    CHECK_STR(t0, "<256>System: Be brief.\nUser: Recommend a film.\nAssistant: Alien (1979).<257>");
    CHECK_STR(t1, "<256>2+2?4<257>");
    char *resp = dt_decode_n(&s, 0, s.ex[0].answer_pos);
    CHECK_STR(resp, "<256>System: Be brief.\nUser: Recommend a film.\nAssistant:");
    free(t0), free(t1), free(resp);
    ds_split_close(&s);
    dataset_close(&ds);
}

static void test_text(void) {
    char *dir = fs_join(tmp, "docs");
    fs_mkdir_p(dir, 0755);
    const char *doc = "The quick brown fox jumps over the lazy dog. It was the best of times, it was the worst of times, "
                      "it was the age of wisdom, it was the age of foolishness.";
    put("docs/a.txt", doc);
    put("docs/b.jsonl", "{\"text\": \"Short one.\"}\n{\"text\": \"\"}\n{\"text\": \"Another short document.\"}\n");
    put("docs/ignored.csv", "not,read\n");
    dt_metrics ms;
    CHECK_OK(dt_build(tmp, "    source: text\n    path: docs\n    max_tokens: 64\n    split: {valid: 0, test: 0}\n"
                           "    calibration: {samples: 2}\n", 1, &ms));
    dataset ds;
    ds_split s;
    /* a.txt in pieces of 63 bytes after BOS, and the two non-empty JSONL documents */
    CHECK(open_out("train", &ds, &s) == (int64_t)(strlen(doc) + 62) / 63 + 2);
    CHECK_STR(ds.kind, "text");
    CHECK_INT(dt_get(&ms, "records"), 3);
    int64_t tokens = 0;
    for (int64_t i = 0; i < s.n_examples; i++) {
        CHECK(s.ex[i].n_tokens <= 64 && s.ex[i].answer_pos == 1 && s.ex[i].label == DS_LABEL_NONE);
        tokens += s.ex[i].n_tokens - 1;
    }
    CHECK_INT(tokens, strlen(doc) + strlen("Short one.") + strlen("Another short document."));
    ds_split_close(&s);
    dataset_close(&ds);
    free(dir);
}

static const char *ml100k_item = "1|Toy Story (1995)|01-Jan-1995||http://x|0|0|0|1|1|1|0|0|0|0|0|0|0|0|0|0|0|0|0\n"
                                 "2|Caf\xe9 au lait (1993)|01-Jan-1993||http://y|0|0|0|0|0|1|0|0|1|0|0|0|0|0|0|0|0|0|0\n"
                                 "3|GoldenEye (1995)|01-Jan-1995||http://z|0|1|1|0|0|0|0|0|0|0|0|0|0|0|0|0|1|0|0\n";

static void write_ml100k(const char *dir) {
    char *d = fs_join(tmp, dir);
    fs_mkdir_p(d, 0755);
    strbuf sb = STRBUF_INIT;
    for (int u = 1; u <= 4; u++)
        for (int k = 0; k < 10; k++) sb_printf(&sb, "%d\t%d\t%d\t%d\n", u, 1 + (u + k) % 3, 1 + (u * k) % 5, 880000000 + 100 * k + u);
    char *p = xasprintf("%s/u.data", dir);
    put(p, sb_str(&sb));
    free(p);
    p = xasprintf("%s/u.item", dir);
    put(p, ml100k_item);
    free(p);
    p = xasprintf("%s/u.user", dir);
    put(p, "1|24|M|technician|85711\n2|53|F|other|94043\n3|23|M|writer|32067\n4|24|M|technician|43537\n");
    free(p);
    sb_free(&sb);
    free(d);
}

/* Zips the listed files of tmp/SRC as tmp/ZIP under ml-100k/ (as GroupLens archives are); cut > 0 truncates it. */
static void zip_dir(const char *src, const char *zip, const char *const *files, size_t cut) {
    char *zp = fs_join(tmp, zip);
    struct archive *a = archive_write_new();
    archive_write_set_format_zip(a);
    CHECK(archive_write_open_filename(a, zp) == ARCHIVE_OK);
    for (int i = 0; files[i]; i++) {
        char *fp = xasprintf("%s/%s/%s", tmp, src, files[i]), *data, *en = xasprintf("ml-100k/%s", files[i]);
        size_t n;
        CHECK_OK(fs_read_file(fp, 0, &data, &n));
        struct archive_entry *e = archive_entry_new();
        archive_entry_set_pathname(e, en);
        archive_entry_set_size(e, (la_int64_t)n);
        archive_entry_set_filetype(e, AE_IFREG);
        archive_entry_set_perm(e, 0644);
        CHECK(archive_write_header(a, e) == ARCHIVE_OK);
        CHECK(archive_write_data(a, data, n) == (la_ssize_t)n);
        archive_entry_free(e);
        free(fp), free(data), free(en);
    }
    archive_write_close(a);
    archive_write_free(a);
    if (cut) CHECK(truncate(zp, (off_t)cut) == 0);
    free(zp);
}

static void test_ml100k(void) {
    write_ml100k("ml100k");
    dt_metrics ms;
    const char *body = "    source: movielens\n    path: %s\n    tasks: [like, Comedy]\n    candidates: 4\n    min_history: 1\n";
    char *b1 = xasprintf(body, "ml100k");
    CHECK_OK(dt_build(tmp, b1, 3, &ms));
    CHECK(dt_get(&ms, "events") == 40 && dt_get(&ms, "members") == 4 && dt_get(&ms, "items") == 3);
    char *t = all_text();
    CHECK(strstr(t, "Caf\xc3\xa9 au lait (1993) (Comedy, Drama)") != NULL); /* Latin-1 -> UTF-8 */
    CHECK(strstr(t, "Member 1: age 24, M, technician\n") != NULL);
    CHECK(strstr(t, "rate the candidate Comedy movie 4 stars or more") != NULL);
    CHECK(strstr(t, ": rated 3.0\n") != NULL);
    free(t);
    /* genre tasks only hold that genre's movies: Toy Story (1) and Cafe (2) are comedies */
    dataset ds;
    ds_split s;
    CHECK(open_out("train", &ds, &s) > 0);
    char *first = NULL;
    for (int64_t i = 0; i < s.n_examples; i++) {
        if (s.ex[i].task == 1) CHECK(s.ex[i].item == 1 || s.ex[i].item == 2);
        CHECK(s.ex[i].label == (s.ex[i].label == 1)); /* 0 or 1 */
    }
    ds_split_close(&s);
    dataset_close(&ds);
    char *tb = fs_join(tmp, "out/test.bin");
    size_t n1;
    CHECK_OK(fs_read_file(tb, 0, &first, &n1));
    /* the same from a zip: identical splits */
    const char *files[] = {"u.data", "u.item", "u.user", NULL};
    zip_dir("ml100k", "ml100k.zip", files, 0);
    char *b2 = xasprintf(body, "ml100k.zip");
    CHECK_OK(dt_build(tmp, b2, 3, &ms));
    char *second;
    size_t n2;
    CHECK_OK(fs_read_file(tb, 0, &second, &n2));
    CHECK(n1 == n2 && !memcmp(first, second, n1));
    free(first), free(second), free(tb), free(b1), free(b2);
    /* an unknown genre as a task */
    CHECK(dt_build(tmp, "    source: movielens\n    path: ml100k\n    tasks: [Comdey]\n", 3, NULL) == -1 &&
          strstr(err_msg(), "no movie has the genre 'Comdey'"));
}

typedef struct {
    const char *what, *file, *text, *body, *expect;
} bad_case;

static void test_malformed(void) {
    put("ok_items.csv", "item,title\na,Alpha\nb,Beta\n");
    const char *inter = "    source: interactions\n    path: in.csv\n    items_path: ok_items.csv\n";
    const char *ml = "    source: movielens\n    path: mlbad\n";
    char *mlbad = fs_join(tmp, "mlbad");
    fs_mkdir_p(mlbad, 0755);
    free(mlbad);
    const bad_case cases[] = {
        {"missing column", "in.csv", "member,item,label\nm,a,1\n", inter, "in.csv: no column 'timestamp' in the header (it has: member, item, label)"},
        {"bad number", "in.csv", "member,item,label,timestamp\nm,a,1,5\nm,b,0,abc\n", inter, "in.csv:3: timestamp 'abc' is not a number"},
        {"unknown item", "in.csv", "member,item,label,timestamp\nm,a,1,5\nm,b,0,6\nm,zz,1,7\n", inter, "in.csv:4: item 'zz' is not in the item table"},
        {"bad label", "in.csv", "member,item,label,timestamp\nm,a,maybe,5\n", inter, "in.csv:2: label 'maybe' is neither"},
        {"empty file", "in.csv", "", inter, "in.csv is empty"},
        {"header only", "in.csv", "member,item,label,timestamp\n", inter, "in.csv has a header but no rows"},
        {"non-UTF-8", "in.csv", "member,item,label,timestamp\nm,a,1,5\nm\xff,b,0,6\n", inter, "in.csv:3: the text is not valid UTF-8"},
        {"open quote", "in.csv", "member,item,label,timestamp\nm,\"a,1,5\n", inter, "in.csv:2: a quoted field is not closed"},
        {"field count", "in.csv", "member,item,label,timestamp\nm,a,1\n", inter, "in.csv:2: 3 fields where the header has 4"},
        {"NUL byte", "in.csv", "member,item,label,timestamp\nm,a\0,1,5\n", inter, "in.csv"},
        {"item table non-UTF-8", "bad_items.csv", "item,title\na,Caf\xe9\n",
         "    source: interactions\n    path: in_ok.csv\n    items_path: bad_items.csv\n", "bad_items.csv:2: the text is not valid UTF-8"},
        {"duplicate item", "bad_items.csv", "item,title\na,A\na,B\n",
         "    source: interactions\n    path: in_ok.csv\n    items_path: bad_items.csv\n", "bad_items.csv:3: item id 'a' appears twice"},
        {"jsonl not object", "ev.jsonl", "{\"member\": \"m\", \"item\": \"a\", \"label\": 1, \"timestamp\": 1}\n[1, 2]\n",
         "    source: interactions\n    path: ev.jsonl\n    items_path: ok_items.csv\n", "ev.jsonl:2: not a JSON object"},
        {"jsonl missing field", "ev.jsonl", "{\"member\": \"m\", \"item\": \"a\", \"timestamp\": 1}\n",
         "    source: interactions\n    path: ev.jsonl\n    items_path: ok_items.csv\n", "ev.jsonl:1: the record has no 'label'"},
        {"movies unknown id", "mlbad/ratings.csv", "userId,movieId,rating,timestamp\n1,1,4.0,5\n1,99,3.0,6\n", ml, "ratings.csv:3: movieId 99 is not in"},
        {"rating not a number", "mlbad/ratings.csv", "userId,movieId,rating,timestamp\n1,1,four,5\n", ml, "ratings.csv:2: column 'rating' holds 'four', which is not a number"},
        {"ratings missing column", "mlbad/ratings.csv", "userId,movieId,timestamp\n1,1,5\n", ml, "ratings.csv:1: no column 'rating'"},
        {"pairs fields", "p.jsonl", "{\"prompt\": \"a\", \"response\": \"b\"}\n{\"question\": \"c\"}\n",
         "    source: pairs\n    path: p.jsonl\n", "p.jsonl:2: the record has neither"},
        {"pairs non-UTF-8", "p.jsonl", "{\"prompt\": \"a\xc3\", \"response\": \"b\"}\n", "    source: pairs\n    path: p.jsonl\n",
         "p.jsonl:1: the text is not valid UTF-8"},
        {"pairs bad JSON list", "p.json", "[{\"prompt\": \"a\", \"response\": \"b\"},", "    source: pairs\n    path: p.json\n",
         "p.json is not a valid JSON list"},
        {"u.item fields", "ml100kbad/u.item", "1|Toy Story|x\n", "    source: movielens\n    path: ml100kbad\n", "u.item:1: 3 fields, expected 24"},
        {"no MovieLens files", "mlnone/readme.txt", "hello\n", "    source: movielens\n    path: mlnone\n", "holds neither ratings.csv"},
        {NULL, NULL, NULL, NULL, NULL},
    };
    put("in_ok.csv", "member,item,label,timestamp\nm,a,1,5\n");
    put("mlbad/movies.csv", "movieId,title,genres\n1,Toy Story (1995),Comedy\n");
    char *d = fs_join(tmp, "ml100kbad");
    fs_mkdir_p(d, 0755);
    free(d);
    put("ml100kbad/u.data", "1\t1\t5\t100\n");
    d = fs_join(tmp, "mlnone");
    fs_mkdir_p(d, 0755);
    free(d);
    for (int i = 0; cases[i].what; i++) {
        char *p = fs_join(tmp, cases[i].file);
        size_t n = strlen(cases[i].text);
        if (!strcmp(cases[i].what, "NUL byte")) n = strlen("member,item,label,timestamp\nm,a") + 6;
        CHECK_OK(fs_write_atomic(p, cases[i].text, n));
        free(p);
        int rc = dt_build(tmp, cases[i].body, 1, NULL);
        if (rc != -1 || !strstr(err_msg(), cases[i].expect)) {
            fprintf(stderr, "malformed case '%s': rc %d, message '%s', expected '%s'\n", cases[i].what, rc, err_msg(),
                    cases[i].expect);
            check_failed_count++;
        }
    }
    /* a truncated zip */
    write_ml100k("ml100k2");
    const char *files[] = {"u.data", "u.item", "u.user", NULL};
    zip_dir("ml100k2", "trunc.zip", files, 300);
    int rc = dt_build(tmp, "    source: movielens\n    path: trunc.zip\n", 1, NULL);
    CHECK(rc == -1 && strstr(err_msg(), "trunc.zip") && (strstr(err_msg(), "truncated") || strstr(err_msg(), "damaged")));
    if (rc != -1 || !strstr(err_msg(), "trunc")) fprintf(stderr, "truncated zip: %s\n", err_msg());
    printf("%d malformed inputs refused with the file and line named\n", (int)(sizeof cases / sizeof *cases));
}

/* A tokenizer given as a path is copied into the artifact and used for every example. */
static void test_tokenizer_path(void) {
    char qwen_path[4096], tok512_path[4096];
    if (!shared_file(qwen_path, sizeof qwen_path, "tokenizers/qwen2/vocab.json", "the tokenizer-path cases") ||
        !shared_file(tok512_path, sizeof tok512_path, "models/stories260K/tok512.bin", "the tokenizer-path cases"))
        return;
    char *qwen = xstrdup(qwen_path), *tok512 = xstrdup(tok512_path);
    char *body = xasprintf("    source: synthetic\n    members: 6\n    items: 20\n    tokenizer: %s\n", qwen);
    CHECK_OK(dt_build(tmp, body, 1, NULL));
    dataset ds;
    ds_split s;
    CHECK(open_out("test", &ds, &s) > 0);
    CHECK_STR(ds.tokenizer_format, "hf-vocab");
    CHECK_INT(ds.vocab, 151646);
    const char *files[] = {"out/tokenizer/vocab.json", "out/tokenizer/merges.txt", "out/tokenizer/tokenizer_config.json",
                           "cal/tokenizer/vocab.json", NULL};
    for (int i = 0; files[i]; i++) {
        char *f = fs_join(tmp, files[i]);
        CHECK(fs_exists(f));
        free(f);
    }
    tokenizer *orig, *copy;
    CHECK_OK(tokenizer_load(&orig, qwen));
    CHECK_OK(dataset_tokenizer_load(&ds, &copy));
    CHECK_INT(ds.yes_id, tokenizer_token_id(orig, " yes"));
    CHECK_INT(ds.no_id, tokenizer_token_id(orig, " no"));
    /* an example decodes, with the copy, to the prompt text, and the answer is the label token */
    const ds_example *e = &s.ex[0];
    char *txt;
    size_t n;
    CHECK_OK(tokenizer_decode(copy, ds_example_tokens(&s, 0), e->n_tokens, &txt, &n));
    CHECK(strstr(txt, "Candidate: ") && strstr(txt, "\nAnswer:"));
    CHECK(ds_example_tokens(&s, 0)[e->answer_pos] == ds.yes_id || ds_example_tokens(&s, 0)[e->answer_pos] == ds.no_id);
    free(txt);
    tokenizer_free(orig);
    tokenizer_free(copy);
    ds_split_close(&s);
    dataset_close(&ds);
    free(body);
    /* llama2.c's tok512 has no single-token " yes": refused before any work, naming the fix */
    body = xasprintf("    source: synthetic\n    members: 6\n    tokenizer: %s\n", tok512);
    CHECK(dt_build(tmp, body, 1, NULL) == -1 && strstr(err_msg(), "labels.yes ' yes' is 3 tokens"));
    free(body), free(qwen), free(tok512);
}

/* The first n tokens of example i decoded with the data set's own tokenizer. */
static char *ds_text(const dataset *ds, const ds_split *s, int64_t i, uint32_t n) {
    tokenizer *tok = NULL;
    char *txt = NULL;
    size_t len;
    if (dataset_tokenizer_load(ds, &tok) || tokenizer_decode(tok, ds_example_tokens(s, i), n, &txt, &len)) txt = NULL;
    tokenizer_free(tok);
    return txt;
}

static void test_gguf_chat(void) {
    char gp[4096];
    if (!shared_file(gp, sizeof gp, "models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf",
                     "the GGUF tokenizer and chat template cases"))
        return;
    const char *g = gp;
    put("chat.jsonl", "{\"messages\": [{\"role\": \"system\", \"content\": \"Be brief.\"}, {\"role\": \"user\", \"content\": "
                      "\"Recommend a film.\"}, {\"role\": \"assistant\", \"content\": \"Alien (1979).\"}]}\n"
                      "{\"prompt\": \"2+2?\", \"response\": \"4\"}\n");
    char *body = xasprintf("    source: pairs\n    path: chat.jsonl\n    template: chat\n    tokenizer: %s\n"
                           "    split: {valid: 0, test: 0}\n", g);
    CHECK_OK(dt_build(tmp, body, 1, NULL));
    free(body);
    dataset ds;
    ds_split s;
    CHECK(open_out("train", &ds, &s) == 2);
    CHECK_STR(ds.tokenizer_format, "gguf");
    CHECK_INT(ds.vocab, 49152);
    char *tg = fs_join(tmp, "out/tokenizer/tokenizer.gguf");
    uint64_t bytes = 0;
    CHECK(fs_tree_bytes(tg, &bytes) == 0 && bytes > 0 && bytes < (8u << 20)); /* the vocabulary, not the 98 MB model */
    free(tg);
    char *t0 = ds_text(&ds, &s, 0, s.ex[0].n_tokens), *t1 = ds_text(&ds, &s, 1, s.ex[1].n_tokens);
    CHECK_STR(t0, "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nRecommend a film.<|im_end|>\n"
                  "<|im_start|>assistant\nAlien (1979).<|im_end|>\n");
    CHECK_STR(t1, "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
                  "<|im_start|>user\n2+2?<|im_end|>\n<|im_start|>assistant\n4<|im_end|>\n");
    char *resp = ds_text(&ds, &s, 0, s.ex[0].answer_pos);
    CHECK(resp && strlen(resp) > 10 && !strcmp(resp + strlen(resp) - 10, "assistant\n")); /* the answer is the target */
    const uint8_t *m = ds_example_mask(&s, 0);
    CHECK_INT(m[0], DS_TOK_PROMPT);
    CHECK_INT(m[s.ex[0].n_tokens - 1], DS_TOK_RESPONSE); /* "<|im_end|>" "\n" end the turn, as targets */
    CHECK_INT(ds_example_tokens(&s, 0)[0], 1); /* <|im_start|> from the template, no BOS before it */
    free(t0), free(t1), free(resp);
    ds_split_close(&s);
    dataset_close(&ds);
    /* a ranking source with the GGUF tokenizer: single-token labels, no BOS (add_bos_token false) */
    body = xasprintf("    source: synthetic\n    members: 6\n    items: 20\n    tokenizer: %s\n", g);
    CHECK_OK(dt_build(tmp, body, 1, NULL));
    free(body);
    CHECK(open_out("test", &ds, &s) > 0);
    char *p0 = ds_text(&ds, &s, 0, 20);
    CHECK(p0 && !strncmp(p0, "Will the member", 15));
    CHECK_INT(ds.yes_id, 9805);
    free(p0);
    ds_split_close(&s);
    dataset_close(&ds);
    /* refusals before any work */
    CHECK(dt_build(tmp, "    source: pairs\n    path: chat.jsonl\n    template: chat\n", 1, NULL) == -1 &&
          strstr(err_msg(), "no chat template"));
    CHECK(dt_build(tmp, "    source: synthetic\n    template: chat\n", 1, NULL) == -1 &&
          strstr(err_msg(), "applies to source pairs"));
    err_clear();
}

int main(void) {
    shared_dir(); /* fails at once when the folder is required and absent */
    log_set_level(LOG_WARN);
    snprintf(tmp, sizeof tmp, "/tmp/smelt-test-data-sources-%d", (int)getpid());
    CHECK_OK(fs_mkdir_p(tmp, 0755));
    test_interactions_csv();
    test_interactions_jsonl();
    test_pairs();
    test_text();
    test_ml100k();
    test_malformed();
    test_tokenizer_path();
    test_gguf_chat();
    fs_rm_rf(tmp);
    return check_report("test_data_sources");
}
