/* dp.h: data parallelism of the `train` stage over MPI_COMM_WORLD: sums whose order is fixed by
 * rank (so a run is reproducible for a given rank count, unlike MPI_Allreduce whose order is the
 * library's choice), and a step-wide status exchange so that one rank's failure stops every rank
 * at the same collective instead of leaving the others waiting. With world == 1 all are no-ops. */
#ifndef SMELT_STAGES_TRAIN_DP_H
#define SMELT_STAGES_TRAIN_DP_H

#include <stddef.h>
#include <stdint.h>

/* x[0..n) on every rank becomes the sum over ranks, added in rank order 0, 1, ..., world-1 (in
 * double, rounded once). Works in blocks: each rank sums a slice of a block (all-to-all), then the
 * slices are gathered. Extra memory: two blocks of at most 4M floats. 0 or -1 (ERR_IO). */
int dp_sum_floats(float *x, size_t n, int world);

/* vals[0..n) (n <= 64) become the sums over ranks in rank order; *status is 0 on return when
 * every rank passed 0, else the first nonzero status in rank order (so all ranks agree). 0, or -1
 * when MPI itself failed. */
int dp_exchange(double *vals, int n, int *status, int world);

#endif
