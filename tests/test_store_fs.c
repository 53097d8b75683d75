/* test_store_fs.c: the store on shared storage. The file-system classification (a table of
 * simulated mounts: magic, type name, options), the probe on this machine's local file systems
 * and the SMELT_STORE_FS override, store_open's refusal of an unsafe file system, the rollback
 * journal on a shared one (new stores, WAL stores switched, never switched back), and several
 * writer processes at once on a store in that mode: no write is lost and the database stays intact. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/error.h"
#include "common/fsutil.h"
#include "store/fscheck.h"
#include "store/runs.h"
#include "store/store.h"
#include "tests/check.h"

static char root[256];

static void test_classify(void) {
    static const struct {
        unsigned long magic;
        const char *type, *options;
        store_fs_class want;
    } cases[] = {
        {0xEF53, "ext4", "rw,relatime", FS_LOCAL},
        {0x58465342, "xfs", "rw", FS_LOCAL},
        {0x9123683E, "btrfs", "rw", FS_LOCAL},
        {0x01021994, "tmpfs", "rw,size=100k", FS_LOCAL},
        {0x794C7630, "overlay", "rw,lowerdir=/a", FS_LOCAL},
        {0x2FC12FC1, "zfs", "rw", FS_LOCAL},
        {0x6969, "nfs4", "rw,relatime,vers=4.2,local_lock=none,addr=10.0.0.1", FS_SHARED},
        {0x6969, "nfs", "rw,vers=3,nolock,proto=tcp", FS_UNSAFE},
        {0x6969, "nfs", "rw,vers=3,local_lock=posix", FS_UNSAFE},
        {0x6969, "nfs4", "rw,vers=4.1,local_lock=flock", FS_UNSAFE},
        {0x6969, "nfs4", "rw,vers=4.1,local_lock=all", FS_UNSAFE},
        {0x6969, "nfs4", "rw,nolocking_is_not_an_option", FS_SHARED}, /* whole options only */
        {0x0BD00BD0, "lustre", "rw,flock,lazystatfs", FS_SHARED},
        {0x0BD00BD0, "lustre", "rw,localflock", FS_UNSAFE},
        {0x0BD00BD0, "lustre", "rw,noflock", FS_UNSAFE},
        {0x0BD00BD0, "lustre", "rw", FS_UNSAFE},
        {0x47504653, "gpfs", "rw", FS_SHARED},
        {0x00C36400, "ceph", "rw,name=admin", FS_SHARED},
        {0x19830326, "beegfs", "rw", FS_UNSAFE},
        {0xFF534D42, "cifs", "rw,vers=3.0", FS_UNSAFE},
        {0xFE534D42, "smb3", "rw", FS_UNSAFE},
        {0x01021997, "9p", "rw,trans=virtio", FS_UNSAFE},
        {0x65735546, "fuse.sshfs", "rw,user_id=0", FS_UNSAFE},
        {0x65735546, "fuse.glusterfs", "rw", FS_SHARED},
        {0x65735546, "fuse.juicefs", "rw", FS_SHARED},
        {0x65735546, "fuse.fuse-overlayfs", "rw", FS_LOCAL},
        {0x65735546, "", "", FS_UNSAFE},         /* FUSE without a name: unknown locks */
        {0x65735546, "fuse", "rw", FS_UNSAFE},
        {0x12345678, "", "", FS_LOCAL},          /* unknown: taken as one host */
        {0x12345678, "nfs4", "rw,local_lock=none", FS_SHARED}, /* unknown magic, known name */
        {0x12345678, "fuse.s3fs", "rw", FS_UNSAFE},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        store_fs_info fi;
        store_fs_classify(cases[i].magic, cases[i].type, cases[i].options, &fi);
        if (fi.cls != cases[i].want)
            fprintf(stderr, "case %zu: 0x%lx %s '%s' classified %s, expected %s (%s)\n", i, cases[i].magic,
                    cases[i].type, cases[i].options, store_fs_class_name(fi.cls), store_fs_class_name(cases[i].want),
                    fi.why);
        CHECK_INT(fi.cls, cases[i].want);
        CHECK(fi.type[0] != 0);
        /* Every refusal says why. */
        if (fi.cls == FS_UNSAFE) CHECK(strlen(fi.why) > 10);
    }
    store_fs_info fi;
    store_fs_classify(0x6969, "nfs", "rw,nolock", &fi);
    CHECK(strstr(fi.why, "nolock") != NULL);
    store_fs_classify(0x0BD00BD0, "lustre", "rw", &fi);
    CHECK(strstr(fi.why, "-o flock") != NULL);
}

