/* build.c: interaction corpus -> tokenized train/valid/test splits (build.h).
 *
 * Split, per member, by time: the earliest events train, then valid, then test (fractions of the
 * member's events). Examples are grouped per (member, task): valid and test hold one group each (the
 * first `candidates` events of the split), train chunks its events into groups of `candidates`.
 * A group's prompt prefix is the task instruction, the member profile and the member's history:
 * the most recent events strictly BEFORE the group's first event (by position in the member's
 * time-sorted events) that fit `history` entries and `history_tokens` tokens. Since train events
 * precede every valid and test event of their member, no valid or test interaction can appear in a
 * training prompt. Each candidate adds "Candidate: <item>\nAnswer:" and its label token.
 *
 * Every example records its history lines as token cuts (dataset.h), so that a shorter budget
 * later (the train stage's seq_len) drops the oldest lines exactly as max_tokens does here: both
 * go through ds_fit_cuts. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "common/fsutil.h"
#include "common/log.h"
#include "common/strbuf.h"
#include "stages/data/build.h"
#include "stages/evaluate/auc.h"

static const char *const split_names[BUILD_N_SPLITS] = {"train", "valid", "test"};

typedef struct {
    const rs_corpus *c;
    const build_opts *o;
    ds_writer *w[BUILD_N_SPLITS];
    int32_t *line_tokens;     /* [n_events] tokens of the event's history line, -1 until known */
    int64_t dropped_long;     /* candidates whose prompt could not fit max_tokens */
    int64_t history_sum, history_n;
    /* test examples, for the baselines reported as metrics */
    int64_t n_test, cap_test;
    int64_t *test_event;
    uint16_t *test_task;
    int8_t *test_label;
    float *test_hist;         /* mean rating (rs_event.value) of the history shown in its prompt, or NAN */
} builder;

static int item_in_task(const rs_corpus *c, const rs_event *e, int t) {
    if (!(e->in_task >> t & 1)) return 0;
    const char *f = c->tasks[t].filter;
    if (!f) return 1;
    const char *tags = c->items[e->item].tags;
    size_t fl = strlen(f);
    for (const char *p = tags; p && *p;) {
        const char *bar = strchr(p, '|');
        size_t l = bar ? (size_t)(bar - p) : strlen(p);
        if (l == fl && !memcmp(p, f, l)) return 1;
        p = bar ? bar + 1 : NULL;
    }
    return 0;
}

static int history_line(strbuf *sb, const rs_corpus *c, const rs_event *e) {
    return sb_printf(sb, "- %s: %s\n", c->items[e->item].text, c->actions[e->action]);
}

static int count_tokens(const tokenizer *tok, const char *s, size_t n, int32_t *count) {
    int32_t *ids;
    size_t k;
    if (tokenizer_encode(tok, s, n, &ids, &k)) return -1;
    free(ids);
    *count = (int32_t)k;
    return 0;
}

static int line_tokens(builder *b, int64_t ev, int32_t *out) {
    if (b->line_tokens[ev] < 0) {
        strbuf sb = STRBUF_INIT;
        int rc = history_line(&sb, b->c, &b->c->events[ev]) || count_tokens(b->o->tok, sb_str(&sb), sb.len, &b->line_tokens[ev]);
        sb_free(&sb);
        if (rc) return -1;
    }
    *out = b->line_tokens[ev];
    return 0;
}

/* The token positions where the lines of an encoded prefix start. The pieces of ids add up to the
 * text's bytes (plus the one dummy-prefix space a sentencepiece-style tokenizer puts first), and
 * line k starts at byte off[k] (off[n_off - 1]: the end of the last line, the end of the text). A
 * cut is the index of the token whose piece starts there, plus base (the BOS before the prefix).
 * Returns n_off, or 0 when a line start falls inside a token or the pieces do not add up (a
 * tokenizer that merges across lines or rewrites the text): the lines are then kept whole. */
