/* ctx.cu: devices, the context (stream, cuBLAS handle, scratch), device memory, arenas and dtype
 * conversions of the CUDA backend (see cuda_ops.h). */
#include "kernels/cuda/cu_common.cuh"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

size_t cu_dtype_size(cu_dtype dt) { return dt == CU_F32 ? 4 : 2; }
const char *cu_dtype_name(cu_dtype dt) { return dt == CU_F32 ? "f32" : dt == CU_BF16 ? "bf16" : "f16"; }

int cu_fail(cudaError_t e, const char *what) {
    return err_set(ERR_IO, "CUDA: %s failed: %s", what, cudaGetErrorString(e));
}

int cu_is_emulated(void) {
#ifdef SMELT_CUDA_EMU
    return 1;
#else
    return 0;
#endif
}

int cu_device_count(void) {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
        (void)cudaGetLastError(); /* "no driver" / "no device" leave an error behind */
        return 0;
    }
    return n;
}

int cu_open(cu_ctx **out, int device, size_t scratch_bytes) {
    *out = NULL;
    const int n = cu_device_count();
    if (device < 0 || device >= n)
        return err_set(ERR_INPUT, "CUDA device %d does not exist (%d visible); check CUDA_VISIBLE_DEVICES and the driver "
                       "(nvidia-smi)", device, n);
    cu_ctx *c = (cu_ctx *)xcalloc(1, sizeof *c);
    if (!c) return -1;
    c->device = device;
    if (cudaSetDevice(device) != cudaSuccess || cudaGetDeviceProperties(&c->prop, device) != cudaSuccess) {
        free(c);
        return err_set(ERR_IO, "CUDA: cannot open device %d: %s", device, cudaGetErrorString(cudaGetLastError()));
    }
    if (c->prop.major < 8) {
        int major = c->prop.major, minor = c->prop.minor;
        free(c);
        return err_set(ERR_INPUT, "CUDA device %d has compute capability %d.%d; smelt's kernels need bf16 tensor cores "
                       "(8.0 or later) and are built for sm_90 (H100/H200)", device, major, minor);
    }
    cudaError_t e = cudaStreamCreateWithFlags(&c->stream, cudaStreamNonBlocking);
    if (e != cudaSuccess) {
        free(c);
        return cu_fail(e, "creating a stream");
    }
    cublasStatus_t bs = cublasCreate(&c->blas);
    if (bs == CUBLAS_STATUS_SUCCESS) bs = cublasSetStream(c->blas, c->stream);
    if (bs != CUBLAS_STATUS_SUCCESS) {
        cudaStreamDestroy(c->stream);
        free(c);
        return err_set(ERR_IO, "cuBLAS: cannot create a handle: %s", cublasGetStatusString(bs));
    }
    snprintf(c->desc, sizeof c->desc, "%s, %d SMs, sm_%d%d, %.1f GiB%s", c->prop.name, c->prop.multiProcessorCount,
             c->prop.major, c->prop.minor, c->prop.totalGlobalMem / 1073741824.0, cu_is_emulated() ? " (emulated)" : "");
    if (cu_arena_init(c, &c->scratch, scratch_bytes ? scratch_bytes : (size_t)64 << 20, "CUDA op scratch")) {
        cu_close(c);
        return -1;
    }
    *out = c;
    return 0;
}

void cu_close(cu_ctx *c) {
    if (!c) return;
    cudaStreamSynchronize(c->stream);
    cu_arena_free(c, &c->scratch);
    if (c->blas) cublasDestroy(c->blas);
    if (c->stream) cudaStreamDestroy(c->stream);
    free(c);
}

const char *cu_describe(const cu_ctx *c) { return c->desc; }
int cu_sm_count(const cu_ctx *c) { return c->prop.multiProcessorCount; }

int cu_sync(cu_ctx *c) {
    CU_OK(cudaStreamSynchronize(c->stream), "a kernel (reported at synchronization)");
    CU_OK(cudaGetLastError(), "a kernel (reported at synchronization)");
    return 0;
}

