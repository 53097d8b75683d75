/* mlp.cu: the SwiGLU activation and the token embedding, forward and backward (the CUDA twins of
 * kernels/swiglu.c and kernels/embedding.c).
 *   swiglu:    h = silu(g) u = g / (1 + exp(-g)) u;  dg = dh u s (1 + g (1 - s)), du = dh g s, s = sigmoid(g)
 *   embedding: out_i = table[tok_i];  dtable[tok_i] += dout_i (each column summed in row order: repeated
 *              tokens never race, and the sum is the same on every run)
 * Shapes: gate, up, dgate, dup [n, ld_in] (first dim columns); h, dh [n, dim]; table [vocab, dim]. */
#include "kernels/cuda/cu_common.cuh"

#include <stdlib.h>

template <typename T> __global__ void swiglu_fwd_kernel(T *h, const T *gate, const T *up, int ld_in, int n, int dim) {
    const size_t idx = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= (size_t)n * dim) return;
    const size_t i = idx / dim, j = idx % dim, a = i * ld_in + j;
    const float g = cu_f(gate[a]);
    h[idx] = cu_to<T>(g / (1.0f + expf(-g)) * cu_f(up[a]));
}

template <typename T>
__global__ void swiglu_bwd_kernel(T *dgate, T *dup, const T *dh, const T *gate, const T *up, int ld_in, int n, int dim) {
    const size_t idx = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= (size_t)n * dim) return;
    const size_t i = idx / dim, j = idx % dim, a = i * ld_in + j;
    const float g = cu_f(gate[a]), u = cu_f(up[a]), d = cu_f(dh[idx]), s = 1.0f / (1.0f + expf(-g));
    dgate[a] = cu_to<T>(d * u * (s * (1.0f + g * (1.0f - s)))); /* gate and up are read before they are written */
    dup[a] = cu_to<T>(d * (g * s));
}

int cu_swiglu_forward(cu_ctx *c, void *h, const void *gate, const void *up, int ld_in, int n, int dim, cu_dtype dt) {
    const size_t total = (size_t)n * dim;
    if (!total) return 0;
    CU_DISPATCH(dt, T,
                CU_LAUNCH(cu_blocks(total, 256), 256, 0, c->stream, swiglu_fwd_kernel<T>)((T *)h, (const T *)gate,
                                                                                          (const T *)up, ld_in, n, dim));
    CU_LAUNCHED("SwiGLU forward");
    return 0;
}

int cu_swiglu_backward(cu_ctx *c, void *dgate, void *dup, const void *dh, const void *gate, const void *up, int ld_in,
                       int n, int dim, cu_dtype dt) {
    const size_t total = (size_t)n * dim;
    if (!total) return 0;
    CU_DISPATCH(dt, T,
                CU_LAUNCH(cu_blocks(total, 256), 256, 0, c->stream, swiglu_bwd_kernel<T>)(
                    (T *)dgate, (T *)dup, (const T *)dh, (const T *)gate, (const T *)up, ld_in, n, dim));
    CU_LAUNCHED("SwiGLU backward");
    return 0;
}

template <typename T> __global__ void embedding_fwd_kernel(T *out, const T *table, const int *tokens, int n, int dim) {
    const size_t idx = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= (size_t)n * dim) return;
    const size_t i = idx / dim, j = idx % dim;
    out[idx] = table[(size_t)tokens[i] * dim + j];
}

template <typename T> __global__ void embedding_bwd_kernel(float *dtable, const T *dout, const int *tokens, int n, int dim) {
    const int j = blockIdx.x * blockDim.x + threadIdx.x;
    if (j >= dim) return;
    for (int i = 0; i < n; i++) dtable[(size_t)tokens[i] * dim + j] += cu_f(dout[(size_t)i * dim + j]);
}

int cu_embedding_forward(cu_ctx *c, void *out, const void *table, const int *tokens, int n, int dim, cu_dtype dt) {
    const size_t total = (size_t)n * dim;
    if (!total) return 0;
    CU_DISPATCH(dt, T,
                CU_LAUNCH(cu_blocks(total, 256), 256, 0, c->stream, embedding_fwd_kernel<T>)((T *)out, (const T *)table,
                                                                                             tokens, n, dim));
    CU_LAUNCHED("embedding forward");
    return 0;
}

int cu_embedding_backward(cu_ctx *c, float *dtable, const void *dout, const int *tokens, int n, int dim, cu_dtype dt) {
    if (n <= 0 || dim <= 0) return 0;
    CU_DISPATCH(dt, T,
                CU_LAUNCH(cu_blocks(dim, 64), 64, 0, c->stream, embedding_bwd_kernel<T>)(dtable, (const T *)dout, tokens,
                                                                                         n, dim));
    CU_LAUNCHED("embedding backward");
    return 0;
}

/* grid (group, column block): dtable[token] += the group's rows summed in order */
template <typename T>
__global__ void embedding_bwd_grouped_kernel(float *dtable, const T *dout, const int *tokens, const int *order,
                                             const int *starts, int dim) {
    const int g = blockIdx.x, j = blockIdx.y * blockDim.x + threadIdx.x;
    if (j >= dim) return;
    const int k0 = starts[g], k1 = starts[g + 1];
    float s = 0;
    for (int k = k0; k < k1; k++) s += cu_f(dout[(size_t)order[k] * dim + j]);
    dtable[(size_t)tokens[order[k0]] * dim + j] += s;
}

int cu_embedding_backward_grouped(cu_ctx *c, float *dtable, const void *dout, const int *tokens, const int *order,
                                  const int *starts, int n_groups, int dim, cu_dtype dt) {
    if (n_groups <= 0 || dim <= 0) return 0;
    const dim3 grid(n_groups, cu_blocks(dim, 128));
    CU_DISPATCH(dt, T,
                CU_LAUNCH(grid, 128, 0, c->stream, embedding_bwd_grouped_kernel<T>)(dtable, (const T *)dout, tokens, order,
                                                                                    starts, dim));
    CU_LAUNCHED("embedding backward (grouped)");
    return 0;
}

/* (token, row) pairs sorted by token then row: the stable order */
static int cmp_pair(const void *a, const void *b) {
    const int *x = (const int *)a, *y = (const int *)b;
    return x[0] != y[0] ? (x[0] < y[0] ? -1 : 1) : (x[1] > y[1]) - (x[1] < y[1]);
}

int cu_embedding_groups(int *order, int *starts, const int *tokens, int n) {
    int *pairs = (int *)xmalloc(sizeof(int) * 2 * (size_t)(n > 0 ? n : 1));
    if (!pairs) return -1;
    for (int i = 0; i < n; i++) pairs[2 * i] = tokens[i], pairs[2 * i + 1] = i;
    qsort(pairs, (size_t)n, 2 * sizeof(int), cmp_pair);
    int g = 0;
    for (int k = 0; k < n; k++) {
        order[k] = pairs[2 * k + 1];
        if (k == 0 || pairs[2 * k] != pairs[2 * k - 2]) starts[g++] = k;
    }
    starts[g] = n;
    free(pairs);
    return g;
}
