/* data.c: the `data` stage kind: parameter schema, checks made before any work (labels must be
 * single tokens, the source's required paths), dispatch to a source, then the artifact (meta.json,
 * tokenizer copy, split files), the calibration artifact and statistics as metrics. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "common/fsutil.h"
#include "common/log.h"
#include "model/chat.h"
#include "stages/data/build.h"
#include "stages/data/data.h"
#include "stages/data/rng.h"
#include "stages/stage.h"

static const char *const source_choices[] = {"synthetic", "movielens", "interactions", "pairs", "text", NULL};
static const char *const builtin_choices[] = {"builtin:bytes", NULL};
static const char *const format_choices[] = {"auto", "csv", "tsv", "jsonl", "json", "txt", NULL};
static const char *const answer_choices[] = {"auto", "text", NULL};
static const char *const template_choices[] = {"plain", "chat", NULL};
static const char *const from_choices[] = {"train", "valid", "test", NULL};

static const param_spec tokenizer_alts[] = {
    {.name = "builtin", .type = P_STRING, .choices = builtin_choices, .help = "builtin:bytes"},
    {.name = "path", .type = P_PATH, .help = "a tokenizer file or folder"},
    {.name = NULL},
};
static const param_spec label_fields[] = {
    {.name = "yes", .type = P_STRING, .def = "' yes'", .help = "text of the yes answer (one token)"},
    {.name = "no", .type = P_STRING, .def = "' no'", .help = "text of the no answer (one token)"},
    {.name = NULL},
};
static const param_spec task_fields[] = {
    {.name = "name", .type = P_STRING, .required = 1, .help = "task name"},
    {.name = "instruction", .type = P_STRING, .def = "''", .help = "first line of its prompts (default per source)"},
    {.name = "filter", .type = P_STRING, .def = "''", .help = "only items with this tag (MovieLens genre)"},
    {.name = NULL},
};
static const param_spec task_alts[] = {
    {.name = "name", .type = P_STRING, .help = "a task name"},
    {.name = "task", .type = P_MAP, .fields = task_fields, .help = "{name, instruction, filter}"},
    {.name = NULL},
};
static const param_spec task_elem = {.name = "task", .type = P_UNION, .alts = task_alts, .help = "a task"};
static const param_spec text_elem = {.name = "column", .type = P_STRING, .help = "a column name"};
static const param_spec split_fields[] = {
    {.name = "valid", .type = P_FLOAT, .def = "0.1", .has_min = 1, .min = 0, .has_max = 1, .max = 0.5,
     .help = "fraction of each member's latest events (or of the records) for validation"},
    {.name = "test", .type = P_FLOAT, .def = "0.1", .has_min = 1, .min = 0, .has_max = 1, .max = 0.5,
     .help = "fraction of each member's latest events (or of the records) for test"},
    {.name = NULL},
};
static const param_spec column_fields[] = {
    {.name = "member", .type = P_STRING, .def = "member", .help = "member id column"},
    {.name = "item", .type = P_STRING, .def = "item", .help = "item id column"},
    {.name = "label", .type = P_STRING, .def = "label", .help = "label column (yes/no, 1/0, or a number with threshold)"},
    {.name = "time", .type = P_STRING, .def = "timestamp", .help = "timestamp column (a number)"},
    {.name = "action", .type = P_STRING, .def = "''", .help = "action column shown in histories (default: the label)"},
    {.name = "task", .type = P_STRING, .def = "''", .help = "task column: the row is an example of the task it names"},
    {.name = NULL},
};
static const param_spec item_column_fields[] = {
    {.name = "id", .type = P_STRING, .def = "item", .help = "item id column of the item table"},
    {.name = "text", .type = P_LIST, .def = "[title]", .elem = &text_elem, .help = "columns shown as the item's text"},
    {.name = "tags", .type = P_STRING, .def = "''", .help = "a '|'-separated tag column (task filters)"},
    {.name = NULL},
};
static const param_spec member_column_fields[] = {
    {.name = "id", .type = P_STRING, .def = "member", .help = "member id column of the member table"},
    {.name = "text", .type = P_LIST, .def = "[]", .elem = &text_elem, .help = "columns shown as the member's profile"},
    {.name = NULL},
};
static const param_spec field_fields[] = {
    {.name = "prompt", .type = P_STRING, .def = "prompt", .help = "prompt field"},
    {.name = "response", .type = P_STRING, .def = "response", .help = "response field"},
    {.name = "instruction", .type = P_STRING, .def = "instruction", .help = "Alpaca instruction field"},
    {.name = "input", .type = P_STRING, .def = "input", .help = "Alpaca input field"},
    {.name = "output", .type = P_STRING, .def = "output", .help = "Alpaca output field"},
    {.name = "messages", .type = P_STRING, .def = "messages", .help = "chat messages field"},
    {.name = "text", .type = P_STRING, .def = "text", .help = "document field of JSONL text"},
    {.name = NULL},
};
static const param_spec calib_fields[] = {
    {.name = "samples", .type = P_INT, .def = "128", .has_min = 1, .min = 0, .has_max = 1, .max = 1e7,
     .help = "examples in the calibration set (0: none)"},
    {.name = "from", .type = P_STRING, .def = "train", .choices = from_choices, .help = "the split sampled"},
    {.name = "seed", .type = P_INT, .def = "0", .help = "seed of the sample"},
    {.name = NULL},
};

static const param_spec data_params[] = {
    {.name = "source", .type = P_STRING, .required = 1, .choices = source_choices, .help = "where the data comes from"},
    {.name = "tokenizer", .type = P_UNION, .def = "builtin:bytes", .alts = tokenizer_alts,
     .help = "builtin:bytes or a tokenizer file/folder (copied into the artifact)"},
    {.name = "labels", .type = P_MAP, .def = "{}", .fields = label_fields, .help = "the answer tokens"},
    {.name = "tasks", .type = P_LIST, .def = "[like]", .elem = &task_elem, .help = "tasks (names or maps)"},
    {.name = "path", .type = P_PATH, .help = "the source's file, folder or archive"},
    {.name = "items_path", .type = P_PATH, .help = "interactions: the item text table"},
    {.name = "members_path", .type = P_PATH, .help = "interactions: the member text table (optional)"},
    {.name = "format", .type = P_STRING, .def = "auto", .choices = format_choices, .help = "file format (auto: by extension)"},
    {.name = "members", .type = P_INT, .def = "0", .has_min = 1, .min = 0,
     .help = "synthetic: members generated (0: 400); other sources: keep the first N members (0: all)"},
    {.name = "items", .type = P_INT, .def = "300", .has_min = 1, .min = 2, .has_max = 1, .max = 1e7, .help = "synthetic: items"},
    {.name = "interactions", .type = P_INT, .def = "0", .has_min = 1, .min = 0, .has_max = 1, .max = 1e6,
     .help = "synthetic: events per member (0: 2 x history + 8)"},
    {.name = "noise", .type = P_FLOAT, .def = "0.1", .has_min = 1, .min = 0, .has_max = 1, .max = 1,
     .help = "synthetic: 0 (labels follow the signal) to 1 (pure coin flips)"},
    {.name = "history", .type = P_INT, .def = "20", .has_min = 1, .min = 0, .has_max = 1, .max = 10000,
     .help = "most history entries in a prompt"},
    {.name = "history_tokens", .type = P_INT, .def = "320", .has_min = 1, .min = 0, .has_max = 1, .max = 1 << 20,
     .help = "token budget of the history"},
    {.name = "max_tokens", .type = P_INT, .def = "512", .has_min = 1, .min = 8, .has_max = 1, .max = DS_MAX_EXAMPLE_TOKENS,
     .help = "longest example (prompts drop old history to fit; documents are cut into pieces)"},
    {.name = "candidates", .type = P_INT, .def = "8", .has_min = 1, .min = 1, .has_max = 1, .max = 4096,
     .help = "candidates per group sharing one prompt prefix"},
    {.name = "min_history", .type = P_INT, .def = "3", .has_min = 1, .min = 0,
     .help = "training candidates need this many earlier events"},
    {.name = "train_groups", .type = P_INT, .def = "0", .has_min = 1, .min = 0,
     .help = "training groups per member and task, most recent first (0: all)"},
    {.name = "split", .type = P_MAP, .def = "{}", .fields = split_fields, .help = "validation and test fractions"},
    {.name = "threshold", .type = P_FLOAT, .def = "4.0",
     .help = "movielens/interactions: a numeric label >= threshold is yes"},
    {.name = "columns", .type = P_MAP, .def = "{}", .fields = column_fields, .help = "interactions: column names"},
    {.name = "item_columns", .type = P_MAP, .def = "{}", .fields = item_column_fields, .help = "item table columns"},
    {.name = "member_columns", .type = P_MAP, .def = "{}", .fields = member_column_fields, .help = "member table columns"},
    {.name = "positive", .type = P_LIST, .def = "['1', 'yes', 'true', 'y']", .elem = &text_elem,
     .help = "label/action values that mean yes"},
    {.name = "negative", .type = P_LIST, .def = "['0', 'no', 'false', 'n']", .elem = &text_elem,
     .help = "label/action values that mean no"},
    {.name = "fields", .type = P_MAP, .def = "{}", .fields = field_fields, .help = "pairs/text: record field names"},
    {.name = "answers", .type = P_STRING, .def = "auto", .choices = answer_choices,
     .help = "pairs: auto turns yes/no responses into label tokens (a ranking set)"},
    {.name = "template", .type = P_STRING, .def = "plain", .choices = template_choices,
     .help = "pairs: chat renders every record with the tokenizer's chat template (ChatML, Llama 3)"},
    {.name = "calibration", .type = P_MAP, .def = "{}", .fields = calib_fields, .help = "{samples, from, seed}"},
    {.name = "allow_test_calibration", .type = P_BOOL, .def = "false",
     .help = "accept calibration: {from: test} (pruning or quantizing on the evaluated split leaks it)"},
    {.name = NULL},
};

static const stage_output_spec data_outputs[] = {
    {.name = "output", .kind = "dataset"},
    {.name = "calibration", .kind = "dataset"},
    {.name = NULL},
};

/* A label must be exactly one token, and yes and no must differ. */
static int label_token(const tokenizer *tok, const char *text, const char *which, int32_t *id) {
    int32_t *ids;
    size_t n;
    if (tokenizer_encode(tok, text, strlen(text), &ids, &n)) return -1;
    int rc = 0;
    if (n != 1)
        rc = err_set(ERR_INPUT, "labels.%s '%s' is %zu tokens in tokenizer %s, not one; choose a label that is a single "
                     "token (builtin:bytes has ' yes' and ' no')", which, text, n, tokenizer_source(tok));
    else *id = ids[0];
    free(ids);
    return rc;
}

