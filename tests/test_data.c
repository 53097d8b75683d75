/* test_data.c: the data stage's synthetic source and prompt builder (stages/data/):
 * - determinism (same seed, same bytes; another seed, other data);
 * - learnability: a popularity baseline computed here from the train split's labels exceeds AUC
 *   0.6 on test, and the generator's own P(yes) (regenerated here with synthetic_generate) scores
 *   higher still; both numbers are printed (docs/data.md quotes them);
 * - prompt structure: BOS, instruction, history before candidate, the label token last with the
 *   ACTION mask, groups of at most `candidates` sharing a prefix, temporal order of the splits per
 *   member, the history entry and token budgets, calibration sampled from the chosen split;
 * - history cuts: every prompt with history records its lines as token cuts, each line decoding to
 *   "- ...\n", with builtin:bytes and (with ../shared) Llama 3's BPE, whose prompts also shrink to a
 *   small max_tokens by dropping their oldest lines;
 * - a label that is not a single token is an error before any work;
 * - calibration from the test split is refused unless allow_test_calibration (then recorded);
 * - docs/data.md and docs/evaluate.md list every parameter of the two kinds' schemas. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/log.h"
#include "stages/data/source.h"
#include "stages/evaluate/auc.h"
#include "stages/stage.h"
#include "tests/check.h"
#include "tests/data_testutil.h"
#include "tests/shared_dir.h"

static char tmp[256];

#define QUICKSTART "    source: synthetic\n    members: 400\n    items: 300\n    tasks: [like, save]\n    history: 20\n" \
                   "    tokenizer: builtin:bytes\n    calibration: {samples: 128, from: train}\n"

static char *sub(const char *name) { return fs_join(tmp, name); }

static int open_split(const char *dir, const char *split, dataset *ds, ds_split *s) {
    if (dataset_open(ds, dir)) return -1;
    if (dataset_split_open(ds, split, s)) {
        dataset_close(ds);
        return -1;
    }
    return 0;
}

/* Every example of s with history lines has them as cuts, each decoding to "- ...\n", the last cut
 * at the end of the shared prefix; returns how many examples have cuts. */
static int64_t check_cuts(const dataset *ds, const ds_split *s) {
    tokenizer *tok;
    CHECK_OK(dataset_tokenizer_load(ds, &tok));
    int64_t with = 0;
    for (int64_t i = 0; tok && i < s->n_examples; i++) {
        int n;
        const uint32_t *c = ds_example_cuts(s, i, &n);
        const int32_t *t = ds_example_tokens(s, i);
        char *head, *text;
        size_t len;
        CHECK_OK(tokenizer_decode(tok, t, s->ex[i].prefix_len, &text, &len));
        int lines = 0;
        for (const char *p = strstr(text ? text : "", "History:\n"); p && (p = strchr(p, '\n')); p++) lines += p[1] == '-';
        free(text);
        CHECK_INT(n, lines ? lines + 1 : 0);
        if (!n) continue;
        with++;
        CHECK_INT(c[n - 1], s->ex[i].prefix_len);
        CHECK_OK(tokenizer_decode(tok, t, c[0], &head, &len));
        CHECK(len >= 9 && !strcmp(head + len - 9, "History:\n"));
        free(head);
        for (int k = 0; k + 1 < n; k++) {
            CHECK_OK(tokenizer_decode(tok, t + c[k], c[k + 1] - c[k], &text, &len));
            CHECK(len > 3 && !strncmp(text, "- ", 2) && text[len - 1] == '\n' && !memchr(text, '\n', len - 1));
            free(text);
        }
    }
    tokenizer_free(tok);
    return with;
}

/* A byte-level BPE (Llama 3, from ../shared): cuts found in the merged tokens, and prompts fitted to
 * a small max_tokens by the shared budget rule (ds_fit_cuts) drop their oldest lines. */
