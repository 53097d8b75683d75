/* gemm.cu: the row-major GEMM of the CUDA backend over cuBLAS (cublasGemmEx, fp32 accumulation),
 * and the bias gradient (column sums). cuBLAS is column-major: a row-major C [m, n] is the
 * column-major C^T [n, m] = op(B)^T op(A)^T, so A and B swap places and keep their trans flags. */
#include "kernels/cuda/cu_common.cuh"

static cudaDataType blas_type(cu_dtype dt) {
    return dt == CU_F32 ? CUDA_R_32F : dt == CU_BF16 ? CUDA_R_16BF : CUDA_R_16F;
}

int cu_gemm(cu_ctx *c, void *C, cu_dtype ct, int ldc, const void *A, int lda, int trans_a, const void *B, int ldb,
            int trans_b, cu_dtype ab, int m, int n, int k, float alpha, float beta) {
    if (m < 0 || n < 0 || k < 0 || lda < (trans_a ? m : k) || ldb < (trans_b ? k : n) || ldc < n)
        return err_set(ERR_INTERNAL, "cu_gemm: m=%d n=%d k=%d with lda=%d ldb=%d ldc=%d (trans %d %d) do not fit", m, n,
                       k, lda, ldb, ldc, trans_a, trans_b);
    if (ct != CU_F32 && ct != ab)
        return err_set(ERR_INTERNAL, "cu_gemm: C must be fp32 or of the operands' dtype (%s), not %s",
                       cu_dtype_name(ab), cu_dtype_name(ct));
    if (!m || !n) return 0;
    /* column-major leading dimensions must be >= 1 even for empty operands */
    const int la = lda > 0 ? lda : 1, lb = ldb > 0 ? ldb : 1;
    cublasStatus_t st = cublasGemmEx(c->blas, trans_b ? CUBLAS_OP_T : CUBLAS_OP_N, trans_a ? CUBLAS_OP_T : CUBLAS_OP_N,
                                     n, m, k, &alpha, B, blas_type(ab), lb, A, blas_type(ab), la, &beta, C,
                                     blas_type(ct), ldc, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
    if (st != CUBLAS_STATUS_SUCCESS)
        return err_set(ERR_IO, "cuBLAS GEMM (%s x %s -> %s, m=%d n=%d k=%d) failed: %s", cu_dtype_name(ab),
                       cu_dtype_name(ab), cu_dtype_name(ct), m, n, k, cublasGetStatusString(st));
    return 0;
}

/* db [m] += column sums of dy [n, ldy]; one thread per column walks the rows in order. */
template <typename T> __global__ void bias_grad_kernel(float *db, const T *dy, int ldy, int n, int m) {
    const int j = blockIdx.x * blockDim.x + threadIdx.x;
    if (j >= m) return;
    float s = 0;
    for (int i = 0; i < n; i++) s += cu_f(dy[(size_t)i * ldy + j]);
    db[j] += s;
}

int cu_bias_grad(cu_ctx *c, float *db, const void *dy, int ldy, int n, int m, cu_dtype dt) {
    if (m <= 0 || n <= 0) return 0;
    CU_DISPATCH(dt, T, CU_LAUNCH(cu_blocks(m, 128), 128, 0, c->stream, bias_grad_kernel<T>)(db, (const T *)dy, ldy, n, m));
    CU_LAUNCHED("bias gradient");
    return 0;
}

/* out [n, ldo] += b [m] on every row */
template <typename T> __global__ void add_bias_kernel(T *out, int ldo, const float *b, int n, int m) {
    const size_t idx = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= (size_t)n * m) return;
    const size_t i = idx / m, j = idx % m;
    out[i * ldo + j] = cu_to<T>(cu_f(out[i * ldo + j]) + b[j]);
}

int cu_add_bias(cu_ctx *c, void *out, int ldo, const float *b, int n, int m, cu_dtype dt) {
    const size_t total = (size_t)n * m;
    if (!total) return 0;
    CU_DISPATCH(dt, T, CU_LAUNCH(cu_blocks(total, 256), 256, 0, c->stream, add_bias_kernel<T>)((T *)out, ldo, b, n, m));
    CU_LAUNCHED("bias");
    return 0;
}
