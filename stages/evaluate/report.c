/* report.c: the evaluate stage's summary (evaluate.h): AUC per task and averaged, log loss,
 * response loss and perplexity, deltas against a reference, metrics.json and stage metrics. A
 * task whose examples are all yes or all no has no AUC: it is NaN in metrics.json (null), left out
 * of the mean with a warning naming it, and counted in the metric tasks_undefined. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "common/fsutil.h"
#include "common/log.h"
#include "stages/evaluate/auc.h"
#include "stages/evaluate/evaluate.h"
#include "stages/stage.h"

static double json_num(const cJSON *o, const char *k) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsNumber(v) ? v->valuedouble : NAN;
}

static int read_reference(eval_result *r, const cJSON *ref) {
    const cJSON *dd = cJSON_GetObjectItemCaseSensitive(ref, "data_digest"),
                *sp = cJSON_GetObjectItemCaseSensitive(ref, "split");
    if (!cJSON_IsString(dd) || !cJSON_IsString(sp))
        return err_set(ERR_INPUT, "the reference's metrics.json lacks data_digest/split: is it an evaluate stage?");
    if (strcmp(dd->valuestring, r->data_digest) || strcmp(sp->valuestring, r->split))
        return err_set(ERR_INPUT, "the reference evaluated split %s of data %.12s, this stage split %s of data %.12s; "
                       "deltas only mean something on the same examples: give both the same data and split",
                       sp->valuestring, dd->valuestring, r->split, r->data_digest);
    r->has_ref = 1;
    r->ref_auc = json_num(ref, "auc");
    r->ref_response_loss = json_num(ref, "response_loss");
    r->ref_perplexity = json_num(ref, "perplexity");
    const cJSON *tasks = cJSON_GetObjectItemCaseSensitive(ref, "tasks");
    for (int t = 0; t < r->n_tasks; t++)
        r->ref_task_auc[t] = json_num(cJSON_GetObjectItemCaseSensitive(tasks, r->tasks[t].name), "auc");
    return 0;
}

int eval_summarize(eval_result *r, const dataset *ds, const ds_split *s, int64_t n, const double *margin,
                   const double *nll, const int32_t *nt, const cJSON *ref, const char *data_digest) {
    memset(r, 0, sizeof *r);
    snprintf(r->split, sizeof r->split, "%s", s->name);
    snprintf(r->data_digest, sizeof r->data_digest, "%s", data_digest);
    r->examples = n;
    r->n_tasks = ds->n_tasks;
    r->tasks = ds->tasks;
    r->auc = xmalloc((size_t)r->n_tasks * sizeof *r->auc);
    r->ref_task_auc = xmalloc((size_t)r->n_tasks * sizeof *r->ref_task_auc);
    r->pos = xcalloc((size_t)r->n_tasks, sizeof *r->pos);
    r->neg = xcalloc((size_t)r->n_tasks, sizeof *r->neg);
    int8_t *lab = xmalloc((size_t)(n ? n : 1));
    uint16_t *task = xmalloc((size_t)(n ? n : 1) * sizeof *task);
    int rc = -1;
    if (!r->auc || !r->ref_task_auc || !r->pos || !r->neg || !lab || !task) goto out;
    double loss = 0;
    for (int64_t i = 0; i < n; i++) {
        const ds_example *e = &s->ex[i];
        lab[i] = e->label;
        task[i] = e->task;
        r->labelled += e->label != DS_LABEL_NONE;
        r->targets += nt[i];
        loss += nll[i];
    }
    for (int t = 0; t < r->n_tasks; t++) r->auc[t] = r->ref_task_auc[t] = NAN;
    r->response_loss = r->targets ? loss / (double)r->targets : NAN;
    r->perplexity = r->targets ? exp(r->response_loss) : NAN;
    r->ranking = ds->yes_id >= 0 && ds->no_id >= 0 && r->labelled > 0;
    r->auc_mean = r->log_loss = NAN;
    if (r->ranking) {
        if (auc_per_task(r->auc, r->pos, r->neg, margin, lab, task, (size_t)n, r->n_tasks)) goto out;
        r->auc_mean = auc_mean(r->auc, r->n_tasks, &r->tasks_used);
        r->log_loss = log_loss_margin(margin, lab, (size_t)n);
        for (int t = 0; t < r->n_tasks; t++)
            if (isnan(r->auc[t]) && r->pos[t] + r->neg[t] > 0)
                log_warn("task %s: AUC is undefined: its %lld examples are all %s; it is left out of the mean AUC "
                         "(evaluate more examples, or another split)", r->tasks[t].name,
                         (long long)(r->pos[t] + r->neg[t]), r->pos[t] ? "yes" : "no");
        if (r->tasks_used == 0) log_warn("no task has both yes and no examples: the mean AUC is undefined");
    }
    if (ref && read_reference(r, ref)) goto out;
    rc = 0;
out:
    free(lab);
    free(task);
    if (rc) eval_result_free(r);
    return rc;
}

void eval_result_free(eval_result *r) {
    free(r->auc);
    free(r->ref_task_auc);
    free(r->pos);
    free(r->neg);
    r->auc = r->ref_task_auc = NULL;
    r->pos = r->neg = NULL;
}

/* NaN as JSON null. */
static void add_num(cJSON *o, const char *k, double v) {
    if (isfinite(v)) cJSON_AddNumberToObject(o, k, v);
    else cJSON_AddNullToObject(o, k);
}

