/* fuzz_import.c: libFuzzer target for `smelt import` reading an archive's manifest
 * (smelt-export.json, the rows of every table of a run): the input becomes that entry of a tar
 * with no objects, imported into a scratch store. Any bytes must give an imported run or a clean
 * error (bad input or a damaged archive), never a crash, a leak or undefined behaviour; numbers
 * far outside int64 (1e300, 1e999) included. A run that imports is deleted again, so that the
 * next input starts from the same store. */
#include <archive.h>
#include <archive_entry.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/error.h"
#include "common/fsutil.h"
#include "store/archive.h"
#include "store/store.h"

static store *st;
static char dir[64], tar_path[96];

static void cleanup(void) {
    store_close(st);
    fs_rm_rf(dir);
}

/* The tables a run's rows live in (store/archive.c exports these). */
static const char *const run_tables[][2] = {{"run", "id"},       {"stage", "run_id"},  {"edge", "run_id"},
                                            {"attempt", "run_id"}, {"output", "run_id"}, {"input", "run_id"},
                                            {"param", "run_id"}, {"metric", "run_id"}, {"metric_latest", "run_id"}};

static void forget_run(const char *run) {
    for (size_t i = 0; i < sizeof run_tables / sizeof *run_tables; i++) {
        char sql[128];
        snprintf(sql, sizeof sql, "DELETE FROM %s WHERE %s = ?", run_tables[i][0], run_tables[i][1]);
        sqlite3_stmt *q;
        if (store_prepare(st, &q, sql)) abort();
        sqlite3_bind_text(q, 1, run, -1, SQLITE_TRANSIENT);
        if (store_step_done(st, q)) abort();
        sqlite3_finalize(q);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!st) {
        snprintf(dir, sizeof dir, "/tmp/fuzz-import-%ld", (long)getpid());
        snprintf(tar_path, sizeof tar_path, "%s/in.tar", dir);
        if (store_open(&st, dir, STORE_CREATE)) {
            fprintf(stderr, "%s\n", err_msg());
            abort();
        }
        atexit(cleanup);
    }
    struct archive *a = archive_write_new();
    struct archive_entry *e = archive_entry_new();
    archive_write_set_format_pax_restricted(a);
    archive_write_add_filter_none(a);
    archive_entry_set_pathname(e, "smelt-export.json");
    archive_entry_set_size(e, (la_int64_t)size);
    archive_entry_set_filetype(e, AE_IFREG);
    archive_entry_set_perm(e, 0644);
    if (archive_write_open_filename(a, tar_path) != ARCHIVE_OK || archive_write_header(a, e) != ARCHIVE_OK ||
        (size && archive_write_data(a, data, size) != (la_ssize_t)size) || archive_write_close(a) != ARCHIVE_OK)
        abort();
    archive_entry_free(e);
    archive_write_free(a);
    char run[RUN_ID_MAX];
    int n = 0;
    if (store_import(st, tar_path, run, &n) == 0) {
        forget_run(run);
    } else if (err_kind_get() != ERR_INPUT && err_kind_get() != ERR_CORRUPT && err_kind_get() != ERR_NOMEM) {
        fprintf(stderr, "unexpected error kind %d: %s\n", err_kind_get(), err_msg());
        abort();
    }
    err_clear();
    return 0;
}
