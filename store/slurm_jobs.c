/* slurm_jobs.c: Slurm bookkeeping in the store (tables slurm_run and slurm_job, migration 2).
 * Each change is one statement, hence atomic; the submitter and the jobs' processes on other
 * nodes write concurrently and never depend on each other's order (upserts both ways). */
#include "store/slurm_jobs.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"

#define NOW_SQL "(julianday('now') * 86400 - 210866760000)"
#define NEXT_SUBMISSION_SQL "(SELECT coalesce(max(submission), 0) + 1 FROM slurm_job WHERE run_id = ?1 AND stage = ?2)"

static int bind_exec(store *s, const char *sql, int n, const char *const *args) {
    sqlite3_stmt *st;
    if (store_prepare(s, &st, sql)) return -1;
    for (int i = 0; i < n; i++) {
        if (args[i]) sqlite3_bind_text(st, i + 1, args[i], -1, SQLITE_TRANSIENT);
        else sqlite3_bind_null(st, i + 1);
    }
    int rc = store_step_done(s, st);
    sqlite3_finalize(st);
    return rc;
}

static void text_col(sqlite3_stmt *st, int i, char *dst, size_t cap) {
    const unsigned char *t = sqlite3_column_text(st, i);
    snprintf(dst, cap, "%s", t ? (const char *)t : "");
}

int store_slurm_run_put(store *s, const char *run, const char *options_json, const char *query) {
    const char *a[] = {run, options_json, query};
    return bind_exec(s, "INSERT INTO slurm_run(run_id, options, query, submitted_at) VALUES (?, ?, ?, " NOW_SQL ") "
                        "ON CONFLICT(run_id) DO UPDATE SET options = excluded.options, query = excluded.query, "
                        "resumed_at = " NOW_SQL, 3, a);
}

int store_slurm_run_get(store *s, const char *run, slurm_run_row *r) {
    memset(r, 0, sizeof *r);
    sqlite3_stmt *st;
    if (store_prepare(s, &st, "SELECT run_id, options, query, submitted_at, resumed_at FROM slurm_run WHERE run_id = ?"))
        return -1;
    sqlite3_bind_text(st, 1, run, -1, SQLITE_TRANSIENT);
    int rc = sqlite3_step(st), found = 0;
    if (rc == SQLITE_ROW) {
        text_col(st, 0, r->run_id, sizeof r->run_id);
        r->options = xstrdup((const char *)sqlite3_column_text(st, 1));
        text_col(st, 2, r->query, sizeof r->query);
        r->submitted_at = sqlite3_column_double(st, 3);
        r->resumed_at = sqlite3_column_double(st, 4);
        found = r->options ? 1 : -1;
    } else if (rc != SQLITE_DONE) {
        found = store_err(s, "reading the Slurm record of a run");
    }
    sqlite3_finalize(st);
    return found;
}

void slurm_run_row_free(slurm_run_row *r) {
    free(r->options);
    r->options = NULL;
}

int store_slurm_job_add(store *s, const char *run, const char *stage, const char *job_id, const char *dependency,
                        const char *script_path) {
    const char *a[] = {run, stage, job_id, dependency ? dependency : "", script_path};
    /* The job may have registered itself already (it can start before this row is written). */
    return bind_exec(s, "INSERT INTO slurm_job(run_id, stage, job_id, submission, submitted_at, dependency, "
                        "script_path) VALUES (?1, ?2, ?3, " NEXT_SUBMISSION_SQL ", " NOW_SQL ", ?4, ?5) "
                        "ON CONFLICT(run_id, stage, job_id) DO UPDATE SET dependency = excluded.dependency, "
                        "script_path = excluded.script_path", 5, a);
}

int store_slurm_job_started(store *s, const char *run, const char *stage, const char *job_id, const char *node) {
    const char *a[] = {run, stage, job_id, node};
    return bind_exec(s, "INSERT INTO slurm_job(run_id, stage, job_id, submission, submitted_at, state, started_at, "
                        "node) VALUES (?1, ?2, ?3, " NEXT_SUBMISSION_SQL ", " NOW_SQL ", 'started', " NOW_SQL ", ?4) "
                        "ON CONFLICT(run_id, stage, job_id) DO UPDATE SET state = 'started', started_at = " NOW_SQL
                        ", finished_at = NULL, node = excluded.node", 4, a);
}

