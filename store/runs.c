/* runs.c: run and stage bookkeeping. Every multi-row change is one transaction, so a reader
 * (or a crash) sees either all of it or none of it. */
#include "store/runs.h"

#include <cjson/cJSON.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/error.h"
#include "common/log.h"
#include "store/internal.h"

void run_id_new(char out[RUN_ID_MAX]) {
    unsigned char rnd[2] = {0, 0};
    int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    if (fd < 0 || read(fd, rnd, 2) != 2) {
        unsigned v = (unsigned)getpid() ^ (unsigned)time(NULL);
        rnd[0] = (unsigned char)v;
        rnd[1] = (unsigned char)(v >> 8);
    }
    if (fd >= 0) close(fd);
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    char ts[32];
    strftime(ts, sizeof ts, "%Y%m%d-%H%M%S", &tm);
    snprintf(out, RUN_ID_MAX, "%s-%02x%02x", ts, rnd[0], rnd[1]);
}

static void col_text(sqlite3_stmt *st, int i, char *dst, size_t cap) {
    const unsigned char *t = sqlite3_column_text(st, i);
    snprintf(dst, cap, "%s", t ? (const char *)t : "");
}

static char *col_dup(sqlite3_stmt *st, int i) {
    const unsigned char *t = sqlite3_column_text(st, i);
    return t ? xstrdup((const char *)t) : NULL;
}

int store_run_create(store *s, const char *id, const char *name, const char *recipe_path, const char *recipe_text,
                     const char *overrides_json, int jobs) {
    char sha[65];
    sha256_hex(sha, recipe_text, strlen(recipe_text));
    char host[128] = "";
    gethostname(host, sizeof host - 1);
    char pid[32], jb[32];
    snprintf(pid, sizeof pid, "%ld", (long)getpid());
    snprintf(jb, sizeof jb, "%d", jobs);
    if (store_begin(s)) return -1;
    const char *a1[] = {sha, recipe_text};
    const char *a2[] = {id, name, recipe_path, sha, overrides_json, host, pid, jb};
    if (store_exec_bind(s, "INSERT OR IGNORE INTO recipe(sha, text) VALUES (?, ?)", 2, a1) ||
        store_exec_bind(s, "INSERT INTO run(id, name, recipe_path, recipe_sha, overrides, status, created_at, host, pid, jobs) "
                     "VALUES (?, ?, ?, ?, ?, 'running', " STORE_NOW_SQL ", ?, ?, ?)", 8, a2)) {
        store_rollback(s);
        return -1;
    }
    return store_commit(s);
}

int store_run_resolve(store *s, const char *spec, char out[RUN_ID_MAX]) {
    sqlite3_stmt *st;
    int latest = !strcmp(spec, "latest") || !strcmp(spec, "last");
    if (store_prepare(s, &st, latest ? "SELECT id FROM run ORDER BY created_at DESC, id DESC LIMIT 1"
                                     : "SELECT id FROM run WHERE id = ?1 OR (substr(id, 1, length(?1)) = ?1) "
                                       "ORDER BY (id = ?1) DESC LIMIT 3"))
        return -1;
    if (!latest) sqlite3_bind_text(st, 1, spec, -1, SQLITE_TRANSIENT);
    int n = 0, exact = 0;
    char first[RUN_ID_MAX] = "", second[RUN_ID_MAX] = "";
    int rc;
    while ((rc = store_step_row(s, st, "looking up a run")) == 1) {
        if (n == 0) {
            col_text(st, 0, first, sizeof first);
            exact = !strcmp(first, spec);
        } else if (n == 1) {
            col_text(st, 0, second, sizeof second);
        }
        n++;
    }
    sqlite3_finalize(st);
    if (rc < 0) return -1;
    if (n == 0)
        return err_set(ERR_INPUT, latest ? "the store %s has no runs yet" : "no run '%s' in the store %s; list runs with "
                       "'smelt runs'", latest ? s->dir : spec, s->dir);
    if (n > 1 && !exact)
        return err_set(ERR_INPUT, "run id prefix '%s' is ambiguous (%s, %s, ...); give more characters", spec, first,
                       second);
    snprintf(out, RUN_ID_MAX, "%s", first);
    return 0;
}

