/* recipe.h: a validated recipe. recipe_parse reads YAML (pipeline/yaml.c), applies --set
 * overrides, expands foreach:, merges defaults:, checks every stage against its kind's schema
 * (pipeline/validate.c), resolves references and orders the stages (pipeline/dag.c). Every
 * error names file:line:column and is ERR_INPUT. */
#ifndef SMELT_PIPELINE_RECIPE_H
#define SMELT_PIPELINE_RECIPE_H

#include <cjson/cJSON.h>

#include "pipeline/node.h"
#include "stages/stage.h"

#define RECIPE_LANGUAGE_VERSION 1

/* A reference from a parameter to another stage's output. */
typedef struct {
    char *path;      /* parameter path, "inputs.a" */
    char *target;    /* stage name */
    char *output;    /* output name (the target's main output when the reference names none) */
    int line, col;
    const char *file;
    int dep;         /* index of the target stage (after resolution) */
} recipe_ref;

/* An external file or directory named by a P_PATH parameter. */
typedef struct {
    char *path;      /* parameter path, "source.path" */
    char *file;      /* absolute path */
    int line, col;
    const char *file_name; /* the recipe file, for messages */
} recipe_extpath;

/* `device:` of a stage. */
enum { STAGE_DEVICE_CPU = 0, STAGE_DEVICE_CUDA = 1 };

typedef struct {
    char *name;
    const stage_kind *kind;
    cJSON *params;   /* typed parameters with defaults; references as "stage[.output]" strings */
    recipe_ref *refs;
    int n_refs;
    recipe_extpath *paths;
    int n_paths;
    char **needs;    /* needs: stage names */
    int *needs_line, *needs_col;
    int n_needs;
    int *deps;       /* indices of the stages this one depends on (refs and needs), unique */
    int n_deps;
    int ranks, retries;
    int device;       /* STAGE_DEVICE_*: where the stage runs; scheduling, never part of the cache key */
    long long seed;
    cJSON *resources; /* scheduling hints (Slurm); never part of the cache key; may be NULL */
    int line, col;    /* position of the stage's name */
    const char *file;
    const char *base_dir; /* the recipe's folder: relative paths start there */
} recipe_stage;

typedef struct {
    char *file;        /* the name used in messages */
    char *base_dir;    /* the folder relative paths start from (the recipe file's) */
    char *text;        /* the exact text that was parsed */
    char *name;
    long long seed;
    recipe_stage *stages; /* in topological order (file order among independent stages) */
    int n_stages;
    char **set_labels; /* "--set a.b=c" strings, owned, used as file names in messages */
    int n_sets;
} recipe;

/* Parses and validates. `overrides` are KEY.PATH=VALUE strings (--set). */
int recipe_parse(recipe **out, const char *file, const char *text, size_t len, char *const *overrides,
                 int n_overrides);
/* Reads the file (size-limited) and parses it. */
int recipe_load(recipe **out, const char *path, char *const *overrides, int n_overrides);
void recipe_free(recipe *r);
/* ERR_INPUT naming the first stage that asks for a device this build cannot run stages on
 * (device: cuda: the stage kinds run on the CPU only so far). `run`, `resume` and `submit`
 * call it before any work; `plan` and `submit --dry-run` accept such recipes. */
int recipe_check_devices(const recipe *r);
/* Frees the references and paths a validation collected in st. */
void recipe_stage_free_refs(recipe_stage *st);
int recipe_stage_index(const recipe *r, const char *name);

/* Validation of one stage's parameters against a schema (pipeline/validate.c). Appends the
 * references it finds to st->refs. With partial != 0 (defaults:) required keys may be absent. */
int validate_params(recipe_stage *st, const node *map, const param_spec *schema, cJSON *out, const char *prefix,
                    int partial);
/* Resolution of references and needs, cycle detection, topological order (pipeline/dag.c). */
int dag_resolve(recipe *r);

#endif
