/* attn_bwd.cu: causal GQA attention backward, flash-style (FlashAttention-2's recomputation from
 * the saved log-sum-exp), in two kernels that each own their outputs, so the result has no atomics
 * and is the same on every run:
 *   dq kernel, one CTA per (64-query tile, query head, sequence): Drow_i = sum_e dout_ie out_ie
 *     (kept for the second kernel), then per 64-key tile P = exp(scale Q K^T - lse),
 *     dP = dO V^T, dS = P (dP - Drow) and dQ += dS K; dq = scale dQ.
 *   dk/dv kernel, one CTA per (64-key tile, kv head, sequence), over the group's query heads and
 *     the query tiles that see its keys: P^T, dP^T, dS^T as above (transposed: the warps own keys),
 *     dV += P^T dO, dK += dS^T Q; dk = scale dK.
 * P and dS are rounded to bf16 for the tensor cores; the accumulators are fp32. dq, dk, dv are
 * ASSIGNED in their head columns. Shared memory at D = 128: 4 tiles [64, 136] bf16 (Q, dO, K, V),
 * per warp two [16, 68] fp32 and two [16, 72] bf16 tiles: 121 KB (dk/dv), 112 KB (dq). */
#include "kernels/cuda/attn_common.cuh"

using namespace nvcuda;

typedef wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc_frag;
typedef wmma::fragment<wmma::matrix_a, 16, 16, 16, bf16_t, wmma::row_major> a_row;
typedef wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16_t, wmma::row_major> b_row;
typedef wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16_t, wmma::col_major> b_col;

/* C_w [16, 64] (fp32, ldc) = A_w [16, D] B^T, A_w rows of A (ld LDB), B [64, D] (ld LDB) */
template <int D> __device__ __forceinline__ void att_abt(float *cw, int ldc, const bf16_t *aw, const bf16_t *b) {
    constexpr int LDB = att_dims<D>::LDB;
    for (int nb = 0; nb < 4; nb++) {
        acc_frag acc;
        wmma::fill_fragment(acc, 0.0f);
        for (int kk = 0; kk < D / 16; kk++) {
            a_row fa;
            b_col fb;
            wmma::load_matrix_sync(fa, aw + kk * 16, LDB);
            wmma::load_matrix_sync(fb, b + nb * 16 * LDB + kk * 16, LDB);
            wmma::mma_sync(acc, fa, fb, acc);
        }
        wmma::store_matrix_sync(cw + nb * 16, acc, ldc, wmma::mem_row_major);
    }
}

/* acc[D/16] ([16, D]) += A_w [16, 64] (bf16, ATT_LDP) B [64, D] (bf16, LDB) */
template <int D> __device__ __forceinline__ void att_ab_acc(acc_frag *acc, const bf16_t *aw, const bf16_t *b) {
    constexpr int LDB = att_dims<D>::LDB;
    for (int kk = 0; kk < 4; kk++) {
        a_row fa;
        wmma::load_matrix_sync(fa, aw + kk * 16, ATT_LDP);
        for (int nb = 0; nb < D / 16; nb++) {
            b_row fb;
            wmma::load_matrix_sync(fb, b + kk * 16 * LDB + nb * 16, LDB);
            wmma::mma_sync(acc[nb], fa, fb, acc[nb]);
        }
    }
}

/* Writes the warp's [16, D] accumulators times `scale` to rows row0 + r (r < 16, valid(r)) of dst
 * [*, ld] at column col0, through the warp's fp32 staging tile stage [16, D+4]. */
template <int D, typename T, typename Valid>
__device__ __forceinline__ void att_store_acc(T *dst, size_t ld, size_t col0, int row0, const acc_frag *acc,
                                              float *stage, float scale, Valid valid) {
    constexpr int LDO = att_dims<D>::LDO;
    for (int nb = 0; nb < D / 16; nb++) wmma::store_matrix_sync(stage + nb * 16, acc[nb], LDO, wmma::mem_row_major);
    __syncwarp();
    const int lane = threadIdx.x & 31;
    for (int idx = lane; idx < 16 * D; idx += 32) {
        const int r = idx / D, e = idx % D;
        if (valid(r)) dst[(size_t)(row0 + r) * ld + col0 + e] = cu_to<T>(stage[r * LDO + e] * scale);
    }
    __syncwarp();
}

template <int D> static size_t bwd_smem_bytes() {
    const size_t ldb = att_dims<D>::LDB;
    return 4 * att_align(64 * ldb * 2) + 2 * att_align(4 * 16 * ATT_LDS * 4) + 2 * att_align(4 * 16 * ATT_LDP * 2) +
           2 * att_align(64 * 4);
}

