/* threads.c: the one thread count of the kernels and the choice by work size (see threads.h). */
#include "kernels/threads.h"

#include <cblas.h>
#include <omp.h>
#include <sched.h>
#include <stdlib.h>

static int threads_cur = 0;
static int split_always = 0;
static int threads_cap = 0; /* kernels_cap_threads: 0 none */

/* OpenBLAS starts its worker threads when it loads; idle, they spin (sched_yield) for a while
 * before sleeping and so compete with the OpenMP threads for the cores. Since OpenBLAS is kept
 * single-threaded, its pool is shut down (it restarts by itself if a caller raises the count).
 * Weak: an OpenBLAS without this entry point just keeps its idle pool. */
extern int blas_thread_shutdown_(void) __attribute__((weak));

static int threads_available(void) {
    const char *e = getenv("OMP_NUM_THREADS");
    if (e && atoi(e) > 0) return atoi(e);
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0) {
        int n = CPU_COUNT(&set);
        if (n > 0) return n;
    }
    return omp_get_num_procs();
}

int kernels_set_threads(int n) {
    if (n <= 0) n = threads_available();
    threads_cur = n;
    omp_set_num_threads(n);
    openblas_set_num_threads(1); /* parallelism comes from matmul()'s blocks, in OpenMP threads */
    if (blas_thread_shutdown_) blas_thread_shutdown_();
    return n;
}

int kernels_threads(void) {
    if (threads_cur == 0) kernels_set_threads(0);
    return threads_cur;
}

int kernels_threads_for(double work, double min_per_thread) {
    const int T = threads_cap > 0 && threads_cap < kernels_threads() ? threads_cap : kernels_threads();
    if (T <= 1 || omp_in_parallel()) return 1;
    if (split_always) return work > 0 ? T : 1;
    const double n = work / min_per_thread;
    return n >= T ? T : n >= 2 ? (int)n : 1;
}

void kernels_split_always(int on) { split_always = on; }

int kernels_cap_threads(int cap) {
    const int prev = threads_cap;
    threads_cap = cap > 0 ? cap : 0;
    return prev;
}

int kernels_call_begin(double macs) {
    const int prev = threads_cap;
    if (macs < THR_CALL_MACS && !split_always) threads_cap = 1;
    return prev;
}
