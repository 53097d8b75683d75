/* build_records.c: prompt/response records (pairs) and documents (text) -> split files. Each record
 * goes to train, valid or test by a seeded hash of its index (so the split does not depend on the
 * order records are processed). A pair is [BOS] prompt response [EOS] with the response masked
 * RESPONSE; when `answers: auto` and every response is a yes/no answer ("Yes.", "no", ...), the
 * answer word becomes the label token (ACTION) followed by the rest of the response, and the set is
 * also a ranking set. Chat records (template: chat) carry their own BOS and end-of-turn text (the
 * suffix, a RESPONSE target) instead of [BOS] and [EOS]. A document is cut into pieces of
 * max_tokens ([BOS] + tokens), every token after the first a RESPONSE target. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "common/fsutil.h"
#include "common/log.h"
#include "stages/data/build.h"
#include "stages/data/rng.h"

static const char *const split_names[BUILD_N_SPLITS] = {"train", "valid", "test"};

/* 1 (yes) or 0 (no) when the response is a bare yes/no answer, with *rest pointing after the word
 * (trailing punctuation and space); -1 otherwise. */
static int yes_no(const char *s, const char **rest) {
    while (isspace((unsigned char)*s)) s++;
    int v = !strncasecmp(s, "yes", 3) ? 1 : !strncasecmp(s, "no", 2) ? 0 : -1;
    if (v < 0) return -1;
    const char *p = s + (v ? 3 : 2);
    *rest = p;
    for (; *p; p++)
        if (!strchr(".!? \t\r\n", *p)) return -1;
    return v;
}

static int split_of(const build_opts *o, int64_t i) {
    double u = (double)(drng_hash((uint64_t)o->seed ^ 0x5b117ull, (uint64_t)i) >> 11) * 0x1.0p-53;
    return u < o->test_frac ? 2 : u < o->test_frac + o->valid_frac ? 1 : 0;
}

typedef struct {
    int32_t *ids;
    uint8_t *mask;
    size_t n, cap;
} seq;

static int seq_push(seq *s, const int32_t *ids, size_t k, uint8_t m) {
    if (s->n + k > s->cap) {
        size_t c = s->cap ? s->cap : 1024;
        while (c < s->n + k) c *= 2;
        int32_t *a = xrealloc(s->ids, c * sizeof *a);
        if (!a) return -1;
        s->ids = a;
        uint8_t *b = xrealloc(s->mask, c);
        if (!b) return -1;
        s->mask = b;
        s->cap = c;
    }
    memcpy(s->ids + s->n, ids, k * sizeof *ids);
    memset(s->mask + s->n, m, k);
    s->n += k;
    return 0;
}

static int push_text(seq *s, const tokenizer *tok, const char *text, uint8_t m) {
    int32_t *ids;
    size_t k;
    if (tokenizer_encode(tok, text, strlen(text), &ids, &k)) return -1;
    int rc = seq_push(s, ids, k, m);
    free(ids);
    return rc;
}

