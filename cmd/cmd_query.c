/* cmd_query.c: `smelt query`: one read-only SQL statement over the store, printed as an
 * aligned table, CSV or JSON. Writes are refused three ways: the connection is query_only,
 * the statement must be read-only (sqlite3_stmt_readonly), and an authorizer denies
 * everything but reading. */
#include <cjson/cJSON.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd/commands.h"
#include "cmd/util.h"
#include "common/error.h"
#include "common/strbuf.h"

static int authorize(void *ud, int action, const char *a, const char *b, const char *c, const char *d) {
    (void)ud, (void)a, (void)b, (void)c, (void)d;
    switch (action) {
    case SQLITE_SELECT:
    case SQLITE_READ:
    case SQLITE_FUNCTION:
    case SQLITE_RECURSIVE: return SQLITE_OK;
    default: return SQLITE_DENY;
    }
}

static void csv_field(FILE *f, const char *s) {
    if (!strpbrk(s, ",\"\n\r")) {
        fputs(s, f);
        return;
    }
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"') fputc('"', f);
        fputc(*s, f);
    }
    fputc('"', f);
}

static char *cell_text(sqlite3_stmt *st, int i) {
    switch (sqlite3_column_type(st, i)) {
    case SQLITE_NULL: return xstrdup("");
    case SQLITE_INTEGER: return xasprintf("%lld", (long long)sqlite3_column_int64(st, i));
    case SQLITE_FLOAT: return xasprintf("%.10g", sqlite3_column_double(st, i));
    default: return xstrdup((const char *)sqlite3_column_text(st, i));
    }
}

int cmd_query(int argc, char **argv) {
    const char *store_flag;
    int csv = 0, json = 0;
    const cli_opt opts[] = {{"csv", 0, 256 + 'c', NULL, &csv}, {"json", 0, 256 + 'j', NULL, &json}, {0}};
    if (cli_args("query", argc, argv, opts, 1, 1, "expected one SQL statement in quotes", &store_flag)) return EXIT_USAGE;
    int fmt = json ? 2 : csv ? 1 : 0; /* 0 table, 1 csv, 2 json */
    const char *sql = argv[optind];
    store *s = NULL;
    if (cli_open_store(&s, store_flag, STORE_NOWRITE)) return cli_fail("query");
    sqlite3 *db = store_db(s);
    sqlite3_stmt *st = NULL;
    const char *tail = NULL;
    int status = EXIT_OK;
    if (sqlite3_prepare_v2(db, sql, -1, &st, &tail) != SQLITE_OK || !st) {
        const char *m = sqlite3_errmsg(db);
        if (strstr(m, "not authorized") || strstr(m, "readonly"))
            err_set(ERR_INPUT, "only reading queries are allowed (%s)", m);
        else
            err_set(ERR_INPUT, "bad SQL: %s; the views are runs, stages, artifacts, metrics, latest_metrics, lineage, "
                    "params", st ? m : (m[0] && strcmp(m, "not an error") ? m : "empty statement"));
        status = cli_fail("query");
        goto out;
    }
    while (tail && (*tail == ' ' || *tail == '\n' || *tail == '\t' || *tail == ';' || *tail == '\r')) tail++;
    if (tail && *tail) {
        err_set(ERR_INPUT, "one statement at a time (found more after the first ';')");
        status = cli_fail("query");
        goto out;
    }
    if (!sqlite3_stmt_readonly(st)) {
        err_set(ERR_INPUT, "the store is read-only through 'smelt query'; only SELECT statements are allowed");
        status = cli_fail("query");
        goto out;
    }
    sqlite3_finalize(st);
    st = NULL;
    /* Prepare again under the authorizer, which also catches functions and pragmas that write. */
    sqlite3_set_authorizer(db, authorize, NULL);
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) {
        err_set(ERR_INPUT, "refused: %s; only reading queries are allowed", sqlite3_errmsg(db));
        status = cli_fail("query");
        goto out;
    }
    int nc = sqlite3_column_count(st), rc;
    table t;
    const char **hdr = calloc((size_t)nc + 1, sizeof *hdr);
    for (int i = 0; i < nc; i++) hdr[i] = sqlite3_column_name(st, i);
    if (fmt == 0) table_init(&t, nc, hdr);
    cJSON *arr = fmt == 2 ? cJSON_CreateArray() : NULL;
    if (fmt == 1) {
        for (int i = 0; i < nc; i++) {
            if (i) fputc(',', stdout);
            csv_field(stdout, hdr[i]);
        }
        fputc('\n', stdout);
    }
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        cJSON *obj = fmt == 2 ? cJSON_CreateObject() : NULL;
        for (int i = 0; i < nc; i++) {
            if (fmt == 2) {
                cJSON *v;
                switch (sqlite3_column_type(st, i)) {
                case SQLITE_NULL: v = cJSON_CreateNull(); break;
                case SQLITE_INTEGER: v = cJSON_CreateNumber((double)sqlite3_column_int64(st, i)); break;
                case SQLITE_FLOAT: v = cJSON_CreateNumber(sqlite3_column_double(st, i)); break;
                default: v = cJSON_CreateString((const char *)sqlite3_column_text(st, i));
                }
                cJSON_AddItemToObject(obj, hdr[i], v);
                continue;
            }
            char *txt = cell_text(st, i);
            if (fmt == 1) {
                if (i) fputc(',', stdout);
                csv_field(stdout, txt ? txt : "");
            } else {
                table_cell(&t, i, "%s", txt ? txt : "");
            }
            free(txt);
        }
        if (fmt == 1) fputc('\n', stdout);
        if (fmt == 2) cJSON_AddItemToArray(arr, obj);
    }
    if (rc != SQLITE_DONE) {
        err_set(ERR_INPUT, "query failed: %s", sqlite3_errmsg(db));
        status = cli_fail("query");
    } else if (fmt == 0) {
        table_print(&t, stdout);
    } else if (fmt == 2) {
        char *out = cJSON_Print(arr);
        if (out) puts(out);
        cJSON_free(out);
    }
    if (fmt == 0) table_free(&t);
    cJSON_Delete(arr);
    free(hdr);
out:
    sqlite3_finalize(st);
    store_close(s);
    return status;
}
