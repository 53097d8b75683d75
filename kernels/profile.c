/* profile.c: per-kind wall-time accounting (see profile.h). */
#include "kernels/profile.h"

#include <string.h>
#include <time.h>

int prof_on = 0;
double prof_time[PROF_N];

static const char *const prof_names[PROF_N] = {
    [PROF_EMBED] = "embedding", [PROF_NORM] = "rmsnorm",       [PROF_QKV] = "q/k/v GEMM",
    [PROF_ROPE] = "rope",        [PROF_ATTN] = "attention",     [PROF_O] = "o_proj GEMM",
    [PROF_MLP_GEMM] = "MLP GEMM", [PROF_SWIGLU] = "swiglu",      [PROF_HEAD] = "LM head GEMM",
    [PROF_LOSS] = "softmax/CE",  [PROF_OPTIM] = "AdamW+norm",   [PROF_OTHER] = "copies/other",
};

void prof_enable(int on) { prof_on = on; }
void prof_reset(void) { memset(prof_time, 0, sizeof prof_time); }

double prof_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

void prof_report(FILE *f, const char *title) {
    double total = 0;
    for (int i = 0; i < PROF_N; i++) total += prof_time[i];
    fprintf(f, "%s (%.3f s accounted)\n", title, total);
    for (int i = 0; i < PROF_N; i++)
        if (prof_time[i] > 0)
            fprintf(f, "  %-14s %9.4f s  %5.1f%%\n", prof_names[i], prof_time[i], total > 0 ? 100 * prof_time[i] / total : 0);
}
