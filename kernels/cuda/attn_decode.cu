/* attn_decode.cu: attention for decode steps (at most CU_DECODE_MAX_NQ queries per sequence) over a
 * contiguous cache or a paged one, split over the keys (flash-decoding): few queries give too few
 * CTAs to fill the GPU, so each (split, query head, sequence) CTA takes one chunk of the keys and
 * leaves a partial (max m, sum l, unnormalized output o); a second kernel combines the splits:
 *   M = max_s m_s,  L = sum_s l_s e^(m_s - M),  out = sum_s o_s e^(m_s - M) / L,  lse = M + log L.
 * fp32 throughout (memory-bound: one pass over the cached keys and values). In a CTA the 4 warps
 * take keys in turn, one key per warp step: lanes hold head_dim/32 elements of the query, the dot
 * product is a warp sum, and each warp keeps its own running (m, l, o), merged at the end. */
#include "kernels/cuda/attn_common.cuh"

#define DEC_THREADS 128
#define DEC_WARPS 4

/* part record of (split, seq, query, head): [m, l, o[D]] */
template <int D> __host__ __device__ __forceinline__ size_t dec_rec(int split, int seq, int qi, int h, int n_seqs, int max_nq,
                                                                   int n_heads) {
    return ((((size_t)split * n_seqs + seq) * max_nq + qi) * n_heads + h) * (D + 2);
}

template <int D, typename T, bool PAGED, typename SEQ>
__global__ void __launch_bounds__(DEC_THREADS) decode_part_kernel(float *part, const T *q, attn_kv_src src,
                                                                  const SEQ *seqs, attn_shape s, float scale, int chunk,
                                                                  int n_seqs, int max_nq) {
    constexpr int E = D / 32; /* query elements per lane: lane + 32 e */
    __shared__ float wm[DEC_WARPS], wl[DEC_WARPS], wo[DEC_WARPS][D];
    const attn_seq_dev sq = attn_load_seq(seqs, blockIdx.z);
    const int split = blockIdx.x, h = blockIdx.y, g = h / (s.n_heads / s.n_kv_heads);
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, off = sq.nkv - sq.nq;
    const T *kh = (const T *)src.k + (size_t)g * D, *vh = (const T *)src.v + (size_t)g * D;
    for (int qi = 0; qi < sq.nq; qi++) {
        const int j_begin = split * chunk, horizon = off + qi + 1, j_end = j_begin + chunk < horizon ? j_begin + chunk : horizon;
        const T *qrow = q + (size_t)(sq.q0 + qi) * s.ldq + (size_t)h * D;
        float qv[E], acc[E];
#pragma unroll
        for (int e = 0; e < E; e++) qv[e] = cu_f(qrow[lane + 32 * e]), acc[e] = 0;
        float m = -INFINITY, l = 0;
        for (int j = j_begin + warp; j < j_end; j += DEC_WARPS) {
            const size_t row = attn_key_row<PAGED>(src, sq, j);
            const T *kr = kh + row * src.ldk, *vr = vh + row * src.ldv;
            float d = 0;
#pragma unroll
            for (int e = 0; e < E; e++) d += qv[e] * cu_f(kr[lane + 32 * e]);
            d = warp_sum(d) * scale;
            const float m_new = fmaxf(m, d), a = expf(m - m_new), p = expf(d - m_new);
            l = l * a + p;
#pragma unroll
            for (int e = 0; e < E; e++) acc[e] = acc[e] * a + p * cu_f(vr[lane + 32 * e]);
            m = m_new;
        }
        if (lane == 0) wm[warp] = m, wl[warp] = l;
#pragma unroll
        for (int e = 0; e < E; e++) wo[warp][lane + 32 * e] = acc[e];
        __syncthreads();
        float M = wm[0];
        for (int w = 1; w < DEC_WARPS; w++) M = fmaxf(M, wm[w]);
        const float Mu = M == -INFINITY ? 0.0f : M; /* an empty chunk: every weight below is 0 */
        float *rec = part + dec_rec<D>(split, blockIdx.z, qi, h, n_seqs, max_nq, s.n_heads);
        for (int e = threadIdx.x; e < D; e += blockDim.x) {
            float o = 0;
            for (int w = 0; w < DEC_WARPS; w++) o += wo[w][e] * expf(wm[w] - Mu);
            rec[2 + e] = o;
        }
        if (threadIdx.x == 0) {
            float L = 0;
            for (int w = 0; w < DEC_WARPS; w++) L += wl[w] * expf(wm[w] - Mu);
            rec[0] = M, rec[1] = L;
        }
        __syncthreads(); /* wm, wl, wo are reused by the next query */
    }
}

