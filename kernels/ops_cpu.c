/* ops_cpu.c: the CPU backend's op table (ops.h): the kernels of kernels/ behind the table's
 * signatures, doing exactly what a direct call does (bitwise; tested). Memory is host memory. */
#include "kernels/ops.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "kernels/embedding.h"
#include "kernels/rmsnorm.h"
#include "kernels/rope.h"
#include "kernels/softmax.h"
#include "kernels/swiglu.h"

static int c_alloc(const smelt_ops *o, void **p, size_t bytes, const char *what) {
    (void)o;
    *p = malloc(bytes ? bytes : 1);
    if (!*p) return err_set(ERR_NOMEM, "cannot allocate %.1f MiB for %s", bytes / 1048576.0, what);
    return 0;
}
static void c_free(const smelt_ops *o, void *p) { (void)o, free(p); }
static int c_move(const smelt_ops *o, void *dst, const void *src, size_t bytes) {
    (void)o;
    if (bytes && dst != src) memmove(dst, src, bytes);
    return 0;
}
static int c_zero(const smelt_ops *o, void *p, size_t bytes) {
    (void)o;
    if (bytes) memset(p, 0, bytes);
    return 0;
}
static int c_sync(const smelt_ops *o) { return (void)o, 0; }

static int c_linear_forward(const smelt_ops *o, float *out, int ldo, const float *x, int ldx, const linear *l, int n,
                            int accumulate) {
    return (void)o, linear_forward(out, ldo, x, ldx, l, n, accumulate);
}
static int c_linear_backward_input(const smelt_ops *o, float *dx, int ldx, const float *dy, int ldy, const linear *l,
                                   int n, int accumulate) {
    return (void)o, linear_backward_input(dx, ldx, dy, ldy, l, n, accumulate);
}
static int c_linear_backward_params(const smelt_ops *o, float *dw, float *db, const float *dy, int ldy, const float *x,
                                    int ldx, int n, int n_out, int n_in, int bf16_compute) {
    return (void)o, linear_backward_params(dw, db, dy, ldy, x, ldx, n, n_out, n_in, bf16_compute);
}
static int c_rmsnorm_forward(const smelt_ops *o, float *out, float *rstd, const float *x, const float *w, int n, int d,
                             float eps) {
    (void)o;
    rmsnorm_forward(out, rstd, x, w, n, d, eps);
    return 0;
}
static int c_rmsnorm_backward(const smelt_ops *o, float *dx, float *dw, const float *dout, const float *x,
                              const float *w, const float *rstd, int n, int d) {
    (void)o;
    rmsnorm_backward(dx, dw, dout, x, w, rstd, n, d);
    return 0;
}
static int c_rope_forward(const smelt_ops *o, float *x, int ldx, const int *pos, const float *cos_t, const float *sin_t,
                          int n, int n_heads, int head_dim) {
    (void)o;
    rope_forward(x, ldx, pos, cos_t, sin_t, n, n_heads, head_dim);
    return 0;
}
static int c_rope_backward(const smelt_ops *o, float *dx, int ldx, const int *pos, const float *cos_t,
                           const float *sin_t, int n, int n_heads, int head_dim) {
    (void)o;
    rope_backward(dx, ldx, pos, cos_t, sin_t, n, n_heads, head_dim);
    return 0;
}
static int c_swiglu_forward(const smelt_ops *o, float *h, const float *gate, const float *up, int ld_in, int n,
                            int dim) {
    (void)o;
    swiglu_forward(h, gate, up, ld_in, n, dim);
    return 0;
}
static int c_swiglu_backward(const smelt_ops *o, float *dgate, float *dup, const float *dh, const float *gate,
                             const float *up, int ld_in, int n, int dim) {
    (void)o;
    swiglu_backward(dgate, dup, dh, gate, up, ld_in, n, dim);
    return 0;
}
static int c_embedding_forward(const smelt_ops *o, float *out, const float *table, const int *tokens, int n, int dim) {
    (void)o;
    embedding_forward(out, table, tokens, n, dim);
    return 0;
}
static int c_embedding_backward(const smelt_ops *o, float *dtable, const float *dout, const int *tokens, int n,
                                int dim) {
    (void)o;
    embedding_backward(dtable, dout, tokens, n, dim);
    return 0;
}
static int c_attention_forward(const smelt_ops *o, float *out, float *lse, const float *q, const float *k,
                               const float *v, const attn_shape *s, const smelt_attn_call *c) {
    return (void)o, attention_forward(out, lse, q, k, v, s, c->seqs, c->n_seqs, c->work, c->work_floats);
}
static int c_attention_backward(const smelt_ops *o, float *dq, float *dk, float *dv, const float *dout,
                                const float *out, const float *lse, const float *q, const float *k, const float *v,
                                const attn_shape *s, const smelt_attn_call *c) {
    (void)o;
    return attention_backward(dq, dk, dv, dout, out, lse, q, k, v, s, c->seqs, c->n_seqs, c->work, c->work_floats);
}
static int c_cross_entropy(const smelt_ops *o, float *losses, float *dlogits, const float *logits, const int *targets,
                           const float *weights, int n, int vocab) {
    (void)o;
    cross_entropy(losses, dlogits, logits, targets, weights, n, vocab);
    return 0;
}
static int c_distill_rows(const smelt_ops *o, double *terms, float *dlogits, const float *zs, int ld_s, const float *zt,
                          int ld_t, const float *row_w, const distill_mix *mix, int n, int vocab) {
    (void)o;
    distill_rows(terms, dlogits, zs, ld_s, zt, ld_t, row_w, mix, n, vocab);
    return 0;
}
static int c_sum_squares(const smelt_ops *o, double *out, const float *x, size_t n) {
    (void)o;
    *out = sum_squares(x, n);
    return 0;
}
/* the rule of optim_step: norm = sqrt(sumsq); scale = max_norm / (norm + 1e-6) above max_norm */
static int c_clip_factor(const smelt_ops *o, double *norm, float *scale, int *bad, const double *sumsq,
                         double max_norm) {
    (void)o;
    const double nrm = sqrt(*sumsq);
    if (norm) *norm = nrm;
    *bad = !isfinite(nrm);
    *scale = max_norm > 0 && nrm > max_norm ? (float)(max_norm / (nrm + 1e-6)) : 1.0f;
    return 0;
}
static int c_adamw(const smelt_ops *o, float *p, float *m, float *v, const float *g, const float *grad_scale,
                   const int *skip, size_t n, const adamw_hparams *h, long step, int decay) {
    (void)o;
    if (!(skip && *skip)) adamw_update(p, m, v, g, grad_scale ? *grad_scale : 1.0f, n, h, step, decay);
    return 0;
}

