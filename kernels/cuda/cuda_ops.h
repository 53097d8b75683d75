/* cuda_ops.h: the CUDA backend's operations, callable from C: the CUDA twins of the CPU kernels
 * (matmul/linear GEMMs through cuBLAS with fp32 accumulation; RMSNorm, RoPE, SwiGLU, embedding,
 * softmax, cross-entropy, distillation losses, AdamW, reductions and flash attention as own kernels).
 *
 * Conventions. Pointers named as tensors are DEVICE pointers (cu_alloc, or a cu_arena); sizes and
 * descriptors are host values. Every op is enqueued on the context's one stream and returns at
 * once: nothing waits for the GPU and nothing comes back to the host inside a training step except
 * where a function says so (cu_download, cu_sync). A launch error is reported by the op itself
 * (0 or -1 with err_set); a fault inside a kernel by the next cu_sync or cu_download.
 * Activations (x, out, logits, q, k, v, ...) have the op's dtype `dt` (fp32, bf16 or fp16 in
 * memory); arithmetic is fp32; statistics (rstd, lse, losses) are fp32, sums over long vectors fp64.
 * Shapes, strides, ASSIGNED (=) and ACCUMULATED (+=) outputs are those of the CPU kernel of the same
 * name in kernels/ unless stated. Each op's forward and backward live in one file of kernels/cuda/.
 *
 * Built twice: with nvcc for sm_90 (H100/H200), and for the host emulation (kernels/cuda/emu/) that
 * tests the same sources on machines without a GPU (docs/cuda.md). */
#ifndef SMELT_KERNELS_CUDA_CUDA_OPS_H
#define SMELT_KERNELS_CUDA_CUDA_OPS_H

#include <stddef.h>

#include "kernels/adamw.h"
#include "kernels/attention.h"
#include "kernels/distill.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum { CU_F32 = 0, CU_BF16 = 1, CU_F16 = 2 } cu_dtype;
size_t cu_dtype_size(cu_dtype dt);
const char *cu_dtype_name(cu_dtype dt);

/* ---- devices, contexts, memory (ctx.cu) ---- */

typedef struct cu_ctx cu_ctx;

/* CUDA devices this process sees: 0 when there is no driver or device (never an error). */
int cu_device_count(void);
/* 1 for the host emulation build, 0 for the real one. */
int cu_is_emulated(void);
/* Opens device `device`: its stream, a cuBLAS handle, and scratch_bytes of device scratch for the
 * ops' temporaries (0: 64 MiB). 0 or -1 (ERR_INPUT for a device that does not exist, ERR_IO). */
int cu_open(cu_ctx **out, int device, size_t scratch_bytes);
void cu_close(cu_ctx *c);
/* "NVIDIA H100 80GB HBM3, 132 SMs, sm_90, 79.1 GiB" */
const char *cu_describe(const cu_ctx *c);
int cu_sm_count(const cu_ctx *c);
/* Waits for everything enqueued; reports a fault of any kernel since the last call. 0 or -1. */
int cu_sync(cu_ctx *c);

int cu_alloc(cu_ctx *c, void **p, size_t bytes, const char *what); /* ERR_NOMEM names what and the size */
void cu_free(cu_ctx *c, void *p);
int cu_upload(cu_ctx *c, void *dst, const void *src, size_t bytes);   /* host -> device */
int cu_download(cu_ctx *c, void *dst, const void *src, size_t bytes); /* device -> host; waits for the stream */
int cu_copy(cu_ctx *c, void *dst, const void *src, size_t bytes);     /* device -> device, enqueued */
/* rows of width bytes each, from src (rows spitch bytes apart) to dst (dpitch apart), device to device */
int cu_copy_2d(cu_ctx *c, void *dst, size_t dpitch, const void *src, size_t spitch, size_t width, size_t rows);
int cu_zero(cu_ctx *c, void *p, size_t bytes);

