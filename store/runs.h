/* runs.h: runs, stages, attempts, outputs, lineage and completions in the store database.
 * The runner creates a run and its stage rows, prepares each stage's cache key and inputs
 * when it becomes ready, and records attempts; the stage process commits outputs. */
#ifndef SMELT_STORE_RUNS_H
#define SMELT_STORE_RUNS_H

#include <stdint.h>

#include "store/store.h"

#define RUN_ID_MAX 64
#define STAGE_NAME_MAX 160

typedef struct {
    char id[RUN_ID_MAX];
    char name[128];
    char status[16];      /* running | ok | failed | interrupted */
    char recipe_sha[SHA256_HEX_LEN + 1];
    char *recipe_path;    /* owned; may be NULL */
    char *recipe_text;    /* owned */
    char *overrides;      /* owned: JSON list of --set strings */
    double created_at, finished_at;
    char host[128];
    int64_t pid;
    int jobs;
    char *error;          /* owned; may be NULL */
} run_row;

typedef struct {
    char run_id[RUN_ID_MAX];
    char name[STAGE_NAME_MAX];
    char kind[64];
    int kind_version, ord, ranks, retries, attempts;
    char status[16];      /* pending | running | ok | cached | failed | skipped */
    char cache_key[SHA256_HEX_LEN + 1]; /* "" until the stage became ready */
    char cached_from[RUN_ID_MAX];
    char *key_json;       /* owned; NULL until ready */
    char *params_json;    /* owned; NULL until ready */
    char *log_path;       /* owned; NULL until launched */
    char *error;          /* owned; NULL unless failed */
    double started_at, finished_at;
    int64_t pid;
    char host[128];
} stage_row;

typedef struct {
    char name[STAGE_NAME_MAX];      /* parameter path that carries the reference ("inputs.a") */
    char digest[SHA256_HEX_LEN + 1];
    char from_stage[STAGE_NAME_MAX];
    char from_output[64];
} input_row;

typedef struct {
    char name[64];                  /* output name ("output", "model", "calibration") */
    char kind[32];                  /* artifact kind */
    char digest[SHA256_HEX_LEN + 1];
} output_row;

/* A new run id: YYYYMMDD-HHMMSS-xxxx (UTC time, 4 random hex digits). */
void run_id_new(char out[RUN_ID_MAX]);

STORE_MUST_CHECK int store_run_create(store *s, const char *id, const char *name, const char *recipe_path, const char *recipe_text,
                     const char *overrides_json, int jobs);
/* Finds a run by exact id, unique prefix, or "latest"; ERR_INPUT when none or ambiguous. */
STORE_MUST_CHECK int store_run_resolve(store *s, const char *spec, char out[RUN_ID_MAX]);
STORE_MUST_CHECK int store_run_load(store *s, const char *id, run_row *r);
void run_row_free(run_row *r);
STORE_MUST_CHECK int store_run_set_status(store *s, const char *id, const char *status, const char *error);
/* Marks the run as driven by this process (pid, host) and running. */
STORE_MUST_CHECK int store_run_claim(store *s, const char *id);

/* Stage rows and the DAG edges (input_name "" for needs:). */
STORE_MUST_CHECK int store_stage_create(store *s, const char *run, const char *name, const char *kind, int kind_version, int ord,
                       int ranks, int retries);
STORE_MUST_CHECK int store_edge_add(store *s, const char *run, const char *stage, const char *dep, const char *input_name,
                   const char *output_name);
STORE_MUST_CHECK int store_stage_load(store *s, const char *run, const char *name, stage_row *r);
void stage_row_free(stage_row *r);
/* Records the cache key, its canonical JSON, the resolved parameters and the input artifacts. */
STORE_MUST_CHECK int store_stage_prepare(store *s, const char *run, const char *name, const char *key, const char *key_json,
                        const char *params_json, const input_row *inputs, int n_inputs);
STORE_MUST_CHECK int store_stage_inputs(store *s, const char *run, const char *name, input_row **rows, int *n);
STORE_MUST_CHECK int store_stage_outputs(store *s, const char *run, const char *name, output_row **rows, int *n);
/* Status changes. `error` may be NULL. */
STORE_MUST_CHECK int store_stage_set_status(store *s, const char *run, const char *name, const char *status, const char *error);
/* A new attempt: attempts+1, status running, started_at, pid, host, log path. Returns the attempt number. */
STORE_MUST_CHECK int store_stage_start(store *s, const char *run, const char *name, const char *log_path, int64_t pid, int *attempt);
STORE_MUST_CHECK int store_attempt_finish(store *s, const char *run, const char *name, int attempt, int exit_code);

/* Looks for a completed stage with this cache key whose output objects are all present.
 * Returns 1 (found, fills from_run/from_stage), 0 (none) or -1. */
STORE_MUST_CHECK int store_completion_find(store *s, const char *key, char from_run[RUN_ID_MAX], char from_stage[STAGE_NAME_MAX]);
/* Links the outputs and metrics of (from_run, from_stage) into (run, name); status cached. */
STORE_MUST_CHECK int store_stage_link_cached(store *s, const char *run, const char *name, const char *from_run, const char *from_stage);
/* Commits a finished stage: registers the objects, records outputs, the completion of its
 * key and status ok, in one transaction. Objects must already be in objects/. */
STORE_MUST_CHECK int store_stage_commit(store *s, const char *run, const char *name, const output_row *outputs, int n_outputs);

/* Metrics: points are upserted by (run, stage, key, step); metric_latest follows. */
typedef struct {
    const char *key;
    int64_t step;
    double value;
} metric_point;
STORE_MUST_CHECK int store_metrics_put(store *s, const char *run, const char *stage, const metric_point *pts, int n);
/* Flattened parameters for the params view (path -> JSON scalar). */
STORE_MUST_CHECK int store_params_put(store *s, const char *run, const char *stage, const char *params_json);



/* Records the process id of a launched stage (for status displays and liveness checks). */
STORE_MUST_CHECK int store_stage_set_pid(store *s, const char *run, const char *name, int64_t pid);

#endif