int store_run_load(store *s, const char *id, run_row *r) {
    memset(r, 0, sizeof *r);
    sqlite3_stmt *st;
    if (store_prepare(s, &st, "SELECT r.id, r.name, r.status, r.recipe_sha, r.recipe_path, c.text, r.overrides, "
                              "r.created_at, r.finished_at, r.host, r.pid, r.jobs, r.error "
                              "FROM run r JOIN recipe c ON c.sha = r.recipe_sha WHERE r.id = ?"))
        return -1;
    sqlite3_bind_text(st, 1, id, -1, SQLITE_TRANSIENT);
    int rc = store_step_row(s, st, "loading a run");
    if (rc != 1) {
        sqlite3_finalize(st);
        return rc < 0 ? -1 : err_set(ERR_INPUT, "no run '%s' in the store %s", id, s->dir);
    }
    col_text(st, 0, r->id, sizeof r->id);
    col_text(st, 1, r->name, sizeof r->name);
    col_text(st, 2, r->status, sizeof r->status);
    col_text(st, 3, r->recipe_sha, sizeof r->recipe_sha);
    r->recipe_path = col_dup(st, 4);
    r->recipe_text = col_dup(st, 5);
    r->overrides = col_dup(st, 6);
    r->created_at = sqlite3_column_double(st, 7);
    r->finished_at = sqlite3_column_double(st, 8);
    col_text(st, 9, r->host, sizeof r->host);
    r->pid = sqlite3_column_int64(st, 10);
    r->jobs = sqlite3_column_int(st, 11);
    r->error = col_dup(st, 12);
    sqlite3_finalize(st);
    if (!r->recipe_text || !r->overrides) {
        run_row_free(r);
        return err_set(ERR_NOMEM, "out of memory loading run %s", id);
    }
    return 0;
}

void run_row_free(run_row *r) {
    free(r->recipe_path);
    free(r->recipe_text);
    free(r->overrides);
    free(r->error);
    memset(r, 0, sizeof *r);
}

int store_run_set_status(store *s, const char *id, const char *status, const char *error) {
    const char *a[] = {status, error, id};
    int done = strcmp(status, "running") != 0;
    return store_exec_bind(s, done ? "UPDATE run SET status = ?, error = ?, finished_at = " STORE_NOW_SQL " WHERE id = ?"
                             : "UPDATE run SET status = ?, error = ?, finished_at = NULL WHERE id = ?",
                     3, a);
}

int store_run_claim(store *s, const char *id) {
    char host[128] = "", pid[32];
    gethostname(host, sizeof host - 1);
    snprintf(pid, sizeof pid, "%ld", (long)getpid());
    const char *a[] = {host, pid, id};
    return store_exec_bind(s, "UPDATE run SET status = 'running', error = NULL, finished_at = NULL, host = ?, pid = ? "
                        "WHERE id = ?", 3, a);
}