static int line_cuts(uint32_t *cuts, const tokenizer *tok, const int32_t *ids, size_t n_ids, size_t text_len,
                     const size_t *off, int n_off, uint32_t base) {
    size_t total = 0, pl;
    for (size_t t = 0; t < n_ids; t++) {
        if (!tokenizer_piece(tok, ids[t], &pl)) return 0;
        total += pl;
    }
    if (total < text_len || total > text_len + 1) return 0;
    const size_t shift = total - text_len;
    int k = 0;
    size_t pos = 0; /* the byte where token t starts */
    for (size_t t = 0; t <= n_ids && k < n_off; t++) {
        for (; k < n_off && off[k] + shift <= pos; k++) {
            if (off[k] + shift < pos) return 0; /* the line starts inside token t - 1 */
            cuts[k] = base + (uint32_t)t;
        }
        if (t < n_ids && tokenizer_piece(tok, ids[t], &pl)) pos += pl;
    }
    return k == n_off ? n_off : 0;
}

static int append_ids(int32_t **buf, size_t *n, size_t *cap, const int32_t *ids, size_t k) {
    if (*n + k > *cap) {
        size_t c = *cap ? *cap : 1024;
        while (c < *n + k) c *= 2;
        int32_t *p = xrealloc(*buf, c * sizeof *p);
        if (!p) return -1;
        *buf = p;
        *cap = c;
    }
    memcpy(*buf + *n, ids, k * sizeof *ids);
    *n += k;
    return 0;
}

static int remember_test(builder *b, int64_t ev, int t, int8_t label, float hist_mean) {
    if (b->n_test == b->cap_test) {
        int64_t cap = b->cap_test ? 2 * b->cap_test : 1024;
        int64_t *e = xrealloc(b->test_event, (size_t)cap * sizeof *e);
        if (!e) return -1;
        b->test_event = e;
        uint16_t *tt = xrealloc(b->test_task, (size_t)cap * sizeof *tt);
        if (!tt) return -1;
        b->test_task = tt;
        int8_t *l = xrealloc(b->test_label, (size_t)cap);
        if (!l) return -1;
        b->test_label = l;
        float *hm = xrealloc(b->test_hist, (size_t)cap * sizeof *hm);
        if (!hm) return -1;
        b->test_hist = hm;
        b->cap_test = cap;
    }
    b->test_event[b->n_test] = ev;
    b->test_task[b->n_test] = (uint16_t)t;
    b->test_label[b->n_test] = label;
    b->test_hist[b->n_test] = hist_mean;
    b->n_test++;
    return 0;
}

/* The mean rating of the events [h0, first) (a prompt's history), NAN when none has one. */
static float shown_mean(const rs_corpus *c, int64_t h0, int64_t first) {
    double sum = 0;
    int64_t n = 0;
    for (int64_t h = h0; h < first; h++)
        if (isfinite(c->events[h].value)) sum += c->events[h].value, n++;
    return n ? (float)(sum / (double)n) : NAN;
}

/* One group: candidates cand[0..k) (event indices) of task t of member m, history from the
 * member's events [m0, first). */
