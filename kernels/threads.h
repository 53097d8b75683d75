/* threads.h: how many threads the CPU kernels use. OpenMP loops (kernels/) and OpenBLAS (its own
 * pthreads) share the same count; BLAS is only ever called from the main thread, outside any
 * OpenMP parallel region, so the two pools never run at the same time and never oversubscribe. */
#ifndef SMELT_KERNELS_THREADS_H
#define SMELT_KERNELS_THREADS_H

/* Sets the thread count of both pools; n <= 0 means the cores this process may run on
 * (sched_getaffinity), or OMP_NUM_THREADS when that is set. Returns the count in use. */
int kernels_set_threads(int n);
/* The count in use (initializes with kernels_set_threads(0) on first call). */
int kernels_threads(void);

#endif