int store_stage_create(store *s, const char *run, const char *name, const char *kind, int kind_version, int ord,
                       int ranks, int retries) {
    sqlite3_stmt *st;
    if (store_prepare(s, &st, "INSERT INTO stage(run_id, name, kind, kind_version, ord, status, ranks, retries) "
                              "VALUES (?, ?, ?, ?, ?, 'pending', ?, ?)"))
        return -1;
    sqlite3_bind_text(st, 1, run, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 2, name, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 3, kind, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int(st, 4, kind_version);
    sqlite3_bind_int(st, 5, ord);
    sqlite3_bind_int(st, 6, ranks);
    sqlite3_bind_int(st, 7, retries);
    int rc = store_step_done(s, st);
    sqlite3_finalize(st);
    return rc;
}

int store_edge_add(store *s, const char *run, const char *stage, const char *dep, const char *input_name,
                   const char *output_name) {
    const char *a[] = {run, stage, dep, input_name, output_name};
    return store_exec_bind(s, "INSERT OR IGNORE INTO edge(run_id, stage, dep, input_name, output_name) VALUES (?, ?, ?, ?, ?)",
                     5, a);
}

int store_stage_load(store *s, const char *run, const char *name, stage_row *r) {
    memset(r, 0, sizeof *r);
    sqlite3_stmt *st;
    if (store_prepare(s, &st, "SELECT run_id, name, kind, kind_version, ord, ranks, retries, attempts, status, "
                              "cache_key, cached_from, key_json, params_json, log_path, error, started_at, "
                              "finished_at, pid, host FROM stage WHERE run_id = ? AND name = ?"))
        return -1;
    sqlite3_bind_text(st, 1, run, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 2, name, -1, SQLITE_TRANSIENT);
    int rc = store_step_row(s, st, "loading a stage");
    if (rc != 1) {
        sqlite3_finalize(st);
        return rc < 0 ? -1 : err_set(ERR_INPUT, "run %s has no stage '%s'; see 'smelt status %s' for its stages", run,
                                     name, run);
    }
    col_text(st, 0, r->run_id, sizeof r->run_id);
    col_text(st, 1, r->name, sizeof r->name);
    col_text(st, 2, r->kind, sizeof r->kind);
    r->kind_version = sqlite3_column_int(st, 3);
    r->ord = sqlite3_column_int(st, 4);
    r->ranks = sqlite3_column_int(st, 5);
    r->retries = sqlite3_column_int(st, 6);
    r->attempts = sqlite3_column_int(st, 7);
    col_text(st, 8, r->status, sizeof r->status);
    col_text(st, 9, r->cache_key, sizeof r->cache_key);
    col_text(st, 10, r->cached_from, sizeof r->cached_from);
    r->key_json = col_dup(st, 11);
    r->params_json = col_dup(st, 12);
    r->log_path = col_dup(st, 13);
    r->error = col_dup(st, 14);
    r->started_at = sqlite3_column_double(st, 15);
    r->finished_at = sqlite3_column_double(st, 16);
    r->pid = sqlite3_column_int64(st, 17);
    col_text(st, 18, r->host, sizeof r->host);
    sqlite3_finalize(st);
    return 0;
}

void stage_row_free(stage_row *r) {
    free(r->key_json);
    free(r->params_json);
    free(r->log_path);
    free(r->error);
    r->key_json = r->params_json = r->log_path = r->error = NULL;
}

int store_stage_prepare(store *s, const char *run, const char *name, const char *key, const char *key_json,
                        const char *params_json, const input_row *inputs, int n_inputs) {
    if (store_begin(s)) return -1;
    const char *a[] = {key, key_json, params_json, run, name};
    const char *d[] = {run, name};
    int rc = store_exec_bind(s, "UPDATE stage SET cache_key = ?, key_json = ?, params_json = ? WHERE run_id = ? AND name = ?",
                       5, a);
    if (!rc) rc = store_exec_bind(s, "DELETE FROM input WHERE run_id = ? AND stage = ?", 2, d);
    if (!rc) rc = store_exec_bind(s, "DELETE FROM param WHERE run_id = ? AND stage = ?", 2, d);
    for (int i = 0; i < n_inputs && !rc; i++) {
        const char *b[] = {run, name, inputs[i].name, inputs[i].digest, inputs[i].from_stage, inputs[i].from_output};
        rc = store_exec_bind(s, "INSERT INTO input(run_id, stage, name, digest, from_stage, from_output) "
                          "VALUES (?, ?, ?, ?, ?, ?)", 6, b);
    }
    if (!rc) rc = store_params_put(s, run, name, params_json);
    if (rc) {
        store_rollback(s);
        return -1;
    }
    return store_commit(s);
}

/* Reads the rows of a query over (run, stage) into a growing array of elem-byte records that
 * fill() sets from the current row. */
static int read_stage_rows(store *s, const char *sql, const char *run, const char *name, size_t elem,
                           void (*fill)(sqlite3_stmt *st, void *row), void **rows, int *n, const char *what) {
    *rows = NULL;
    *n = 0;
    sqlite3_stmt *st;
    if (store_prepare(s, &st, sql)) return -1;
    sqlite3_bind_text(st, 1, run, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 2, name, -1, SQLITE_TRANSIENT);
    int rc, cap = 0;
    while ((rc = store_step_row(s, st, what)) == 1) {
        if (*n == cap) {
            cap = cap ? 2 * cap : 8;
            void *nr = xrealloc(*rows, (size_t)cap * elem);
            if (!nr) {
                rc = -1;
                break;
            }
            *rows = nr;
        }
        fill(st, (char *)*rows + (size_t)(*n)++ * elem);
    }
    sqlite3_finalize(st);
    if (rc < 0) {
        free(*rows);
        *rows = NULL;
        *n = 0;
        return -1;
    }
    return 0;
}

static void fill_input(sqlite3_stmt *st, void *row) {
    input_row *r = row;
    col_text(st, 0, r->name, sizeof r->name);
    col_text(st, 1, r->digest, sizeof r->digest);
    col_text(st, 2, r->from_stage, sizeof r->from_stage);
    col_text(st, 3, r->from_output, sizeof r->from_output);
}

static void fill_output(sqlite3_stmt *st, void *row) {
    output_row *r = row;
    col_text(st, 0, r->name, sizeof r->name);
    col_text(st, 1, r->kind, sizeof r->kind);
    col_text(st, 2, r->digest, sizeof r->digest);
}

int store_stage_inputs(store *s, const char *run, const char *name, input_row **rows, int *n) {
    return read_stage_rows(s, "SELECT name, digest, from_stage, from_output FROM input WHERE run_id = ? AND stage = ? "
                              "ORDER BY name", run, name, sizeof **rows, fill_input, (void **)rows, n,
                           "reading stage inputs");
}

int store_stage_outputs(store *s, const char *run, const char *name, output_row **rows, int *n) {
    return read_stage_rows(s, "SELECT name, kind, digest FROM output WHERE run_id = ? AND stage = ? ORDER BY name", run,
                           name, sizeof **rows, fill_output, (void **)rows, n, "reading stage outputs");
}

int store_stage_set_status(store *s, const char *run, const char *name, const char *status, const char *error) {
    const char *a[] = {status, error, run, name};
    int done = !strcmp(status, "ok") || !strcmp(status, "failed") || !strcmp(status, "cached");
    return store_exec_bind(s, done ? "UPDATE stage SET status = ?, error = ?, finished_at = " STORE_NOW_SQL
                               " WHERE run_id = ? AND name = ?"
                             : "UPDATE stage SET status = ?, error = ? WHERE run_id = ? AND name = ?",
                     4, a);
}

int store_stage_start(store *s, const char *run, const char *name, const char *log_path, int64_t pid, int *attempt) {
    char host[128] = "", spid[32];
    gethostname(host, sizeof host - 1);
    snprintf(spid, sizeof spid, "%lld", (long long)pid);
    if (store_begin(s)) return -1;
    const char *a[] = {log_path, spid, host, run, name};
    int rc = store_exec_bind(s, "UPDATE stage SET attempts = attempts + 1, status = 'running', error = NULL, started_at = "
                          STORE_NOW_SQL ", finished_at = NULL, log_path = ?, pid = ?, host = ? WHERE run_id = ? AND name = ?",
                       5, a);
    sqlite3_stmt *st = NULL;
    if (!rc && !store_prepare(s, &st, "SELECT attempts FROM stage WHERE run_id = ? AND name = ?")) {
        sqlite3_bind_text(st, 1, run, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(st, 2, name, -1, SQLITE_TRANSIENT);
        int r = store_step_row(s, st, "reading the attempt number");
        if (r == 1) *attempt = sqlite3_column_int(st, 0);
        else rc = r < 0 ? -1 : err_set(ERR_INTERNAL, "stage '%s' of run %s vanished", name, run);
        sqlite3_finalize(st);
    } else if (!rc) {
        rc = -1;
    }
    if (!rc) {
        char at[32];
        snprintf(at, sizeof at, "%d", *attempt);
        const char *b[] = {run, name, at, log_path, host};
        rc = store_exec_bind(s, "INSERT OR REPLACE INTO attempt(run_id, stage, attempt, started_at, log_path, host) "
                          "VALUES (?, ?, ?, " STORE_NOW_SQL ", ?, ?)", 5, b);
    }
    if (rc) {
        store_rollback(s);
        return -1;
    }
    return store_commit(s);
}

int store_attempt_finish(store *s, const char *run, const char *name, int attempt, int exit_code) {
    char at[32], ec[32];
    snprintf(at, sizeof at, "%d", attempt);
    snprintf(ec, sizeof ec, "%d", exit_code);
    const char *a[] = {ec, run, name, at};
    return store_exec_bind(s, "UPDATE attempt SET finished_at = " STORE_NOW_SQL ", exit_code = ? WHERE run_id = ? AND stage = ? "
                        "AND attempt = ?", 4, a);
}

int store_completion_find(store *s, const char *key, char from_run[RUN_ID_MAX], char from_stage[STAGE_NAME_MAX]) {
    sqlite3_stmt *st;
    /* Any completed stage with this key will do; prefer the oldest (the original computation). */
    if (store_prepare(s, &st, "SELECT run_id, name FROM stage WHERE cache_key = ? AND status IN ('ok', 'cached') "
                              "ORDER BY (status = 'ok') DESC, finished_at"))
        return -1;
    sqlite3_bind_text(st, 1, key, -1, SQLITE_TRANSIENT);
    int rc = 0, found = 0;
    while (!found && (rc = store_step_row(s, st, "looking up a cache key")) == 1) {
        char run[RUN_ID_MAX], stage[STAGE_NAME_MAX];
        col_text(st, 0, run, sizeof run);
        col_text(st, 1, stage, sizeof stage);
        output_row *outs;
        int n, present = 1;
        if (store_stage_outputs(s, run, stage, &outs, &n)) {
            sqlite3_finalize(st);
            return -1;
        }
        /* Reuse only when every object is still on disk (a manifest and all its files). */
        for (int i = 0; i < n && present; i++) {
            manifest m;
            if (!store_object_present(s, outs[i].digest) || store_manifest_read(s, outs[i].digest, &m)) {
                present = 0;
                err_clear();
                continue;
            }
            for (int j = 0; j < m.n_files && present; j++) present = store_object_present(s, m.files[j].digest);
            manifest_free(&m);
        }
        free(outs);
        if (present) {
            found = 1;
            snprintf(from_run, RUN_ID_MAX, "%s", run);
            snprintf(from_stage, STAGE_NAME_MAX, "%s", stage);
        }
    }
    sqlite3_finalize(st);
    return rc < 0 ? -1 : found;
}

int store_stage_link_cached(store *s, const char *run, const char *name, const char *from_run, const char *from_stage) {
    if (store_begin(s)) return -1;
    const char *a[] = {run, name, from_run, from_stage};
    const char *d[] = {run, name};
    const char *u[] = {from_run, run, name};
    int rc = store_exec_bind(s, "DELETE FROM output WHERE run_id = ? AND stage = ?", 2, d);
    if (!rc) rc = store_exec_bind(s, "INSERT INTO output(run_id, stage, name, kind, digest) SELECT ?, ?, name, kind, digest "
                               "FROM output WHERE run_id = ? AND stage = ?", 4, a);
    if (!rc) rc = store_exec_bind(s, "INSERT OR REPLACE INTO metric(run_id, stage, key, step, value) SELECT ?, ?, key, step, "
                               "value FROM metric WHERE run_id = ? AND stage = ?", 4, a);
    if (!rc) rc = store_exec_bind(s, "INSERT OR REPLACE INTO metric_latest(run_id, stage, key, step, value) SELECT ?, ?, key, "
                               "step, value FROM metric_latest WHERE run_id = ? AND stage = ?", 4, a);
    if (!rc) rc = store_exec_bind(s, "UPDATE stage SET status = 'cached', cached_from = ?, error = NULL, started_at = "
                               "coalesce(started_at, " STORE_NOW_SQL "), finished_at = " STORE_NOW_SQL
                               " WHERE run_id = ? AND name = ?", 3, u);
    if (rc) {
        store_rollback(s);
        return -1;
    }
    return store_commit(s);
}

int store_stage_commit(store *s, const char *run, const char *name, const output_row *outputs, int n_outputs) {
    if (store_begin(s)) return -1;
    const char *d[] = {run, name};
    int rc = store_exec_bind(s, "DELETE FROM output WHERE run_id = ? AND stage = ?", 2, d);
    for (int i = 0; i < n_outputs && !rc; i++) {
        rc = store_object_register(s, outputs[i].digest);
        const char *a[] = {run, name, outputs[i].name, outputs[i].kind, outputs[i].digest};
        if (!rc) rc = store_exec_bind(s, "INSERT INTO output(run_id, stage, name, kind, digest) VALUES (?, ?, ?, ?, ?)", 5, a);
    }
    if (!rc) rc = store_exec_bind(s, "INSERT OR IGNORE INTO completion(cache_key, run_id, stage, finished_at) SELECT "
                               "cache_key, run_id, name, " STORE_NOW_SQL " FROM stage WHERE run_id = ? AND name = ?", 2, d);
    if (!rc) rc = store_exec_bind(s, "UPDATE stage SET status = 'ok', error = NULL, cached_from = NULL, finished_at = " STORE_NOW_SQL
                               " WHERE run_id = ? AND name = ?", 2, d);
    if (rc) {
        store_rollback(s);
        return -1;
    }
    return store_commit(s);
}

int store_metrics_put(store *s, const char *run, const char *stage, const metric_point *pts, int n) {
    if (n <= 0) return 0;
    int own = sqlite3_get_autocommit(s->db);
    if (own && store_begin(s)) return -1;
    sqlite3_stmt *m = NULL, *l = NULL;
    int rc = store_prepare(s, &m, "INSERT OR REPLACE INTO metric(run_id, stage, key, step, value) VALUES (?, ?, ?, ?, ?)");
    if (!rc) rc = store_prepare(s, &l, "INSERT INTO metric_latest(run_id, stage, key, step, value) VALUES (?, ?, ?, ?, ?) "
                                       "ON CONFLICT(run_id, stage, key) DO UPDATE SET step = excluded.step, value = "
                                       "excluded.value WHERE excluded.step >= metric_latest.step");
    for (int i = 0; i < n && !rc; i++) {
        sqlite3_stmt *sts[2] = {m, l};
        for (int k = 0; k < 2 && !rc; k++) {
            sqlite3_stmt *st = sts[k];
            sqlite3_reset(st);
            sqlite3_bind_text(st, 1, run, -1, SQLITE_TRANSIENT);
            sqlite3_bind_text(st, 2, stage, -1, SQLITE_TRANSIENT);
            sqlite3_bind_text(st, 3, pts[i].key, -1, SQLITE_TRANSIENT);
            sqlite3_bind_int64(st, 4, pts[i].step);
            if (pts[i].value != pts[i].value) sqlite3_bind_null(st, 5); /* NaN is stored as NULL */
            else sqlite3_bind_double(st, 5, pts[i].value);
            rc = store_step_done(s, st);
        }
    }
    sqlite3_finalize(m);
    sqlite3_finalize(l);
    if (own) {
        if (rc) {
            store_rollback(s);
            return -1;
        }
        return store_commit(s);
    }
    return rc;
}

/* Flattens a JSON object into (path, scalar) rows: {"a":{"b":1}} gives ("a.b", 1). */
static int params_flatten(store *s, sqlite3_stmt *st, const char *run, const char *stage, const cJSON *v,
                          const char *prefix) {
    if (cJSON_IsObject(v)) {
        const cJSON *c;
        cJSON_ArrayForEach(c, v) {
            char *p = prefix[0] ? xasprintf("%s.%s", prefix, c->string) : xstrdup(c->string);
            int rc = p ? params_flatten(s, st, run, stage, c, p) : -1;
            free(p);
            if (rc) return -1;
        }
        return 0;
    }
    sqlite3_reset(st);
    sqlite3_bind_text(st, 1, run, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 2, stage, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 3, prefix, -1, SQLITE_TRANSIENT);
    char *txt = NULL;
    if (cJSON_IsNumber(v)) sqlite3_bind_double(st, 4, v->valuedouble);
    else if (cJSON_IsString(v)) sqlite3_bind_text(st, 4, v->valuestring, -1, SQLITE_TRANSIENT);
    else if (cJSON_IsBool(v)) sqlite3_bind_int(st, 4, cJSON_IsTrue(v));
    else if (cJSON_IsNull(v)) sqlite3_bind_null(st, 4);
    else {
        txt = cJSON_PrintUnformatted(v);
        if (!txt) return err_set(ERR_NOMEM, "out of memory flattening parameters");
        sqlite3_bind_text(st, 4, txt, -1, SQLITE_TRANSIENT);
    }
    int rc = store_step_done(s, st);
    cJSON_free(txt);
    return rc;
}

int store_params_put(store *s, const char *run, const char *stage, const char *params_json) {
    cJSON *p = cJSON_Parse(params_json);
    if (!p) return err_set(ERR_INTERNAL, "stage %s: resolved parameters are not valid JSON", stage);
    sqlite3_stmt *st;
    int rc = store_prepare(s, &st, "INSERT OR REPLACE INTO param(run_id, stage, path, value) VALUES (?, ?, ?, ?)");
    if (!rc) {
        rc = params_flatten(s, st, run, stage, p, "");
        sqlite3_finalize(st);
    }
    cJSON_Delete(p);
    return rc;
}

int store_stage_set_pid(store *s, const char *run, const char *name, int64_t pid) {
    char spid[32];
    snprintf(spid, sizeof spid, "%lld", (long long)pid);
    const char *a[] = {spid, run, name};
    return store_exec_bind(s, "UPDATE stage SET pid = ? WHERE run_id = ? AND name = ?", 3, a);
}
