/* bench_train.c: what one training step of the `train` stage costs. Two modes, one measurement per
 * process (so that the peak resident memory, VmHWM, belongs to that measurement alone):
 *   bench_train step sft|distill H L HEADS KV I V TOKENS SEQ THREADS STEPS [TH TL THEADS TKV TI]
 *     an SFT step (CE on every position) or a distillation step (forward KL on every position, the
 *     teacher's logits per chunk through its KV cache, exactly the stage's path), with AdamW;
 *     prints the median tokens/s and the peak memory.
 *   bench_train lmhead naive|chunked ce|fkl V TOKENS H THREADS [CHUNK_ROWS]
 *     the LM head + loss + its backward over TOKENS positions: naive materializes [TOKENS x V]
 *     logits (and the teacher's, for fkl), chunked is model_lm_loss with the stage's callback.
 * bench/train_bench.sh runs the table beside PyTorch (bench/torch_train.py). Asserts nothing. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/error.h"
#include "common/fsutil.h"
#include "common/log.h"
#include "kernels/distill.h"
#include "kernels/linear.h"
#include "kernels/softmax.h"
#include "kernels/threads.h"
#include "model/checkpoint.h"
#include "stages/train/train.h"

static void die(const char *what) {
    fprintf(stderr, "bench_train: %s: %s\n", what, err_msg());
    exit(1);
}

/* VmHWM / VmRSS of this process in MiB. */
static double proc_mib(const char *key) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    double kb = 0;
    size_t kl = strlen(key);
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, key, kl) && line[kl] == ':') kb = atof(line + kl + 1);
    if (f) fclose(f);
    return kb / 1024.0;
}

static uint64_t rs = 88172645463325252ull;
static float frand(void) {
    rs ^= rs << 13, rs ^= rs >> 7, rs ^= rs << 17;
    return (float)((rs >> 11) * (1.0 / 9007199254740992.0)) * 2 - 1;
}

static model_config config(int h, int l, int heads, int kv, int inter, int vocab, int seq) {
    model_config c;
    memset(&c, 0, sizeof c);
    snprintf(c.model_type, sizeof c.model_type, "llama");
    c.hidden = h, c.n_layers = l, c.n_heads = heads, c.n_kv_heads = kv, c.head_dim = h / heads;
    c.intermediate = inter, c.vocab = vocab, c.rms_eps = 1e-5f, c.rope_theta = 10000, c.max_pos = seq;
    c.bos_id = 1, c.eos_id = 2, c.tie_embeddings = 0;
    for (int i = 0; i < l; i++) c.layers[i] = (layer_config){heads, kv, inter};
    return c;
}

