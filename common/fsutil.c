/* fsutil.c: file-system helpers. Every function reports failures through the error slot. */
#include "common/fsutil.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/error.h"
#include "common/strbuf.h"

/* Opens path read-only and stats it; 0, or -1 with nothing left open. */
static int open_stat(const char *path, int *fd, struct stat *st) {
    *fd = open(path, O_RDONLY | O_CLOEXEC);
    if (*fd < 0) return err_errno("cannot open %s", path);
    if (fstat(*fd, st)) {
        close(*fd);
        return err_errno("cannot stat %s", path);
    }
    return 0;
}

int fs_map_file(const char *path, const char *kind, void **map, size_t *len) {
    *map = NULL;
    *len = 0;
    int fd;
    struct stat st;
    if (open_stat(path, &fd, &st)) return -1;
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return err_set(ERR_INPUT, "%s is not a regular file; expected %s", path, kind);
    }
    size_t n = (size_t)st.st_size;
    if (n > 0) {
        void *m = mmap(NULL, n, PROT_READ, MAP_PRIVATE, fd, 0);
        if (m == MAP_FAILED) {
            close(fd);
            return err_errno("cannot mmap %s (%zu bytes)", path, n);
        }
        *map = m;
    }
    close(fd);
    *len = n;
    return 0;
}

void fs_unmap(void *map, size_t len) {
    if (map) munmap(map, len);
}

int fs_read_file(const char *path, size_t max_bytes, char **out, size_t *len) {
    *out = NULL;
    int fd;
    struct stat st;
    if (open_stat(path, &fd, &st)) return -1;
    if (S_ISDIR(st.st_mode)) {
        close(fd);
        return err_set(ERR_INPUT, "%s is a directory, expected a file", path);
    }
    if (max_bytes && (uint64_t)st.st_size > max_bytes) {
        close(fd);
        return err_set(ERR_INPUT, "%s is %lld bytes, more than the limit of %zu bytes", path,
                       (long long)st.st_size, max_bytes);
    }
    strbuf sb = STRBUF_INIT;
    if (sb_grow(&sb, st.st_size > 0 ? (size_t)st.st_size : 4096)) {
        close(fd);
        return -1;
    }
    for (;;) {
        if (sb_grow(&sb, 65536)) goto fail;
        ssize_t n = read(fd, sb.buf + sb.len, sb.cap - sb.len - 1);
        if (n < 0) {
            if (errno == EINTR) continue;
            err_errno("cannot read %s", path);
            goto fail;
        }
        if (n == 0) break;
        sb.len += (size_t)n;
        if (max_bytes && sb.len > max_bytes) {
            err_set(ERR_INPUT, "%s is more than the limit of %zu bytes", path, max_bytes);
            goto fail;
        }
    }
    sb.buf[sb.len] = 0;
    close(fd);
    if (len) *len = sb.len;
    *out = sb.buf;
    return 0;
fail:
    close(fd);
    sb_free(&sb);
    return -1;
}

