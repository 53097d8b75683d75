/* ops.h: the one op table (ggml's backend idea): every numeric op the engine runs, as a table of
 * function pointers that a backend fills. The CPU backend (ops_cpu.c) fills it with the kernels of
 * kernels/, unchanged (the same bits as calling them directly); the CUDA backend
 * (kernels/cuda/ops_cuda.cu, smelt_ops_cuda_open in cuda_ops.h) with their CUDA twins.
 *
 * Memory. Every pointer an op takes lives in the backend's memory (host memory for the CPU, device
 * memory for CUDA): tensors, and index arrays too (tokens, positions, sequences, targets), which
 * the caller uploads once per batch. Scalars an op produces (a sum of squares, a clipping factor)
 * are written to the backend's memory as well, so that a step never waits for the device; read them
 * with download. Activations are fp32 in every backend. Shapes, strides and which outputs are
 * ASSIGNED or ACCUMULATED are those of the CPU kernel of the same name.
 *
 * Status: model/ still calls the CPU kernels directly; moving it onto this table (device-aware
 * buffers, `device: cuda | cpu`) is the remaining step of docs/cuda.md. */
#ifndef SMELT_KERNELS_OPS_H
#define SMELT_KERNELS_OPS_H

#include <stddef.h>

#include "kernels/adamw.h"
#include "kernels/attention.h"
#include "kernels/distill.h"
#include "kernels/linear.h"

typedef enum { SMELT_DEV_CPU = 0, SMELT_DEV_CUDA = 1 } smelt_device;

/* One attention call's sequences (in backend memory) with the bounds a device needs to plan its
 * grid, and the CPU's tile buffer (attention_work_floats; NULL on devices). */
typedef struct {
    const attn_seq *seqs;
    int n_seqs, max_nq, max_nkv, n_rows;
    float *work;
    size_t work_floats;
} smelt_attn_call;

typedef struct smelt_ops smelt_ops;
struct smelt_ops {
    const char *name;
    smelt_device device;
    void *ctx; /* the backend's state (the CUDA context); NULL for the CPU */

    /* memory: 0 or -1 (err_set) */
    int (*alloc)(const smelt_ops *o, void **p, size_t bytes, const char *what);
    void (*free)(const smelt_ops *o, void *p);
    int (*upload)(const smelt_ops *o, void *dst, const void *host, size_t bytes);
    int (*download)(const smelt_ops *o, void *host, const void *src, size_t bytes); /* waits */
    int (*copy)(const smelt_ops *o, void *dst, const void *src, size_t bytes);
    int (*zero)(const smelt_ops *o, void *p, size_t bytes);
    int (*sync)(const smelt_ops *o);

    /* linear layers (kernels/linear.h): fp32 weights, with bf16_compute (the descriptor's, or the
     * argument of the parameter gradient) the products of bf16-rounded operands with fp32 sums */
    int (*linear_forward)(const smelt_ops *o, float *out, int ldo, const float *x, int ldx, const linear *l, int n,
                          int accumulate);
    int (*linear_backward_input)(const smelt_ops *o, float *dx, int ldx, const float *dy, int ldy, const linear *l,
                                 int n, int accumulate);
    int (*linear_backward_params)(const smelt_ops *o, float *dw, float *db, const float *dy, int ldy, const float *x,
                                  int ldx, int n, int n_out, int n_in, int bf16_compute);
    /* norms, rotary embeddings, activation, embedding */
    int (*rmsnorm_forward)(const smelt_ops *o, float *out, float *rstd, const float *x, const float *w, int n, int d,
                           float eps);
    int (*rmsnorm_backward)(const smelt_ops *o, float *dx, float *dw, const float *dout, const float *x,
                            const float *w, const float *rstd, int n, int d);
    int (*rope_forward)(const smelt_ops *o, float *x, int ldx, const int *pos, const float *cos_t, const float *sin_t,
                        int n, int n_heads, int head_dim);
    int (*rope_backward)(const smelt_ops *o, float *dx, int ldx, const int *pos, const float *cos_t,
                         const float *sin_t, int n, int n_heads, int head_dim);
    int (*swiglu_forward)(const smelt_ops *o, float *h, const float *gate, const float *up, int ld_in, int n, int dim);
    int (*swiglu_backward)(const smelt_ops *o, float *dgate, float *dup, const float *dh, const float *gate,
                           const float *up, int ld_in, int n, int dim);
    int (*embedding_forward)(const smelt_ops *o, float *out, const float *table, const int *tokens, int n, int dim);
    int (*embedding_backward)(const smelt_ops *o, float *dtable, const float *dout, const int *tokens, int n, int dim);
    /* attention (kernels/attention.h) */
    int (*attention_forward)(const smelt_ops *o, float *out, float *lse, const float *q, const float *k,
                             const float *v, const attn_shape *s, const smelt_attn_call *c);
    int (*attention_backward)(const smelt_ops *o, float *dq, float *dk, float *dv, const float *dout,
                              const float *out, const float *lse, const float *q, const float *k, const float *v,
                              const attn_shape *s, const smelt_attn_call *c);
    /* losses over rows of logits (kernels/softmax.h, kernels/distill.h) */
    int (*cross_entropy)(const smelt_ops *o, float *losses, float *dlogits, const float *logits, const int *targets,
                         const float *weights, int n, int vocab);
    int (*distill_rows)(const smelt_ops *o, double *terms, float *dlogits, const float *zs, int ld_s, const float *zt,
                        int ld_t, const float *row_w, const distill_mix *mix, int n, int vocab);
    /* the optimizer (kernels/adamw.h): *out = sum of x^2 (fp64); the clipping decision; AdamW with
     * its gradient scaled by *grad_scale (NULL: 1) and skipped entirely when *skip is set */
    int (*sum_squares)(const smelt_ops *o, double *out, const float *x, size_t n);
    int (*clip_factor)(const smelt_ops *o, double *norm, float *scale, int *bad, const double *sumsq, double max_norm);
    int (*adamw)(const smelt_ops *o, float *p, float *m, float *v, const float *g, const float *grad_scale,
                 const int *skip, size_t n, const adamw_hparams *h, long step, int decay);
};

/* The CPU backend's table (static; never freed). */
const smelt_ops *smelt_ops_cpu(void);
/* "cpu" or "cuda" -> the device; -1 (ERR_INPUT naming the choices) for anything else. */
int smelt_device_parse(const char *name, smelt_device *out);

#endif
