/* embedding.c: gather and scatter-add of embedding rows (see embedding.h). */
#include "kernels/embedding.h"

#include <stddef.h>
#include <string.h>

#include "kernels/threads.h"

void embedding_forward(float *out, const float *table, const int *tokens, int n, int dim) {
    const int nt = kernels_threads_for((double)n * dim, THR_STREAM_FLOATS);
#pragma omp parallel for schedule(static) num_threads(nt) if (nt > 1)
    for (int i = 0; i < n; i++)
        memcpy(out + (size_t)i * dim, table + (size_t)tokens[i] * dim, (size_t)dim * sizeof(float));
}

void embedding_backward(float *dtable, const float *dout, const int *tokens, int n, int dim) {
    int n_blocks = (dim + 63) / 64;
    const int nt = kernels_threads_for((double)n * dim, THR_STREAM_FLOATS);
#pragma omp parallel for schedule(static) num_threads(nt) if (nt > 1)
    for (int bk = 0; bk < n_blocks; bk++) {
        int j0 = bk * 64, j1 = j0 + 64 < dim ? j0 + 64 : dim;
        for (int i = 0; i < n; i++) {
            float *d = dtable + (size_t)tokens[i] * dim;
            const float *g = dout + (size_t)i * dim;
#pragma omp simd
            for (int j = j0; j < j1; j++) d[j] += g[j];
        }
    }
}

void embedding_forward_ref(float *out, const float *table, const int *tokens, int n, int dim) {
    for (int i = 0; i < n; i++)
        for (int j = 0; j < dim; j++) out[(size_t)i * dim + j] = table[(size_t)tokens[i] * dim + j];
}

void embedding_backward_ref(float *dtable, const float *dout, const int *tokens, int n, int dim) {
    for (int i = 0; i < n; i++)
        for (int j = 0; j < dim; j++) dtable[(size_t)tokens[i] * dim + j] += dout[(size_t)i * dim + j];
}
