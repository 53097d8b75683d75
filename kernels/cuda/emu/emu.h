/* emu.h: a host emulation of the subset of CUDA C++ that kernels/cuda/ uses, so that the same .cu
 * sources compile with the host C++ compiler and their logic (indexing, tiling, masks, barriers,
 * reductions, the row-major mapping onto cuBLAS) is tested on machines without a GPU.
 *
 * What it models: a kernel launch runs its blocks one after another; the threads of a block are
 * fibers (ucontext) switched at barriers (__syncthreads, __syncwarp, warp shuffles, WMMA calls), in
 * a forward, reverse or shuffled order per interval (SMELT_EMU_ORDER), so a read of another
 * thread's shared-memory write without a barrier between them gives wrong results in some order.
 * A barrier that some threads of a block never reach is reported (the GPU would hang or be wrong).
 * WMMA fragments hold the whole 16x16 tile, computed in lane 0 (the real layout is opaque and the
 * kernels rely on none); loads check the 32-byte alignment and ldm rules of the programming guide.
 * cublasGemmEx follows its documented column-major semantics; launch bounds (threads, grid y/z,
 * dynamic shared memory above 48 KB without cudaFuncSetAttribute) give the real errors.
 * What it does not model: timing, memory coalescing, bank conflicts, the exact rounding of the
 * hardware (tensor cores, __expf), warp-synchronous code without barriers, and real concurrency.
 * A result of the emulation is not a GPU result; docs/cuda.md says what ran where. */
#ifndef SMELT_KERNELS_CUDA_EMU_H
#define SMELT_KERNELS_CUDA_EMU_H

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <tuple>
#include <type_traits>
#include <utility>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __shared__ static
#define __align__(n) alignas(n)

/* ---- built-in variables ---- */

struct dim3 {
    unsigned x, y, z;
    dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};

namespace emu {
struct thread_state; /* a fiber of the running block */
extern thread_state *cur;
extern dim3 g_block_idx, g_block_dim, g_grid_dim;
const dim3 &thread_idx();
void *dyn_smem();
void block_barrier();
void warp_barrier();
int lane();
uint64_t *warp_slots(); /* 32 exchange slots of the current warp */
} // namespace emu

#define threadIdx (emu::thread_idx())
#define blockIdx (emu::g_block_idx)
#define blockDim (emu::g_block_dim)
#define gridDim (emu::g_grid_dim)
#define warpSize 32

static inline void __syncthreads() { emu::block_barrier(); }
static inline void __syncwarp(unsigned = 0xffffffffu) { emu::warp_barrier(); }

template <typename T> static inline T emu_shfl(T v, int src_lane_of_mine) {
    static_assert(sizeof(T) <= 8, "shuffle of at most 8 bytes");
    uint64_t *slots = emu::warp_slots(), bits = 0;
    std::memcpy(&bits, &v, sizeof v);
    slots[emu::lane()] = bits;
    emu::warp_barrier();
    T r = v;
    if (src_lane_of_mine >= 0 && src_lane_of_mine < 32) std::memcpy(&r, &slots[src_lane_of_mine], sizeof r);
    emu::warp_barrier(); /* nobody overwrites a slot before every lane has read */
    return r;
}
template <typename T> static inline T __shfl_xor_sync(unsigned, T v, int mask, int = 32) {
    return emu_shfl(v, emu::lane() ^ mask);
}
template <typename T> static inline T __shfl_down_sync(unsigned, T v, unsigned delta, int = 32) {
    int src = emu::lane() + (int)delta;
    return emu_shfl(v, src < 32 ? src : -1);
}
template <typename T> static inline T __shfl_sync(unsigned, T v, int src, int = 32) { return emu_shfl(v, src & 31); }

/* ---- math: device intrinsics as their correctly rounded host versions ---- */

static inline float rsqrtf(float x) { return 1.0f / std::sqrt(x); }
/* glibc declares __expf and __logf itself: the emulation's own names stand in for them */
static inline float emu_expf(float x) { return std::exp(x); }
static inline float emu_logf(float x) { return std::log(x); }
#define __expf emu_expf
#define __logf emu_logf
static inline float __fdividef(float a, float b) { return a / b; }
static inline float __fmul_rn(float a, float b) { return a * b; }
static inline float __fadd_rn(float a, float b) { return a + b; }
static inline float __fsub_rn(float a, float b) { return a - b; }
static inline float __fdiv_rn(float a, float b) { return a / b; }
static inline float __fsqrt_rn(float a) { return std::sqrt(a); }
static inline float __fmaf_rn(float a, float b, float c) { return std::fma(a, b, c); }
static inline double __dmul_rn(double a, double b) { return a * b; }
using std::isfinite;
using std::isnan;

