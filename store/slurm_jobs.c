/* slurm_jobs.c: Slurm bookkeeping in the store (tables slurm_run and slurm_job, migration 2).
 * Each change is one statement, hence atomic; the submitter and the jobs' processes on other
 * nodes write concurrently and never depend on each other's order (upserts both ways). */
#include "store/slurm_jobs.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "store/internal.h"

#define NEXT_SUBMISSION_SQL "(SELECT coalesce(max(submission), 0) + 1 FROM slurm_job WHERE run_id = ?1 AND stage = ?2)"

static void text_col(sqlite3_stmt *st, int i, char *dst, size_t cap) {
    const unsigned char *t = sqlite3_column_text(st, i);
    snprintf(dst, cap, "%s", t ? (const char *)t : "");
}

int store_slurm_run_put(store *s, const char *run, const char *options_json, const char *query) {
    const char *a[] = {run, options_json, query};
    return store_exec_bind(s, "INSERT INTO slurm_run(run_id, options, query, submitted_at) VALUES (?, ?, ?, " STORE_NOW_SQL ") "
                        "ON CONFLICT(run_id) DO UPDATE SET options = excluded.options, query = excluded.query, "
                        "cancelled_at = NULL, resumed_at = " STORE_NOW_SQL, 3, a);
}

int store_slurm_run_get(store *s, const char *run, slurm_run_row *r) {
    memset(r, 0, sizeof *r);
    sqlite3_stmt *st;
    if (store_prepare(s, &st, "SELECT run_id, options, query, submitted_at, resumed_at, cancelled_at FROM slurm_run "
                              "WHERE run_id = ?"))
        return -1;
    sqlite3_bind_text(st, 1, run, -1, SQLITE_TRANSIENT);
    int rc = store_step_row(s, st, "reading the Slurm record of a run"), found = 0;
    if (rc == 1) {
        text_col(st, 0, r->run_id, sizeof r->run_id);
        r->options = xstrdup((const char *)sqlite3_column_text(st, 1));
        text_col(st, 2, r->query, sizeof r->query);
        r->submitted_at = sqlite3_column_double(st, 3);
        r->resumed_at = sqlite3_column_double(st, 4);
        r->cancelled_at = sqlite3_column_double(st, 5);
        found = r->options ? 1 : -1;
    } else if (rc < 0) {
        found = -1;
    }
    sqlite3_finalize(st);
    return found;
}

void slurm_run_row_free(slurm_run_row *r) {
    free(r->options);
    r->options = NULL;
}

int store_slurm_run_cancel(store *s, const char *run, const char *why) {
    const char *a[] = {run}, *b[] = {why, run};
    if (store_begin(s)) return -1;
    if (store_exec_bind(s, "UPDATE slurm_run SET cancelled_at = " STORE_NOW_SQL " WHERE run_id = ?", 1, a) ||
        store_exec_bind(s, "UPDATE run SET status = 'interrupted', error = ?, finished_at = " STORE_NOW_SQL
                           " WHERE id = ? AND status = 'running'", 2, b)) {
        store_rollback(s);
        return -1;
    }
    return store_commit(s);
}

int store_slurm_run_cancelled(store *s, const char *run, int *cancelled) {
    sqlite3_stmt *st;
    *cancelled = 0;
    if (store_prepare(s, &st, "SELECT cancelled_at IS NOT NULL FROM slurm_run WHERE run_id = ?")) return -1;
    sqlite3_bind_text(st, 1, run, -1, SQLITE_TRANSIENT);
    int rc = store_step_row(s, st, "reading whether the run was cancelled");
    if (rc == 1) *cancelled = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    return rc < 0 ? -1 : 0;
}

int store_slurm_job_add(store *s, const char *run, const char *stage, const char *job_id, const char *dependency,
                        const char *script_path) {
    const char *a[] = {run, stage, job_id, dependency ? dependency : "", script_path};
    /* The job may have registered itself already (it can start before this row is written). */
    return store_exec_bind(s, "INSERT INTO slurm_job(run_id, stage, job_id, submission, submitted_at, dependency, "
                        "script_path) VALUES (?1, ?2, ?3, " NEXT_SUBMISSION_SQL ", " STORE_NOW_SQL ", ?4, ?5) "
                        "ON CONFLICT(run_id, stage, job_id) DO UPDATE SET dependency = excluded.dependency, "
                        "script_path = excluded.script_path", 5, a);
}

int store_slurm_job_started(store *s, const char *run, const char *stage, const char *job_id, const char *node) {
    const char *a[] = {run, stage, job_id, node};
    return store_exec_bind(s, "INSERT INTO slurm_job(run_id, stage, job_id, submission, submitted_at, state, started_at, "
                        "node) VALUES (?1, ?2, ?3, " NEXT_SUBMISSION_SQL ", " STORE_NOW_SQL ", 'started', " STORE_NOW_SQL ", ?4) "
                        "ON CONFLICT(run_id, stage, job_id) DO UPDATE SET state = 'started', started_at = " STORE_NOW_SQL
                        ", finished_at = NULL, node = excluded.node", 4, a);
}

int store_slurm_job_finish(store *s, const char *run, const char *stage, const char *job_id, const char *state) {
    const char *a[] = {state, run, stage, job_id};
    return store_exec_bind(s, "UPDATE slurm_job SET state = ?, finished_at = " STORE_NOW_SQL " WHERE run_id = ? AND stage = ? AND "
                        "job_id = ?", 4, a);
}

int store_slurm_job_ended(store *s, const char *run, const char *job_id, const char *never_ran, int *changed) {
    const char *a[] = {never_ran, run, job_id};
    *changed = 0;
    if (store_exec_bind(s, "UPDATE slurm_job SET state = CASE state WHEN 'submitted' THEN ?1 ELSE 'lost' END, "
                           "finished_at = " STORE_NOW_SQL " WHERE run_id = ?2 AND job_id = ?3 AND (state = 'submitted' "
                           "OR (state = 'started' AND finished_at IS NULL))", 3, a))
        return -1;
    *changed = sqlite3_changes(store_db(s)) > 0;
    return 0;
}

int store_slurm_jobs_cancelled(store *s, const char *run) {
    const char *a[] = {run};
    return store_exec_bind(s, "UPDATE slurm_job SET state = 'cancelled', finished_at = " STORE_NOW_SQL
                              " WHERE run_id = ? AND state = 'submitted'", 1, a);
}

int store_run_complete_if_done(store *s, const char *run, int *completed) {
    const char *a[] = {run};
    *completed = 0;
    if (store_exec_bind(s, "UPDATE run SET status = 'ok', error = NULL, finished_at = " STORE_NOW_SQL " WHERE id = ?1 AND "
                     "status != 'ok' AND NOT EXISTS (SELECT 1 FROM stage WHERE run_id = ?1 AND status NOT IN ('ok', "
                     "'cached'))", 1, a))
        return -1;
    *completed = sqlite3_changes(store_db(s)) > 0;
    return 0;
}

int store_run_set_status_if(store *s, const char *run, const char *from, const char *status, const char *error) {
    const char *a[] = {status, error, run, from};
    return store_exec_bind(s, "UPDATE run SET status = ?, error = ?, finished_at = " STORE_NOW_SQL " WHERE id = ? AND status = ?",
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
    while ((rc = store_step_row(s, st, "reading the Slurm jobs of a run")) == 1) {
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
    if (rc < 0) {
        slurm_job_rows_free(*rows, *n);
        *rows = NULL;
        *n = 0;
        return -1;
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
