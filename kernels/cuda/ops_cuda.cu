/* ops_cuda.cu: the CUDA backend's op table (kernels/ops.h) over cuda_ops.h: memory is device
 * memory, activations fp32, linears fp32 cuBLAS GEMMs (CUBLAS_COMPUTE_32F: the CPU's fp32 results to
 * within fp32 sums), everything else the CUDA kernels of this folder. */
#include "kernels/cuda/cu_common.cuh"

#include <string.h>

extern "C" {
#include "kernels/ops.h"
}

static cu_ctx *CX(const smelt_ops *o) { return (cu_ctx *)o->ctx; }

static int g_alloc(const smelt_ops *o, void **p, size_t bytes, const char *what) { return cu_alloc(CX(o), p, bytes, what); }
static void g_free(const smelt_ops *o, void *p) { cu_free(CX(o), p); }
static int g_upload(const smelt_ops *o, void *dst, const void *host, size_t bytes) {
    return cu_upload(CX(o), dst, host, bytes);
}
static int g_download(const smelt_ops *o, void *host, const void *src, size_t bytes) {
    return cu_download(CX(o), host, src, bytes);
}
static int g_copy(const smelt_ops *o, void *dst, const void *src, size_t bytes) { return cu_copy(CX(o), dst, src, bytes); }
static int g_zero(const smelt_ops *o, void *p, size_t bytes) { return cu_zero(CX(o), p, bytes); }
static int g_sync(const smelt_ops *o) { return cu_sync(CX(o)); }

static int fp32_only(const linear *l) {
    if (l->format == LINEAR_F32) return 0;
    return err_set(ERR_INPUT, "linear format %d on CUDA: only fp32 weights run there (bf16_compute for bf16 "
                   "products); use device: cpu for packed bf16 and quantized weights", (int)l->format);
}
/* C = op(A) op(B) (+ C) in fp32 sums; bf16: A and B rounded to bf16 in scratch copies first (their
 * whole spans, rows x ld), so that cuBLAS multiplies what the CPU's gemm_bf16 multiplies: products
 * of bf16 are exact in fp32 and only the order of the sums differs */
