/* report_data.c: reads one run from the store for `smelt report` and `smelt compare`: its stages
 * (with their cache keys), latest metrics, parameters, lineage and outputs, in a handful of
 * queries over the documented views (a run has tens of stages and hundreds of latest values). */
#include "cmd/report_data.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"

static char *col_text(sqlite3_stmt *st, int c) {
    const unsigned char *t = sqlite3_column_text(st, c);
    return t ? xstrdup((const char *)t) : NULL;
}

static double col_num(sqlite3_stmt *st, int c) {
    return sqlite3_column_type(st, c) == SQLITE_NULL ? NAN : sqlite3_column_double(st, c);
}

static rstage *find_stage(rrun *r, const char *name) {
    for (int i = 0; i < r->n_st; i++)
        if (!strcmp(r->st[i].name, name)) return &r->st[i];
    return NULL;
}

/* Grows an array by one zeroed element; returns it or NULL (ERR_NOMEM). */
static void *push(void **arr, int *n, size_t size) {
    char *a = xrealloc(*arr, (size_t)(*n + 1) * size);
    if (!a) return NULL;
    *arr = a;
    memset(a + (size_t)*n * size, 0, size);
    return a + (size_t)(*n)++ * size;
}

static int load_stages(rrun *r, store *s) {
    sqlite3_stmt *st;
    if (store_prepare(s, &st, "SELECT name, kind, status, cached_from, cache_key, key_json, started_at, finished_at, ord "
                              "FROM stage WHERE run_id = ? ORDER BY ord"))
        return -1;
    sqlite3_bind_text(st, 1, r->id, -1, SQLITE_TRANSIENT);
    int rc;
    while ((rc = store_step_row(s, st, "reading the stages of the run")) == 1) {
        rstage *x = push((void **)&r->st, &r->n_st, sizeof *x);
        if (!x) {
            rc = -1;
            break;
        }
        x->name = col_text(st, 0), x->kind = col_text(st, 1), x->status = col_text(st, 2);
        x->cached_from = col_text(st, 3), x->cache_key = col_text(st, 4), x->key_json = col_text(st, 5);
        double t0 = col_num(st, 6), t1 = col_num(st, 7);
        x->seconds = strcmp(x->status, "ok") == 0 && t1 >= t0 ? t1 - t0 : NAN;
        x->ord = sqlite3_column_int(st, 8);
        if (!x->name || !x->kind || !x->status) {
            rc = err_set(ERR_NOMEM, "out of memory");
            break;
        }
    }
    sqlite3_finalize(st);
    return rc < 0 ? -1 : 0;
}

/* Rows of (stage, ...): each becomes an element of the named stage's array through fill. */
typedef int (*row_fn)(rstage *x, sqlite3_stmt *st);

static int load_rows(rrun *r, store *s, const char *sql, const char *what, row_fn fill) {
    sqlite3_stmt *st;
    if (store_prepare(s, &st, sql)) return -1;
    sqlite3_bind_text(st, 1, r->id, -1, SQLITE_TRANSIENT);
    int rc;
    while ((rc = store_step_row(s, st, what)) == 1) {
        rstage *x = find_stage(r, (const char *)sqlite3_column_text(st, 0));
        if (x && fill(x, st)) {
            rc = -1;
            break;
        }
    }
    sqlite3_finalize(st);
    return rc < 0 ? -1 : 0;
}

static int fill_metric(rstage *x, sqlite3_stmt *st) {
    rmetric *m = push((void **)&x->m, &x->n_m, sizeof *m);
    if (!m || !(m->key = col_text(st, 1))) return -1;
    m->step = sqlite3_column_int64(st, 2);
    m->value = col_num(st, 3);
    return 0;
}