static void test_cuts_bpe(void) {
    char model[1024];
    if (!shared_file(model, sizeof model, "tokenizers/llama3/tokenizer.model", "the Llama 3 history cuts")) return;
    char *dir = sub("cuts-bpe"), *out = fs_join(dir, "out");
    fs_mkdir_p(dir, 0755);
    for (int small = 0; small < 2; small++) {
        char *body = xasprintf("    source: synthetic\n    members: 12\n    tasks: [like, save]\n    history: 12\n"
                               "    tokenizer: %s\n    max_tokens: %d\n", model, small ? 130 : 512);
        dt_metrics ms;
        CHECK_OK(dt_build(dir, body, 3, &ms));
        dataset ds;
        ds_split s;
        CHECK_OK(open_split(out, "train", &ds, &s));
        int64_t with = check_cuts(&ds, &s), longest = 0;
        for (int64_t i = 0; i < s.n_examples; i++) longest = s.ex[i].n_tokens > longest ? s.ex[i].n_tokens : longest;
        CHECK(with > s.n_examples / 2);
        if (small) CHECK(longest <= 130 && dt_get(&ms, "history_entries_mean") < 8);
        printf("llama3, max_tokens %d: %lld of %lld training prompts with history cuts, longest %lld tokens, %.1f "
               "history entries on average\n", small ? 130 : 512, (long long)with, (long long)s.n_examples,
               (long long)longest, dt_get(&ms, "history_entries_mean"));
        ds_split_close(&s);
        dataset_close(&ds);
        free(body);
    }
    free(out), free(dir);
}

static void test_determinism(void) {
    char *a = sub("det-a"), *b = sub("det-b");
    fs_mkdir_p(a, 0755);
    fs_mkdir_p(b, 0755);
    const char *body = "    source: synthetic\n    members: 30\n    items: 50\n    tasks: [like]\n";
    CHECK_OK(dt_build(a, body, 7, NULL));
    CHECK_OK(dt_build(b, body, 7, NULL));
    const char *files[] = {"out/train.bin", "out/valid.bin", "out/test.bin", "out/meta.json", "cal/calibration.bin", NULL};
    for (int i = 0; files[i]; i++) {
        char *pa = fs_join(a, files[i]), *pb = fs_join(b, files[i]), *da, *db;
        size_t na, nb;
        CHECK_OK(fs_read_file(pa, 0, &da, &na));
        CHECK_OK(fs_read_file(pb, 0, &db, &nb));
        CHECK(na == nb && !memcmp(da, db, na));
        free(da), free(db), free(pa), free(pb);
    }
    CHECK_OK(dt_build(b, body, 8, NULL));
    char *pa = fs_join(a, "out/test.bin"), *pb = fs_join(b, "out/test.bin"), *da, *db;
    size_t na, nb;
    CHECK_OK(fs_read_file(pa, 0, &da, &na));
    CHECK_OK(fs_read_file(pb, 0, &db, &nb));
    CHECK(na != nb || memcmp(da, db, na)); /* another seed, other data */
    free(da), free(db), free(pa), free(pb), free(a), free(b);
}

