/* team.h: the threads of one OpenMP parallel region working through a chain of small steps (the
 * layers of a decode step) with a spinning barrier between steps, instead of one parallel region
 * per step. A region wakes sleeping threads through the kernel (passive waiting: tens of
 * microseconds on a VM); between the steps of one decode token the threads are awake and a barrier
 * costs well under a microsecond. The barrier spins for about 20 microseconds, then sleeps (a
 * futex on Linux) until the last thread arrives and wakes it: on a machine shared with other
 * processes a thread that lost its core may be away for a whole time slice, and a waiter that kept
 * spinning (or yielding in a loop) would burn its own core's share meanwhile, which the scheduler
 * then takes back from the team (measured: the spinning team decoded 2.4x slower than a parallel
 * region per kernel at a load of 12 on 2 cores). */
#ifndef SMELT_KERNELS_TEAM_H
#define SMELT_KERNELS_TEAM_H

#include <stdatomic.h>

typedef struct {
    atomic_uint count; /* threads arrived in this round */
    atomic_uint round; /* completed rounds */
    atomic_int sleepers; /* threads asleep waiting for the round to end */
    int n;             /* threads of the team */
} team_barrier;

/* Before the region: a barrier for n threads. */
void team_barrier_init(team_barrier *b, int n);
/* Every thread of the team: returns when all n have arrived. Writes before it are visible to every
 * thread after it. */
void team_barrier_wait(team_barrier *b);

#endif
