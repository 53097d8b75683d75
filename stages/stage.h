/* stage.h: the stage contract. A stage kind is one row of the registry (stages/registry.c):
 * name, version (bump it when the kind's output changes for the same parameters), parameter
 * schema, declared outputs, whether it runs on several MPI ranks, and its run function.
 * The runner launches `smelt exec` for a stage; stage_exec (stages/exec.c) prepares a
 * stage_ctx, calls the kind's run function on every rank, and commits the outputs (rank 0). */
#ifndef SMELT_STAGES_STAGE_H
#define SMELT_STAGES_STAGE_H

#include <cjson/cJSON.h>
#include <stdint.h>

#include "stages/params.h"
#include "store/runs.h"
#include "store/store.h"

#define STAGE_MAX_OUTPUTS 8

typedef struct {
    const char *name; /* "output", "model", "calibration"; the first is the main output */
    const char *kind; /* artifact kind shown in the artifacts view */
} stage_output_spec;

typedef struct stage_ctx stage_ctx;

typedef struct {
    const char *name;
    int version;
    const char *summary;
    const param_spec *params;          /* NULL-name-terminated */
    const stage_output_spec *outputs;  /* NULL-name-terminated; at least one */
    int supports_ranks;                /* may run with ranks > 1 */
    int copy_inputs;                   /* inputs are materialized as private copies (user code may write) */
    int (*run)(stage_ctx *ctx);        /* 0 or -1 with the error slot set; called on every rank */
} stage_kind;

/* An input artifact of the stage: a parameter that referenced another stage. */
typedef struct {
    char name[STAGE_NAME_MAX];   /* parameter path ("inputs.a", "model", "data") */
    char digest[SHA256_HEX_LEN + 1];
    char from_stage[STAGE_NAME_MAX];
    char from_output[64];
    char *dir;                   /* materialized directory, after stage_input_dir */
} stage_input;

struct stage_ctx {
    store *st;
    const stage_kind *kind;
    const char *run_id, *stage, *cache_key;
    int attempt;
    int rank, world;             /* MPI rank and size (0 and 1 without MPI) */
    int64_t seed;
    cJSON *params;               /* resolved parameters; references appear as "stage[.output]" */
    stage_input *inputs;
    int n_inputs;
    char *scratch_dir;           /* this attempt's private scratch directory */
    char *output_dirs[STAGE_MAX_OUTPUTS]; /* one per declared output: write files there */
    char *checkpoint_dir;        /* survives failed attempts of the same cache key */
    char *metrics_path;          /* a file user code may append "key value" or "key step value" lines to */
    metric_point *pending;       /* buffered metrics, flushed by stage_metrics_flush */
    int n_pending, cap_pending;
    double last_flush;
};

extern const stage_kind *const stage_kinds[];
const stage_kind *stage_kind_find(const char *name);
/* The index of a declared output, or -1. */
int stage_output_index(const stage_kind *k, const char *name);

/* Records a metric point (rank 0 only; other ranks' calls are ignored). Buffered, flushed at
 * least every few seconds and when the stage ends. */
int stage_metric(stage_ctx *ctx, const char *key, int64_t step, double value);
int stage_metrics_flush(stage_ctx *ctx);
/* The input carried by a parameter path, or NULL. */
stage_input *stage_input_get(stage_ctx *ctx, const char *name);
/* Materializes an input artifact under the scratch directory (verified) and returns its path. */
int stage_input_dir(stage_ctx *ctx, stage_input *in, const char **dir);

/* The body of `smelt exec`: run one attempt of a stage. Returns 0 when its outputs are committed
 * (or it turned out to be cached), -1 otherwise (error slot set; the stage row records it). */
int stage_exec(const char *store_dir, const char *run, const char *stage, int attempt);

/* MPI rank and size from the launcher's environment (OpenMPI, PMI, Slurm); 0/1 otherwise. */
void stage_rank_from_env(int *rank, int *world);

#endif
