/* dp.c: fixed-order sums over MPI ranks (see dp.h). A block of B floats is split into `world`
 * slices; MPI_Alltoall hands slice r of every rank to rank r, which adds them in rank order;
 * MPI_Allgather returns the summed slices to everyone. Traffic equals a ring all-reduce. */
#include "stages/train/dp.h"

#include <mpi.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"

#define DP_BLOCK (1 << 22) /* floats per block */

int dp_sum_floats(float *x, size_t n, int world) {
    if (world <= 1 || n == 0) return 0;
    const size_t block = n < DP_BLOCK ? n : DP_BLOCK;
    const int slice = (int)((block + (size_t)world - 1) / (size_t)world);
    float *send = xmalloc(sizeof(float) * (size_t)slice * (size_t)world);
    float *recv = xmalloc(sizeof(float) * (size_t)slice * (size_t)world);
    float *mine = xmalloc(sizeof(float) * (size_t)slice);
    int rc = (!send || !recv || !mine) ? -1 : 0;
    for (size_t b0 = 0; b0 < n && !rc; b0 += block) {
        const size_t len = n - b0 < block ? n - b0 : block;
        memset(send, 0, sizeof(float) * (size_t)slice * (size_t)world);
        memcpy(send, x + b0, sizeof(float) * len);
        if (MPI_Alltoall(send, slice, MPI_FLOAT, recv, slice, MPI_FLOAT, MPI_COMM_WORLD) != MPI_SUCCESS) {
            rc = err_set(ERR_IO, "MPI_Alltoall of gradients failed");
            break;
        }
        for (int i = 0; i < slice; i++) {
            double s = 0;
            for (int r = 0; r < world; r++) s += recv[(size_t)r * slice + i];
            mine[i] = (float)s;
        }
        if (MPI_Allgather(mine, slice, MPI_FLOAT, send, slice, MPI_FLOAT, MPI_COMM_WORLD) != MPI_SUCCESS) {
            rc = err_set(ERR_IO, "MPI_Allgather of gradients failed");
            break;
        }
        memcpy(x + b0, send, sizeof(float) * len);
    }
    free(send), free(recv), free(mine);
    return rc;
}

int dp_exchange(double *vals, int n, int *status, int world) {
    if (world <= 1) return 0;
    if (n > 64) return err_set(ERR_INTERNAL, "dp_exchange of %d values (at most 64)", n);
    double mine[65];
    mine[0] = *status;
    if (n > 0) memcpy(mine + 1, vals, sizeof(double) * (size_t)n);
    double *all = xmalloc(sizeof(double) * 65 * (size_t)world);
    if (!all) return -1;
    if (MPI_Allgather(mine, n + 1, MPI_DOUBLE, all, n + 1, MPI_DOUBLE, MPI_COMM_WORLD) != MPI_SUCCESS) {
        free(all);
        return err_set(ERR_IO, "MPI_Allgather of the step's losses failed");
    }
    *status = 0;
    for (int k = 0; k < n; k++) vals[k] = 0;
    for (int r = 0; r < world; r++) {
        const double *v = all + (size_t)r * (n + 1);
        if (!*status && v[0] != 0) *status = (int)v[0];
        for (int k = 0; k < n; k++) vals[k] += v[1 + k];
    }
    free(all);
    return 0;
}
