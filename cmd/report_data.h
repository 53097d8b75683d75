/* report_data.h: a run as `smelt report` and `smelt compare` read it from the store's documented
 * views (runs, stages, lineage, params, latest_metrics, metrics, artifacts), and the models of the
 * run: every stage output that an evaluate or benchmark stage measured, followed up the lineage
 * for its parameter count, with its primary evaluation and benchmark. Everything is owned by the
 * rrun (rrun_free). A metric that is absent reads as NAN and is printed as "-", never as 0. */
#ifndef SMELT_CMD_REPORT_DATA_H
#define SMELT_CMD_REPORT_DATA_H

#include <stdint.h>

#include "store/runs.h"
#include "store/store.h"

typedef struct {
    char *key;
    double value;  /* NAN for a NULL value */
    int64_t step;
} rmetric;

typedef struct {
    char *key, *value; /* a dotted parameter path and its value as text */
} rparam;

typedef struct {
    char *input, *from_stage, *from_output, *digest;
} rinput;

typedef struct {
    char *name, *kind, *digest;
    double bytes; /* NAN when unknown */
} routput;

typedef struct {
    char *name, *kind, *status, *cached_from, *cache_key; /* cache_key, cached_from may be NULL */
    char *key_json;   /* the canonical key (NULL until the stage became ready) */
    double seconds;   /* NAN unless it ran */
    int ord;
    rmetric *m;       /* latest values, sorted by key */
    int n_m;
    rparam *p;        /* sorted by key */
    int n_p;
    rinput *in;
    int n_in;
    routput *out;
    int n_out;
} rstage;

typedef struct {
    char id[RUN_ID_MAX];
    char *name, *status, *recipe_sha, *error;
    double seconds;   /* NAN while running */
    rstage *st;       /* in the run's topological order */
    int n_st;
} rrun;

int rrun_load(rrun *r, store *s, const char *run);
void rrun_free(rrun *r);
const rstage *rrun_stage(const rrun *r, const char *name);
/* The latest value of a metric, NAN when absent. */
double rstage_metric(const rstage *s, const char *key);
/* A parameter's value as text, NULL when absent. */
const char *rstage_param(const rstage *s, const char *key);
/* The input carried by a parameter path ("model", "init"), NULL when none. */
const rinput *rstage_input(const rstage *s, const char *name);
/* The digest of the stage's main output (its first output), NULL when it has none. */
const char *rstage_main_digest(const rstage *s);

/* A metric's whole series, ordered by step (caller frees steps and values). */
int rstage_series(store *s, const char *run, const char *stage, const char *key, int64_t **steps, double **values,
                  int *n);

enum { PARETO_PARAMS, PARETO_BYTES, PARETO_TTFT };

/* A model of the run and what measured it. */
typedef struct {
    const rstage *src;       /* the producing stage; NULL for a path outside the store */
    char label[STAGE_NAME_MAX];
    char kind[96];           /* "train sft", "prune osscar mlp 88", "quantize gptq w4 g32" */
    double params, bytes;    /* NAN when unknown */
    int bytes_measured;      /* 1: a `bytes` metric; 0: 4 bytes per parameter (fp32) */
    const rstage *eval;      /* the first evaluate stage (split test preferred), or NULL */
    const rstage *bench;     /* the first benchmark stage, or NULL */
    char ref[STAGE_NAME_MAX];/* the model the evaluation's reference measured, "" when none */
    int pareto[3];           /* on the Pareto front of AUC against PARETO_PARAMS, _BYTES, _TTFT */
} rmodel;

/* The x of a model in a Pareto plot (parameters, bytes, TTFT p50 in ms); NAN when unknown. */
double report_pareto_x(const rmodel *m, int which);
/* The models of the run in stage order (caller frees *out). s is used for the config.json of a
 * model whose lineage records no parameter count (a command stage's output). */
int report_models(rmodel **out, int *n, const rrun *r, store *s);
/* The evaluate or benchmark stage's model (the producing stage's name, or the path's base name). */
const char *report_measured_label(const rrun *r, const rstage *measure, char *buf, size_t n);
/* What a stage made: "train distill fkl", "prune osscar mlp-88 kv-1", "quantize gptq w4 g32"
 * (without the kind's name when with_kind is 0; "path" for NULL). */
void report_describe(char *buf, size_t n, const rstage *x, int with_kind);
/* Marks the non-dominated points: minimize x, maximize y (points with a NAN are never marked).
 * front[i] = 1 when point i is on the front. */
void report_pareto(int *front, const double *x, const double *y, int n);

/* Numbers as the report prints them: "-" for NAN. */
void fmt_count(char *buf, size_t n, double v);  /* 63.2K, 1.24M, 8.03B */
void fmt_bytes(char *buf, size_t n, double v);  /* 253 KB, 1.3 MB (powers of 1000) */
void fmt_num(char *buf, size_t n, double v, const char *fmt);

#endif
