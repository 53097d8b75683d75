/* cmd_plan.c: `smelt plan`: which stages a run of this recipe would compute and which it would
 * reuse, and why. Opens the store read-only and writes nothing. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cmd/commands.h"
#include "cmd/util.h"
#include "common/error.h"
#include "pipeline/key.h"
#include "pipeline/recipe.h"
#include "pipeline/runner.h"
#include "pipeline/slurm.h"
#include "store/runs.h"

typedef struct {
    int known; /* outputs known (cached) */
    output_row *outs;
    int n_outs;
} plan_slot;

static const char *find_digest(const plan_slot *p, const char *output) {
    for (int i = 0; i < p->n_outs; i++)
        if (!strcmp(p->outs[i].name, output)) return p->outs[i].digest;
    return NULL;
}

int cmd_plan(int argc, char **argv) {
    static const struct option opts[] = {{"store", required_argument, 0, 's'}, {"set", required_argument, 0, 'S'},
                                         SLURM_LONG_OPTIONS, {0, 0, 0, 0}};
    const char *store_flag = NULL;
    char **sets = NULL;
    int n_sets = 0, c, slurm = 0;
    slurm_opts so = {0};
    optind = 1;
    while ((c = getopt_long(argc, argv, "s:S:", opts, NULL)) != -1) {
        int h = cli_slurm_option("plan", c, optarg, &so, &slurm);
        if (h < 0) {
            slurm_opts_free(&so);
            free(sets);
            return EXIT_USAGE;
        }
        if (h) continue;
        if (c == 's') store_flag = optarg;
        else if (c == 'S') {
            char **ns = realloc(sets, (size_t)(n_sets + 1) * sizeof *ns);
            if (!ns) return EXIT_FAILED;
            sets = ns;
            sets[n_sets++] = optarg;
        } else {
            free(sets);
            slurm_opts_free(&so);
            return cli_usage_error("plan", "unknown option");
        }
    }
    if (optind != argc - 1 || (!slurm && cli_slurm_opts_set(&so))) {
        free(sets);
        slurm_opts_free(&so);
        return cli_usage_error("plan", optind != argc - 1 ? "expected one recipe file"
                                                          : "the Slurm options need --slurm");
    }
    recipe *r = NULL;
    store *s = NULL;
    plan_slot *ps = NULL;
    int status = EXIT_OK;
    const char *dir = store_default_dir(store_flag);
    if (recipe_load(&r, argv[optind], sets, n_sets)) {
        status = cli_fail("plan");
        goto out;
    }
    if (store_exists(dir) && store_open(&s, dir, STORE_NOWRITE)) {
        status = cli_fail("plan");
        goto out;
    }
    ps = xcalloc((size_t)r->n_stages + 1, sizeof *ps);
    if (!ps) {
        status = cli_fail("plan");
        goto out;
    }
    printf("plan for recipe %s: %d stages, store %s%s\n", r->name, r->n_stages, dir, s ? "" : " (does not exist yet)");
    int n_run = 0, n_cached = 0;
    for (int i = 0; i < r->n_stages; i++) {
        const recipe_stage *st = &r->stages[i];
        const char *waiting = NULL;
        for (int k = 0; k < st->n_deps && !waiting; k++)
            if (!ps[st->deps[k]].known) waiting = r->stages[st->deps[k]].name;
        if (waiting) {
            printf("  %-24s run: upstream %s will run, so its inputs are not known yet\n", st->name, waiting);
            n_run++;
            continue;
        }
        ref_digest *dg = xcalloc((size_t)st->n_refs + 1, sizeof *dg);
        char *key_json = NULL, key[65];
        int rc = dg ? 0 : -1;
        for (int k = 0; k < st->n_refs && !rc; k++) {
            const char *d = find_digest(&ps[st->refs[k].dep], st->refs[k].output);
            if (!d) rc = err_set(ERR_CORRUPT, "stage %s: upstream output '%s' is not in the store", st->name,
                                 st->refs[k].output);
            else memcpy(dg[k].digest, d, 65);
        }
        ref_digest *pd = NULL;
        if (!rc) rc = key_path_digests(st, &pd);
        if (!rc) rc = key_compute(st, dg, pd, &key_json, key);
        free(pd);
        free(dg);
        if (rc) {
            free(key_json);
            status = cli_fail("plan");
            goto out;
        }
        char from_run[RUN_ID_MAX], from_stage[STAGE_NAME_MAX];
        int found = s ? store_completion_find(s, key, from_run, from_stage) : 0;
        if (found > 0 && !store_stage_outputs(s, from_run, from_stage, &ps[i].outs, &ps[i].n_outs)) {
            ps[i].known = 1;
            n_cached++;
            printf("  %-24s cached (from run %s, key %.12s)\n", st->name, from_run, key);
        } else if (found < 0) {
            free(key_json);
            status = cli_fail("plan");
            goto out;
        } else {
            key_closest kc = {0};
            n_run++;
            if (s && runner_closest_key(s, st->name, key_json, NULL, 0, &kc)) {
                free(key_json);
                status = cli_fail("plan");
                goto out;
            }
            if (!kc.run[0])
                printf("  %-24s run: new stage (no earlier run has a stage named %s)\n", st->name, st->name);
            else if (kc.n_diff == 0)
                printf("  %-24s run: same key as in run %s, whose outputs are gone or incomplete\n", st->name, kc.run);
            else
                printf("  %-24s run: key differs from run %s in %d field%s:\n%s", st->name, kc.run, kc.n_diff,
                       kc.n_diff == 1 ? "" : "s", kc.diff);
            free(kc.diff);
        }
        free(key_json);
    }
    printf("%d to run, %d cached\n", n_run, n_cached);
    if (slurm) {
        int *cached = xcalloc((size_t)r->n_stages + 1, sizeof *cached);
        char *self = cli_self_exe();
        /* The scripts name the store by its absolute path, which a store not created yet lacks. */
        char cwd[4096];
        char *abs = s ? xstrdup(store_dir(s))
                      : dir[0] == '/' || !getcwd(cwd, sizeof cwd) ? xstrdup(dir) : xasprintf("%s/%s", cwd, dir);
        for (int i = 0; cached && i < r->n_stages; i++) cached[i] = ps[i].known;
        if (!cached || !self || !abs || slurm_plan_print(r, cached, &so, self, abs, stdout)) status = cli_fail("plan");
        free(cached);
        free(self);
        free(abs);
    }
out:
    for (int i = 0; ps && r && i < r->n_stages; i++) free(ps[i].outs);
    free(ps);
    recipe_free(r);
    store_close(s);
    free(sets);
    slurm_opts_free(&so);
    return status;
}
