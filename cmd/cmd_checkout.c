/* cmd_checkout.c: `smelt checkout RUN STAGE[.OUTPUT] -o DIR`: writes the files of a stage's
 * output artifact to a directory, verifying every digest (how a user gets a model, a report or
 * a data set out of the store). */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd/commands.h"
#include "cmd/util.h"
#include "common/error.h"
#include "common/fsutil.h"
#include "stages/stage.h"
#include "store/runs.h"

int cmd_checkout(int argc, char **argv) {
    const char *store_flag, *out = NULL;
    const cli_opt opts[] = {{"output", 1, 'o', &out, NULL}, {0}};
    if (cli_args("checkout", argc, argv, opts, 2, 2, "expected RUN, STAGE[.OUTPUT] and -o DIR", &store_flag))
        return EXIT_USAGE;
    if (!out) return cli_usage_error("checkout", "expected RUN, STAGE[.OUTPUT] and -o DIR");
    char stage[STAGE_NAME_MAX];
    snprintf(stage, sizeof stage, "%s", argv[optind + 1]);
    char *dot = strchr(stage, '.');
    const char *want = NULL;
    if (dot) {
        *dot = 0;
        want = dot + 1;
    }
    if (fs_exists(out) && !fs_is_dir(out)) return cli_usage_error("checkout", "%s exists and is not a directory", out);
    store *s = NULL;
    char run[RUN_ID_MAX];
    output_row *outs = NULL;
    int n = 0, status = cli_open_run("checkout", store_flag, STORE_NOWRITE, argv[optind], &s, run, NULL);
    if (status) return status;
    if (store_stage_outputs(s, run, stage, &outs, &n)) {
        status = cli_fail("checkout");
        goto out;
    }
    /* without .OUTPUT, the kind's main output (its first declared one), not the first by name */
    stage_row row = {0};
    char main_out[64] = "";
    if (!want && store_stage_load(s, run, stage, &row) == 0) {
        const stage_kind *k = stage_kind_find(row.kind);
        if (k) snprintf(main_out, sizeof main_out, "%s", k->outputs[0].name);
    }
    stage_row_free(&row);
    err_clear();
    const output_row *o = NULL;
    for (int i = 0; i < n; i++)
        if (want ? !strcmp(outs[i].name, want) : main_out[0] ? !strcmp(outs[i].name, main_out) : !o) o = &outs[i];
    if (!o) {
        err_set(ERR_INPUT, n ? "stage %s of run %s has no output '%s'" : "stage %s of run %s has no outputs (is it "
                "complete? see smelt status %s)", stage, run, n ? want : run);
        status = cli_fail("checkout");
        goto out;
    }
    manifest m;
    if (store_materialize(s, o->digest, out, 0) || store_manifest_read(s, o->digest, &m)) {
        status = cli_fail("checkout");
        goto out;
    }
    printf("%s: %d files of %s.%s (artifact %.12s), digests verified\n", out, m.n_files, stage, o->name, o->digest);
    manifest_free(&m);
out:
    free(outs);
    store_close(s);
    return status;
}
