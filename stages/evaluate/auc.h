/* auc.h: ranking quality of scores against yes/no labels (ALGORITHMS.md section 2): the area
 * under the ROC curve as the Mann-Whitney statistic, ties counted as 1/2 (one sort, average ranks
 * over tied groups, O(n log n)), per task and averaged over tasks, and the log loss from logit margins. */
#ifndef SMELT_STAGES_EVALUATE_AUC_H
#define SMELT_STAGES_EVALUATE_AUC_H

#include <stddef.h>
#include <stdint.h>

/* AUC of scores [n] against labels [n] (1 positive, 0 negative, any other value: skipped).
 * *auc = NAN when the positives or the negatives are absent: the statistic is undefined, which
 * callers must report (never a silent 0.5). n_pos/n_neg (may be NULL) receive the class counts.
 * Returns 0, or -1 with ERR_INPUT for a NaN score among the counted examples, ERR_NOMEM. */
int auc_compute(double *auc, const double *scores, const int8_t *labels, size_t n, int64_t *n_pos, int64_t *n_neg);

/* Per-task AUC: auc[t], n_pos[t], n_neg[t] for t < n_tasks over the examples with task[i] == t
 * (n_pos/n_neg may be NULL). Same return values as auc_compute. */
int auc_per_task(double *auc, int64_t *n_pos, int64_t *n_neg, const double *scores, const int8_t *labels,
                 const uint16_t *task, size_t n, int n_tasks);

/* The mean of the finite values of auc[n]; *n_used (may be NULL) receives how many; NAN when none. */
double auc_mean(const double *auc, int n, int *n_used);

/* Mean binary log loss -[y log p + (1-y) log(1-p)] over labelled examples with p = sigmoid(m) given
 * by the margins m[n] = logit(p) (score.h): each term is log(1 + exp(-m)) or log(1 + exp(m)),
 * computed without forming p, so no clipping is needed and a margin of 40 costs 40, not the 34.5
 * of a probability clipped at 1 - 1e-15. NAN when there is no labelled example. */
double log_loss_margin(const double *margin, const int8_t *labels, size_t n);

#endif
