/* test_score.c: the evaluate stage's scoring (stages/evaluate/score.h) on a random model:
 * - scores and target log-likelihoods equal an independent computation through the training
 *   forward (model_forward + model_logits over the whole example, a different code path from the
 *   KV-cache inference the scorer uses);
 * - prefix sharing (each group's prefix prefilled once) equals a full prefill of every example;
 * - a range that cuts a group (as MPI sharding may) gives the same values as the whole split;
 * - generative examples (pairs with many response targets) and a vocabulary mismatch;
 * - a confident model whose margins z_yes - z_no lie in [15, 40]: P(yes)/(P(yes)+P(no)) is exactly
 *   1.0f there, so a float score would tie every example (AUC 0.5); the margins keep their order,
 *   the AUC equals the AUC of the exact margins and the log loss is log-sigmoid of them. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/error.h"
#include "common/fsutil.h"
#include "common/log.h"
#include "kernels/threads.h"
#include "stages/data/data.h"
#include "stages/evaluate/auc.h"
#include "stages/evaluate/evaluate.h"
#include "stages/evaluate/score.h"
#include "tests/check.h"
#include "tests/eval_testmodel.h"

static char tmp[256];

/* Tolerance. Both paths compute the same fp32 sums in different orders and chunkings, so a logit
 * differs by at most about (2 L + 1) matmul stages x K x eps x |logit| with K the longest
 * reduction (the prompt length for attention, the MLP width otherwise) and eps = 2^-24; the score
 * margin l_yes - l_no sees two logits. For L = 2 and K = 512 this bound is 1.6e-4 per unit of logit;
 * the test scales it by the largest |logit| it sees. */
static double logit_tol(const model_config *c, int max_len, double max_logit) {
    int k = max_len > c->intermediate ? max_len : c->intermediate;
    return (2.0 * c->n_layers + 1) * k * 0x1.0p-24 * (max_logit > 1 ? max_logit : 1);
}

/* The reference: one training-path forward of the whole example. */
static void reference(model *m, const ds_split *s, int64_t i, int32_t yes, int32_t no, double *margin, double *nll,
                      int *nt, double *max_logit) {
    const ds_example *e = &s->ex[i];
    const int32_t *tok = ds_example_tokens(s, i);
    const uint8_t *mask = ds_example_mask(s, i);
    int n = (int)e->n_tokens, V = m->cfg.vocab;
    int *t = malloc((size_t)n * sizeof *t);
    for (int k = 0; k < n; k++) t[k] = tok[k];
    model_batch b = {.tokens = t, .seq_lens = &n, .n_tokens = n, .n_seqs = 1};
    const float *hidden;
    CHECK_OK(model_forward(m, &b, &hidden));
    float *lg = malloc((size_t)V * sizeof *lg);
    *margin = NAN;
    *nll = 0;
    *nt = 0;
    for (int k = 1; k < n; k++) {
        if (mask[k] == DS_TOK_PROMPT) continue;
        CHECK_OK(model_logits(m, lg, hidden + (size_t)(k - 1) * m->cfg.hidden, 1));
        double mx = lg[0], sum = 0;
        for (int v = 0; v < V; v++) mx = fmax(mx, lg[v]), *max_logit = fmax(*max_logit, fabs(lg[v]));
        for (int v = 0; v < V; v++) sum += exp(lg[v] - mx);
        *nll += mx + log(sum) - lg[tok[k]];
        (*nt)++;
        if (k == (int)e->answer_pos && mask[k] == DS_TOK_ACTION) *margin = (double)lg[yes] - (double)lg[no];
    }
    free(lg);
    free(t);
}

static void build(const char *name, const char *json) {
    char *dir = fs_join(tmp, name), *cal = xasprintf("%s/%s-cal", tmp, name);
    CHECK_OK(fs_mkdir_p(dir, 0755));
    CHECK_OK(fs_mkdir_p(cal, 0755));
    cJSON *p = cJSON_Parse(json);
    CHECK(p != NULL);
    CHECK_OK(data_build(p, 11, dir, cal, NULL, NULL));
    cJSON_Delete(p);
    free(dir);
    free(cal);
}

