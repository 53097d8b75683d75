/* archive.c: export and import of runs. The rows of every table that belongs to a run are
 * written generically (column names and typed values), so a new column travels without new
 * code here; the objects are stored under their digests and re-hashed on import. */
#include "store/archive.h"

#include <archive.h>
#include <archive_entry.h>
#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/error.h"
#include "common/fsutil.h"
#include "common/log.h"
#include "common/sha256.h"
#include "common/strbuf.h"
#include "store/internal.h"

#define EXPORT_FORMAT 1
#define EXPORT_JSON "smelt-export.json"
#define EXPORT_MAX_JSON (1u << 30)

/* Tables exported for a run, with the column naming the run. */
static const struct {
    const char *table, *run_col;
} run_tables[] = {
    {"run", "id"},       {"stage", "run_id"}, {"edge", "run_id"},  {"attempt", "run_id"}, {"output", "run_id"},
    {"input", "run_id"}, {"param", "run_id"}, {"metric", "run_id"}, {"metric_latest", "run_id"},
};
#define N_RUN_TABLES (sizeof run_tables / sizeof run_tables[0])

static int dump_table(store *s, const char *table, const char *col, const char *run, cJSON *out) {
    char sql[256];
    snprintf(sql, sizeof sql, "SELECT * FROM %s WHERE %s = ?", table, col);
    sqlite3_stmt *st;
    if (store_prepare(s, &st, sql)) return -1;
    sqlite3_bind_text(st, 1, run, -1, SQLITE_TRANSIENT);
    cJSON *t = cJSON_CreateObject(), *cols = cJSON_CreateArray(), *rows = cJSON_CreateArray();
    int nc = sqlite3_column_count(st), rc;
    for (int i = 0; i < nc; i++) cJSON_AddItemToArray(cols, cJSON_CreateString(sqlite3_column_name(st, i)));
    while ((rc = store_step_row(s, st, "exporting a table")) == 1) {
        cJSON *row = cJSON_CreateArray();
        for (int i = 0; i < nc; i++) {
            cJSON *v;
            switch (sqlite3_column_type(st, i)) {
            case SQLITE_NULL: v = cJSON_CreateNull(); break;
            case SQLITE_INTEGER:
            case SQLITE_FLOAT: {
                /* cJSON prints doubles with 15 digits when they compare "close"; write exact text. */
                char num[64];
                if (sqlite3_column_type(st, i) == SQLITE_INTEGER)
                    snprintf(num, sizeof num, "%lld", (long long)sqlite3_column_int64(st, i));
                else if (isfinite(sqlite3_column_double(st, i)))
                    snprintf(num, sizeof num, "%.17g", sqlite3_column_double(st, i));
                else /* JSON has no infinities; 1e999 parses back to one */
                    snprintf(num, sizeof num, "%s", sqlite3_column_double(st, i) > 0 ? "1e999" : "-1e999");
                v = cJSON_CreateRaw(num);
                break;
            }
            default: v = cJSON_CreateString((const char *)sqlite3_column_text(st, i));
            }
            cJSON_AddItemToArray(row, v);
        }
        cJSON_AddItemToArray(rows, row);
    }
    sqlite3_finalize(st);
    cJSON_AddItemToObject(t, "columns", cols);
    cJSON_AddItemToObject(t, "rows", rows);
    cJSON_AddItemToObject(out, table, t);
    return rc < 0 ? err_prefix("table %s: ", table) : 0;
}

static int write_entry(struct archive *a, const char *name, const void *data, size_t n, const char *file) {
    struct archive_entry *e = archive_entry_new();
    archive_entry_set_pathname(e, name);
    archive_entry_set_size(e, (la_int64_t)n);
    archive_entry_set_filetype(e, AE_IFREG);
    archive_entry_set_perm(e, 0644);
    int rc = archive_write_header(a, e) != ARCHIVE_OK ||
             (n && archive_write_data(a, data, n) != (la_ssize_t)n);
    archive_entry_free(e);
    if (rc) return err_set(ERR_IO, "writing %s into %s: %s", name, file, archive_error_string(a));
    return 0;
}

static int write_file_entry(struct archive *a, const char *name, const char *src, const char *file) {
    char *data;
    size_t n;
    if (fs_read_file(src, 0, &data, &n)) return -1;
    int rc = write_entry(a, name, data, n, file);
    free(data);
    return rc;
}

