/* rope.cu: rotary embeddings (the CUDA twins of kernels/rope.c): the cos/sin tables, and the
 * rotation of each head's pairs (i, i + head_dim/2) in place, forward and its transpose (backward).
 * The inverse frequencies (with the Llama 3 scaling) come from rope_inv_freq on the host.
 * Shapes: x [n, ldx] (n_heads heads of head_dim at the start of a row), pos [n], tables [*, n_half]. */
#include "kernels/cuda/cu_common.cuh"

__global__ void rope_tables_kernel(float *cos_t, float *sin_t, const float *inv_freq, int pos0, int n_pos, int n_half) {
    const size_t idx = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= (size_t)n_pos * n_half) return;
    const int p = (int)(idx / n_half), i = (int)(idx % n_half);
    const float a = (float)(pos0 + p) * inv_freq[i]; /* one fp32 rounding, as the CPU and torch */
    cos_t[idx] = (float)cos((double)a);
    sin_t[idx] = (float)sin((double)a);
}

int cu_rope_tables(cu_ctx *c, float *cos_t, float *sin_t, const float *inv_freq, int pos0, int n_pos, int n_half) {
    if (n_pos <= 0 || n_half <= 0) return 0;
    CU_LAUNCH(cu_blocks((size_t)n_pos * n_half, 256), 256, 0, c->stream, rope_tables_kernel)(cos_t, sin_t, inv_freq, pos0,
                                                                                           n_pos, n_half);
    CU_LAUNCHED("RoPE tables");
    return 0;
}

/* sign +1: x1' = x1 c - x2 s, x2' = x2 c + x1 s; sign -1: the transpose. One thread per pair. */
template <typename T>
__global__ void rope_kernel(T *x, int ldx, const int *pos, const float *cos_t, const float *sin_t, int n, int n_heads,
                            int head_dim, float sign) {
    const int n_half = head_dim / 2;
    const size_t idx = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= (size_t)n * n_heads * n_half) return;
    const int i = (int)(idx % n_half), h = (int)(idx / n_half % n_heads), t = (int)(idx / ((size_t)n_half * n_heads));
    const size_t o = (size_t)t * ldx + (size_t)h * head_dim + i, tab = (size_t)pos[t] * n_half + i;
    const float cc = cos_t[tab], s = sign * sin_t[tab], a = cu_f(x[o]), b = cu_f(x[o + n_half]);
    x[o] = cu_to<T>(a * cc - b * s);
    x[o + n_half] = cu_to<T>(b * cc + a * s);
}

static int rope_apply(cu_ctx *c, void *x, int ldx, const int *pos, const float *cos_t, const float *sin_t, int n,
                      int n_heads, int head_dim, cu_dtype dt, float sign) {
    const size_t pairs = (size_t)n * n_heads * (head_dim / 2);
    if (!pairs) return 0;
    CU_DISPATCH(dt, T,
                CU_LAUNCH(cu_blocks(pairs, 256), 256, 0, c->stream, rope_kernel<T>)((T *)x, ldx, pos, cos_t, sin_t, n,
                                                                                    n_heads, head_dim, sign));
    CU_LAUNCHED(sign > 0 ? "RoPE forward" : "RoPE backward");
    return 0;
}

int cu_rope_forward(cu_ctx *c, void *x, int ldx, const int *pos, const float *cos_t, const float *sin_t, int n,
                    int n_heads, int head_dim, cu_dtype dt) {
    return rope_apply(c, x, ldx, pos, cos_t, sin_t, n, n_heads, head_dim, dt, 1.0f);
}

int cu_rope_backward(cu_ctx *c, void *dx, int ldx, const int *pos, const float *cos_t, const float *sin_t, int n,
                     int n_heads, int head_dim, cu_dtype dt) {
    return rope_apply(c, dx, ldx, pos, cos_t, sin_t, n, n_heads, head_dim, dt, -1.0f);
}