static void check_split(const char *name, const char *split, int expect_scores) {
    char *dir = fs_join(tmp, name);
    dataset ds;
    ds_split s;
    CHECK_OK(dataset_open(&ds, dir));
    CHECK_OK(dataset_split_open(&ds, split, &s));
    model_config c = em_config(32, 2, 4, 2, 64, ds.vocab);
    model m;
    CHECK_OK(em_random_model(&m, &c, 5));
    int max_len = 1;
    for (int64_t i = 0; i < s.n_examples; i++) max_len = s.ex[i].n_tokens > (uint32_t)max_len ? (int)s.ex[i].n_tokens : max_len;
    CHECK_OK(model_reserve_train(&m, max_len));
    int64_t n = s.n_examples;
    double *a = malloc((size_t)n * sizeof *a), *b = malloc((size_t)n * sizeof *b), *h = malloc((size_t)n * sizeof *h);
    double *na = malloc((size_t)n * sizeof *na), *nb = malloc((size_t)n * sizeof *nb), *nh = malloc((size_t)n * sizeof *nh);
    int32_t *ta = malloc((size_t)n * sizeof *ta), *tb = malloc((size_t)n * sizeof *tb), *th = malloc((size_t)n * sizeof *th);
    score_opts o = {.share_prefix = 1, .yes_id = ds.yes_id, .no_id = ds.no_id};
    CHECK_OK(score_split(&m, &s, 0, n, &o, &(score_out){a, na, ta}));
    o.share_prefix = 0;
    CHECK_OK(score_split(&m, &s, 0, n, &o, &(score_out){b, nb, tb}));
    /* a shard that starts and ends inside groups */
    int64_t lo = n / 3 + 1, hi = 2 * n / 3 + 1;
    o.share_prefix = 1;
    CHECK_OK(score_split(&m, &s, lo, hi, &o, &(score_out){h, nh, th}));
    double max_logit = 0, worst_share = 0, worst_ref = 0, worst_nll = 0;
    int64_t shared_tokens = 0, scored = 0;
    double tol = 0;
    for (int64_t i = 0; i < n; i++) {
        double rs, rn;
        int rt;
        reference(&m, &s, i, ds.yes_id, ds.no_id, &rs, &rn, &rt, &max_logit);
        tol = logit_tol(&c, max_len, max_logit);
        CHECK_INT(ta[i], rt);
        CHECK_INT(tb[i], rt);
        if (expect_scores) {
            CHECK(isfinite(a[i]) && isfinite(b[i]));
            worst_share = fmax(worst_share, fabs(a[i] - b[i]));
            worst_ref = fmax(worst_ref, fabs(a[i] - rs));
            scored++;
        } else {
            CHECK(isnan(a[i]) && isnan(b[i]));
        }
        worst_nll = fmax(worst_nll, fabs(na[i] - rn) / (rt ? rt : 1));
        worst_nll = fmax(worst_nll, fabs(nb[i] - rn) / (rt ? rt : 1));
        if (i >= lo && i < hi) {
            CHECK(memcmp(&h[i - lo], &a[i], sizeof *a) == 0 || (isnan(h[i - lo]) && isnan(a[i])));
            CHECK(nh[i - lo] == na[i] && th[i - lo] == ta[i]);
        }
        shared_tokens += s.ex[i].prefix_len;
    }
    printf("%s/%s: %lld examples (%lld scored, %.0f shared prefix tokens on average), max |logit| %.2f, tolerance "
           "%.2e: sharing vs full prefill %.2e, vs training forward %.2e, nll per target %.2e\n",
           name, split, (long long)n, (long long)scored, n ? (double)shared_tokens / n : 0, max_logit, tol,
           worst_share, worst_ref, worst_nll);
    CHECK(worst_share <= 2 * tol);
    CHECK(worst_ref <= 2 * tol);
    CHECK(worst_nll <= 2 * tol);
    if (!strncmp(name, "ranking", 7)) CHECK(shared_tokens > 0);
    /* a model whose vocabulary is smaller than the data's is refused */
    model small;
    model_config sc = em_config(32, 1, 4, 2, 64, ds.vocab - 1);
    CHECK_OK(em_random_model(&small, &sc, 6));
    CHECK(score_split(&small, &s, 0, n, &o, &(score_out){a, na, ta}) == -1 && strstr(err_msg(), "vocabulary"));
    model_free(&small);
    free(a), free(b), free(h), free(na), free(nb), free(nh), free(ta), free(tb), free(th);
    model_free(&m);
    ds_split_close(&s);
    dataset_close(&ds);
    free(dir);
}