static int set_filter(struct archive *a, const char *path) {
    if (str_ends_with(path, ".zst") || str_ends_with(path, ".tzst")) return archive_write_add_filter_zstd(a);
    if (str_ends_with(path, ".gz") || str_ends_with(path, ".tgz")) return archive_write_add_filter_gzip(a);
    if (str_ends_with(path, ".tar")) return archive_write_add_filter_none(a);
    return err_set(ERR_INPUT, "cannot tell the compression of '%s'; name it .tar.zst, .tar.gz or .tar", path);
}

typedef struct {
    struct archive *a;
    const char *run, *path;
} log_ctx;

static int log_entry(const char *rel, const char *abs, void *vctx) {
    log_ctx *lc = vctx;
    char *name = xasprintf("logs/%s/%s", lc->run, rel);
    int rc = name ? write_file_entry(lc->a, name, abs, lc->path) : -1;
    free(name);
    return rc;
}

int store_export(store *s, const char *run, const char *path, int *n_objects, uint64_t *bytes) {
    cJSON *root = cJSON_CreateObject(), *tables = cJSON_CreateObject();
    cJSON_AddNumberToObject(root, "smelt_export", EXPORT_FORMAT);
    cJSON_AddStringToObject(root, "run", run);
    cJSON_AddItemToObject(root, "tables", tables);
    int rc = 0;
    for (size_t i = 0; i < N_RUN_TABLES && !rc; i++)
        rc = dump_table(s, run_tables[i].table, run_tables[i].run_col, run, tables);
    run_row rr = {0};
    if (!rc) rc = store_run_load(s, run, &rr);
    if (!rc) {
        cJSON_AddStringToObject(root, "recipe_sha", rr.recipe_sha);
        cJSON_AddStringToObject(root, "recipe", rr.recipe_text);
    }
    run_row_free(&rr);
    /* Every object of the run: output manifests and the files they list. */
    cJSON *objs = cJSON_CreateArray();
    cJSON_AddItemToObject(root, "objects", objs);
    sqlite3_stmt *st = NULL;
    if (!rc && !store_prepare(s, &st, "SELECT DISTINCT digest FROM output WHERE run_id = ?1 UNION SELECT me.digest "
                                      "FROM manifest_entry me WHERE me.manifest IN (SELECT digest FROM output WHERE "
                                      "run_id = ?1) ORDER BY 1")) {
        sqlite3_bind_text(st, 1, run, -1, SQLITE_TRANSIENT);
        int r;
        while ((r = store_step_row(s, st, "listing the objects of the run")) == 1)
            cJSON_AddItemToArray(objs, cJSON_CreateString((const char *)sqlite3_column_text(st, 0)));
        sqlite3_finalize(st);
        if (r < 0) rc = -1;
    } else if (!rc) {
        rc = -1;
    }
    char *json = rc ? NULL : cJSON_PrintUnformatted(root);
    if (!rc && !json) rc = err_set(ERR_NOMEM, "out of memory writing the export manifest");
    fs_atomic out = {.fd = -1};
    struct archive *a = archive_write_new();
    if (!rc && !a) rc = err_set(ERR_NOMEM, "out of memory starting an archive");
    if (!rc && (archive_write_set_format_pax_restricted(a) != ARCHIVE_OK || set_filter(a, path) != ARCHIVE_OK)) {
        if (err_kind_get() != ERR_INPUT) err_set(ERR_IO, "cannot set up the archive: %s", archive_error_string(a));
        rc = -1;
    }
    if (!rc) rc = fs_atomic_open(&out, path);
    if (!rc && archive_write_open_fd(a, out.fd) != ARCHIVE_OK)
        rc = err_set(ERR_IO, "cannot start %s: %s", out.tmp, archive_error_string(a));
    int nobj = 0;
    uint64_t total = 0;
    if (!rc) rc = write_entry(a, EXPORT_JSON, json, strlen(json), path);
    const cJSON *o;
    cJSON_ArrayForEach(o, objs) {
        if (rc) break;
        /* Verify before shipping: never export a damaged object. */
        rc = store_object_verify(s, o->valuestring);
        char *src = store_object_path(s, o->valuestring);
        char name[128];
        snprintf(name, sizeof name, "objects/%.2s/%s", o->valuestring, o->valuestring + 2);
        if (!rc) rc = src ? write_file_entry(a, name, src, path) : -1;
        struct stat sb;
        if (!rc && src && !stat(src, &sb)) total += (uint64_t)sb.st_size;
        free(src);
        nobj++;
    }
    /* Logs of the run travel too (best effort: they may have been deleted by hand). */
    char *logdir = xasprintf("%s/logs/%s", s->dir, run);
    if (!rc && logdir && fs_is_dir(logdir)) {
        log_ctx lc = {a, run, path};
        rc = fs_walk_files(logdir, log_entry, &lc);
    }
    free(logdir);
    if (a) {
        if (!rc && archive_write_close(a) != ARCHIVE_OK)
            rc = err_set(ERR_IO, "cannot finish %s: %s", out.tmp, archive_error_string(a));
        archive_write_free(a); /* leaves out.fd open */
    }
    if (!rc) rc = fs_atomic_commit(&out);
    else if (out.fd >= 0) fs_atomic_abort(&out);
    cJSON_free(json);
    cJSON_Delete(root);
    if (n_objects) *n_objects = nobj;
    if (bytes) *bytes = total;
    return rc;
}

