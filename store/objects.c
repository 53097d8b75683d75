/* objects.c: content-addressed objects. objects/ab/cdef... holds the bytes whose sha256 is
 * abcdef...; a directory artifact is a manifest object (canonical JSON, sorted paths) that
 * lists the digests of its files. Every read path verifies digests, so a damaged file is
 * reported by name instead of being used. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/error.h"
#include "common/fsutil.h"
#include "common/log.h"
#include "common/strbuf.h"
#include "store/internal.h"
#include "store/store.h"

#define MANIFEST_MAX_BYTES (64u << 20)

char *store_object_path(const store *s, const char *digest) {
    return xasprintf("%s/objects/%.2s/%s", s->dir, digest, digest + 2);
}

int store_object_present(const store *s, const char *digest) {
    char *p = store_object_path(s, digest);
    int ok = p && fs_exists(p);
    free(p);
    return ok;
}

static int tmp_counter;

/* A unique scratch path under tmp/ for this process. */
static char *tmp_name(const store *s, const char *what) {
    return xasprintf("%s/tmp/%s-%ld-%d", s->dir, what, (long)getpid(), tmp_counter++);
}

/* Renames a complete, fsynced file to its object path (or drops it when the object exists). */
int store_object_install(const store *s, const char *tmp, const char *digest) {
    char *dst = store_object_path(s, digest);
    if (!dst) return -1;
    int rc = 0;
    char *dir = xasprintf("%s/objects/%.2s", s->dir, digest);
    if (!dir || fs_mkdir_p(dir, 0755)) rc = -1;
    else if (fs_exists(dst)) {
        unlink(tmp);
    } else {
        chmod(tmp, 0444);
        if (rename(tmp, dst)) rc = err_errno("cannot move %s to %s", tmp, dst);
        else rc = fs_fsync_path(dir);
    }
    free(dir);
    free(dst);
    return rc;
}