static void random_model(model *m, const model_config *c) {
    if (model_init(m, c, NULL)) die("model_init");
    weights_tensor t[4096];
    int n = weights_tensors(&m->w, c, t, 4096);
    for (int i = 0; i < n; i++) {
        size_t cnt = (size_t)t[i].shape[0] * (t[i].ndim == 2 ? (size_t)t[i].shape[1] : 1);
        for (size_t k = 0; k < cnt; k++) t[i].data[k] = t[i].ndim == 2 ? 0.05f * frand() : 1.0f;
    }
    model_bind_linears(m);
}

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static int bench_step(int argc, char **argv) {
    if (argc < 13) return fprintf(stderr, "usage: bench_train step sft|distill H L HEADS KV I V TOKENS SEQ THREADS STEPS [TH TL THEADS TKV TI]\n"), 2;
    const int distill = !strcmp(argv[2], "distill");
    int a[10], ta[5] = {0};
    for (int i = 0; i < 10; i++) a[i] = atoi(argv[3 + i]);
    if (distill && argc < 18) return fprintf(stderr, "distill needs the teacher's sizes\n"), 2;
    for (int i = 0; distill && i < 5; i++) ta[i] = atoi(argv[13 + i]);
    const int H = a[0], V = a[5], N = a[6], SEQ = a[7], steps = a[9];
    kernels_set_threads(a[8]);
    model_config c = config(H, a[1], a[2], a[3], a[4], V, SEQ);
    model m;
    random_model(&m, &c);
    teacher_state ts = {0};
    char dir[128] = "";
    if (distill) {
        model_config tc = config(ta[0], ta[1], ta[2], ta[3], ta[4], V, SEQ);
        model t;
        random_model(&t, &tc);
        snprintf(dir, sizeof dir, "/tmp/bench_train_teacher.%d", (int)getpid());
        if (checkpoint_save(dir, &t.cfg, &t.w, ST_F32)) die("saving the teacher");
        model_free(&t);
        if (teacher_open(&ts, dir, SEQ)) die("teacher_open");
    }
    double rss0 = proc_mib("VmRSS");
    if (model_reserve_train(&m, N)) die("reserve");
    optimizer o;
    optim_config oc = {.beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8, .clip = 1.0,
                       .schedule = {.kind = LR_CONSTANT, .lr = 1e-4, .total = steps}};
    if (optim_init(&o, &m, &oc)) die("optim");
    const int ns = N / SEQ;
    int *tok = malloc(sizeof(int) * (size_t)N), *lens = malloc(sizeof(int) * (size_t)ns), *tgt = malloc(sizeof(int) * (size_t)N);
    uint8_t *mask = malloc((size_t)N);
    float *dh = malloc(sizeof(float) * (size_t)N * H);
    for (int i = 0; i < ns; i++) lens[i] = SEQ;
    /* every position is a target: mask RESPONSE except each sequence's first token */
    for (int i = 0; i < N; i++) mask[i] = i % SEQ ? DS_TOK_RESPONSE : DS_TOK_PROMPT;
    loss_rows rows = {.targets = tgt, .kind = malloc((size_t)N), .w_ce = malloc(sizeof(float) * (size_t)N),
                      .w_div = malloc(sizeof(float) * (size_t)N)};
    loss_config lc = {.ce = distill ? 0 : 1, .fkl = distill ? 1 : 0, .temperature = 1, .beta = 0.5};
    double *times = malloc(sizeof(double) * (size_t)steps);
    for (int s = 0; s < steps; s++) {
        for (int i = 0; i < N; i++) tok[i] = (int)((frand() + 1) * 0.5f * (V - 1));
        model_batch b = {.tokens = tok, .seq_lens = lens, .n_tokens = ns * SEQ, .n_seqs = ns};
        loss_counts cnt = {0};
        loss_count_positions(&cnt, mask, lens, ns);
        loss_fill_rows(&rows, tok, mask, NULL, lens, ns, &lc, distill, &cnt, LOSS_PART_ALL);
        double t0 = time_monotonic(), loss = 0;
        const float *hidden;
        if (distill && teacher_begin(&ts, &b)) die("teacher forward");
        if (model_forward(&m, &b, &hidden)) die("forward");
        loss_ctx lx = {.rows = &rows, .cfg = lc, .teacher = distill ? teacher_logits : NULL, .tctx = &ts};
        if (model_lm_loss(&m, hidden, dh, b.n_tokens, loss_chunk, &lx, &loss) || model_backward(&m, dh) ||
            optim_step(&o, &m))
            die("step");
        model_zero_grad(&m);
        loss_ctx_free(&lx);
        times[s] = time_monotonic() - t0;
    }
    qsort(times, (size_t)steps, sizeof *times, cmp_d);
    double med = times[steps / 2];
    printf("mode %s\nparams %zu\nteacher_params %zu\ntokens %d\nthreads %d\nstep_s %.4f\ntokens_per_s %.1f\n"
           "peak_mib %.1f\nsetup_mib %.1f\n",
           argv[2], model_n_params(&c), distill ? model_n_params(&ts.m.cfg) : (size_t)0, ns * SEQ, kernels_threads(), med,
           ns * SEQ / med, proc_mib("VmHWM"), rss0);
    if (distill) {
        teacher_close(&ts);
        fs_rm_rf(dir);
    }
    return 0;
}

/* The teacher of the lmhead mode: its LM head over the student's hidden rows (consecutive). */
typedef struct {
    model *t;
    const float *h;
} head_teacher;

static int head_logits(void *ctx, float *out, const int *r, int n) {
    head_teacher *ht = ctx;
    return model_logits(ht->t, out, ht->h + (size_t)r[0] * ht->t->cfg.hidden, n);
}