static int emit_group(builder *b, int split, int m, int t, int64_t m0, const int64_t *cand, int k) {
    const rs_corpus *c = b->c;
    const build_opts *o = b->o;
    int64_t first = cand[0];
    int rc = -1;
    strbuf sb = STRBUF_INIT;
    int32_t **suf = xcalloc((size_t)k, sizeof *suf);
    size_t *suf_n = xcalloc((size_t)k, sizeof *suf_n);
    int32_t *pre = NULL, *ex = NULL;
    size_t n_pre = 0, n_ex = 0, cap_ex = 0, *line_off = NULL;
    uint8_t *mask = NULL;
    uint32_t *cuts = NULL;
    int n_cuts = 0;
    if (!suf || !suf_n) goto out;
    size_t max_suf = 0;
    for (int i = 0; i < k; i++) {
        sb_reset(&sb);
        if (sb_printf(&sb, "Candidate: %s\nAnswer:", c->items[c->events[cand[i]].item].text) ||
            tokenizer_encode(o->tok, sb_str(&sb), sb.len, &suf[i], &suf_n[i]))
            goto out;
        if (suf_n[i] > max_suf) max_suf = suf_n[i];
    }
    /* the history: most recent first, within the entry and token budgets */
    int64_t h0 = first;
    int64_t budget = o->history_tokens;
    while (h0 > m0 && first - h0 < o->history) {
        int32_t lt;
        if (line_tokens(b, h0 - 1, &lt)) goto out;
        if (lt > budget) break;
        budget -= lt;
        h0--;
    }
    line_off = xmalloc((size_t)(first - h0 + 1) * sizeof *line_off);
    cuts = xmalloc((size_t)(first - h0 + 1) * sizeof *cuts);
    if (!line_off || !cuts) goto out;
    for (;;) {
        sb_reset(&sb);
        const char *profile = c->member_text && c->member_text[m] ? c->member_text[m] : NULL;
        if (sb_printf(&sb, "%s\n", c->tasks[t].instruction)) goto out;
        if (profile ? sb_printf(&sb, "%s\n", profile) : sb_printf(&sb, "Member %u\n", c->member_ids[m])) goto out;
        if (sb_puts(&sb, h0 < first ? "History:\n" : "History: none\n")) goto out;
        for (int64_t h = h0; h < first; h++) {
            line_off[h - h0] = sb.len;
            if (history_line(&sb, c, &c->events[h])) goto out;
        }
        line_off[first - h0] = sb.len;
        free(pre);
        pre = NULL;
        if (tokenizer_encode(o->tok, sb_str(&sb), sb.len, &pre, &n_pre)) goto out;
        n_cuts = h0 < first ? line_cuts(cuts, o->tok, pre, n_pre, sb.len, line_off, (int)(first - h0 + 1),
                                        (uint32_t)(o->bos >= 0))
                            : 0;
        size_t total = (o->bos >= 0) + n_pre + max_suf + 1;
        if ((int64_t)total <= o->max_tokens || h0 == first) break;
        /* drop the oldest entries that the budget rule says must go (one at a time without cuts),
         * all of them when even that is not enough, and encode again */
        int drop = n_cuts ? ds_fit_cuts(cuts, n_cuts, (int64_t)total, o->max_tokens) : 1;
        h0 = drop > 0 ? h0 + drop : first;
    }
    b->history_sum += first - h0;
    b->history_n++;
    int new_group = 1;
    for (int i = 0; i < k; i++) {
        const rs_event *e = &c->events[cand[i]];
        size_t n = (o->bos >= 0) + n_pre + suf_n[i] + 1;
        if ((int64_t)n > o->max_tokens) {
            b->dropped_long++;
            continue;
        }
        n_ex = 0;
        if (o->bos >= 0 && append_ids(&ex, &n_ex, &cap_ex, &o->bos, 1)) goto out;
        int32_t label_tok = (e->yes >> t & 1) ? o->yes_id : o->no_id;
        if (append_ids(&ex, &n_ex, &cap_ex, pre, n_pre) || append_ids(&ex, &n_ex, &cap_ex, suf[i], suf_n[i]) ||
            append_ids(&ex, &n_ex, &cap_ex, &label_tok, 1))
            goto out;
        uint8_t *mm = xrealloc(mask, n_ex);
        if (!mm) goto out;
        mask = mm;
        memset(mask, DS_TOK_PROMPT, n_ex);
        mask[n_ex - 1] = DS_TOK_ACTION;
        ds_example_in in = {.new_group = new_group,
                            .prefix_len = (uint32_t)((o->bos >= 0) + n_pre),
                            .member = c->member_ids[m],
                            .item = c->items[e->item].id,
                            .time = e->time,
                            .task = (uint16_t)t,
                            .label = (int8_t)(e->yes >> t & 1),
                            .cuts = cuts,
                            .n_cuts = n_cuts};
        if (ds_writer_add(b->w[split], &in, ex, mask, n_ex)) goto out;
        new_group = 0;
        if (split == 2 && remember_test(b, cand[i], t, in.label, shown_mean(c, h0, first))) goto out;
    }
    rc = 0;
out:
    for (int i = 0; suf && i < k; i++) free(suf[i]);
    free(suf);
    free(suf_n);
    free(pre);
    free(ex);
    free(mask);
    free(line_off);
    free(cuts);
    sb_free(&sb);
    return rc;
}

