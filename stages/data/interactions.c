/* interactions.c: the `interactions` source: a generic table of (member, item, label or action,
 * timestamp) rows in CSV, TSV or JSONL, an item text table and an optional member text table, with
 * the column names as parameters. A row's label is its label column (a value listed in positive/
 * negative, or a number compared with threshold); without a label column the action decides, and
 * actions in neither list are history-only events (shown in prompts, never examples). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "common/strbuf.h"
#include "stages/data/source.h"
#include "stages/params.h"

#define TABLE_MAX_BYTES ((size_t)4 << 30)

/* A row reader over CSV/TSV (header line) or JSONL (one object per line). */
typedef struct {
    int jsonl;
    csv_reader csv;
    char **header;    /* CSV: the header fields (copied) */
    int n_header;
    cJSON *obj;       /* JSONL: the current line's object */
    const char *p, *end, *name;
    int64_t line, next_line;
    char num[8][64];  /* JSON numbers as text: a ring, so that up to 8 values of a row stay valid */
    int next_num;
} table;

static int ext_is(const char *path, const char *ext) {
    size_t n = strlen(path), e = strlen(ext);
    return n > e && !strcmp(path + n - e, ext);
}

static int table_open(table *t, const char *name, const char *data, size_t len, const char *format) {
    memset(t, 0, sizeof *t);
    t->name = name;
    int jsonl = !strcmp(format, "jsonl") || !strcmp(format, "json") ||
                (!strcmp(format, "auto") && (ext_is(name, ".jsonl") || ext_is(name, ".ndjson") || ext_is(name, ".json")));
    int tsv = !strcmp(format, "tsv") || (!strcmp(format, "auto") && (ext_is(name, ".tsv") || ext_is(name, ".tab")));
    t->jsonl = jsonl;
    if (jsonl) {
        t->p = data;
        t->end = data + len;
        t->next_line = 1;
        return 0;
    }
    csv_init(&t->csv, name, data, len, tsv ? '\t' : ',', !tsv);
    int st = csv_next(&t->csv);
    if (st < 0) return -1;
    if (st == 0) return err_set(ERR_INPUT, "%s has no header line; the first line must name the columns", name);
    t->n_header = t->csv.n_fields;
    if (!(t->header = xcalloc((size_t)t->n_header, sizeof *t->header))) return -1;
    for (int i = 0; i < t->n_header; i++)
        if (!(t->header[i] = xstrdup(t->csv.fields[i]))) return -1;
    return 0;
}

static void table_close(table *t) {
    csv_free(&t->csv);
    for (int i = 0; t->header && i < t->n_header; i++) free(t->header[i]);
    free(t->header);
    cJSON_Delete(t->obj);
    memset(t, 0, sizeof *t);
}

static int64_t table_line(const table *t) { return t->jsonl ? t->line : t->csv.line; }

/* 1 row read, 0 end, -1 error. */
static int table_next(table *t) {
    if (!t->jsonl) {
        int st = csv_next(&t->csv);
        if (st > 0 && t->csv.n_fields != t->n_header)
            return err_set(ERR_INPUT, "%s:%lld: %d fields where the header has %d", t->name, (long long)t->csv.line,
                           t->csv.n_fields, t->n_header);
        return st;
    }
    for (;;) {
        if (t->p >= t->end) return 0;
        const char *nl = memchr(t->p, '\n', (size_t)(t->end - t->p));
        size_t n = nl ? (size_t)(nl - t->p) : (size_t)(t->end - t->p);
        const char *s = t->p;
        t->p += n + (nl ? 1 : 0);
        t->line = t->next_line++;
        while (n && (s[n - 1] == '\r' || s[n - 1] == ' ' || s[n - 1] == '\t')) n--;
        size_t k = 0;
        while (k < n && (s[k] == ' ' || s[k] == '\t')) k++;
        if (k == n) continue;
        if (memchr(s, 0, n)) return err_set(ERR_INPUT, "%s:%lld: a NUL byte; this is not a text file", t->name, (long long)t->line);
        if (!utf8_valid(s, n))
            return err_set(ERR_INPUT, "%s:%lld: the text is not valid UTF-8; convert the file to UTF-8", t->name,
                           (long long)t->line);
        cJSON_Delete(t->obj);
        t->obj = cJSON_ParseWithLength(s, n);
        if (!cJSON_IsObject(t->obj))
            return err_set(ERR_INPUT, "%s:%lld: not a JSON object; each line of a JSONL file is one {...} record", t->name,
                           (long long)t->line);
        return 1;
    }
}