/* Solves the k x k symmetric positive definite system g x = t in place (Cholesky, double). */
static void spd_solve(double *g, double *t, int k) {
    for (int j = 0; j < k; j++) {
        for (int p = 0; p < j; p++) g[j * k + j] -= g[j * k + p] * g[j * k + p];
        CHECK(g[j * k + j] > 0);
        g[j * k + j] = sqrt(g[j * k + j]);
        for (int i = j + 1; i < k; i++) {
            for (int p = 0; p < j; p++) g[i * k + j] -= g[i * k + p] * g[j * k + p];
            g[i * k + j] /= g[j * k + j];
        }
    }
    for (int i = 0; i < k; i++) { /* L y = t, then L^T x = y */
        for (int p = 0; p < i; p++) t[i] -= g[i * k + p] * t[p];
        t[i] /= g[i * k + i];
    }
    for (int i = k - 1; i >= 0; i--) {
        for (int p = i + 1; p < k; p++) t[i] -= g[p * k + i] * t[p];
        t[i] /= g[i * k + i];
    }
}

/* A model whose answer margins are set to chosen values in [15, 40]: with an untied head, the
 * margin of example i is (w_yes - w_no) . h_i, h_i its final hidden state before the answer. With
 * w_no = 0 and w_yes = H^T a, G a = t (G = H H^T, k <= hidden examples) the margins are the
 * targets t up to fp32 rounding; the test measures them exactly (double) instead of trusting t. */
