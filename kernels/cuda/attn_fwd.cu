/* attn_fwd.cu: causal GQA attention forward as a fused flash-style kernel (prefill and training),
 * over contiguous packed sequences or a paged KV cache; the entry points cu_attention_forward and
 * cu_attention_paged (decode batches go to attn_decode.cu).
 *
 * One CTA per (64-query tile, query head, sequence). Per 64-key tile up to the tile's causal
 * horizon: S = Q K^T (WMMA, bf16 x bf16 -> fp32), then per row the online softmax (running max m,
 * running sum l; the accumulated O rescaled by exp(m_old - m_new)), P rounded to bf16, O += P V.
 * At the end out = O / l and lse = m + log l (the natural log-sum-exp of the scaled scores, which
 * the backward recomputes the probabilities from). Query i of a sequence sits at position
 * nkv - nq + i and sees keys 0 .. nkv - nq + i. Scores are scaled by 1/sqrt(head_dim) in fp32.
 * Shared memory (D = head_dim): Q, K, V tiles [64, D+8] bf16; per warp S [16, 68] fp32,
 * P [16, 72] bf16 and O [16, D+4] fp32: 110 KB at D = 128. */
#include "kernels/cuda/attn_common.cuh"

using namespace nvcuda;

int cu_attention_supports(int head_dim) { return head_dim == 32 || head_dim == 64 || head_dim == 128; }

template <int D> static size_t fwd_smem_bytes() {
    const size_t ldb = att_dims<D>::LDB, ldo = att_dims<D>::LDO;
    return att_align(ATT_BR * ldb * 2) + 2 * att_align(ATT_BC * ldb * 2) + att_align(4 * 16 * ATT_LDS * 4) +
           att_align(4 * 16 * ATT_LDP * 2) + att_align(4 * 16 * ldo * 4);
}

