/* archive.h: moving a run between stores (libarchive): a tar (zstd, gzip or plain, by the file
 * name) holding smelt-export.json (the run's rows of every table and its recipe text), the
 * objects of its artifacts, and its logs. Import verifies every digest before registering. */
#ifndef SMELT_STORE_ARCHIVE_H
#define SMELT_STORE_ARCHIVE_H

#include <stdint.h>

#include "store/runs.h"
#include "store/store.h"

/* Writes the archive atomically (temporary name, then rename). *n_objects and *bytes report
 * what was written (may be NULL). */
STORE_MUST_CHECK int store_export(store *s, const char *run, const char *path, int *n_objects, uint64_t *bytes);
/* Imports a run; fills run_out with its id. Nothing is registered unless everything verifies. */
STORE_MUST_CHECK int store_import(store *s, const char *path, char run_out[RUN_ID_MAX], int *n_objects);

/* gc: deletes objects no run references, scratch left by dead attempts, and in-stage
 * checkpoints of completed keys. With dry_run only counts. */
typedef struct {
    int objects;
    uint64_t object_bytes;
    int scratch;
    uint64_t scratch_bytes;
} gc_stats;
STORE_MUST_CHECK int store_gc(store *s, int dry_run, gc_stats *st);

#endif