/* A device arena: one allocation per lifetime (parameters, gradients, moments, activations), handed
 * out front to back in 256-byte aligned pieces; `used` may be saved and restored to free the pieces
 * taken since (scratch). The arena owns the allocation (cu_arena_free). */
typedef struct {
    unsigned char *base;
    size_t cap, used, peak;
    const char *what;
} cu_arena;
int cu_arena_init(cu_ctx *c, cu_arena *a, size_t bytes, const char *what);
void cu_arena_free(cu_ctx *c, cu_arena *a);
/* bytes of device memory, or NULL with ERR_NOMEM naming the arena, the request and what is left */
void *cu_arena_take(cu_arena *a, size_t bytes);

/* dst[n] (dtype dd) = src[n] (dtype sd), rounded to nearest even. */
int cu_convert(cu_ctx *c, void *dst, cu_dtype dd, const void *src, cu_dtype sd, size_t n);

/* ---- GEMM (gemm.cu) ---- */

/* C[m, n] = alpha op(A) op(B) + beta C with matmul()'s row-major arguments (kernels/matmul.h).
 * A and B have dtype ab (bf16 or fp16: tensor cores; fp32: fp32 FMA), C has dtype ct (fp32, or ab);
 * products are summed in fp32 (cuBLAS, CUBLAS_COMPUTE_32F). beta == 0 does not read C. */
int cu_gemm(cu_ctx *c, void *C, cu_dtype ct, int ldc, const void *A, int lda, int trans_a, const void *B, int ldb,
            int trans_b, cu_dtype ab, int m, int n, int k, float alpha, float beta);
/* out [n, ldo] (dt) += b [m] (fp32) on every row. */
int cu_add_bias(cu_ctx *c, void *out, int ldo, const float *b, int n, int m, cu_dtype dt);
/* db[m] (fp32) ACCUMULATED += column sums of dy [n, ldy] (dt), each column summed in row order. */
int cu_bias_grad(cu_ctx *c, float *db, const void *dy, int ldy, int n, int m, cu_dtype dt);

/* ---- RMSNorm (norm.cu) ---- */

/* out: [n, d] dt (may alias x), rstd: [n] fp32 or NULL, x: [n, d] dt, w: [d] fp32. */
int cu_rmsnorm_forward(cu_ctx *c, void *out, float *rstd, const void *x, const float *w, int n, int d, float eps,
                       cu_dtype dt);
/* dx: [n, d] dt ACCUMULATED, dw: [d] fp32 ACCUMULATED (deterministic: fixed row blocks, fixed order). */
int cu_rmsnorm_backward(cu_ctx *c, void *dx, float *dw, const void *dout, const void *x, const float *w,
                        const float *rstd, int n, int d, cu_dtype dt);

/* ---- RoPE (rope.cu) ---- */

/* cos_t, sin_t: [n_pos, half] for positions pos0.., angle = fl32(pos * inv_freq[i]) as rope_tables;
 * inv_freq: [half] on the device, from rope_inv_freq (which applies the Llama 3 scaling). */
int cu_rope_tables(cu_ctx *c, float *cos_t, float *sin_t, const float *inv_freq, int pos0, int n_pos, int half);
/* In place on x [n, ldx] dt (n_heads heads of head_dim at the start of each row); pos: [n] int. */
int cu_rope_forward(cu_ctx *c, void *x, int ldx, const int *pos, const float *cos_t, const float *sin_t, int n,
                    int n_heads, int head_dim, cu_dtype dt);
int cu_rope_backward(cu_ctx *c, void *dx, int ldx, const int *pos, const float *cos_t, const float *sin_t, int n,
                     int n_heads, int head_dim, cu_dtype dt);

/* ---- SwiGLU and embedding (mlp.cu) ---- */

int cu_swiglu_forward(cu_ctx *c, void *h, const void *gate, const void *up, int ld_in, int n, int dim, cu_dtype dt);
int cu_swiglu_backward(cu_ctx *c, void *dgate, void *dup, const void *dh, const void *gate, const void *up, int ld_in,
                       int n, int dim, cu_dtype dt);