template <int D, typename T, bool PAGED, typename SEQ>
__global__ void __launch_bounds__(ATT_THREADS) flash_fwd_kernel(T *out, float *lse, const T *q, attn_kv_src src,
                                                                const SEQ *seqs, attn_shape s, float scale) {
    constexpr int LDB = att_dims<D>::LDB, LDO = att_dims<D>::LDO;
    const attn_seq_dev sq = attn_load_seq(seqs, blockIdx.z);
    const int i0 = blockIdx.x * ATT_BR, h = blockIdx.y;
    if (i0 >= sq.nq) return; /* the whole CTA leaves together */
    const int g = h / (s.n_heads / s.n_kv_heads), off = sq.nkv - sq.nq;
    const int kv_end = off + (i0 + ATT_BR < sq.nq ? i0 + ATT_BR : sq.nq); /* keys the tile's last query sees */
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;

    CU_DYN_SMEM(unsigned char, smem);
    const size_t o_k = att_align(ATT_BR * LDB * 2), o_v = o_k + att_align(ATT_BC * LDB * 2),
                 o_s = o_v + att_align(ATT_BC * LDB * 2), o_p = o_s + att_align(4 * 16 * ATT_LDS * 4),
                 o_o = o_p + att_align(4 * 16 * ATT_LDP * 2);
    bf16_t *Qs = (bf16_t *)smem, *Ks = (bf16_t *)(smem + o_k), *Vs = (bf16_t *)(smem + o_v);
    float *Sw = (float *)(smem + o_s) + warp * 16 * ATT_LDS; /* this warp's rows */
    bf16_t *Pw = (bf16_t *)(smem + o_p) + warp * 16 * ATT_LDP;
    float *Ow = (float *)(smem + o_o) + warp * 16 * LDO;

    const T *qh = q + (size_t)h * D, *kh = (const T *)src.k + (size_t)g * D, *vh = (const T *)src.v + (size_t)g * D;
    att_load_rows<D>(Qs, qh, ATT_BR, [&](int r) { return (size_t)(sq.q0 + i0 + r) * s.ldq; },
                     [&](int r) { return i0 + r < sq.nq; });
    for (int idx = lane; idx < 16 * D; idx += 32) Ow[(idx / D) * LDO + idx % D] = 0;

    /* lane pair (2r, 2r+1) owns row r of the warp's 16: columns (lane & 1) * 32 .. +32 of a tile */
    const int r = lane >> 1, side = lane & 1, i = i0 + warp * 16 + r, pos = off + i;
    const bool row_ok = i < sq.nq;
    float m_i = -INFINITY, l_i = 0;

    for (int j0 = 0; j0 < kv_end; j0 += ATT_BC) {
        __syncthreads(); /* every warp is done with the previous K and V */
        att_load_rows<D>(Ks, kh, ATT_BC, [&](int rr) { return attn_key_row<PAGED>(src, sq, j0 + rr) * src.ldk; },
                         [&](int rr) { return j0 + rr < kv_end; });
        att_load_rows<D>(Vs, vh, ATT_BC, [&](int rr) { return attn_key_row<PAGED>(src, sq, j0 + rr) * src.ldv; },
                         [&](int rr) { return j0 + rr < kv_end; });
        __syncthreads();

        /* S [16, 64] = Q_w [16, D] K^T */
        for (int nb = 0; nb < ATT_BC / 16; nb++) {
            wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
            wmma::fill_fragment(acc, 0.0f);
            for (int kk = 0; kk < D / 16; kk++) {
                wmma::fragment<wmma::matrix_a, 16, 16, 16, bf16_t, wmma::row_major> a;
                wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16_t, wmma::col_major> b;
                wmma::load_matrix_sync(a, Qs + warp * 16 * LDB + kk * 16, LDB);
                wmma::load_matrix_sync(b, Ks + nb * 16 * LDB + kk * 16, LDB);
                wmma::mma_sync(acc, a, b, acc);
            }
            wmma::store_matrix_sync(Sw + nb * 16, acc, ATT_LDS, wmma::mem_row_major);
        }
        __syncwarp();

        /* online softmax of row r over this tile's 64 keys */
        float sv[32], tmax = -INFINITY;
#pragma unroll
        for (int cc = 0; cc < 32; cc++) {
            const int col = side * 32 + cc, j = j0 + col;
            const float x = Sw[r * ATT_LDS + col] * scale;
            sv[cc] = row_ok && j <= pos ? x : -INFINITY;
            tmax = fmaxf(tmax, sv[cc]);
        }
        tmax = fmaxf(tmax, __shfl_xor_sync(0xffffffffu, tmax, 1));
        const float m_new = fmaxf(m_i, tmax), m_use = m_new == -INFINITY ? 0.0f : m_new;
        const float alpha = __expf(m_i - m_use);
        float psum = 0;
#pragma unroll
        for (int cc = 0; cc < 32; cc++) {
            const float p = __expf(sv[cc] - m_use);
            Pw[r * ATT_LDP + side * 32 + cc] = __float2bfloat16(p);
            psum += p;
        }
        psum += __shfl_xor_sync(0xffffffffu, psum, 1);
        l_i = l_i * alpha + psum;
        m_i = m_new;
        for (int e = side * (D / 2); e < (side + 1) * (D / 2); e++) Ow[r * LDO + e] *= alpha;
        __syncwarp();

        /* O_w [16, D] += P_w [16, 64] V [64, D] */
        for (int nb = 0; nb < D / 16; nb++) {
            wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
            wmma::load_matrix_sync(acc, Ow + nb * 16, LDO, wmma::mem_row_major);
            for (int kk = 0; kk < ATT_BC / 16; kk++) {
                wmma::fragment<wmma::matrix_a, 16, 16, 16, bf16_t, wmma::row_major> a;
                wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16_t, wmma::row_major> b;
                wmma::load_matrix_sync(a, Pw + kk * 16, ATT_LDP);
                wmma::load_matrix_sync(b, Vs + kk * 16 * LDB + nb * 16, LDB);
                wmma::mma_sync(acc, a, b, acc);
            }
            wmma::store_matrix_sync(Ow + nb * 16, acc, LDO, wmma::mem_row_major);
        }
        __syncwarp();
    }
    if (!row_ok) return;
    const float inv = 1.0f / l_i; /* l_i >= exp(0): the row's maximum contributes 1 */
    T *orow = out + (size_t)(sq.q0 + i) * s.ldo + (size_t)h * D;
    for (int e = side * (D / 2); e < (side + 1) * (D / 2); e++) orow[e] = cu_to<T>(Ow[r * LDO + e] * inv);
    if (lse && side == 0) lse[(size_t)(sq.q0 + i) * s.n_heads + h] = m_i + logf(l_i);
}

template <int D, typename T, bool PAGED, typename SEQ>
static int flash_fwd_launch(cu_ctx *c, T *out, float *lse, const T *q, const attn_kv_src &src, const SEQ *seqs,
                            int n_seqs, int max_nq, const attn_shape &s) {
    const size_t smem = fwd_smem_bytes<D>();
    CU_OK(cudaFuncSetAttribute(flash_fwd_kernel<D, T, PAGED, SEQ>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem),
          "raising the attention kernel's shared memory");
    const dim3 grid(cu_blocks(max_nq, ATT_BR), s.n_heads, n_seqs);
    CU_LAUNCH(grid, ATT_THREADS, smem, c->stream, flash_fwd_kernel<D, T, PAGED, SEQ>)(out, lse, q, src, seqs, s,
                                                                                     1.0f / sqrtf((float)D));
    CU_LAUNCHED("flash attention forward");
    return 0;
}

