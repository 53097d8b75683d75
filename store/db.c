/* db.c: opening the store, migrations, and the SQLite helpers every store file uses.
 * Several processes (runners, stage processes, queries) share one database: WAL mode lets
 * readers proceed during a write; writers take the lock up front (BEGIN IMMEDIATE) and wait
 * for it with a busy timeout, so no caller ever sees "database is locked" under normal load. */
#include "store/store.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/error.h"
#include "common/fsutil.h"
#include "store/internal.h"
#include "store/schema.h"

/* Long enough for the longest write transaction (an artifact commit) of another process. */
#define STORE_BUSY_MS 120000

const char *store_default_dir(const char *flag_value) {
    if (flag_value && flag_value[0]) return flag_value;
    const char *e = getenv("SMELT_STORE");
    if (e && e[0]) return e;
    return "smelt-store";
}

int store_exists(const char *dir) {
    char *db = fs_join(dir, "smelt.db");
    int ok = db && fs_exists(db);
    free(db);
    return ok;
}

int store_err(store *s, const char *what) {
    return err_set(ERR_IO, "%s: %s (store %s)", what, sqlite3_errmsg(s->db), s->dir);
}

int store_exec(store *s, const char *sql) {
    char *msg = NULL;
    int rc = sqlite3_exec(s->db, sql, NULL, NULL, &msg);
    if (rc != SQLITE_OK) {
        err_set(rc == SQLITE_READONLY ? ERR_INPUT : ERR_IO, "SQLite: %s (store %s)", msg ? msg : sqlite3_errstr(rc), s->dir);
        sqlite3_free(msg);
        return -1;
    }
    return 0;
}

int store_prepare(store *s, sqlite3_stmt **st, const char *sql) {
    if (sqlite3_prepare_v2(s->db, sql, -1, st, NULL) != SQLITE_OK) return store_err(s, "preparing a query");
    return 0;
}

int store_step_done(store *s, sqlite3_stmt *st) {
    int rc = sqlite3_step(st);
    if (rc != SQLITE_DONE && rc != SQLITE_ROW) return store_err(s, "writing to the store database");
    return 0;
}

char *store_path(const store *s, const char *rel) { return fs_join(s->dir, rel); }
const char *store_dir(const store *s) { return s->dir; }
sqlite3 *store_db(store *s) { return s->db; }

/* BEGIN IMMEDIATE can return SQLITE_BUSY without invoking the busy handler in a few WAL
 * situations (recovery, a concurrent checkpoint); retry it with a short sleep. */
int store_begin(store *s) {
    for (int i = 0;; i++) {
        int rc = sqlite3_exec(s->db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
        if (rc == SQLITE_OK) return 0;
        if ((rc != SQLITE_BUSY && rc != SQLITE_LOCKED) || i > 6000) return store_err(s, "starting a transaction");
        struct timespec ts = {0, 20 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
}

int store_commit(store *s) {
    for (int i = 0;; i++) {
        int rc = sqlite3_exec(s->db, "COMMIT", NULL, NULL, NULL);
        if (rc == SQLITE_OK) return 0;
        if (rc != SQLITE_BUSY || i > 6000) {
            store_err(s, "committing a transaction");
            sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
            return -1;
        }
        struct timespec ts = {0, 20 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
}

void store_rollback(store *s) {
    if (!sqlite3_get_autocommit(s->db)) sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
}

static int user_version(store *s, int *v) {
    sqlite3_stmt *st;
    if (store_prepare(s, &st, "PRAGMA user_version")) return -1;
    int rc = sqlite3_step(st);
    if (rc != SQLITE_ROW) {
        sqlite3_finalize(st);
        return store_err(s, "reading the schema version");
    }
    *v = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    return 0;
}

static int migrate(store *s) {
    if (store_begin(s)) return -1;
    int v;
    if (user_version(s, &v)) goto fail;
    if (v > store_n_migrations) {
        err_set(ERR_INPUT, "the store %s has schema version %d but this smelt knows only up to %d; "
                "use a newer smelt", s->dir, v, store_n_migrations);
        goto fail;
    }
    for (; v < store_n_migrations; v++) {
        if (store_exec(s, store_migrations[v])) {
            err_prefix("migrating the store from schema version %d: ", v);
            goto fail;
        }
        char sql[64];
        snprintf(sql, sizeof sql, "PRAGMA user_version = %d", v + 1);
        if (store_exec(s, sql)) goto fail;
    }
    return store_commit(s);
fail:
    store_rollback(s);
    return -1;
}

static const char *const store_subdirs[] = {"objects", "tmp", "checkpoints", "logs", "locks"};

int store_open(store **out, const char *dir, int flags) {
    *out = NULL;
    int create = flags & STORE_CREATE, nowrite = flags & STORE_NOWRITE;
    if (!store_exists(dir)) {
        if (!create || nowrite)
            return err_set(ERR_INPUT, "no smelt store at %s (no smelt.db); pass --store DIR or set SMELT_STORE, "
                           "or run a recipe first to create one", dir);
        if (fs_mkdir_p(dir, 0755)) return -1;
    }
    if (!nowrite) {
        for (size_t i = 0; i < sizeof store_subdirs / sizeof *store_subdirs; i++) {
            char *p = fs_join(dir, store_subdirs[i]);
            int rc = p ? fs_mkdir_p(p, 0755) : -1;
            free(p);
            if (rc) return -1;
        }
    }
    store *s = xcalloc(1, sizeof *s);
    if (!s) return -1;
    s->dir = fs_realpath(dir);
    char *dbpath = s->dir ? fs_join(s->dir, "smelt.db") : NULL;
    if (!dbpath) goto fail;
    int oflags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX | (create && !nowrite ? SQLITE_OPEN_CREATE : 0);
    int rc = sqlite3_open_v2(dbpath, &s->db, oflags, NULL);
    free(dbpath);
    if (rc != SQLITE_OK) {
        err_set(ERR_IO, "cannot open the store database in %s: %s", dir, s->db ? sqlite3_errmsg(s->db) : sqlite3_errstr(rc));
        goto fail;
    }
    sqlite3_busy_timeout(s->db, STORE_BUSY_MS);
    sqlite3_extended_result_codes(s->db, 0);
    if (nowrite) {
        /* Readers must not change the store's files: no journal-mode switch, no migration. */
        if (store_exec(s, "PRAGMA query_only = 1")) goto fail;
        int v;
        if (user_version(s, &v)) goto fail;
        if (v != store_n_migrations) {
            err_set(ERR_INPUT, "the store %s has schema version %d, this smelt expects %d; run any writing "
                    "command (for example smelt runs) with this smelt to migrate it", dir, v, store_n_migrations);
            goto fail;
        }
    } else {
        if (store_exec(s, "PRAGMA journal_mode = WAL") || store_exec(s, "PRAGMA synchronous = NORMAL") ||
            store_exec(s, "PRAGMA foreign_keys = OFF") || migrate(s))
            goto fail;
    }
    *out = s;
    return 0;
fail:
    store_close(s);
    return -1;
}

void store_close(store *s) {
    if (!s) return;
    if (s->db) sqlite3_close_v2(s->db);
    free(s->dir);
    free(s);
}