/* The popularity baseline and the generator's truth on the quickstart's data. */
static void test_learnable(void) {
    char *dir = sub("quick"), *out = fs_join(dir, "out");
    fs_mkdir_p(dir, 0755);
    dt_metrics ms;
    CHECK_OK(dt_build(dir, QUICKSTART, 7, &ms));
    dataset ds;
    ds_split tr, te;
    CHECK_OK(open_split(out, "train", &ds, &tr));
    CHECK_OK(dataset_split_open(&ds, "test", &te));
    int nt = ds.n_tasks, items = 300;
    double *pos = calloc((size_t)items * nt, sizeof *pos), *cnt = calloc((size_t)items * nt, sizeof *cnt);
    double tp[2] = {0}, tc[2] = {0};
    for (int64_t i = 0; i < tr.n_examples; i++) {
        const ds_example *e = &tr.ex[i];
        pos[e->item * nt + e->task] += e->label, cnt[e->item * nt + e->task] += 1;
        tp[e->task] += e->label, tc[e->task] += 1;
    }
    int64_t n = te.n_examples;
    double *pop = malloc((size_t)n * sizeof *pop), *truth = malloc((size_t)n * sizeof *truth);
    int8_t *lab = malloc((size_t)n);
    uint16_t *task = malloc((size_t)n * sizeof *task);
    /* the generator's ground truth for the same events: regenerate, find each test example's event */
    rs_corpus c;
    memset(&c, 0, sizeof c);
    recipe *r;
    char *rp = fs_join(dir, "recipe.yaml");
    CHECK_OK(recipe_load(&r, rp, NULL, 0));
    CHECK_OK(synthetic_generate(&c, r->stages[0].params, 7));
    int64_t matched = 0;
    for (int64_t i = 0; i < n; i++) {
        const ds_example *e = &te.ex[i];
        size_t k = (size_t)e->item * nt + e->task;
        pop[i] = (pos[k] + 2 * tp[e->task] / tc[e->task]) / (cnt[k] + 2);
        lab[i] = e->label;
        task[i] = e->task;
        truth[i] = NAN;
        for (int64_t j = 0; j < c.n_events; j++)
            if (c.member_ids[c.events[j].member] == e->member && c.events[j].time == e->time) {
                CHECK_INT(c.events[j].item, e->item);
                CHECK_INT((c.events[j].yes >> e->task) & 1, e->label);
                truth[i] = c.truth[j * nt + e->task];
                matched++;
                break;
            }
    }
    CHECK_INT(matched, n);
    double a_pop[2], a_truth[2];
    CHECK_OK(auc_per_task(a_pop, NULL, NULL, pop, lab, task, (size_t)n, nt));
    CHECK_OK(auc_per_task(a_truth, NULL, NULL, truth, lab, task, (size_t)n, nt));
    double mp = auc_mean(a_pop, nt, NULL), mt = auc_mean(a_truth, nt, NULL);
    printf("synthetic (quickstart parameters, seed 7): test AUC of train popularity %.4f (like %.4f, save %.4f), of "
           "the generator's P(yes) %.4f (like %.4f, save %.4f); %lld test examples\n",
           mp, a_pop[0], a_pop[1], mt, a_truth[0], a_truth[1], (long long)n);
    CHECK(mp > 0.6);
    CHECK(mt > mp + 0.1);
    /* the stage reports the same two figures as metrics (its popularity uses every train event,
     * including those too early to be examples, so it is close to ours but not identical) */
    CHECK(fabs(dt_get(&ms, "truth_auc_test") - mt) < 1e-12);
    CHECK(fabs(dt_get(&ms, "baseline_popularity_auc_test") - mp) < 0.02);
    CHECK(dt_get(&ms, "events") == 400 * 48 && dt_get(&ms, "members") == 400 && dt_get(&ms, "items") == 300);
    CHECK(dt_get(&ms, "examples_test") == n);
    rs_corpus_free(&c);
    recipe_free(r);
    free(rp), free(pos), free(cnt), free(pop), free(truth), free(lab), free(task);
    ds_split_close(&tr);
    ds_split_close(&te);
    dataset_close(&ds);
    free(out);
    free(dir);
}