/* Copies src to a new scratch file while hashing it; the copy is fsynced. */
static int copy_hashing(const char *dst, const char *src, char digest[65], uint64_t *bytes) {
    int in = open(src, O_RDONLY | O_CLOEXEC);
    if (in < 0) return err_errno("cannot open %s", src);
    int out = open(dst, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (out < 0) {
        close(in);
        return err_errno("cannot create %s", dst);
    }
    sha256_ctx *c = sha256_new();
    char *buf = xmalloc(1 << 20);
    int rc = (c && buf) ? 0 : -1;
    uint64_t total = 0;
    while (!rc) {
        ssize_t n = read(in, buf, 1 << 20);
        if (n < 0) {
            if (errno == EINTR) continue;
            rc = err_errno("cannot read %s", src);
        } else if (n == 0) {
            break;
        } else {
            sha256_update(c, buf, (size_t)n);
            total += (uint64_t)n;
            if (fs_write_all(out, buf, (size_t)n)) rc = err_errno("cannot write %s", dst);
        }
    }
    if (!rc && fsync(out)) rc = err_errno("cannot fsync %s", dst);
    close(in);
    close(out);
    free(buf);
    if (rc) {
        sha256_free(c);
        unlink(dst);
        return -1;
    }
    sha256_final_hex(c, digest);
    if (bytes) *bytes = total;
    return 0;
}

int store_put_file(store *s, const char *src, int move, char digest[SHA256_HEX_LEN + 1], uint64_t *bytes) {
    if (move) {
        /* The source is scratch of this store (same file system): hash it, make it durable,
         * and rename it into place without copying. */
        if (sha256_file(digest, src, bytes) || fs_fsync_path(src)) return -1;
        char *dst = store_object_path(s, digest);
        char *dir = xasprintf("%s/objects/%.2s", s->dir, digest);
        int rc = (!dst || !dir || fs_mkdir_p(dir, 0755)) ? -1 : 0;
        if (!rc) {
            if (fs_exists(dst)) unlink(src);
            else {
                chmod(src, 0444);
                if (rename(src, dst) == 0) rc = fs_fsync_path(dir);
                else if (errno == EXDEV) move = 0;
                else rc = err_errno("cannot move %s to %s", src, dst);
            }
        }
        free(dst);
        free(dir);
        if (rc || move) return rc;
    }
    char *tmp = tmp_name(s, "obj");
    if (!tmp) return -1;
    int rc = copy_hashing(tmp, src, digest, bytes);
    if (!rc) rc = store_object_install(s, tmp, digest);
    if (rc) unlink(tmp);
    free(tmp);
    return rc;
}

/* ---- manifests ---- */

typedef struct {
    store *s;      /* NULL: only hash (store_content_digest) */
    int move;
    strbuf json;
    int n;
    uint64_t total;
} put_dir_ctx;

static int put_dir_file(const char *rel, const char *abs, void *vctx) {
    put_dir_ctx *c = vctx;
    char digest[65];
    uint64_t bytes = 0;
    struct stat st;
    if (stat(abs, &st)) return err_errno("cannot stat %s", abs);
    int exec = (st.st_mode & 0111) != 0;
    if (strlen(rel) >= sizeof(((manifest_entry *)0)->path))
        return err_set(ERR_INPUT, "output file path '%s' is too long (at most 511 bytes)", rel);
    if (c->s ? store_put_file(c->s, abs, c->move, digest, &bytes) : sha256_file(digest, abs, &bytes)) return -1;
    if (c->n++ && sb_putc(&c->json, ',')) return -1;
    if (sb_printf(&c->json, "{\"bytes\":%llu,\"digest\":\"%s\",\"exec\":%s,\"path\":", (unsigned long long)bytes,
                  digest, exec ? "true" : "false") ||
        sb_json_string(&c->json, rel) || sb_putc(&c->json, '}'))
        return -1;
    c->total += bytes;
    return 0;
}

int store_put_dir(store *s, const char *dir, int move, char digest[SHA256_HEX_LEN + 1], uint64_t *bytes) {
    put_dir_ctx c = {.s = s, .move = move};
    if (sb_puts(&c.json, "{\"files\":[")) return -1;
    if (fs_walk_files(dir, put_dir_file, &c) || sb_puts(&c.json, "],\"smelt_manifest\":1}")) {
        sb_free(&c.json);
        return -1;
    }
    /* The manifest is an object like any other. */
    sha256_hex(digest, c.json.buf, c.json.len);
    char *tmp = tmp_name(s, "manifest");
    int rc = tmp ? fs_write_atomic(tmp, c.json.buf, c.json.len) : -1;
    if (!rc) rc = store_object_install(s, tmp, digest);
    if (rc && tmp) unlink(tmp);
    free(tmp);
    sb_free(&c.json);
    if (bytes) *bytes = c.total;
    return rc;
}

int store_content_digest(const char *path, char digest[SHA256_HEX_LEN + 1]) {
    if (!fs_is_dir(path)) return sha256_file(digest, path, NULL);
    put_dir_ctx c = {.s = NULL};
    if (sb_puts(&c.json, "{\"files\":[") || fs_walk_files(path, put_dir_file, &c) ||
        sb_puts(&c.json, "],\"smelt_manifest\":1}")) {
        sb_free(&c.json);
        return -1;
    }
    sha256_hex(digest, c.json.buf, c.json.len);
    sb_free(&c.json);
    return 0;
}

int store_object_verify(const store *s, const char *digest) {
    char *p = store_object_path(s, digest);
    if (!p) return -1;
    char got[65];
    int rc = 0;
    if (!fs_exists(p)) {
        rc = err_set(ERR_CORRUPT, "object %s is missing from the store (%s); it was deleted by hand. Re-run the "
                     "stage that produced it: it is recomputed because its output is gone", digest, p);
    } else if (sha256_file(got, p, NULL)) {
        rc = -1;
    } else if (strcmp(got, digest)) {
        rc = err_set(ERR_CORRUPT, "digest mismatch: object %s (%s) now hashes to %s; the file was modified or "
                     "damaged. Delete it and re-run: the stage that produced it is recomputed", digest, p, got);
    }
    free(p);
    return rc;
}

static int safe_rel_path(const char *p) {
    if (!p[0] || p[0] == '/') return 0;
    for (const char *c = p; *c;) {
        const char *e = strchr(c, '/');
        size_t n = e ? (size_t)(e - c) : strlen(c);
        if (n == 0 || (n == 1 && c[0] == '.') || (n == 2 && c[0] == '.' && c[1] == '.')) return 0;
        c += n + (e ? 1 : 0);
        if (e && !*c) return 0;
    }
    return 1;
}

static int manifest_parse(const char *digest, const char *text, manifest *m) {
    memset(m, 0, sizeof *m);
    cJSON *root = cJSON_Parse(text);
    const cJSON *files = root ? cJSON_GetObjectItemCaseSensitive(root, "files") : NULL;
    const cJSON *ver = root ? cJSON_GetObjectItemCaseSensitive(root, "smelt_manifest") : NULL;
    if (!cJSON_IsArray(files) || !cJSON_IsNumber(ver) || ver->valueint != 1) {
        cJSON_Delete(root);
        return err_set(ERR_CORRUPT, "object %s is not a smelt manifest (a directory artifact was expected)", digest);
    }
    int n = cJSON_GetArraySize(files);
    m->files = xcalloc((size_t)n + 1, sizeof *m->files);
    if (!m->files) {
        cJSON_Delete(root);
        return -1;
    }
    const cJSON *f;
    cJSON_ArrayForEach(f, files) {
        const cJSON *path = cJSON_GetObjectItemCaseSensitive(f, "path");
        const cJSON *d = cJSON_GetObjectItemCaseSensitive(f, "digest");
        const cJSON *b = cJSON_GetObjectItemCaseSensitive(f, "bytes");
        const cJSON *x = cJSON_GetObjectItemCaseSensitive(f, "exec");
        if (!cJSON_IsString(path) || !cJSON_IsString(d) || !cJSON_IsNumber(b) || !sha256_is_hex(d->valuestring) ||
            strlen(path->valuestring) >= sizeof m->files[0].path || !safe_rel_path(path->valuestring) || !(b->valuedouble >= 0 && b->valuedouble < 9e18)) {
            cJSON_Delete(root);
            manifest_free(m);
            return err_set(ERR_CORRUPT, "manifest %s has a malformed entry (bad path, digest or size)", digest);
        }
        manifest_entry *e = &m->files[m->n_files++];
        snprintf(e->path, sizeof e->path, "%s", path->valuestring);
        memcpy(e->digest, d->valuestring, 65);
        e->bytes = (uint64_t)b->valuedouble;
        e->exec = cJSON_IsTrue(x);
        m->bytes += e->bytes;
    }
    cJSON_Delete(root);
    return 0;
}

int store_manifest_read(const store *s, const char *digest, manifest *m) {
    memset(m, 0, sizeof *m);
    char *p = store_object_path(s, digest);
    char *text = NULL;
    size_t len = 0;
    int rc = p ? 0 : -1;
    if (!rc && !fs_exists(p))
        rc = err_set(ERR_CORRUPT, "artifact %s is missing from the store (%s); re-run the stage that produced it",
                     digest, p);
    if (!rc) rc = fs_read_file(p, MANIFEST_MAX_BYTES, &text, &len);
    if (!rc) {
        char got[65];
        sha256_hex(got, text, len);
        if (strcmp(got, digest))
            rc = err_set(ERR_CORRUPT, "digest mismatch: manifest object %s (%s) now hashes to %s; the file was "
                         "modified or damaged. Delete it and re-run the stage that produced it", digest, p, got);
    }
    if (!rc) rc = manifest_parse(digest, text, m);
    free(text);
    free(p);
    return rc;
}

void manifest_free(manifest *m) {
    free(m->files);
    memset(m, 0, sizeof *m);
}

int store_object_is_manifest(const store *s, const char *digest) {
    char *p = store_object_path(s, digest);
    char head[16] = {0};
    FILE *f = p ? fopen(p, "rb") : NULL;
    size_t n = f ? fread(head, 1, 10, f) : 0;
    if (f) fclose(f);
    free(p);
    return n == 10 && !memcmp(head, "{\"files\":[", 10);
}

/* Creates the parent directories of dst/rel. */
static int mkdir_parents(const char *path) {
    char *d = xstrdup(path);
    if (!d) return -1;
    char *slash = strrchr(d, '/');
    int rc = 0;
    if (slash) {
        *slash = 0;
        rc = fs_mkdir_p(d, 0755);
    }
    free(d);
    return rc;
}

int store_materialize(const store *s, const char *digest, const char *dst, int link_ok) {
    manifest m;
    if (store_manifest_read(s, digest, &m)) return -1;
    int rc = fs_mkdir_p(dst, 0755);
    for (int i = 0; i < m.n_files && !rc; i++) {
        manifest_entry *e = &m.files[i];
        char *obj = store_object_path(s, e->digest), *out = fs_join(dst, e->path);
        if (!obj || !out) rc = -1;
        else if (mkdir_parents(out)) rc = -1;
        else if (link_ok) {
            rc = store_object_verify(s, e->digest);
            if (!rc && link(obj, out)) rc = fs_copy_file(out, obj);
        } else {
            char got[65];
            if (!fs_exists(obj))
                rc = store_object_verify(s, e->digest);
            else if (!(rc = copy_hashing(out, obj, got, NULL)) && strcmp(got, e->digest))
                rc = err_set(ERR_CORRUPT, "digest mismatch: object %s (file '%s' of artifact %s, %s) now hashes to "
                             "%s; the file was modified or damaged. Delete it and re-run: the stage that produced it "
                             "is recomputed", e->digest, e->path, digest, obj, got);
            if (!rc) chmod(out, e->exec ? 0755 : 0644);
        }
        if (rc && err_kind_get() == ERR_CORRUPT && !strstr(err_msg(), e->path))
            err_prefix("file '%s' of artifact %s: ", e->path, digest);
        free(obj);
        free(out);
    }
    manifest_free(&m);
    return rc;
}

int store_artifact_file(const store *s, const char *digest, const char *name, char **path) {
    *path = NULL;
    manifest m;
    if (store_manifest_read(s, digest, &m)) return -1;
    int rc = err_set(ERR_INPUT, "artifact %s has no file '%s'", digest, name);
    for (int i = 0; i < m.n_files; i++) {
        if (strcmp(m.files[i].path, name)) continue;
        err_clear();
        rc = store_object_verify(s, m.files[i].digest);
        if (rc) err_prefix("file '%s' of artifact %s: ", name, digest);
        else *path = store_object_path(s, m.files[i].digest);
        if (!rc && !*path) rc = -1;
        break;
    }
    manifest_free(&m);
    return rc;
}

int store_object_register(store *s, const char *digest) {
    sqlite3_stmt *st = NULL;
    int rc = 0;
    if (store_object_is_manifest(s, digest)) {
        manifest m;
        if (store_manifest_read(s, digest, &m)) return -1;
        if (store_prepare(s, &st, "INSERT OR IGNORE INTO object(digest, type, bytes, created_at) "
                                  "VALUES (?, ?, ?, " STORE_NOW_SQL ")"))
            rc = -1;
        for (int i = -1; i < m.n_files && !rc; i++) {
            sqlite3_reset(st);
            sqlite3_bind_text(st, 1, i < 0 ? digest : m.files[i].digest, -1, SQLITE_STATIC);
            sqlite3_bind_text(st, 2, i < 0 ? "manifest" : "file", -1, SQLITE_STATIC);
            sqlite3_bind_int64(st, 3, (sqlite3_int64)(i < 0 ? m.bytes : m.files[i].bytes));
            rc = store_step_done(s, st);
        }
        sqlite3_finalize(st);
        st = NULL;
        if (!rc && store_prepare(s, &st, "INSERT OR IGNORE INTO manifest_entry(manifest, path, digest, bytes) "
                                         "VALUES (?, ?, ?, ?)"))
            rc = -1;
        for (int i = 0; i < m.n_files && !rc; i++) {
            sqlite3_reset(st);
            sqlite3_bind_text(st, 1, digest, -1, SQLITE_STATIC);
            sqlite3_bind_text(st, 2, m.files[i].path, -1, SQLITE_STATIC);
            sqlite3_bind_text(st, 3, m.files[i].digest, -1, SQLITE_STATIC);
            sqlite3_bind_int64(st, 4, (sqlite3_int64)m.files[i].bytes);
            rc = store_step_done(s, st);
        }
        sqlite3_finalize(st);
        manifest_free(&m);
        return rc;
    }
    char *p = store_object_path(s, digest);
    struct stat sb;
    if (!p || stat(p, &sb)) {
        free(p);
        return err_set(ERR_CORRUPT, "object %s is missing from the store", digest);
    }
    free(p);
    if (store_prepare(s, &st, "INSERT OR IGNORE INTO object(digest, type, bytes, created_at) "
                              "VALUES (?, 'file', ?, " STORE_NOW_SQL ")"))
        return -1;
    sqlite3_bind_text(st, 1, digest, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)sb.st_size);
    rc = store_step_done(s, st);
    sqlite3_finalize(st);
    return rc;
}

int store_gc_lock(const store *s, int exclusive) {
    char *p = xasprintf("%s/locks/gc.lock", s->dir);
    int fd = p ? open(p, O_RDWR | O_CREAT | O_CLOEXEC, 0644) : -1;
    if (p && fd < 0) err_errno("cannot open %s", p);
    free(p);
    if (fd >= 0 && flock(fd, exclusive ? LOCK_EX : LOCK_SH)) {
        err_errno("cannot take the store's gc lock");
        close(fd);
        fd = -1;
    }
    return fd;
}

void store_gc_unlock(int fd) {
    if (fd < 0) return;
    flock(fd, LOCK_UN);
    close(fd);
}