int cu_attention_check(const attn_shape *s, int n_seqs, int max_nq, int max_nkv, cu_dtype dt) {
    if (!cu_attention_supports(s->head_dim))
        return err_set(ERR_INPUT, "head_dim %d: the CUDA attention kernels are built for head_dim 32, 64 and 128; run "
                       "this model on the CPU (device: cpu)", s->head_dim);
    if (s->n_kv_heads < 1 || s->n_heads % s->n_kv_heads)
        return err_set(ERR_INPUT, "attention: %d query heads do not split into groups of %d kv heads", s->n_heads,
                       s->n_kv_heads);
    if (s->n_heads > 65535 || n_seqs > 65535)
        return err_set(ERR_INPUT, "attention: %d heads and %d sequences in one call; at most 65535 of each", s->n_heads,
                       n_seqs);
    if (max_nq > max_nkv || max_nq < 0)
        return err_set(ERR_INTERNAL, "attention: max_nq %d > max_nkv %d", max_nq, max_nkv);
    if (dt != CU_F32 && dt != CU_BF16 && dt != CU_F16) return err_set(ERR_INPUT, "attention: unknown dtype %d", (int)dt);
    return 0;
}

template <bool PAGED, typename SEQ, typename T>
static int fwd_by_dim(cu_ctx *c, T *out, float *lse, const T *q, const attn_kv_src &src, const SEQ *seqs, int n_seqs,
                      int max_nq, const attn_shape &s) {
    switch (s.head_dim) {
    case 32: return flash_fwd_launch<32, T, PAGED>(c, out, lse, q, src, seqs, n_seqs, max_nq, s);
    case 64: return flash_fwd_launch<64, T, PAGED>(c, out, lse, q, src, seqs, n_seqs, max_nq, s);
    case 128: return flash_fwd_launch<128, T, PAGED>(c, out, lse, q, src, seqs, n_seqs, max_nq, s);
    }
    return err_set(ERR_INTERNAL, "attention: head_dim %d slipped through the checks", s.head_dim);
}

template <bool PAGED, typename SEQ>
static int fwd_dispatch(cu_ctx *c, void *out, float *lse, const void *q, const attn_kv_src &src, const SEQ *seqs,
                        int n_seqs, int max_nq, const attn_shape &s, cu_dtype dt) {
    CU_DISPATCH(dt, T, return fwd_by_dim<PAGED, SEQ, T>(c, (T *)out, lse, (const T *)q, src, seqs, n_seqs, max_nq, s));
    return 0;
}

int cu_attention_forward(cu_ctx *c, void *out, float *lse, const void *q, const void *k, const void *v,
                         const attn_shape *s, const cu_attn_batch *b, cu_dtype dt) {
    if (cu_attention_check(s, b->n_seqs, b->max_nq, b->max_nkv, dt)) return -1;
    if (b->n_seqs < 1 || b->max_nq < 1) return 0;
    const attn_kv_src src = {k, v, s->ldk, s->ldv, NULL, 1};
    if (b->max_nq <= CU_DECODE_MAX_NQ)
        return cu_attention_decode(c, out, lse, q, src, b->seqs, NULL, b->n_seqs, b->max_nq, b->max_nkv, *s, dt);
    return fwd_dispatch<false>(c, out, lse, q, src, b->seqs, b->n_seqs, b->max_nq, *s, dt);
}

int cu_attention_paged(cu_ctx *c, void *out, const void *q, const cu_paged_kv *kv, const attn_shape *s,
                       const cu_paged_batch *b, cu_dtype dt) {
    if (cu_attention_check(s, b->n_seqs, b->max_nq, b->max_nkv, dt)) return -1;
    if (kv->block_size < 1 || kv->ldkv < s->n_kv_heads * s->head_dim)
        return err_set(ERR_INPUT, "paged attention: block size %d and row width %d (the kv heads need %d)",
                       kv->block_size, kv->ldkv, s->n_kv_heads * s->head_dim);
    if (b->n_seqs < 1 || b->max_nq < 1) return 0;
    const attn_kv_src src = {kv->k, kv->v, kv->ldkv, kv->ldkv, b->blocks, kv->block_size};
    if (b->max_nq <= CU_DECODE_MAX_NQ)
        return cu_attention_decode(c, out, NULL, q, src, NULL, b->seqs, b->n_seqs, b->max_nq, b->max_nkv, *s, dt);
    return fwd_dispatch<true>(c, out, NULL, q, src, b->seqs, b->n_seqs, b->max_nq, *s, dt);
}