static void test_structure(void) {
    char *dir = sub("struct"), *out, *cal;
    fs_mkdir_p(dir, 0755);
    out = fs_join(dir, "out");
    cal = fs_join(dir, "cal");
    CHECK_OK(dt_build(dir, "    source: synthetic\n    members: 20\n    items: 60\n    tasks: [like, save, share]\n"
                           "    history: 7\n    history_tokens: 150\n    candidates: 3\n    interactions: 30\n"
                           "    calibration: {samples: 25, from: valid, seed: 3}\n", 5, NULL));
    dataset ds;
    CHECK_OK(dataset_open(&ds, out));
    CHECK_STR(ds.kind, "ranking");
    CHECK_INT(ds.n_tasks, 3);
    CHECK_STR(ds.tasks[2].name, "share");
    CHECK_INT(ds.yes_id, 259);
    CHECK_INT(ds.no_id, 260);
    int64_t last_time[3][20][3];
    memset(last_time, 0, sizeof last_time);
    const char *names[3] = {"train", "valid", "test"};
    int64_t first_time[3][20][3];
    for (int a = 0; a < 3; a++)
        for (int b = 0; b < 20; b++)
            for (int t = 0; t < 3; t++) first_time[a][b][t] = INT64_MAX;
    for (int sp = 0; sp < 3; sp++) {
        ds_split s;
        CHECK_OK(dataset_split_open(&ds, names[sp], &s));
        for (int64_t i = 0; i < s.n_examples; i++) {
            const ds_example *e = &s.ex[i];
            const int32_t *t = ds_example_tokens(&s, i);
            const uint8_t *m = ds_example_mask(&s, i);
            CHECK_INT(t[0], 256); /* BOS */
            CHECK_INT(e->answer_pos, e->n_tokens - 1);
            CHECK_INT(m[e->n_tokens - 1], DS_TOK_ACTION);
            CHECK_INT(t[e->n_tokens - 1], e->label ? 259 : 260);
            CHECK(e->n_tokens <= 512);
            CHECK(ds_group_end(&s, i) - i <= 3);
            char *txt = dt_decode(&s, i);
            CHECK(!strncmp(txt + 5, ds.tasks[e->task].instruction, strlen(ds.tasks[e->task].instruction)));
            char *cand = strstr(txt, "Candidate: "), *hist = strstr(txt, "History:");
            CHECK(cand && hist && hist < cand && strstr(cand, "\nAnswer:"));
            int lines = 0;
            for (char *p = hist; p && p < cand; p = strchr(p + 1, '\n')) lines += p[1] == '-';
            CHECK(lines <= 7);
            int n_cuts;
            ds_example_cuts(&s, i, &n_cuts);
            CHECK_INT(n_cuts, lines ? lines + 1 : 0);
            /* the shared prefix is everything before the candidate */
            char *pre = dt_decode_n(&s, i, e->prefix_len);
            CHECK(strlen(pre) == (size_t)(cand - txt) && !strncmp(pre, txt, strlen(pre)));
            free(pre);
            free(txt);
            int64_t *ft = &first_time[sp][e->member][e->task], *lt = &last_time[sp][e->member][e->task];
            if (e->time < *ft) *ft = e->time;
            if (e->time > *lt) *lt = e->time;
        }
        if (sp == 0) CHECK(check_cuts(&ds, &s) > s.n_examples / 2);
        ds_split_close(&s);
    }
    /* temporal: per member and task, every train example precedes every valid one, which precede test */
    for (int u = 0; u < 20; u++)
        for (int t = 0; t < 3; t++) {
            if (first_time[1][u][t] != INT64_MAX) CHECK(last_time[0][u][t] < first_time[1][u][t]);
            if (first_time[2][u][t] != INT64_MAX) CHECK(last_time[1][u][t] < first_time[2][u][t] || first_time[1][u][t] == INT64_MAX);
        }
    /* calibration: 25 examples of valid, in valid's order, with the tokenizer and tasks of the set */
    dataset cd;
    ds_split cs, vs;
    CHECK_OK(open_split(cal, "calibration", &cd, &cs));
    CHECK_STR(cd.role, "calibration");
    CHECK_INT(cs.n_examples, 25);
    CHECK_OK(dataset_split_open(&ds, "valid", &vs));
    int64_t j = 0;
    for (int64_t i = 0; i < cs.n_examples; i++) {
        while (j < vs.n_examples && (vs.ex[j].n_tokens != cs.ex[i].n_tokens ||
                                     memcmp(ds_example_tokens(&vs, j), ds_example_tokens(&cs, i), 4 * cs.ex[i].n_tokens)))
            j++;
        CHECK(j < vs.n_examples); /* found, after the previous one */
        j++;
    }
    ds_split_close(&cs);
    ds_split_close(&vs);
    dataset_close(&cd);
    dataset_close(&ds);
    free(out), free(cal), free(dir);
}

