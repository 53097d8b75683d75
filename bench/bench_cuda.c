/* bench_cuda.c: the CUDA backend's speed on one GPU, measured against cuBLAS's own peak in the same
 * run: the bf16 GEMM peak (8192^3), training steps (forward, LM head + cross-entropy, backward,
 * clipping, AdamW) of SmolLM2-135M's shape and of a 1B Llama (Llama 3.2 1B's shape), random
 * weights, with tokens/s and MFU; prefill tokens/s and time to first token at 4k and 16k contexts;
 * decode tokens/s after a 4k prefill. The model is bench/cuda_llama (docs/cuda.md). Prints a table
 * (or CSV rows with --csv); never asserts a time. bench/torch_cuda.py measures PyTorch (SDPA) on the
 * same shapes; scripts/gpu-check.sh runs both.
 *
 * usage: bench_cuda [--quick] [--steps S] [--csv]
 *   --quick: tiny shapes (the emulated build's smoke run in ctest; its figures mean nothing). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench/cuda_llama.h"
#include "common/error.h"

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int csv;
static void row(const char *what, const char *shape, double value, const char *unit, const char *note) {
    if (csv) printf("%s,%s,%.6g,%s,%s\n", what, shape, value, unit, note);
    else printf("%-24s %-30s %12.4g %-10s %s\n", what, shape, value, unit, note);
    fflush(stdout); /* rows written before a timeout stop the run are kept */
}

static void die(const char *what) {
    fprintf(stderr, "bench_cuda: %s: %s\n", what, err_msg());
    exit(1);
}

typedef struct {
    const char *name;
    int hidden, layers, heads, kv_heads, head_dim, inter, vocab, tied;
    float theta;
    int llama3;
} shape;

static const shape SHAPES[] = {
    {"smollm2-135m", 576, 30, 9, 3, 64, 1536, 49152, 1, 100000.0f, 0},
    {"llama-1b", 2048, 16, 32, 8, 64, 8192, 128256, 1, 500000.0f, 1},
    {"tiny", 64, 1, 2, 1, 32, 96, 128, 1, 10000.0f, 0},
};

static model_config config_of(const shape *s) {
    model_config c;
    memset(&c, 0, sizeof c);
    snprintf(c.model_type, sizeof c.model_type, "llama");
    c.hidden = s->hidden, c.n_layers = s->layers, c.n_heads = s->heads, c.n_kv_heads = s->kv_heads;
    c.head_dim = s->head_dim, c.intermediate = s->inter, c.vocab = s->vocab, c.tie_embeddings = s->tied;
    c.rms_eps = 1e-5f, c.rope_theta = s->theta, c.max_pos = 131072;
    if (s->llama3)
        c.rope_scaling = ROPE_SCALING_LLAMA3, c.rope_factor = 32, c.rope_low_freq_factor = 1, c.rope_high_freq_factor = 4,
        c.rope_original_max_pos = 8192;
    for (int l = 0; l < c.n_layers; l++) c.layers[l] = (layer_config){s->heads, s->kv_heads, s->inter};
    return c;
}

/* FLOPs of the linear products per token (2 per multiply-add; the LM head included, the embedding
 * lookup not) and of causal attention for a sequence of T tokens (QK^T and PV over the visible
 * half: 2 * 2 * T^2/2 * D per head and layer). Training counts 3x (forward, two backward products). */
static double linear_flops(const model_config *c) {
    double f = 2.0 * c->vocab * c->hidden;
    for (int l = 0; l < c->n_layers; l++) {
        const layer_config *lc = &c->layers[l];
        const double q = (double)lc->n_heads * c->head_dim, kv = (double)lc->n_kv_heads * c->head_dim;
        f += 2.0 * c->hidden * (q + 2 * kv) + 2.0 * q * c->hidden + 2.0 * 3 * c->hidden * lc->intermediate;
    }
    return f;
}
static double attn_flops(const model_config *c, double T) {
    return (double)c->n_layers * c->n_heads * 2.0 * T * T * c->head_dim;
}