int eval_write(const eval_result *r, const char *dir) {
    cJSON *j = cJSON_CreateObject();
    if (!j) return err_set(ERR_NOMEM, "building metrics.json");
    cJSON_AddStringToObject(j, "split", r->split);
    cJSON_AddStringToObject(j, "data_digest", r->data_digest);
    cJSON_AddNumberToObject(j, "examples", (double)r->examples);
    cJSON_AddNumberToObject(j, "labelled", (double)r->labelled);
    add_num(j, "auc", r->auc_mean);
    cJSON_AddNumberToObject(j, "tasks_used", r->tasks_used);
    add_num(j, "log_loss", r->log_loss);
    cJSON_AddNumberToObject(j, "targets", (double)r->targets);
    add_num(j, "response_loss", r->response_loss);
    add_num(j, "perplexity", r->perplexity);
    cJSON *tasks = cJSON_AddObjectToObject(j, "tasks");
    for (int t = 0; tasks && t < r->n_tasks; t++) {
        cJSON *o = cJSON_AddObjectToObject(tasks, r->tasks[t].name);
        if (!o) continue;
        add_num(o, "auc", r->auc[t]);
        cJSON_AddNumberToObject(o, "positives", (double)r->pos[t]);
        cJSON_AddNumberToObject(o, "negatives", (double)r->neg[t]);
        if (r->has_ref) add_num(o, "auc_delta", r->auc[t] - r->ref_task_auc[t]);
    }
    if (r->has_ref) {
        cJSON *d = cJSON_AddObjectToObject(j, "reference");
        if (d) {
            add_num(d, "auc", r->ref_auc);
            add_num(d, "auc_delta", r->auc_mean - r->ref_auc);
            add_num(d, "auc_delta_pct", 100 * (r->auc_mean - r->ref_auc) / r->ref_auc);
            add_num(d, "response_loss", r->ref_response_loss);
            add_num(d, "response_loss_delta", r->response_loss - r->ref_response_loss);
            add_num(d, "perplexity", r->ref_perplexity);
            add_num(d, "perplexity_delta", r->perplexity - r->ref_perplexity);
        }
    }
    char *text = cJSON_Print(j), *path = fs_join(dir, "metrics.json");
    int rc = (!text || !path) ? err_set(ERR_NOMEM, "printing metrics.json") : fs_write_atomic(path, text, strlen(text));
    cJSON_free(text);
    free(path);
    cJSON_Delete(j);
    return rc;
}

/* Records a metric when finite (NaN says "undefined", which metrics.json and the log state). */
static int put(stage_ctx *ctx, const char *k, double v) { return isfinite(v) ? stage_metric(ctx, k, 0, v) : 0; }

int eval_metrics(const eval_result *r, stage_ctx *ctx) {
    char key[160];
    int rc = put(ctx, "examples", (double)r->examples) || put(ctx, "targets", (double)r->targets) ||
             put(ctx, "response_loss", r->response_loss) || put(ctx, "perplexity", r->perplexity);
    if (!rc && r->ranking) {
        rc = put(ctx, "auc", r->auc_mean) || put(ctx, "log_loss", r->log_loss) ||
             put(ctx, "tasks_undefined", (double)(r->n_tasks - r->tasks_used));
        for (int t = 0; t < r->n_tasks && !rc; t++) {
            snprintf(key, sizeof key, "auc_%s", r->tasks[t].name);
            rc = put(ctx, key, r->auc[t]);
            if (!rc && r->has_ref) {
                snprintf(key, sizeof key, "auc_delta_%s", r->tasks[t].name);
                rc = put(ctx, key, r->auc[t] - r->ref_task_auc[t]);
            }
        }
    }
    if (!rc && r->has_ref) {
        rc = put(ctx, "auc_ref", r->ref_auc) || put(ctx, "auc_delta", r->auc_mean - r->ref_auc) ||
             put(ctx, "auc_delta_pct", 100 * (r->auc_mean - r->ref_auc) / r->ref_auc) ||
             put(ctx, "response_loss_delta", r->response_loss - r->ref_response_loss) ||
             put(ctx, "perplexity_delta", r->perplexity - r->ref_perplexity);
    }
    return rc ? -1 : 0;
}
