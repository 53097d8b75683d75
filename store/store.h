/* store.h: the artifact store. One directory holds smelt.db (SQLite, WAL mode, versioned
 * migrations in PRAGMA user_version) and objects/ab/cdef... (content-addressed by sha256).
 * A directory artifact is a manifest object listing its files' digests. Objects are written
 * under a temporary name, fsynced and renamed, so a crash never leaves a partial object
 * under its digest; the SQLite transaction that registers them comes after.
 *
 * Layout:  smelt.db, objects/, tmp/ (attempt scratch, import staging),
 *          checkpoints/<cache key>/ (in-stage checkpoints), logs/<run>/<stage>.<attempt>.log,
 *          locks/ (flock files). */
#ifndef SMELT_STORE_H
#define SMELT_STORE_H

#include <sqlite3.h>
#include <stdint.h>

#include "common/sha256.h"
#include "store/fscheck.h"


typedef struct store store;

/* Every store function that can fail is marked: ignoring its result is a compile error (the
 * build has -Werror), so that no failure of the store is lost on its way to the exit status. */
#define STORE_MUST_CHECK __attribute__((warn_unused_result))

/* Fault injection for tests (SQLite's way: make the Nth operation fail and check that the error
 * reaches the caller). Every SQLite operation of the store (prepare, step, exec, begin, commit)
 * asks store_fault first when a definition is linked in: a nonzero answer makes it fail with
 * ERR_IO. smelt itself has no definition (a weak symbol: NULL); tests/fault_hook.c defines it
 * for the test binaries, driven by SMELT_STORE_FAULT. */
int store_fault(const char *what) __attribute__((weak));

enum {
    STORE_CREATE = 1,   /* create the directory and database when missing */
    STORE_NOWRITE = 2,  /* never write (plan, query): no create, no migration */
};

/* Resolves the store directory: --store value, else $SMELT_STORE, else ./smelt-store. */
const char *store_default_dir(const char *flag_value);

STORE_MUST_CHECK int store_open(store **out, const char *dir, int flags);
/* store_open with a given file-system classification instead of probing (fs NULL: probe).
 * A store on an FS_SHARED file system uses the rollback journal (a WAL store is switched when
 * nothing else has it open); FS_UNSAFE is refused with ERR_INPUT. */
STORE_MUST_CHECK int store_open_fs(store **out, const char *dir, int flags, const store_fs_info *fs);
/* The file system the store was opened on (its class decides WAL or rollback journal). */
const store_fs_info *store_fs(const store *s);
void store_close(store *s);
const char *store_dir(const store *s);
sqlite3 *store_db(store *s);
/* 1 when the store directory has a database (without opening it). */
int store_exists(const char *dir);

/* Write transactions: BEGIN IMMEDIATE, retried while another process holds the write lock. */
STORE_MUST_CHECK int store_begin(store *s);
STORE_MUST_CHECK int store_commit(store *s);
void store_rollback(store *s);

/* Runs SQL with no result rows; reports errors through the slot. */
STORE_MUST_CHECK int store_exec(store *s, const char *sql);
/* Prepares a statement; reports errors through the slot. */
STORE_MUST_CHECK int store_prepare(store *s, sqlite3_stmt **st, const char *sql);
/* Steps a statement that returns no rows to completion (SQLITE_DONE; anything else is an error). */
STORE_MUST_CHECK int store_step_done(store *s, sqlite3_stmt *st);
/* Steps a query: 1 a row, 0 done, -1 an error ("what: sqlite message"). Every loop over rows
 * uses it, so that BUSY or IOERR is never read as "no more rows". */
STORE_MUST_CHECK int store_step_row(store *s, sqlite3_stmt *st, const char *what);
/* Formats "what: sqlite message" into the error slot; returns -1. */
int store_err(store *s, const char *what);

/* A path inside the store (caller frees): store_path(s, "tmp/x"). */
char *store_path(const store *s, const char *rel);

/* The store's gc lock: writers of objects hold it shared from the first object they write
 * until the transaction that registers them commits; gc holds it exclusive. Returns the
 * lock's fd, or -1 (error slot set). */
STORE_MUST_CHECK int store_gc_lock(const store *s, int exclusive);
void store_gc_unlock(int fd);

/* ---- objects ---- */

/* Path of the object file for digest (caller frees). */
char *store_object_path(const store *s, const char *digest);
/* 1 when the object file exists. */
int store_object_present(const store *s, const char *digest);
/* Stores a file as an object. With move != 0 the source is renamed when possible.
 * Writes the object file only; register it with store_object_register in a transaction. */
STORE_MUST_CHECK int store_put_file(store *s, const char *src, int move, char digest[SHA256_HEX_LEN + 1], uint64_t *bytes);
/* Stores a directory tree: every file as an object, then the manifest listing them.
 * *bytes is the total of the files. Registers nothing (see store_object_register). */
STORE_MUST_CHECK int store_put_dir(store *s, const char *dir, int move, char digest[SHA256_HEX_LEN + 1], uint64_t *bytes);
/* The digest a file or directory outside the store would have as an artifact: a file's sha256,
 * or the digest of the manifest store_put_dir would write for a directory. Stores nothing. */
STORE_MUST_CHECK int store_content_digest(const char *path, char digest[SHA256_HEX_LEN + 1]);
/* Inserts the object row (and for a manifest, its entries and their rows); inside a transaction. */
STORE_MUST_CHECK int store_object_register(store *s, const char *digest);
/* Recomputes an object's sha256; ERR_CORRUPT naming the object when it differs or is missing. */
STORE_MUST_CHECK int store_object_verify(const store *s, const char *digest);

/* A parsed manifest: the files of a directory artifact. */
typedef struct {
    char path[512];
    char digest[SHA256_HEX_LEN + 1];
    uint64_t bytes;
    int exec;
} manifest_entry;

typedef struct {
    manifest_entry *files;
    int n_files;
    uint64_t bytes; /* total of the files */
} manifest;

/* Reads and verifies a manifest object (its digest and its format). */
STORE_MUST_CHECK int store_manifest_read(const store *s, const char *digest, manifest *m);
void manifest_free(manifest *m);
/* 1 when the object is a manifest (without verifying it). */
int store_object_is_manifest(const store *s, const char *digest);
/* Writes the files of a directory artifact under dst (created), verifying every digest.
 * With link != 0 files are hard-linked when possible (the caller must not modify them). */
STORE_MUST_CHECK int store_materialize(const store *s, const char *digest, const char *dst, int link);
/* Verifies a directory artifact's file `name` and returns the object path holding it
 * (caller frees), for in-process readers that mmap or read the file directly. */
STORE_MUST_CHECK int store_artifact_file(const store *s, const char *digest, const char *name, char **path);

#endif