/* ---- 16-bit floats ---- */

struct __nv_bfloat16 {
    uint16_t bits;
};
struct __half {
    uint16_t bits;
};
/* round to nearest even, NaN kept quiet, denormals kept (as cuda_bf16.h's __float2bfloat16) */
static inline __nv_bfloat16 __float2bfloat16(float f) {
    uint32_t u;
    std::memcpy(&u, &f, 4);
    __nv_bfloat16 h;
    if ((u & 0x7f800000u) == 0x7f800000u && (u & 0x7fffffu)) h.bits = (uint16_t)((u >> 16) | 0x40u);
    else h.bits = (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
    return h;
}
static inline float __bfloat162float(__nv_bfloat16 h) {
    uint32_t u = (uint32_t)h.bits << 16;
    float f;
    std::memcpy(&f, &u, 4);
    return f;
}
/* round to nearest even in integers (clang 14 has no _Float16 on x86), as cuda_fp16.h's
 * __float2half: NaN becomes 0x7fff, values from 65520 up become infinity, subnormals are kept */
static inline __half __float2half(float f) {
    uint32_t u;
    std::memcpy(&u, &f, 4);
    const uint32_t sign = (u >> 16) & 0x8000u, a = u & 0x7fffffffu;
    __half h;
    if (a > 0x7f800000u) h.bits = 0x7fffu;
    else if (a >= 0x477ff000u) h.bits = (uint16_t)(sign | 0x7c00u);
    else if (a >= 0x38800000u) /* a normal half: drop 13 mantissa bits, ties to even, rebias 127 -> 15 */
        h.bits = (uint16_t)(sign | ((a + 0xfffu + ((a >> 13) & 1u) - 0x38000000u) >> 13));
    else { /* below 2^-14: a subnormal half, the count of 2^-24 units m * 2^(e - 150 + 24) */
        const uint32_t e = a >> 23, shift = 126 - e;
        if (e == 0 || shift > 24) h.bits = (uint16_t)sign; /* below 2^-25 (a tie at 2^-25 goes to 0) */
        else {
            const uint32_t m = (a & 0x7fffffu) | 0x800000u, rem = m & ((1u << shift) - 1), halfway = 1u << (shift - 1);
            uint32_t q = m >> shift;
            q += rem > halfway || (rem == halfway && (q & 1u)); /* 0x400 is the smallest normal's bits */
            h.bits = (uint16_t)(sign | q);
        }
    }
    return h;
}
static inline float __half2float(__half h) {
    const uint32_t sign = (uint32_t)(h.bits & 0x8000u) << 16, e = (h.bits >> 10) & 0x1fu, m = h.bits & 0x3ffu;
    uint32_t u;
    if (e == 0x1f) u = sign | 0x7f800000u | (m << 13); /* infinity, NaN */
    else if (e) u = sign | ((e + 112u) << 23) | (m << 13);
    else {
        const float v = (float)m * 0x1p-24f; /* zero or subnormal: exact in fp32 */
        return sign ? -v : v;
    }
    float f;
    std::memcpy(&f, &u, 4);
    return f;
}

/* ---- WMMA: a fragment holds the whole tile. The calls are no barriers here: data that other lanes
 * wrote is visible to a load only after the kernel's own __syncwarp, and a store is made by lane 0
 * alone, so a kernel that reads another lane's results without a barrier fails in some order. ---- */

namespace nvcuda {
namespace wmma {
struct matrix_a {};
struct matrix_b {};
struct accumulator {};
struct row_major {};
struct col_major {};
enum layout_t { mem_row_major, mem_col_major };

template <typename Use, int M, int N, int K, typename T, typename Layout = void> struct fragment {
    static constexpr int rows = std::is_same<Use, matrix_b>::value ? K : M;
    static constexpr int cols = std::is_same<Use, matrix_a>::value ? K : N;
    static constexpr int num_elements = rows * cols;
    T x[rows * cols];
};

void check_ptr(const void *p, unsigned ldm, size_t elem_bytes);
static inline float to_f(float v) { return v; }
static inline float to_f(__nv_bfloat16 v) { return __bfloat162float(v); }
static inline float to_f(__half v) { return __half2float(v); }

/* Only lane 0's fragments are computed (every lane's would be the same tile, and only lane 0
 * stores): the kernels read no fragment element directly (x[] means nothing on the GPU either). */
template <typename Use, int M, int N, int K, typename T, typename L>
static inline void load_matrix_sync(fragment<Use, M, N, K, T, L> &f, const T *p, unsigned ldm) {
    check_ptr(p, ldm, sizeof(T));
    if (emu::lane() != 0) return;
    const bool col = std::is_same<L, col_major>::value;
    for (int r = 0; r < f.rows; r++)
        for (int c = 0; c < f.cols; c++) f.x[r * f.cols + c] = col ? p[(size_t)c * ldm + r] : p[(size_t)r * ldm + c];
}
template <int M, int N, int K>
static inline void load_matrix_sync(fragment<accumulator, M, N, K, float, void> &f, const float *p, unsigned ldm,
                                    layout_t layout) {
    check_ptr(p, ldm, sizeof(float));
    if (emu::lane() != 0) return;
    for (int r = 0; r < M; r++)
        for (int c = 0; c < N; c++)
            f.x[r * N + c] = layout == mem_col_major ? p[(size_t)c * ldm + r] : p[(size_t)r * ldm + c];
}
template <int M, int N, int K>
static inline void store_matrix_sync(float *p, const fragment<accumulator, M, N, K, float, void> &f, unsigned ldm,
                                     layout_t layout) {
    check_ptr(p, ldm, sizeof(float));
    if (emu::lane() != 0) return;
    for (int r = 0; r < M; r++)
        for (int c = 0; c < N; c++)
            (layout == mem_col_major ? p[(size_t)c * ldm + r] : p[(size_t)r * ldm + c]) = f.x[r * N + c];
}
template <typename Use, int M, int N, int K, typename T, typename L, typename V>
static inline void fill_fragment(fragment<Use, M, N, K, T, L> &f, const V &v) {
    if (emu::lane() != 0) return;
    for (int i = 0; i < f.num_elements; i++) f.x[i] = (T)v;
}
/* d = a b + c with fp32 products and sums (the tensor cores' rounding is not modelled) */
template <int M, int N, int K, typename T, typename LA, typename LB>
static inline void mma_sync(fragment<accumulator, M, N, K, float, void> &d, const fragment<matrix_a, M, N, K, T, LA> &a,
                            const fragment<matrix_b, M, N, K, T, LB> &b,
                            const fragment<accumulator, M, N, K, float, void> &c) {
    if (emu::lane() != 0) return;
    float out[M * N];
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            float s = c.x[i * N + j];
            for (int l = 0; l < K; l++) s += to_f(a.x[i * K + l]) * to_f(b.x[l * N + j]);
            out[i * N + j] = s;
        }
    std::memcpy(d.x, out, sizeof out);
}
} // namespace wmma
} // namespace nvcuda

