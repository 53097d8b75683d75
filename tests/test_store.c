/* test_store.c: the store's objects (files, manifests, materialization, corruption), metrics
 * and their latest values, run-id resolution, and read-only opening. */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/error.h"
#include "common/fsutil.h"
#include "common/sha256.h"
#include "store/runs.h"
#include "store/schema.h"
#include "store/store.h"
#include "tests/check.h"

static char root[256];

static void write_text(const char *dir, const char *rel, const char *text) {
    char *p = fs_join(dir, rel), *slash = strrchr(p, '/');
    *slash = 0;
    fs_mkdir_p(p, 0755);
    *slash = '/';
    fs_write_atomic(p, text, strlen(text));
    free(p);
}

static char *read_text(const char *dir, const char *rel) {
    char *p = fs_join(dir, rel), *t = NULL;
    size_t n;
    if (fs_read_file(p, 0, &t, &n)) t = NULL;
    free(p);
    return t;
}

static void test_objects(store *s) {
    char src[300], dst[300], digest[65], digest2[65];
    snprintf(src, sizeof src, "%s/src", root);
    write_text(src, "a.txt", "alpha\n");
    write_text(src, "sub/dir/b.bin", "beta");
    write_text(src, "z.sh", "#!/bin/sh\n");
    char *zp = fs_join(src, "z.sh");
    chmod(zp, 0755);
    free(zp);
    uint64_t bytes = 0;
    CHECK_OK(store_put_dir(s, src, 0, digest, &bytes));
    CHECK_INT(bytes, 6 + 4 + 10);
    /* The same content gives the same digest (content addressing), a change a new one. */
    CHECK_OK(store_put_dir(s, src, 0, digest2, NULL));
    CHECK_STR(digest, digest2);
    manifest m;
    CHECK_OK(store_manifest_read(s, digest, &m));
    CHECK_INT(m.n_files, 3);
    CHECK_STR(m.files[0].path, "a.txt");
    CHECK_STR(m.files[1].path, "sub/dir/b.bin");
    CHECK_INT(m.files[2].exec, 1);
    char want[65];
    sha256_hex(want, "beta", 4);
    CHECK_STR(m.files[1].digest, want);
    manifest_free(&m);
    CHECK(store_object_is_manifest(s, digest));
    CHECK(!store_object_is_manifest(s, want));
    snprintf(dst, sizeof dst, "%s/out", root);
    CHECK_OK(store_materialize(s, digest, dst, 0));
    char *t = read_text(dst, "sub/dir/b.bin");
    CHECK_STR(t, "beta");
    free(t);
    char *path = NULL;
    CHECK_OK(store_artifact_file(s, digest, "a.txt", &path));
    CHECK(path && strstr(path, "/objects/") != NULL);
    free(path);
    CHECK(store_artifact_file(s, digest, "missing.txt", &path) != 0);
    /* Corrupt the object of b.bin: every reader names it. */
    char *obj = store_object_path(s, want);
    chmod(obj, 0644);
    fs_write_atomic(obj, "BETA", 4);
    CHECK(store_object_verify(s, want) != 0);
    CHECK_INT(err_kind_get(), ERR_CORRUPT);
    CHECK(strstr(err_msg(), want) != NULL);
    snprintf(dst, sizeof dst, "%s/out2", root);
    CHECK(store_materialize(s, digest, dst, 0) != 0);
    CHECK(strstr(err_msg(), "digest mismatch") && strstr(err_msg(), "sub/dir/b.bin"));
    /* A corrupt manifest is caught too. */
    char *mobj = store_object_path(s, digest);
    chmod(mobj, 0644);
    fs_write_atomic(mobj, "{\"files\":[]}", 12);
    CHECK(store_manifest_read(s, digest, &m) != 0);
    CHECK(strstr(err_msg(), "digest mismatch") != NULL);
    free(obj);
    free(mobj);
}

