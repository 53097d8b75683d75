/* mpitest.c: the `mpi-selftest` stage kind: all-reduces a vector over the stage's MPI ranks and
 * checks the sum against the closed form, proving that ranks > 1 really runs MPI processes
 * that talk to each other. Writes allreduce.json and metrics world_size and sum. */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "common/fsutil.h"
#include "stages/stage.h"

static const param_spec mpitest_params[] = {
    {.name = "length", .type = P_INT, .def = "1024", .has_min = 1, .min = 1, .has_max = 1, .max = 1 << 24,
     .help = "elements of the all-reduced vector"},
    {.name = NULL},
};

static const stage_output_spec mpitest_outputs[] = {
    {.name = "output", .kind = "files"},
    {.name = NULL},
};

static int mpitest_run(stage_ctx *ctx) {
    int64_t n;
    if (param_int(ctx->params, "length", &n)) return -1;
    double *x = xmalloc((size_t)n * sizeof *x), *y = xmalloc((size_t)n * sizeof *y);
    if (!x || !y) {
        free(x);
        free(y);
        return -1;
    }
    /* Rank r contributes (r + 1) * (i + 1); the sum is W (W + 1) / 2 * (i + 1). */
    for (int64_t i = 0; i < n; i++) x[i] = (double)(ctx->rank + 1) * (double)(i + 1);
    int rc = 0;
    if (ctx->world > 1) {
        if (MPI_Allreduce(x, y, (int)n, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD) != MPI_SUCCESS)
            rc = err_set(ERR_STAGE, "MPI_Allreduce failed on rank %d", ctx->rank);
    } else {
        for (int64_t i = 0; i < n; i++) y[i] = x[i];
    }
    double w = ctx->world, total = 0;
    for (int64_t i = 0; i < n && !rc; i++) {
        double want = w * (w + 1) / 2 * (double)(i + 1);
        if (y[i] != want)
            rc = err_set(ERR_STAGE, "all-reduce gave %g at element %lld, expected %g", y[i], (long long)i, want);
        total += y[i];
    }
    printf("rank %d of %d: all-reduce of %lld elements ok\n", ctx->rank, ctx->world, (long long)n);
    fflush(stdout);
    if (!rc && ctx->rank == 0) {
        char *path = fs_join(ctx->output_dirs[0], "allreduce.json");
        char *json = xasprintf("{\"world_size\": %d, \"length\": %lld, \"sum\": %.17g}\n", ctx->world, (long long)n, total);
        rc = (!path || !json) ? -1 : fs_write_atomic(path, json, strlen(json));
        free(path);
        free(json);
        if (!rc) rc = stage_metric(ctx, "world_size", 0, ctx->world);
        if (!rc) rc = stage_metric(ctx, "sum", 0, total);
    }
    free(x);
    free(y);
    return rc;
}

const stage_kind stage_kind_mpi_selftest = {
    .name = "mpi-selftest",
    .version = 1,
    .summary = "all-reduce a vector over the stage's MPI ranks and check the result",
    .params = mpitest_params,
    .outputs = mpitest_outputs,
    .supports_ranks = 1,
    .copy_inputs = 0,
    .run = mpitest_run,
};
