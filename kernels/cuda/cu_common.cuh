/* cu_common.cuh: what the .cu files of the CUDA backend share: the switch between nvcc and the
 * host emulation (kernels/cuda/emu/emu.h), the context struct, error checks, dtype dispatch,
 * loads and stores as fp32, and warp/block reductions in a fixed order (deterministic). */
#ifndef SMELT_KERNELS_CUDA_CU_COMMON_CUH
#define SMELT_KERNELS_CUDA_CU_COMMON_CUH

#ifdef SMELT_CUDA_EMU
#include "kernels/cuda/emu/emu.h"
/* kernel<<<grid, block, smem, stream>>>(args) is CU_LAUNCH(grid, block, smem, stream, kernel)(args) */
#define CU_LAUNCH(g, b, s, st, ...) emu::launch(g, b, s, st, __VA_ARGS__)
#define CU_DYN_SMEM(T, name) T *name = reinterpret_cast<T *>(emu::dyn_smem())
#else
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <mma.h>
#define CU_LAUNCH(g, b, s, st, ...) __VA_ARGS__<<<g, b, s, st>>>
#define CU_DYN_SMEM(T, name)                                            \
    extern __shared__ __align__(128) unsigned char cu_dyn_smem_[];     \
    T *name = reinterpret_cast<T *>(cu_dyn_smem_)
#endif

#include <stddef.h>
#include <stdint.h>

extern "C" {
#include "common/error.h"
}
#include "kernels/cuda/cuda_ops.h"

struct cu_ctx {
    int device;
    cudaStream_t stream;
    cublasHandle_t blas;
    cudaDeviceProp prop;
    cu_arena scratch; /* the ops' temporaries: taken and given back inside one op (stream order) */
    char desc[320];
};

/* Records a CUDA failure (ERR_IO: a library failed) and returns -1. */
int cu_fail(cudaError_t e, const char *what);
#define CU_OK(call, what)                        \
    do {                                         \
        cudaError_t cu_e_ = (call);              \
        if (cu_e_ != cudaSuccess) return cu_fail(cu_e_, what); \
    } while (0)
/* After a launch: a configuration error (grid, shared memory) is reported here. */
#define CU_LAUNCHED(what) CU_OK(cudaGetLastError(), what)

/* Runs the statement(s) after T with T the element type of dt. */
#define CU_DISPATCH(dt, T, ...)                                                     \
    switch (dt) {                                                                   \
    case CU_F32: { typedef float T; __VA_ARGS__; } break;                           \
    case CU_BF16: { typedef __nv_bfloat16 T; __VA_ARGS__; } break;                  \
    case CU_F16: { typedef __half T; __VA_ARGS__; } break;                          \
    default: return err_set(ERR_INPUT, "CUDA op: unknown dtype %d", (int)(dt));     \
    }

/* Scratch of the context for one op: cu_scratch_take(c, bytes) after saving c->scratch.used, and
 * restore it before returning (the stream orders later uses after this op's kernels). */
void *cu_scratch_take(cu_ctx *c, size_t bytes, const char *what);

static inline unsigned cu_blocks(size_t n, unsigned per) { return (unsigned)((n + per - 1) / per); }

/* ---- element access as fp32 ---- */

__device__ __forceinline__ float cu_f(float v) { return v; }
__device__ __forceinline__ float cu_f(__nv_bfloat16 v) { return __bfloat162float(v); }
__device__ __forceinline__ float cu_f(__half v) { return __half2float(v); }
template <typename T> __device__ __forceinline__ T cu_to(float v);
template <> __device__ __forceinline__ float cu_to<float>(float v) { return v; }
template <> __device__ __forceinline__ __nv_bfloat16 cu_to<__nv_bfloat16>(float v) { return __float2bfloat16(v); }
template <> __device__ __forceinline__ __half cu_to<__half>(float v) { return __float2half(v); }

/* ---- reductions: a fixed butterfly per warp, warps summed in index order ---- */

__device__ __forceinline__ float warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
__device__ __forceinline__ double warp_sum_d(double v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
__device__ __forceinline__ float warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}
/* Sum over the block (blockDim.x a multiple of 32, at most 1024); every thread gets the result.
 * red: 32 slots of shared memory. Contains two __syncthreads: call it from every thread. */
template <typename V> __device__ __forceinline__ V block_sum(V v, V *red) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, n_warps = blockDim.x >> 5;
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    if (lane == 0) red[warp] = v;
    __syncthreads();
    V s = 0;
    for (int w = 0; w < n_warps; w++) s += red[w];
    __syncthreads();
    return s;
}
__device__ __forceinline__ float block_max(float v, float *red) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, n_warps = blockDim.x >> 5;
    v = warp_max(v);
    if (lane == 0) red[warp] = v;
    __syncthreads();
    float m = red[0];
    for (int w = 1; w < n_warps; w++) m = fmaxf(m, red[w]);
    __syncthreads();
    return m;
}

#endif