static int gemm_f32(cu_ctx *c, float *C, int ldc, const float *A, int ra, int ca, int lda, int ta, const float *B,
                    int rb, int cb, int ldb, int tb, int m, int n, int k, float beta, int use_bf16) {
    if (!use_bf16) return cu_gemm(c, C, CU_F32, ldc, A, lda, ta, B, ldb, tb, CU_F32, m, n, k, 1.0f, beta);
    if (m <= 0 || n <= 0) return 0;
    const size_t mark = c->scratch.used, na = (size_t)(ra - 1) * lda + ca, nb = (size_t)(rb - 1) * ldb + cb;
    void *a16 = cu_scratch_take(c, na * 2, "bf16 copy of a GEMM operand");
    void *b16 = a16 ? cu_scratch_take(c, nb * 2, "bf16 copy of a GEMM operand") : NULL;
    const int rc = !b16 || cu_convert(c, a16, CU_BF16, A, CU_F32, na) || cu_convert(c, b16, CU_BF16, B, CU_F32, nb) ||
                           cu_gemm(c, C, CU_F32, ldc, a16, lda, ta, b16, ldb, tb, CU_BF16, m, n, k, 1.0f, beta)
                       ? -1
                       : 0;
    c->scratch.used = mark;
    return rc;
}
static int g_linear_forward(const smelt_ops *o, float *out, int ldo, const float *x, int ldx, const linear *l, int n,
                            int accumulate) {
    if (n <= 0) return 0;
    if (fp32_only(l) || gemm_f32(CX(o), out, ldo, x, n, l->n_in, ldx, 0, l->w, l->n_out, l->n_in, l->n_in, 1, n,
                                 l->n_out, l->n_in, accumulate ? 1.0f : 0.0f, l->bf16_compute))
        return -1;
    return l->b ? cu_add_bias(CX(o), out, ldo, l->b, n, l->n_out, CU_F32) : 0;
}
static int g_linear_backward_input(const smelt_ops *o, float *dx, int ldx, const float *dy, int ldy, const linear *l,
                                   int n, int accumulate) {
    if (fp32_only(l)) return -1;
    if (n <= 0) return 0;
    return gemm_f32(CX(o), dx, ldx, dy, n, l->n_out, ldy, 0, l->w, l->n_out, l->n_in, l->n_in, 0, n, l->n_in, l->n_out,
                    accumulate ? 1.0f : 0.0f, l->bf16_compute);
}
static int g_linear_backward_params(const smelt_ops *o, float *dw, float *db, const float *dy, int ldy, const float *x,
                                    int ldx, int n, int n_out, int n_in, int bf16_compute) {
    if (n <= 0) return 0;
    if (gemm_f32(CX(o), dw, n_in, dy, n, n_out, ldy, 1, x, n, n_in, ldx, 0, n_out, n_in, n, 1.0f, bf16_compute))
        return -1;
    return db ? cu_bias_grad(CX(o), db, dy, ldy, n, n_out, CU_F32) : 0;
}
static int g_rmsnorm_forward(const smelt_ops *o, float *out, float *rstd, const float *x, const float *w, int n, int d,
                             float eps) {
    return cu_rmsnorm_forward(CX(o), out, rstd, x, w, n, d, eps, CU_F32);
}
static int g_rmsnorm_backward(const smelt_ops *o, float *dx, float *dw, const float *dout, const float *x,
                              const float *w, const float *rstd, int n, int d) {
    return cu_rmsnorm_backward(CX(o), dx, dw, dout, x, w, rstd, n, d, CU_F32);
}
static int g_rope_forward(const smelt_ops *o, float *x, int ldx, const int *pos, const float *cos_t, const float *sin_t,
                          int n, int n_heads, int head_dim) {
    return cu_rope_forward(CX(o), x, ldx, pos, cos_t, sin_t, n, n_heads, head_dim, CU_F32);
}
static int g_rope_backward(const smelt_ops *o, float *dx, int ldx, const int *pos, const float *cos_t,
                           const float *sin_t, int n, int n_heads, int head_dim) {
    return cu_rope_backward(CX(o), dx, ldx, pos, cos_t, sin_t, n, n_heads, head_dim, CU_F32);
}
static int g_swiglu_forward(const smelt_ops *o, float *h, const float *gate, const float *up, int ld_in, int n,
                            int dim) {
    return cu_swiglu_forward(CX(o), h, gate, up, ld_in, n, dim, CU_F32);
}
static int g_swiglu_backward(const smelt_ops *o, float *dgate, float *dup, const float *dh, const float *gate,
                             const float *up, int ld_in, int n, int dim) {
    return cu_swiglu_backward(CX(o), dgate, dup, dh, gate, up, ld_in, n, dim, CU_F32);
}
static int g_embedding_forward(const smelt_ops *o, float *out, const float *table, const int *tokens, int n, int dim) {
    return cu_embedding_forward(CX(o), out, table, tokens, n, dim, CU_F32);
}
static int g_embedding_backward(const smelt_ops *o, float *dtable, const float *dout, const int *tokens, int n,
                                int dim) {
    return cu_embedding_backward(CX(o), dtable, dout, tokens, n, dim, CU_F32);
}
static cu_attn_batch batch_of(const smelt_attn_call *c) {
    cu_attn_batch b = {c->seqs, c->n_seqs, c->max_nq, c->max_nkv, c->n_rows};
    return b;
}
static int g_attention_forward(const smelt_ops *o, float *out, float *lse, const float *q, const float *k,
                               const float *v, const attn_shape *s, const smelt_attn_call *c) {
    const cu_attn_batch b = batch_of(c);
    return cu_attention_forward(CX(o), out, lse, q, k, v, s, &b, CU_F32);
}
static int g_attention_backward(const smelt_ops *o, float *dq, float *dk, float *dv, const float *dout,
                                const float *out, const float *lse, const float *q, const float *k, const float *v,
                                const attn_shape *s, const smelt_attn_call *c) {
    const cu_attn_batch b = batch_of(c);
    return cu_attention_backward(CX(o), dq, dk, dv, dout, out, lse, q, k, v, s, &b, CU_F32);
}
static int g_cross_entropy(const smelt_ops *o, float *losses, float *dlogits, const float *logits, const int *targets,
                           const float *weights, int n, int vocab) {
    return cu_cross_entropy(CX(o), losses, dlogits, logits, targets, weights, n, vocab, CU_F32);
}
static int g_distill_rows(const smelt_ops *o, double *terms, float *dlogits, const float *zs, int ld_s, const float *zt,
                          int ld_t, const float *row_w, const distill_mix *mix, int n, int vocab) {
    return cu_distill_rows(CX(o), terms, dlogits, zs, ld_s, zt, ld_t, row_w, mix, n, vocab, CU_F32);
}
static int g_sum_squares(const smelt_ops *o, double *out, const float *x, size_t n) {
    return cu_sum_squares(CX(o), out, x, n, 0);
}
static int g_clip_factor(const smelt_ops *o, double *norm, float *scale, int *bad, const double *sumsq,
                         double max_norm) {
    return cu_clip_factor(CX(o), norm, scale, bad, sumsq, max_norm);
}
static int g_adamw(const smelt_ops *o, float *p, float *m, float *v, const float *g, const float *grad_scale,
                   const int *skip, size_t n, const adamw_hparams *h, long step, int decay) {
    return cu_adamw(CX(o), p, m, v, g, grad_scale, skip, n, h, step, decay, NULL, CU_BF16);
}

int smelt_ops_cuda_open(smelt_ops *o, int device) {
    memset(o, 0, sizeof *o);
    cu_ctx *c;
    if (cu_open(&c, device, 0)) return -1;
    o->name = "cuda", o->device = SMELT_DEV_CUDA, o->ctx = c;
    o->alloc = g_alloc, o->free = g_free, o->upload = g_upload, o->download = g_download, o->copy = g_copy;
    o->zero = g_zero, o->sync = g_sync;
    o->linear_forward = g_linear_forward, o->linear_backward_input = g_linear_backward_input;
    o->linear_backward_params = g_linear_backward_params;
    o->rmsnorm_forward = g_rmsnorm_forward, o->rmsnorm_backward = g_rmsnorm_backward;
    o->rope_forward = g_rope_forward, o->rope_backward = g_rope_backward;
    o->swiglu_forward = g_swiglu_forward, o->swiglu_backward = g_swiglu_backward;
    o->embedding_forward = g_embedding_forward, o->embedding_backward = g_embedding_backward;
    o->attention_forward = g_attention_forward, o->attention_backward = g_attention_backward;
    o->cross_entropy = g_cross_entropy, o->distill_rows = g_distill_rows;
    o->sum_squares = g_sum_squares, o->clip_factor = g_clip_factor, o->adamw = g_adamw;
    return 0;
}

void smelt_ops_cuda_close(smelt_ops *o) {
    if (o->ctx) cu_close((cu_ctx *)o->ctx);
    memset(o, 0, sizeof *o);
}
