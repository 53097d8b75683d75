/* runner.h: executes a recipe's DAG for a run: computes each stage's cache key when its
 * inputs exist, reuses completed keys, launches the rest as `smelt exec` processes (under
 * mpirun when ranks > 1) up to `jobs` at a time, retries, and stops the descendants of a
 * failed stage while independent branches finish. */
#ifndef SMELT_PIPELINE_RUNNER_H
#define SMELT_PIPELINE_RUNNER_H

#include "pipeline/recipe.h"
#include "store/runs.h"
#include "store/store.h"

typedef struct {
    int jobs;              /* stages at a time (>= 1) */
    const char *self_exe;  /* the smelt binary launched for each stage */
} runner_opts;

/* Creates the run and its stage rows; prints nothing. */
int runner_create(store *s, const recipe *r, const char *recipe_path, char *const *overrides, int n_overrides,
                  const char *name, int jobs, char run_id[RUN_ID_MAX]);
/* Drives the run to its end. Returns 0 when every stage is ok or cached; -1 with the error
 * slot naming the failed stage and its log otherwise (ERR_STAGE). */
int runner_execute(store *s, const recipe *r, const char *run_id, const runner_opts *o);
/* The digest of output `output` of the stage with index `dep`, or NULL when it has none. */
typedef const char *(*runner_digest_fn)(void *ctx, int dep, const char *output);
/* Computes the cache key of stage i, whose upstream stages are done, from their output digests
 * (digest_of) and the content of the external files it names, and records the key, its JSON,
 * the resolved parameters and the input artifacts in the store (store_stage_prepare). */
int runner_prepare_stage(store *s, const recipe *r, const char *run, int i, runner_digest_fn digest_of, void *ctx,
                         char key[65]);
/* The same, reading the upstream outputs of this run from the store: for a process that did
 * not run them (a Slurm job). ERR_INPUT when an upstream stage is not ok or cached. */
int runner_prepare_from_store(store *s, const recipe *r, const char *run, int i, char key[65]);
/* Whether the process that drives a run is alive: 1 yes, 0 no (it died without finishing),
 * -1 unknown (it ran on another host). */
int runner_alive(const run_row *r);
/* Refuses (ERR_INPUT) when another live process is driving the run. */
int runner_check_not_active(store *s, const char *run_id);

/* What `plan` and `why` need: the closest earlier key of a stage name, as a diff text. */
typedef struct {
    char run[RUN_ID_MAX];  /* "" when no earlier stage has this name */
    int n_diff;            /* fields that differ */
    char *diff;            /* "  path: old -> new\n" lines; owned */
} key_closest;
/* Among stages named `name` outside run `exclude_run` created before `before` (0: any time),
 * finds the key with the fewest differing fields from key_json. */
int runner_closest_key(store *s, const char *name, const char *key_json, const char *exclude_run, double before,
                       key_closest *out);

#endif
