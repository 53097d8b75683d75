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

/* Moves a complete, fsynced scratch file into objects/ under its digest (objects.c). */
int store_object_install(const struct store *s, const char *tmp, const char *digest);

#endif