static void check_large_margins(void) {
    char *dir = fs_join(tmp, "ranking");
    dataset ds;
    ds_split s;
    CHECK_OK(dataset_open(&ds, dir));
    CHECK_OK(dataset_split_open(&ds, "train", &s));
    model_config c = em_config(64, 2, 4, 2, 96, ds.vocab);
    c.tie_embeddings = 0;
    model m;
    CHECK_OK(em_random_model(&m, &c, 17));
    const int H = c.hidden, K = s.n_examples < 48 ? (int)s.n_examples : 48;
    int max_len = 1;
    for (int i = 0; i < K; i++) max_len = s.ex[i].n_tokens > (uint32_t)max_len ? (int)s.ex[i].n_tokens : max_len;
    CHECK_OK(model_reserve_train(&m, max_len));
    double *h = calloc((size_t)K * H, sizeof *h), *g = calloc((size_t)K * K, sizeof *g), *t = calloc((size_t)K, sizeof *t);
    double *ref = calloc((size_t)K, sizeof *ref), *got = calloc((size_t)K, sizeof *got), *nll = calloc((size_t)K, sizeof *nll);
    int32_t *nt = calloc((size_t)K, sizeof *nt);
    int8_t *lab = calloc((size_t)K, 1);
    drng r;
    drng_seed(&r, 99);
    for (int i = 0; i < K; i++) {
        const ds_example *e = &s.ex[i];
        int n = (int)e->n_tokens, *tk = malloc((size_t)n * sizeof *tk);
        for (int k = 0; k < n; k++) tk[k] = ds_example_tokens(&s, i)[k];
        model_batch b = {.tokens = tk, .seq_lens = &n, .n_tokens = n, .n_seqs = 1};
        const float *hid;
        CHECK_OK(model_forward(&m, &b, &hid));
        for (int j = 0; j < H; j++) h[(size_t)i * H + j] = hid[(size_t)(e->answer_pos - 1) * H + j];
        free(tk);
        lab[i] = e->label;
        /* positives mostly above negatives, with overlap: an AUC near 0.85, not 1 */
        double u = drng_uniform(&r);
        t[i] = 15 + 25 * (e->label == DS_LABEL_YES ? 0.3 + 0.7 * u : 0.7 * u);
    }
    for (int i = 0; i < K; i++)
        for (int k = 0; k < K; k++)
            for (int j = 0; j < H; j++) g[i * K + k] += h[(size_t)i * H + j] * h[(size_t)k * H + j];
    spd_solve(g, t, K);
    weights_tensor wt[4 * MODEL_MAX_LAYERS * 16];
    int nw = weights_tensors(&m.w, &m.cfg, wt, (int)(sizeof wt / sizeof wt[0])), found = 0;
    float *head = NULL;
    for (int i = 0; i < nw; i++)
        if (!strcmp(wt[i].name, "lm_head.weight")) head = wt[i].data, found = 1;
    CHECK(found);
    float *w_yes = head + (size_t)ds.yes_id * H, *w_no = head + (size_t)ds.no_id * H;
    for (int j = 0; j < H; j++) {
        double v = 0;
        for (int i = 0; i < K; i++) v += t[i] * h[(size_t)i * H + j];
        w_yes[j] = (float)v;
        w_no[j] = 0;
    }
    /* the exact margins of this model (double sums of the fp32 weights and hidden states) */
    double lo = INFINITY, hi = -INFINITY;
    int saturated = 0;
    for (int i = 0; i < K; i++) {
        ref[i] = 0;
        for (int j = 0; j < H; j++) ref[i] += (double)w_yes[j] * h[(size_t)i * H + j];
        lo = fmin(lo, ref[i]), hi = fmax(hi, ref[i]);
        saturated += (float)score_p_yes(ref[i]) == 1.0f;
    }
    CHECK(lo >= 14.5 && hi <= 40.5); /* the construction worked */
    score_opts o = {.share_prefix = 1, .yes_id = ds.yes_id, .no_id = ds.no_id};
    CHECK_OK(score_split(&m, &s, 0, K, &o, &(score_out){got, nll, nt}));
    /* margins to within the fp32 bound of two logits of size <= 40 */
    double tol = 2 * logit_tol(&c, max_len, 40), worst = 0;
    for (int i = 0; i < K; i++) worst = fmax(worst, fabs(got[i] - ref[i]));
    CHECK(worst <= tol);
    /* the AUC: equal to the exact margins' AUC, except for pairs closer than the tolerance */
    double auc_ref, auc_got;
    int64_t np, nn, close = 0;
    CHECK_OK(auc_compute(&auc_ref, ref, lab, (size_t)K, &np, &nn));
    CHECK_OK(auc_compute(&auc_got, got, lab, (size_t)K, NULL, NULL));
    for (int i = 0; i < K; i++)
        for (int k = 0; k < K; k++) close += lab[i] == 1 && lab[k] == 0 && fabs(ref[i] - ref[k]) <= 2 * tol;
    CHECK(np > 0 && nn > 0 && auc_ref >= 0.7);
    CHECK(fabs(auc_got - auc_ref) <= (double)close / ((double)np * (double)nn) + 1e-15);
    /* the log loss: for m >= 15, -log sigmoid(m) = e^-m and -log(1 - sigmoid(m)) = m + e^-m, each to
     * within e^-2m relative (< 1e-13), an independent form of log-sigmoid for this range */
    double ll_ref = 0;
    for (int i = 0; i < K; i++) ll_ref += lab[i] == 1 ? exp(-ref[i]) : ref[i] + exp(-ref[i]);
    ll_ref /= K;
    double ll_got = log_loss_margin(got, lab, (size_t)K);
    CHECK(fabs(ll_got - ll_ref) <= tol + 1e-12 * ll_ref);
    /* through the evaluate stage's summary (per task, then the mean over tasks) */
    eval_result res;
    CHECK_OK(eval_summarize(&res, &ds, &s, K, got, nll, nt, NULL, "0"));
    double task_ref[DS_MAX_TASKS];
    uint16_t *task = calloc((size_t)K, sizeof *task);
    for (int i = 0; i < K; i++) task[i] = s.ex[i].task;
    CHECK_OK(auc_per_task(task_ref, NULL, NULL, ref, lab, task, (size_t)K, ds.n_tasks));
    double mean_ref = auc_mean(task_ref, ds.n_tasks, NULL);
    CHECK(fabs(res.auc_mean - mean_ref) <= 2.0 * close / ((double)np * (double)nn) + 1e-15);
    CHECK(fabs(res.log_loss - ll_ref) <= tol + 1e-12 * ll_ref);
    printf("margins in [%.1f, %.1f] on %d examples (%d of them sigmoid to 1.0f): AUC %.4f (exact margins %.4f), "
           "evaluate's mean AUC %.4f (%.4f); log loss %.4f (%.4f); |margin - exact| %.2e (tol %.2e)\n",
           lo, hi, K, saturated, auc_got, auc_ref, res.auc_mean, mean_ref, ll_got, ll_ref, worst, tol);
    eval_result_free(&res);
    free(task), free(h), free(g), free(t), free(ref), free(got), free(nll), free(nt), free(lab);
    model_free(&m);
    ds_split_close(&s);
    dataset_close(&ds);
    free(dir);
}

