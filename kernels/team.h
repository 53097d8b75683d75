/* team.h: the threads of one OpenMP parallel region working through a chain of small steps (the
 * layers of a decode step) with a spinning barrier between steps, instead of one parallel region
 * per step. A region wakes sleeping threads through the kernel (passive waiting: tens of
 * microseconds on a VM); between the steps of one decode token the threads are awake and a barrier
 * costs well under a microsecond. The barrier spins for about 50 microseconds, then yields the
 * core (sched_yield) while it waits, so a thread that lost its core to another process does not
 * keep the waiting one spinning for a whole time slice. */
#ifndef SMELT_KERNELS_TEAM_H
#define SMELT_KERNELS_TEAM_H

#include <stdatomic.h>

typedef struct {
    atomic_uint count; /* threads arrived in this round */
    atomic_uint round; /* completed rounds */
    int n;             /* threads of the team */
} team_barrier;

/* Before the region: a barrier for n threads. */
void team_barrier_init(team_barrier *b, int n);
/* Every thread of the team: returns when all n have arrived. Writes before it are visible to every
 * thread after it. */
void team_barrier_wait(team_barrier *b);

#endif
