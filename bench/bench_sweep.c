/* bench_sweep.c: one measurement of the CPU engine on one model shape, for bench/sweep.sh, which
 * runs every shape, mode and thread count beside PyTorch (bench/torch_sweep.py) and prints them
 * side by side. One measurement per process. Prints "key value" lines. Asserts nothing.
 *
 * usage: bench_sweep MODE SHAPE THREADS[,THREADS...] [PRECISION]
 *   MODE       train (tokens/s of a training step: forward, chunked LM head + CE, backward, AdamW),
 *              prefill (tokens/s of one sequence into an empty cache, logits of the last row),
 *              decode (tokens/s of single-token steps of one sequence, the weight bytes a step
 *              reads, and the read bandwidth measured in the same rounds), evaluate (examples/s of
 *              the evaluate stage's scoring on synthetic recommendation data, prefix sharing on),
 *              bandwidth (GB/s of reading 512 MiB, the best of 5 passes)
 *   SHAPE      one of the names of `shapes` below (bench_sweep list prints them)
 *   THREADS    thread counts, and PRECISION fp32 (default) or bf16 (mixed-precision products; for
 *              prefill, decode and evaluate also bf16 weight storage), comma lists: every
 *              configuration is measured in alternation (rounds that visit each in turn, the best of
 *              the rounds counting), so that a busy moment of a shared machine falls on each alike;
 *              keys are printed as t<threads>.<precision in effect>.<key>. A measurement repeats
 *              the step, prefill or 64 decode steps as often as fills ~0.2-0.3 s (the warm-up round
 *              times one), and reports the time of one; rounds: 5 (train of shapes wider than 512: 2)
 * Decode's read_gb_per_s is the read bandwidth over as long as the decode measurement took, right
 * after it, on the same threads (the best of the rounds, as for decode).
 * SWEEP_PROFILE=1 (train): the best step of each configuration by kind of work, on stderr.
 * train also prints cpu_step_s, the least CPU time of a step (all threads): under load, 1-thread
 * A/B comparisons of it do not count waits for a core. */
#include <immintrin.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/error.h"
#include "common/fsutil.h"
#include "common/log.h"
#include "kernels/profile.h"
#include "kernels/threads.h"
#include "model/model.h"
#include "model/optim.h"
#include "stages/data/data.h"
#include "stages/evaluate/score.h"
#include "tests/eval_testmodel.h"

typedef struct {
    const char *name;
    int hidden, layers, heads, kv_heads, inter, vocab, tied;
    int batch, seq; /* training batch (sequences x tokens); prefill: one sequence of seq tokens */
} shape;

/* From ~50K parameters to SmolLM2-135M's shape. student7m is the train issue's 7.1M student. */
static const shape shapes[] = {
    {"h32", 32, 2, 2, 1, 96, 512, 0, 4, 256},
    {"h64", 64, 2, 2, 1, 176, 512, 1, 4, 256},
    {"h128", 128, 4, 4, 2, 352, 2048, 1, 4, 256},
    {"student7m", 256, 4, 8, 4, 704, 8192, 0, 4, 256},
    {"llama32m", 512, 8, 8, 4, 1408, 8192, 0, 4, 256},
    {"smollm135m", 576, 30, 9, 3, 1536, 49152, 1, 4, 256},
};

static void die(const char *what) {
    fprintf(stderr, "bench_sweep: %s: %s\n", what, err_msg());
    exit(1);
}

static uint64_t rs = 88172645463325252ull;
static double urand(void) {
    rs ^= rs << 13, rs ^= rs >> 7, rs ^= rs << 17;
    return (double)(rs >> 11) / 9007199254740992.0;
}

static model_config config_of(const shape *s) {
    model_config c = em_config(s->hidden, s->layers, s->heads, s->kv_heads, s->inter, s->vocab);
    c.tie_embeddings = s->tied;
    return c;
}

/* Read bandwidth: the best of `passes` passes summing 512 MiB of floats on `threads` threads. */
__attribute__((target("avx512f"))) static float sum_block(const float *a, size_t n) {
    __m512 s0 = _mm512_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
    for (size_t i = 0; i + 64 <= n; i += 64) {
        s0 = _mm512_add_ps(s0, _mm512_loadu_ps(a + i));
        s1 = _mm512_add_ps(s1, _mm512_loadu_ps(a + i + 16));
        s2 = _mm512_add_ps(s2, _mm512_loadu_ps(a + i + 32));
        s3 = _mm512_add_ps(s3, _mm512_loadu_ps(a + i + 48));
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(s0, s1), _mm512_add_ps(s2, s3)));
}