static void test_bad_labels(void) {
    char *dir = sub("labels"), *train;
    fs_mkdir_p(dir, 0755);
    train = fs_join(dir, "out/train.bin");
    CHECK(dt_build(dir, "    source: synthetic\n    members: 5\n    labels: {yes: 'yes!', no: ' no'}\n", 1, NULL) == -1);
    CHECK(strstr(err_msg(), "labels.yes 'yes!' is 4 tokens") != NULL);
    CHECK(!fs_exists(train)); /* nothing was built */
    CHECK(dt_build(dir, "    source: synthetic\n    members: 5\n    labels: {yes: ' no', no: ' no'}\n", 1, NULL) == -1);
    CHECK(strstr(err_msg(), "same token") != NULL);
    CHECK(dt_build(dir, "    source: movielens\n", 1, NULL) == -1 && strstr(err_msg(), "needs path:"));
    free(train);
    free(dir);
}

/* Calibration from the test split: refused before any work unless allow_test_calibration, which
 * warns and records calibration_from_test = 1 (pruning and quantization rely on this rule). */
static void test_calibration_from_test(void) {
    char *dir = sub("caltest"), *train, *calf;
    fs_mkdir_p(dir, 0755);
    train = fs_join(dir, "out/train.bin");
    calf = fs_join(dir, "cal/calibration.bin");
    const char *body = "    source: synthetic\n    members: 8\n    calibration: {samples: 10, from: test}\n";
    dt_metrics ms;
    CHECK(dt_build(dir, body, 1, &ms) == -1);
    CHECK(err_kind_get() == ERR_INPUT && strstr(err_msg(), "allow_test_calibration: true") &&
          strstr(err_msg(), "from: train"));
    CHECK(!fs_exists(train) && !fs_exists(calf)); /* refused before any work */
    char *allowed = xasprintf("%s    allow_test_calibration: true\n", body);
    CHECK_OK(dt_build(dir, allowed, 1, &ms));
    CHECK(dt_get(&ms, "calibration_from_test") == 1 && dt_get(&ms, "calibration_examples") == 10);
    CHECK(fs_exists(calf));
    /* the default (train) records 0 */
    CHECK_OK(dt_build(dir, "    source: synthetic\n    members: 8\n    calibration: {samples: 10}\n", 1, &ms));
    CHECK(dt_get(&ms, "calibration_from_test") == 0);
    free(allowed), free(train), free(calf), free(dir);
}

/* The parameter tables of the docs and the schemas are one list: every parameter is documented,
 * and every documented parameter exists. */
static void test_docs(const char *kind, const char *doc) {
    const char *src = getenv("SMELT_SOURCE_DIR");
    char *path = xasprintf("%s/%s", src ? src : ".", doc), *text;
    CHECK_OK(fs_read_file(path, 0, &text, NULL));
    if (!text) return;
    const stage_kind *k = stage_kind_find(kind);
    CHECK(k != NULL);
    int n = 0;
    for (const param_spec *p = k->params; k && p->name; p++, n++) {
        char row[96];
        snprintf(row, sizeof row, "| `%s` |", p->name);
        if (!strstr(text, row)) {
            fprintf(stderr, "%s does not document parameter %s of kind %s\n", doc, p->name, kind);
            check_failed_count++;
        }
    }
    int rows = 0;
    const char *sec = strstr(text, "### Parameters");
    for (const char *p = sec; p && (p = strstr(p, "\n| `")); p++) {
        const char *next = strstr(sec + 1, "\n### ");
        if (next && p > next) break;
        rows++;
    }
    CHECK_INT(rows, n);
    free(text);
    free(path);
}

int main(void) {
    shared_dir(); /* fails at once when the folder is required and absent */
    log_set_level(LOG_WARN);
    snprintf(tmp, sizeof tmp, "/tmp/smelt-test-data-%d", (int)getpid());
    CHECK_OK(fs_mkdir_p(tmp, 0755));
    test_determinism();
    test_learnable();
    test_structure();
    test_bad_labels();
    test_calibration_from_test();
    test_cuts_bpe();
    test_docs("data", "docs/data.md");
    test_docs("evaluate", "docs/evaluate.md");
    fs_rm_rf(tmp);
    return check_report("test_data");
}