static int opts_from_params(build_opts *o, const cJSON *p) {
    int64_t v[6];
    static const char *const keys[] = {"history", "history_tokens", "max_tokens", "candidates", "min_history", "train_groups"};
    for (int i = 0; i < 6; i++)
        if (param_int(p, keys[i], &v[i])) return -1;
    o->history = v[0], o->history_tokens = v[1], o->max_tokens = v[2], o->candidates = v[3], o->min_history = v[4];
    o->train_groups = v[5];
    if (param_float(p, "split.valid", &o->valid_frac) || param_float(p, "split.test", &o->test_frac)) return -1;
    return 0;
}

/* Keeps the first `cap` members (by their index) of a corpus: its events are sorted by member. */
static void cap_members(rs_corpus *c, int64_t cap) {
    if (cap <= 0 || cap >= c->n_members) return;
    int64_t n = 0;
    while (n < c->n_events && c->events[n].member < (uint32_t)cap) n++;
    c->n_events = n;
}

/* The calibration set feeds pruning and quantization (their Hessians and scales); those stages read
 * the data stage's calibration output and rely on this rule being enforced here: a sample of the
 * test split would let compression fit the very examples the models are then evaluated on. It is
 * refused before any work unless allow_test_calibration says the leak is wanted; then the log
 * warns and the metric calibration_from_test records it (1; 0 otherwise). */
