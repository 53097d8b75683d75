/* bench_llama.c: throughput of the CPU engine on a ~32M-parameter Llama (hidden 512, 8 layers,
 * 8 heads / 4 kv heads, MLP 1408, vocab 8192, sequences of 512): one training step (forward,
 * chunked LM head + cross-entropy, backward, AdamW), prefill and decode, beside the machine's
 * measured sgemm peak on the same threads (MFU), with a per-op breakdown of the training step.
 * Prints a table and one "RESULT {json}" line (bench/run_llama.sh puts it beside PyTorch). */
#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "common/error.h"
#include "common/log.h"
#include "kernels/matmul.h"
#include "kernels/profile.h"
#include "kernels/threads.h"
#include "model/model.h"
#include "model/optim.h"

static double now(void) { return time_monotonic(); }

static double cpu_seconds(void) {
    struct rusage u;
    getrusage(RUSAGE_SELF, &u);
    return u.ru_utime.tv_sec + u.ru_stime.tv_sec + 1e-6 * (u.ru_utime.tv_usec + u.ru_stime.tv_usec);
}

static uint64_t rng = 88172645463325252ull;
static double urand(void) {
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (double)(rng >> 11) / 9007199254740992.0;
}
static double nrand(void) { return sqrt(-2 * log(urand() + 1e-300)) * cos(2 * M_PI * urand()); }

static void die(const char *what) {
    fprintf(stderr, "bench_llama: %s: %s\n", what, err_msg());
    exit(1);
}

/* Best GFLOP/s of an n x n x n product over reps calls (after one warm-up call): OpenBLAS's own
 * threaded sgemm on `threads` threads (raw = 1), or smelt's matmul() (one block per thread). */
static double sgemm_peak(int n, int reps, int raw, int threads) {
    float *a = malloc(sizeof(float) * n * n), *b = malloc(sizeof(float) * n * n), *c = malloc(sizeof(float) * n * n);
    for (long i = 0; i < (long)n * n; i++) a[i] = (float)urand(), b[i] = (float)urand(), c[i] = 0;
    if (raw) openblas_set_num_threads(threads);
    double best = 0;
    for (int r = 0; r <= reps; r++) {
        double t = now();
        if (raw) cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, n, n, 1, a, n, b, n, 0, c, n);
        else matmul(c, n, a, n, 0, b, n, 1, n, n, n, 1, 0);
        t = now() - t;
        if (r && 2.0 * n * n * n / t > best) best = 2.0 * n * n * n / t;
    }
    if (raw) kernels_set_threads(threads); /* back to one OpenBLAS thread */
    free(a), free(b), free(c);
    return best / 1e9;
}

char *openblas_get_corename(void);