/* The carving shared by both kernels: tiles X0..X3 [64, LDB] bf16; per warp F0, F1 [16, ATT_LDS]
 * fp32 and H0, H1 [16, ATT_LDP] bf16; two [64] fp32 vectors. The fp32 staging of the final stores
 * ([16, D+4] per warp) reuses X0 and X1 (free by then). */
struct bwd_smem {
    bf16_t *x[4];
    float *f0, *f1, *v0, *v1, *stage;
    bf16_t *h0, *h1;
};
template <int D> __device__ __forceinline__ bwd_smem bwd_carve(unsigned char *smem, int warp) {
    constexpr int LDB = att_dims<D>::LDB, LDO = att_dims<D>::LDO;
    const size_t tile = att_align(64 * LDB * 2), ft = att_align(4 * 16 * ATT_LDS * 4), ht = att_align(4 * 16 * ATT_LDP * 2);
    bwd_smem m;
    for (int t = 0; t < 4; t++) m.x[t] = (bf16_t *)(smem + t * tile);
    unsigned char *p = smem + 4 * tile;
    m.f0 = (float *)p + warp * 16 * ATT_LDS;
    m.f1 = (float *)(p + ft) + warp * 16 * ATT_LDS;
    m.h0 = (bf16_t *)(p + 2 * ft) + warp * 16 * ATT_LDP;
    m.h1 = (bf16_t *)(p + 2 * ft + ht) + warp * 16 * ATT_LDP;
    m.v0 = (float *)(p + 2 * ft + 2 * ht);
    m.v1 = (float *)(p + 2 * ft + 2 * ht + att_align(64 * 4));
    m.stage = (float *)smem + warp * 16 * LDO; /* 4 warps x 16 x (D+4) floats fit in X0 and X1 */
    return m;
}

template <int D, typename T>
__global__ void __launch_bounds__(ATT_THREADS) flash_bwd_dq_kernel(T *dq, float *drow, const T *dout, const T *out,
                                                                   const float *lse, const T *q, const T *k, const T *v,
                                                                   const attn_seq *seqs, attn_shape s, float scale) {
    constexpr int LDB = att_dims<D>::LDB;
    const attn_seq_dev sq = attn_load_seq(seqs, blockIdx.z);
    const int i0 = blockIdx.x * ATT_BR, h = blockIdx.y;
    if (i0 >= sq.nq) return;
    const int g = h / (s.n_heads / s.n_kv_heads), off = sq.nkv - sq.nq, warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int kv_end = off + (i0 + ATT_BR < sq.nq ? i0 + ATT_BR : sq.nq);
    CU_DYN_SMEM(unsigned char, smem);
    const bwd_smem m = bwd_carve<D>(smem, warp);
    bf16_t *Qs = m.x[0], *dOs = m.x[1], *Ks = m.x[2], *Vs = m.x[3];
    float *lse_s = m.v0, *dr_s = m.v1;

    auto qrow = [&](int r) { return (size_t)(sq.q0 + i0 + r) * s.ldq + (size_t)h * D; };
    auto orow = [&](int r) { return (size_t)(sq.q0 + i0 + r) * s.ldo + (size_t)h * D; };
    auto q_ok = [&](int r) { return i0 + r < sq.nq; };
    att_load_rows<D>(Qs, q, ATT_BR, qrow, q_ok);
    att_load_rows<D>(dOs, dout, ATT_BR, orow, q_ok);
    for (int rr = 0; rr < 16; rr++) { /* Drow of the warp's 16 rows, a warp sum each */
        const int r = warp * 16 + rr;
        float d = 0;
        if (q_ok(r))
            for (int e = lane; e < D; e += 32) d += cu_f(dout[orow(r) + e]) * cu_f(out[orow(r) + e]);
        d = warp_sum(d);
        if (lane == 0) {
            dr_s[r] = d;
            lse_s[r] = q_ok(r) ? lse[(size_t)(sq.q0 + i0 + r) * s.n_heads + h] : 0.0f;
            if (q_ok(r)) drow[(size_t)(sq.q0 + i0 + r) * s.n_heads + h] = d;
        }
    }

    acc_frag acc[D / 16];
    for (int nb = 0; nb < D / 16; nb++) wmma::fill_fragment(acc[nb], 0.0f);
    const int r = lane >> 1, side = lane & 1, i = i0 + warp * 16 + r, pos = off + i;
    for (int j0 = 0; j0 < kv_end; j0 += ATT_BC) {
        __syncthreads(); /* K, V of the previous tile are done with (and the first time: Q, dO, Drow, lse are in) */
        auto krow = [&](int rr) { return (size_t)(sq.k0 + j0 + rr) * s.ldk + (size_t)g * D; };
        auto vrow = [&](int rr) { return (size_t)(sq.k0 + j0 + rr) * s.ldv + (size_t)g * D; };
        auto k_ok = [&](int rr) { return j0 + rr < kv_end; };
        att_load_rows<D>(Ks, k, ATT_BC, krow, k_ok);
        att_load_rows<D>(Vs, v, ATT_BC, vrow, k_ok);
        __syncthreads();
        att_abt<D>(m.f0, ATT_LDS, Qs + warp * 16 * LDB, Ks);  /* S = Q K^T */
        att_abt<D>(m.f1, ATT_LDS, dOs + warp * 16 * LDB, Vs); /* dP = dO V^T */
        __syncwarp();
        const float l_r = lse_s[warp * 16 + r], d_r = dr_s[warp * 16 + r];
        for (int cc = 0; cc < 32; cc++) {
            const int col = side * 32 + cc, j = j0 + col;
            const bool ok = i < sq.nq && j <= pos;
            const float p = ok ? __expf(m.f0[r * ATT_LDS + col] * scale - l_r) : 0.0f;
            m.h0[r * ATT_LDP + col] = __float2bfloat16(p * (m.f1[r * ATT_LDS + col] - d_r));
        }
        __syncwarp();
        att_ab_acc<D>(acc, m.h0, Ks); /* dQ += dS K */
    }
    __syncthreads(); /* X0, X1 become the staging tiles */
    att_store_acc<D>(dq, s.ldq, (size_t)h * D, sq.q0 + i0 + warp * 16, acc, m.stage, scale,
                     [&](int rr) { return i0 + warp * 16 + rr < sq.nq; });
}

