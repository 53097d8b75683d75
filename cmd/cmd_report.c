/* cmd_report.c: `smelt report RUN [--html FILE] [--raw]`: the paper's tables for a run (models
 * with parameters, bytes, AUC and its delta, serving latency and throughput, evaluations,
 * training, pruning, quantization; report_tables.c) within 100 columns, and with --html a
 * self-contained page with the figures (report_html.c). --raw, and a run with none of those
 * stages, prints one row per stage with the latest value of each of its metrics. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd/commands.h"
#include "cmd/report_html.h"
#include "cmd/report_tables.h"
#include "cmd/util.h"
#include "common/error.h"
#include "store/runs.h"

#define REPORT_MAX_KEYS 64
/* Up to this many metric keys the report is one wide table; beyond, one block per stage. */
#define REPORT_TABLE_KEYS 8

/* One block per stage: its status, then "key  value" pairs in columns up to ~100 characters. */
static int report_blocks(store *s, const char *run) {
    sqlite3_stmt *ss = NULL, *ms = NULL;
    if (store_prepare(s, &ss, "SELECT name, status, kind FROM stage WHERE run_id = ? ORDER BY ord")) return -1;
    if (store_prepare(s, &ms, "SELECT key, value FROM metric_latest WHERE run_id = ? AND stage = ? ORDER BY key")) {
        sqlite3_finalize(ss);
        return -1;
    }
    sqlite3_bind_text(ss, 1, run, -1, SQLITE_TRANSIENT);
    int r, rm = 0;
    while ((r = store_step_row(s, ss, "reading the stages of the run")) == 1) {
        const char *name = (const char *)sqlite3_column_text(ss, 0);
        printf("\n%s (%s, %s)\n", name, sqlite3_column_text(ss, 2), sqlite3_column_text(ss, 1));
        sqlite3_reset(ms);
        sqlite3_bind_text(ms, 1, run, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(ms, 2, name, -1, SQLITE_TRANSIENT);
        int col = 0;
        while ((rm = store_step_row(s, ms, "reading the metrics of a stage")) == 1) {
            char cell[160];
            if (sqlite3_column_type(ms, 1) == SQLITE_NULL)
                snprintf(cell, sizeof cell, "%s nan", sqlite3_column_text(ms, 0));
            else
                snprintf(cell, sizeof cell, "%s %.6g", sqlite3_column_text(ms, 0), sqlite3_column_double(ms, 1));
            int w = (int)strlen(cell) < 32 ? 32 : (int)strlen(cell) + 2;
            if (col && col + w > 100) {
                putchar('\n');
                col = 0;
            }
            printf("%s%-*s", col ? "" : "  ", w, cell);
            col += w;
        }
        if (col) putchar('\n');
        if (rm < 0) break;
    }
    sqlite3_finalize(ss);
    sqlite3_finalize(ms);
    return r < 0 || rm < 0 ? -1 : 0;
}

/* The raw view: a table of stages by metric keys (or one block per stage when there are many). */
static int report_raw(store *s, const char *run, const run_row *rr) {
    int status = 0;
    /* Metric keys in the order stages first report them. */
    char *keys[REPORT_MAX_KEYS];
    int nk = 0;
    sqlite3_stmt *st;
    if (store_prepare(s, &st, "SELECT m.key FROM metric_latest m JOIN stage s ON s.run_id = m.run_id AND s.name = "
                              "m.stage WHERE m.run_id = ? GROUP BY m.key ORDER BY min(s.ord), m.key")) {
        status = cli_fail("report");
        goto out;
    }
    sqlite3_bind_text(st, 1, run, -1, SQLITE_TRANSIENT);
    int more = 0, r;
    while ((r = store_step_row(s, st, "reading the metric keys of the run")) == 1) {
        if (nk < REPORT_MAX_KEYS) keys[nk++] = xstrdup((const char *)sqlite3_column_text(st, 0));
        else more++;
    }
    sqlite3_finalize(st);
    if (r < 0) {
        status = cli_fail("report");
        goto out;
    }
    printf("run %s (%s): %s\n", rr->id, rr->name, rr->status);
    if (nk > REPORT_TABLE_KEYS) {
        if (report_blocks(s, run)) status = cli_fail("report");
        goto out;
    }
    const char **hdr = calloc((size_t)nk + 3, sizeof *hdr);
    hdr[0] = "STAGE";
    hdr[1] = "STATUS";
    for (int i = 0; i < nk; i++) hdr[i + 2] = keys[i];
    table t;
    table_init(&t, nk + 2, hdr);
    sqlite3_stmt *ss = NULL, *ms = NULL;
    if (store_prepare(s, &ss, "SELECT name, status FROM stage WHERE run_id = ? ORDER BY ord") ||
        store_prepare(s, &ms, "SELECT value FROM metric_latest WHERE run_id = ? AND stage = ? AND key = ?")) {
        status = cli_fail("report");
        sqlite3_finalize(ss);
        free(hdr);
        table_free(&t);
        goto out;
    }
    sqlite3_bind_text(ss, 1, run, -1, SQLITE_TRANSIENT);
    int rm = 0;
    while (rm >= 0 && (r = store_step_row(s, ss, "reading the stages of the run")) == 1) {
        const char *name = (const char *)sqlite3_column_text(ss, 0);
        table_cell(&t, 0, "%s", name);
        table_cell(&t, 1, "%s", sqlite3_column_text(ss, 1));
        for (int k = 0; k < nk; k++) {
            sqlite3_reset(ms);
            sqlite3_bind_text(ms, 1, run, -1, SQLITE_TRANSIENT);
            sqlite3_bind_text(ms, 2, name, -1, SQLITE_TRANSIENT);
            sqlite3_bind_text(ms, 3, keys[k], -1, SQLITE_TRANSIENT);
            rm = store_step_row(s, ms, "reading a metric of a stage");
            if (rm == 1) {
                if (sqlite3_column_type(ms, 0) == SQLITE_NULL) table_cell(&t, k + 2, "nan");
                else table_cell(&t, k + 2, "%.6g", sqlite3_column_double(ms, 0));
            } else {
                table_cell(&t, k + 2, "-");
            }
        }
    }
    sqlite3_finalize(ss);
    sqlite3_finalize(ms);
    if (r < 0 || rm < 0) status = cli_fail("report");
    else table_print(&t, stdout);
    if (more) printf("(%d more metric keys not shown; use smelt query on latest_metrics)\n", more);
    table_free(&t);
    free(hdr);
out:
    for (int i = 0; i < nk; i++) free(keys[i]);
    return status;
}

static int report_run(store *s, const char *run, const run_row *rr, const char *html) {
    rrun r;
    rmodel *ms = NULL;
    rsection *sec = NULL;
    int nm = 0, ns = 0;
    if (rrun_load(&r, s, run)) return cli_fail("report");
    int status = 0;
    if (report_models(&ms, &nm, &r, s) || report_sections(&sec, &ns, &r, ms, nm, s)) {
        status = cli_fail("report");
        goto out;
    }
    char line[512];
    report_run_line(line, sizeof line, &r);
    if (ns == 0 && !html) { /* nothing the paper's tables show: the metrics as they are */
        status = report_raw(s, run, rr);
        goto out;
    }
    printf("%s\n", line);
    int failed = 0;
    for (int i = 0; i < r.n_st; i++)
        if (!strcmp(r.st[i].status, "failed")) printf("  failed: %s\n", r.st[i].name), failed++;
    if (failed) printf("  ('smelt status %s' shows each failed stage's error and log)\n", r.id);
    report_sections_print(sec, ns, stdout);
    if (html) {
        if (report_html_write(html, &r, ms, nm, sec, ns, s)) status = cli_fail("report");
        else printf("\nwrote %s\n", html);
    }
out:
    report_sections_free(sec, ns);
    free(ms);
    rrun_free(&r);
    return status;
}

int cmd_report(int argc, char **argv) {
    const char *store_flag, *html = NULL;
    int raw = 0;
    const cli_opt opts[] = {{"html", 1, 'H', &html, NULL}, {"raw", 0, 'R', NULL, &raw}, {0}};
    if (cli_args("report", argc, argv, opts, 0, 1, "expected at most one run id", &store_flag)) return EXIT_USAGE;
    if (raw && html) return cli_usage_error("report", "--raw and --html do not go together: the page shows the tables");
    if (html && cli_check_out_path("--html", html)) return cli_fail("report");
    store *s = NULL;
    char run[RUN_ID_MAX];
    run_row rr = {0};
    int status = cli_open_run("report", store_flag, STORE_NOWRITE, optind < argc ? argv[optind] : NULL, &s, run, &rr);
    if (status) return status;
    status = raw ? report_raw(s, run, &rr) : report_run(s, run, &rr, html);
    run_row_free(&rr);
    store_close(s);
    return status;
}
