/* test_tokenizer_bos.c: the tokenizer files smelt writes beside a trained model make transformers'
 * AutoTokenizer.from_pretrained(folder)(prompt) give exactly the ids smelt trains and scores with,
 * BOS included. tools/tokenizer_bos_check.py ran smelt's data and train stages on the prompts of
 * tests/data/tokenizer/bos_prompts.jsonl, then transformers on the trained folder, checked that
 * both agree and wrote what transformers gave to bos_<case>.out, with the sha256 of the folder's
 * tokenizer.json and tokenizer_config.json. Here, for each case:
 *   - the data stage's prompt ids (the tokens before each example's first response token) equal
 *     the fixture's line for that prompt: smelt's ids are transformers' ids;
 *   - train_save_model writes exactly the files transformers read (same sha256);
 *   - those files say it: a TemplateProcessing post-processor "BOS $A" with the BOS id and
 *     add_bos_token true when smelt adds BOS, a ByteLevel post-processor (adds nothing) and false
 *     when it does not;
 *     keys of a copied tokenizer_config.json smelt does not own (chat_template) are kept.
 * Cases: builtin:bytes, `nobos` (a tokenizer.json whose own files add no BOS although smelt adds
 * one: what smelt saved before) and `bytelevel` (a ByteLevel post-processor: no BOS on either
 * side, as GPT-2's or SmolLM2's files), both committed in tests/data/tokenizer/, need nothing; Llama 3 and Qwen2 (no BOS) read ../shared
 * (tests/shared_dir.h: one skip line each without it, a failure when SMELT_REQUIRE_SHARED=1). */
#include <cjson/cJSON.h>
#include <unistd.h>

#include "common/log.h"
#include "common/sha256.h"
#include "data_testutil.h"
#include "eval_testmodel.h"
#include "stages/train/train.h"
#include "tests/check.h"
#include "tests/shared_dir.h"

static char tmp[256];
static const char *src_dir;

typedef struct {
    char header[512];
    int n;
    int32_t *ids[16];
    size_t len[16];
} fixture;

static int read_fixture(fixture *f, const char *path) {
    char *text;
    memset(f, 0, sizeof *f);
    if (fs_read_file(path, 1 << 24, &text, NULL)) return -1;
    char *line = text, *nl = strchr(line, '\n');
    if (!nl) return free(text), -1;
    snprintf(f->header, sizeof f->header, "%.*s", (int)(nl - line), line);
    for (line = nl + 1; *line && f->n < 16; line = nl + 1) {
        nl = strchr(line, '\n');
        if (!nl) break;
        *nl = 0;
        size_t cap = 16, n = 0;
        int32_t *ids = malloc(cap * sizeof *ids);
        for (char *p = line, *end; *p; p = end) {
            long v = strtol(p, &end, 10);
            if (end == p) break;
            if (n == cap) ids = realloc(ids, (cap *= 2) * sizeof *ids);
            ids[n++] = (int32_t)v;
        }
        f->ids[f->n] = ids;
        f->len[f->n++] = n;
    }
    free(text);
    return 0;
}

static void fixture_free(fixture *f) {
    for (int i = 0; i < f->n; i++) free(f->ids[i]);
}

/* What the saved files declare: the post-processor and add_bos_token against the BOS smelt adds. */
static void check_declared(const char *name, const char *dir, int32_t bos, int keep_chat) {
    char *tj = fs_join(dir, "tokenizer.json"), *tc = fs_join(dir, "tokenizer_config.json"), *a = NULL, *b = NULL;
    CHECK_OK(fs_read_file(tj, 1 << 26, &a, NULL));
    CHECK_OK(fs_read_file(tc, 1 << 24, &b, NULL));
    cJSON *j = cJSON_Parse(a), *c = cJSON_Parse(b);
    CHECK(j && c);
    const cJSON *pp = cJSON_GetObjectItem(j, "post_processor"), *add = cJSON_GetObjectItem(c, "add_bos_token");
    if (bos >= 0) {
        const cJSON *single = cJSON_GetObjectItem(pp, "single");
        const cJSON *first = cJSON_GetObjectItem(cJSON_GetArrayItem(single, 0), "SpecialToken");
        const cJSON *second = cJSON_GetObjectItem(cJSON_GetArrayItem(single, 1), "Sequence");
        const char *sid = cJSON_GetStringValue(cJSON_GetObjectItem(first, "id"));
        const cJSON *st = sid ? cJSON_GetObjectItem(cJSON_GetObjectItem(pp, "special_tokens"), sid) : NULL;
        const cJSON *ids = cJSON_GetObjectItem(st, "ids");
        const char *type = cJSON_GetStringValue(cJSON_GetObjectItem(pp, "type"));
        CHECK(type && !strcmp(type, "TemplateProcessing"));
        CHECK(cJSON_GetArraySize(single) == 2 && second && cJSON_GetArraySize(ids) == 1 &&
              cJSON_GetArrayItem(ids, 0)->valueint == bos);
        CHECK(cJSON_IsTrue(add));
    } else { /* a post-processor that adds nothing (ByteLevel), which smelt reads back as "no BOS" */
        const char *type = cJSON_GetStringValue(cJSON_GetObjectItem(pp, "type"));
        CHECK(type && !strcmp(type, "ByteLevel") && cJSON_IsFalse(add));
    }
    if (keep_chat) CHECK(cJSON_GetObjectItem(c, "chat_template") && cJSON_GetObjectItem(c, "model_max_length"));
    if (check_failed_count) fprintf(stderr, "%s: the saved files do not declare BOS %d as smelt adds it\n", name, bos);
    cJSON_Delete(j), cJSON_Delete(c);
    free(a), free(b), free(tj), free(tc);
}