/* ---- import ---- */

static int valid_ident(const char *s) {
    if (!*s) return 0;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '_')) return 0;
    return 1;
}

/* Streams the current entry into dst while hashing; checks it hashes to `digest`. */
static int extract_object(struct archive *a, const char *name, const char *digest, const char *dst) {
    int fd = open(dst, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) return err_errno("cannot create %s", dst);
    sha256_ctx *c = sha256_new();
    char buf[1 << 16];
    int rc = c ? 0 : -1;
    while (!rc) {
        la_ssize_t n = archive_read_data(a, buf, sizeof buf);
        if (n < 0) {
            rc = err_set(ERR_CORRUPT, "the archive is truncated or damaged at %s: %s", name, archive_error_string(a));
            break;
        }
        if (n == 0) break;
        sha256_update(c, buf, (size_t)n);
        for (la_ssize_t off = 0; off < n;) {
            ssize_t w = write(fd, buf + off, (size_t)(n - off));
            if (w < 0) {
                rc = err_errno("cannot write %s", dst);
                break;
            }
            off += w;
        }
    }
    if (!rc && fsync(fd)) rc = err_errno("cannot fsync %s", dst);
    close(fd);
    if (rc) {
        sha256_free(c);
        return -1;
    }
    char got[65];
    sha256_final_hex(c, got);
    if (strcmp(got, digest))
        return err_set(ERR_CORRUPT, "archive entry %s is damaged: its content hashes to %s; re-export the run", name, got);
    return 0;
}

static int read_entry_text(struct archive *a, const char *name, char **out) {
    size_t cap = 1 << 16, len = 0;
    char *buf = xmalloc(cap + 1);
    if (!buf) return -1;
    for (;;) {
        if (len == cap) {
            if (cap >= EXPORT_MAX_JSON) {
                free(buf);
                return err_set(ERR_CORRUPT, "%s in the archive is larger than %u bytes", name, EXPORT_MAX_JSON);
            }
            char *nb = xrealloc(buf, 2 * cap + 1);
            if (!nb) {
                free(buf);
                return -1;
            }
            buf = nb;
            cap *= 2;
        }
        la_ssize_t n = archive_read_data(a, buf + len, cap - len);
        if (n < 0) {
            free(buf);
            return err_set(ERR_CORRUPT, "the archive is truncated or damaged at %s: %s", name, archive_error_string(a));
        }
        if (n == 0) break;
        len += (size_t)n;
    }
    buf[len] = 0;
    *out = buf;
    return 0;
}