static void test_probe(void) {
    /* This machine's own folders: local file systems, with their statfs magic and a type name. */
    const char *paths[] = {root, "/dev/shm"};
    for (size_t i = 0; i < 2; i++) {
        struct statfs sf;
        if (statfs(paths[i], &sf)) continue;
        store_fs_info fi;
        CHECK_OK(store_fs_probe(paths[i], &fi));
        CHECK_INT(fi.magic, (unsigned long)sf.f_type);
        CHECK(fi.type[0] != 0);
        if (fi.cls != FS_LOCAL) fprintf(stderr, "%s: %s %s (%s)\n", paths[i], fi.type, store_fs_class_name(fi.cls), fi.why);
        CHECK_INT(fi.cls, FS_LOCAL);
        CHECK_INT(fi.forced, 0);
    }
    store_fs_info fi;
    setenv("SMELT_STORE_FS", "shared", 1);
    CHECK_OK(store_fs_probe(root, &fi));
    CHECK_INT(fi.cls, FS_SHARED);
    CHECK_INT(fi.forced, 1);
    setenv("SMELT_STORE_FS", "local", 1);
    CHECK_OK(store_fs_probe(root, &fi));
    CHECK_INT(fi.cls, FS_LOCAL);
    setenv("SMELT_STORE_FS", "nfs", 1);
    CHECK(store_fs_probe(root, &fi) == -1);
    CHECK_INT(err_kind_get(), ERR_INPUT);
    CHECK(strstr(err_msg(), "SMELT_STORE_FS='nfs'") != NULL);
    err_clear();
    unsetenv("SMELT_STORE_FS");
    CHECK(store_fs_probe("/nonexistent/store", &fi) == -1);
    err_clear();
}

