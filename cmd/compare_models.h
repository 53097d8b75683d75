/* compare_models.h: models side by side, for `smelt compare` (cmd/compare_models.c). */
#ifndef SMELT_CMD_COMPARE_MODELS_H
#define SMELT_CMD_COMPARE_MODELS_H

#include <stdio.h>

#include "cmd/report_tables.h"

/* The "Models" section of a two-run comparison: each model of B, then those only in A, with AUC,
 * TTFT p50 and bytes in both runs. Adds nothing when neither run has a model. */
int compare_models_section(rsection **sec, int *n, const rmodel *ma, int na, const rmodel *mb, int nb);
/* 1 when key is a --sort key: auc, auc-per-ms, params, bytes, ttft, tpot. */
int compare_sort_valid(const char *key);
/* The models of n_runs runs (ms[r], nm[r]: report_models of runs[r]) in one table within 100
 * columns: those whose kind starts with the word(s) `kind` (NULL: all), sorted by `sort` (NULL:
 * the runs' order; larger first for auc and auc-per-ms, smaller first for the rest, unknown
 * last). */
int compare_models_print(FILE *f, const rrun *runs, rmodel *const *ms, const int *nm, int n_runs, const char *sort,
                         const char *kind);

#endif