/* ---- runtime API (host side) ---- */

typedef enum {
    cudaSuccess = 0,
    cudaErrorInvalidValue = 1,
    cudaErrorMemoryAllocation = 2,
    cudaErrorInvalidConfiguration = 9,
    cudaErrorNoDevice = 100,
    cudaErrorLaunchFailure = 719,
} cudaError_t;
typedef enum { cudaMemcpyHostToHost, cudaMemcpyHostToDevice, cudaMemcpyDeviceToHost, cudaMemcpyDeviceToDevice, cudaMemcpyDefault } cudaMemcpyKind;
typedef enum { cudaFuncAttributeMaxDynamicSharedMemorySize = 8 } cudaFuncAttribute;
typedef struct emu_stream *cudaStream_t;
typedef struct emu_event *cudaEvent_t;
#define cudaStreamNonBlocking 1u
struct cudaDeviceProp {
    char name[256];
    size_t totalGlobalMem;
    int major, minor, multiProcessorCount;
    size_t sharedMemPerBlockOptin;
};

cudaError_t cudaGetDeviceCount(int *n);
cudaError_t cudaSetDevice(int d);
cudaError_t cudaGetDeviceProperties(cudaDeviceProp *p, int d);
cudaError_t cudaMalloc(void **p, size_t bytes);
cudaError_t cudaFree(void *p);
cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t n, cudaMemcpyKind k, cudaStream_t s = nullptr);
cudaError_t cudaMemsetAsync(void *p, int v, size_t n, cudaStream_t s = nullptr);
cudaError_t cudaMemcpy2DAsync(void *dst, size_t dpitch, const void *src, size_t spitch, size_t width, size_t height,
                              cudaMemcpyKind k, cudaStream_t s = nullptr);
