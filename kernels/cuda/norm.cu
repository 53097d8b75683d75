/* norm.cu: RMSNorm forward and backward (the CUDA twins of kernels/rmsnorm.c).
 *   forward:  r_i = 1 / sqrt(mean_j x_ij^2 + eps),  out_ij = w_j (x_ij r_i)
 *   backward: dx_ij += r_i w_j g_ij - r_i^3 (sum_k w_k g_ik x_ik) / d * x_ij,  dw_j += sum_i g_ij x_ij r_i
 * One block per row; the weight gradient sums fixed chunks of rows into scratch, then the chunks
 * in order, so it is the same on every run. Shapes: x, out, dout, dx [n, d]; w, dw [d]; rstd [n]. */
#include "kernels/cuda/cu_common.cuh"

#define NORM_THREADS 256

template <typename T>
__global__ void __launch_bounds__(NORM_THREADS) rmsnorm_fwd_kernel(T *out, float *rstd, const T *x, const float *w, int d,
                                                                   float eps) {
    __shared__ float red[32];
    const T *xi = x + (size_t)blockIdx.x * d;
    T *oi = out + (size_t)blockIdx.x * d;
    float ss = 0;
    for (int j = threadIdx.x; j < d; j += blockDim.x) {
        const float v = cu_f(xi[j]);
        ss += v * v;
    }
    ss = block_sum(ss, red);
    const float r = 1.0f / sqrtf(ss / (float)d + eps);
    if (rstd && threadIdx.x == 0) rstd[blockIdx.x] = r;
    for (int j = threadIdx.x; j < d; j += blockDim.x) oi[j] = cu_to<T>(w[j] * (cu_f(xi[j]) * r));
}

int cu_rmsnorm_forward(cu_ctx *c, void *out, float *rstd, const void *x, const float *w, int n, int d, float eps,
                       cu_dtype dt) {
    if (n <= 0 || d <= 0) return 0;
    CU_DISPATCH(dt, T,
                CU_LAUNCH(n, NORM_THREADS, 0, c->stream, rmsnorm_fwd_kernel<T>)((T *)out, rstd, (const T *)x, w, d, eps));
    CU_LAUNCHED("RMSNorm forward");
    return 0;
}

template <typename T>
__global__ void __launch_bounds__(NORM_THREADS) rmsnorm_bwd_dx_kernel(T *dx, const T *dout, const T *x, const float *w,
                                                                      const float *rstd, int d) {
    __shared__ float red[32];
    const size_t o = (size_t)blockIdx.x * d;
    const float r = rstd[blockIdx.x];
    float dot = 0;
    for (int j = threadIdx.x; j < d; j += blockDim.x) dot += w[j] * cu_f(dout[o + j]) * cu_f(x[o + j]);
    dot = block_sum(dot, red);
    const float cc = r * r * r * dot / (float)d;
    for (int j = threadIdx.x; j < d; j += blockDim.x)
        dx[o + j] = cu_to<T>(cu_f(dx[o + j]) + (r * (w[j] * cu_f(dout[o + j])) - cc * cu_f(x[o + j])));
}

/* part [chunks, d]: the sum over rows [ch * rows, (ch+1) * rows) of g x r, one thread per column */
template <typename T>
__global__ void rmsnorm_bwd_dw_part_kernel(float *part, const T *dout, const T *x, const float *rstd, int n, int d,
                                           int rows) {
    const int j = blockIdx.x * blockDim.x + threadIdx.x, ch = blockIdx.y;
    if (j >= d) return;
    const int i0 = ch * rows, i1 = i0 + rows < n ? i0 + rows : n;
    float s = 0;
    for (int i = i0; i < i1; i++) s += cu_f(dout[(size_t)i * d + j]) * (cu_f(x[(size_t)i * d + j]) * rstd[i]);
    part[(size_t)ch * d + j] = s;
}

/* dst[j] += sum over chunks of part[ch, j], chunks in order */
__global__ void sum_chunks_kernel(float *dst, const float *part, int chunks, int d) {
    const int j = blockIdx.x * blockDim.x + threadIdx.x;
    if (j >= d) return;
    float s = 0;
    for (int ch = 0; ch < chunks; ch++) s += part[(size_t)ch * d + j];
    dst[j] += s;
}

int cu_rmsnorm_backward(cu_ctx *c, void *dx, float *dw, const void *dout, const void *x, const float *w,
                        const float *rstd, int n, int d, cu_dtype dt) {
    if (n <= 0 || d <= 0) return 0;
    /* chunks of rows: at most 128, at least 32 rows each; depends on n only */
    const int rows = n / 128 + 1 > 32 ? n / 128 + 1 : 32, chunks = (n + rows - 1) / rows;
    const size_t mark = c->scratch.used;
    float *part = (float *)cu_scratch_take(c, sizeof(float) * (size_t)chunks * d, "RMSNorm backward");
    if (!part) return -1;
    CU_DISPATCH(dt, T,
                CU_LAUNCH(n, NORM_THREADS, 0, c->stream, rmsnorm_bwd_dx_kernel<T>)((T *)dx, (const T *)dout, (const T *)x,
                                                                                  w, rstd, d);
                CU_LAUNCH(dim3(cu_blocks(d, 128), chunks), 128, 0, c->stream, rmsnorm_bwd_dw_part_kernel<T>)(
                    part, (const T *)dout, (const T *)x, rstd, n, d, rows));
    CU_LAUNCH(cu_blocks(d, 128), 128, 0, c->stream, sum_chunks_kernel)(dw, part, chunks, d);
    c->scratch.used = mark;
    CU_LAUNCHED("RMSNorm backward");
    return 0;
}