/* out: [n, dim] dt = table[tokens[i]] (table: [vocab, dim] dt; tokens: [n] int, trusted). */
int cu_embedding_forward(cu_ctx *c, void *out, const void *table, const int *tokens, int n, int dim, cu_dtype dt);
/* dtable: [vocab, dim] fp32 ACCUMULATED += dout rows (dt); each column summed in row order. Only
 * dim threads work: for long batches use the grouped form below. */
int cu_embedding_backward(cu_ctx *c, float *dtable, const void *dout, const int *tokens, int n, int dim, cu_dtype dt);
/* The same with the rows grouped by token (embedding_groups on the host, uploaded with the tokens):
 * order [n] the row indices sorted by token, rows of a token in increasing order; starts
 * [n_groups + 1] where each token's rows begin in order. One block per (token, column block) sums
 * its rows in order and adds the sum once: parallel over tokens, the same bits on every run. */
int cu_embedding_backward_grouped(cu_ctx *c, float *dtable, const void *dout, const int *tokens, const int *order,
                                  const int *starts, int n_groups, int dim, cu_dtype dt);
/* Host helper: order [n] and starts [n + 1] for tokens [n] (a stable sort by token); returns the
 * number of groups, or -1 (ERR_NOMEM). */
int cu_embedding_groups(int *order, int *starts, const int *tokens, int n);

/* ---- softmax, cross-entropy, distillation (loss.cu) ---- */

int cu_softmax_forward(cu_ctx *c, void *out, const void *x, int n, int dim, cu_dtype dt);
int cu_softmax_backward(cu_ctx *c, void *dx, const void *y, const void *dy, int n, int dim, cu_dtype dt);
/* losses: [n] fp32 ASSIGNED; dlogits: [n, vocab] dt ASSIGNED or NULL; targets: [n] int (< 0
 * ignored); weights: [n] fp32 or NULL. As cross_entropy (kernels/softmax.h). */
int cu_cross_entropy(cu_ctx *c, float *losses, void *dlogits, const void *logits, const int *targets,
                     const float *weights, int n, int vocab, cu_dtype dt);
/* terms: [n, DISTILL_TERMS] fp64 ASSIGNED, dlogits: [n, ld_s] dt ACCUMULATED (columns < vocab) or
 * NULL; zs [n, ld_s], zt [n, ld_t]; as distill_rows (JSD at beta 0 or 1 is FKL or RKL). FKL, RKL and
 * JSD only: a mix with TVD, SKL or SRKL weight is refused (ERR_INPUT). */
int cu_distill_rows(cu_ctx *c, double *terms, void *dlogits, const void *zs, int ld_s, const void *zt, int ld_t,
                    const float *row_w, const distill_mix *mix, int n, int vocab, cu_dtype dt);

/* ---- reductions and the optimizer (optim.cu) ---- */

/* *out (one fp64 on the device) = (or += with accumulate) sum of x[n] fp32, or of its squares;
 * fixed blocks depending on n only: the same bits on every run. */
int cu_sum(cu_ctx *c, double *out, const float *x, size_t n, int accumulate);
int cu_sum_squares(cu_ctx *c, double *out, const float *x, size_t n, int accumulate);
/* The same over fp64 values (per-row loss terms). */
int cu_sum_f64(cu_ctx *c, double *out, const double *x, size_t n, int accumulate);
int cu_scale(cu_ctx *c, float *x, size_t n, float s);
/* Gradient clipping decided on the device from sumsq (one fp64): norm = sqrt(sumsq) (written to
 * *norm, fp64); *scale (fp32) = max_norm / (norm + 1e-6) when 0 < max_norm < norm, else 1; *bad
 * (int) = 1 when the norm is NaN or infinite (cu_adamw then changes nothing), else 0. */