/* The read buffer: 512 MiB of ones, allocated and touched once (a fresh one per measurement cost
 * ~0.2 s of page faults each time). */
static float *bw_buf;
static const size_t bw_n = (size_t)128 << 20;

static const float *bw_buffer(void) {
    if (!bw_buf) {
        bw_buf = malloc(sizeof(float) * bw_n);
        if (!bw_buf) die("bandwidth buffer");
#pragma omp parallel for num_threads(2) schedule(static)
        for (size_t i = 0; i < bw_n; i++) bw_buf[i] = 1.0f;
    }
    return bw_buf;
}

/* One pass over the buffer on `threads` threads: its seconds. */
static double read_pass(int threads) {
    const float *a = bw_buffer();
    double t = time_monotonic();
    float s = 0;
#pragma omp parallel num_threads(threads) reduction(+ : s)
    {
        const int id = omp_get_thread_num(), nt = omp_get_num_threads();
        const size_t per = bw_n / nt;
        s += sum_block(a + per * id, per);
    }
    t = time_monotonic() - t;
    if (s != (float)bw_n) fprintf(stderr, "bench_sweep: the bandwidth sum is off (%g)\n", s);
    return t;
}

/* Read bandwidth in GB/s: the best of `passes` single passes. */
static double read_bandwidth(int threads, int passes) {
    double best = 0;
    for (int r = 0; r < passes; r++) {
        const double g = bw_n * 4.0 / read_pass(threads) / 1e9;
        best = g > best ? g : best;
    }
    return best;
}

/* Read bandwidth in GB/s averaged over passes that last `seconds` (at least two passes): the
 * reference of a decode measurement of the same duration, so that both are averages over the same
 * length of time (the best single 20 ms pass of many is a maximum of a noisier figure). */
static double read_bandwidth_for(int threads, double seconds) {
    double el = 0;
    int n = 0;
    while (n < 2 || el < seconds) el += read_pass(threads), n++;
    return n * (bw_n * 4.0) / el / 1e9;
}

/* The configurations of a run, thread counts x precisions: each measurement is taken in rounds that
 * visit every configuration in turn, so that a busy moment of the machine hits each alike (the best
 * time per configuration counts). */
#define MAX_T 16
static int n_thr, thr[MAX_T], n_prec, n_cfg;
static model_precision precs[2];
static int cur_prec = -1;

/* Switches to configuration c (threads; precision: bf16 weights for inference, mixed products for
 * training). */
static void set_cfg(model *m, int c, int train) {
    kernels_set_threads(thr[c % n_thr]);
    const int p = c / n_thr;
    if (p != cur_prec && model_set_precision(m, precs[p], !train) < 0) die("precision");
    cur_prec = p;
}

/* "t<threads>.<precision>." of configuration c, the prefix of its keys. */
static const char *cfg_name(const model *m, int c) {
    static char buf[32];
    snprintf(buf, sizeof buf, "t%d.%s.", thr[c % n_thr],
             model_precision_name(precs[c / n_thr] == MODEL_BF16 && bf16_available() ? MODEL_BF16 : MODEL_FP32));
    return buf;
}

/* CPU seconds of the process (all threads): on a shared machine a 1-thread step's CPU time does
 * not count the time its thread waited for a core, so A/B comparisons under load can use it. */
static double process_cpu_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Repetitions per measurement: as many as make a measurement last about `target` seconds, from
 * the warm-up's time of one (a 1 ms prefill of a small shape timed once is mostly timer and
 * scheduler noise). */
static int reps_for(double one, double target) {
    const double r = one > 0 ? target / one : 1;
    return r < 1 ? 1 : r > 1000 ? 1000 : (int)(r + 0.999);
}