static void check_case(const char *name, const char *spec, int keep_chat) {
    char *dir = xasprintf("%s/%s", tmp, name), *prompts = xasprintf("%s/tests/data/tokenizer/bos_prompts.jsonl", src_dir);
    char *fpath = xasprintf("%s/tests/data/tokenizer/bos_%s.out", src_dir, name);
    char *body = xasprintf("    source: pairs\n    path: %s\n    tokenizer: %s\n    split: {valid: 0, test: 0}\n"
                           "    calibration: {samples: 0}\n", prompts, spec);
    fs_mkdir_p(dir, 0755);
    fixture f;
    CHECK_OK(read_fixture(&f, fpath));
    CHECK_OK(dt_build(dir, body, 1, NULL));
    char *out = fs_join(dir, "out");
    dataset ds;
    ds_split s;
    CHECK_OK(dataset_open(&ds, out));
    CHECK_OK(dataset_split_open(&ds, "train", &s));
    /* the ids smelt uses for prompt i (pairs: member = record index) against transformers' */
    CHECK_INT(s.n_examples, f.n);
    int equal = 0;
    for (int64_t i = 0; i < s.n_examples; i++) {
        const ds_example *e = &s.ex[i];
        CHECK(e->member < (uint32_t)f.n);
        if (e->member >= (uint32_t)f.n) continue;
        const int32_t *want = f.ids[e->member];
        int same = f.len[e->member] == e->answer_pos && !memcmp(want, ds_example_tokens(&s, i), 4 * (size_t)e->answer_pos);
        if (!same) fprintf(stderr, "%s: prompt %u: smelt's %u ids differ from transformers' %zu\n", name, e->member,
                           e->answer_pos, f.len[e->member]);
        equal += same;
    }
    CHECK_INT(equal, f.n);
    /* the folder a trained model is written to: same files as those transformers read */
    model m;
    model_config c = em_config(8, 1, 2, 1, 16, ds.vocab);
    CHECK_OK(em_random_model(&m, &c, 3));
    char *mdir = fs_join(dir, "model"), *tj = fs_join(mdir, "tokenizer.json"), *tc = fs_join(mdir, "tokenizer_config.json");
    CHECK_OK(train_save_model(mdir, &m, &ds, ST_F32));
    char h1[SHA256_HEX_LEN + 1] = "", h2[SHA256_HEX_LEN + 1] = "", want[256];
    sha256_file(h1, tj, NULL);
    sha256_file(h2, tc, NULL);
    snprintf(want, sizeof want, "# sha256 tokenizer.json %s tokenizer_config.json %s ", h1, h2);
    if (strncmp(f.header, want, strlen(want))) {
        fprintf(stderr, "%s: the files written beside a model differ from those transformers read; rerun "
                "tools/tokenizer_bos_check.py\n  fixture: %s\n  now:     %s\n", name, f.header, want);
        check_failed_count++;
    }
    tokenizer *tok;
    CHECK_OK(dataset_tokenizer_load(&ds, &tok));
    const int32_t bos = tokenizer_add_bos(tok) ? tokenizer_bos_id(tok) : -1;
    check_declared(name, mdir, bos, keep_chat);
    printf("%s: %d prompts, smelt's ids == transformers' on the trained folder (BOS %d)\n", name, equal,
           bos);
    tokenizer_free(tok);
    model_free(&m);
    ds_split_close(&s);
    dataset_close(&ds);
    fixture_free(&f);
    free(dir), free(prompts), free(fpath), free(body), free(out), free(mdir), free(tj), free(tc);
}

int main(void) {
    log_set_level(LOG_WARN);
    src_dir = getenv("SMELT_SOURCE_DIR") ? getenv("SMELT_SOURCE_DIR") : ".";
    shared_dir(); /* fails at once when the folder is required and absent */
    snprintf(tmp, sizeof tmp, "/tmp/smelt-test-tokbos-%d", (int)getpid());
    CHECK_OK(fs_mkdir_p(tmp, 0755));
    check_case("bytes", "builtin:bytes", 0);
    char *nobos = xasprintf("%s/tests/data/tokenizer/nobos/tokenizer.json", src_dir);
    check_case("nobos", nobos, 1);
    free(nobos);
    char *bl = xasprintf("%s/tests/data/tokenizer/bytelevel/tokenizer.json", src_dir);
    check_case("bytelevel", bl, 1);
    free(bl);
    char l3[1024], q2[1024];
    if (shared_file(l3, sizeof l3, "tokenizers/llama3/tokenizer.model", "the Llama 3 case")) check_case("llama3", l3, 0);
    if (shared_file(q2, sizeof q2, "tokenizers/qwen2/vocab.json", "the Qwen2 case")) check_case("qwen2", q2, 1);
    fs_rm_rf(tmp);
    return check_report("test_tokenizer_bos");
}