template <int D, typename T, typename SEQ>
__global__ void decode_combine_kernel(T *out, float *lse, const float *part, const SEQ *seqs, attn_shape s, int n_split,
                                      int n_seqs, int max_nq) {
    const attn_seq_dev sq = attn_load_seq(seqs, blockIdx.z);
    const int h = blockIdx.x, qi = blockIdx.y;
    if (qi >= sq.nq) return;
    float M = -INFINITY;
    for (int sp = 0; sp < n_split; sp++) M = fmaxf(M, part[dec_rec<D>(sp, blockIdx.z, qi, h, n_seqs, max_nq, s.n_heads)]);
    float L = 0;
    for (int sp = 0; sp < n_split; sp++) {
        const float *rec = part + dec_rec<D>(sp, blockIdx.z, qi, h, n_seqs, max_nq, s.n_heads);
        L += rec[1] * expf(rec[0] - M); /* split 0 holds key 0: M is finite */
    }
    const size_t row = (size_t)(sq.q0 + qi);
    for (int e = threadIdx.x; e < D; e += blockDim.x) {
        float o = 0;
        for (int sp = 0; sp < n_split; sp++) {
            const float *rec = part + dec_rec<D>(sp, blockIdx.z, qi, h, n_seqs, max_nq, s.n_heads);
            o += rec[2 + e] * expf(rec[0] - M);
        }
        out[row * s.ldo + (size_t)h * D + e] = cu_to<T>(o / L);
    }
    if (lse && threadIdx.x == 0) lse[row * s.n_heads + h] = M + logf(L);
}

template <int D, typename T, bool PAGED, typename SEQ>
static int decode_launch(cu_ctx *c, T *out, float *lse, const T *q, const attn_kv_src &src, const SEQ *seqs, int n_seqs,
                         int max_nq, int max_nkv, const attn_shape &s) {
    /* about two CTAs per SM: splits of at least 64 keys */
    const long ctas = (long)s.n_heads * n_seqs, want = 2L * cu_sm_count(c);
    long splits = (want + ctas - 1) / ctas;
    long chunk = (max_nkv + splits - 1) / splits;
    chunk = (chunk + 63) / 64 * 64;
    splits = (max_nkv + chunk - 1) / chunk;
    if (splits > 65535) return err_set(ERR_INPUT, "decode attention: %d keys are too many for one call", max_nkv);
    const size_t mark = c->scratch.used;
    float *part = (float *)cu_scratch_take(c, sizeof(float) * dec_rec<D>((int)splits, 0, 0, 0, n_seqs, max_nq, s.n_heads),
                                           "decode attention");
    if (!part) return -1;
    const float scale = 1.0f / sqrtf((float)D);
    CU_LAUNCH(dim3((unsigned)splits, s.n_heads, n_seqs), DEC_THREADS, 0, c->stream, decode_part_kernel<D, T, PAGED, SEQ>)(
        part, q, src, seqs, s, scale, (int)chunk, n_seqs, max_nq);
    CU_LAUNCH(dim3(s.n_heads, max_nq, n_seqs), D, 0, c->stream, decode_combine_kernel<D, T, SEQ>)(out, lse, part, seqs, s,
                                                                                                  (int)splits, n_seqs, max_nq);
    c->scratch.used = mark;
    CU_LAUNCHED("decode attention");
    return 0;
}

template <bool PAGED, typename SEQ, typename T>
static int decode_by_dim(cu_ctx *c, T *out, float *lse, const T *q, const attn_kv_src &src, const SEQ *seqs, int n_seqs,
                         int max_nq, int max_nkv, const attn_shape &s) {
    switch (s.head_dim) {
    case 32: return decode_launch<32, T, PAGED>(c, out, lse, q, src, seqs, n_seqs, max_nq, max_nkv, s);
    case 64: return decode_launch<64, T, PAGED>(c, out, lse, q, src, seqs, n_seqs, max_nq, max_nkv, s);
    case 128: return decode_launch<128, T, PAGED>(c, out, lse, q, src, seqs, n_seqs, max_nq, max_nkv, s);
    }
    return err_set(ERR_INTERNAL, "decode attention: head_dim %d slipped through the checks", s.head_dim);
}

int cu_attention_decode(cu_ctx *c, void *out, float *lse, const void *q, const attn_kv_src &src, const attn_seq *seqs,
                        const cu_paged_seq *pseqs, int n_seqs, int max_nq, int max_nkv, const attn_shape &s, cu_dtype dt) {
    if (pseqs) {
        CU_DISPATCH(dt, T, return decode_by_dim<true>(c, (T *)out, lse, (const T *)q, src, pseqs, n_seqs, max_nq, max_nkv, s));
    } else {
        CU_DISPATCH(dt, T, return decode_by_dim<false>(c, (T *)out, lse, (const T *)q, src, seqs, n_seqs, max_nq, max_nkv, s));
    }
    return 0;
}
