/* gc.c: garbage collection of the object store. An object is live when a run references it:
 * as a stage output or input (any run, whatever its status), or as a file listed by such a
 * manifest. gc holds the gc lock exclusively, so no stage is between writing objects and
 * registering them while it looks. Work is bounded by the number of object files. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/error.h"
#include "common/fsutil.h"
#include "common/log.h"
#include "store/archive.h"
#include "store/internal.h"

typedef struct {
    char (*d)[65];
    int n, cap;
} digest_set;

static int cmp_digest(const void *a, const void *b) { return strcmp(a, b); }

static int set_add(digest_set *s, const char *d) {
    if (s->n == s->cap) {
        int cap = s->cap ? 2 * s->cap : 1024;
        char(*nd)[65] = xrealloc(s->d, (size_t)cap * sizeof *nd);
        if (!nd) return -1;
        s->d = nd;
        s->cap = cap;
    }
    snprintf(s->d[s->n++], 65, "%s", d);
    return 0;
}

static int set_has(const digest_set *s, const char *d) {
    return s->n && bsearch(d, s->d, (size_t)s->n, sizeof *s->d, cmp_digest) != NULL;
}

static int live_set(store *s, digest_set *live) {
    sqlite3_stmt *st;
    if (store_prepare(s, &st, "WITH roots(d) AS (SELECT digest FROM output UNION SELECT digest FROM input) "
                              "SELECT d FROM roots UNION SELECT me.digest FROM manifest_entry me JOIN roots ON "
                              "me.manifest = roots.d"))
        return -1;
    int rc;
    while ((rc = store_step_row(s, st, "listing live objects")) == 1)
        if (set_add(live, (const char *)sqlite3_column_text(st, 0))) {
            rc = -1;
            break;
        }
    sqlite3_finalize(st);
    if (rc < 0) return -1;
    /* Files of live manifests that were never registered (an older store): read the manifests. */
    int n_roots = live->n;
    for (int i = 0; i < n_roots; i++) {
        manifest m;
        if (!store_object_present(s, live->d[i]) || !store_object_is_manifest(s, live->d[i])) continue;
        if (store_manifest_read(s, live->d[i], &m)) {
            err_clear();
            continue;
        }
        for (int j = 0; j < m.n_files; j++)
            if (set_add(live, m.files[j].digest)) {
                manifest_free(&m);
                return -1;
            }
        manifest_free(&m);
    }
    qsort(live->d, (size_t)live->n, sizeof *live->d, cmp_digest);
    return 0;
}

static int sweep_objects(store *s, const digest_set *live, int dry_run, gc_stats *gs, digest_set *dead) {
    char *root = xasprintf("%s/objects", s->dir);
    DIR *d = root ? opendir(root) : NULL;
    if (!d) {
        int rc = root ? err_errno("cannot open %s", root) : -1;
        free(root);
        return rc;
    }
    struct dirent *e;
    int rc = 0;
    while (!rc && (e = readdir(d))) {
        if (strlen(e->d_name) != 2) continue;
        char *sub = fs_join(root, e->d_name);
        DIR *d2 = sub ? opendir(sub) : NULL;
        struct dirent *f;
        while (d2 && !rc && (f = readdir(d2))) {
            if (strlen(f->d_name) != 62) continue;
            char digest[65];
            memcpy(digest, e->d_name, 2);
            memcpy(digest + 2, f->d_name, 62);
            digest[64] = 0;
            if (set_has(live, digest)) continue;
            char *p = fs_join(sub, f->d_name);
            struct stat sb;
            if (p && !stat(p, &sb)) {
                gs->objects++;
                gs->object_bytes += (uint64_t)sb.st_size;
                if (!dry_run && unlink(p)) rc = err_errno("cannot delete %s", p);
                if (!rc) rc = set_add(dead, digest);
            }
            free(p);
        }
        if (d2) closedir(d2);
        free(sub);
    }
    closedir(d);
    free(root);
    return rc;
}

/* Counts and (unless dry_run) removes one scratch file or folder; takes ownership of p. A folder
 * that vanished meanwhile is not an error. */
static int sweep_one(char *p, int dry_run, gc_stats *gs) {
    uint64_t b = 0;
    int rc = 0;
    if (p && !fs_tree_bytes(p, &b)) {
        gs->scratch++;
        gs->scratch_bytes += b;
        if (!dry_run) rc = fs_rm_rf(p);
    }
    if (!rc) err_clear();
    free(p);
    return rc;
}