cudaError_t cudaStreamCreateWithFlags(cudaStream_t *s, unsigned flags);
cudaError_t cudaStreamDestroy(cudaStream_t s);
cudaError_t cudaStreamSynchronize(cudaStream_t s);
cudaError_t cudaEventCreate(cudaEvent_t *e);
cudaError_t cudaEventDestroy(cudaEvent_t e);
cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t s = nullptr);
cudaError_t cudaEventSynchronize(cudaEvent_t e);
cudaError_t cudaEventElapsedTime(float *ms, cudaEvent_t a, cudaEvent_t b);
cudaError_t cudaGetLastError();
const char *cudaGetErrorString(cudaError_t e);
cudaError_t emu_func_set_smem(const void *fn, int bytes);
template <typename F> static inline cudaError_t cudaFuncSetAttribute(F fn, cudaFuncAttribute, int bytes) {
    return emu_func_set_smem((const void *)fn, bytes);
}

namespace emu {
/* Runs body once per thread of every block of the grid (see the top of this file). */
void run_grid(const void *fn, dim3 grid, dim3 block, size_t smem, const std::function<void()> &body);

template <typename... P> struct launcher {
    dim3 g, b;
    size_t smem;
    void (*fn)(P...);
    template <typename... A> void operator()(A &&...a) const {
        std::tuple<P...> args(std::forward<A>(a)...); /* the kernel's parameters, by value */
        auto f = fn;
        run_grid((const void *)fn, g, b, smem, [&args, f]() { std::apply(f, args); });
    }
};
template <typename... P> static inline launcher<P...> launch(dim3 g, dim3 b, size_t smem, cudaStream_t, void (*fn)(P...)) {
    return launcher<P...>{g, b, smem, fn};
}
} // namespace emu

/* ---- cuBLAS (cublasGemmEx and what it needs) ---- */

typedef enum { CUBLAS_STATUS_SUCCESS = 0, CUBLAS_STATUS_INVALID_VALUE = 7, CUBLAS_STATUS_NOT_SUPPORTED = 15 } cublasStatus_t;
typedef enum { CUBLAS_OP_N = 0, CUBLAS_OP_T = 1 } cublasOperation_t;
typedef enum { CUDA_R_32F = 0, CUDA_R_16F = 2, CUDA_R_16BF = 14 } cudaDataType;
typedef enum { CUBLAS_COMPUTE_32F = 68 } cublasComputeType_t;
typedef enum { CUBLAS_GEMM_DEFAULT = -1 } cublasGemmAlgo_t;
typedef struct emu_blas *cublasHandle_t;
cublasStatus_t cublasCreate(cublasHandle_t *h);
cublasStatus_t cublasDestroy(cublasHandle_t h);
cublasStatus_t cublasSetStream(cublasHandle_t h, cudaStream_t s);
const char *cublasGetStatusString(cublasStatus_t s);
cublasStatus_t cublasGemmEx(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                            const void *alpha, const void *A, cudaDataType at, int lda, const void *B, cudaDataType bt,
                            int ldb, const void *beta, void *C, cudaDataType ct, int ldc, cublasComputeType_t compute,
                            cublasGemmAlgo_t algo);

/* ---- NCCL (one process, one rank: the collectives are copies) ---- */

typedef struct emu_nccl *ncclComm_t;
typedef enum { ncclSuccess = 0, ncclInvalidArgument = 4 } ncclResult_t;
typedef enum { ncclFloat32 = 7, ncclFloat64 = 8 } ncclDataType_t;
typedef enum { ncclSum = 0 } ncclRedOp_t;
#define NCCL_UNIQUE_ID_BYTES 128
typedef struct {
    char internal[NCCL_UNIQUE_ID_BYTES];
} ncclUniqueId;
ncclResult_t ncclGetUniqueId(ncclUniqueId *id);
ncclResult_t ncclCommInitRank(ncclComm_t *c, int nranks, ncclUniqueId id, int rank);
ncclResult_t ncclCommDestroy(ncclComm_t c);
ncclResult_t ncclAllReduce(const void *send, void *recv, size_t count, ncclDataType_t t, ncclRedOp_t op, ncclComm_t c,
                           cudaStream_t s);
const char *ncclGetErrorString(ncclResult_t r);

#endif