int cu_clip_factor(cu_ctx *c, double *norm, float *scale, int *bad, const double *sumsq, double max_norm);
/* adamw_update on the device with the same fp32 operations in the same order (bitwise equal to the
 * CPU for the same inputs): p, m, v updated in place, g read and multiplied by *grad_scale (device
 * fp32; NULL: 1); nothing changes when *skip (device int; NULL: never) is set. p_copy (NULL or
 * [n] of copy_dt) receives the new parameters converted (the bf16 weights of the GEMMs). */
int cu_adamw(cu_ctx *c, float *p, float *m, float *v, const float *g, const float *grad_scale, const int *skip,
             size_t n, const adamw_hparams *h, long step, int decay, void *p_copy, cu_dtype copy_dt);

/* ---- attention (attn_fwd.cu, attn_bwd.cu, attn_decode.cu) ---- */

/* The sequences of one attention call: seqs in DEVICE memory (attn_seq as in kernels/attention.h),
 * with host-side bounds that size the grids. */
typedef struct {
    const attn_seq *seqs; /* [n_seqs], device */
    int n_seqs;
    int max_nq, max_nkv;  /* largest nq and nkv over the sequences */
    int n_rows;           /* rows of q / out / lse: every q0 + nq <= n_rows */
} cu_attn_batch;

/* Head dimensions the attention kernels are built for. */
int cu_attention_supports(int head_dim);

/* Causal GQA attention of attention_forward: out [*, ldo] dt ASSIGNED, lse [n_rows, n_heads] fp32
 * ASSIGNED or NULL; q, k, v dt. The products run on tensor cores in bf16 with fp32 sums (fp32
 * inputs are rounded to bf16 as they are loaded; probabilities are rounded to bf16 before P V).
 * Batches with max_nq <= CU_DECODE_MAX_NQ run the split-key decode kernel instead (fp32 throughout). */
#define CU_DECODE_MAX_NQ 4
int cu_attention_forward(cu_ctx *c, void *out, float *lse, const void *q, const void *k, const void *v,
                         const attn_shape *s, const cu_attn_batch *b, cu_dtype dt);
/* The backward of attention_backward: dq, dk, dv dt ASSIGNED in their head columns. */
int cu_attention_backward(cu_ctx *c, void *dq, void *dk, void *dv, const void *dout, const void *out, const float *lse,
                          const void *q, const void *k, const void *v, const attn_shape *s, const cu_attn_batch *b,
                          cu_dtype dt);

/* Attention whose keys and values sit in a paged KV cache (the layout of kernels/attn_paged.h):
 * position r of block b at k + (b * block_size + r) * ldkv, kv head g at column g * head_dim. */
typedef struct {
    int block_size, n_blocks, ldkv;
    const void *k, *v; /* [n_blocks, block_size, ldkv] dt, device */
} cu_paged_kv;
typedef struct {
    int q0, nq, nkv;
    int blocks_off; /* this sequence's block ids are blocks[blocks_off .. blocks_off + ceil(nkv/bs)) */
} cu_paged_seq;
typedef struct {
    const cu_paged_seq *seqs; /* [n_seqs], device */
    const int *blocks;        /* block ids, device (trusted: the engine checks them) */
    int n_seqs, max_nq, max_nkv;
} cu_paged_batch;
/* out [*, ldo] dt ASSIGNED in the sequences' query rows; q [*, ldq] dt; s->ldk, ldv unused. */
int cu_attention_paged(cu_ctx *c, void *out, const void *q, const cu_paged_kv *kv, const attn_shape *s,
                       const cu_paged_batch *b, cu_dtype dt);

/* ---- the op table (kernels/ops.h) filled by this backend (ops_cuda.cu) ---- */

struct smelt_ops;
/* Opens device `device` and fills *o with the CUDA backend's table (its ctx is the context):
 * fp32 activations, linears as fp32 cuBLAS GEMMs (quantized formats refused), the kernels above
 * for the rest. 0 or -1. */
int smelt_ops_cuda_open(struct smelt_ops *o, int device);
void smelt_ops_cuda_close(struct smelt_ops *o);

#ifdef __cplusplus
}
#endif

#endif