/* The events of member m's split range [lo, hi) that belong to task t, in order. */
static int64_t task_events(const builder *b, int t, int64_t lo, int64_t hi, int64_t *out) {
    int64_t k = 0;
    for (int64_t i = lo; i < hi; i++)
        if (item_in_task(b->c, &b->c->events[i], t)) out[k++] = i;
    return k;
}

/* How many of a member's n events go to valid and test: the fractions rounded, at least one each
 * when the fraction is > 0 and the member has 3 events or more, and at least one left for train. */
static void split_sizes(const build_opts *o, int64_t n, int64_t *n_valid, int64_t *n_test) {
    *n_valid = *n_test = 0;
    if (n < 3) return;
    if (o->test_frac > 0) *n_test = llround((double)n * o->test_frac) > 1 ? llround((double)n * o->test_frac) : 1;
    if (o->valid_frac > 0) *n_valid = llround((double)n * o->valid_frac) > 1 ? llround((double)n * o->valid_frac) : 1;
    while (*n_test + *n_valid > n - 1) {
        if (*n_valid > 0) (*n_valid)--;
        else (*n_test)--;
    }
}

static int build_member(builder *b, int m, int64_t s, int64_t e, int64_t *buf) {
    const build_opts *o = b->o;
    int64_t n_valid, n_test;
    split_sizes(o, e - s, &n_valid, &n_test);
    int64_t bound[BUILD_N_SPLITS + 1] = {s, e - n_test - n_valid, e - n_test, e};
    for (int split = 0; split < BUILD_N_SPLITS; split++) {
        for (int t = 0; t < b->c->n_tasks; t++) {
            int64_t k = task_events(b, t, bound[split], bound[split + 1], buf);
            if (split == 0) {
                /* candidates need min_history earlier events; keep the most recent train_groups groups */
                int64_t j = 0;
                while (j < k && buf[j] - s < o->min_history) j++;
                int64_t n_groups = (k - j + o->candidates - 1) / o->candidates;
                int64_t g0 = o->train_groups > 0 && n_groups > o->train_groups ? n_groups - o->train_groups : 0;
                for (int64_t g = g0; g < n_groups; g++) {
                    int64_t a = j + g * o->candidates, z = a + o->candidates < k ? a + o->candidates : k;
                    if (emit_group(b, 0, m, t, s, buf + a, (int)(z - a))) return -1;
                }
            } else if (k > 0) {
                if (emit_group(b, split, m, t, s, buf, (int)(k < o->candidates ? k : o->candidates))) return -1;
            }
        }
    }
    return 0;
}

/* AUC (mean over tasks) of score[] on the test examples, reported as `key` when finite. */
static int report_auc(builder *b, const double *score, const char *key) {
    double auc[RS_MAX_TASKS];
    int nt = b->c->n_tasks;
    if (auc_per_task(auc, NULL, NULL, score, b->test_label, b->test_task, (size_t)b->n_test, nt)) return -1;
    double mean = auc_mean(auc, nt, NULL);
    if (isfinite(mean) && b->o->metric(b->o->metric_ctx, key, mean)) return -1;
    if (isfinite(mean)) log_info("baseline %s = %.4f", key, mean);
    return 0;
}

/* Baselines on the test split, reported as metrics: the generator's own P(yes) (synthetic),
 * per-item popularity from the train split's events (smoothed toward the task's yes rate) and,
 * when labels come from ratings, the mean rating of the history shown in the candidate's own
 * prompt, and the two combined: logit(popularity) + (shown mean - 3.5). A model must beat these
 * to have learned more than the prompt's obvious signals. */
/* baselines.tsv: each test example's baseline scores, in the test split's order (its `index`), so
 * that a model evaluated on some of the examples can be compared with the baselines on the same
 * ones (tools/auc_table.py). NAN columns (no ratings) are written as "nan". */