/* Scratch of attempts that are not running, import staging and half-written objects. */
static int sweep_scratch(store *s, int dry_run, gc_stats *gs) {
    char *tmp = xasprintf("%s/tmp", s->dir);
    DIR *d = tmp ? opendir(tmp) : NULL;
    int rc = 0;
    struct dirent *e;
    while (d && !rc && (e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..") || !strcmp(e->d_name, "attempts")) continue;
        char *p = fs_join(tmp, e->d_name);
        rc = sweep_one(p, dry_run, gs);
    }
    if (d) closedir(d);
    /* tmp/attempts/<run>/<stage>.<attempt>: keep it only while that stage is running. */
    sqlite3_stmt *st;
    char *att = xasprintf("%s/attempts", tmp ? tmp : "");
    DIR *runs = att ? opendir(att) : NULL;
    if (!rc && runs && !store_prepare(s, &st, "SELECT count(*) FROM stage WHERE run_id = ? AND status = 'running'")) {
        while (!rc && (e = readdir(runs))) {
            if (e->d_name[0] == '.') continue;
            sqlite3_reset(st);
            sqlite3_bind_text(st, 1, e->d_name, -1, SQLITE_TRANSIENT);
            int r = store_step_row(s, st, "reading which stages are running");
            if (r < 0) {
                rc = -1;
                break;
            }
            if (r == 0 || sqlite3_column_int(st, 0)) continue;
            char *p = fs_join(att, e->d_name);
            rc = sweep_one(p, dry_run, gs);
        }
        sqlite3_finalize(st);
    }
    if (runs) closedir(runs);
    /* In-stage checkpoints of keys that completed have served their purpose. */
    char *ck = xasprintf("%s/checkpoints", s->dir);
    DIR *cd = ck ? opendir(ck) : NULL;
    if (!rc && cd && !store_prepare(s, &st, "SELECT 1 FROM stage WHERE cache_key = ? AND status IN ('ok', 'cached') "
                                            "AND NOT EXISTS (SELECT 1 FROM stage s2 WHERE s2.cache_key = ?1 AND "
                                            "s2.status = 'running') LIMIT 1")) {
        while (!rc && (e = readdir(cd))) {
            if (e->d_name[0] == '.') continue;
            sqlite3_reset(st);
            sqlite3_bind_text(st, 1, e->d_name, -1, SQLITE_TRANSIENT);
            int r = store_step_row(s, st, "reading which cache keys are complete");
            if (r < 0) {
                rc = -1;
                break;
            }
            if (r == 0) continue;
            char *p = fs_join(ck, e->d_name);
            rc = sweep_one(p, dry_run, gs);
        }
        sqlite3_finalize(st);
    }
    if (cd) closedir(cd);
    free(ck);
    free(att);
    free(tmp);
    return rc;
}

int store_gc(store *s, int dry_run, gc_stats *gs) {
    memset(gs, 0, sizeof *gs);
    int lock = store_gc_lock(s, 1);
    if (lock < 0) return -1;
    digest_set live = {0}, dead = {0};
    int rc = live_set(s, &live);
    if (!rc) rc = sweep_objects(s, &live, dry_run, gs, &dead);
    if (!rc) rc = sweep_scratch(s, dry_run, gs);
    if (!rc && !dry_run && dead.n) {
        /* Forget the rows of deleted objects. */
        sqlite3_stmt *a = NULL, *b = NULL;
        rc = store_begin(s);
        if (!rc) rc = store_prepare(s, &a, "DELETE FROM object WHERE digest = ?");
        if (!rc) rc = store_prepare(s, &b, "DELETE FROM manifest_entry WHERE manifest = ?");
        for (int i = 0; i < dead.n && !rc; i++) {
            sqlite3_reset(a);
            sqlite3_reset(b);
            sqlite3_bind_text(a, 1, dead.d[i], -1, SQLITE_TRANSIENT);
            sqlite3_bind_text(b, 1, dead.d[i], -1, SQLITE_TRANSIENT);
            rc = store_step_done(s, a) || store_step_done(s, b);
        }
        sqlite3_finalize(a);
        sqlite3_finalize(b);
        if (!rc) rc = store_commit(s);
        else store_rollback(s);
    }
    free(live.d);
    free(dead.d);
    store_gc_unlock(lock);
    return rc;
}
