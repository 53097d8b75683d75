/* evaluate.h: the evaluate stage's summary of scored examples: per-task AUC (undefined tasks are
 * NaN and reported, never 0.5), mean AUC, log loss, response loss and perplexity, deltas against a
 * reference evaluation; written as metrics.json and recorded as stage metrics. */
#ifndef SMELT_STAGES_EVALUATE_EVALUATE_H
#define SMELT_STAGES_EVALUATE_EVALUATE_H

#include <cjson/cJSON.h>
#include <stdint.h>

#include "common/sha256.h"
#include "stages/data/dataset.h"

typedef struct stage_ctx stage_ctx;

typedef struct {
    char split[32];
    char data_digest[SHA256_HEX_LEN + 1];
    int64_t examples, labelled, targets;
    int ranking;               /* the set has yes/no labels and label tokens: AUC is defined */
    int n_tasks;
    const ds_task *tasks;      /* borrowed from the dataset */
    double *auc;               /* [n_tasks] NaN when a task lacks a class */
    int64_t *pos, *neg;        /* [n_tasks] */
    double auc_mean;           /* over tasks with both classes; NaN when none */
    int tasks_used;
    double log_loss;           /* over labelled examples, from log-sigmoid of the ranking margin */
    double response_loss;      /* mean -ln p over every target token (action and response) */
    double perplexity;         /* exp(response_loss) */
    int has_ref;
    double ref_auc, ref_response_loss, ref_perplexity;
    double *ref_task_auc;      /* [n_tasks] NaN when the reference lacks the task */
} eval_result;

/* Computes the summary of n scored examples of split s from their margins z_yes - z_no (score.h;
 * the AUC ranks them in double, the log loss is log-sigmoid of them). ref: the reference's
 * metrics.json (or NULL); it must have evaluated the same data artifact and split (ERR_INPUT
 * otherwise). */
int eval_summarize(eval_result *r, const dataset *ds, const ds_split *s, int64_t n, const double *margin,
                   const double *nll, const int32_t *nt, const cJSON *ref, const char *data_digest);
void eval_result_free(eval_result *r);
/* Writes dir/metrics.json. */
int eval_write(const eval_result *r, const char *dir);
/* Records the stage metrics: examples, auc, auc_<task>, log_loss, response_loss, perplexity, and
 * with a reference auc_ref, auc_delta (absolute), auc_delta_pct (100 (AUC - ref) / ref),
 * response_loss_delta, perplexity_delta, auc_delta_<task>. */
int eval_metrics(const eval_result *r, stage_ctx *ctx);

#endif