/* The value of a column in the current row as text, or NULL when the row lacks it. */
static const char *table_get(table *t, const char *col) {
    if (!t->jsonl) {
        for (int i = 0; i < t->n_header; i++)
            if (!strcmp(t->header[i], col)) return t->csv.fields[i];
        return NULL;
    }
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(t->obj, col);
    if (cJSON_IsString(v)) return v->valuestring;
    if (cJSON_IsNumber(v)) {
        char *b = t->num[t->next_num++ % 8];
        if (fabs(v->valuedouble) < 9e15 && v->valuedouble == (double)(long long)v->valuedouble) snprintf(b, sizeof t->num[0], "%lld", (long long)v->valuedouble);
        else snprintf(b, sizeof t->num[0], "%.17g", v->valuedouble);
        return b;
    }
    if (cJSON_IsBool(v)) return cJSON_IsTrue(v) ? "true" : "false";
    return NULL;
}

/* CSV: a required column must be in the header (checked once). JSONL: per row. */
static int table_need(table *t, const char *col) {
    if (t->jsonl || !col[0]) return 0;
    for (int i = 0; i < t->n_header; i++)
        if (!strcmp(t->header[i], col)) return 0;
    strbuf sb = STRBUF_INIT;
    for (int i = 0; i < t->n_header; i++) sb_printf(&sb, "%s%s", i ? ", " : "", t->header[i]);
    err_set(ERR_INPUT, "%s: no column '%s' in the header (it has: %s); name the right column in the recipe", t->name, col,
            sb_str(&sb));
    sb_free(&sb);
    return -1;
}

static const char *row_field(table *t, const char *col) {
    const char *v = table_get(t, col);
    if (!v) err_set(ERR_INPUT, "%s:%lld: the record has no '%s'", t->name, (long long)table_line(t), col);
    return v;
}

static int in_list(const cJSON *list, const char *v) {
    const cJSON *x;
    cJSON_ArrayForEach(x, list) if (cJSON_IsString(x) && !strcasecmp(x->valuestring, v)) return 1;
    return 0;
}

/* "Title (a, b)": the first text column, the others in parentheses. */
static char *join_text(table *t, const cJSON *cols, const char *prefix) {
    strbuf sb = STRBUF_INIT;
    int k = 0;
    if (prefix) sb_puts(&sb, prefix);
    const cJSON *c;
    cJSON_ArrayForEach(c, cols) {
        const char *v = row_field(t, c->valuestring);
        if (!v) {
            sb_free(&sb);
            return NULL;
        }
        if (!v[0]) continue;
        if (k == 0) sb_printf(&sb, "%s%s", prefix ? ": " : "", v);
        else sb_printf(&sb, "%s%s", k == 1 ? " (" : ", ", v);
        k++;
    }
    if (k > 1) sb_putc(&sb, ')');
    if (!sb.buf) sb_puts(&sb, "");
    return sb.buf ? sb_detach(&sb) : NULL;
}

static char *plain_instruction(void *ctx, const char *name) {
    (void)ctx;
    return xasprintf("Will the member %s the candidate? Answer yes or no.", name);
}

static int load_items(rs_corpus *c, strmap *ids, const cJSON *p, const char *format) {
    const char *path, *idc, *tagc;
    if (param_string(p, "items_path", &path) || param_string(p, "item_columns.id", &idc) ||
        param_string(p, "item_columns.tags", &tagc))
        return -1;
    const cJSON *textc = param_get(p, "item_columns.text");
    char *data;
    size_t len;
    if (rs_read_file(path, TABLE_MAX_BYTES, &data, &len)) return -1;
    table t;
    int rc = -1, st;
    if (table_open(&t, path, data, len, format) || table_need(&t, idc) || table_need(&t, tagc)) goto out;
    const cJSON *col;
    cJSON_ArrayForEach(col, textc) if (table_need(&t, col->valuestring)) goto out;
    while ((st = table_next(&t)) > 0) {
        const char *id = row_field(&t, idc);
        if (!id) goto out;
        int r = strmap_put(ids, id, c->n_items);
        if (r < 0) goto out;
        if (r == 1) {
            err_set(ERR_INPUT, "%s:%lld: item id '%s' appears twice", path, (long long)table_line(&t), id);
            goto out;
        }
        if ((c->n_items & (c->n_items - 1)) == 0) {
            rs_item *it = xrealloc(c->items, (size_t)(c->n_items ? 2 * c->n_items : 1) * sizeof *it);
            if (!it) goto out;
            c->items = it;
        }
        rs_item *it = &c->items[c->n_items];
        memset(it, 0, sizeof *it);
        it->id = (uint32_t)c->n_items;
        const char *tags = tagc[0] ? row_field(&t, tagc) : "";
        if (!tags) goto out;
        it->text = join_text(&t, textc, NULL);
        it->tags = xstrdup(tags);
        c->n_items++;
        if (!it->text || !it->tags) goto out;
    }
    if (st < 0) goto out;
    if (c->n_items == 0) {
        err_set(ERR_INPUT, "%s has no items; it needs one row per item", path);
        goto out;
    }
    rc = 0;
out:
    table_close(&t);
    free(data);
    return rc;
}