static char *journal_mode(store *s) {
    sqlite3_stmt *st;
    char *m = NULL;
    if (store_prepare(s, &st, "PRAGMA journal_mode")) return NULL;
    if (sqlite3_step(st) == SQLITE_ROW) m = xstrdup((const char *)sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
    return m;
}

static store_fs_info simulated(unsigned long magic, const char *type, const char *options) {
    store_fs_info fi;
    store_fs_classify(magic, type, options, &fi);
    return fi;
}

static void test_open_modes(void) {
    char dir[300];
    store *s = NULL;
    char *m;
    /* An unsafe file system: refused before any database is created. */
    snprintf(dir, sizeof dir, "%s/unsafe", root);
    store_fs_info nolock = simulated(0x6969, "nfs", "rw,vers=3,nolock");
    CHECK(store_open_fs(&s, dir, STORE_CREATE, &nolock) == -1);
    CHECK(s == NULL);
    CHECK_INT(err_kind_get(), ERR_INPUT);
    CHECK(strstr(err_msg(), "nolock") != NULL && strstr(err_msg(), "SMELT_STORE_FS") != NULL);
    err_clear();
    CHECK(!store_exists(dir));

    /* A new store on a shared file system: rollback journal from the start. */
    snprintf(dir, sizeof dir, "%s/shared", root);
    store_fs_info nfs = simulated(0x6969, "nfs4", "rw,vers=4.2,local_lock=none");
    CHECK_OK(store_open_fs(&s, dir, STORE_CREATE, &nfs));
    CHECK_STR(m = journal_mode(s), "delete");
    free(m);
    CHECK_INT(store_fs(s)->cls, FS_SHARED);
    store_close(s);

    /* A WAL store created on one host, then opened from a shared mount: switched, data kept. */
    snprintf(dir, sizeof dir, "%s/convert", root);
    store_fs_info ext4 = simulated(0xEF53, "ext4", "rw");
    CHECK_OK(store_open_fs(&s, dir, STORE_CREATE, &ext4));
    CHECK_STR(m = journal_mode(s), "wal");
    free(m);
    CHECK_OK(store_run_create(s, "run-1", "one", NULL, "smelt: 1\n", "[]", 1));
    store_close(s);
    /* Read-only opening cannot switch it: refused with what to do. */
    CHECK(store_open_fs(&s, dir, STORE_NOWRITE, &nfs) == -1);
    CHECK(strstr(err_msg(), "WAL mode") != NULL);
    err_clear();
    CHECK_OK(store_open_fs(&s, dir, 0, &nfs));
    CHECK_STR(m = journal_mode(s), "delete");
    free(m);
    run_row rr;
    CHECK_OK(store_run_load(s, "run-1", &rr));
    CHECK_STR(rr.name, "one");
    run_row_free(&rr);
    store_close(s);
    /* The same store seen as local again (the file server itself): it stays in rollback mode. */
    CHECK_OK(store_open_fs(&s, dir, 0, &ext4));
    CHECK_STR(m = journal_mode(s), "delete");
    free(m);
    store_close(s);
    CHECK_OK(store_open_fs(&s, dir, STORE_NOWRITE, &nfs));
    store_close(s);

    /* A WAL store another connection holds open cannot be switched: refused within seconds. */
    snprintf(dir, sizeof dir, "%s/busy", root);
    store *holder = NULL;
    CHECK_OK(store_open_fs(&holder, dir, STORE_CREATE, &ext4));
    CHECK(store_open_fs(&s, dir, 0, &nfs) == -1);
    CHECK(strstr(err_msg(), "stop the other smelt processes") != NULL);
    err_clear();
    store_close(holder);
    CHECK_OK(store_open_fs(&s, dir, 0, &nfs));
    store_close(s);
}

/* Several processes write to one store in rollback-journal mode at once, as jobs on several
 * nodes would: every transaction lands and the database stays intact. */
static void test_concurrent_writers(void) {
    enum { WRITERS = 4, RUNS_EACH = 25 };
    char dir[300];
    snprintf(dir, sizeof dir, "%s/concurrent", root);
    store_fs_info nfs = simulated(0x6969, "nfs4", "rw,vers=4.2");
    store *s = NULL;
    CHECK_OK(store_open_fs(&s, dir, STORE_CREATE, &nfs));
    store_close(s);
    pid_t pids[WRITERS];
    for (int w = 0; w < WRITERS; w++) {
        pids[w] = fork();
        if (pids[w] == 0) {
            store *c = NULL;
            int bad = store_open_fs(&c, dir, 0, &nfs);
            for (int i = 0; i < RUNS_EACH && !bad; i++) {
                char id[64];
                snprintf(id, sizeof id, "w%d-%02d", w, i);
                metric_point p = {"step", i, (double)w};
                bad = store_run_create(c, id, "concurrent", NULL, "smelt: 1\n", "[]", 1) ||
                      store_stage_create(c, id, "s", "command", 1, 0, 1, 0) ||
                      store_metrics_put(c, id, "s", &p, 1);
            }
            if (bad) fprintf(stderr, "writer %d: %s\n", w, err_msg());
            store_close(c);
            _exit(bad ? 1 : 0);
        }
    }
    for (int w = 0; w < WRITERS; w++) {
        int status = 0;
        CHECK(pids[w] > 0 && waitpid(pids[w], &status, 0) == pids[w]);
        CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    }
    CHECK_OK(store_open_fs(&s, dir, 0, &nfs));
    sqlite3_stmt *st;
    CHECK_OK(store_prepare(s, &st, "SELECT (SELECT count(*) FROM run), (SELECT count(*) FROM stage), "
                                   "(SELECT count(*) FROM metric), (SELECT count(DISTINCT run_id) FROM metric_latest)"));
    CHECK(sqlite3_step(st) == SQLITE_ROW);
    for (int k = 0; k < 4; k++) CHECK_INT(sqlite3_column_int(st, k), WRITERS * RUNS_EACH);
    sqlite3_finalize(st);
    CHECK_OK(store_prepare(s, &st, "PRAGMA integrity_check"));
    CHECK(sqlite3_step(st) == SQLITE_ROW);
    CHECK_STR((const char *)sqlite3_column_text(st, 0), "ok");
    sqlite3_finalize(st);
    char *m = journal_mode(s);
    CHECK_STR(m, "delete");
    free(m);
    store_close(s);
}

int main(void) {
    const char *tmp = getenv("SMELT_TEST_TMP");
    snprintf(root, sizeof root, "%s/test_store_fs.%d", tmp && tmp[0] ? tmp : "/tmp", (int)getpid());
    fs_rm_rf(root);
    if (fs_mkdir_p(root, 0755)) {
        fprintf(stderr, "cannot create %s: %s\n", root, err_msg());
        return 1;
    }
    unsetenv("SMELT_STORE_FS");
    test_classify();
    test_probe();
    test_open_modes();
    test_concurrent_writers();
    fs_rm_rf(root);
    return check_report("test_store_fs");
}