int cu_alloc(cu_ctx *c, void **p, size_t bytes, const char *what) {
    (void)c;
    *p = NULL;
    cudaError_t e = cudaMalloc(p, bytes ? bytes : 1);
    if (e != cudaSuccess) {
        (void)cudaGetLastError();
        *p = NULL;
        return err_set(ERR_NOMEM, "cannot allocate %.1f MiB of GPU memory for %s (%s); use smaller batches or a larger GPU",
                       bytes / 1048576.0, what, cudaGetErrorString(e));
    }
    return 0;
}

void cu_free(cu_ctx *c, void *p) {
    (void)c;
    if (p) cudaFree(p);
}

int cu_upload(cu_ctx *c, void *dst, const void *src, size_t bytes) {
    if (!bytes) return 0;
    CU_OK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, c->stream), "copying to the GPU");
    return 0;
}

int cu_download(cu_ctx *c, void *dst, const void *src, size_t bytes) {
    if (bytes) CU_OK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, c->stream), "copying from the GPU");
    return cu_sync(c);
}

int cu_copy(cu_ctx *c, void *dst, const void *src, size_t bytes) {
    if (!bytes || dst == src) return 0;
    CU_OK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, c->stream), "a device copy");
    return 0;
}

int cu_copy_2d(cu_ctx *c, void *dst, size_t dpitch, const void *src, size_t spitch, size_t width, size_t rows) {
    if (!width || !rows) return 0;
    CU_OK(cudaMemcpy2DAsync(dst, dpitch, src, spitch, width, rows, cudaMemcpyDeviceToDevice, c->stream),
          "a strided device copy");
    return 0;
}

int cu_zero(cu_ctx *c, void *p, size_t bytes) {
    if (!bytes) return 0;
    CU_OK(cudaMemsetAsync(p, 0, bytes, c->stream), "clearing device memory");
    return 0;
}

int cu_arena_init(cu_ctx *c, cu_arena *a, size_t bytes, const char *what) {
    memset(a, 0, sizeof *a);
    a->what = what;
    if (cu_alloc(c, (void **)&a->base, bytes, what)) return -1;
    a->cap = bytes;
    return 0;
}

void cu_arena_free(cu_ctx *c, cu_arena *a) {
    cu_free(c, a->base);
    memset(a, 0, sizeof *a);
}

void *cu_arena_take(cu_arena *a, size_t bytes) {
    const size_t at = (a->used + 255) & ~(size_t)255;
    if (at > a->cap || bytes > a->cap - at) {
        err_set(ERR_NOMEM, "%s: %.1f MiB asked with %.1f of %.1f MiB in use; allocate it larger",
                a->what ? a->what : "GPU arena", bytes / 1048576.0, a->used / 1048576.0, a->cap / 1048576.0);
        return NULL;
    }
    a->used = at + bytes;
    if (a->used > a->peak) a->peak = a->used;
    return a->base + at;
}

void *cu_scratch_take(cu_ctx *c, size_t bytes, const char *what) {
    void *p = cu_arena_take(&c->scratch, bytes);
    if (!p) err_prefix("%s: ", what);
    return p;
}

/* ---- conversions ---- */

template <typename D, typename S> __global__ void convert_kernel(D *dst, const S *src, size_t n) {
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        dst[i] = cu_to<D>(cu_f(src[i]));
}

int cu_convert(cu_ctx *c, void *dst, cu_dtype dd, const void *src, cu_dtype sd, size_t n) {
    if (!n) return 0;
    if (dd == sd) return cu_copy(c, dst, src, n * cu_dtype_size(dd));
    const unsigned grid = cu_blocks(n, 256) < 4096 ? cu_blocks(n, 256) : 4096;
    CU_DISPATCH(dd, D, CU_DISPATCH(sd, S, CU_LAUNCH(grid, 256, 0, c->stream, convert_kernel<D, S>)((D *)dst, (const S *)src, n)));
    CU_LAUNCHED("dtype conversion");
    return 0;
}