static int check_calibration_split(const cJSON *p, data_metric_fn metric, void *mctx) {
    int64_t samples;
    const char *from;
    int allow;
    if (param_int(p, "calibration.samples", &samples) || param_string(p, "calibration.from", &from) ||
        param_bool(p, "allow_test_calibration", &allow))
        return -1;
    const int from_test = samples > 0 && !strcmp(from, "test");
    if (from_test && !allow)
        return err_set(ERR_INPUT, "calibration: {from: test} samples the calibration set (for pruning and quantization) "
                       "from the test split the models are evaluated on, which leaks it into compression; use from: "
                       "train or from: valid, or set allow_test_calibration: true to accept the leak (it is then "
                       "recorded as the metric calibration_from_test)");
    if (from_test)
        log_warn("calibration: sampled from the test split (allow_test_calibration: true): pruning or quantizing with "
                 "it and evaluating on test overstates the results; recorded as calibration_from_test = 1");
    return metric ? metric(mctx, "calibration_from_test", from_test ? 1 : 0) : 0;
}

static int write_calibration(const dataset *ds, const cJSON *p, const char *calib_dir, const tokenizer *tok,
                             data_metric_fn metric, void *mctx) {
    int64_t samples, seed;
    const char *from;
    if (param_int(p, "calibration.samples", &samples) || param_string(p, "calibration.from", &from) ||
        param_int(p, "calibration.seed", &seed))
        return -1;
    ds_split src;
    if (dataset_split_open(ds, from, &src)) return -1;
    int rc = -1;
    int64_t n = src.n_examples, k = samples < n ? samples : n;
    int64_t *idx = xmalloc((size_t)(n ? n : 1) * sizeof *idx);
    ds_writer *w = NULL;
    dataset cd = *ds;
    cd.tokenizer_spec = NULL;
    char *path = fs_join(calib_dir, "calibration.bin");
    if (!idx || !path || ds_writer_new(&w, ds->vocab, ds->n_tasks)) goto out;
    if (samples > n) log_warn("calibration: %lld samples asked, split %s has %lld examples; using all", (long long)samples, from, (long long)n);
    /* a seeded partial Fisher-Yates shuffle, then file order (groups stay consecutive) */
    drng r;
    drng_seed(&r, (uint64_t)seed ^ 0xca11b7a7eull);
    for (int64_t i = 0; i < n; i++) idx[i] = i;
    for (int64_t i = 0; i < k; i++) {
        int64_t j = i + (int64_t)drng_below(&r, (uint64_t)(n - i)), t = idx[i];
        idx[i] = idx[j];
        idx[j] = t;
    }
    char *chosen = xcalloc((size_t)(n ? n : 1), 1);
    if (!chosen) goto out;
    for (int64_t i = 0; i < k; i++) chosen[idx[i]] = 1;
    uint32_t last_group = UINT32_MAX;
    for (int64_t i = 0; i < n; i++) {
        if (!chosen[i]) continue;
        const ds_example *e = &src.ex[i];
        ds_example_in in = {.new_group = e->group != last_group, .prefix_len = e->prefix_len, .member = e->member,
                            .item = e->item, .time = e->time, .task = e->task, .label = e->label};
        in.cuts = ds_example_cuts(&src, i, &in.n_cuts);
        last_group = e->group;
        if (ds_writer_add(w, &in, ds_example_tokens(&src, i), ds_example_mask(&src, i), e->n_tokens)) {
            free(chosen);
            goto out;
        }
    }
    free(chosen);
    if (ds_writer_finish(w, path)) goto out;
    memset(cd.splits, 0, sizeof cd.splits);
    cd.n_splits = 1;
    snprintf(cd.role, sizeof cd.role, "calibration");
    if (build_split_info(&cd.splits[0], calib_dir, "calibration") || dataset_copy_tokenizer(&cd, tok, calib_dir) ||
        dataset_write_meta(&cd, calib_dir))
        goto out;
    if (metric && metric(mctx, "calibration_examples", (double)k)) goto out;
    rc = 0;
out:
    free(cd.tokenizer_spec);
    ds_writer_free(w);
    free(idx);
    free(path);
    ds_split_close(&src);
    return rc;
}

