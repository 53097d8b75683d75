/* cuda_llama.h: a Llama-family decoder on one GPU, composed from kernels/cuda/cuda_ops.h: the
 * training step of model/ (packed batches, chunked LM head with weighted cross-entropy, backward of
 * every parameter, global-norm clipping, AdamW) and inference (prefill into a contiguous KV cache,
 * decode). fp32 master weights, gradients and AdamW moments in model/weights.h's layout (so weights
 * move between host and device in one copy); bf16 copies of the weights, refreshed by AdamW, for
 * the GEMMs; fp32 activations with bf16 copies of every GEMM input. One allocation (an arena) holds
 * everything; a step leaves the GPU only for its loss at the end.
 *
 * It stands in for model/ on CUDA in bench_cuda and in the whole-step twin test until model/ calls
 * its ops through the op table (docs/cuda.md says what remains). Not supported: q/k/v biases
 * (Qwen2), head_dim other than 32/64/128, quantized linears. */
#ifndef SMELT_BENCH_CUDA_LLAMA_H
#define SMELT_BENCH_CUDA_LLAMA_H

#include <stdint.h>

#include "kernels/cuda/cuda_ops.h"
#include "model/model.h"
#include "model/optim.h"

typedef struct {
    float *x_in, *xn1, *rstd1, *qkv, *att, *lse, *x_mid, *xn2, *rstd2, *gu; /* fp32, as model_internal.h */
    uint16_t *xn1_16, *att16, *xn2_16, *h16;                                /* bf16 GEMM inputs */
} cl_layer_acts;

typedef struct {
    model_config cfg;
    cu_ctx *c;
    cu_arena arena;
    model_weights w, g, m, v; /* device layouts over the arena */
    uint16_t *w16;            /* bf16 copy of w (same offsets) */
    optim_range *ranges;      /* decay flags per run of the layout (host) */
    int n_ranges;
    int max_tokens, max_seqs, max_ctx, lm_rows, infer_rows;
    cl_layer_acts la[MODEL_MAX_LAYERS];
    float *x_out, *rstd_f, *hidden, *d_hidden, *d_res, *d_xn, *d_att, *d_qkv, *d_h;
    uint16_t *hidden16, *d16; /* d16: bf16 copies of the gradients the GEMMs read */
    float *logits, *losses, *row_w;
    int *tokens, *targets, *pos;
    int *emb_order, *emb_starts, n_groups; /* the batch's rows grouped by token (embedding gradient) */
    attn_seq *seqs;
    float *inv_freq, *rope_cos, *rope_sin;
    double *loss, *sumsq, *norm;
    float *clip_scale;
    int *bad;
    float *kc[MODEL_MAX_LAYERS], *vc[MODEL_MAX_LAYERS]; /* KV cache [max_ctx, kv width] */
    int kv_len;
    /* inference scratch for infer_rows tokens */
    float *ix, *ixn, *iqkv, *iatt, *igu, *ih;
    uint16_t *i16;
    int *ipos, *itok;
    attn_seq *iseq;
    int n_tokens, n_seqs, max_len;
} cuda_llama;

/* Bytes cl_init allocates on the device for these sizes. */
size_t cl_bytes(const model_config *cfg, int max_tokens, int max_seqs, int max_ctx, int infer_rows);
/* Uploads weights (host, model_weights layout of cfg; NULL: uniform random, scale 1/sqrt(fan-in),
 * norms 1, from seed) and allocates training buffers for max_tokens tokens in at most max_seqs
 * sequences (0: none) and a KV cache of max_ctx positions processed infer_rows at a time (0: none).
 * 0 or -1 (ERR_INPUT for an unsupported config, ERR_NOMEM). */
int cl_init(cuda_llama *L, cu_ctx *c, const model_config *cfg, const float *weights, uint64_t seed, int max_tokens,
            int max_seqs, int max_ctx, int infer_rows);
void cl_free(cuda_llama *L);

/* Forward of a packed batch, the LM head with cross-entropy against targets (weights per position,
 * as lm_ce_ctx), and the backward: gradients ASSIGNED (zeroed first). The loss stays on the device
 * (cl_loss). 0 or -1. */
int cl_forward_backward(cuda_llama *L, const model_batch *b, const int *targets, const float *weights);
/* Global-norm clipping and AdamW with the schedule's lr at `step` completed steps (as optim_step). */
int cl_optim_step(cuda_llama *L, const optim_config *oc, long step);
/* The loss of the last cl_forward_backward and the gradient norm of the last cl_optim_step (waits). */
int cl_loss(cuda_llama *L, double *loss, double *grad_norm);
int cl_download(cuda_llama *L, float *host, const float *dev, size_t n);

/* Runs tokens [n] at positions kv_len.. into the KV cache; logits [vocab] (host) of the last row
 * when logits != NULL. kv_len = 0 starts a new sequence. 0 or -1. */
int cl_extend(cuda_llama *L, const int *tokens, int n, float *logits);

#endif
