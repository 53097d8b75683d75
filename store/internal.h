/* internal.h: the store handle, shared by the files of store/ only. */
#ifndef SMELT_STORE_INTERNAL_H
#define SMELT_STORE_INTERNAL_H

#include <sqlite3.h>

#include "store/fscheck.h"

struct store {
    char *dir; /* absolute path of the store directory */
    sqlite3 *db;
    store_fs_info fs; /* the file system it is on, and so its journal mode */
};

/* The current time in seconds since the epoch, as SQL (the store's time columns are REAL). */
#define STORE_NOW_SQL "(julianday('now') * 86400 - 210866760000)"

/* Runs one statement with n text parameters (NULL binds NULL) that returns no rows (db.c). */
int store_exec_bind(struct store *s, const char *sql, int n, const char *const *args) __attribute__((warn_unused_result));

/* Moves a complete, fsynced scratch file into objects/ under its digest (objects.c). */
int store_object_install(const struct store *s, const char *tmp, const char *digest);

#endif