static int fill_param(rstage *x, sqlite3_stmt *st) {
    rparam *p = push((void **)&x->p, &x->n_p, sizeof *p);
    if (!p || !(p->key = col_text(st, 1))) return -1;
    double v = sqlite3_column_double(st, 2);
    /* the params view holds numbers as REAL: a whole number reads "32", as the recipe wrote it */
    if (sqlite3_column_type(st, 2) == SQLITE_FLOAT && v == floor(v) && fabs(v) < 9007199254740992.0)
        p->value = xasprintf("%.0f", v);
    else p->value = col_text(st, 2);
    if (!p->value && !(p->value = xstrdup("null"))) return -1;
    return 0;
}

static int fill_input(rstage *x, sqlite3_stmt *st) {
    rinput *i = push((void **)&x->in, &x->n_in, sizeof *i);
    if (!i) return -1;
    i->input = col_text(st, 1), i->from_stage = col_text(st, 2), i->from_output = col_text(st, 3);
    i->digest = col_text(st, 4);
    return i->input && i->from_stage && i->from_output && i->digest ? 0 : -1;
}

static int fill_output(rstage *x, sqlite3_stmt *st) {
    routput *o = push((void **)&x->out, &x->n_out, sizeof *o);
    if (!o) return -1;
    o->name = col_text(st, 1), o->kind = col_text(st, 2), o->digest = col_text(st, 3);
    o->bytes = col_num(st, 4);
    return o->name && o->kind && o->digest ? 0 : -1;
}

int rrun_load(rrun *r, store *s, const char *run) {
    memset(r, 0, sizeof *r);
    run_row rr = {0};
    if (store_run_load(s, run, &rr)) return -1;
    snprintf(r->id, sizeof r->id, "%s", rr.id);
    r->name = xstrdup(rr.name), r->status = xstrdup(rr.status), r->recipe_sha = xstrdup(rr.recipe_sha);
    r->error = rr.error ? xstrdup(rr.error) : NULL;
    r->seconds = rr.finished_at > 0 ? rr.finished_at - rr.created_at : NAN;
    run_row_free(&rr);
    /* ORDER BY key: rstage_metric and rstage_param look values up by key in sorted arrays */
    if (!r->name || !r->status || !r->recipe_sha || load_stages(r, s) ||
        load_rows(r, s, "SELECT stage, key, step, value FROM latest_metrics WHERE run_id = ? ORDER BY stage, key",
                  "reading the metrics of the run", fill_metric) ||
        load_rows(r, s, "SELECT stage, key, value FROM params WHERE run_id = ? ORDER BY stage, key",
                  "reading the parameters of the run", fill_param) ||
        load_rows(r, s, "SELECT stage, input, from_stage, from_output, digest FROM lineage WHERE run_id = ? "
                        "ORDER BY stage, input", "reading the lineage of the run", fill_input) ||
        load_rows(r, s, "SELECT a.stage, a.name, a.kind, a.digest, a.bytes FROM artifacts a JOIN stage s ON "
                        "s.run_id = a.run_id AND s.name = a.stage WHERE a.run_id = ? ORDER BY a.stage, "
                        "a.name = 'output' DESC, a.name = 'model' DESC, a.rowid",
                  "reading the outputs of the run", fill_output)) {
        rrun_free(r);
        return -1;
    }
    return 0;
}

void rrun_free(rrun *r) {
    for (int i = 0; i < r->n_st; i++) {
        rstage *x = &r->st[i];
        free(x->name), free(x->kind), free(x->status), free(x->cached_from), free(x->cache_key), free(x->key_json);
        for (int k = 0; k < x->n_m; k++) free(x->m[k].key);
        for (int k = 0; k < x->n_p; k++) free(x->p[k].key), free(x->p[k].value);
        for (int k = 0; k < x->n_in; k++)
            free(x->in[k].input), free(x->in[k].from_stage), free(x->in[k].from_output), free(x->in[k].digest);
        for (int k = 0; k < x->n_out; k++) free(x->out[k].name), free(x->out[k].kind), free(x->out[k].digest);
        free(x->m), free(x->p), free(x->in), free(x->out);
    }
    free(r->st), free(r->name), free(r->status), free(r->recipe_sha), free(r->error);
    memset(r, 0, sizeof *r);
}