static int load_members(strmap *profiles, char ***texts, int *n_texts, const cJSON *p, const char *format) {
    const cJSON *pathv = param_get(p, "members_path");
    if (!cJSON_IsString(pathv)) return 0;
    const char *path = pathv->valuestring, *idc;
    if (param_string(p, "member_columns.id", &idc)) return -1;
    const cJSON *textc = param_get(p, "member_columns.text"), *col;
    char *data;
    size_t len;
    if (rs_read_file(path, TABLE_MAX_BYTES, &data, &len)) return -1;
    table t;
    int rc = -1, st;
    if (table_open(&t, path, data, len, format) || table_need(&t, idc)) goto out;
    cJSON_ArrayForEach(col, textc) if (table_need(&t, col->valuestring)) goto out;
    while ((st = table_next(&t)) > 0) {
        const char *id = row_field(&t, idc);
        if (!id) goto out;
        char *pre = xasprintf("Member %s", id);
        char *txt = pre ? join_text(&t, textc, pre) : NULL;
        free(pre);
        if (!txt) goto out;
        int r = strmap_put(profiles, id, *n_texts);
        if (r != 0) {
            free(txt);
            if (r == 1) err_set(ERR_INPUT, "%s:%lld: member id '%s' appears twice", path, (long long)table_line(&t), id);
            goto out;
        }
        if ((*n_texts & (*n_texts - 1)) == 0) {
            char **x = xrealloc(*texts, (size_t)(*n_texts ? 2 * *n_texts : 1) * sizeof *x);
            if (!x) {
                free(txt);
                goto out;
            }
            *texts = x;
        }
        (*texts)[(*n_texts)++] = txt;
    }
    rc = st < 0 ? -1 : 0;
out:
    table_close(&t);
    free(data);
    return rc;
}

