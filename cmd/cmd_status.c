/* cmd_status.c: `smelt status` (the stages of one run) and `smelt runs` (all runs). */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd/commands.h"
#include "cmd/util.h"
#include "common/error.h"
#include "common/log.h"
#include "pipeline/runner.h"
#include "store/slurm_jobs.h"
#include "store/runs.h"

int cmd_status(int argc, char **argv) {
    const char *store_flag;
    if (cli_args("status", argc, argv, NULL, 0, 1, "expected at most one run id", &store_flag)) return EXIT_USAGE;
    store *s = NULL;
    char run[RUN_ID_MAX];
    run_row rr = {0};
    int st_open = cli_open_run("status", store_flag, STORE_NOWRITE, optind < argc ? argv[optind] : NULL, &s, run, &rr);
    if (st_open) return st_open;
    char created[32];
    time_iso8601(created, rr.created_at);
    slurm_run_row sr = {0};
    int on_slurm = store_slurm_run_get(s, run, &sr);
    if (on_slurm < 0) {
        run_row_free(&rr);
        store_close(s);
        return cli_fail("status");
    }
    /* A Slurm run has no driving process once submitted: its jobs run on their own. */
    int orphan = !on_slurm && !strcmp(rr.status, "running") && runner_alive(&rr) == 0;
    printf("run %s (%s): %s%s%s, started %s", rr.id, rr.name, rr.status, on_slurm ? " on Slurm" : "",
           orphan ? " (but its runner process is gone: continue with 'smelt resume')" : "", created);
    if (rr.finished_at > 0) printf(", %.2fs", rr.finished_at - rr.created_at);
    printf("\nrecipe %s\n", rr.recipe_path ? rr.recipe_path : "(text only)");
    /* An interrupted run was stopped (Ctrl-C, 'smelt cancel'): not an error. */
    if (rr.error) printf("%s: %s\n", !strcmp(rr.status, "interrupted") ? "interrupted" : "error", rr.error);
    sqlite3_stmt *st;
    int status = EXIT_OK;
    if (on_slurm) {
        status = cli_slurm_status(s, &rr, &sr);
        slurm_run_row_free(&sr);
        goto out;
    }
    if (store_prepare(s, &st, "SELECT name, kind, status, attempts, started_at, finished_at, cached_from, log_path, "
                              "error, ranks FROM stage WHERE run_id = ? ORDER BY ord")) {
        status = cli_fail("status");
        goto out;
    }
    sqlite3_bind_text(st, 1, run, -1, SQLITE_TRANSIENT);
    table t;
    static const char *const hdr[] = {"STAGE", "KIND", "STATUS", "ATTEMPTS", "TIME", "DETAIL"};
    table_init(&t, 6, hdr);
    int r;
    while ((r = store_step_row(s, st, "reading the stages of the run")) == 1) {
        const char *stt = (const char *)sqlite3_column_text(st, 2);
        char secs[32] = "-";
        if (sqlite3_column_type(st, 5) != SQLITE_NULL && sqlite3_column_type(st, 4) != SQLITE_NULL &&
            strcmp(stt, "cached"))
            fmt_seconds(secs, sizeof secs, sqlite3_column_double(st, 5) - sqlite3_column_double(st, 4));
        const char *from = (const char *)sqlite3_column_text(st, 6);
        const char *log = (const char *)sqlite3_column_text(st, 7);
        const char *err = (const char *)sqlite3_column_text(st, 8);
        int ranks = sqlite3_column_int(st, 9);
        table_cell(&t, 0, "%s", sqlite3_column_text(st, 0));
        table_cell(&t, 1, "%s%s", sqlite3_column_text(st, 1), ranks > 1 ? " (mpi)" : "");
        table_cell(&t, 2, "%s", stt);
        table_cell(&t, 3, "%d", sqlite3_column_int(st, 3));
        table_cell(&t, 4, "%s", secs);
        if (!strcmp(stt, "cached") && from) table_cell(&t, 5, "from run %s", from);
        else if (!strcmp(stt, "failed")) table_cell(&t, 5, "%s", err ? err : (log ? log : ""));
        else if (!strcmp(stt, "skipped") && err) table_cell(&t, 5, "%s", err);
        else if (log && (!strcmp(stt, "running") || !strcmp(stt, "ok"))) table_cell(&t, 5, "log %s", log);
        else table_cell(&t, 5, "%s", "");
    }
    sqlite3_finalize(st);
    if (r < 0) status = cli_fail("status");
    else table_print(&t, stdout);
    table_free(&t);
out:
    run_row_free(&rr);
    store_close(s);
    return status;
}

int cmd_runs(int argc, char **argv) {
    const char *store_flag, *limit_arg = NULL;
    const cli_opt opts[] = {{"limit", 1, 'l', &limit_arg, NULL}, {0}};
    if (cli_args("runs", argc, argv, opts, 0, 0, "takes no arguments", &store_flag)) return EXIT_USAGE;
    int limit = limit_arg ? atoi(limit_arg) : 50;
    store *s = NULL;
    if (cli_open_store(&s, store_flag, STORE_NOWRITE)) return cli_fail("runs");
    sqlite3_stmt *st;
    if (store_prepare(s, &st, "SELECT r.id, r.name, r.status, r.created_at, r.finished_at - r.created_at, "
                              "(SELECT count(*) FROM stage WHERE run_id = r.id), "
                              "(SELECT count(*) FROM stage WHERE run_id = r.id AND status = 'ok'), "
                              "(SELECT count(*) FROM stage WHERE run_id = r.id AND status = 'cached'), "
                              "(SELECT count(*) FROM stage WHERE run_id = r.id AND status = 'failed') "
                              "FROM run r ORDER BY r.created_at DESC, r.id DESC LIMIT ?")) {
        store_close(s);
        return cli_fail("runs");
    }
    sqlite3_bind_int(st, 1, limit > 0 ? limit : 50);
    table t;
    static const char *const hdr[] = {"RUN", "NAME", "STATUS", "CREATED", "TIME", "STAGES"};
    table_init(&t, 6, hdr);
    int r;
    while ((r = store_step_row(s, st, "listing the runs")) == 1) {
        char created[32], secs[32] = "-";
        time_iso8601(created, sqlite3_column_double(st, 3));
        if (sqlite3_column_type(st, 4) != SQLITE_NULL) fmt_seconds(secs, sizeof secs, sqlite3_column_double(st, 4));
        table_cell(&t, 0, "%s", sqlite3_column_text(st, 0));
        table_cell(&t, 1, "%s", sqlite3_column_text(st, 1));
        table_cell(&t, 2, "%s", sqlite3_column_text(st, 2));
        table_cell(&t, 3, "%s", created);
        table_cell(&t, 4, "%s", secs);
        int failed = sqlite3_column_int(st, 8);
        table_cell(&t, 5, "%d ok, %d cached%s%.0d%s of %d", sqlite3_column_int(st, 6), sqlite3_column_int(st, 7),
                   failed ? ", " : "", failed, failed ? " failed" : "", sqlite3_column_int(st, 5));
    }
    sqlite3_finalize(st);
    if (r < 0) {
        table_free(&t);
        store_close(s);
        return cli_fail("runs");
    }
    if (t.n_rows == 1) printf("no runs yet in %s\n", store_dir(s));
    else table_print(&t, stdout);
    table_free(&t);
    store_close(s);
    return EXIT_OK;
}
