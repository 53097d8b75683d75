/* bench_prefix.c: evaluate-stage scoring with and without prefix sharing on synthetic data with
 * k candidates per member (k = 8 by default): each group's profile + history is prefilled once into
 * the KV cache and reused, against a full prefill of every prompt. Prints time, examples/s, the
 * speedup and the largest score difference between the two. Asserts nothing.
 * usage: bench_prefix [k members hidden layers threads]   (default 8 48 192 4 0 = all cores) */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "common/error.h"
#include "common/fsutil.h"
#include "common/log.h"
#include "kernels/threads.h"
#include "stages/data/data.h"
#include "stages/evaluate/score.h"
#include "tests/eval_testmodel.h"

static void die(const char *what) {
    fprintf(stderr, "bench_prefix: %s: %s\n", what, err_msg());
    exit(1);
}

int main(int argc, char **argv) {
    int k = argc > 1 ? atoi(argv[1]) : 8, members = argc > 2 ? atoi(argv[2]) : 48;
    int hidden = argc > 3 ? atoi(argv[3]) : 192, layers = argc > 4 ? atoi(argv[4]) : 4;
    int threads = kernels_set_threads(argc > 5 ? atoi(argv[5]) : 0);
    log_set_level(LOG_WARN);
    char dir[128], calib[160];
    snprintf(dir, sizeof dir, "/tmp/smelt-bench-prefix-%d", (int)getpid());
    snprintf(calib, sizeof calib, "%s/calib", dir);
    if (fs_mkdir_p(calib, 0755)) die("mkdir");
    /* the quickstart's data, with k candidates per group and test = the last k events of a member */
    char json[512];
    snprintf(json, sizeof json,
             "{\"source\": \"synthetic\", \"tokenizer\": \"builtin:bytes\", \"labels\": {\"yes\": \" yes\", \"no\": \" no\"},"
             " \"tasks\": [\"like\"], \"members\": %d, \"items\": 300, \"interactions\": %d, \"noise\": 0.1, \"history\": 20,"
             " \"history_tokens\": 320, \"max_tokens\": 512, \"candidates\": %d, \"min_history\": 3, \"train_groups\": 1,"
             " \"split\": {\"valid\": 0, \"test\": %g}, \"answers\": \"auto\", \"calibration\": {\"samples\": 0, \"from\": \"train\", \"seed\": 0}, \"allow_test_calibration\": false}",
             members, 40 + k, k, (double)k / (40 + k) + 1e-9);
    cJSON *p = cJSON_Parse(json);
    if (!p || data_build(p, 7, dir, calib, NULL, NULL)) die("data");
    cJSON_Delete(p);
    dataset ds;
    ds_split s;
    if (dataset_open(&ds, dir) || dataset_split_open(&ds, "test", &s)) die("open");
    model_config c = em_config(hidden, layers, hidden / 32, hidden / 96 > 0 ? hidden / 96 : 1, hidden * 8 / 3, ds.vocab);
    model m;
    if (em_random_model(&m, &c, 1)) die("model");
    int64_t n = s.n_examples, plen = 0, toks = 0;
    for (int64_t i = 0; i < n; i++) plen += s.ex[i].prefix_len, toks += s.ex[i].n_tokens;
    double *a = malloc((size_t)n * sizeof *a), *b = malloc((size_t)n * sizeof *b);
    score_opts o = {.share_prefix = 1, .yes_id = ds.yes_id, .no_id = ds.no_id};
    score_out oa = {a, NULL, NULL}, ob = {b, NULL, NULL};
    /* warm up once (allocations, page faults), then time each mode */
    if (score_split(&m, &s, 0, n < 8 ? n : 8, &o, &oa)) die("warm-up");
    double t0 = time_monotonic();
    if (score_split(&m, &s, 0, n, &o, &oa)) die("shared");
    double t_shared = time_monotonic() - t0;
    o.share_prefix = 0;
    t0 = time_monotonic();
    if (score_split(&m, &s, 0, n, &o, &ob)) die("plain");
    double t_plain = time_monotonic() - t0;
    double maxd = 0;
    for (int64_t i = 0; i < n; i++) maxd = fmax(maxd, fabs(a[i] - b[i]));
    printf("prefix sharing, k = %d candidates per member: %lld examples in %lld groups, %.0f tokens per prompt "
           "(%.0f shared), model hidden %d x %d layers (%zu params), %d threads\n",
           k, (long long)n, (long long)s.n_groups, (double)toks / n, (double)plen / n, hidden, layers,
           model_n_params(&c), threads);
    printf("%-22s %10s %12s %14s\n", "mode", "seconds", "examples/s", "prompt tok/s");
    printf("%-22s %10.3f %12.1f %14.0f\n", "full prefill", t_plain, n / t_plain, toks / t_plain);
    printf("%-22s %10.3f %12.1f %14.0f\n", "shared prefix (KV)", t_shared, n / t_shared, toks / t_shared);
    printf("speedup %.2fx (ideal for these lengths %.2fx); largest |margin difference| %.3g\n", t_plain / t_shared,
           (double)toks / (double)(toks - plen + plen / k), maxd);
    free(a);
    free(b);
    model_free(&m);
    ds_split_close(&s);
    dataset_close(&ds);
    fs_rm_rf(dir);
    return 0;
}
