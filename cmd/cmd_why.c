/* cmd_why.c: `smelt why RUN STAGE`: the field-level difference between a stage's cache key
 * and the closest earlier key of a stage with the same name. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd/commands.h"
#include "cmd/util.h"
#include "common/error.h"
#include "pipeline/runner.h"
#include "store/runs.h"

int cmd_why(int argc, char **argv) {
    const char *store_flag;
    if (cli_args("why", argc, argv, NULL, 2, 2, "expected RUN and STAGE", &store_flag)) return EXIT_USAGE;
    store *s = NULL;
    char run[RUN_ID_MAX];
    stage_row row = {0};
    run_row rr = {0};
    key_closest kc = {0};
    int status = cli_open_run("why", store_flag, STORE_NOWRITE, argv[optind], &s, run, &rr);
    if (status) return status;
    if (store_stage_load(s, run, argv[optind + 1], &row)) {
        status = cli_fail("why");
        goto out;
    }
    if (!row.key_json) {
        printf("stage %s of run %s has no cache key: it never became ready (status %s%s%s)\n", row.name, run,
               row.status, row.error ? ": " : "", row.error ? row.error : "");
        goto out;
    }
    printf("stage %s of run %s: %s, key %.12s\n", row.name, run, row.status, row.cache_key);
    if (!strcmp(row.status, "cached")) printf("reused from run %s: its key was identical\n", row.cached_from);
    if (runner_closest_key(s, row.name, row.key_json, run, rr.created_at, &kc)) {
        status = cli_fail("why");
        goto out;
    }
    if (!kc.run[0]) printf("new: no earlier run has a stage named %s\n", row.name);
    else if (kc.n_diff == 0) printf("same key as stage %s of the earlier run %s\n", row.name, kc.run);
    else
        printf("differs from stage %s of run %s (the closest earlier key) in %d field%s:\n%s", row.name, kc.run,
               kc.n_diff, kc.n_diff == 1 ? "" : "s", kc.diff);
out:
    free(kc.diff);
    stage_row_free(&row);
    run_row_free(&rr);
    store_close(s);
    return status;
}
