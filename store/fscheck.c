/* fscheck.c: classification of the store's file system (statfs magic, mountinfo type and
 * options) into local (WAL), shared with coherent locks (rollback journal) or unsafe (refused).
 * The table is the policy; store_fs_classify is pure so that tests can feed it any mount. */
#include "store/fscheck.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/sysmacros.h>

#include "common/error.h"

typedef struct {
    unsigned long magic;  /* 0: match by name only */
    const char *name;     /* mountinfo type name (prefix match when it ends with '.') */
    store_fs_class cls;
    const char *why;
} fs_rule;

#define NFS_WHY "NFS: needs working POSIX and flock locks across clients (NFSv4, or NFSv3 with lockd; not mounted " \
                "with nolock or local_lock)"

static const fs_rule fs_rules[] = {
    {0xEF53, "ext4", FS_LOCAL, ""},
    {0x58465342, "xfs", FS_LOCAL, ""},
    {0x9123683E, "btrfs", FS_LOCAL, ""},
    {0x01021994, "tmpfs", FS_LOCAL, ""},
    {0x794C7630, "overlay", FS_LOCAL, ""},
    {0x2FC12FC1, "zfs", FS_LOCAL, ""},
    {0xF2F52010, "f2fs", FS_LOCAL, ""},
    {0x52654973, "reiserfs", FS_LOCAL, ""},
    {0x3153464A, "jfs", FS_LOCAL, ""},
    {0x858458F6, "ramfs", FS_LOCAL, ""},
    {0xCA451A4E, "bcachefs", FS_LOCAL, ""},
    {0x00004D44, "vfat", FS_LOCAL, ""},
    {0x2011BAB0, "exfat", FS_LOCAL, ""},
    {0x5346544E, "ntfs", FS_LOCAL, ""},
    {0x00006969, "nfs", FS_SHARED, NFS_WHY},
    {0x0BD00BD0, "lustre", FS_SHARED, "Lustre: needs the flock mount option (coherent locks across clients)"},
    {0x47504653, "gpfs", FS_SHARED, "GPFS/Spectrum Scale: POSIX locks are coherent across nodes"},
    {0x00C36400, "ceph", FS_SHARED, "CephFS: POSIX locks are coherent across clients"},
    {0x01161970, "gfs2", FS_SHARED, "GFS2: cluster locks through DLM"},
    {0x7461636F, "ocfs2", FS_SHARED, "OCFS2: cluster locks through DLM"},
    {0x19830326, "beegfs", FS_UNSAFE,
     "BeeGFS keeps POSIX and flock locks local to each client unless tuneUseGlobalFileLocks=true"},
    {0x0000517B, "smbfs", FS_UNSAFE, "SMB/CIFS byte-range locks do not give SQLite the locking it needs"},
    {0xFF534D42, "cifs", FS_UNSAFE, "SMB/CIFS byte-range locks do not give SQLite the locking it needs"},
    {0xFE534D42, "smb3", FS_UNSAFE, "SMB/CIFS byte-range locks do not give SQLite the locking it needs"},
    {0x01021997, "9p", FS_UNSAFE, "9p does not keep locks coherent across clients"},
    {0x5346414F, "afs", FS_UNSAFE, "AFS does not support the byte-range locks SQLite uses"},
    {0x6B414653, "afs", FS_UNSAFE, "AFS does not support the byte-range locks SQLite uses"},
    {0x20030528, "pvfs2", FS_UNSAFE, "OrangeFS/PVFS2 has no POSIX locks"},
    {0x73757245, "coda", FS_UNSAFE, "Coda has no coherent locks"},
    {0xAAD7AAEA, "panfs", FS_UNSAFE, "PanFS lock coherence is not known to smelt"},
    /* Names only (FUSE and types whose magic varies). */
    {0, "nfs4", FS_SHARED, NFS_WHY},
    {0, "fuse.glusterfs", FS_SHARED, "GlusterFS: POSIX locks are coherent across clients"},
    {0, "fuse.ceph-fuse", FS_SHARED, "CephFS: POSIX locks are coherent across clients"},
    {0, "fuse.juicefs", FS_SHARED, "JuiceFS: POSIX and flock locks are coherent across clients"},
    {0, "fuse.fuse-overlayfs", FS_LOCAL, ""},
    {0, "fuseblk", FS_LOCAL, ""},
    {0, "wekafs", FS_SHARED, "WekaFS: POSIX locks are coherent across clients"},
    {0, "fuse.", FS_UNSAFE, "a FUSE file system (sshfs, s3fs, gcsfuse, rclone...) without known coherent locks"},
};

/* Any other FUSE file system, whatever its name. */
static const fs_rule fuse_rule = {0, "fuse", FS_UNSAFE, "a FUSE file system without known coherent locks"};

#define FUSE_MAGIC 0x65735546UL

const char *store_fs_class_name(store_fs_class c) {
    return c == FS_LOCAL ? "local" : c == FS_SHARED ? "shared" : "unsafe";
}

/* 1 when the comma-separated option list holds `opt` exactly. */
static int has_option(const char *options, const char *opt) {
    size_t n = strlen(opt);
    for (const char *p = options; p && *p;) {
        const char *e = strchr(p, ',');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        if (len == n && !strncmp(p, opt, n)) return 1;
        p = e ? e + 1 : NULL;
    }
    return 0;
}