static void bench_train(model *m, const shape *sh, int rounds) {
    const int N = sh->batch * sh->seq;
    int tmax = 1;
    for (int t = 0; t < n_thr; t++) tmax = thr[t] > tmax ? thr[t] : tmax;
    kernels_set_threads(tmax); /* the attention work buffer is sized for this many threads */
    if (model_reserve_train(m, N)) die("reserve");
    int *tok = malloc(sizeof(int) * N), *lens = malloc(sizeof(int) * sh->batch), *tg = malloc(sizeof(int) * N);
    float *w = malloc(sizeof(float) * N), *dh = malloc(sizeof(float) * (size_t)N * sh->hidden);
    for (int i = 0; i < N; i++) tok[i] = (int)(urand() * sh->vocab);
    for (int s = 0; s < sh->batch; s++) lens[s] = sh->seq;
    model_batch b = {.tokens = tok, .seq_lens = lens, .n_tokens = N, .n_seqs = sh->batch};
    const int cnt = model_batch_targets(&b, tg);
    for (int i = 0; i < N; i++) w[i] = 1.0f / cnt;
    lm_ce_ctx ce = {.targets = tg, .weights = w};
    optim_config oc = {.beta1 = 0.9, .beta2 = 0.95, .eps = 1e-8, .weight_decay = 0.1, .clip = 1.0,
                       .schedule = {.kind = LR_CONSTANT, .lr = 1e-4}};
    optimizer o;
    if (optim_init(&o, m, &oc)) die("optimizer");
    double best[MAX_T], cpu_best[MAX_T], loss = 0, prof_best[MAX_T][PROF_N];
    const char *pe = getenv("SWEEP_PROFILE");
    prof_enable(pe && *pe == '1');
    int reps[MAX_T];
    for (int r = 0; r <= rounds; r++) /* round 0 warms up and sets the repetitions */
        for (int t = 0; t < n_cfg; t++) {
            set_cfg(m, t, 1);
            const float *hid;
            const int n = r ? reps[t] : 1;
            prof_reset();
            double el = time_monotonic(), cpu = process_cpu_s();
            for (int i = 0; i < n; i++) {
                model_zero_grad(m);
                if (model_forward(m, &b, &hid) || model_lm_loss(m, hid, dh, N, lm_loss_ce, &ce, &loss) ||
                    model_backward(m, dh) || optim_step(&o, m))
                    die("training step");
            }
            el = (time_monotonic() - el) / n, cpu = (process_cpu_s() - cpu) / n;
            if (!r) reps[t] = reps_for(el, 0.3);
            if (r == 1 || (r > 1 && el < best[t])) {
                best[t] = el;
                for (int k = 0; k < PROF_N; k++) prof_best[t][k] = prof_time[k] / n;
            }
            if (r == 1 || (r > 1 && cpu < cpu_best[t])) cpu_best[t] = cpu;
        }
    for (int t = 0; t < n_cfg && prof_on; t++) { /* SWEEP_PROFILE=1: where the best step's time went */
        memcpy(prof_time, prof_best[t], sizeof prof_time);
        prof_report(stderr, cfg_name(m, t));
    }
    prof_enable(0);
    for (int t = 0; t < n_cfg; t++) {
        const char *c = cfg_name(m, t);
        printf("%stokens %d\n%sstep_s %.5f\n%stokens_per_s %.1f\n%sloss %.4f\n%scpu_step_s %.5f\n", c, N, c, best[t], c,
               N / best[t], c, loss, c, cpu_best[t]);
    }
    optim_free(&o);
    free(tok), free(lens), free(tg), free(w), free(dh);
}

static void bench_prefill(model *m, const shape *sh, int rounds) {
    kv_cache kv;
    float *logits = malloc(sizeof(float) * sh->vocab);
    int *tok = malloc(sizeof(int) * sh->seq);
    for (int i = 0; i < sh->seq; i++) tok[i] = (int)(urand() * sh->vocab);
    if (kv_cache_init(&kv, &m->cfg, sh->seq)) die("cache");
    double best[MAX_T];
    int reps[MAX_T];
    for (int r = 0; r <= rounds; r++) /* round 0 warms up and sets the repetitions */
        for (int t = 0; t < n_cfg; t++) {
            set_cfg(m, t, 0);
            const int n = r ? reps[t] : 1;
            double el = time_monotonic();
            for (int i = 0; i < n; i++) {
                kv_cache_truncate(&kv, 0);
                if (model_extend(m, &kv, tok, sh->seq, NULL, 1, logits)) die("prefill");
            }
            el = (time_monotonic() - el) / n;
            if (!r) reps[t] = reps_for(el, 0.2);
            if (r == 1 || (r > 1 && el < best[t])) best[t] = el;
        }
    for (int t = 0; t < n_cfg; t++) {
        const char *c = cfg_name(m, t);
        printf("%stokens %d\n%sseconds %.5f\n%stokens_per_s %.1f\n", c, sh->seq, c, best[t], c, sh->seq / best[t]);
    }
    kv_cache_free(&kv);
    free(logits), free(tok);
}

/* Bytes of weights one decode step reads: every linear layer and the LM head (in their storage
 * format), the norms and the embedding row. */
