/* bench_qlinear.c: the quantized linear kernels on SmolLM2-135M's shapes (hidden 576, 9/3 heads of
 * 64, MLP 1536, 30 layers), beside the fp32 kernels and the machine's limits measured in the same
 * run, on the same threads:
 *   decode  one token through every layer's four linears (fused q/k/v, o, gate/up, down), each
 *           layer its own weights (the model's footprint, far beyond the caches): GB/s of weight
 *           bytes read (the payload the kernels stream), against the memory read bandwidth
 *           measured by a plain streaming sum; tokens/s of the linears alone;
 *   prefill a batch of tokens through one layer's linears: effective GFLOP/s (2 n_out n_in per
 *           token), against fp32 sgemm on the same shapes (AVX-512 VNNI's int8 peak is 4x fp32's);
 *   model   a whole SmolLM2-135M-shaped model (random weights, tied 49152 x 576 embedding) decoding
 *           one token at a time after a 16-token prompt (model_extend): tokens/s with every linear
 *           and the LM head in each format (a W4A16 model's head in int8 weights, as llama.cpp's
 *           Q4 files keep an 8-bit head).
 * Formats: fp32, W8A8 (int8 x int8, per channel), W8A16, W4A16 (groups of 64 and 32), FP8 (per
 * channel) and FP8 with FP8 activations. Never asserts times; prints the load average before and
 * after (docs figures need a quiet machine). Usage:
 *   bench_qlinear [--threads N] [--tokens T] [--layers L] [--reps R] [--decode D]
 *                 [--isa portable|avx2|avx512] */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "common/log.h"
#include "kernels/linear.h"
#include "kernels/qlinear.h"
#include "kernels/threads.h"
#include "model/kvcache.h"
#include "model/model.h"
#include "model/qmodel.h"

#define H 576
#define QKV (576 + 2 * 192)
#define MLP 1536

static const int shapes[4][2] = {{QKV, H}, {H, H}, {2 * MLP, H}, {H, MLP}}; /* [n_out, n_in] */
static const char *shape_names[4] = {"q/k/v", "o", "gate/up", "down"};

typedef struct {
    const char *name;
    qw_type type;
    int bits, group; /* group 0: per channel */
    qa_type act;
} format;

static const format formats[] = {
    {"fp32", 0, 32, 0, QA_NONE},
    {"W8A8 int8", QW_INT, 8, 0, QA_INT8},
    {"W8A16", QW_INT, 8, 0, QA_NONE},
    {"W4A16 g64", QW_INT, 4, 64, QA_NONE},
    {"W4A16 g32", QW_INT, 4, 32, QA_NONE},
    {"FP8", QW_FP8, 8, 0, QA_NONE},
    {"FP8 x FP8", QW_FP8, 8, 0, QA_FP8},
};
#define N_FORMATS (int)(sizeof formats / sizeof formats[0])

static uint64_t rng = 88172645463325252ull;
static uint32_t next32(void) {
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (uint32_t)(rng >> 16);
}
static float urand(void) { return (float)(next32() & 0xFFFFFF) / 16777216.0f; }

static void die(const char *what) {
    fprintf(stderr, "bench_qlinear: %s: %s\n", what, err_msg());
    exit(1);
}

/* One linear of format f and shape [n_out, n_in]: its descriptor, its payload (or fp32 weights) and
 * the bytes a product streams. */
typedef struct {
    linear l;
    qlinear *q;
    float *w;
    size_t bytes;
} blin;

