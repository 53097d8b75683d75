/* bench_threads.c: where a second thread starts to pay, per kernel. Each kernel runs over sizes
 * growing by 2x, on 1 thread and on N threads (kernels_split_always: split whatever the size), and
 * the table shows both times and the crossover: the smallest size from which N threads are at
 * least 10% faster at that size and every larger one. kernels/threads.h takes its THR_* constants
 * from these crossovers (work per thread = crossover work / N). Asserts nothing.
 * usage: bench_threads [THREADS] [KERNEL]   (default: all cores, every kernel)
 * Run it with OMP_WAIT_POLICY=passive (as smelt runs) on a quiet machine. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "kernels/adamw.h"
#include "kernels/attention.h"
#include "kernels/bf16.h"
#include "kernels/linear.h"
#include "kernels/matmul.h"
#include "kernels/rmsnorm.h"
#include "kernels/rope.h"
#include "kernels/softmax.h"
#include "kernels/swiglu.h"
#include "kernels/threads.h"

static float *buf(size_t n) {
    float *p = malloc(sizeof(float) * (n ? n : 1));
    if (!p) {
        fprintf(stderr, "bench_threads: out of memory\n");
        exit(1);
    }
    for (size_t i = 0; i < n; i++) p[i] = (float)((i * 2654435761u % 1000) / 1000.0 - 0.5);
    return p;
}

/* One kernel at one size: run(size) does the work once; work(size) is its work in the unit of the
 * THR_* constant it sets. */
typedef struct {
    const char *name, *unit, *thr;
    double (*work)(int s);
    void (*run)(int s);
    int s0, s1; /* sizes s0, 2 s0, ... <= s1 */
} kcase;

static float *A, *B, *C, *D, *E;
static int *P;

static double w_gemm(int s) { return (double)s * 3 * s * s; }
static void r_gemm(int s) { matmul(C, 3 * s, A, s, 0, B, s, 1, s, 3 * s, s, 1, 0); }
static void r_gemm_bf16(int s) { gemm_bf16(C, 3 * s, A, s, 0, B, s, 1, s, 3 * s, s, 1, 0); }
static double w_gemv(int s) { return (double)s * 3 * s; }
static void r_gemv(int s) {
    const linear l = linear_f32(B, NULL, 3 * s, s);
    linear_forward(C, 3 * s, A, s, &l, 1, 0);
}
static double w_rows(int s) { return (double)s * 256; }
static void r_rmsnorm(int s) { rmsnorm_forward(C, D, A, B, s, 256, 1e-5f); }
static void r_swiglu(int s) { swiglu_forward(C, A, A + 256, 512, s, 256); }
static void r_rope(int s) { rope_forward(C, 256, P, A, B, s, 4, 64); }
static void r_ce(int s) { cross_entropy(D, C, A, P, NULL, s, 256); }
static double w_adamw(int s) { return 7.0 * s * 256; }
static void r_adamw(int s) {
    adamw_hparams h = {.lr = 1e-3, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8, .weight_decay = 0.1};
    adamw_update(C, D, E, A, 1.0f, (size_t)s * 256, &h, 3, 1);
}
static double w_attn(int s) { return 2.0 * s * (s + 1) / 2 * 64 * 4; }
static void r_attn(int s) {
    attn_shape sh = {.n_heads = 4, .n_kv_heads = 2, .head_dim = 64, .ldq = 512, .ldk = 512, .ldv = 512, .ldo = 256};
    attn_seq q = {0, s, 0, s};
    attention_forward(C, NULL, A, A + 256, A + 384, &sh, &q, 1, E, attention_work_floats(&sh, 4096));
}

static const kcase cases[] = {
    {"matmul [s x s] x [s x 3s]", "MACs", "THR_GEMM_MACS", w_gemm, r_gemm, 8, 512},
    {"bf16 matmul [s x s] x [s x 3s]", "MACs", "THR_GEMM_BF16_MACS", w_gemm, r_gemm_bf16, 8, 512},
    {"matrix-vector [3s x s]", "floats", "THR_GEMV_FLOATS", w_gemv, r_gemv, 16, 2048},
    {"rmsnorm [s x 256]", "floats", "THR_ROW_FLOATS", w_rows, r_rmsnorm, 1, 4096},
    {"rope [s x 4 heads x 64]", "floats", "THR_ROW_FLOATS", w_rows, r_rope, 1, 4096},
    {"swiglu [s x 256]", "floats", "THR_EXP_FLOATS", w_rows, r_swiglu, 1, 4096},
    {"cross-entropy [s x 256]", "floats", "THR_EXP_FLOATS", w_rows, r_ce, 1, 4096},
    {"adamw [s x 256]", "floats", "THR_STREAM_FLOATS", w_adamw, r_adamw, 1, 4096},
    {"attention s x s, 4/2 heads x 64", "MACs", "THR_ATTN_MACS", w_attn, r_attn, 4, 1024},
};

/* Best time of one call, in seconds: enough repetitions for ~2 ms per sample, best of 7 samples. */
static double best_time(const kcase *k, int s) {
    int reps = 1;
    for (;;) {
        double t = time_monotonic();
        for (int r = 0; r < reps; r++) k->run(s);
        t = time_monotonic() - t;
        if (t > 2e-3 || reps > (1 << 20)) break;
        reps *= 2;
    }
    double best = 1e30;
    for (int smp = 0; smp < 7; smp++) {
        double t = time_monotonic();
        for (int r = 0; r < reps; r++) k->run(s);
        t = (time_monotonic() - t) / reps;
        best = t < best ? t : best;
    }
    return best;
}

int main(int argc, char **argv) {
    const int T = kernels_set_threads(argc > 1 ? atoi(argv[1]) : 0);
    const char *only = argc > 2 ? argv[2] : NULL;
    const size_t big = (size_t)4096 * 4096 * 3;
    A = buf(big), B = buf(big), C = buf(big), D = buf(big), E = buf(big);
    P = malloc(sizeof(int) * 8192);
    for (int i = 0; i < 8192; i++) P[i] = i % 256;
    /* rope reads cos/sin tables of 256 positions x 32 from A and B */
    double load[3] = {0};
    if (getloadavg(load, 3) < 1) load[0] = -1;
    printf("bench_threads: 1 thread against %d (every call split), best of 7; OMP_WAIT_POLICY=%s; load %.2f\n", T,
           getenv("OMP_WAIT_POLICY") ? getenv("OMP_WAIT_POLICY") : "unset", load[0]);
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        const kcase *k = &cases[c];
        if (only && !strstr(k->name, only)) continue;
        printf("\n%s (work in %s)\n%10s %14s %12s %12s %8s\n", k->name, k->unit, "s", "work", "1 thr (us)", "N thr (us)",
               "speedup");
        double cross = -1;
        for (int s = k->s0; s <= k->s1; s *= 2) {
            kernels_set_threads(1);
            kernels_split_always(0);
            double t1 = best_time(k, s);
            kernels_set_threads(T);
            kernels_split_always(1);
            double tn = best_time(k, s);
            kernels_split_always(0);
            printf("%10d %14.0f %12.2f %12.2f %8.2f\n", s, k->work(s), t1 * 1e6, tn * 1e6, t1 / tn);
            if (tn < 0.9 * t1) {
                if (cross < 0) cross = k->work(s);
            } else {
                cross = -1;
            }
        }
        if (cross > 0)
            printf("crossover: %.0f %s (%s = %.0f per thread)\n", cross, k->unit, k->thr, cross / T);
        else
            printf("crossover: none in this range (%s: keep one thread)\n", k->thr);
    }
    return 0;
}