static double step_weight_bytes(const model *m) {
    const model_config *c = &m->cfg;
    double b = 0;
    for (int l = 0; l < c->n_layers; l++) {
        const linear *ls[4] = {&m->lin[l].qkv, &m->lin[l].o, &m->lin[l].gate_up, &m->lin[l].down};
        for (int i = 0; i < 4; i++) b += (double)ls[i]->n_out * ls[i]->n_in * (ls[i]->format == LINEAR_BF16 ? 2 : 4);
        b += 2.0 * c->hidden * 4;
    }
    b += (double)c->vocab * c->hidden * (m->lm_head.format == LINEAR_BF16 ? 2 : 4);
    return b + 2.0 * c->hidden * 4;
}

/* Decode steps of one sequence, and in the same rounds the read bandwidth on the same threads. */
static void bench_decode(model *m, const shape *sh, int steps, int rounds) {
    kv_cache kv;
    float *logits = malloc(sizeof(float) * sh->vocab);
    if (kv_cache_init(&kv, &m->cfg, steps + 2)) die("cache");
    double best[MAX_T], bw[MAX_T] = {0}, bytes[MAX_T];
    int reps[MAX_T];
    for (int r = 0; r <= rounds; r++) /* round 0 warms up and sets the repetitions */
        for (int t = 0; t < n_cfg; t++) {
            set_cfg(m, t, 0);
            bytes[t] = step_weight_bytes(m);
            const int n = r ? reps[t] : 1;
            double el = 0;
            for (int i = 0; i < n; i++) {
                kv_cache_truncate(&kv, 0);
                if (model_decode(m, &kv, 1, logits)) die("decode");
                const double t0 = time_monotonic();
                for (int j = 0; j < steps; j++)
                    if (model_decode(m, &kv, (int)(urand() * sh->vocab), logits)) die("decode");
                el += time_monotonic() - t0;
            }
            if (!r) reps[t] = reps_for(el, 0.25);
            if (r == 1 || (r > 1 && el / n < best[t])) best[t] = el / n;
            if (r) { /* the bandwidth over as long as this measurement took, right after it */
                const double g = read_bandwidth_for(thr[t % n_thr], el);
                bw[t] = g > bw[t] ? g : bw[t];
            }
        }
    for (int t = 0; t < n_cfg; t++) {
        const char *c = cfg_name(m, t);
        printf("%ssteps %d\n%sseconds %.5f\n%stokens_per_s %.2f\n%sweight_bytes %.0f\n%sweight_gb_per_s %.2f\n"
               "%sread_gb_per_s %.2f\n", c, steps, c, best[t], c, steps / best[t], c, bytes[t], c,
               bytes[t] * steps / best[t] / 1e9, c, bw[t]);
    }
    kv_cache_free(&kv);
    free(logits);
}

/* The evaluate stage's scoring (score_split, prefix sharing) on the quickstart's kind of data: 8
 * candidates per member, about 400 tokens per prompt; the first groups, as many as one thread
 * scores in about a second. */