static int write_baselines(const builder *b, const char *out_dir, const double *pop, const double *hist,
                           const double *comb) {
    const rs_corpus *c = b->c;
    strbuf sb = STRBUF_INIT;
    int rc = -1;
    if (sb_puts(&sb, "index\tmember\titem\ttask\tlabel\tpopularity\thistory_mean\tcombined\n")) goto out;
    for (int64_t i = 0; i < b->n_test; i++) {
        const rs_event *ev = &c->events[b->test_event[i]];
        if (sb_printf(&sb, "%lld\t%u\t%u\t%u\t%d\t%.9g\t%.9g\t%.9g\n", (long long)i, c->member_ids[ev->member],
                      c->items[ev->item].id, (unsigned)b->test_task[i], b->test_label[i], pop[i],
                      hist ? hist[i] : NAN, comb ? comb[i] : NAN))
            goto out;
    }
    char *path = fs_join(out_dir, "baselines.tsv");
    rc = path ? fs_write_atomic(path, sb_str(&sb), sb.len) : -1;
    free(path);
out:
    sb_free(&sb);
    return rc;
}

static int report_baselines(builder *b, const char *out_dir) {
    const rs_corpus *c = b->c;
    if (!b->n_test || !b->o->metric) return 0;
    int nt = c->n_tasks, rc = -1;
    double *pos = xcalloc((size_t)c->n_items * (size_t)nt, sizeof *pos), *cnt = xcalloc((size_t)c->n_items * (size_t)nt, sizeof *cnt);
    double *score = xmalloc((size_t)b->n_test * sizeof *score), tpos[RS_MAX_TASKS] = {0}, tcnt[RS_MAX_TASKS] = {0};
    double *pop = xmalloc((size_t)b->n_test * sizeof *pop), *hist = NULL, *comb = NULL;
    char *is_train = xcalloc((size_t)c->n_events, 1);
    if (!pos || !cnt || !score || !pop || !is_train) goto out;
    /* train events: each member's events before its valid/test boundary */
    for (int64_t s = 0, e; s < c->n_events; s = e) {
        for (e = s; e < c->n_events && c->events[e].member == c->events[s].member; e++) {}
        int64_t n_valid, n_test;
        split_sizes(b->o, e - s, &n_valid, &n_test);
        for (int64_t i = s; i < e - n_test - n_valid; i++) is_train[i] = 1;
    }
    double vsum = 0, vn = 0;
    for (int64_t i = 0; i < c->n_events; i++) {
        if (!is_train[i]) continue;
        const rs_event *ev = &c->events[i];
        if (isfinite(ev->value)) vsum += ev->value, vn++;
        for (int t = 0; t < nt; t++) {
            if (!item_in_task(c, ev, t)) continue;
            int y = ev->yes >> t & 1;
            pos[(size_t)ev->item * nt + t] += y;
            cnt[(size_t)ev->item * nt + t] += 1;
            tpos[t] += y;
            tcnt[t] += 1;
        }
    }
    for (int64_t i = 0; i < b->n_test; i++) {
        int t = b->test_task[i];
        size_t k = (size_t)c->events[b->test_event[i]].item * nt + t;
        double prior = tcnt[t] > 0 ? tpos[t] / tcnt[t] : 0.5;
        pop[i] = (pos[k] + 2 * prior) / (cnt[k] + 2);
    }
    if (report_auc(b, pop, "baseline_popularity_auc_test")) goto out;
    if (vn > 0) {
        /* a prompt without rated history gets the train split's mean rating */
        double global = vsum / vn;
        hist = xmalloc((size_t)b->n_test * sizeof *hist);
        comb = xmalloc((size_t)b->n_test * sizeof *comb);
        if (!hist || !comb) goto out;
        for (int64_t i = 0; i < b->n_test; i++) hist[i] = isfinite(b->test_hist[i]) ? b->test_hist[i] : global;
        if (report_auc(b, hist, "baseline_history_mean_auc_test")) goto out;
        for (int64_t i = 0; i < b->n_test; i++) comb[i] = log(pop[i] / (1 - pop[i])) + (hist[i] - 3.5);
        if (report_auc(b, comb, "baseline_combined_auc_test")) goto out;
    }
    if (write_baselines(b, out_dir, pop, hist, comb)) goto out;
    if (c->truth) {
        for (int64_t i = 0; i < b->n_test; i++) score[i] = c->truth[b->test_event[i] * nt + b->test_task[i]];
        if (report_auc(b, score, "truth_auc_test")) goto out;
    }
    rc = 0;
out:
    free(pop);
    free(hist);
    free(comb);
    free(pos);
    free(cnt);
    free(score);
    free(is_train);
    return rc;
}

