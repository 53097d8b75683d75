/* cmd_archive.c: `smelt export`, `smelt import` and `smelt gc`. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>

#include "cmd/commands.h"
#include "cmd/util.h"
#include "common/error.h"
#include "store/archive.h"
#include "store/runs.h"

static void human_bytes(char *buf, size_t n, uint64_t b) {
    if (b < 1024) snprintf(buf, n, "%llu B", (unsigned long long)b);
    else if (b < (1u << 20)) snprintf(buf, n, "%.1f KiB", b / 1024.0);
    else if (b < (1u << 30)) snprintf(buf, n, "%.1f MiB", b / 1048576.0);
    else snprintf(buf, n, "%.2f GiB", b / 1073741824.0);
}

int cmd_export(int argc, char **argv) {
    const char *store_flag, *out = NULL;
    const cli_opt opts[] = {{"output", 1, 'o', &out, NULL}, {0}};
    if (cli_args("export", argc, argv, opts, 1, 1, "expected RUN and -o FILE.tar.zst", &store_flag)) return EXIT_USAGE;
    if (!out) return cli_usage_error("export", "expected RUN and -o FILE.tar.zst");
    store *s = NULL;
    char run[RUN_ID_MAX];
    int n = 0;
    uint64_t bytes = 0;
    int status = cli_open_run("export", store_flag, 0, argv[optind], &s, run, NULL);
    if (status) return status;
    if (store_export(s, run, out, &n, &bytes)) {
        store_close(s);
        return cli_fail("export");
    }
    char hb[32];
    human_bytes(hb, sizeof hb, bytes);
    printf("exported run %s to %s: %d objects, %s before compression\n", run, out, n, hb);
    store_close(s);
    return EXIT_OK;
}

int cmd_import(int argc, char **argv) {
    const char *store_flag;
    if (cli_args("import", argc, argv, NULL, 1, 1, "expected one archive file", &store_flag)) return EXIT_USAGE;
    store *s = NULL;
    char run[RUN_ID_MAX];
    int n = 0;
    if (cli_open_store(&s, store_flag, STORE_CREATE) || store_import(s, argv[optind], run, &n)) {
        store_close(s);
        return cli_fail("import");
    }
    printf("imported run %s (%d objects verified) into %s\n", run, n, store_dir(s));
    store_close(s);
    return EXIT_OK;
}

int cmd_gc(int argc, char **argv) {
    const char *store_flag;
    int dry = 0;
    const cli_opt opts[] = {{"dry-run", 0, 'n', NULL, &dry}, {0}};
    if (cli_args("gc", argc, argv, opts, 0, 0, "takes no arguments", &store_flag)) return EXIT_USAGE;
    store *s = NULL;
    gc_stats g;
    if (cli_open_store(&s, store_flag, 0) || store_gc(s, dry, &g)) {
        store_close(s);
        return cli_fail("gc");
    }
    char ob[32], sb[32], tb[32];
    human_bytes(ob, sizeof ob, g.object_bytes);
    human_bytes(sb, sizeof sb, g.scratch_bytes);
    human_bytes(tb, sizeof tb, g.object_bytes + g.scratch_bytes);
    printf("%s %llu bytes (%s): %d unreferenced objects (%s), %d scratch or checkpoint folders (%s)\n",
           dry ? "would free" : "freed", (unsigned long long)(g.object_bytes + g.scratch_bytes), tb, g.objects, ob,
           g.scratch, sb);
    store_close(s);
    return EXIT_OK;
}
