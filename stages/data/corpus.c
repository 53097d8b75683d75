/* corpus.c: the in-memory corpus of interaction sources (source.h): tasks from the recipe, interned
 * action strings, a stable sort of events by (member, time), and the record lists of pairs/text. */
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "stages/data/source.h"
#include "stages/params.h"

void rs_corpus_free(rs_corpus *c) {
    for (int t = 0; t < c->n_tasks; t++) {
        free(c->tasks[t].name);
        free(c->tasks[t].instruction);
        free(c->tasks[t].filter);
    }
    for (int i = 0; c->items && i < c->n_items; i++) {
        free(c->items[i].text);
        free(c->items[i].tags);
    }
    free(c->items);
    for (int i = 0; c->member_text && i < c->n_members; i++) free(c->member_text[i]);
    free(c->member_text);
    free(c->member_ids);
    free(c->events);
    for (int i = 0; i < c->n_actions; i++) free(c->actions[i]);
    free(c->actions);
    free(c->truth);
    memset(c, 0, sizeof *c);
}

int rs_action_id(rs_corpus *c, const char *text) {
    /* Few distinct actions in practice (ratings, a handful of verbs): a linear scan from the most
     * recent, bounded by the limit below. */
    for (int i = c->n_actions - 1; i >= 0; i--)
        if (!strcmp(c->actions[i], text)) return i;
    if (c->n_actions >= 65536)
        return err_set(ERR_INPUT, "more than 65536 distinct actions; the action column should hold a few verbs "
                       "(click, like, save), not free text");
    if ((c->n_actions & (c->n_actions - 1)) == 0) {
        char **a = xrealloc(c->actions, (size_t)(c->n_actions ? 2 * c->n_actions : 1) * sizeof *a);
        if (!a) return -1;
        c->actions = a;
    }
    if (!(c->actions[c->n_actions] = xstrdup(text))) return -1;
    return c->n_actions++;
}

static int event_less(const rs_event *a, const rs_event *b) {
    if (a->member != b->member) return a->member < b->member;
    return a->time < b->time;
}

int rs_sort_events(rs_corpus *c) {
    /* bottom-up merge sort: stable, so equal times keep the source's order */
    int64_t n = c->n_events;
    if (n < 2) return 0;
    rs_event *tmp = xmalloc((size_t)n * sizeof *tmp), *src = c->events, *dst = tmp;
    float *ttmp = NULL, *tsrc = c->truth, *tdst = NULL;
    int nt = c->n_tasks;
    if (!tmp) return -1;
    if (c->truth && !(ttmp = tdst = xmalloc((size_t)n * (size_t)nt * sizeof *ttmp))) {
        free(tmp);
        return -1;
    }
    for (int64_t w = 1; w < n; w *= 2) {
        for (int64_t lo = 0; lo < n; lo += 2 * w) {
            int64_t mid = lo + w < n ? lo + w : n, hi = lo + 2 * w < n ? lo + 2 * w : n, i = lo, j = mid, k = lo;
            while (i < mid || j < hi) {
                int64_t from = (j >= hi || (i < mid && !event_less(&src[j], &src[i]))) ? i++ : j++;
                dst[k] = src[from];
                if (tsrc) memcpy(tdst + k * nt, tsrc + from * nt, (size_t)nt * sizeof *tdst);
                k++;
            }
        }
        rs_event *t = src;
        src = dst;
        dst = t;
        float *tt = tsrc;
        tsrc = tdst;
        tdst = tt;
    }
    if (src != c->events) {
        memcpy(c->events, src, (size_t)n * sizeof *src);
        if (tsrc) memcpy(c->truth, tsrc, (size_t)n * (size_t)nt * sizeof *tsrc);
    }
    free(tmp);
    free(ttmp);
    return 0;
}

int rs_add_task(rs_corpus *c, const char *name, const char *instruction, const char *filter) {
    if (c->n_tasks == RS_MAX_TASKS) return err_set(ERR_INPUT, "more than %d tasks; list fewer tasks", RS_MAX_TASKS);
    for (int t = 0; t < c->n_tasks; t++)
        if (!strcmp(c->tasks[t].name, name))
            return err_set(ERR_INPUT, "task '%s' is listed twice in tasks:; give each task once", name);
    if (!name[0] || strchr(name, '\n')) return err_set(ERR_INPUT, "task names must be non-empty single lines");
    rs_task *t = &c->tasks[c->n_tasks];
    t->name = xstrdup(name);
    t->instruction = xstrdup(instruction);
    t->filter = filter ? xstrdup(filter) : NULL;
    if (!t->name || !t->instruction || (filter && !t->filter)) {
        free(t->name);
        free(t->instruction);
        free(t->filter);
        memset(t, 0, sizeof *t);
        return -1;
    }
    c->n_tasks++;
    return 0;
}

int rs_tasks_from_params(rs_corpus *c, const cJSON *params, char *(*def_instr)(void *ctx, const char *name),
                         const char *(*def_filter)(void *ctx, const char *name), void *ctx) {
    const cJSON *tasks = param_get(params, "tasks"), *t;
    if (!cJSON_IsArray(tasks) || cJSON_GetArraySize(tasks) < 1)
        return err_set(ERR_INPUT, "tasks: must list at least one task (for example [like])");
    int i = 0;
    cJSON_ArrayForEach(t, tasks) {
        const char *name = NULL, *instr = NULL, *filter = NULL;
        if (cJSON_IsString(t)) {
            name = t->valuestring;
        } else if (cJSON_IsObject(t)) {
            const cJSON *n = cJSON_GetObjectItemCaseSensitive(t, "name"), *in = cJSON_GetObjectItemCaseSensitive(t, "instruction"),
                        *f = cJSON_GetObjectItemCaseSensitive(t, "filter");
            name = cJSON_IsString(n) ? n->valuestring : NULL;
            instr = cJSON_IsString(in) && in->valuestring[0] ? in->valuestring : NULL;
            filter = cJSON_IsString(f) && f->valuestring[0] ? f->valuestring : NULL;
        }
        if (!name) return err_set(ERR_INPUT, "tasks[%d]: a task is a name or {name, instruction, filter}", i);
        char *d = instr ? NULL : def_instr(ctx, name);
        if (!instr && !d) return -1;
        if (!filter && def_filter) filter = def_filter(ctx, name);
        int rc = rs_add_task(c, name, instr ? instr : d, filter);
        free(d);
        if (rc) return err_prefix("tasks[%d]: ", i);
        i++;
    }
    return 0;
}

void rs_records_free(rs_records *r) {
    for (int64_t i = 0; i < r->n; i++) {
        free(r->r[i].prompt);
        free(r->r[i].response);
        free(r->r[i].where);
        free(r->r[i].suffix);
    }
    free(r->r);
    memset(r, 0, sizeof *r);
}