int fs_write_all(int fd, const void *data, size_t n) {
    const char *p = data;
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

int fs_atomic_open(fs_atomic *a, const char *path) {
    a->fd = -1;
    a->path = xstrdup(path);
    a->tmp = a->path ? xasprintf("%s.tmp.%ld", path, (long)getpid()) : NULL;
    if (a->tmp) a->fd = open(a->tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (a->fd >= 0) return 0;
    if (a->tmp) err_errno("cannot create %s", a->tmp);
    free(a->tmp);
    free(a->path);
    a->tmp = a->path = NULL;
    return -1;
}

void fs_atomic_abort(fs_atomic *a) {
    if (a->fd >= 0) close(a->fd);
    if (a->tmp) unlink(a->tmp);
    free(a->tmp);
    free(a->path);
    a->fd = -1;
    a->tmp = a->path = NULL;
}

int fs_atomic_commit(fs_atomic *a) {
    int rc = 0;
    if (fsync(a->fd)) rc = err_errno("cannot write %s", a->tmp);
    if (close(a->fd) && !rc) rc = err_errno("cannot write %s", a->tmp);
    a->fd = -1;
    if (!rc && rename(a->tmp, a->path)) rc = err_errno("cannot rename %s to %s", a->tmp, a->path);
    if (!rc) rc = fs_fsync_parent(a->path);
    if (rc && a->tmp) unlink(a->tmp);
    free(a->tmp);
    free(a->path);
    a->tmp = a->path = NULL;
    return rc;
}

int fs_write_atomic(const char *path, const void *data, size_t n) {
    fs_atomic a;
    if (fs_atomic_open(&a, path)) return -1;
    if (fs_write_all(a.fd, data, n)) {
        err_errno("cannot write %s", a.tmp);
        fs_atomic_abort(&a);
        return -1;
    }
    return fs_atomic_commit(&a);
}

int fs_mkdir_p(const char *path, unsigned mode) {
    char buf[PATH_MAX];
    size_t n = strlen(path);
    if (n == 0 || n >= sizeof buf) return err_set(ERR_INPUT, "bad directory path '%s'", path);
    memcpy(buf, path, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (buf[i] == '/' || buf[i] == 0) {
            char c = buf[i];
            buf[i] = 0;
            if (mkdir(buf, mode) && errno != EEXIST) return err_errno("cannot create directory %s", buf);
            buf[i] = c;
        }
    }
    if (!fs_is_dir(path)) return err_set(ERR_IO, "%s exists and is not a directory", path);
    return 0;
}

int fs_rm_rf(const char *path) {
    struct stat st;
    if (lstat(path, &st)) return errno == ENOENT ? 0 : err_errno("cannot stat %s", path);
    if (!S_ISDIR(st.st_mode)) {
        if (unlink(path) && errno != ENOENT) return err_errno("cannot remove %s", path);
        return 0;
    }
    DIR *d = opendir(path);
    if (!d) return err_errno("cannot open directory %s", path);
    struct dirent *e;
    int rc = 0;
    while (!rc && (e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        char *sub = fs_join(path, e->d_name);
        rc = sub ? fs_rm_rf(sub) : -1;
        free(sub);
    }
    closedir(d);
    if (!rc && rmdir(path) && errno != ENOENT) return err_errno("cannot remove directory %s", path);
    return rc;
}

int fs_fsync_path(const char *path) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return err_errno("cannot open %s for fsync", path);
    int rc = fsync(fd);
    close(fd);
    /* Some file systems refuse fsync on directories (EINVAL); that is not data loss. */
    if (rc && errno != EINVAL && errno != EROFS) return err_errno("cannot fsync %s", path);
    return 0;
}

int fs_fsync_parent(const char *path) {
    char buf[PATH_MAX];
    size_t n = strlen(path);
    if (n >= sizeof buf) return err_set(ERR_INPUT, "path too long: %s", path);
    memcpy(buf, path, n + 1);
    char *slash = strrchr(buf, '/');
    if (!slash) return fs_fsync_path(".");
    if (slash == buf) slash[1] = 0;
    else *slash = 0;
    return fs_fsync_path(buf);
}

int fs_exists(const char *path) {
    struct stat st;
    return lstat(path, &st) == 0;
}

int fs_is_dir(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

int fs_copy_file(const char *dst, const char *src) {
    int in = open(src, O_RDONLY | O_CLOEXEC);
    if (in < 0) return err_errno("cannot open %s", src);
    int out = open(dst, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (out < 0) {
        close(in);
        return err_errno("cannot create %s", dst);
    }
    char *buf = xmalloc(1 << 20);
    int rc = buf ? 0 : -1;
    while (!rc) {
        ssize_t n = read(in, buf, 1 << 20);
        if (n < 0) {
            if (errno == EINTR) continue;
            rc = err_errno("cannot read %s", src);
        } else if (n == 0) {
            break;
        } else if (fs_write_all(out, buf, (size_t)n)) {
            rc = err_errno("cannot write %s", dst);
        }
    }
    if (!rc && fsync(out)) rc = err_errno("cannot fsync %s", dst);
    free(buf);
    close(in);
    close(out);
    return rc;
}

static int tree_bytes_fn(const char *rel, const char *abs, void *ctx) {
    struct stat st;
    (void)rel;
    if (stat(abs, &st)) return err_errno("cannot stat %s", abs);
    *(uint64_t *)ctx += (uint64_t)st.st_size;
    return 0;
}

int fs_tree_bytes(const char *path, uint64_t *bytes) {
    *bytes = 0;
    if (!fs_is_dir(path)) return tree_bytes_fn(path, path, bytes);
    return fs_walk_files(path, tree_bytes_fn, bytes);
}

char *fs_join(const char *a, const char *b) {
    size_t la = strlen(a);
    if (la && a[la - 1] == '/') return xasprintf("%s%s", a, b);
    return xasprintf("%s/%s", a, b);
}

char *fs_realpath(const char *path) {
    char *p = realpath(path, NULL);
    if (!p) err_errno("cannot resolve %s", path);
    return p;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* Recursion depth is bounded by the directory depth; entries are sorted per directory so
 * that the visit order, and everything hashed from it, is deterministic. */
static int walk_rec(const char *root, const char *rel, fs_walk_fn fn, void *ctx) {
    char *dir = rel[0] ? fs_join(root, rel) : xstrdup(root);
    if (!dir) return -1;
    DIR *d = opendir(dir);
    if (!d) {
        err_errno("cannot open directory %s", dir);
        free(dir);
        return -1;
    }
    char **names = NULL;
    size_t n = 0, cap = 0;
    struct dirent *e;
    int rc = 0;
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 16;
            char **nn = xrealloc(names, cap * sizeof *names);
            if (!nn) {
                rc = -1;
                break;
            }
            names = nn;
        }
        if (!(names[n] = xstrdup(e->d_name))) {
            rc = -1;
            break;
        }
        n++;
    }
    closedir(d);
    if (!rc && n) qsort(names, n, sizeof *names, cmp_str);
    for (size_t i = 0; i < n && !rc; i++) {
        char *sub_rel = rel[0] ? xasprintf("%s/%s", rel, names[i]) : xstrdup(names[i]);
        char *sub_abs = sub_rel ? fs_join(root, sub_rel) : NULL;
        struct stat st;
        if (!sub_abs) rc = -1;
        else if (lstat(sub_abs, &st)) rc = err_errno("cannot stat %s", sub_abs);
        else if (S_ISDIR(st.st_mode)) rc = walk_rec(root, sub_rel, fn, ctx);
        else if (S_ISREG(st.st_mode)) rc = fn(sub_rel, sub_abs, ctx);
        else if (S_ISLNK(st.st_mode)) {
            /* A link to a regular file is taken as that file; anything else is refused. */
            struct stat tgt;
            if (stat(sub_abs, &tgt) == 0 && S_ISREG(tgt.st_mode)) rc = fn(sub_rel, sub_abs, ctx);
            else rc = err_set(ERR_INPUT, "%s is a symbolic link to something that is not a regular file", sub_abs);
        } else
            rc = err_set(ERR_INPUT, "%s is not a regular file or directory", sub_abs);
        free(sub_rel);
        free(sub_abs);
    }
    for (size_t i = 0; i < n; i++) free(names[i]);
    free(names);
    free(dir);
    return rc;
}

int fs_walk_files(const char *root, fs_walk_fn fn, void *ctx) { return walk_rec(root, "", fn, ctx); }

char *fs_dir_of(const char *path) {
    const char *slash = strrchr(path, '/');
    if (!slash) return xstrdup(".");
    if (slash == path) return xstrdup("/");
    return xstrndup(path, (size_t)(slash - path));
}