const rstage *rrun_stage(const rrun *r, const char *name) { return find_stage((rrun *)r, name); }

/* rmetric and rparam both start with their key: one binary search over either array. */
static int cmp_key(const void *key, const void *elem) { return strcmp(key, *(char *const *)elem); }

double rstage_metric(const rstage *s, const char *key) {
    const rmetric *m = s->n_m ? bsearch(key, s->m, (size_t)s->n_m, sizeof *s->m, cmp_key) : NULL;
    return m ? m->value : NAN;
}

const char *rstage_param(const rstage *s, const char *key) {
    const rparam *p = s->n_p ? bsearch(key, s->p, (size_t)s->n_p, sizeof *s->p, cmp_key) : NULL;
    return p ? p->value : NULL;
}

const rinput *rstage_input(const rstage *s, const char *name) {
    for (int i = 0; i < s->n_in; i++)
        if (!strcmp(s->in[i].input, name)) return &s->in[i];
    return NULL;
}

const char *rstage_main_digest(const rstage *s) { return s->n_out ? s->out[0].digest : NULL; }

int rstage_series(store *s, const char *run, const char *stage, const char *key, int64_t **steps, double **values,
                  int *n) {
    *steps = NULL, *values = NULL, *n = 0;
    sqlite3_stmt *st;
    if (store_prepare(s, &st, "SELECT step, value FROM metrics WHERE run_id = ? AND stage = ? AND key = ? ORDER BY step"))
        return -1;
    sqlite3_bind_text(st, 1, run, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 2, stage, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 3, key, -1, SQLITE_TRANSIENT);
    int rc, cap = 0;
    while ((rc = store_step_row(s, st, "reading a metric series")) == 1) {
        if (*n == cap) {
            cap = cap ? 2 * cap : 64;
            int64_t *a = xrealloc(*steps, (size_t)cap * sizeof *a);
            if (a) *steps = a;
            double *b = a ? xrealloc(*values, (size_t)cap * sizeof *b) : NULL;
            if (!b) {
                rc = -1;
                break;
            }
            *values = b;
        }
        (*steps)[*n] = sqlite3_column_int64(st, 0);
        (*values)[*n] = col_num(st, 1);
        (*n)++;
    }
    sqlite3_finalize(st);
    if (rc < 0) {
        free(*steps), free(*values);
        *steps = NULL, *values = NULL, *n = 0;
        return -1;
    }
    return 0;
}

void fmt_num(char *buf, size_t n, double v, const char *fmt) {
    if (isnan(v)) snprintf(buf, n, "-");
    else snprintf(buf, n, fmt, v);
}

/* Three significant digits with a suffix: 950, 63.2K, 1.24M, 8.03B. */
static void fmt_scaled(char *buf, size_t n, double v, const char *const *suffix, const char *sep) {
    if (isnan(v)) {
        snprintf(buf, n, "-");
        return;
    }
    int k = 0;
    double a = fabs(v);
    while (a >= 999.5 && suffix[k + 1]) a /= 1000, v /= 1000, k++;
    if (k == 0) snprintf(buf, n, "%.0f%s%s", v, suffix[0][0] ? sep : "", suffix[0]);
    else snprintf(buf, n, a < 9.995 ? "%.2f%s%s" : a < 99.95 ? "%.1f%s%s" : "%.0f%s%s", v, sep, suffix[k]);
}

void fmt_count(char *buf, size_t n, double v) {
    static const char *const sfx[] = {"", "K", "M", "B", "T", NULL};
    fmt_scaled(buf, n, v, sfx, "");
}

void fmt_bytes(char *buf, size_t n, double v) {
    static const char *const sfx[] = {"B", "KB", "MB", "GB", "TB", NULL};
    fmt_scaled(buf, n, v, sfx, " ");
}