static void blin_make(blin *b, const format *f, int n_out, int n_in) {
    memset(b, 0, sizeof *b);
    if (f->bits == 32) {
        b->w = malloc(sizeof(float) * (size_t)n_out * n_in);
        if (!b->w) die("fp32 weights");
        for (size_t i = 0; i < (size_t)n_out * n_in; i++) b->w[i] = urand() - 0.5f;
        b->l = linear_f32(b->w, NULL, n_out, n_in);
        b->bytes = sizeof(float) * (size_t)n_out * n_in;
        return;
    }
    qweight p = {.type = f->type, .bits = f->bits, .act = f->act, .n_out = n_out, .n_in = n_in,
                 .group_size = f->group ? f->group : n_in};
    if (qweight_alloc(&p, 0, 0)) die("qweight");
    for (size_t i = 0; i < (size_t)n_out * n_in; i++) {
        uint8_t c = (uint8_t)next32();
        if (f->type == QW_FP8 && (c & 0x7F) == 0x7F) c = 0x7E;
        p.codes[i] = f->type == QW_FP8 ? c : (uint8_t)(c % (1u << f->bits));
    }
    for (int i = 0; i < p.n_scales; i++) p.scales[i] = 0.001f + 0.01f * urand();
    const qweight *pp = &p;
    if (qlinear_build(&b->q, &pp, 1)) die("qlinear_build");
    qweight_free(&p);
    b->l = linear_qlinear(b->q, NULL);
    b->bytes = qlinear_bytes(b->q);
}

static void blin_free(blin *b) {
    qlinear_free(b->q);
    free(b->w);
}

/* Random codes and scales for a qweight of format f (the bench times kernels, not accuracy). */
static void random_qweight(qweight *p, const format *f, int n_out, int n_in) {
    *p = (qweight){.type = f->type, .bits = f->bits, .act = f->act, .n_out = n_out, .n_in = n_in,
                   .group_size = f->group ? f->group : n_in};
    if (qweight_alloc(p, 0, 0)) die("qweight");
    for (size_t i = 0; i < (size_t)n_out * n_in; i++) {
        uint8_t c = (uint8_t)next32();
        if (f->type == QW_FP8 && (c & 0x7F) == 0x7F) c = 0x7E;
        p->codes[i] = f->type == QW_FP8 ? c : (uint8_t)(c % (1u << f->bits));
    }
    for (int i = 0; i < p->n_scales; i++) p->scales[i] = 0.001f + 0.01f * urand();
}

/* tokens/s of a SmolLM2-135M-shaped model decoding `steps` tokens after a 16-token prompt, every
 * linear in format f (fp32: none) and the LM head in format head; *bytes: the weight bytes a decode
 * step reads (the linears, the head, one embedding row). */
static double bench_model_decode(const format *f, const format *head, int steps, double *bytes) {
    model_config c;
    memset(&c, 0, sizeof c);
    snprintf(c.model_type, sizeof c.model_type, "llama");
    c.hidden = H, c.n_layers = 30, c.n_heads = 9, c.n_kv_heads = 3, c.head_dim = 64, c.intermediate = MLP;
    c.vocab = 49152, c.rms_eps = 1e-5f, c.rope_theta = 100000, c.max_pos = 2048, c.tie_embeddings = 1;
    c.bos_id = 1, c.eos_id = 2;
    for (int l = 0; l < c.n_layers; l++) c.layers[l] = (layer_config){c.n_heads, c.n_kv_heads, c.intermediate};
    model m;
    if (model_init(&m, &c, NULL)) die("model");
    for (size_t i = 0; i < m.w.n_floats; i++) m.w.mem[i] = 0.04f * (urand() - 0.5f);
    for (int l = 0; l < c.n_layers; l++)
        for (int j = 0; j < c.hidden; j++) m.w.layers[l].attn_norm[j] = m.w.layers[l].mlp_norm[j] = 1;
    for (int j = 0; j < c.hidden; j++) m.w.final_norm[j] = 1;
    *bytes = 4.0 * c.hidden;
    if (f->bits == 32) {
        *bytes = 4.0 * (double)(m.w.n_floats - (size_t)c.vocab * c.hidden) + 4.0 * c.vocab * c.hidden;
    } else {
        model_quant *q = model_quant_new(c.n_layers);
        if (!q) die("model_quant");
        for (int l = 0; l <= c.n_layers; l++)
            for (int k = 0; k < (l == c.n_layers ? 1 : QLIN_N); k++) {
                int n_out, n_in;
                qlin_shape(&c, l == c.n_layers ? 0 : l, l == c.n_layers ? QLIN_N : k, &n_out, &n_in);
                random_qweight(model_quant_at(q, l == c.n_layers ? 0 : l, l == c.n_layers ? QLIN_N : k),
                               l == c.n_layers ? head : f, n_out, n_in);
            }
        if (model_attach_quant(&m, q)) die("attach");
        for (int l = 0; l < c.n_layers; l++) {
            const layer_linears *ln = &m.lin[l];
            *bytes += (double)qlinear_bytes(ln->qkv.q) + qlinear_bytes(ln->o.q) + qlinear_bytes(ln->gate_up.q) +
                      qlinear_bytes(ln->down.q);
        }
        *bytes += (double)qlinear_bytes(m.lm_head.q);
    }
    kv_cache kv;
    int prompt[16], tok = 7;
    for (int i = 0; i < 16; i++) prompt[i] = 1 + i * 97;
    float *logits = malloc(sizeof(float) * (size_t)c.vocab);
    if (!logits || kv_cache_init(&kv, &c, 16 + steps) || model_extend(&m, &kv, prompt, 16, NULL, 1, logits))
        die("prefill");
    const double t = time_monotonic();
    for (int s = 0; s < steps; s++) {
        if (model_extend(&m, &kv, &tok, 1, NULL, 1, logits)) die("decode");
        tok = (tok * 31 + 11) % c.vocab;
    }
    const double dt = time_monotonic() - t;
    kv_cache_free(&kv);
    free(logits);
    model_free(&m);
    return steps / dt;
}

