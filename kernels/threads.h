/* threads.h: how many threads the CPU kernels use. There is ONE pool of threads, OpenMP's:
 * OpenBLAS is set to a single thread, and matmul() splits each product into one block per OpenMP
 * thread (each block one single-threaded sgemm over the whole reduction). Two pools (OpenMP loops
 * between multi-threaded sgemm calls) measured 2-3x slower on 2 cores: an OpenMP worker spinning
 * after its loop holds the core the next sgemm's OpenBLAS worker needs, and the reverse.
 *
 * Every kernel chooses its thread count from the size of its work (kernels_threads_for): below an
 * amount per thread, waking a second thread costs more than it saves, and small models
 * (hidden 32..128) run most kernels on one thread. `build/bench/bench_threads` measures it (per
 * kernel, 1- and 2-thread times over sizes, the cost of a split and the crossover). On the 2-core
 * AMD EPYC (Zen 4) machine with passive waiting a split costs 7-9 us with the other core free
 * (25-55 us when another process holds it); each threshold below asks for about 40 us of one
 * thread's work per thread, about twice that cost again (docs/engine.md has the table; the
 * crossovers themselves need a quiet machine, which this one never was: rerun bench_threads). */
#ifndef SMELT_KERNELS_THREADS_H
#define SMELT_KERNELS_THREADS_H

/* Work per thread below which a kernel stays on fewer threads (units in each comment; about 40 us
 * of one thread at the rate in docs/engine.md's table). A kernel with W units runs on
 * min(threads, W / THR_x) threads, at least 1. */
#define THR_GEMM_MACS 1048576.0      /* matmul multiply-adds (m n k) */
#define THR_GEMM_BF16_MACS 2097152.0 /* bf16 products (twice the rate, plus packing) */
#define THR_GEMV_FLOATS 131072.0     /* a product of one row, in its own parallel region: weights streamed */
#define THR_TEAM_FLOATS 32768.0      /* the decode team (one region per step): weights of an average linear */
#define THR_ROW_FLOATS 65536.0       /* row kernels (rmsnorm, rope, residual and bias adds): floats */
#define THR_EXP_FLOATS 16384.0       /* row kernels with an exp per element (swiglu, softmax, losses) */
#define THR_STREAM_FLOATS 65536.0    /* streaming updates (AdamW, scaling, sums of squares, zeroing) */
#define THR_ATTN_MACS 524288.0       /* attention: query-key pairs x head_dim x heads, both products */

/* A whole model call (a training step: forward, loss, backward, optimizer; a prefill or a packed
 * no-gradient forward) of fewer multiply-adds than this runs every kernel on one thread
 * (kernels_call_begin). Per-kernel thresholds cannot see that the call is small: a training step of
 * the h32 shape (hidden 32, 1024 tokens, 1.8e8 multiply-adds) runs ~30 kernels that each pass
 * their threshold by a little, and at the load of a shared machine (1 minute load 1.1-1.5, the
 * second core partly someone else's) their splits cost more than they gained: 2 threads 0.94x one
 * in bench/sweep.sh's quiet run (2026-12-06), and h64's prefill (3.2e7) 0.93x; the smallest calls that
 * gained were h128's prefill (2.2e8: 1.52x) and h64's training step (4.8e8: 1.53x). The threshold
 * sits between the largest that lost and the smallest that gained (bench_sweep MODE SHAPE 1,2
 * measures a shape on 1 and 2 threads in alternation; model_call_macs in model_train.c counts). */
#define THR_CALL_MACS 2e8

/* Sets the thread count; n <= 0 means OMP_NUM_THREADS when set, else the cores this process may
 * run on (sched_getaffinity). OpenBLAS is (re)set to one thread. Returns the count in use. */
int kernels_set_threads(int n);
/* The count in use (initializes with kernels_set_threads(0) on first call). */
int kernels_threads(void);

/* Threads for a kernel call of `work` units that pays off from `min_per_thread` units per thread:
 * 1 inside a parallel region, else min(kernels_threads(), work / min_per_thread), at least 1. */
int kernels_threads_for(double work, double min_per_thread);

/* Caps the threads of every kernel at cap (0: no cap) until changed again; returns the cap before. */
int kernels_cap_threads(int cap);
/* A model call of `macs` multiply-adds begins: below THR_CALL_MACS, caps the kernels at one thread
 * (not under kernels_split_always). Returns the cap to restore with kernels_cap_threads when the
 * call ends. */
int kernels_call_begin(double macs);

/* Tests: with on = 1, kernels_threads_for ignores the thresholds (every kernel splits whatever
 * its size), so that small test inputs run the multi-threaded code paths. */
void kernels_split_always(int on);

#endif
