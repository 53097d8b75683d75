/* bench_learnable.c: is the synthetic data learnable by a small model in a few hundred steps on a
 * CPU? Trains a small random-init Llama on the quickstart's synthetic train split with the smelt
 * engine (weighted cross-entropy: the label token weighted 0.95, the prompt tokens 0.05, as the
 * paper's ranking recipe), then scores the test split with the evaluate stage's scorer and prints
 * the test AUC every `every` steps beside the popularity baseline and the generator's own AUC.
 * Asserts nothing. usage: bench_learnable [steps batch_tokens hidden layers threads every action_weight]
 * (default 300 8192 64 2 0 100 0.95: the label token's share of the loss, the rest on the prompt) */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/error.h"
#include "common/fsutil.h"
#include "common/log.h"
#include "kernels/threads.h"
#include "model/optim.h"
#include "stages/data/data.h"
#include "stages/data/rng.h"
#include "stages/evaluate/auc.h"
#include "stages/evaluate/score.h"
#include "tests/eval_testmodel.h"

static void die(const char *what) {
    fprintf(stderr, "bench_learnable: %s: %s\n", what, err_msg());
    exit(1);
}

static double metric_pop = NAN, metric_truth = NAN;
static int on_metric(void *ctx, const char *key, double v) {
    (void)ctx;
    if (!strcmp(key, "baseline_popularity_auc_test")) metric_pop = v;
    if (!strcmp(key, "truth_auc_test")) metric_truth = v;
    return 0;
}

static double test_auc(model *m, const dataset *ds, const ds_split *te) {
    int64_t n = te->n_examples;
    double *margin = malloc((size_t)n * sizeof *margin), auc[8];
    int8_t *lab = malloc((size_t)n);
    uint16_t *task = malloc((size_t)n * sizeof *task);
    score_opts o = {.share_prefix = 1, .yes_id = ds->yes_id, .no_id = ds->no_id};
    if (score_split(m, te, 0, n, &o, &(score_out){margin, NULL, NULL})) die("score");
    for (int64_t i = 0; i < n; i++) lab[i] = te->ex[i].label, task[i] = te->ex[i].task;
    if (auc_per_task(auc, NULL, NULL, margin, lab, task, (size_t)n, ds->n_tasks)) die("auc");
    free(margin), free(lab), free(task);
    return auc_mean(auc, ds->n_tasks, NULL);
}