static int name_matches(const char *rule, const char *type) {
    size_t n = strlen(rule);
    if (n && rule[n - 1] == '.') return !strncmp(type, rule, n);
    return !strcmp(type, rule);
}

void store_fs_classify(unsigned long magic, const char *type, const char *options, store_fs_info *out) {
    memset(out, 0, sizeof *out);
    out->magic = magic;
    snprintf(out->type, sizeof out->type, "%s", type && type[0] ? type : "");
    if (!options) options = "";
    const fs_rule *rule = NULL;
    /* The type name decides for FUSE (one magic for every FUSE file system) and when the
     * magic is unknown; otherwise the magic, which the kernel reports whatever the name. */
    if (magic != FUSE_MAGIC)
        for (size_t i = 0; i < sizeof fs_rules / sizeof *fs_rules && !rule; i++)
            if (fs_rules[i].magic && fs_rules[i].magic == magic) rule = &fs_rules[i];
    if (!rule && out->type[0])
        for (size_t i = 0; i < sizeof fs_rules / sizeof *fs_rules && !rule; i++)
            if (name_matches(fs_rules[i].name, out->type)) rule = &fs_rules[i];
    if (!rule && (magic == FUSE_MAGIC || !strcmp(out->type, "fuse"))) rule = &fuse_rule;
    if (!out->type[0]) snprintf(out->type, sizeof out->type, "%s", rule ? rule->name : "unknown");
    if (!rule) {
        /* An unknown type is taken as local: the network and cluster file systems in use are
         * in the table, and refusing every unknown local file system would help nobody. */
        out->cls = FS_LOCAL;
        snprintf(out->why, sizeof out->why, "file system type 0x%lx (%s) is not in smelt's table; treated as local "
                 "(one host)", magic, out->type);
        return;
    }
    out->cls = rule->cls;
    snprintf(out->why, sizeof out->why, "%s", rule->why);
    int nfs = !strcmp(rule->name, "nfs") || !strcmp(rule->name, "nfs4");
    if (nfs && (has_option(options, "nolock") || has_option(options, "local_lock=all") ||
                has_option(options, "local_lock=posix") || has_option(options, "local_lock=flock"))) {
        out->cls = FS_UNSAFE;
        snprintf(out->why, sizeof out->why, "NFS mounted with %s: locks stay on this client, so writers on other "
                 "nodes would not see them; remount without it (local_lock=none)",
                 has_option(options, "nolock") ? "nolock" : "local_lock");
    }
    if (!strcmp(rule->name, "lustre") && !has_option(options, "flock")) {
        out->cls = FS_UNSAFE;
        snprintf(out->why, sizeof out->why, "Lustre mounted %s: locks are not coherent across clients; mount it "
                 "with -o flock", has_option(options, "localflock") ? "with localflock" : "without flock");
    }
}

/* Finds the mountinfo line of device `dev` whose mount point is the longest prefix of `path`;
 * fills type and the joined mount and super options. */
static void mountinfo_lookup(dev_t dev, const char *path, char *type, size_t type_cap, char *opts, size_t opts_cap) {
    FILE *f = fopen("/proc/self/mountinfo", "r");
    if (!f) return;
    char line[4096];
    size_t best = 0;
    int found = 0;
    while (fgets(line, sizeof line, f)) {
        unsigned maj, min;
        char mnt[1024], mopts[1024];
        if (sscanf(line, "%*s %*s %u:%u %*s %1023s %1023s", &maj, &min, mnt, mopts) != 4) continue;
        if (makedev(maj, min) != dev) continue;
        const char *dash = strstr(line, " - ");
        char fstype[128], src[1024], sopts[2048] = "";
        if (!dash || sscanf(dash + 3, "%127s %1023s %2047s", fstype, src, sopts) < 2) continue;
        size_t ml = strlen(mnt);
        int prefix = !strncmp(path, mnt, ml) && (path[ml] == '/' || path[ml] == 0 || ml == 1);
        if (found && !(prefix && ml > best)) continue;
        found = 1;
        best = prefix ? ml : 0;
        snprintf(type, type_cap, "%s", fstype);
        snprintf(opts, opts_cap, "%s,%s", mopts, sopts);
    }
    fclose(f);
}

int store_fs_probe(const char *path, store_fs_info *out) {
    memset(out, 0, sizeof *out);
    struct statfs sf;
    struct stat sb;
    if (statfs(path, &sf)) return err_errno("cannot find the file system of %s (statfs)", path);
    if (stat(path, &sb)) return err_errno("cannot stat %s", path);
    char type[128] = "", opts[3072] = "";
    char *abs = realpath(path, NULL);
    mountinfo_lookup(sb.st_dev, abs ? abs : path, type, sizeof type, opts, sizeof opts);
    free(abs);
    store_fs_classify((unsigned long)sf.f_type, type, opts, out);
    const char *force = getenv("SMELT_STORE_FS");
    if (force && force[0]) {
        if (!strcmp(force, "local")) out->cls = FS_LOCAL;
        else if (!strcmp(force, "shared")) out->cls = FS_SHARED;
        else
            return err_set(ERR_INPUT, "SMELT_STORE_FS='%s': expected 'local' (only this host uses the store: WAL "
                           "mode) or 'shared' (several hosts, coherent POSIX locks: rollback journal)", force);
        out->forced = 1;
        snprintf(out->why, sizeof out->why, "set by SMELT_STORE_FS=%s", force);
    }
    return 0;
}