/* cuBLAS bf16 GEMM (fp32 sums) of n^3, TFLOP/s of the best of `reps` timed after warm-ups. */
static double gemm_peak(cu_ctx *cx, int n, int reps, cu_dtype out) {
    void *a, *b, *cc;
    const size_t nn = (size_t)n * n;
    if (cu_alloc(cx, &a, nn * 2, "peak A") || cu_alloc(cx, &b, nn * 2, "peak B") || cu_alloc(cx, &cc, nn * 4, "peak C"))
        die("peak GEMM buffers");
    float *h = malloc(sizeof(float) * nn);
    for (size_t i = 0; i < nn; i++) h[i] = (float)((i * 2654435761u) % 1000) / 1000.0f - 0.5f; /* random-like data */
    void *hf;
    if (cu_alloc(cx, &hf, nn * 4, "peak staging") || cu_upload(cx, hf, h, nn * 4) ||
        cu_convert(cx, a, CU_BF16, hf, CU_F32, nn) || cu_convert(cx, b, CU_BF16, hf, CU_F32, nn) || cu_sync(cx))
        die("peak GEMM data");
    free(h);
    cu_free(cx, hf);
    double best = 0;
    for (int r = -2; r < reps; r++) {
        const double t0 = now();
        if (cu_gemm(cx, cc, out, n, a, n, 0, b, n, 1, CU_BF16, n, n, n, 1.0f, 0.0f) || cu_sync(cx)) die("peak GEMM");
        const double t = now() - t0, tf = 2.0 * n * n * (double)n / t / 1e12;
        if (r >= 0 && tf > best) best = tf;
    }
    cu_free(cx, a), cu_free(cx, b), cu_free(cx, cc);
    return best;
}

static void bench_train(cu_ctx *cx, const shape *sh, int seq, int n_seqs, int steps, double peak) {
    const model_config c = config_of(sh);
    const int N = seq * n_seqs;
    cuda_llama L;
    double t0 = now();
    if (cl_init(&L, cx, &c, NULL, 1, N, n_seqs, 0, 0)) die("training model");
    const double t_init = now() - t0;
    int *tok = malloc(sizeof(int) * N), *lens = malloc(sizeof(int) * n_seqs), *tg = malloc(sizeof(int) * N);
    float *w = malloc(sizeof(float) * N);
    for (int i = 0; i < N; i++) tok[i] = (int)((i * 2654435761u) % (unsigned)c.vocab);
    for (int s = 0; s < n_seqs; s++) lens[s] = seq;
    const model_batch b = {.tokens = tok, .seq_lens = lens, .n_tokens = N, .n_seqs = n_seqs};
    const int nt = model_batch_targets(&b, tg);
    for (int i = 0; i < N; i++) w[i] = 1.0f / nt;
    optim_config oc = {.beta1 = 0.9, .beta2 = 0.95, .eps = 1e-8, .weight_decay = 0.1, .clip = 1.0,
                       .schedule = {.kind = LR_CONSTANT, .lr = 1e-4}};
    double best = 1e30, loss0 = 0, loss = 0, gn = 0;
    for (int s = -2; s < steps; s++) { /* two warm-up steps */
        t0 = now();
        if (cl_forward_backward(&L, &b, tg, w) || cl_optim_step(&L, &oc, s + 2) || cl_loss(&L, &loss, &gn))
            die("training step");
        const double t = now() - t0;
        if (s == -2) loss0 = loss;
        if (s >= 0 && t < best) best = t;
    }
    const double flops = 3 * (linear_flops(&c) * N + attn_flops(&c, seq) * n_seqs);
    char shape_s[64], note[160];
    snprintf(shape_s, sizeof shape_s, "%s %dx%d", sh->name, n_seqs, seq);
    snprintf(note, sizeof note, "step %.1f ms, %.2fB params, loss %.3f -> %.3f, init %.1fs, %.1f GiB", best * 1e3,
             model_n_params(&c) / 1e9, loss0, loss, t_init, L.arena.cap / 1073741824.0);
    row("train tokens/s", shape_s, N / best, "tok/s", note);
    snprintf(note, sizeof note, "%.1f TFLOP/s of %.1f (cuBLAS bf16 peak, this run)", flops / best / 1e12, peak);
    row("train MFU", shape_s, 100 * flops / best / 1e12 / peak, "%", note);
    cl_free(&L);
    free(tok), free(lens), free(tg), free(w);
}