int store_slurm_job_finish(store *s, const char *run, const char *stage, const char *job_id, const char *state) {
    const char *a[] = {state, run, stage, job_id};
    return bind_exec(s, "UPDATE slurm_job SET state = ?, finished_at = " NOW_SQL " WHERE run_id = ? AND stage = ? AND "
                        "job_id = ?", 4, a);
}

int store_run_complete_if_done(store *s, const char *run, int *completed) {
    const char *a[] = {run};
    *completed = 0;
    if (bind_exec(s, "UPDATE run SET status = 'ok', error = NULL, finished_at = " NOW_SQL " WHERE id = ?1 AND "
                     "status != 'ok' AND NOT EXISTS (SELECT 1 FROM stage WHERE run_id = ?1 AND status NOT IN ('ok', "
                     "'cached'))", 1, a))
        return -1;
    *completed = sqlite3_changes(store_db(s)) > 0;
    return 0;
}

int store_run_set_status_if(store *s, const char *run, const char *from, const char *status, const char *error) {
    const char *a[] = {status, error, run, from};
    return bind_exec(s, "UPDATE run SET status = ?, error = ?, finished_at = " NOW_SQL " WHERE id = ? AND status = ?",
                     4, a);
}

int store_slurm_jobs_current(store *s, const char *run, slurm_job_row **rows, int *n) {
    *rows = NULL;
    *n = 0;
    sqlite3_stmt *st;
    if (store_prepare(s, &st, "SELECT j.stage, j.job_id, j.submission, j.state, j.node, j.submitted_at, j.started_at, "
                              "j.finished_at, j.dependency, j.script_path FROM slurm_job j "
                              "LEFT JOIN stage g ON g.run_id = j.run_id AND g.name = j.stage WHERE j.run_id = ?1 AND "
                              "j.submission = (SELECT max(submission) FROM slurm_job k WHERE k.run_id = ?1 AND "
                              "k.stage = j.stage) ORDER BY g.ord, j.stage"))
        return -1;
    sqlite3_bind_text(st, 1, run, -1, SQLITE_TRANSIENT);
    int rc, cap = 0;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (*n == cap) {
            cap = cap ? 2 * cap : 16;
            slurm_job_row *nr = xrealloc(*rows, (size_t)cap * sizeof *nr);
            if (!nr) {
                sqlite3_finalize(st);
                slurm_job_rows_free(*rows, *n);
                *rows = NULL;
                *n = 0;
                return -1;
            }
            *rows = nr;
        }
        slurm_job_row *r = &(*rows)[(*n)++];
        memset(r, 0, sizeof *r);
        text_col(st, 0, r->stage, sizeof r->stage);
        text_col(st, 1, r->job_id, sizeof r->job_id);
        r->submission = sqlite3_column_int(st, 2);
        text_col(st, 3, r->state, sizeof r->state);
        text_col(st, 4, r->node, sizeof r->node);
        r->submitted_at = sqlite3_column_double(st, 5);
        r->started_at = sqlite3_column_double(st, 6);
        r->finished_at = sqlite3_column_double(st, 7);
        const unsigned char *d = sqlite3_column_text(st, 8), *p = sqlite3_column_text(st, 9);
        r->dependency = xstrdup(d ? (const char *)d : "");
        r->script_path = p ? xstrdup((const char *)p) : NULL;
        if (!r->dependency || (p && !r->script_path)) {
            sqlite3_finalize(st);
            slurm_job_rows_free(*rows, *n);
            *rows = NULL;
            *n = 0;
            return -1;
        }
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE) {
        slurm_job_rows_free(*rows, *n);
        *rows = NULL;
        *n = 0;
        return store_err(s, "reading the Slurm jobs of a run");
    }
    return 0;
}

void slurm_job_rows_free(slurm_job_row *rows, int n) {
    for (int i = 0; rows && i < n; i++) {
        free(rows[i].dependency);
        free(rows[i].script_path);
    }
    free(rows);
}
