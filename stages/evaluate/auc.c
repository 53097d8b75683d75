/* auc.c: Mann-Whitney AUC with average ranks for ties, per task, and log loss (auc.h). Ranks are
 * summed in double: exact for integer and half-integer ranks up to 2^52, so any split fits. */
#include "stages/evaluate/auc.h"

#include <math.h>
#include <stdlib.h>

#include "common/error.h"

typedef struct {
    double s;
    int8_t y;
} scored;

static int cmp_scored(const void *a, const void *b) {
    double x = ((const scored *)a)->s, y = ((const scored *)b)->s;
    return (x > y) - (x < y);
}

int auc_compute(double *auc, const double *scores, const int8_t *labels, size_t n, int64_t *n_pos, int64_t *n_neg) {
    *auc = NAN;
    size_t m = 0;
    for (size_t i = 0; i < n; i++) m += labels[i] == 0 || labels[i] == 1;
    scored *v = xmalloc((m ? m : 1) * sizeof *v);
    if (!v) return -1;
    int64_t np = 0, nn = 0;
    m = 0;
    for (size_t i = 0; i < n; i++) {
        if (labels[i] != 0 && labels[i] != 1) continue;
        if (isnan(scores[i])) {
            free(v);
            return err_set(ERR_INPUT, "AUC: example %zu has a NaN score; the model produced NaN logits", i);
        }
        v[m].s = scores[i];
        v[m].y = labels[i];
        np += labels[i] == 1;
        nn += labels[i] == 0;
        m++;
    }
    if (n_pos) *n_pos = np;
    if (n_neg) *n_neg = nn;
    if (np == 0 || nn == 0) {
        free(v);
        return 0;
    }
    qsort(v, m, sizeof *v, cmp_scored);
    /* sum of the (1-based, tie-averaged) ranks of the positives */
    double rank_sum = 0;
    for (size_t i = 0; i < m;) {
        size_t j = i;
        int64_t pos = 0;
        while (j < m && v[j].s == v[i].s) pos += v[j++].y == 1;
        double avg = 0.5 * ((double)(i + 1) + (double)j); /* mean of ranks i+1 .. j */
        rank_sum += avg * (double)pos;
        i = j;
    }
    *auc = (rank_sum - 0.5 * (double)np * (double)(np + 1)) / ((double)np * (double)nn);
    free(v);
    return 0;
}

int auc_per_task(double *auc, int64_t *n_pos, int64_t *n_neg, const double *scores, const int8_t *labels,
                 const uint16_t *task, size_t n, int n_tasks) {
    int8_t *lab = xmalloc((n ? n : 1) * sizeof *lab);
    if (!lab) return -1;
    int rc = 0;
    for (int t = 0; t < n_tasks && !rc; t++) {
        for (size_t i = 0; i < n; i++) lab[i] = task[i] == t ? labels[i] : -1;
        rc = auc_compute(&auc[t], scores, lab, n, n_pos ? &n_pos[t] : NULL, n_neg ? &n_neg[t] : NULL);
    }
    free(lab);
    return rc;
}

double auc_mean(const double *auc, int n, int *n_used) {
    double s = 0;
    int k = 0;
    for (int i = 0; i < n; i++)
        if (isfinite(auc[i])) s += auc[i], k++;
    if (n_used) *n_used = k;
    return k ? s / k : NAN;
}

/* log(1 + exp(x)) without overflow, and to full precision for large |x|. */
static double softplus(double x) { return x > 0 ? x + log1p(exp(-x)) : log1p(exp(x)); }

double log_loss_margin(const double *margin, const int8_t *labels, size_t n) {
    double s = 0;
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (labels[i] != 0 && labels[i] != 1) continue;
        /* -log sigmoid(m) = softplus(-m); -log(1 - sigmoid(m)) = softplus(m) */
        s += softplus(labels[i] ? -margin[i] : margin[i]);
        k++;
    }
    return k ? s / (double)k : NAN;
}
