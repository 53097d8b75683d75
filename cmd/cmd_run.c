/* cmd_run.c: `smelt run` (start a run of a recipe), `smelt resume` (continue a run) and the
 * internal `smelt exec` (one attempt of one stage, launched by the runner). */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd/commands.h"
#include "cmd/util.h"
#include "common/error.h"
#include "pipeline/recipe.h"
#include "pipeline/runner.h"
#include "pipeline/slurm.h"
#include "stages/stage.h"
#include "store/runs.h"

/* Collects repeated --set values. */
typedef struct {
    char **v;
    int n;
} strlist;

static int strlist_add(strlist *l, char *s) {
    char **nv = xrealloc(l->v, (size_t)(l->n + 1) * sizeof *nv);
    if (!nv) return -1;
    l->v = nv;
    l->v[l->n++] = s;
    return 0;
}

int cmd_run(int argc, char **argv) {
    static const struct option opts[] = {{"store", required_argument, 0, 's'}, {"set", required_argument, 0, 'S'},
                                         {"jobs", required_argument, 0, 'j'},  {"name", required_argument, 0, 'n'},
                                         {0, 0, 0, 0}};
    const char *store_flag = NULL, *name = NULL;
    int jobs = 1, c;
    strlist sets = {0};
    optind = 1;
    while ((c = getopt_long(argc, argv, "s:S:j:n:", opts, NULL)) != -1) {
        switch (c) {
        case 's': store_flag = optarg; break;
        case 'S': strlist_add(&sets, optarg); break;
        case 'j':
            jobs = atoi(optarg);
            if (jobs < 1 || jobs > 1024) return cli_usage_error("run", "--jobs must be from 1 to 1024, got '%s'", optarg);
            break;
        case 'n': name = optarg; break;
        default: return cli_usage_error("run", "unknown option");
        }
    }
    if (optind != argc - 1) return cli_usage_error("run", "expected one recipe file");
    const char *path = argv[optind];
    recipe *r = NULL;
    store *s = NULL;
    char *self = NULL;
    char run_id[RUN_ID_MAX];
    int status = EXIT_OK;
    if (recipe_load(&r, path, sets.v, sets.n) || recipe_check_devices(r)) {
        status = cli_fail("run");
        goto out;
    }
    if (!(self = cli_self_exe()) || cli_open_store(&s, store_flag, STORE_CREATE) ||
        runner_create(s, r, path, sets.v, sets.n, name, jobs, run_id)) {
        status = cli_fail("run");
        goto out;
    }
    printf("run %s (%s): %d stages, store %s\n", run_id, name ? name : r->name, r->n_stages, store_dir(s));
    fflush(stdout);
    runner_opts o = {.jobs = jobs, .self_exe = self};
    if (runner_execute(s, r, run_id, &o)) status = cli_fail("run");
out:
    recipe_free(r);
    store_close(s);
    free(self);
    free(sets.v);
    return status;
}