int build_records(const rs_records *r, int is_text, int answers_auto, const char *label_err, const build_opts *o,
                  const char *out_dir, dataset *ds) {
    ds_writer *w[BUILD_N_SPLITS] = {0};
    seq s = {0};
    int rc = -1;
    int64_t dropped = 0, labelled = 0;
    int ranking = !is_text && answers_auto && r->n > 0;
    for (int64_t i = 0; ranking && i < r->n; i++) {
        const char *rest;
        ranking = yes_no(r->r[i].response, &rest) >= 0;
    }
    if (ranking && label_err) return err_set(ERR_INPUT, "every response is a yes/no answer, but %s (or set answers: text)", label_err);
    for (int k = 0; k < BUILD_N_SPLITS; k++)
        if (ds_writer_new(&w[k], tokenizer_vocab_size(o->tok), 1)) goto out;
    for (int64_t i = 0; i < r->n; i++) {
        const rs_record *rec = &r->r[i];
        int split = split_of(o, i);
        s.n = 0;
        if (o->bos >= 0 && !r->chat && seq_push(&s, &o->bos, 1, DS_TOK_PROMPT)) goto out;
        if (is_text) {
            /* the document in pieces of max_tokens, each starting with BOS (when there is one) */
            seq d = {0};
            if (push_text(&d, o->tok, rec->prompt, DS_TOK_RESPONSE)) {
                free(d.ids);
                free(d.mask);
                goto out;
            }
            size_t body = (size_t)o->max_tokens - (o->bos >= 0);
            int fail = 0;
            for (size_t a = 0; a < d.n && !fail; a += body) {
                size_t k = d.n - a < body ? d.n - a : body;
                s.n = 0;
                if (o->bos >= 0) fail = seq_push(&s, &o->bos, 1, DS_TOK_PROMPT);
                if (!fail) fail = seq_push(&s, d.ids + a, k, DS_TOK_RESPONSE);
                if (fail || s.n < 2) continue; /* a lone token has no target */
                s.mask[0] = DS_TOK_PROMPT;
                ds_example_in in = {.new_group = 1, .member = (uint32_t)i, .item = DS_NO_ITEM, .label = DS_LABEL_NONE};
                fail = ds_writer_add(w[split], &in, s.ids, s.mask, s.n);
            }
            free(d.ids);
            free(d.mask);
            if (fail) goto out;
            continue;
        }
        if (push_text(&s, o->tok, rec->prompt, DS_TOK_PROMPT)) goto out;
        if (s.n == 0) {
            err_set(ERR_INPUT, "%s: the prompt is empty and the tokenizer has no BOS; an example needs context", rec->where);
            goto out;
        }
        int8_t label = DS_LABEL_NONE;
        if (ranking) {
            const char *rest;
            label = (int8_t)yes_no(rec->response, &rest);
            int32_t t = label ? o->yes_id : o->no_id;
            if (seq_push(&s, &t, 1, DS_TOK_ACTION) || (rest[0] && push_text(&s, o->tok, rest, DS_TOK_RESPONSE))) goto out;
            labelled++;
        } else {
            if (!rec->response[0]) {
                err_set(ERR_INPUT, "%s: the response is empty; there is nothing to learn or evaluate", rec->where);
                goto out;
            }
            if (push_text(&s, o->tok, rec->response, DS_TOK_RESPONSE)) goto out;
        }
        if (rec->suffix ? push_text(&s, o->tok, rec->suffix, DS_TOK_RESPONSE)
                        : o->eos >= 0 && seq_push(&s, &o->eos, 1, DS_TOK_RESPONSE))
            goto out;
        if ((int64_t)s.n > o->max_tokens) {
            dropped++;
            continue;
        }
        ds_example_in in = {.new_group = 1, .member = (uint32_t)i, .item = DS_NO_ITEM, .label = label};
        if (ds_writer_add(w[split], &in, s.ids, s.mask, s.n)) {
            err_prefix("%s: ", rec->where);
            goto out;
        }
    }
    for (int k = 0; k < BUILD_N_SPLITS; k++) {
        char *path = xasprintf("%s/%s.bin", out_dir, split_names[k]);
        int e = !path || ds_writer_finish(w[k], path);
        free(path);
        if (e || build_split_info(&ds->splits[k], out_dir, split_names[k])) goto out;
    }
    ds->n_splits = BUILD_N_SPLITS;
    snprintf(ds->kind, sizeof ds->kind, "%s", is_text ? "text" : ranking ? "ranking" : "generative");
    if (!ranking) ds->yes_id = ds->no_id = -1;
    if (dropped) log_warn("%lld records longer than max_tokens = %lld were left out", (long long)dropped, (long long)o->max_tokens);
    log_info("%lld records: %s set%s", (long long)r->n, ds->kind,
             ranking ? " (every response is a yes/no answer: label tokens, AUC and response loss)" : "");
    if (o->metric && (o->metric(o->metric_ctx, "dropped_too_long", (double)dropped) ||
                      o->metric(o->metric_ctx, "labelled", (double)labelled)))
        goto out;
    rc = 0;
out:
    for (int k = 0; k < BUILD_N_SPLITS; k++) ds_writer_free(w[k]);
    free(s.ids);
    free(s.mask);
    return rc;
}