int main(void) {
    kernels_set_threads(1);
    log_set_level(LOG_WARN);
    snprintf(tmp, sizeof tmp, "/tmp/smelt-test-score-%d", (int)getpid());
    CHECK_OK(fs_mkdir_p(tmp, 0755));
    build("ranking", "{\"source\": \"synthetic\", \"tokenizer\": \"builtin:bytes\", \"labels\": {\"yes\": \" yes\", \"no\": \" no\"},"
                     " \"tasks\": [\"like\", \"save\"], \"members\": 5, \"items\": 40, \"interactions\": 24, \"noise\": 0.1,"
                     " \"history\": 6, \"history_tokens\": 200, \"max_tokens\": 300, \"candidates\": 4, \"min_history\": 3,"
                     " \"train_groups\": 1, \"split\": {\"valid\": 0.1, \"test\": 0.2}, \"answers\": \"auto\","
                     " \"calibration\": {\"samples\": 4, \"from\": \"train\", \"seed\": 0}, \"allow_test_calibration\": false}");
    check_split("ranking", "test", 1);
    check_split("ranking-cal", "calibration", 1);
    check_large_margins();
    /* generative pairs: many response targets per example */
    char *pairs = fs_join(tmp, "pairs.jsonl");
    const char *lines = "{\"prompt\": \"Name a color.\\n\", \"response\": \"Blue, like the sky at noon.\"}\n"
                        "{\"prompt\": \"Count to five:\", \"response\": \" 1 2 3 4 5\"}\n"
                        "{\"prompt\": \"Say hi\", \"response\": \"hi there, how are you today?\"}\n";
    CHECK_OK(fs_write_atomic(pairs, lines, strlen(lines)));
    char *json = xasprintf("{\"source\": \"pairs\", \"path\": \"%s\", \"format\": \"auto\", \"tokenizer\": \"builtin:bytes\","
                           " \"labels\": {\"yes\": \" yes\", \"no\": \" no\"}, \"tasks\": [\"like\"], \"members\": 0,"
                           " \"history\": 20, \"history_tokens\": 320, \"max_tokens\": 512, \"candidates\": 8, \"min_history\": 3,"
                           " \"train_groups\": 0, \"split\": {\"valid\": 0, \"test\": 0}, \"answers\": \"auto\", \"fields\": {\"prompt\":"
                           " \"prompt\", \"response\": \"response\", \"instruction\": \"instruction\", \"input\": \"input\", \"output\":"
                           " \"output\", \"messages\": \"messages\", \"text\": \"text\"}, \"calibration\": {\"samples\": 0, \"from\":"
                           " \"train\", \"seed\": 0}, \"allow_test_calibration\": false}", pairs);
    build("pairs", json);
    check_split("pairs", "train", 0);
    free(json);
    free(pairs);
    fs_rm_rf(tmp);
    return check_report("test_score");
}