static void test_metrics_and_runs(store *s) {
    char a[RUN_ID_MAX] = "20260101-000000-aaaa", b[RUN_ID_MAX] = "20260101-000001-aabb", got[RUN_ID_MAX];
    CHECK_OK(store_run_create(s, a, "one", NULL, "smelt: 1\n", "[]", 1));
    CHECK_OK(store_run_create(s, b, "two", NULL, "smelt: 1\n", "[]", 1));
    CHECK_OK(store_run_resolve(s, "20260101-000000", got));
    CHECK_STR(got, a);
    CHECK(store_run_resolve(s, "20260101-00000", got) != 0);
    CHECK(strstr(err_msg(), "ambiguous") != NULL);
    CHECK(store_run_resolve(s, "nope", got) != 0);
    CHECK_OK(store_run_resolve(s, "latest", got));
    CHECK_STR(got, b);
    metric_point p[] = {{"loss", 10, 2.0}, {"loss", 20, 1.0}, {"loss", 5, 3.0}, {"auc", 0, 0.75}};
    CHECK_OK(store_metrics_put(s, a, "train", p, 4));
    sqlite3_stmt *st;
    CHECK_OK(store_prepare(s, &st, "SELECT step, value FROM latest_metrics WHERE run_id = ? AND key = 'loss'"));
    sqlite3_bind_text(st, 1, a, -1, SQLITE_STATIC);
    CHECK_INT(sqlite3_step(st), SQLITE_ROW);
    CHECK_INT(sqlite3_column_int(st, 0), 20); /* the latest step, not the last written */
    CHECK(sqlite3_column_double(st, 1) == 1.0);
    sqlite3_finalize(st);
    /* Re-logging a step replaces it (a resumed attempt repeats steps deterministically). */
    metric_point q[] = {{"loss", 20, 0.5}};
    CHECK_OK(store_metrics_put(s, a, "train", q, 1));
    CHECK_OK(store_prepare(s, &st, "SELECT count(*), max(value) FROM metrics WHERE key = 'loss' AND step = 20"));
    CHECK_INT(sqlite3_step(st), SQLITE_ROW);
    CHECK_INT(sqlite3_column_int(st, 0), 1);
    CHECK(sqlite3_column_double(st, 1) == 0.5);
    sqlite3_finalize(st);
}

static void test_schema(store *s) {
    sqlite3_stmt *st;
    CHECK_OK(store_prepare(s, &st, "PRAGMA user_version"));
    CHECK_INT(sqlite3_step(st), SQLITE_ROW);
    CHECK_INT(sqlite3_column_int(st, 0), store_n_migrations);
    sqlite3_finalize(st);
    CHECK_OK(store_prepare(s, &st, "PRAGMA journal_mode"));
    CHECK_INT(sqlite3_step(st), SQLITE_ROW);
    CHECK_STR((const char *)sqlite3_column_text(st, 0), "wal");
    sqlite3_finalize(st);
    /* The documented views exist with their documented columns. */
    static const char *const views[] = {
        "SELECT run_id, name, status, created_at, finished_at, seconds FROM runs",
        "SELECT run_id, stage, kind, status, cached, attempts, cache_key, started_at, finished_at, seconds FROM stages",
        "SELECT run_id, stage, name, kind, digest, bytes FROM artifacts",
        "SELECT run_id, stage, key, step, value FROM metrics",
        "SELECT run_id, stage, key, step, value FROM latest_metrics",
        "SELECT run_id, stage, input, from_stage, from_output, digest FROM lineage",
        "SELECT run_id, stage, key, value FROM params",
    };
    for (size_t i = 0; i < sizeof views / sizeof *views; i++) {
        CHECK_OK(store_prepare(s, &st, views[i]));
        sqlite3_finalize(st);
    }
}

int main(void) {
    snprintf(root, sizeof root, "/tmp/smelt-test-store-%ld", (long)getpid());
    fs_rm_rf(root);
    char dir[300];
    snprintf(dir, sizeof dir, "%s/store", root);
    store *s = NULL;
    /* Read-only opening of a missing store fails and creates nothing. */
    CHECK(store_open(&s, dir, STORE_NOWRITE) != 0);
    CHECK(!fs_exists(dir));
    CHECK_OK(store_open(&s, dir, STORE_CREATE));
    if (!s) return check_report("test_store");
    test_schema(s);
    test_objects(s);
    test_metrics_and_runs(s);
    store_close(s);
    /* Reopening runs no migration and keeps the data. */
    CHECK_OK(store_open(&s, dir, 0));
    char got[RUN_ID_MAX];
    CHECK_OK(store_run_resolve(s, "latest", got));
    store_close(s);
    fs_rm_rf(root);
    return check_report("test_store");
}
