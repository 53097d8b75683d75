/* bench_qdecode.c: decode speed of SmolLM2-135M (the GGUF file of ../shared) in smelt, dense and
 * quantized: one token at a time after a prompt (model_extend), tokens/s and the weight bytes a
 * step reads. Variants:
 *   fp32          the file dequantized (model_load: a llama.cpp file loads dense);
 *   Q4_1 file     the file's own blocks run quantized (model_load_quantized_gguf: 4-bit linears with
 *                 minimums, groups of 32, and the tied Q8_0 embedding as the LM head): the same
 *                 weights llama.cpp runs;
 *   W8A8          every linear and the head re-quantized from the fp32 weights by round to nearest,
 *                 int8 symmetric per output channel, int8 activations per token (VNNI);
 *   W4A16 g32     4-bit symmetric groups of 32, the head int8 weights (as llama.cpp's files keep an
 *                 8-bit head).
 * bench/qdecode_bench.sh runs llama.cpp (llama-cpp-python) on the same file, prompt and threads beside
 * it. Prints a table and one "RESULT {json}" line. Never asserts times. Usage:
 *   bench_qdecode [--model PATH] [--threads N] [--prompt P] [--decode D] */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "common/log.h"
#include "kernels/qlinear.h"
#include "kernels/threads.h"
#include "model/kvcache.h"
#include "model/model_load.h"
#include "model/qmodel.h"
#include "tests/qtestutil.h"

static void die(const char *what) {
    fprintf(stderr, "bench_qdecode: %s: %s\n", what, err_msg());
    exit(1);
}

/* Round to nearest of w [n_out, n_in] into q: symmetric, `bits`, groups of `group` (n_in: per
 * channel), s = max|w| / (2^(b-1) - 1), fp16-free (the kernels take any float scale). */
static void rtn(qweight *q, const float *w, int n_out, int n_in, int bits, int group, qa_type act) {
    *q = (qweight){.type = QW_INT, .bits = bits, .act = act, .n_out = n_out, .n_in = n_in, .group_size = group};
    if (qweight_alloc(q, 0, 0)) die("qweight");
    const int ng = n_in / group, c = 1 << (bits - 1), top = (1 << bits) - 1;
    for (int r = 0; r < n_out; r++)
        for (int g = 0; g < ng; g++) {
            const float *x = w + (size_t)r * n_in + (size_t)g * group;
            float am = 0;
            for (int j = 0; j < group; j++) am = fmaxf(am, fabsf(x[j]));
            const float s = am > 0 ? am / (float)(c - 1) : 1.0f;
            q->scales[(size_t)r * ng + g] = s;
            for (int j = 0; j < group; j++) {
                const int v = (int)nearbyintf(x[j] / s) + c;
                q->codes[(size_t)r * n_in + (size_t)g * group + j] = (uint8_t)(v < 0 ? 0 : v > top ? top : v);
            }
        }
}

/* A dense model's linears quantized by rtn (bits/group for the layers, group 0: per channel; int8
 * per channel for the head; activations act for all), attached. */
static void quantize(model *m, int bits, int group, qa_type act) {
    model_quant *q = model_quant_new(m->cfg.n_layers);
    if (!q) die("model_quant");
    for (int l = 0; l <= m->cfg.n_layers; l++)
        for (int k = 0; k < (l == m->cfg.n_layers ? 1 : QLIN_N); k++) {
            const int ll = l == m->cfg.n_layers ? 0 : l, kk = l == m->cfg.n_layers ? QLIN_N : k;
            int n_out, n_in;
            qlin_shape(&m->cfg, ll, kk, &n_out, &n_in);
            const int head = kk == QLIN_N;
            rtn(model_quant_at(q, ll, kk), qt_dense(&m->w, ll, kk), n_out, n_in, head ? 8 : bits, head || !group ? n_in : group,
                act);
        }
    if (model_attach_quant(m, q)) die("attach");
}