int main(int argc, char **argv) {
    int batch = 4, seq = 512, steps = 4, threads = 0, decode_steps = 128, layers = 8;
    model_precision prec = MODEL_FP32;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--batch")) batch = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--seq")) seq = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--steps")) steps = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--threads")) threads = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--decode")) decode_steps = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--layers")) layers = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--precision") && !model_precision_parse(argv[i + 1], &prec)) continue;
        else {
            fprintf(stderr, "usage: bench_llama [--batch B] [--seq T] [--steps S] [--threads N] [--decode N] [--layers L] "
                            "[--precision fp32|bf16]\n");
            return 2;
        }
    }
    threads = kernels_set_threads(threads);
    model_config c;
    memset(&c, 0, sizeof c);
    snprintf(c.model_type, sizeof c.model_type, "llama");
    c.hidden = 512, c.n_layers = layers, c.n_heads = 8, c.n_kv_heads = 4, c.head_dim = 64, c.intermediate = 1408;
    c.vocab = 8192, c.rms_eps = 1e-5f, c.rope_theta = 10000, c.max_pos = seq, c.bos_id = 1, c.eos_id = 2;
    for (int l = 0; l < c.n_layers; l++) c.layers[l] = (layer_config){c.n_heads, c.n_kv_heads, c.intermediate};
    model m;
    const int N = batch * seq;
    if (model_init(&m, &c, NULL) || model_reserve_train(&m, N)) die("model");
    for (size_t i = 0; i < m.w.n_floats; i++) m.w.mem[i] = (float)(0.02 * nrand());
    for (int l = 0; l < c.n_layers; l++)
        for (int j = 0; j < c.hidden; j++) m.w.layers[l].attn_norm[j] = m.w.layers[l].mlp_norm[j] = 1;
    for (int j = 0; j < c.hidden; j++) m.w.final_norm[j] = 1;
    const int eff = model_set_precision(&m, prec, 0); /* training: bf16 products over fp32 weights */
    if (eff < 0) die("precision");

    printf("bench_llama: hidden %d, %d layers, %d/%d heads, MLP %d, vocab %d, %.1fM parameters\n", c.hidden,
           c.n_layers, c.n_heads, c.n_kv_heads, c.intermediate, c.vocab, model_n_params(&c) / 1e6);
    printf("batch %d x %d tokens, %d threads (OpenMP + OpenBLAS), activations %.0f MiB, precision %s\n", batch, seq,
           threads, model_train_act_bytes(&c, N) / 1048576.0, model_precision_name((model_precision)eff));
    const char *core = openblas_get_corename();
    /* the peak is the best of the two ways, measured before and after the model runs (another
     * process on the machine lowers a measurement, never raises it) */
    double peak_raw = sgemm_peak(2048, 5, 1, threads), peak_split = sgemm_peak(2048, 5, 0, threads);
    double peak = peak_raw > peak_split ? peak_raw : peak_split;
    printf("OpenBLAS %s kernels (OPENBLAS_CORETYPE=%s)\n", core, getenv("OPENBLAS_CORETYPE") ? getenv("OPENBLAS_CORETYPE") : "unset");
    printf("sgemm peak (2048^3, %d threads): OpenBLAS threaded %.1f GFLOP/s, smelt matmul %.1f GFLOP/s; MFU uses %.1f\n",
           threads, peak_raw, peak_split, peak);

    /* model FLOPs per token of a training step: 6 x linear parameters (incl. LM head) + causal
     * attention (QK^T and PV over (T+1)/2 keys on average: 4 * Q * (T+1)/2 forward, x3 with backward) */
    double lin = 0;
    for (int l = 0; l < c.n_layers; l++) {
        double q = c.n_heads * c.head_dim, kv = c.n_kv_heads * c.head_dim;
        lin += c.hidden * (q + 2 * kv) + q * c.hidden + 3.0 * c.hidden * c.intermediate;
    }
    lin += (double)c.vocab * c.hidden;
    double attn = c.n_layers * 4.0 * c.n_heads * c.head_dim * (seq + 1) / 2.0;
    double flops_tok = 6 * lin + 3 * attn;

    int *tok = malloc(sizeof(int) * N), *lens = malloc(sizeof(int) * batch), *targets = malloc(sizeof(int) * N);
    float *w = malloc(sizeof(float) * N), *dh = malloc(sizeof(float) * (size_t)N * c.hidden);
    for (int i = 0; i < N; i++) tok[i] = (int)(urand() * c.vocab);
    for (int s = 0; s < batch; s++) lens[s] = seq;
    model_batch b = {.tokens = tok, .seq_lens = lens, .n_tokens = N, .n_seqs = batch};
    int cnt = model_batch_targets(&b, targets);
    for (int i = 0; i < N; i++) w[i] = 1.0f / cnt;
    lm_ce_ctx ce = {.targets = targets, .weights = w};
    optim_config oc = {.beta1 = 0.9, .beta2 = 0.95, .eps = 1e-8, .weight_decay = 0.1, .clip = 1.0,
                       .schedule = {.kind = LR_CONSTANT, .lr = 1e-4}};
    optimizer opt;
    if (optim_init(&opt, &m, &oc)) die("optimizer");
    double loss = 0, t_train = 1e30, gemm_flops = 0, cpu_best = 0, best_prof[PROF_N] = {0};
    prof_enable(1);
    for (int s = 0; s <= steps; s++) { /* step 0 warms up */
        prof_reset();
        matmul_flops_reset();
        double c0 = cpu_seconds(), t = now();
        const float *hid;
        model_zero_grad(&m);
        if (model_forward(&m, &b, &hid) || model_lm_loss(&m, hid, dh, N, lm_loss_ce, &ce, &loss) ||
            model_backward(&m, dh) || optim_step(&opt, &m))
            die("training step");
        t = now() - t;
        if (s >= 1 && t < t_train) {
            t_train = t, gemm_flops = matmul_flops(), cpu_best = cpu_seconds() - c0;
            memcpy(best_prof, prof_time, sizeof best_prof);
        }
    }
    prof_enable(0);
    double tps = N / t_train, mfu = flops_tok * tps / (peak * 1e9);
    printf("\ntraining step (best of %d): %.3f s, %.0f tokens/s, loss %.4f; CPU time %.0f%% of %d threads x wall\n",
           steps, t_train, tps, loss, 100 * cpu_best / (t_train * threads), threads);
    printf("  model FLOPs %.1f MFLOP/token -> %.1f GFLOP/s = %.1f%% of the sgemm peak (MFU)\n", flops_tok / 1e6,
           flops_tok * tps / 1e9, 100 * mfu);
    printf("  executed GEMM FLOPs %.1f MFLOP/token (attention recompute and causal tiles included): %.1f GFLOP/s\n",
           gemm_flops / N / 1e6, gemm_flops / t_train / 1e9);
    printf("  fp32 ceiling at the sgemm peak: %.0f tokens/s\n", peak * 1e9 / flops_tok);
    memcpy(prof_time, best_prof, sizeof best_prof);
    prof_report(stdout, "  the best step, by kind of work");

    /* prefill: one sequence of `seq` tokens into an empty cache, logits of the last position;
     * inference keeps bf16 copies of the weights in bf16 precision */
    if (eff == MODEL_BF16 && model_set_precision(&m, MODEL_BF16, 1) < 0) die("bf16 weights");
    kv_cache kv;
    float *logits = malloc(sizeof(float) * c.vocab);
    if (kv_cache_init(&kv, &c, seq)) die("kv cache");
    double t_pre = 1e30, pre_prof[PROF_N] = {0};
    prof_enable(1);
    for (int r = 0; r < 4; r++) {
        kv_cache_truncate(&kv, 0);
        prof_reset();
        double t = now();
        if (model_extend(&m, &kv, tok, seq, NULL, 1, logits)) die("prefill");
        t = now() - t;
        if (r && t < t_pre) t_pre = t, memcpy(pre_prof, prof_time, sizeof pre_prof);
    }
    prof_enable(0);
    /* decode: after a 1-token prompt, decode_steps single-token steps */
    kv_cache_truncate(&kv, 0);
    if (model_decode(&m, &kv, tok[0], logits)) die("decode");
    double t_dec = now();
    for (int i = 1; i <= decode_steps; i++)
        if (model_decode(&m, &kv, tok[i], logits)) die("decode");
    t_dec = now() - t_dec;
    double peak_after = fmax(sgemm_peak(2048, 5, 1, threads), sgemm_peak(2048, 5, 0, threads));
    if (peak_after > peak) {
        printf("\nsgemm peak measured again after the runs: %.1f GFLOP/s (MFU above is against %.1f: %.1f%% against "
               "this one)\n", peak_after, peak, 100 * mfu * peak / peak_after);
        mfu = mfu * peak / peak_after, peak = peak_after;
    }
    printf("\nprefill %d tokens: %.3f s, %.0f tokens/s\n", seq, t_pre, seq / t_pre);
    memcpy(prof_time, pre_prof, sizeof pre_prof);
    prof_report(stdout, "  the best prefill, by kind of work");
    printf("decode %d steps: %.3f s, %.1f tokens/s\n", decode_steps, t_dec, decode_steps / t_dec);
    printf("RESULT {\"impl\": \"smelt\", \"openblas_core\": \"%s\", \"threads\": %d, \"batch\": %d, \"seq\": %d, \"sgemm_gflops\": %.1f, "
           "\"train_tokens_per_s\": %.1f, \"train_step_s\": %.4f, \"mfu\": %.4f, \"model_mflop_per_token\": %.2f, "
           "\"prefill_tokens_per_s\": %.1f, \"decode_tokens_per_s\": %.1f, \"loss\": %.4f, \"precision\": \"%s\"}\n",
           core, threads, batch, seq, peak, tps, t_train, mfu, flops_tok / 1e6, seq / t_pre, decode_steps / t_dec, loss,
           model_precision_name((model_precision)eff));
    kv_cache_free(&kv);
    optim_free(&opt);
    model_free(&m);
    free(tok), free(lens), free(targets), free(w), free(dh), free(logits);
    return 0;
}