static void bench_infer(cu_ctx *cx, const shape *sh, int ctx, int decode, double peak) {
    const model_config c = config_of(sh);
    cuda_llama L;
    const int rows = ctx < 8192 ? ctx : 8192;
    if (cl_init(&L, cx, &c, NULL, 2, 0, 0, ctx + decode, rows)) die("inference model");
    int *tok = malloc(sizeof(int) * (size_t)(ctx + decode));
    float *logits = malloc(sizeof(float) * c.vocab);
    for (int i = 0; i < ctx + decode; i++) tok[i] = (int)((i * 40503u + 7) % (unsigned)c.vocab);
    double best = 1e30;
    for (int r = -1; r < 3; r++) { /* time to first token: tokens in, the last row's logits out, argmax */
        L.kv_len = 0;
        const double t0 = now();
        if (cl_extend(&L, tok, ctx, logits)) die("prefill");
        int am = 0;
        for (int j = 1; j < c.vocab; j++) am = logits[j] > logits[am] ? j : am;
        const double t = now() - t0;
        if (r >= 0 && t < best) best = t;
        tok[ctx] = am;
    }
    char shape_s[64], note[160];
    snprintf(shape_s, sizeof shape_s, "%s ctx %d", sh->name, ctx);
    const double flops = linear_flops(&c) * ctx + attn_flops(&c, ctx);
    snprintf(note, sizeof note, "%.1f TFLOP/s, %.1f%% of peak; chunks of %d", flops / best / 1e12,
             100 * flops / best / 1e12 / peak, rows);
    row("prefill TTFT", shape_s, best * 1e3, "ms", note);
    row("prefill tokens/s", shape_s, ctx / best, "tok/s", "");
    if (decode > 0) {
        const double t0 = now();
        for (int i = 0; i < decode; i++) {
            if (cl_extend(&L, tok + ctx + i, 1, logits)) die("decode");
            int am = 0;
            for (int j = 1; j < c.vocab; j++) am = logits[j] > logits[am] ? j : am;
            tok[ctx + i + 1 < ctx + decode ? ctx + i + 1 : ctx + i] = am;
        }
        const double t = now() - t0;
        snprintf(note, sizeof note, "%d steps after the prefill, %.2f ms/token (logits to the host each step)", decode,
                 t / decode * 1e3);
        row("decode tokens/s", shape_s, decode / t, "tok/s", note);
    }
    cl_free(&L);
    free(tok), free(logits);
}

int main(int argc, char **argv) {
    int quick = 0, steps = 5;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--quick")) quick = 1;
        else if (!strcmp(argv[i], "--csv")) csv = 1;
        else if (!strcmp(argv[i], "--steps") && i + 1 < argc) steps = atoi(argv[++i]);
        else {
            fprintf(stderr, "usage: bench_cuda [--quick] [--steps S] [--csv]\n");
            return 2;
        }
    }
    if (cu_device_count() < 1) {
        fprintf(stderr, "bench_cuda: no CUDA device (nvidia-smi; CUDA_VISIBLE_DEVICES)\n");
        return 1;
    }
    cu_ctx *cx;
    if (cu_open(&cx, 0, (size_t)512 << 20)) die("opening the GPU");
    if (!csv) printf("device: %s%s\n", cu_describe(cx), cu_is_emulated() ? " -- emulated: the figures mean nothing" : "");
    else printf("what,shape,value,unit,note\n");
    const int n = quick ? 128 : 8192;
    const double peak = gemm_peak(cx, n, quick ? 1 : 10, CU_BF16), peak32 = gemm_peak(cx, n, quick ? 1 : 5, CU_F32);
    char shape_s[64];
    snprintf(shape_s, sizeof shape_s, "%d^3 bf16 x bf16", n);
    row("cuBLAS GEMM peak", shape_s, peak, "TFLOP/s", "bf16 out, fp32 sums (the MFU denominator)");
    row("cuBLAS GEMM", shape_s, peak32, "TFLOP/s", "fp32 out, fp32 sums");
    if (quick) {
        bench_train(cx, &SHAPES[2], 64, 2, 1, peak);
        bench_infer(cx, &SHAPES[2], 70, 2, peak);
    } else {
        bench_train(cx, &SHAPES[0], 2048, 8, steps, peak);
        bench_train(cx, &SHAPES[1], 2048, 4, steps, peak);
        for (int s = 0; s < 2; s++) {
            bench_infer(cx, &SHAPES[s], 4096, s ? 32 : 64, peak);
            bench_infer(cx, &SHAPES[s], 16384, 0, peak);
        }
    }
    cu_close(cx);
    return 0;
}
