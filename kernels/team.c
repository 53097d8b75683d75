/* team.c: the barrier of a team of threads (see team.h). */
#include "kernels/team.h"

#include <limits.h>
#include <sched.h>
#include <time.h>

#if defined(__linux__)
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif

#define TEAM_SPIN_NS 20000L /* spin this long, then sleep until the round ends */

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
    atomic_init(&b->sleepers, 0);
    b->n = n;
}

/* Sleeps while b->round is r (a futex on Linux; elsewhere the core is yielded in a loop). The
 * kernel compares the word and sleeps atomically, so a round ended in between returns at once. */
static void sleep_round(team_barrier *b, unsigned r) {
    atomic_fetch_add(&b->sleepers, 1); /* seq_cst: ordered with the releaser's store and load */
    while (atomic_load(&b->round) == r) {
#if defined(__linux__)
        syscall(SYS_futex, (unsigned *)&b->round, FUTEX_WAIT_PRIVATE, r, NULL, NULL, 0);
#else
        sched_yield();
#endif
    }
    atomic_fetch_sub(&b->sleepers, 1);
}

void team_barrier_wait(team_barrier *b) {
    if (b->n <= 1) return;
    const unsigned r = atomic_load_explicit(&b->round, memory_order_acquire);
    if (atomic_fetch_add_explicit(&b->count, 1, memory_order_acq_rel) + 1 == (unsigned)b->n) {
        atomic_store_explicit(&b->count, 0, memory_order_relaxed);
        atomic_store(&b->round, r + 1); /* seq_cst: a sleeper either sees it or is counted below */
#if defined(__linux__)
        if (atomic_load(&b->sleepers) > 0) syscall(SYS_futex, (unsigned *)&b->round, FUTEX_WAKE_PRIVATE, INT_MAX, NULL, NULL, 0);
#endif
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
        else sleep_round(b, r);
    }
}