static int report_splits(const dataset *ds, data_metric_fn metric, void *mctx) {
    if (!metric) return 0;
    char key[64];
    for (int i = 0; i < ds->n_splits; i++) {
        const ds_split_info *s = &ds->splits[i];
        struct {
            const char *k;
            double v;
        } m[] = {{"examples", (double)s->examples}, {"tokens", (double)s->tokens}, {"groups", (double)s->groups},
                 {"positives", (double)s->positives}, {"negatives", (double)s->negatives},
                 {"max_tokens", (double)s->max_tokens},
                 {"mean_tokens", s->examples ? (double)s->tokens / (double)s->examples : 0}};
        for (size_t j = 0; j < sizeof m / sizeof *m; j++) {
            snprintf(key, sizeof key, "%s_%s", m[j].k, s->name);
            if (metric(mctx, key, m[j].v)) return -1;
        }
        log_info("split %s: %lld examples in %lld groups, %lld tokens (longest %lld), %lld yes / %lld no", s->name,
                 (long long)s->examples, (long long)s->groups, (long long)s->tokens, (long long)s->max_tokens,
                 (long long)s->positives, (long long)s->negatives);
    }
    return 0;
}

int data_build(const cJSON *params, int64_t seed, const char *out_dir, const char *calib_dir, data_metric_fn metric,
               void *mctx) {
    const char *source, *tok_spec, *yes, *no, *answers, *tmpl = "plain";
    if (param_string(params, "source", &source) || param_string(params, "tokenizer", &tok_spec) ||
        param_string(params, "labels.yes", &yes) || param_string(params, "labels.no", &no) ||
        param_string(params, "answers", &answers) ||
        (param_get(params, "template") && param_string(params, "template", &tmpl))) /* absent before version 2 */
        return -1;
    int chat = !strcmp(tmpl, "chat");
    if (chat && strcmp(source, "pairs"))
        return err_set(ERR_INPUT, "template: chat renders prompt/response records; it applies to source pairs, not %s",
                       source);
    build_opts o = {.seed = seed, .metric = metric, .metric_ctx = mctx};
    if (opts_from_params(&o, params) || check_calibration_split(params, metric, mctx)) return -1;
    int is_records = !strcmp(source, "pairs") || !strcmp(source, "text");
    if (strcmp(source, "synthetic") && !param_get(params, "path"))
        return err_set(ERR_INPUT, "source %s needs path: (the %s)", source,
                       !strcmp(source, "movielens") ? "MovieLens zip or folder"
                       : !strcmp(source, "interactions") ? "interactions file"
                                                         : "data file or folder");
    if (!strcmp(source, "interactions") && !param_get(params, "items_path"))
        return err_set(ERR_INPUT, "source interactions needs items_path: (the item text table)");
    tokenizer *tok = NULL;
    if (tokenizer_load(&tok, tok_spec)) return err_prefix("data tokenizer: ");
    chat_template ct = {0};
    char *bos_text = NULL;
    if (chat) {
        size_t bl = 0;
        const char *b = tokenizer_bos_id(tok) >= 0 ? tokenizer_piece(tok, tokenizer_bos_id(tok), &bl) : NULL;
        if (chat_template_parse(&ct, tokenizer_chat_template(tok)) || (b && !(bos_text = xstrndup(b, bl)))) {
            err_prefix("template: chat with tokenizer %s: ", tok_spec);
            tokenizer_free(tok);
            return -1;
        }
    }
    dataset ds;
    memset(&ds, 0, sizeof ds);
    rs_corpus c;
    memset(&c, 0, sizeof c);
    rs_records recs = {0};
    int rc = -1;
    o.tok = tok;
    o.bos = tokenizer_add_bos(tok) ? tokenizer_bos_id(tok) : -1; /* the model's own convention */
    o.eos = tokenizer_eos_id(tok);
    /* the labels are checked before any work (text documents have none) */
    o.yes_id = o.no_id = -1;
    char *label_err = NULL; /* pairs: labels only matter when the set turns out to be a ranking set */
    if (strcmp(source, "text")) {
        int bad = label_token(tok, yes, "yes", &o.yes_id) || label_token(tok, no, "no", &o.no_id);
        if (!bad && o.yes_id == o.no_id)
            bad = err_set(ERR_INPUT, "labels.yes '%s' and labels.no '%s' are the same token %d; choose two different "
                          "tokens", yes, no, o.yes_id);
        if (bad && strcmp(source, "pairs")) goto out;
        if (bad && !(label_err = xstrdup(err_msg()))) goto out;
        if (bad) o.yes_id = o.no_id = -1;
    }
    snprintf(ds.source, sizeof ds.source, "%s", source);
    snprintf(ds.role, sizeof ds.role, "dataset");
    snprintf(ds.yes_text, sizeof ds.yes_text, "%s", yes);
    snprintf(ds.no_text, sizeof ds.no_text, "%s", no);
    ds.yes_id = o.yes_id, ds.no_id = o.no_id;
    if (!(ds.params = cJSON_Duplicate(params, 1))) {
        err_set(ERR_NOMEM, "copying parameters");
        goto out;
    }
    if (is_records) {
        int is_text = !strcmp(source, "text");
        if ((is_text ? text_load(&recs, params) : pairs_load(&recs, params, chat ? &ct : NULL, bos_text)) ||
            build_records(&recs, is_text, !strcmp(answers, "auto"), label_err, &o, out_dir, &ds))
            goto out;
        if (metric && metric(mctx, "records", (double)recs.n)) goto out;
        ds.n_tasks = 1;
        ds.tasks = xcalloc(1, sizeof *ds.tasks);
        if (!ds.tasks || !(ds.tasks[0].name = xstrdup(is_text ? "text" : "pairs")) ||
            !(ds.tasks[0].instruction = xstrdup("")))
            goto out;
    } else {
        int64_t cap;
        if (param_int(params, "members", &cap)) goto out;
        if (!strcmp(source, "synthetic") ? synthetic_generate(&c, params, seed)
            : !strcmp(source, "movielens") ? movielens_load(&c, params)
                                           : interactions_load(&c, params))
            goto out;
        if (strcmp(source, "synthetic")) cap_members(&c, cap);
        if (metric && (metric(mctx, "events", (double)c.raw_events) || metric(mctx, "members", c.raw_members) ||
                       metric(mctx, "items", c.raw_items)))
            goto out;
        log_info("source %s: %lld events, %d members, %d items", source, (long long)c.raw_events, c.raw_members,
                 c.raw_items);
        if (build_interactions(&c, &o, out_dir, &ds)) goto out;
        ds.n_tasks = c.n_tasks;
        ds.tasks = xcalloc((size_t)c.n_tasks, sizeof *ds.tasks);
        if (!ds.tasks) goto out;
        for (int t = 0; t < c.n_tasks; t++)
            if (!(ds.tasks[t].name = xstrdup(c.tasks[t].name)) || !(ds.tasks[t].instruction = xstrdup(c.tasks[t].instruction)))
                goto out;
    }
    if (dataset_copy_tokenizer(&ds, tok, out_dir) || dataset_write_meta(&ds, out_dir) || report_splits(&ds, metric, mctx))
        goto out;
    /* reopen what was written (through the reader, as consumers will) for the calibration sample */
    dataset rd;
    if (dataset_open(&rd, out_dir)) goto out;
    rc = write_calibration(&rd, params, calib_dir, tok, metric, mctx);
    dataset_close(&rd);
out:
    free(label_err);
    free(bos_text);
    chat_template_free(&ct);
    rs_corpus_free(&c);
    rs_records_free(&recs);
    dataset_close(&ds);
    tokenizer_free(tok);
    return rc;
}

static int stage_metric_cb(void *ctx, const char *key, double value) { return stage_metric(ctx, key, 0, value); }

static int data_run(stage_ctx *ctx) {
    return data_build(ctx->params, ctx->seed, ctx->output_dirs[0], ctx->output_dirs[1], stage_metric_cb, ctx);
}

const stage_kind stage_kind_data = {
    .name = "data",
    .version = 4, /* 2: BOS only where the tokenizer adds one (GGUF add_bos_token, post-processors); template;
                   * 3: split format 2 (history cuts); 4: baselines.tsv in ranking artifacts (a version-3
                   * artifact lacks it, so it must not be reused) */
    .summary = "recommendation data as text: tokenized train/valid/test splits and a calibration set",
    .params = data_params,
    .outputs = data_outputs,
    .supports_ranks = 0,
    .copy_inputs = 0,
    .run = data_run,
};
