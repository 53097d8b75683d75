/* db.c: opening the store, migrations, and the SQLite helpers every store file uses.
 * Several processes (runners, stage processes, queries) share one database: WAL mode lets
 * readers proceed during a write; writers take the lock up front (BEGIN IMMEDIATE) and wait
 * for it with a busy timeout, so no caller ever sees "database is locked" under normal load.
 * On a shared (network) file system the store uses the rollback journal instead, because WAL's
 * shared memory only works within one host (store/fscheck.c decides which). */
#include "store/store.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <stdint.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/error.h"
#include "common/fsutil.h"
#include "store/fscheck.h"
#include "store/internal.h"
#include "store/schema.h"

/* Long enough for the longest write transaction (an artifact commit) of another process. */
#define STORE_BUSY_MS 120000
/* How long switching a WAL store to the rollback journal waits for other connections. */
#define STORE_CONVERT_BUSY_MS 3000

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

/* A test build links a definition of store_fault (tests/fault_hook.c) to make one SQLite
 * operation fail on purpose; in smelt itself it is NULL and costs one comparison. */
static int fault(const char *what) {
    if (store_fault && store_fault(what))
        return err_set(ERR_IO, "SQLite: injected fault in %s (a test build's SMELT_STORE_FAULT)", what);
    return 0;
}

int store_exec(store *s, const char *sql) {
    if (fault("exec")) return -1;
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
    *st = NULL;
    if (fault("prepare")) return -1;
    if (sqlite3_prepare_v2(s->db, sql, -1, st, NULL) != SQLITE_OK) return store_err(s, "preparing a query");
    return 0;
}

int store_step_done(store *s, sqlite3_stmt *st) {
    if (fault("step")) return -1;
    int rc = sqlite3_step(st);
    if (rc != SQLITE_DONE) return store_err(s, rc == SQLITE_ROW ? "a statement that writes returned rows" : "writing to the store database");
    return 0;
}

int store_step_row(store *s, sqlite3_stmt *st, const char *what) {
    if (fault("step")) return err_prefix("%s: ", what);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) return 1;
    if (rc == SQLITE_DONE) return 0;
    return store_err(s, what);
}

