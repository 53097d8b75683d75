/* model.h: the Llama-family decoder on the CPU: training forward over packed batches, a chunked
 * LM head + loss (logits never materialized for all positions), backward for every parameter,
 * and KV-cache inference (prefill, decode, logits only where asked). A model is a config, its
 * parameters (one allocation, model/weights.h), optionally gradients in the same layout, and
 * activations (one allocation sized for a maximum number of tokens). Not thread-safe: one
 * model is driven by one thread (the kernels use all cores inside each call). */
#ifndef SMELT_MODEL_MODEL_H
#define SMELT_MODEL_MODEL_H

#include <stddef.h>

#include "kernels/linear.h"
#include "model/config.h"
#include "model/kvcache.h"
#include "model/weights.h"

/* The forward descriptors of one layer's projections. q/k/v and gate/up are each one fused
 * linear over rows that are adjacent in the weight layout ([q; k; v] with out = (n_heads +
 * 2 n_kv_heads) * head_dim, and [gate; up] with out = 2 * intermediate): one GEMM each. A
 * quantization stage may replace a descriptor (its rows keep this order); inference then runs
 * the quantized format, and training (backward) refuses it. */
typedef struct {
    linear qkv, o, gate_up, down;
} layer_linears;

/* The arithmetic of the products (model_set_precision). */
typedef enum {
    MODEL_FP32 = 0, /* every product in fp32 */
    MODEL_BF16 = 1, /* products of bf16-rounded operands with fp32 sums (AVX512_BF16 CPUs) */
} model_precision;

struct model_acts; /* training activations (model_internal.h) */
struct model_quant; /* quantized linears (model/qmodel.h) */
struct model_scratch; /* inference scratch (model_internal.h) */

typedef struct {
    model_config cfg;
    model_weights w;                      /* parameters; owned (freed by model_free) */
    model_weights grad;                   /* gradients, same layout; grad.mem NULL until model_reserve(train) */
    layer_linears lin[MODEL_MAX_LAYERS];  /* per-layer forward descriptors (fp32 over w by default) */
    linear lm_head;                       /* [vocab, hidden] (the embedding when tied) */
    /* RoPE: inverse frequencies and cos/sin tables for positions 0 .. rope_len-1, grown on demand */
    float *inv_freq, *rope_cos, *rope_sin;
    int rope_len;
    int max_tokens;                       /* tokens one training forward may hold (model_reserve_train) */
    int lm_chunk_rows;                    /* rows per LM-head chunk; 0: automatic (about 8 MB of logits) */
    struct model_acts *acts;              /* NULL until model_reserve(train) */
    struct model_scratch *scratch;        /* inference buffers, allocated by the first model_extend */
    struct model_quant *quant;            /* quantized linears (qmodel.h), owned; NULL: all fp32 */
    model_precision precision;            /* of the products (model_set_precision); MODEL_FP32 by default */
    gemm_bf16_b *w_bf16;                  /* bf16 copies of the linears (4 per layer, then the LM head) in the
                                           * packed layout of the bf16 products, or NULL */
    int n_bf16;                           /* entries of w_bf16 */
} model;

/* Takes a config and weights: *w is moved into the model (w is left empty), or, with w == NULL,
 * zeroed weights are allocated. Validates the config. 0 or -1; on failure the model is empty
 * and *w untouched. */
int model_init(model *m, const model_config *cfg, model_weights *w);
/* Frees everything the model owns (weights, gradients, activations, tables). */
void model_free(model *m);

/* Allocates what training needs for batches of up to max_tokens tokens: the gradient buffer
 * (zeroed) and one activation allocation. Calling it again resizes the activations (gradients
 * are kept). 0 or -1 (ERR_NOMEM with the size asked for, ERR_INPUT for max_tokens < 1). */
int model_reserve_train(model *m, int max_tokens);
/* Bytes model_reserve_train would allocate for activations (for messages and planning). */
size_t model_train_act_bytes(const model_config *cfg, int max_tokens);

/* Rebuilds the descriptors of lin[] and lm_head from w (after replacing weights) in the precision
 * in effect (refreshing the bf16 copies when the model keeps them), then the quantized linears of
 * m->quant where there are some. */
void model_bind_linears(model *m);

/* Sets the precision of the products. MODEL_BF16 (mixed precision): every linear layer and the LM
 * head multiply bf16-rounded operands with fp32 sums, forward and backward; attention (the fused
 * fp32 kernel), the parameters, gradients, optimizer state, norms, softmax, losses and residual
 * stream stay fp32.
 * With bf16_weights (inference only: backward refuses it), the linear weights and the LM head are
 * also STORED as bf16 copies, so a decode step reads half the bytes; the fp32 parameters stay
 * the model's. Where the CPU lacks AVX512_BF16 (bf16_available), bf16 falls back to fp32.
 * Returns the precision in effect, or -1 (ERR_NOMEM for the bf16 copies). */
int model_set_precision(model *m, model_precision p, int bf16_weights);
/* "fp32" or "bf16"; and the parse of those names (0, or -1 with ERR_INPUT naming the choices). */
const char *model_precision_name(model_precision p);
int model_precision_parse(const char *s, model_precision *p);

/* ---- training ---- */

