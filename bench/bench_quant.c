/* bench_quant.c: GPTQ and QuantEase (stages/quantize/) on one linear layer, for bench/quant_bench.sh,
 * which runs bench/quant_ref.py (NumPy float64) on the same weights and Hessian and prints both.
 *   bench_quant [--n N] [--out O] [--tokens T] [--group G] [--sweeps S] [--threads K] [--dump DIR]
 * W [O, N] ~ normal(0, 0.02); X [T, N] correlated (a random mixing with a decaying spectrum and
 * heavy-tailed tokens); H = X^T X in float64. --dump DIR writes w.f32 and h.f64 (raw, row-major) for the
 * NumPy side. Prints one RESULT line of JSON: seconds of the Hessian preparation and factorization,
 * of GPTQ, of each QuantEase sweep (the column loop), and each method's relative layer error. */
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "common/log.h"
#include "kernels/gram.h"
#include "kernels/threads.h"
#include "stages/quantize/quant.h"

static uint64_t rng = 0x853c49e6748fea9bull;
static double uniform(void) {
    rng ^= rng >> 12, rng ^= rng << 25, rng ^= rng >> 27;
    return (double)((rng * 0x2545F4914F6CDD1Dull) >> 11) * (1.0 / 9007199254740992.0);
}
static double normal(void) {
    double u = uniform() + 1e-300, v = uniform();
    return sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v);
}

static int dump(const char *dir, const char *name, const void *p, size_t bytes) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(p, 1, bytes, f) != bytes) return -1;
    return fclose(f);
}

int main(int argc, char **argv) {
    int n = 2048, out = 2048, tokens = 4096, group = 128, sweeps = 3, threads = 0;
    const char *dir = NULL;
    static const struct option opts[] = {{"n", 1, 0, 'n'},      {"out", 1, 0, 'o'},     {"tokens", 1, 0, 't'},
                                         {"group", 1, 0, 'g'},  {"sweeps", 1, 0, 's'},  {"threads", 1, 0, 'k'},
                                         {"dump", 1, 0, 'd'},   {0, 0, 0, 0}};
    int c;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) switch (c) {
        case 'n': n = atoi(optarg); break;
        case 'o': out = atoi(optarg); break;
        case 't': tokens = atoi(optarg); break;
        case 'g': group = atoi(optarg); break;
        case 's': sweeps = atoi(optarg); break;
        case 'k': threads = atoi(optarg); break;
        case 'd': dir = optarg; break;
        default: fprintf(stderr, "usage: bench_quant [--n N] [--out O] [--tokens T] [--group G] [--sweeps S] [--threads K] [--dump DIR]\n"); return 2;
        }
    threads = kernels_set_threads(threads);
    float *w = malloc(sizeof(float) * (size_t)out * n), *wh = malloc(sizeof(float) * (size_t)out * n);
    float *mix = malloc(sizeof(float) * (size_t)n * 64), *x = malloc(sizeof(float) * (size_t)512 * n);
    double *h = calloc((size_t)n * n, sizeof(double));
    if (!w || !wh || !mix || !x || !h) return 1;
    for (size_t i = 0; i < (size_t)out * n; i++) w[i] = (float)(0.02 * normal());
    /* x = z M + e: 64 shared factors with a decaying spectrum plus independent noise, heavy-tailed tokens */
    for (int i = 0; i < 64; i++)
        for (int j = 0; j < n; j++) mix[(size_t)i * n + j] = (float)(normal() / (1.0 + 0.1 * i));
    for (int t0 = 0; t0 < tokens; t0 += 512) {
        const int nt = tokens - t0 < 512 ? tokens - t0 : 512;
        for (int t = 0; t < nt; t++) {
            double z[64], tail = 1.0 / (0.3 + uniform());
            for (int i = 0; i < 64; i++) z[i] = normal();
            for (int j = 0; j < n; j++) {
                double s = 0.3 * normal();
                for (int i = 0; i < 64; i++) s += z[i] * mix[(size_t)i * n + j];
                x[(size_t)t * n + j] = (float)(s * tail * (j % 97 == 11 ? 10.0 : 1.0));
            }
        }
        if (gram_accumulate(h, x, n, nt, n)) return 1;
    }
    gram_symmetrize(h, n);
    if (dir && (dump(dir, "w.f32", w, sizeof(float) * (size_t)out * n) || dump(dir, "h.f64", h, sizeof(double) * (size_t)n * n))) {
        fprintf(stderr, "bench_quant: cannot write into %s\n", dir);
        return 1;
    }
    quant_grid g = {4, group, 1, 0};
    quant_hessian qh;
    qweight q;
    double t0 = time_monotonic();
    if (quant_hessian_prepare(&qh, h, n, 0.01, 0) || quant_hessian_factor(&qh, "bench")) goto fail;
    const double t_factor = time_monotonic() - t0;
    if (quant_grid_init(&q, w, out, n, &g, qh.dead)) goto fail;
    t0 = time_monotonic();
    if (gptq_quantize(&q, wh, NULL, w, &qh, 1)) goto fail;
    const double t_gptq = time_monotonic() - t0;
    double e_rtn, e_gptq, e_qe, ref;
    if (quant_layer_error(&e_gptq, &ref, w, wh, h, out, n)) goto fail;
    /* QuantEase's setup (P = W Hh, T = W^ Hh0: two products) alone, then with the sweeps */
    t0 = time_monotonic();
    if (quantease_quantize(&q, wh, w, &qh, 0, NULL)) goto fail;
    const double t_setup = time_monotonic() - t0;
    t0 = time_monotonic();
    if (quantease_quantize(&q, wh, w, &qh, sweeps, NULL)) goto fail;
    const double t_qe = time_monotonic() - t0, t_sweep = (t_qe - t_setup) / sweeps;
    if (quant_layer_error(&e_qe, &ref, w, wh, h, out, n)) goto fail;
    qweight_free(&q);
    if (quant_rtn(&q, wh, w, out, n, &g) || quant_layer_error(&e_rtn, &ref, w, wh, h, out, n)) goto fail;
    printf("smelt (C, float64, %d threads): layer [%d x %d], %d tokens, 4-bit sym group %d\n", threads, out, n, tokens, group);
    printf("  Hessian damping + Cholesky factor of H^-1  %8.3f s\n", t_factor);
    printf("  GPTQ (blocks of %d)                        %8.3f s   rel. error %.5e\n", QUANT_BLOCK, t_gptq, e_gptq / ref);
    printf("  QuantEase, %d sweeps from GPTQ              %8.3f s   rel. error %.5e\n", sweeps, t_qe, e_qe / ref);
    printf("    setup (P, T) %.3f s; column loop %.3f s per sweep\n", t_setup, t_sweep);
    printf("  RTN                                                   rel. error %.5e\n", e_rtn / ref);
    printf("RESULT {\"threads\": %d, \"n\": %d, \"out\": %d, \"factor_s\": %.6f, \"gptq_s\": %.6f, \"quantease_s\": %.6f, "
           "\"sweep_s\": %.6f, \"sweeps\": %d, \"err_rtn\": %.8e, \"err_gptq\": %.8e, \"err_quantease\": %.8e}\n",
           threads, n, out, t_factor, t_gptq, t_qe, t_sweep, sweeps, e_rtn / ref, e_gptq / ref, e_qe / ref);
    qweight_free(&q);
    quant_hessian_free(&qh);
    free(w), free(wh), free(mix), free(x), free(h);
    return 0;
fail:
    fprintf(stderr, "bench_quant: %s\n", err_msg());
    return 1;
}