int main(int argc, char **argv) {
    int steps = argc > 1 ? atoi(argv[1]) : 300, batch = argc > 2 ? atoi(argv[2]) : 8192;
    int hidden = argc > 3 ? atoi(argv[3]) : 64, layers = argc > 4 ? atoi(argv[4]) : 2;
    int threads = kernels_set_threads(argc > 5 ? atoi(argv[5]) : 0), every = argc > 6 ? atoi(argv[6]) : 100;
    float aw = argc > 7 ? (float)atof(argv[7]) : 0.95f;
    log_set_level(LOG_WARN);
    char dir[128], cal[160];
    snprintf(dir, sizeof dir, "/tmp/smelt-bench-learnable-%d", (int)getpid());
    snprintf(cal, sizeof cal, "%s/cal", dir);
    if (fs_mkdir_p(cal, 0755)) die("mkdir");
    cJSON *p = cJSON_Parse(
        "{\"source\": \"synthetic\", \"tokenizer\": \"builtin:bytes\", \"labels\": {\"yes\": \" yes\", \"no\": \" no\"},"
        " \"tasks\": [\"like\", \"save\"], \"members\": 400, \"items\": 300, \"interactions\": 0, \"noise\": 0.1,"
        " \"history\": 20, \"history_tokens\": 320, \"max_tokens\": 512, \"candidates\": 8, \"min_history\": 3,"
        " \"train_groups\": 0, \"split\": {\"valid\": 0.1, \"test\": 0.1}, \"answers\": \"auto\","
        " \"calibration\": {\"samples\": 0, \"from\": \"train\", \"seed\": 0}, \"allow_test_calibration\": false}");
    if (!p || data_build(p, 7, dir, cal, on_metric, NULL)) die("data");
    cJSON_Delete(p);
    dataset ds;
    ds_split tr, te;
    if (dataset_open(&ds, dir) || dataset_split_open(&ds, "train", &tr) || dataset_split_open(&ds, "test", &te)) die("open");
    int heads = hidden >= 64 ? hidden / 32 : 2, kv = heads >= 2 ? heads / 2 : 1;
    model_config c = em_config(hidden, layers, heads, kv, hidden * 8 / 3, ds.vocab);
    model m;
    if (em_random_model(&m, &c, 1) || model_reserve_train(&m, batch)) die("model");
    optimizer opt;
    optim_config oc = {.beta1 = 0.9, .beta2 = 0.95, .eps = 1e-8, .weight_decay = 0.01, .clip = 1.0,
                       .schedule = {.kind = LR_COSINE, .lr = 3e-3, .min_lr_ratio = 0.1, .warmup = steps / 10, .total = steps}};
    if (optim_init(&opt, &m, &oc)) die("optim");
    int *tok = malloc((size_t)batch * sizeof *tok), *lens = malloc((size_t)batch * sizeof *lens);
    int *tgt = malloc((size_t)batch * sizeof *tgt);
    float *w = malloc((size_t)batch * sizeof *w), *dh = malloc((size_t)batch * hidden * sizeof *dh);
    drng r;
    drng_seed(&r, 3);
    printf("synthetic quickstart data: %lld train / %lld test examples; model hidden %d x %d layers (%zu params), "
           "%d tokens per step, %d threads\n", (long long)tr.n_examples, (long long)te.n_examples, hidden, layers,
           model_n_params(&c), batch, threads);
    printf("baselines on test: popularity AUC %.4f, the generator's P(yes) %.4f\n", metric_pop, metric_truth);
    printf("%6s %10s %10s %10s\n", "step", "loss", "test AUC", "seconds");
    printf("%6d %10s %10.4f %10.1f\n", 0, "-", test_auc(&m, &ds, &te), 0.0);
    double t0 = time_monotonic(), loss_sum = 0;
    int loss_n = 0;
    for (int step = 1; step <= steps; step++) {
        int n = 0, ns = 0;
        for (;;) { /* random whole examples until the batch is full */
            int64_t i = (int64_t)drng_below(&r, (uint64_t)tr.n_examples);
            int len = (int)tr.ex[i].n_tokens;
            if (n + len > batch) break;
            memcpy(tok + n, ds_example_tokens(&tr, i), (size_t)len * sizeof *tok);
            lens[ns++] = len;
            n += len;
        }
        model_batch b = {.tokens = tok, .seq_lens = lens, .n_tokens = n, .n_seqs = ns};
        model_batch_targets(&b, tgt);
        /* the label token (predicted at the position before it) aw, prompt tokens 1 - aw, each a mean */
        int n_act = 0, n_pr = 0;
        for (int k = 0; k < n - 1; k++)
            if (tgt[k] >= 0) (tgt[k] == ds.yes_id || tgt[k] == ds.no_id) && tok[k] == ':' ? n_act++ : n_pr++;
        for (int k = 0; k < n; k++)
            w[k] = tgt[k] < 0 ? 0 : ((tgt[k] == ds.yes_id || tgt[k] == ds.no_id) && tok[k] == ':') ? aw / n_act : (1 - aw) / n_pr;
        const float *hid;
        double loss = 0;
        lm_ce_ctx ce = {tgt, w};
        if (model_forward(&m, &b, &hid) || model_lm_loss(&m, hid, dh, n, lm_loss_ce, &ce, &loss) ||
            model_backward(&m, dh) || optim_step(&opt, &m))
            die("train step");
        model_zero_grad(&m);
        loss_sum += loss, loss_n++;
        if (step % every == 0 || step == steps) {
            printf("%6d %10.4f %10.4f %10.1f\n", step, loss_sum / loss_n, test_auc(&m, &ds, &te), time_monotonic() - t0);
            fflush(stdout);
            loss_sum = 0, loss_n = 0;
        }
    }
    free(tok), free(lens), free(tgt), free(w), free(dh);
    optim_free(&opt);
    model_free(&m);
    ds_split_close(&tr);
    ds_split_close(&te);
    dataset_close(&ds);
    fs_rm_rf(dir);
    return 0;
}