/* A packed batch: n_seqs sequences of seq_lens[i] tokens laid one after the other in tokens;
 * each attends only to itself and its positions restart at 0. */
typedef struct {
    const int *tokens;   /* [n_tokens], each in [0, vocab) */
    const int *seq_lens; /* [n_seqs], each >= 1, summing to n_tokens */
    int n_tokens, n_seqs;
} model_batch;

/* Forward over a packed batch, keeping what backward needs. *hidden receives the final normed
 * hidden states [n_tokens, hidden] (owned by the model, valid until the next forward).
 * 0 or -1 (ERR_INPUT: a token out of range, lengths that do not add up, more tokens than
 * reserved; the message says which and how to fix it). */
int model_forward(model *m, const model_batch *b, const float **hidden);

/* A forward without gradients (a distillation teacher, evaluation): hidden [n_tokens, hidden]
 * (caller-owned, ASSIGNED) receives the final normed hidden states of the packed batch. Keeps no
 * activations: it needs no model_reserve_train, only buffers for one layer of n_tokens tokens
 * (grown on demand). 0 or -1 (ERR_INPUT as model_forward). */
int model_forward_hidden(model *m, const model_batch *b, float *hidden);

/* Backward of the last model_forward: d_hidden [n_tokens, hidden] is d loss / d hidden (from
 * model_lm_loss). Every parameter gradient is ACCUMULATED (+=) into m->grad, so micro-batches
 * add up; model_zero_grad clears them. 0 or -1. */
int model_backward(model *m, const float *d_hidden);
void model_zero_grad(model *m);

/* ---- LM head and loss, in chunks of positions ---- */

/* One chunk of positions handed to a loss callback. */
typedef struct {
    int row0, n_rows;     /* positions row0 .. row0+n_rows-1 of the batch */
    int vocab;
    const float *hidden;  /* [n_rows, hidden] the final normed hidden states of these rows */
    const float *logits;  /* [n_rows, vocab] the model's logits for these rows */
    float *dlogits;       /* [n_rows, vocab] to ASSIGN with d loss / d logits; NULL when no
                           * gradient is wanted (evaluation) */
} lm_chunk;

/* A loss over chunks of logits: adds the chunk's loss to *loss and, when c->dlogits is not NULL,
 * fills it. Returns 0 or -1 (with err_set). The total loss is the sum over chunks, so
 * normalization (a mean over tokens) belongs in the per-position weights. Distillation losses
 * (forward/reverse KL, JSD) are callbacks whose ctx holds the teacher: in the callback they
 * compute the teacher's logits for the same rows with model_logits and compare. */
typedef int (*lm_loss_fn)(void *ctx, const lm_chunk *c, double *loss);

/* Runs the LM head over hidden [n, hidden] in chunks of rows: logits for a chunk, fn's loss
 * and dlogits, then d_hidden rows (ASSIGNED) and the LM head gradient (ACCUMULATED into
 * m->grad.lm_head, the embedding's gradient when tied), then the chunk is dropped. With
 * d_hidden == NULL only the loss is computed (no gradient buffer needed). *loss receives the
 * total. 0 or -1. */
int model_lm_loss(model *m, const float *hidden, float *d_hidden, int n, lm_loss_fn fn, void *ctx, double *loss);

/* Rows of logits at a time used by model_lm_loss: m->lm_chunk_rows when set, else about 2M floats
 * of logits (16 .. 1024 rows) for this vocabulary (memory: 2 x rows x vocab floats). */
int model_lm_chunk_rows(const model *m);

/* The built-in loss: weighted cross-entropy against targets. */
typedef struct {
    const int *targets;   /* [n] next-token ids, < 0 for positions without a target */
    const float *weights; /* [n] per-position weights (e.g. 1/count for a mean; action tokens
                           * weighted differently from prompt tokens); NULL: all 1 */
} lm_ce_ctx;
int lm_loss_ce(void *ctx, const lm_chunk *c, double *loss);

/* Next-token targets of a packed batch: targets[i] = tokens[i+1] inside a sequence, -1 on each
 * sequence's last token. Returns how many targets are >= 0. */
int model_batch_targets(const model_batch *b, int *targets);

/* logits [n, vocab] = hidden [n, hidden] times the LM head (for teachers and evaluation). */
int model_logits(model *m, float *logits, const float *hidden, int n);

/* ---- inference with a KV cache ---- */

/* Runs tokens [n] at positions kv->len .. kv->len+n-1, appending their keys and values to kv
 * (prefill when n > 1, a decode step when n == 1; long inputs are processed in chunks).
 * Logits: for the n_out rows listed in out_rows (indices into tokens, ascending), written to
 * logits [n_out, vocab]; with out_rows == NULL and n_out == 1, the last row (ranking, decoding);
 * n_out == 0: no logits (prefix building). 0 or -1 (ERR_INPUT when the cache is full, a token is
 * out of range, or kv belongs to another architecture). */
int model_extend(model *m, kv_cache *kv, const int *tokens, int n, const int *out_rows, int n_out, float *logits);
/* One decode step: model_extend of one token, logits [vocab] of it. */
int model_decode(model *m, kv_cache *kv, int token, float *logits);

/* Parameters counted once (tied head once). */
size_t model_n_params(const model_config *cfg);

#endif