template <int D, typename T>
__global__ void __launch_bounds__(ATT_THREADS) flash_bwd_dkdv_kernel(T *dk, T *dv, const T *dout, const float *lse,
                                                                     const float *drow, const T *q, const T *k,
                                                                     const T *v, const attn_seq *seqs, attn_shape s,
                                                                     float scale) {
    constexpr int LDB = att_dims<D>::LDB;
    const attn_seq_dev sq = attn_load_seq(seqs, blockIdx.z);
    const int j0 = blockIdx.x * ATT_BC, g = blockIdx.y, rep = s.n_heads / s.n_kv_heads;
    if (j0 >= sq.nkv) return;
    const int off = sq.nkv - sq.nq, warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    CU_DYN_SMEM(unsigned char, smem);
    const bwd_smem m = bwd_carve<D>(smem, warp);
    bf16_t *Qs = m.x[0], *dOs = m.x[1], *Ks = m.x[2], *Vs = m.x[3];
    float *lse_s = m.v0, *dr_s = m.v1;

    auto k_ok = [&](int rr) { return j0 + rr < sq.nkv; };
    att_load_rows<D>(Ks, k, ATT_BC, [&](int rr) { return (size_t)(sq.k0 + j0 + rr) * s.ldk + (size_t)g * D; }, k_ok);
    att_load_rows<D>(Vs, v, ATT_BC, [&](int rr) { return (size_t)(sq.k0 + j0 + rr) * s.ldv + (size_t)g * D; }, k_ok);

    acc_frag dk_acc[D / 16], dv_acc[D / 16];
    for (int nb = 0; nb < D / 16; nb++) wmma::fill_fragment(dk_acc[nb], 0.0f), wmma::fill_fragment(dv_acc[nb], 0.0f);
    /* the first query that sees key j0 is j0 - off; tiles start at multiples of 64 */
    const int first = j0 - off > 0 ? j0 - off : 0, i_start = first / ATT_BR * ATT_BR;
    const int r = lane >> 1, side = lane & 1, j = j0 + warp * 16 + r;
    for (int hh = 0; hh < rep; hh++) {
        const int h = g * rep + hh;
        for (int i0 = i_start; i0 < sq.nq; i0 += ATT_BR) {
            __syncthreads(); /* the previous Q, dO are done with */
            auto q_ok = [&](int rr) { return i0 + rr < sq.nq; };
            att_load_rows<D>(Qs, q, ATT_BR, [&](int rr) { return (size_t)(sq.q0 + i0 + rr) * s.ldq + (size_t)h * D; }, q_ok);
            att_load_rows<D>(dOs, dout, ATT_BR, [&](int rr) { return (size_t)(sq.q0 + i0 + rr) * s.ldo + (size_t)h * D; },
                             q_ok);
            for (int rr = threadIdx.x; rr < ATT_BR; rr += blockDim.x) {
                const size_t at = (size_t)(sq.q0 + i0 + rr) * s.n_heads + h;
                lse_s[rr] = q_ok(rr) ? lse[at] : 0.0f;
                dr_s[rr] = q_ok(rr) ? drow[at] : 0.0f;
            }
            __syncthreads();
            att_abt<D>(m.f0, ATT_LDS, Ks + warp * 16 * LDB, Qs);  /* S^T = K Q^T */
            att_abt<D>(m.f1, ATT_LDS, Vs + warp * 16 * LDB, dOs); /* dP^T = V dO^T */
            __syncwarp();
            for (int cc = 0; cc < 32; cc++) {
                const int col = side * 32 + cc, i = i0 + col;
                const bool ok = i < sq.nq && j < sq.nkv && j <= off + i;
                const float p = ok ? __expf(m.f0[r * ATT_LDS + col] * scale - lse_s[col]) : 0.0f;
                m.h0[r * ATT_LDP + col] = __float2bfloat16(p);
                m.h1[r * ATT_LDP + col] = __float2bfloat16(p * (m.f1[r * ATT_LDS + col] - dr_s[col]));
            }
            __syncwarp();
            att_ab_acc<D>(dv_acc, m.h0, dOs); /* dV += P^T dO */
            att_ab_acc<D>(dk_acc, m.h1, Qs);  /* dK += dS^T Q */
        }
    }
    __syncthreads(); /* X0, X1 become the staging tiles */
    auto j_ok = [&](int rr) { return j0 + warp * 16 + rr < sq.nkv; };
    const int row0 = sq.k0 + j0 + warp * 16;
    att_store_acc<D>(dk, s.ldk, (size_t)g * D, row0, dk_acc, m.stage, scale, j_ok);
    att_store_acc<D>(dv, s.ldv, (size_t)g * D, row0, dv_acc, m.stage, 1.0f, j_ok);
}