/* Weight bytes a decode step reads: every linear's payload (or fp32 weights) and the head. */
static double step_bytes(const model *m) {
    double b = 0;
    for (int l = 0; l < m->cfg.n_layers; l++) {
        const linear *ls[4] = {&m->lin[l].qkv, &m->lin[l].o, &m->lin[l].gate_up, &m->lin[l].down};
        for (int i = 0; i < 4; i++)
            b += ls[i]->format == LINEAR_F32 ? 4.0 * ls[i]->n_out * ls[i]->n_in : (double)qlinear_bytes(ls[i]->q);
    }
    b += m->lm_head.format == LINEAR_F32 ? 4.0 * m->lm_head.n_out * m->lm_head.n_in : (double)qlinear_bytes(m->lm_head.q);
    return b;
}

/* tokens/s of `decode` steps after a `prompt`-token prefill; *argmax: the last step's greedy token. */
static double decode_speed(model *m, int prompt, int decode, int *argmax) {
    kv_cache kv;
    int *toks = malloc(sizeof(int) * (size_t)prompt);
    float *logits = malloc(sizeof(float) * (size_t)m->cfg.vocab);
    if (!toks || !logits || kv_cache_init(&kv, &m->cfg, prompt + decode)) die("buffers");
    for (int i = 0; i < prompt; i++) toks[i] = 1 + (i * 977) % (m->cfg.vocab - 1);
    if (model_extend(m, &kv, toks, prompt, NULL, 1, logits)) die("prefill");
    int tok = 0;
    const double t = time_monotonic();
    for (int s = 0; s < decode; s++) {
        int best = 0;
        for (int v = 1; v < m->cfg.vocab; v++) best = logits[v] > logits[best] ? v : best;
        tok = best;
        if (model_extend(m, &kv, &tok, 1, NULL, 1, logits)) die("decode");
    }
    const double dt = time_monotonic() - t;
    *argmax = tok;
    kv_cache_free(&kv);
    free(toks), free(logits);
    return decode / dt;
}

int main(int argc, char **argv) {
    const char *path = "../shared/models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf";
    int threads = 0, prompt = 16, decode = 64;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--model")) path = argv[i + 1];
        else if (!strcmp(argv[i], "--threads")) threads = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--prompt")) prompt = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--decode")) decode = atoi(argv[i + 1]);
        else {
            fprintf(stderr, "usage: bench_qdecode [--model PATH] [--threads N] [--prompt P] [--decode D]\n");
            return 2;
        }
    }
    if (prompt < 1 || decode < 1) {
        fprintf(stderr, "bench_qdecode: --prompt and --decode must be positive\n");
        return 2;
    }
    threads = kernels_set_threads(threads);
    printf("bench_qdecode: %s, %d threads, kernels %s, prompt %d, %d decode steps\n", path, threads,
           qlinear_isa_name(qlinear_isa()), prompt, decode);
    printf("%-34s %10s %10s %10s %8s\n", "variant", "MB/step", "tokens/s", "ms/token", "GB/s");
    static const char *const names[] = {"fp32 (dense)", "Q4_1 file (llama.cpp's weights)", "W8A8 per channel",
                                        "W4A16 g32, int8 head"};
    double tps[4];
    for (int v = 0; v < 4; v++) {
        model m;
        if (v == 1 ? model_load_quantized_gguf(&m, path) : model_load(&m, path)) die(path);
        if (v == 2) quantize(&m, 8, 0, QA_INT8);
        if (v == 3) quantize(&m, 4, 32, QA_NONE);
        int last;
        const double bytes = step_bytes(&m);
        tps[v] = decode_speed(&m, prompt, decode, &last);
        printf("%-34s %10.1f %10.1f %10.2f %8.1f\n", names[v], bytes / 1e6, tps[v], 1e3 / tps[v], bytes * tps[v] / 1e9);
        model_free(&m);
    }
    printf("RESULT {\"threads\": %d, \"prompt\": %d, \"decode\": %d, \"fp32\": %.2f, \"q4_1_file\": %.2f, \"w8a8\": %.2f, "
           "\"w4a16_g32\": %.2f}\n", threads, prompt, decode, tps[0], tps[1], tps[2], tps[3]);
    return 0;
}
