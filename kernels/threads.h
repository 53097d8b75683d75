/* threads.h: how many threads the CPU kernels use. There is ONE pool of threads, OpenMP's:
 * OpenBLAS is set to a single thread, and matmul() splits each product into one block per OpenMP
 * thread (each block one single-threaded sgemm over the whole reduction). Two pools (OpenMP loops
 * between multi-threaded sgemm calls) measured 2-3x slower on 2 cores: an OpenMP worker spinning
 * after its loop holds the core the next sgemm's OpenBLAS worker needs, and the reverse. */
#ifndef SMELT_KERNELS_THREADS_H
#define SMELT_KERNELS_THREADS_H

/* Sets the thread count; n <= 0 means OMP_NUM_THREADS when set, else the cores this process may
 * run on (sched_getaffinity). OpenBLAS is (re)set to one thread. Returns the count in use. */
int kernels_set_threads(int n);
/* The count in use (initializes with kernels_set_threads(0) on first call). */
int kernels_threads(void);

#endif