static void bench_evaluate(model *m, int rounds) {
    char dir[128], calib[160];
    snprintf(dir, sizeof dir, "/tmp/smelt-bench-sweep-%d", (int)getpid());
    snprintf(calib, sizeof calib, "%s/calib", dir);
    if (fs_mkdir_p(calib, 0755)) die("mkdir");
    const char *json = "{\"source\": \"synthetic\", \"tokenizer\": \"builtin:bytes\", \"labels\": {\"yes\": \" yes\", \"no\": \" no\"},"
                       " \"tasks\": [\"like\"], \"members\": 48, \"items\": 300, \"interactions\": 48, \"noise\": 0.1, \"history\": 20,"
                       " \"history_tokens\": 320, \"max_tokens\": 512, \"candidates\": 8, \"min_history\": 3, \"train_groups\": 1,"
                       " \"split\": {\"valid\": 0, \"test\": 0.1666667}, \"answers\": \"auto\", \"calibration\": {\"samples\": 0, \"from\": \"train\", \"seed\": 0},"
                       " \"allow_test_calibration\": false}";
    cJSON *p = cJSON_Parse(json);
    if (!p || data_build(p, 7, dir, calib, NULL, NULL)) die("data");
    cJSON_Delete(p);
    dataset ds;
    ds_split s;
    if (dataset_open(&ds, dir) || dataset_split_open(&ds, "test", &s)) die("open data");
    if (ds.vocab > m->cfg.vocab) die("the data's vocabulary is larger than the model's");
    score_opts o = {.share_prefix = 1, .yes_id = ds.yes_id, .no_id = ds.no_id};
    double *sc = malloc(sizeof(double) * (size_t)s.n_examples);
    score_out out = {sc, NULL, NULL};
    /* warm-up in the first configuration, which also picks how many examples a measurement scores */
    set_cfg(m, 0, 0);
    int64_t end = 0;
    double t0 = time_monotonic();
    while (end < s.n_examples && (end == 0 || time_monotonic() - t0 < 1.0)) {
        const int64_t g1 = ds_group_end(&s, end);
        if (score_split(m, &s, end, g1, &o, &out)) die("score");
        end = g1;
    }
    int64_t toks = 0;
    for (int64_t i = 0; i < end; i++) toks += s.ex[i].n_tokens;
    double best[MAX_T];
    for (int r = 1; r <= rounds; r++)
        for (int t = 0; t < n_cfg; t++) {
            set_cfg(m, t, 0);
            double el = time_monotonic();
            if (score_split(m, &s, 0, end, &o, &out)) die("score");
            el = time_monotonic() - el;
            if (r == 1 || el < best[t]) best[t] = el;
        }
    for (int t = 0; t < n_cfg; t++) {
        const char *c = cfg_name(m, t);
        printf("%sexamples %lld\n%sseconds %.4f\n%sexamples_per_s %.2f\n%stokens_per_example %.1f\n", c, (long long)end, c,
               best[t], c, end / best[t], c, (double)toks / (double)(end ? end : 1));
    }
    free(sc);
    ds_split_close(&s);
    dataset_close(&ds);
    fs_rm_rf(dir);
}

int main(int argc, char **argv) {
    if (argc > 1 && !strcmp(argv[1], "list")) {
        for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
            model_config c = config_of(&shapes[i]);
            printf("%s %zu %d %d %d %d %d %d %d\n", shapes[i].name, model_n_params(&c), shapes[i].hidden,
                   shapes[i].layers, shapes[i].heads, shapes[i].kv_heads, shapes[i].inter, shapes[i].vocab,
                   shapes[i].tied);
        }
        return 0;
    }
    if (argc < 4) {
        fprintf(stderr, "usage: bench_sweep train|prefill|decode|evaluate|bandwidth SHAPE THREADS[,THREADS...] "
                        "[fp32|bf16[,...]]\n"
                        "       bench_sweep list\n");
        return 2;
    }
    log_set_level(LOG_WARN);
    const char *mode = argv[1];
    for (const char *q = argv[3]; *q && n_thr < MAX_T / 2; q = strchr(q, ',') ? strchr(q, ',') + 1 : q + strlen(q))
        thr[n_thr++] = atoi(q) > 0 ? atoi(q) : 1;
    if (!strcmp(mode, "bandwidth")) {
        for (int t = 0; t < n_thr; t++) printf("t%d.read_gb_per_s %.2f\n", thr[t], read_bandwidth(thr[t], 5));
        return 0;
    }
    const char *pl = argc > 4 ? argv[4] : "fp32";
    for (const char *q = pl; *q && n_prec < 2; q = strchr(q, ',') ? strchr(q, ',') + 1 : q + strlen(q)) {
        char name[8] = {0};
        snprintf(name, sizeof name, "%.*s", (int)(strchr(q, ',') ? strchr(q, ',') - q : (long)strlen(q)), q);
        if (model_precision_parse(name, &precs[n_prec++])) die("precision");
    }
    n_cfg = n_thr * n_prec;
    const shape *sh = NULL;
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++)
        if (!strcmp(shapes[i].name, argv[2])) sh = &shapes[i];
    if (!sh) return fprintf(stderr, "bench_sweep: unknown shape %s (bench_sweep list)\n", argv[2]), 2;
    model_config c = config_of(sh);
    model m;
    if (em_random_model(&m, &c, 1)) die("model");
    const int train = !strcmp(mode, "train");
    printf("mode %s\nshape %s\nparams %zu\n", mode, sh->name, model_n_params(&c));
    if (train) bench_train(&m, sh, sh->hidden > 512 ? 2 : 5);
    else if (!strcmp(mode, "prefill")) bench_prefill(&m, sh, 5);
    else if (!strcmp(mode, "decode")) bench_decode(&m, sh, 64, 5);
    else if (!strcmp(mode, "evaluate")) bench_evaluate(&m, 3);
    else return fprintf(stderr, "bench_sweep: unknown mode %s\n", mode), 2;
    model_free(&m);
    free(bw_buf);
    return 0;
}