static const smelt_ops CPU_OPS = {
    .name = "cpu",
    .device = SMELT_DEV_CPU,
    .alloc = c_alloc,
    .free = c_free,
    .upload = c_move,
    .download = c_move,
    .copy = c_move,
    .zero = c_zero,
    .sync = c_sync,
    .linear_forward = c_linear_forward,
    .linear_backward_input = c_linear_backward_input,
    .linear_backward_params = c_linear_backward_params,
    .rmsnorm_forward = c_rmsnorm_forward,
    .rmsnorm_backward = c_rmsnorm_backward,
    .rope_forward = c_rope_forward,
    .rope_backward = c_rope_backward,
    .swiglu_forward = c_swiglu_forward,
    .swiglu_backward = c_swiglu_backward,
    .embedding_forward = c_embedding_forward,
    .embedding_backward = c_embedding_backward,
    .attention_forward = c_attention_forward,
    .attention_backward = c_attention_backward,
    .cross_entropy = c_cross_entropy,
    .distill_rows = c_distill_rows,
    .sum_squares = c_sum_squares,
    .clip_factor = c_clip_factor,
    .adamw = c_adamw,
};

const smelt_ops *smelt_ops_cpu(void) { return &CPU_OPS; }

int smelt_device_parse(const char *name, smelt_device *out) {
    if (name && !strcmp(name, "cpu")) return *out = SMELT_DEV_CPU, 0;
    if (name && !strcmp(name, "cuda")) return *out = SMELT_DEV_CUDA, 0;
    return err_set(ERR_INPUT, "device '%s': expected cpu or cuda", name ? name : "(null)");
}
