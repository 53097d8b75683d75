/* threads.c: one thread count for the OpenMP loops and for OpenBLAS (see threads.h). */
#include "kernels/threads.h"

#include <cblas.h>
#include <omp.h>
#include <sched.h>
#include <stdlib.h>

static int threads_cur = 0;

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
    openblas_set_num_threads(n);
    return n;
}

int kernels_threads(void) {
    if (threads_cur == 0) kernels_set_threads(0);
    return threads_cur;
}