int cmd_resume(int argc, char **argv) {
    static const struct option opts[] = {{"store", required_argument, 0, 's'}, {"jobs", required_argument, 0, 'j'},
                                         SLURM_LONG_OPTIONS, {0, 0, 0, 0}};
    const char *store_flag = NULL;
    int jobs = 0, c, slurm_flag = 0;
    slurm_opts so = {0};
    optind = 1;
    while ((c = getopt_long(argc, argv, "s:j:", opts, NULL)) != -1) {
        int h = cli_slurm_option("resume", c, optarg, &so, &slurm_flag);
        if (h < 0) {
            slurm_opts_free(&so);
            return EXIT_USAGE;
        }
        if (h) continue;
        switch (c) {
        case 's': store_flag = optarg; break;
        case 'j':
            jobs = atoi(optarg);
            if (jobs < 1 || jobs > 1024) {
                slurm_opts_free(&so);
                return cli_usage_error("resume", "--jobs must be from 1 to 1024");
            }
            break;
        default: slurm_opts_free(&so); return cli_usage_error("resume", "unknown option");
        }
    }
    if (optind != argc - 1) {
        slurm_opts_free(&so);
        return cli_usage_error("resume", "expected one run id (see 'smelt runs')");
    }
    store *s = NULL;
    recipe *r = NULL;
    char *self = NULL;
    run_row row = {0};
    slurm_run_row sr = {0};
    slurm_opts stored = {0};
    cJSON *ov = NULL;
    char **sets = NULL;
    int n_sets = 0, on_slurm = 0;
    char run_id[RUN_ID_MAX];
    int status = cli_open_run("resume", store_flag, 0, argv[optind], &s, run_id, NULL);
    if (status) {
        slurm_opts_free(&so);
        return status;
    }
    if (!(self = cli_self_exe()) || (on_slurm = store_slurm_run_get(s, run_id, &sr)) < 0 ||
        (!on_slurm && runner_check_not_active(s, run_id)) || store_run_load(s, run_id, &row)) {
        status = cli_fail("resume");
        goto out;
    }
    if (!on_slurm && (slurm_flag || cli_slurm_opts_set(&so))) {
        status = cli_usage_error("resume", "run %s ran here, not on Slurm: the Slurm options do not apply to it", run_id);
        goto out;
    }
    ov = cJSON_Parse(row.overrides);
    n_sets = cJSON_GetArraySize(ov);
    sets = xcalloc((size_t)n_sets + 1, sizeof *sets);
    for (int i = 0; sets && i < n_sets; i++) sets[i] = cJSON_GetArrayItem(ov, i)->valuestring;
    /* The exact recipe text of the run, not the file as it is now. */
    if (!sets || recipe_parse(&r, row.recipe_path ? row.recipe_path : row.name, row.recipe_text,
                              strlen(row.recipe_text), sets, n_sets)) {
        err_prefix("the stored recipe of run %s no longer validates with this smelt: ", run_id);
        status = cli_fail("resume");
        goto out;
    }
    if (!strcmp(row.status, "ok")) {
        printf("run %s is already complete (ok); nothing to resume\n", run_id);
        goto out;
    }
    printf("resuming run %s (%s)%s, store %s\n", run_id, row.name, on_slurm ? " on Slurm" : "", store_dir(s));
    fflush(stdout);
    if (on_slurm) {
        int n_jobs = 0;
        if (slurm_opts_from_json(&stored, sr.options) || slurm_opts_merge(&stored, &so) ||
            slurm_submit_run(s, r, run_id, &stored, self, 1, stdout, &n_jobs))
            status = cli_fail("resume");
        else if (n_jobs == 0)
            printf("run %s is complete: every stage was done or cached, nothing was submitted\n", run_id);
        goto out;
    }
    runner_opts o = {.jobs = jobs ? jobs : (row.jobs > 0 ? row.jobs : 1), .self_exe = self};
    if (runner_execute(s, r, run_id, &o)) status = cli_fail("resume");
out:
    recipe_free(r);
    cJSON_Delete(ov);
    free(sets);
    run_row_free(&row);
    slurm_run_row_free(&sr);
    slurm_opts_free(&stored);
    slurm_opts_free(&so);
    store_close(s);
    free(self);
    return status;
}

int cmd_exec(int argc, char **argv) {
    static const struct option opts[] = {{"store", required_argument, 0, 's'}, {"run", required_argument, 0, 'r'},
                                         {"stage", required_argument, 0, 'g'}, {"attempt", required_argument, 0, 'a'},
                                         {0, 0, 0, 0}};
    const char *dir = NULL, *run = NULL, *stage = NULL;
    int attempt = 1, c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "s:r:g:a:", opts, NULL)) != -1) {
        switch (c) {
        case 's': dir = optarg; break;
        case 'r': run = optarg; break;
        case 'g': stage = optarg; break;
        case 'a': attempt = atoi(optarg); break;
        default: return cli_usage_error("exec", "unknown option");
        }
    }
    if (!dir || !run || !stage) return cli_usage_error("exec", "--store, --run and --stage are required");
    if (stage_exec(dir, run, stage, attempt)) return cli_fail("exec");
    return EXIT_OK;
}
