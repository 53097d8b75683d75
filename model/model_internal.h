/* model_internal.h: what the model's source files share and nobody else uses: the training
 * activation layout, the inference scratch buffers and small helpers. */
#ifndef SMELT_MODEL_MODEL_INTERNAL_H
#define SMELT_MODEL_MODEL_INTERNAL_H

#include <stddef.h>

#include "kernels/attention.h"
#include "kernels/profile.h"
#include "kernels/team.h"
#include "model/layerwise.h"
#include "model/model.h"

/* What one layer's forward keeps for its backward, all [n_tokens, ...] row-major. */
typedef struct {
    float *x_in;  /* [N, H] the layer's input (residual stream) */
    float *xn1;   /* [N, H] input_layernorm output */
    float *rstd1; /* [N] */
    float *qkv;   /* [N, Wqkv] q | k | v after RoPE, Wqkv = (heads + 2 kv_heads) * head_dim */
    float *att;   /* [N, Q] attention output before o_proj, Q = heads * head_dim */
    float *lse;   /* [N, heads] log-sum-exp of the attention scores */
    float *x_mid; /* [N, H] residual after attention */
    float *xn2;   /* [N, H] post_attention_layernorm output */
    float *rstd2; /* [N] */
    float *gu;    /* [N, 2I] gate | up projections (overwritten by their gradients in backward) */
    float *h;     /* [N, I] silu(gate) * up */
} layer_acts;

struct model_acts {
    int max_tokens;
    float *mem; /* the one allocation of every float buffer below */
    size_t n_floats;
    layer_acts layers[MODEL_MAX_LAYERS];
    float *x_out, *rstd_f, *hidden;             /* last residual [N,H], [N], final normed [N,H] */
    float *d_res, *d_xn, *d_att, *d_qkv, *d_h;  /* backward scratch */
    float *att_work;                            /* attention tiles */
    size_t att_work_floats;
    int *tokens, *seq_lens, *pos;               /* copies of the last batch, positions */
    attn_seq *aseqs;                            /* the batch's sequences for the attention kernels */
    int n_tokens, n_seqs;
    int have_forward;                           /* a forward is waiting for its backward */
    double call_macs;                           /* the last training step's multiply-adds (model_call_macs x 3) */
};

/* Inference and loss scratch: growable buffers, allocated on first use. */
struct model_scratch {
    int cap_tokens; /* rows the token buffers below hold */
    float *x, *xn, *qkv, *att, *gu, *h, *sel;
    int *pos;
    float *att_work;
    size_t att_work_cap;
    attn_seq *aseqs; /* sequences of a no-gradient packed forward */
    size_t aseqs_cap;
    float *logits, *dlogits; /* LM-head chunks */
    size_t logits_cap, dlogits_cap;
    /* the decode team (model_infer.c): set while a team's parallel region runs */
    team_barrier *team;
    int team_n;
    float *scores;           /* [team_n, scores_ld] attention scores of each thread */
    size_t scores_cap, scores_ld;
};

/* Runs a call returning 0/-1 under PROF(kind); returns -1 from the caller on failure. */
#define PCALL(kind, call)              \
    do {                               \
        int pcall_rc_;                 \
        PROF(kind, pcall_rc_ = (call)); \
        if (pcall_rc_) return -1;      \
    } while (0)

/* Rows per inference chunk: prefill of longer inputs runs in chunks of this many tokens. */
#define MODEL_INFER_CHUNK 512

/* Token buffers of the inference scratch for chunks of up to `rows` tokens (grown, contents not
 * kept). 0 or -1 (ERR_NOMEM). */
int model_scratch_tokens(model *m, int rows);
/* Decode teams (model_infer.c; the serving engine's too): the team's threads by the weights of an
 * average layer, and whether every linear and the LM head stream (linear_streams: a team splits
 * them by output rows). */
int model_decode_threads(const model *m);
int model_decode_streams(const model *m);
/* One decoder layer of inference over the scratch buffers (model_infer.c; the tap is model.h's). */
int model_layer_infer(model *m, int l, int n, kv_cache *kv, const attn_seq *seqs, int n_seqs, const model_tap *tap);

/* RoPE tables covering positions 0 .. n_pos-1 (grown when needed). 0 or -1. */
int model_rope_ensure(model *m, int n_pos);
/* The scratch struct exists (0 or -1). */
int model_scratch_ensure(model *m);
/* Grows *buf to hold n floats (contents are not kept). 0 or -1 (ERR_NOMEM naming what). */
int model_grow(float **buf, size_t *cap, size_t n, const char *what);
/* Widest per-layer sizes. */
void model_max_widths(const model_config *c, int *max_q, int *max_qkv, int *max_i, int *max_heads);
/* 0, or -1 (ERR_INPUT) when a token is outside [0, vocab). */
int model_check_tokens(const model *m, const int *tokens, int n);

/* Multiply-adds of the products of a forward over `tokens` tokens: every layer's linear layers,
 * attention over `pairs` query-key pairs per layer (scores and values, every query head), and
 * `head_rows` rows of the LM head. Calls below THR_CALL_MACS run on one thread (kernels_call_begin). */
double model_call_macs(const model *m, double tokens, double pairs, double head_rows);

#endif
