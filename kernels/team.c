/* team.c: the spinning barrier of a team of threads (see team.h). */
#include "kernels/team.h"

#include <sched.h>
#include <time.h>

#define TEAM_SPIN_NS 50000L /* spin this long before yielding the core */

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

static long now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1000000000L + t.tv_nsec;
}

void team_barrier_init(team_barrier *b, int n) {
    atomic_init(&b->count, 0);
    atomic_init(&b->round, 0);
    b->n = n;
}

void team_barrier_wait(team_barrier *b) {
    if (b->n <= 1) return;
    const unsigned r = atomic_load_explicit(&b->round, memory_order_acquire);
    if (atomic_fetch_add_explicit(&b->count, 1, memory_order_acq_rel) + 1 == (unsigned)b->n) {
        atomic_store_explicit(&b->count, 0, memory_order_relaxed);
        atomic_store_explicit(&b->round, r + 1, memory_order_release);
        return;
    }
    long t0 = 0;
    for (unsigned spins = 0; atomic_load_explicit(&b->round, memory_order_acquire) == r; spins++) {
        if (spins < 256) {
            cpu_relax();
            continue;
        }
        if (!t0) t0 = now_ns(); /* the clock is read only once the wait is not short */
        if (now_ns() - t0 < TEAM_SPIN_NS) cpu_relax();
        else sched_yield();
    }
}
