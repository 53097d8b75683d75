/* test_store_open.c: opening a store under concurrency. 8 processes x 20 rounds create the same
 * new store at once (all released by one pipe, so that they really race), and 2 processes x 20
 * rounds migrate the same older store at once: every open succeeds ("database is locked" was
 * seen before store creation took a lock), every store ends at the current schema version with
 * the journal mode of its file system, and its integrity check is ok. */
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/error.h"
#include "common/fsutil.h"
#include "store/runs.h"
#include "store/schema.h"
#include "store/store.h"
#include "tests/check.h"

static char root[256];

/* One value of a one-row query on the store. */
static char *query_text(store *s, const char *sql) {
    sqlite3_stmt *st;
    char *v = NULL;
    if (store_prepare(s, &st, sql)) return NULL;
    if (sqlite3_step(st) == SQLITE_ROW) v = xstrdup((const char *)sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
    return v;
}

/* Starts n processes that wait on a pipe, then all open `dir` (creating it) and write one run;
 * returns how many failed (each prints its error). */
static int race_open(const char *dir, int n, int round, const store_fs_info *fs) {
    int gate[2];
    if (pipe(gate)) return n;
    pid_t pids[16];
    for (int i = 0; i < n; i++) {
        pids[i] = fork();
        if (pids[i] == 0) {
            close(gate[1]);
            char c;
            if (read(gate[0], &c, 1) < 0) _exit(3);
            store *s = NULL;
            char id[64];
            snprintf(id, sizeof id, "r%02d-p%d", round, i);
            int bad = store_open_fs(&s, dir, STORE_CREATE, fs) ||
                      store_run_create(s, id, "race", NULL, "smelt: 1\n", "[]", 1);
            if (bad) fprintf(stderr, "round %d, process %d: %s\n", round, i, err_msg());
            store_close(s);
            _exit(bad ? 1 : 0);
        }
    }
    close(gate[0]);
    close(gate[1]); /* EOF: every child starts now */
    int failed = 0;
    for (int i = 0; i < n; i++) {
        int status = 0;
        if (pids[i] <= 0 || waitpid(pids[i], &status, 0) != pids[i] || !WIFEXITED(status) || WEXITSTATUS(status))
            failed++;
    }
    return failed;
}

/* The store is complete: current schema, n runs, journal `mode`, integrity ok. */
static void check_store(const char *dir, int n_runs, const char *mode, const store_fs_info *fs) {
    store *s = NULL;
    CHECK_OK(store_open_fs(&s, dir, STORE_NOWRITE, fs));
    if (!s) return;
    char *v = query_text(s, "PRAGMA user_version"), *runs = query_text(s, "SELECT count(*) FROM run");
    char *jm = query_text(s, "PRAGMA journal_mode"), *ic = query_text(s, "PRAGMA integrity_check");
    CHECK_INT(v ? atoi(v) : -1, store_n_migrations);
    CHECK_INT(runs ? atoi(runs) : -1, n_runs);
    CHECK_STR(jm, mode);
    CHECK_STR(ic, "ok");
    free(v), free(runs), free(jm), free(ic);
    store_close(s);
}

static void test_create_race(void) {
    enum { PROCS = 8, ROUNDS = 20 };
    int failed = 0;
    for (int r = 0; r < ROUNDS; r++) {
        char dir[300];
        snprintf(dir, sizeof dir, "%s/new-%02d/store", root, r); /* neither the store nor its parent exists */
        failed += race_open(dir, PROCS, r, NULL);
        check_store(dir, PROCS, "wal", NULL);
    }
    CHECK_INT(failed, 0);
    printf("creation: %d processes x %d rounds, %d failed opens\n", PROCS, ROUNDS, failed);
}

/* A store as the first smelt wrote it: schema version 1 (no Slurm tables), WAL, one run, written
 * by a process that died without closing it (its last transactions are still in the WAL file, as
 * after a crash), so that the openers also race on WAL recovery. */
static int make_v1_store(const char *dir) {
    if (fs_mkdir_p(dir, 0755)) return -1;
    pid_t pid = fork();
    if (pid == 0) {
        char *db = fs_join(dir, "smelt.db");
        sqlite3 *h = NULL;
        int rc = sqlite3_open(db, &h) != SQLITE_OK ||
                 sqlite3_exec(h, "PRAGMA journal_mode = WAL; PRAGMA wal_autocheckpoint = 0", NULL, NULL, NULL) != SQLITE_OK ||
                 sqlite3_exec(h, store_migrations[0], NULL, NULL, NULL) != SQLITE_OK ||
                 sqlite3_exec(h, "PRAGMA user_version = 1; INSERT INTO recipe VALUES ('x', 'smelt: 1'); INSERT INTO "
                                 "run(id, name, recipe_sha, status, created_at) VALUES ('old', 'old', 'x', 'ok', 0)",
                              NULL, NULL, NULL) != SQLITE_OK;
        if (rc) fprintf(stderr, "cannot build a version-1 store in %s: %s\n", dir, h ? sqlite3_errmsg(h) : "no handle");
        _exit(rc); /* no sqlite3_close: the WAL is left as a crash leaves it */
    }
    int status = 0;
    return pid > 0 && waitpid(pid, &status, 0) == pid && WIFEXITED(status) && !WEXITSTATUS(status) ? 0 : -1;
}

/* On a local file system the old store stays in WAL; on a shared one (simulated: NFSv4) the same
 * open also switches it to the rollback journal, which only one process can do. */
static void test_migration_race(int shared) {
    enum { PROCS = 2, ROUNDS = 20 };
    store_fs_info nfs = {.cls = FS_SHARED, .magic = 0x6969};
    snprintf(nfs.type, sizeof nfs.type, "nfs4");
    const store_fs_info *fs = shared ? &nfs : NULL;
    int failed = 0;
    for (int r = 0; r < ROUNDS; r++) {
        char dir[300];
        snprintf(dir, sizeof dir, "%s/old-%s-%02d", root, shared ? "shared" : "local", r);
        CHECK_OK(make_v1_store(dir));
        failed += race_open(dir, PROCS, r, fs);
        check_store(dir, PROCS + 1, shared ? "delete" : "wal", fs);
    }
    CHECK_INT(failed, 0);
    printf("migration from version 1 (WAL) on a %s file system: %d processes x %d rounds, %d failed opens\n",
           shared ? "shared" : "local", PROCS, ROUNDS, failed);
}

int main(void) {
    const char *tmp = getenv("SMELT_TEST_TMP");
    snprintf(root, sizeof root, "%s/test_store_open.%d", tmp && tmp[0] ? tmp : "/tmp", (int)getpid());
    fs_rm_rf(root);
    unsetenv("SMELT_STORE_FS");
    test_create_race();
    test_migration_race(0);
    test_migration_race(1);
    fs_rm_rf(root);
    return check_report("test_store_open");
}
