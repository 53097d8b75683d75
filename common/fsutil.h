/* fsutil.h: file-system helpers with error-slot reporting: whole-file reads, atomic writes
 * (temporary name, fsync, rename, fsync of the directory), recursive mkdir and removal. */
#ifndef SMELT_FSUTIL_H
#define SMELT_FSUTIL_H

#include <stddef.h>
#include <stdint.h>

/* Reads a whole file into a NUL-terminated buffer (caller frees). Fails with ERR_INPUT
 * when the file is larger than max_bytes (0: no limit). */
int fs_read_file(const char *path, size_t max_bytes, char **out, size_t *len);

/* Maps a regular file read-only (private mapping): *map is NULL for an empty file. `kind` says
 * what was expected ("a .gguf file") when path is not a regular file. Unmap with fs_unmap. */
int fs_map_file(const char *path, const char *kind, void **map, size_t *len);
void fs_unmap(void *map, size_t len); /* NULL is a no-op */

/* write(2) until all n bytes are written (retrying on EINTR); 0 or -1 with errno set. */
int fs_write_all(int fd, const void *data, size_t n);

/* A file written atomically, for writers that stream: fs_atomic_open creates path.tmp.<pid>
 * (the caller writes to a->fd); fs_atomic_commit fsyncs and closes it, renames it over path and
 * fsyncs the directory, so that after a crash path is the old file or the whole new one;
 * fs_atomic_abort closes and removes it. Both free a's strings; `path` is copied. */
typedef struct {
    int fd;
    char *tmp, *path;
} fs_atomic;
int fs_atomic_open(fs_atomic *a, const char *path);
int fs_atomic_commit(fs_atomic *a);
void fs_atomic_abort(fs_atomic *a);

/* Writes data to path atomically (fs_atomic_open, one write, fs_atomic_commit). */
int fs_write_atomic(const char *path, const void *data, size_t n);

int fs_mkdir_p(const char *path, unsigned mode);
int fs_rm_rf(const char *path);          /* removes a file or a tree; missing is not an error */
int fs_fsync_path(const char *path);     /* fsync of a file or directory */
int fs_fsync_parent(const char *path);   /* fsync of the directory holding path */
int fs_exists(const char *path);         /* 1 if anything exists at path */
int fs_is_dir(const char *path);
/* Copies src to dst (dst created with mode 0644, fsynced). */
int fs_copy_file(const char *dst, const char *src);
/* Total bytes of the regular files under a path (a file: its size). */
int fs_tree_bytes(const char *path, uint64_t *bytes);
/* The folder of a path in a new string (caller frees): "a/b/c" -> "a/b", "c" -> ".", "/c" -> "/". */
char *fs_dir_of(const char *path);
/* "a" + "/" + "b" in a new string (caller frees). */
char *fs_join(const char *a, const char *b);
/* The absolute, symlink-free form of an existing path (caller frees). */
char *fs_realpath(const char *path);

/* Visits the regular files under root in sorted (strcmp) order of their relative paths. */
typedef int (*fs_walk_fn)(const char *relpath, const char *abspath, void *ctx);
int fs_walk_files(const char *root, fs_walk_fn fn, void *ctx);

#endif