static int insert_rows(store *s, const char *table, const cJSON *t) {
    const cJSON *cols = cJSON_GetObjectItemCaseSensitive(t, "columns");
    const cJSON *rows = cJSON_GetObjectItemCaseSensitive(t, "rows");
    int nc = cJSON_GetArraySize(cols);
    if (!cJSON_IsArray(cols) || !cJSON_IsArray(rows) || nc == 0)
        return err_set(ERR_CORRUPT, "the export manifest's table %s is malformed", table);
    strbuf sql = STRBUF_INIT;
    sb_printf(&sql, "INSERT INTO %s(", table);
    int i = 0;
    const cJSON *c;
    cJSON_ArrayForEach(c, cols) {
        if (!cJSON_IsString(c) || !valid_ident(c->valuestring)) {
            sb_free(&sql);
            return err_set(ERR_CORRUPT, "the export manifest names a bad column in table %s", table);
        }
        sb_printf(&sql, "%s%s", i++ ? ", " : "", c->valuestring);
    }
    sb_puts(&sql, ") VALUES (");
    for (i = 0; i < nc; i++) sb_puts(&sql, i ? ", ?" : "?");
    sb_puts(&sql, ")");
    sqlite3_stmt *st;
    int rc = store_prepare(s, &st, sb_str(&sql));
    sb_free(&sql);
    if (rc && sqlite3_errcode(store_db(s)) == SQLITE_ERROR) /* a column this store does not have */
        return err_set(ERR_CORRUPT, "importing table %s: %s; the archive is damaged or from a newer smelt (store %s)",
                       table, sqlite3_errmsg(store_db(s)), s->dir);
    if (rc) return err_prefix("importing table %s: ", table);
    const cJSON *row;
    cJSON_ArrayForEach(row, rows) {
        if (rc) break;
        if (cJSON_GetArraySize(row) != nc) {
            rc = err_set(ERR_CORRUPT, "a row of table %s in the export manifest has the wrong width", table);
            break;
        }
        sqlite3_reset(st);
        i = 1;
        const cJSON *v;
        cJSON_ArrayForEach(v, row) {
            if (cJSON_IsNull(v)) sqlite3_bind_null(st, i);
            else if (cJSON_IsString(v)) sqlite3_bind_text(st, i, v->valuestring, -1, SQLITE_TRANSIENT);
            else if (cJSON_IsNumber(v)) {
                /* Range first: converting a double outside int64 (1e300, or 1e999 read as an
                 * infinity) to an integer is undefined behaviour. Within +-9e15 every integer
                 * is exact, so the round trip tells an integer column from a real one. */
                double d = v->valuedouble;
                if (d > -9e15 && d < 9e15 && d == (double)(sqlite3_int64)d) sqlite3_bind_int64(st, i, (sqlite3_int64)d);
                else sqlite3_bind_double(st, i, d);
            } else {
                rc = err_set(ERR_CORRUPT, "a value of table %s in the export manifest has a bad type", table);
                break;
            }
            i++;
        }
        if (!rc && store_step_done(s, st)) {
            /* A row the schema refuses (a duplicate key, a NULL where none may be) is the archive's fault. */
            int code = sqlite3_errcode(store_db(s));
            rc = code == SQLITE_CONSTRAINT || code == SQLITE_MISMATCH
                     ? err_set(ERR_CORRUPT, "the export manifest's table %s has a row the store refuses (%s); the archive "
                               "is damaged or was not written by smelt export", table, sqlite3_errmsg(store_db(s)))
                     : err_prefix("importing table %s: ", table);
        }
    }
    sqlite3_finalize(st);
    return rc;
}

typedef struct {
    char digest[65];
    char *path; /* staged file */
} staged;