/* Memory read bandwidth: the best of reps streaming sums over `bytes` (threads as the kernels). */
static double read_bandwidth(size_t bytes, int reps, int threads) {
    const size_t n = bytes / sizeof(float);
    float *a = malloc(bytes);
    if (!a) die("bandwidth buffer");
#pragma omp parallel for num_threads(threads) schedule(static)
    for (size_t i = 0; i < n; i++) a[i] = (float)(i & 7);
    double best = 0;
    volatile float sink = 0;
    for (int r = 0; r <= reps; r++) {
        float s = 0;
        const double t = time_monotonic();
#pragma omp parallel for num_threads(threads) schedule(static) reduction(+ : s)
        for (size_t i = 0; i < n; i++) s += a[i];
        const double dt = time_monotonic() - t;
        sink += s;
        if (r && bytes / dt > best) best = bytes / dt;
    }
    (void)sink;
    free(a);
    return best / 1e9;
}

int main(int argc, char **argv) {
    int threads = 0, tokens = 512, layers = 30, reps = 5, decode = 64;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--threads")) threads = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--tokens")) tokens = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--layers")) layers = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--reps")) reps = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--decode")) decode = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--isa")) {
            const char *v = argv[i + 1];
            qlinear_set_isa(!strcmp(v, "portable") ? QISA_PORTABLE : !strcmp(v, "avx2") ? QISA_AVX2 : QISA_AVX512);
        } else {
            fprintf(stderr, "usage: bench_qlinear [--threads N] [--tokens T] [--layers L] [--reps R] [--decode D] "
                            "[--isa portable|avx2|avx512]\n");
            return 2;
        }
    }
    if (tokens < 1 || layers < 1 || reps < 1 || decode < 0) {
        fprintf(stderr, "bench_qlinear: --tokens, --layers and --reps must be positive, --decode at least 0\n");
        return 2;
    }
    threads = kernels_set_threads(threads);
    double load[3] = {0};
    FILE *la = fopen("/proc/loadavg", "r");
    if (la) {
        if (fscanf(la, "%lf %lf %lf", &load[0], &load[1], &load[2]) != 3) load[0] = -1;
        fclose(la);
    }
    printf("bench_qlinear: SmolLM2-135M shapes (hidden %d, q/k/v %d, MLP %d), %d layers, %d threads, kernels %s, "
           "load %.2f %.2f %.2f\n", H, QKV, MLP, layers, threads, qlinear_isa_name(qlinear_isa()), load[0], load[1], load[2]);
    const double bw = read_bandwidth((size_t)512 << 20, reps, threads);
    printf("memory read bandwidth (streaming sum over 512 MiB): %.1f GB/s\n\n", bw);

    /* decode: one token through every layer's four linears, each layer its own weights */
    float *x = malloc(sizeof(float) * (size_t)tokens * MLP), *y = malloc(sizeof(float) * (size_t)tokens * 2 * MLP);
    if (!x || !y) die("activations");
    for (size_t i = 0; i < (size_t)tokens * MLP; i++) x[i] = urand() - 0.5f;
    printf("%-12s %10s %10s %9s %11s | %-s\n", "decode", "MB/token", "ms/token", "GB/s", "of memory", "prefill GFLOP/s");
    double fp32_gflops[4] = {0};
    for (int fi = 0; fi < N_FORMATS; fi++) {
        const format *f = &formats[fi];
        blin *bl = malloc(sizeof(blin) * (size_t)layers * 4);
        if (!bl) die("linears");
        size_t bytes = 0;
        for (int l = 0; l < layers; l++)
            for (int k = 0; k < 4; k++) {
                blin_make(&bl[l * 4 + k], f, shapes[k][0], shapes[k][1]);
                bytes += bl[l * 4 + k].bytes;
            }
        double best = 1e30;
        for (int r = 0; r <= reps; r++) {
            const double t = time_monotonic();
            for (int l = 0; l < layers; l++)
                for (int k = 0; k < 4; k++)
                    if (linear_forward(y, shapes[k][0], x, shapes[k][1], &bl[l * 4 + k].l, 1, 0)) die("decode");
            const double dt = time_monotonic() - t;
            if (r && dt < best) best = dt;
        }
        printf("%-12s %10.1f %10.3f %9.1f %10.0f%% |", f->name, bytes / 1e6, best * 1e3, bytes / best / 1e9,
               100 * bytes / best / 1e9 / bw);
        /* prefill: `tokens` tokens through layer 0's linears, one shape at a time */
        for (int k = 0; k < 4; k++) {
            double bt = 1e30;
            for (int r = 0; r <= reps; r++) {
                const double t = time_monotonic();
                if (linear_forward(y, shapes[k][0], x, shapes[k][1], &bl[k].l, tokens, 0)) die("prefill");
                const double dt = time_monotonic() - t;
                if (r && dt < bt) bt = dt;
            }
            const double gf = 2.0 * tokens * shapes[k][0] * shapes[k][1] / bt / 1e9;
            if (fi == 0) fp32_gflops[k] = gf;
            printf(" %s %.1f (%.2fx)", shape_names[k], gf, gf / fp32_gflops[k]);
        }
        printf("\n");
        for (int i = 0; i < layers * 4; i++) blin_free(&bl[i]);
        free(bl);
    }
    /* the whole model, decoding */
    if (decode > 0) {
        static const int model_formats[][2] = {{0, 0}, {1, 1}, {3, 2}, {4, 2}, {5, 5}}; /* linears, head */
        printf("\n%-12s %10s %12s %9s   (SmolLM2-135M shapes, %d decode steps after a 16-token prompt)\n", "model",
               "MB/token", "tokens/s", "GB/s", decode);
        for (size_t i = 0; i < sizeof model_formats / sizeof model_formats[0]; i++) {
            const format *f = &formats[model_formats[i][0]], *hd = &formats[model_formats[i][1]];
            double bytes = 0;
            const double tps = bench_model_decode(f, hd, decode, &bytes);
            char name[40];
            snprintf(name, sizeof name, "%s%s%s", f->name, hd != f ? ", head " : "", hd != f ? hd->name : "");
            printf("%-26s %10.1f %12.1f %9.1f\n", name, bytes / 1e6, tps, bytes * tps / 1e9);
        }
    }
    la = fopen("/proc/loadavg", "r");
    if (la) {
        if (fscanf(la, "%lf %lf %lf", &load[0], &load[1], &load[2]) != 3) load[0] = -1;
        fclose(la);
    }
    printf("\nprefill: %d tokens per product (ratios against fp32 sgemm on the same shape); load after %.2f %.2f %.2f\n",
           tokens, load[0], load[1], load[2]);
    free(x), free(y);
    return 0;
}