int interactions_load(rs_corpus *c, const cJSON *p) {
    const char *path, *format, *mc, *ic, *lc, *tc, *ac, *kc;
    double threshold;
    if (param_string(p, "path", &path) || param_string(p, "format", &format) || param_string(p, "columns.member", &mc) ||
        param_string(p, "columns.item", &ic) || param_string(p, "columns.label", &lc) ||
        param_string(p, "columns.time", &tc) || param_string(p, "columns.action", &ac) ||
        param_string(p, "columns.task", &kc) || param_float(p, "threshold", &threshold))
        return -1;
    const cJSON *pos = param_get(p, "positive"), *neg = param_get(p, "negative");
    if (rs_tasks_from_params(c, p, plain_instruction, NULL, NULL)) return -1;
    strmap items = {0}, members = {0}, profiles = {0};
    char **ptexts = NULL, *data = NULL;
    int n_ptexts = 0, rc = -1, st;
    size_t len;
    table t;
    memset(&t, 0, sizeof t);
    if (load_items(c, &items, p, format) || load_members(&profiles, &ptexts, &n_ptexts, p, format)) goto out;
    if (rs_read_file(path, TABLE_MAX_BYTES, &data, &len) || table_open(&t, path, data, len, format)) goto out;
    /* with an action column, the label column is optional (the action decides) */
    if (table_need(&t, mc) || table_need(&t, ic) || table_need(&t, tc) || (!ac[0] && table_need(&t, lc)) ||
        (ac[0] && table_need(&t, ac)) || (kc[0] && table_need(&t, kc)))
        goto out;
    int64_t cap = 0;
    uint32_t all = c->n_tasks >= 32 ? UINT32_MAX : (1u << c->n_tasks) - 1;
    while ((st = table_next(&t)) > 0) {
        int64_t line = table_line(&t);
        const char *m = row_field(&t, mc), *it = row_field(&t, ic), *ts = row_field(&t, tc);
        if (!m || !it || !ts) goto out;
        int32_t ii = strmap_get(&items, it);
        if (ii < 0) {
            err_set(ERR_INPUT, "%s:%lld: item '%s' is not in the item table; add it there or remove the row", path,
                    (long long)line, it);
            goto out;
        }
        char *end;
        double tv = strtod(ts, &end);
        if (!ts[0] || *end || !(fabs(tv) < 9e15)) {
            err_set(ERR_INPUT, "%s:%lld: timestamp '%s' is not a number (seconds since the epoch)", path, (long long)line, ts);
            goto out;
        }
        const char *lv = table_get(&t, lc), *av = ac[0] ? row_field(&t, ac) : NULL;
        if (ac[0] && !av) goto out;
        if (!ac[0] && !lv) {
            row_field(&t, lc);
            goto out;
        }
        int label = -1; /* -1: history only */
        const char *decide = lv ? lv : av;
        if (in_list(pos, decide)) label = 1;
        else if (in_list(neg, decide)) label = 0;
        else if (lv) {
            double x = strtod(lv, &end);
            if (!lv[0] || *end || x != x) {
                err_set(ERR_INPUT, "%s:%lld: label '%s' is neither listed in positive/negative nor a number; fix the row "
                        "or list the value in positive: or negative:", path, (long long)line, lv);
                goto out;
            }
            label = x >= threshold;
        }
        uint32_t in_task = label < 0 ? 0 : all;
        if (kc[0] && label >= 0) {
            const char *tn = row_field(&t, kc);
            if (!tn) goto out;
            int k = -1;
            for (int j = 0; j < c->n_tasks; j++)
                if (!strcmp(c->tasks[j].name, tn)) k = j;
            if (k < 0) {
                err_set(ERR_INPUT, "%s:%lld: task '%s' is not listed in tasks:; add it or fix the row", path,
                        (long long)line, tn);
                goto out;
            }
            in_task = 1u << k;
        }
        int r = strmap_put(&members, m, c->n_members);
        if (r < 0) goto out;
        if (r == 0) {
            if ((c->n_members & (c->n_members - 1)) == 0) {
                size_t nc = (size_t)(c->n_members ? 2 * c->n_members : 1);
                uint32_t *ids = xrealloc(c->member_ids, nc * sizeof *ids);
                if (!ids) goto out;
                c->member_ids = ids;
                char **tx = xrealloc(c->member_text, nc * sizeof *tx);
                if (!tx) goto out;
                c->member_text = tx;
            }
            int32_t pi = strmap_get(&profiles, m);
            c->member_ids[c->n_members] = (uint32_t)c->n_members;
            c->member_text[c->n_members] = pi >= 0 ? xstrdup(ptexts[pi]) : xasprintf("Member %s", m);
            if (!c->member_text[c->n_members++]) goto out;
        }
        if (c->n_events == cap) {
            cap = cap ? 2 * cap : 65536;
            rs_event *e = xrealloc(c->events, (size_t)cap * sizeof *e);
            if (!e) goto out;
            c->events = e;
        }
        int a = rs_action_id(c, av ? av : label ? "yes" : "no");
        if (a < 0) goto out;
        rs_event *e = &c->events[c->n_events++];
        memset(e, 0, sizeof *e);
        e->member = (uint32_t)strmap_get(&members, m);
        e->item = (uint32_t)ii;
        e->time = (int64_t)tv;
        e->action = (uint32_t)a;
        e->in_task = in_task;
        e->yes = label == 1 ? in_task : 0;
    }
    if (st < 0) goto out;
    if (c->n_events == 0) {
        err_set(ERR_INPUT, "%s has a header but no rows", path);
        goto out;
    }
    c->raw_events = c->n_events;
    c->raw_members = c->n_members;
    c->raw_items = c->n_items;
    rc = rs_sort_events(c);
out:
    table_close(&t);
    free(data);
    strmap_free(&items);
    strmap_free(&members);
    strmap_free(&profiles);
    for (int i = 0; i < n_ptexts; i++) free(ptexts[i]);
    free(ptexts);
    return rc;
}