int store_exec_bind(store *s, const char *sql, int n, const char *const *args) {
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

char *store_path(const store *s, const char *rel) { return fs_join(s->dir, rel); }
const char *store_dir(const store *s) { return s->dir; }
sqlite3 *store_db(store *s) { return s->db; }

/* BEGIN IMMEDIATE can return SQLITE_BUSY without invoking the busy handler in a few WAL
 * situations (recovery, a concurrent checkpoint); retry it with a short sleep. */
int store_begin(store *s) {
    if (fault("begin")) return -1;
    for (int i = 0;; i++) {
        int rc = sqlite3_exec(s->db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
        if (rc == SQLITE_OK) return 0;
        if ((rc != SQLITE_BUSY && rc != SQLITE_LOCKED) || i > 6000) return store_err(s, "starting a transaction");
        struct timespec ts = {0, 20 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
}

int store_commit(store *s) {
    if (fault("commit")) {
        sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
        return -1;
    }
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
    int rc = store_step_row(s, st, "reading the schema version");
    if (rc != 1) {
        sqlite3_finalize(st);
        return rc ? -1 : err_set(ERR_IO, "reading the schema version of the store %s: no row", s->dir);
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

/* What a database file's header says without opening it: the journal mode (2 WAL, 1 rollback,
 * 0 no database yet) and the schema version (PRAGMA user_version, bytes 60-63, big-endian). In WAL
 * mode the header may lag the WAL file, never lead it: a version read here is at most the real one. */
static int header_read(const char *dbpath, int *version) {
    unsigned char h[100];
    FILE *f = fopen(dbpath, "rb");
    size_t n = f ? fread(h, 1, sizeof h, f) : 0;
    if (f) fclose(f);
    *version = -1;
    if (n < sizeof h || memcmp(h, "SQLite format 3", 16)) return 0;
    *version = (int)((uint32_t)h[60] << 24 | (uint32_t)h[61] << 16 | (uint32_t)h[62] << 8 | h[63]);
    return h[18] == 2 && h[19] == 2 ? 2 : 1;
}

/* The store's open lock (locks/open.lock): held exclusively while a process creates the
 * database, switches its journal mode or migrates it, because SQLite's busy handler does not
 * cover those steps (two processes creating one store at once saw "database is locked"); readers
 * hold it shared while the store is being set up. Returns the fd, -1 (error slot set), or -2 when
 * a reader finds no lock file (nothing has ever set the store up: there is nothing to wait for). */
static int open_lock(const char *dir, int exclusive) {
    char *p = fs_join(dir, "locks/open.lock");
    int fd = p ? open(p, exclusive ? O_RDWR | O_CREAT | O_CLOEXEC : O_RDONLY | O_CLOEXEC, 0644) : -1;
    if (fd < 0) {
        int missing = p && !exclusive && errno == ENOENT;
        if (p && !missing) err_errno("cannot open the store's lock file %s", p);
        free(p);
        return missing ? -2 : -1;
    }
    free(p);
    while (flock(fd, exclusive ? LOCK_EX : LOCK_SH)) {
        if (errno == EINTR) continue;
        err_errno("cannot lock the store %s", dir);
        close(fd);
        return -1;
    }
    return fd;
}

static void open_unlock(int fd) {
    if (fd < 0) return;
    flock(fd, LOCK_UN);
    close(fd);
}

/* A WAL database on a shared file system becomes a rollback-journal one. EXCLUSIVE locking
 * mode first, so that SQLite keeps the WAL index in private memory and never maps the -shm
 * file across the network; the switch fails (busy) while another process has it open. */
static int convert_to_rollback(store *s) {
    char *mode = NULL;
    sqlite3_stmt *st = NULL;
    /* Another process that has the store open keeps it in WAL: wait a little, not two minutes. */
    sqlite3_busy_timeout(s->db, STORE_CONVERT_BUSY_MS);
    if (sqlite3_exec(s->db, "PRAGMA locking_mode = EXCLUSIVE", NULL, NULL, NULL) == SQLITE_OK &&
        sqlite3_prepare_v2(s->db, "PRAGMA journal_mode = DELETE", -1, &st, NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW)
        mode = xstrdup((const char *)sqlite3_column_text(st, 0));
    int ok = mode && !strcmp(mode, "delete");
    if (!ok)
        err_set(ERR_IO, "the store %s is in WAL mode (for one host) but it is on a shared file system, and "
                "switching it to the rollback journal failed (%s): stop the other smelt processes that use it (on "
                "every host) and retry", s->dir, mode ? "another process has it open" : sqlite3_errmsg(s->db));
    sqlite3_finalize(st);
    free(mode);
    sqlite3_busy_timeout(s->db, STORE_BUSY_MS);
    return ok ? 0 : -1;
}

static int open_db(store *s, const char *dbpath, int oflags) {
    int rc = sqlite3_open_v2(dbpath, &s->db, oflags, NULL);
    if (rc != SQLITE_OK)
        return err_set(ERR_IO, "cannot open the store database in %s: %s", s->dir,
                       s->db ? sqlite3_errmsg(s->db) : sqlite3_errstr(rc));
    sqlite3_busy_timeout(s->db, STORE_BUSY_MS);
    sqlite3_extended_result_codes(s->db, 0);
    return 0;
}

int store_open(store **out, const char *dir, int flags) { return store_open_fs(out, dir, flags, NULL); }

int store_open_fs(store **out, const char *dir, int flags, const store_fs_info *fs) {
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
    int lock = -2; /* the open lock, when this open needs it */
    s->dir = fs_realpath(dir);
    char *dbpath = s->dir ? fs_join(s->dir, "smelt.db") : NULL;
    if (!dbpath) goto fail;
    if (fs) s->fs = *fs;
    else if (store_fs_probe(s->dir, &s->fs)) goto fail;
    if (s->fs.cls == FS_UNSAFE) {
        err_set(ERR_INPUT, "the store %s is on %s: %s. SQLite could corrupt the store when processes on several "
                "nodes write to it. Put the store on a local disk (one host) or on a file system with coherent "
                "locks (NFSv4, Lustre mounted with -o flock, GPFS, CephFS); or set SMELT_STORE_FS=local if only this "
                "host ever uses it, SMELT_STORE_FS=shared if you know its locks are coherent across nodes",
                s->dir, s->fs.type, s->fs.why);
        goto fail;
    }
    /* A store that is set up (the journal mode its file system needs, the current schema) opens
     * without the open lock; any other waits for it, then looks again. */
    int version, journal = header_read(dbpath, &version);
    int shared_journal = s->fs.cls == FS_SHARED || journal == 1;
    if (journal != (shared_journal ? 1 : 2) || version != store_n_migrations) {
        lock = open_lock(s->dir, !nowrite);
        if (lock == -1) goto fail;
        journal = header_read(dbpath, &version);
        shared_journal = s->fs.cls == FS_SHARED || journal == 1;
    }
    int setup = journal != (shared_journal ? 1 : 2) || version != store_n_migrations;
    int oflags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX | (create && !nowrite ? SQLITE_OPEN_CREATE : 0);
    if (open_db(s, dbpath, oflags)) goto fail;
    if (nowrite) {
        if (s->fs.cls == FS_SHARED && journal == 2) {
            err_set(ERR_INPUT, "the store %s is in WAL mode (for one host) but it is on a shared file system (%s); "
                    "run a command that writes to it (for example smelt gc --dry-run) once, with no other smelt "
                    "process using it, to switch it to the rollback journal", s->dir, s->fs.type);
            goto fail;
        }
        /* Readers must not change the store's files: no journal-mode switch, no migration. */
        if (store_exec(s, "PRAGMA query_only = 1")) goto fail;
        int v;
        if (user_version(s, &v)) goto fail;
        if (v != store_n_migrations) {
            err_set(ERR_INPUT, "the store %s has schema version %d, this smelt expects %d; run a command that "
                    "writes to it with this smelt to migrate it (for example smelt gc --dry-run --store %s)", dir, v,
                    store_n_migrations, dir);
            goto fail;
        }
    } else {
        if (s->fs.cls == FS_SHARED && journal == 2) {
            if (convert_to_rollback(s)) goto fail;
            sqlite3_close_v2(s->db);
            s->db = NULL;
            if (open_db(s, dbpath, oflags)) goto fail;
        }
        /* A new store on one host gets WAL; a store that is (or once was) shared keeps the
         * rollback journal, which is safe everywhere, so that a host that sees the file system
         * as local (the NFS server itself) never turns WAL back on under the other nodes. */
        const char *mode = shared_journal ? "PRAGMA journal_mode = DELETE" : "PRAGMA journal_mode = WAL";
        const char *sync = shared_journal ? "PRAGMA synchronous = FULL" : "PRAGMA synchronous = NORMAL";
        if ((setup && store_exec(s, mode)) || store_exec(s, sync) || store_exec(s, "PRAGMA foreign_keys = OFF") ||
            (setup && migrate(s)))
            goto fail;
    }
    open_unlock(lock);
    free(dbpath);
    *out = s;
    return 0;
fail:
    open_unlock(lock);
    free(dbpath);
    store_close(s);
    return -1;
}

const store_fs_info *store_fs(const store *s) { return &s->fs; }

void store_close(store *s) {
    if (!s) return;
    if (s->db) sqlite3_close_v2(s->db);
    free(s->dir);
    free(s);
}
