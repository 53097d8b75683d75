/* attn_common.cuh: what the attention kernels share: tile sizes, the sequence descriptor as the
 * kernels read it (contiguous batches and paged caches alike), where key j of a sequence lives,
 * and the copy of a tile of rows into shared memory as bf16 (the tensor cores' operand type).
 *
 * A CTA of the flash kernels is 4 warps; each warp owns 16 rows of the CTA's 64-row tile and runs
 * its products as WMMA 16x16x16 bf16 tiles with fp32 accumulators. Shared-memory rows are padded
 * (bf16 rows by 8, fp32 rows by 4 elements): WMMA needs 32-byte aligned tiles and leading
 * dimensions that are multiples of 16 bytes, and the padding spreads rows over the banks. */
#ifndef SMELT_KERNELS_CUDA_ATTN_COMMON_CUH
#define SMELT_KERNELS_CUDA_ATTN_COMMON_CUH

#include "kernels/cuda/cu_common.cuh"

#define ATT_BR 64      /* query rows per CTA tile */
#define ATT_BC 64      /* keys per tile */
#define ATT_THREADS 128 /* 4 warps x 16 rows */
#define ATT_LDS (ATT_BC + 4) /* fp32 score rows */
#define ATT_LDP (ATT_BC + 8) /* bf16 probability rows */

typedef __nv_bfloat16 bf16_t;

/* Where a sequence's keys are: contiguous rows k0 + j of k and v, or, paged, row
 * blocks[blocks_off + j / block_size] * block_size + j % block_size of the pools. */
struct attn_kv_src {
    const void *k, *v;
    int ldk, ldv;
    const int *blocks; /* NULL: contiguous */
    int block_size;
};

struct attn_seq_dev {
    int q0, nq, k0, nkv, blocks_off;
};
__device__ __forceinline__ attn_seq_dev attn_load_seq(const attn_seq *s, int i) {
    attn_seq_dev d = {s[i].q0, s[i].nq, s[i].k0, s[i].nkv, 0};
    return d;
}
__device__ __forceinline__ attn_seq_dev attn_load_seq(const cu_paged_seq *s, int i) {
    attn_seq_dev d = {s[i].q0, s[i].nq, 0, s[i].nkv, s[i].blocks_off};
    return d;
}
template <bool PAGED> __device__ __forceinline__ size_t attn_key_row(const attn_kv_src &src, const attn_seq_dev &sq, int j) {
    if (PAGED) {
        const int b = src.blocks[sq.blocks_off + j / src.block_size];
        return (size_t)b * src.block_size + j % src.block_size;
    }
    return (size_t)sq.k0 + j;
}

/* bf16 row stride in shared memory for head dimension D */
template <int D> struct att_dims {
    static constexpr int LDB = D + 8;  /* bf16 rows of Q, K, V, dO */
    static constexpr int LDO = D + 4;  /* fp32 rows of an output accumulator */
};

/* 128-byte aligned carving of the dynamic shared memory */
__host__ __device__ __forceinline__ size_t att_align(size_t b) { return (b + 127) & ~(size_t)127; }

/* dst [rows, LDB] bf16 <- `rows` rows of D values: row r from src + row_off(r) (T elements), zero
 * where valid(r) is false. All threads of the CTA take part; call between barriers. */
template <int D, typename T, typename RowOff, typename Valid>
__device__ __forceinline__ void att_load_rows(bf16_t *dst, const T *src, int rows, RowOff row_off, Valid valid) {
    for (int idx = threadIdx.x; idx < rows * D; idx += blockDim.x) {
        const int r = idx / D, e = idx % D;
        dst[r * att_dims<D>::LDB + e] = __float2bfloat16(valid(r) ? cu_f(src[row_off(r) + e]) : 0.0f);
    }
}

/* Checks shared by the attention entry points: supported head_dim, GQA grouping, grid limits. */
int cu_attention_check(const attn_shape *s, int n_seqs, int max_nq, int max_nkv, cu_dtype dt);
/* The split-key decode path (attn_decode.cu) for batches of at most CU_DECODE_MAX_NQ queries per
 * sequence: seqs (contiguous) or pseqs (paged, with src.blocks) in device memory. */
int cu_attention_decode(cu_ctx *c, void *out, float *lse, const void *q, const attn_kv_src &src, const attn_seq *seqs,
                        const cu_paged_seq *pseqs, int n_seqs, int max_nq, int max_nkv, const attn_shape &s, cu_dtype dt);

#endif