/* The LM head and loss over N positions, naive or chunked; the model is only the head. */
static int bench_lmhead(int argc, char **argv) {
    if (argc < 8) return fprintf(stderr, "usage: bench_train lmhead naive|chunked ce|fkl V TOKENS H THREADS [CHUNK_ROWS]\n"), 2;
    const int naive = !strcmp(argv[2], "naive"), fkl = !strcmp(argv[3], "fkl");
    const int V = atoi(argv[4]), N = atoi(argv[5]), H = atoi(argv[6]);
    kernels_set_threads(atoi(argv[7]));
    model_config c = config(H, 1, 1, 1, 8, V, 16);
    model m, t;
    random_model(&m, &c);
    if (fkl) random_model(&t, &c);
    if (model_reserve_train(&m, 1)) die("reserve");
    if (argc > 8) m.lm_chunk_rows = atoi(argv[8]); /* optional: rows per chunk (0: the engine's choice) */
    float *hidden = malloc(sizeof(float) * (size_t)N * H), *dh = malloc(sizeof(float) * (size_t)N * H);
    for (size_t i = 0; i < (size_t)N * H; i++) hidden[i] = frand();
    int *tgt = malloc(sizeof(int) * (size_t)N);
    for (int i = 0; i < N; i++) tgt[i] = (int)((frand() + 1) * 0.5f * (V - 1));
    double rss0 = proc_mib("VmRSS"), t0 = time_monotonic(), loss = 0;
    if (naive) {
        /* logits of every position at once (and the teacher's): what the chunked path avoids */
        float *logits = malloc(sizeof(float) * (size_t)N * V), *tl = fkl ? malloc(sizeof(float) * (size_t)N * V) : NULL;
        float *part = malloc(sizeof(float) * (size_t)N), *w = malloc(sizeof(float) * (size_t)N);
        double *terms = malloc(sizeof(double) * DISTILL_TERMS * (size_t)N);
        if (!logits || (fkl && !tl) || !part || !w || !terms) die("naive buffers");
        for (int i = 0; i < N; i++) w[i] = 1.0f / N;
        model_logits(&m, logits, hidden, N);
        if (fkl) {
            model_logits(&t, tl, hidden, N);
            memset(part, 0, sizeof(float) * (size_t)N);
            distill_mix mix = {.temperature = 1, .beta = 0.5f, .w_fkl = 1};
            /* dlogits in place of the teacher's buffer would need a copy: a third [N x V] buffer */
            float *d = calloc((size_t)N * V, sizeof(float));
            if (!d) die("naive dlogits");
            distill_rows(terms, d, logits, V, tl, V, w, &mix, N, V);
            for (int i = 0; i < N; i++) loss += w[i] * terms[DISTILL_TERMS * i + DISTILL_FKL];
            free(logits);
            logits = d;
        } else {
            cross_entropy(part, logits, logits, tgt, w, N, V); /* dlogits in place */
            for (int i = 0; i < N; i++) loss += part[i];
        }
        linear_backward_input(dh, H, logits, V, &m.lm_head, N, 0);
        linear_backward_params(m.grad.lm_head, NULL, logits, V, hidden, H, N, V, H, 0);
        free(logits), free(tl), free(part), free(w), free(terms);
    } else {
        uint8_t *kind = malloc((size_t)N);
        float *wce = malloc(sizeof(float) * (size_t)N), *wdiv = malloc(sizeof(float) * (size_t)N);
        for (int i = 0; i < N; i++) {
            kind[i] = POS_ANSWER;
            wce[i] = fkl ? 0 : 1.0f / N;
            wdiv[i] = fkl ? 1.0f / N : 0;
        }
        loss_rows rows = {.n = N, .targets = tgt, .kind = kind, .w_ce = wce, .w_div = wdiv};
        /* the teacher's logits per chunk: here its head over the same hidden rows */
        loss_ctx lx = {.rows = &rows, .cfg = {.ce = fkl ? 0 : 1, .fkl = fkl, .temperature = 1, .beta = 0.5}};
        head_teacher ht = {&t, hidden};
        lx.teacher = fkl ? head_logits : NULL;
        lx.tctx = &ht;
        if (model_lm_loss(&m, hidden, dh, N, loss_chunk, &lx, &loss)) die("model_lm_loss");
        loss_ctx_free(&lx);
        free(kind), free(wce), free(wdiv);
    }
    double dt = time_monotonic() - t0;
    printf("mode lmhead-%s-%s\nchunk_rows %d\nvocab %d\ntokens %d\nhidden %d\nloss %.6f\nseconds %.3f\npeak_mib %.1f\nbefore_mib %.1f\n"
           "extra_peak_mib %.1f\n", argv[2], argv[3], naive ? N : model_lm_chunk_rows(&m), V, N, H, loss, dt, proc_mib("VmHWM"), rss0, proc_mib("VmHWM") - rss0);
    return 0;
}

int main(int argc, char **argv) {
    if (argc > 1 && !strcmp(argv[1], "step")) return bench_step(argc, argv);
    if (argc > 1 && !strcmp(argv[1], "lmhead")) return bench_lmhead(argc, argv);
    fprintf(stderr, "usage: bench_train step ... | bench_train lmhead ... (see the file's header)\n");
    return 2;
}