template <int D, typename T>
static int bwd_launch(cu_ctx *c, T *dq, T *dk, T *dv, const T *dout, const T *out, const float *lse, const T *q,
                      const T *k, const T *v, const attn_shape &s, const cu_attn_batch *b) {
    const size_t smem = bwd_smem_bytes<D>();
    CU_OK(cudaFuncSetAttribute(flash_bwd_dq_kernel<D, T>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem),
          "raising the attention backward's shared memory");
    CU_OK(cudaFuncSetAttribute(flash_bwd_dkdv_kernel<D, T>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem),
          "raising the attention backward's shared memory");
    const size_t mark = c->scratch.used;
    float *drow = (float *)cu_scratch_take(c, sizeof(float) * (size_t)b->n_rows * s.n_heads, "attention backward");
    if (!drow) return -1;
    const float scale = 1.0f / sqrtf((float)D);
    CU_LAUNCH(dim3(cu_blocks(b->max_nq, ATT_BR), s.n_heads, b->n_seqs), ATT_THREADS, smem, c->stream,
              flash_bwd_dq_kernel<D, T>)(dq, drow, dout, out, lse, q, k, v, b->seqs, s, scale);
    CU_LAUNCH(dim3(cu_blocks(b->max_nkv, ATT_BC), s.n_kv_heads, b->n_seqs), ATT_THREADS, smem, c->stream,
              flash_bwd_dkdv_kernel<D, T>)(dk, dv, dout, lse, drow, q, k, v, b->seqs, s, scale);
    c->scratch.used = mark;
    CU_LAUNCHED("flash attention backward");
    return 0;
}

template <typename T>
static int bwd_by_dim(cu_ctx *c, T *dq, T *dk, T *dv, const T *dout, const T *out, const float *lse, const T *q,
                      const T *k, const T *v, const attn_shape &s, const cu_attn_batch *b) {
    switch (s.head_dim) {
    case 32: return bwd_launch<32>(c, dq, dk, dv, dout, out, lse, q, k, v, s, b);
    case 64: return bwd_launch<64>(c, dq, dk, dv, dout, out, lse, q, k, v, s, b);
    case 128: return bwd_launch<128>(c, dq, dk, dv, dout, out, lse, q, k, v, s, b);
    }
    return err_set(ERR_INTERNAL, "attention backward: head_dim %d slipped through the checks", s.head_dim);
}

int cu_attention_backward(cu_ctx *c, void *dq, void *dk, void *dv, const void *dout, const void *out, const float *lse,
                          const void *q, const void *k, const void *v, const attn_shape *s, const cu_attn_batch *b,
                          cu_dtype dt) {
    if (cu_attention_check(s, b->n_seqs, b->max_nq, b->max_nkv, dt)) return -1;
    if (b->n_seqs < 1 || b->max_nkv < 1) return 0;
    CU_DISPATCH(dt, T,
                return bwd_by_dim<T>(c, (T *)dq, (T *)dk, (T *)dv, (const T *)dout, (const T *)out, lse, (const T *)q,
                                     (const T *)k, (const T *)v, *s, b));
    return 0;
}