int store_import(store *s, const char *path, char run_out[RUN_ID_MAX], int *n_objects) {
    run_out[0] = 0;
    int lock = store_gc_lock(s, 0);
    if (lock < 0) return -1;
    static int counter;
    char *stage_dir = xasprintf("%s/tmp/import-%ld-%d", s->dir, (long)getpid(), counter++);
    struct archive *a = archive_read_new();
    char *json = NULL;
    staged *objs = NULL;
    int n_objs = 0, rc = (!stage_dir || !a) ? -1 : 0;
    cJSON *root = NULL;
    if (!rc) rc = fs_rm_rf(stage_dir) || fs_mkdir_p(stage_dir, 0755);
    if (!rc) {
        archive_read_support_filter_all(a);
        archive_read_support_format_tar(a);
        if (!fs_exists(path)) rc = err_set(ERR_INPUT, "no archive at %s", path);
        else if (archive_read_open_filename(a, path, 1 << 16) != ARCHIVE_OK)
            rc = err_set(ERR_CORRUPT, "%s is not a complete smelt export (truncated or damaged): %s", path,
                         archive_error_string(a));
    }
    struct archive_entry *e;
    while (!rc) {
        int r = archive_read_next_header(a, &e);
        if (r == ARCHIVE_EOF) break;
        if (r != ARCHIVE_OK && r != ARCHIVE_WARN) {
            rc = err_set(ERR_CORRUPT, "%s is not a complete smelt export (truncated or damaged): %s", path,
                         archive_error_string(a));
            break;
        }
        const char *name = archive_entry_pathname(e);
        if (archive_entry_filetype(e) == AE_IFDIR) continue;
        if (!strcmp(name, EXPORT_JSON)) {
            free(json);
            json = NULL;
            rc = read_entry_text(a, name, &json);
        } else if (!strncmp(name, "objects/", 8) && strlen(name) == 8 + 2 + 1 + 62 && name[10] == '/') {
            char digest[65];
            memcpy(digest, name + 8, 2);
            memcpy(digest + 2, name + 11, 62);
            digest[64] = 0;
            if (!sha256_is_hex(digest)) {
                rc = err_set(ERR_CORRUPT, "archive entry %s is not an object name", name);
                break;
            }
            staged *no = xrealloc(objs, (size_t)(n_objs + 1) * sizeof *no);
            if (!no) {
                rc = -1;
                break;
            }
            objs = no;
            memcpy(objs[n_objs].digest, digest, 65);
            objs[n_objs].path = xasprintf("%s/o%d", stage_dir, n_objs);
            if (!objs[n_objs].path) {
                rc = -1;
                break;
            }
            n_objs++;
            rc = extract_object(a, name, digest, objs[n_objs - 1].path);
        } else if (!strncmp(name, "logs/", 5) && !strstr(name, "..")) {
            char *dst = fs_join(stage_dir, name), *slash = dst ? strrchr(dst, '/') : NULL;
            if (!slash) {
                free(dst);
                rc = -1;
                break;
            }
            *slash = 0;
            rc = fs_mkdir_p(dst, 0755);
            *slash = '/';
            char *text = NULL;
            if (!rc) rc = read_entry_text(a, name, &text);
            if (!rc) rc = fs_write_atomic(dst, text, strlen(text));
            free(text);
            free(dst);
        } else {
            rc = err_set(ERR_CORRUPT, "%s holds an unexpected entry '%s'; it is not a smelt export", path, name);
        }
    }
    if (!rc && !json) rc = err_set(ERR_CORRUPT, "%s has no %s; it is not a smelt export (or it is truncated)", path,
                                   EXPORT_JSON);
    if (!rc && !(root = cJSON_Parse(json))) rc = err_set(ERR_CORRUPT, "%s: %s is not valid JSON", path, EXPORT_JSON);
    const cJSON *ver = root ? cJSON_GetObjectItemCaseSensitive(root, "smelt_export") : NULL;
    const cJSON *runj = root ? cJSON_GetObjectItemCaseSensitive(root, "run") : NULL;
    const cJSON *tables = root ? cJSON_GetObjectItemCaseSensitive(root, "tables") : NULL;
    const cJSON *objlist = root ? cJSON_GetObjectItemCaseSensitive(root, "objects") : NULL;
    const cJSON *rsha = root ? cJSON_GetObjectItemCaseSensitive(root, "recipe_sha") : NULL;
    const cJSON *rtext = root ? cJSON_GetObjectItemCaseSensitive(root, "recipe") : NULL;
    if (!rc && (!cJSON_IsNumber(ver) || !cJSON_IsString(runj) || !cJSON_IsObject(tables) || !cJSON_IsArray(objlist) ||
                !cJSON_IsString(rsha) || !cJSON_IsString(rtext)))
        rc = err_set(ERR_CORRUPT, "%s: %s lacks required fields", path, EXPORT_JSON);
    if (!rc && ver->valuedouble != EXPORT_FORMAT)
        rc = err_set(ERR_INPUT, "%s uses export format %d; this smelt reads format %d", path, ver->valueint, EXPORT_FORMAT);
    if (!rc) {
        char sha[65];
        sha256_hex(sha, rtext->valuestring, strlen(rtext->valuestring));
        if (strcmp(sha, rsha->valuestring)) rc = err_set(ERR_CORRUPT, "%s: the recipe text does not match its digest", path);
    }
    if (!rc) {
        char existing[RUN_ID_MAX];
        run_row rr;
        if (store_run_load(s, runj->valuestring, &rr) == 0) {
            run_row_free(&rr);
            rc = err_set(ERR_INPUT, "run %s is already in the store %s; nothing to import", runj->valuestring, s->dir);
        } else {
            err_clear();
        }
        (void)existing;
    }
    /* Every object the run needs must be in the archive (verified above) or already here. */
    const cJSON *o;
    if (!rc) cJSON_ArrayForEach(o, objlist) {
        int have = 0;
        for (int i = 0; i < n_objs && !have; i++) have = cJSON_IsString(o) && !strcmp(objs[i].digest, o->valuestring);
        if (!have && !(cJSON_IsString(o) && store_object_present(s, o->valuestring))) {
            rc = err_set(ERR_CORRUPT, "%s lacks object %s of the run; re-export it", path,
                         cJSON_IsString(o) ? o->valuestring : "?");
            break;
        }
    }
    for (int i = 0; i < n_objs && !rc; i++) rc = store_object_install(s, objs[i].path, objs[i].digest);
    if (!rc && !(rc = store_begin(s))) {
        sqlite3_stmt *st;
        if (!(rc = store_prepare(s, &st, "INSERT OR IGNORE INTO recipe(sha, text) VALUES (?, ?)"))) {
            sqlite3_bind_text(st, 1, rsha->valuestring, -1, SQLITE_TRANSIENT);
            sqlite3_bind_text(st, 2, rtext->valuestring, -1, SQLITE_TRANSIENT);
            rc = store_step_done(s, st);
            sqlite3_finalize(st);
        }
        for (size_t i = 0; i < N_RUN_TABLES && !rc; i++) {
            const cJSON *t = cJSON_GetObjectItemCaseSensitive(tables, run_tables[i].table);
            if (t) rc = insert_rows(s, run_tables[i].table, t);
        }
        if (!rc && !(rc = store_prepare(s, &st, "SELECT DISTINCT digest FROM output WHERE run_id = ?"))) {
            sqlite3_bind_text(st, 1, runj->valuestring, -1, SQLITE_TRANSIENT);
            int r;
            while (!rc && (r = store_step_row(s, st, "listing the outputs of the imported run")) == 1)
                rc = store_object_register(s, (const char *)sqlite3_column_text(st, 0));
            if (!rc && r < 0) rc = -1;
            sqlite3_finalize(st);
        }
        if (!rc && !(rc = store_prepare(s, &st, "UPDATE stage SET log_path = ? || substr(log_path, instr(log_path, "
                                                "'/logs/') + 6) WHERE run_id = ? AND instr(log_path, '/logs/') > 0"))) {
            char *logs = xasprintf("%s/logs/", s->dir);
            sqlite3_bind_text(st, 1, logs ? logs : "", -1, SQLITE_TRANSIENT);
            sqlite3_bind_text(st, 2, runj->valuestring, -1, SQLITE_TRANSIENT);
            rc = store_step_done(s, st);
            sqlite3_finalize(st);
            free(logs);
        }
        if (!rc) rc = store_commit(s);
        else store_rollback(s);
    }
    if (!rc) {
        /* Logs are informative; a failure to place them does not undo the import. */
        char *src = xasprintf("%s/logs/%s", stage_dir, runj->valuestring);
        char *dst = xasprintf("%s/logs/%s", s->dir, runj->valuestring);
        if (src && dst && fs_is_dir(src) && !fs_exists(dst) && rename(src, dst))
            log_warn("could not place the logs of run %s: %s", runj->valuestring, strerror(errno));
        free(src);
        free(dst);
        snprintf(run_out, RUN_ID_MAX, "%s", runj->valuestring);
        if (n_objects) *n_objects = n_objs;
    }
    if (a) archive_read_free(a);
    if (stage_dir) fs_rm_rf(stage_dir);
    for (int i = 0; i < n_objs; i++) free(objs[i].path);
    free(objs);
    free(stage_dir);
    free(json);
    cJSON_Delete(root);
    store_gc_unlock(lock);
    return rc;
}
