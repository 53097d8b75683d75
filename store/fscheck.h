/* fscheck.h: is the store's file system safe for SQLite, and in which journal mode? WAL needs
 * shared memory, which only works when every process is on one host, so a store on a network
 * file system uses the rollback journal (POSIX locks, which the file system must keep coherent
 * across nodes); file systems whose locks are not coherent are refused. */
#ifndef SMELT_STORE_FSCHECK_H
#define SMELT_STORE_FSCHECK_H

typedef enum {
    FS_LOCAL = 0, /* one host: WAL mode */
    FS_SHARED,    /* a network or cluster file system with coherent POSIX and flock locks: rollback journal */
    FS_UNSAFE,    /* locks are node-local, missing or unreliable: refused */
} store_fs_class;

typedef struct {
    store_fs_class cls;
    unsigned long magic;  /* statfs f_type */
    char type[64];        /* the type name ("ext4", "nfs4", "fuse.sshfs"); from mountinfo when found */
    char why[320];        /* for FS_SHARED: what it requires; for FS_UNSAFE: the reason */
    int forced;           /* set by SMELT_STORE_FS */
} store_fs_info;

/* Classifies a file system from its statfs magic, its mountinfo type name (may be "" when
 * unknown) and its mount plus super options ("rw,vers=4.2,local_lock=none"). Pure: no I/O. */
void store_fs_classify(unsigned long magic, const char *type, const char *options, store_fs_info *out);

/* Probes the file system holding `path` (an existing file or directory): statfs, then the
 * matching /proc/self/mountinfo line for the type name and options. SMELT_STORE_FS=local or
 * =shared overrides the class (the user vouches for the file system); any other value is ERR_INPUT. */
__attribute__((warn_unused_result)) int store_fs_probe(const char *path, store_fs_info *out);

/* "local", "shared", "unsafe". */
const char *store_fs_class_name(store_fs_class c);

#endif