int build_split_info(ds_split_info *si, const char *dir, const char *name) {
    memset(si, 0, sizeof *si);
    snprintf(si->name, sizeof si->name, "%s", name);
    snprintf(si->file, sizeof si->file, "%s.bin", name);
    char *path = fs_join(dir, si->file);
    if (!path) return -1;
    ds_split s;
    int rc = ds_split_open(&s, path);
    free(path);
    if (rc) return -1;
    si->examples = s.n_examples;
    si->tokens = s.n_tokens;
    si->groups = s.n_groups;
    for (int64_t i = 0; i < s.n_examples; i++) {
        si->positives += s.ex[i].label == DS_LABEL_YES;
        si->negatives += s.ex[i].label == DS_LABEL_NO;
        if (s.ex[i].n_tokens > si->max_tokens) si->max_tokens = s.ex[i].n_tokens;
    }
    ds_split_close(&s);
    return 0;
}

int build_interactions(const rs_corpus *c, const build_opts *o, const char *out_dir, dataset *ds) {
    builder b = {.c = c, .o = o};
    int rc = -1;
    int64_t *buf = xmalloc((size_t)(c->n_events ? c->n_events : 1) * sizeof *buf);
    b.line_tokens = xmalloc((size_t)(c->n_events ? c->n_events : 1) * sizeof *b.line_tokens);
    if (!buf || !b.line_tokens) goto out;
    for (int64_t i = 0; i < c->n_events; i++) b.line_tokens[i] = -1;
    for (int s = 0; s < BUILD_N_SPLITS; s++)
        if (ds_writer_new(&b.w[s], tokenizer_vocab_size(o->tok), c->n_tasks)) goto out;
    progress pr;
    progress_start(&pr, "prompts", c->n_members);
    for (int64_t s = 0, e; s < c->n_events; s = e) {
        for (e = s; e < c->n_events && c->events[e].member == c->events[s].member; e++) {}
        if (build_member(&b, (int)c->events[s].member, s, e, buf)) goto out;
        progress_update(&pr, c->events[s].member + 1, NULL);
    }
    progress_finish(&pr, NULL);
    for (int s = 0; s < BUILD_N_SPLITS; s++) {
        char *path = xasprintf("%s/%s.bin", out_dir, split_names[s]);
        int r = !path || ds_writer_finish(b.w[s], path);
        free(path);
        if (r || build_split_info(&ds->splits[s], out_dir, split_names[s])) goto out;
    }
    ds->n_splits = BUILD_N_SPLITS;
    snprintf(ds->kind, sizeof ds->kind, "ranking");
    if (b.dropped_long) log_warn("%lld candidates did not fit max_tokens = %lld even without history and were left out",
                                 (long long)b.dropped_long, (long long)o->max_tokens);
    if (o->metric) {
        if (o->metric(o->metric_ctx, "dropped_too_long", (double)b.dropped_long) ||
            (b.history_n && o->metric(o->metric_ctx, "history_entries_mean", (double)b.history_sum / (double)b.history_n)))
            goto out;
    }
    rc = report_baselines(&b, out_dir);
out:
    for (int s = 0; s < BUILD_N_SPLITS; s++) ds_writer_free(b.w[s]);
    free(buf);
    free(b.line_tokens);
    free(b.test_event);
    free(b.test_task);
    free(b.test_label);
    free(b.test_hist);
    return rc;
}
