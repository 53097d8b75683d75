/* model_train.c: the training forward over a packed batch and the backward of every parameter.
 * Shapes: N tokens, H hidden, per layer Q = heads*head_dim, KV = kv_heads*head_dim,
 * W = Q + 2 KV (the fused q|k|v row), I intermediate. */
#include <string.h>

#include "common/error.h"
#include "kernels/attention.h"
#include "kernels/embedding.h"
#include "kernels/linear.h"
#include "kernels/rmsnorm.h"
#include "kernels/rope.h"
#include "kernels/swiglu.h"
#include "kernels/threads.h"
#include "model/model.h"
#include "model/model_internal.h"

static int check_batch(const model *m, const model_batch *b) {
    if (!m->acts)
        return err_set(ERR_INPUT, "model_forward needs training buffers; call model_reserve_train first");
    if (b->n_tokens < 1 || b->n_seqs < 1)
        return err_set(ERR_INPUT, "empty batch (%d tokens in %d sequences)", b->n_tokens, b->n_seqs);
    if (b->n_tokens > m->acts->max_tokens)
        return err_set(ERR_INPUT, "the batch has %d tokens but the model reserved room for %d; split the batch or "
                       "reserve more (model_reserve_train)", b->n_tokens, m->acts->max_tokens);
    long sum = 0;
    for (int s = 0; s < b->n_seqs; s++) {
        if (b->seq_lens[s] < 1)
            return err_set(ERR_INPUT, "sequence %d of the batch has length %d; every sequence needs a token", s,
                           b->seq_lens[s]);
        sum += b->seq_lens[s];
    }
    if (sum != b->n_tokens)
        return err_set(ERR_INPUT, "the sequence lengths add up to %ld but the batch has %d tokens", sum, b->n_tokens);
    return model_check_tokens(m, b->tokens, b->n_tokens);
}

/* Runs attention (forward or backward) of every sequence of the batch for layer l. */
static int batch_attention(model *m, int l, int backward) {
    struct model_acts *A = m->acts;
    const model_config *c = &m->cfg;
    const layer_config *lc = &c->layers[l];
    const int D = c->head_dim, Q = lc->n_heads * D, KV = lc->n_kv_heads * D, W = Q + 2 * KV;
    layer_acts *a = &A->layers[l];
    attn_shape sh = {.n_heads = lc->n_heads, .n_kv_heads = lc->n_kv_heads, .head_dim = D, .ldq = W, .ldk = W,
                     .ldv = W, .ldo = Q, .bf16 = m->precision == MODEL_BF16};
    const float *q = a->qkv, *k = q + Q, *v = q + Q + KV;
    if (!backward)
        return attention_forward(a->att, a->lse, q, k, v, &sh, A->aseqs, A->n_seqs, A->att_work, A->att_work_floats);
    return attention_backward(A->d_qkv, A->d_qkv + Q, A->d_qkv + Q + KV, A->d_att, a->att, a->lse, q, k, v, &sh,
                              A->aseqs, A->n_seqs, A->att_work, A->att_work_floats);
}

double model_call_macs(const model *m, double tokens, double pairs, double head_rows) {
    const model_config *c = &m->cfg;
    double lin = 0, att = 0;
    for (int l = 0; l < c->n_layers; l++) {
        const layer_config *lc = &c->layers[l];
        const double Q = (double)lc->n_heads * c->head_dim, KV = (double)lc->n_kv_heads * c->head_dim;
        lin += (Q + 2 * KV) * c->hidden + Q * c->hidden + 3.0 * lc->intermediate * c->hidden;
        att += 2 * Q;
    }
    return tokens * lin + pairs * att + head_rows * (double)c->vocab * c->hidden;
}

static int forward_inner(model *m, const model_batch *b, const float **hidden);

/* The training step's calls (forward, loss with gradients, backward, optimizer) run on one thread
 * when the step is small (kernels_call_begin): its work, three forwards, is set here. */
int model_forward(model *m, const model_batch *b, const float **hidden) {
    if (check_batch(m, b)) return -1;
    double pairs = 0;
    for (int s = 0; s < b->n_seqs; s++) pairs += 0.5 * b->seq_lens[s] * (b->seq_lens[s] + 1.0);
    m->acts->call_macs = 3 * model_call_macs(m, b->n_tokens, pairs, b->n_tokens);
    const int cap = kernels_call_begin(m->acts->call_macs);
    const int rc = forward_inner(m, b, hidden);
    kernels_cap_threads(cap);
    return rc;
}

static int forward_inner(model *m, const model_batch *b, const float **hidden) {
    struct model_acts *A = m->acts;
    const model_config *c = &m->cfg;
    const int N = b->n_tokens, H = c->hidden, D = c->head_dim;
    int max_len = 0;
    memcpy(A->tokens, b->tokens, sizeof(int) * N);
    memcpy(A->seq_lens, b->seq_lens, sizeof(int) * b->n_seqs);
    for (int s = 0, i = 0; s < b->n_seqs; s++) {
        A->aseqs[s] = (attn_seq){.q0 = i, .nq = b->seq_lens[s], .k0 = i, .nkv = b->seq_lens[s]};
        for (int p = 0; p < b->seq_lens[s]; p++) A->pos[i++] = p;
        if (b->seq_lens[s] > max_len) max_len = b->seq_lens[s];
    }
    A->n_tokens = N;
    A->n_seqs = b->n_seqs;
    A->have_forward = 0;
    if (model_rope_ensure(m, max_len)) return -1;

    PROF(PROF_EMBED, embedding_forward(A->layers[0].x_in, m->w.embed, A->tokens, N, H));
    for (int l = 0; l < c->n_layers; l++) {
        const layer_config *lc = &c->layers[l];
        const layer_weights *lw = &m->w.layers[l];
        const layer_linears *ln = &m->lin[l];
        const int Q = lc->n_heads * D, KV = lc->n_kv_heads * D, W = Q + 2 * KV, I = lc->intermediate;
        layer_acts *a = &A->layers[l];
        float *next = l + 1 < c->n_layers ? A->layers[l + 1].x_in : A->x_out;

        PROF(PROF_NORM, rmsnorm_forward(a->xn1, a->rstd1, a->x_in, lw->attn_norm, N, H, c->rms_eps));
        PCALL(PROF_QKV, linear_forward(a->qkv, W, a->xn1, H, &ln->qkv, N, 0));
        PROF(PROF_ROPE, rope_forward(a->qkv, W, A->pos, m->rope_cos, m->rope_sin, N, lc->n_heads, D);
             rope_forward(a->qkv + Q, W, A->pos, m->rope_cos, m->rope_sin, N, lc->n_kv_heads, D));
        PCALL(PROF_ATTN, batch_attention(m, l, 0));
        PROF(PROF_OTHER, memcpy(a->x_mid, a->x_in, sizeof(float) * N * H));
        PCALL(PROF_O, linear_forward(a->x_mid, H, a->att, Q, &ln->o, N, 1));

        PROF(PROF_NORM, rmsnorm_forward(a->xn2, a->rstd2, a->x_mid, lw->mlp_norm, N, H, c->rms_eps));
        PCALL(PROF_MLP_GEMM, linear_forward(a->gu, 2 * I, a->xn2, H, &ln->gate_up, N, 0));
        PROF(PROF_SWIGLU, swiglu_forward(a->h, a->gu, a->gu + I, 2 * I, N, I));
        PROF(PROF_OTHER, memcpy(next, a->x_mid, sizeof(float) * N * H));
        PCALL(PROF_MLP_GEMM, linear_forward(next, H, a->h, I, &ln->down, N, 1));
    }
    PROF(PROF_NORM, rmsnorm_forward(A->hidden, A->rstd_f, A->x_out, m->w.final_norm, N, H, c->rms_eps));
    A->have_forward = 1;
    if (hidden) *hidden = A->hidden;
    return 0;
}

static int check_fp32(const model *m) {
    for (int l = 0; l < m->cfg.n_layers; l++) {
        const layer_linears *ln = &m->lin[l];
        if (ln->qkv.format != LINEAR_F32 || ln->o.format != LINEAR_F32 || ln->gate_up.format != LINEAR_F32 ||
            ln->down.format != LINEAR_F32)
            return err_set(ERR_INPUT, "layer %d has quantized or bf16-stored projections; backward needs the fp32 "
                           "weights (train before quantizing; for bf16 training use model_set_precision without "
                           "bf16 weights)", l);
    }
    if (m->lm_head.format != LINEAR_F32)
        return err_set(ERR_INPUT, "the LM head is quantized; backward needs the fp32 model");
    return 0;
}

static int backward_inner(model *m, const float *d_hidden);

int model_backward(model *m, const float *d_hidden) {
    const int cap = kernels_call_begin(m->acts ? m->acts->call_macs : 0);
    const int rc = backward_inner(m, d_hidden);
    kernels_cap_threads(cap);
    return rc;
}

static int backward_inner(model *m, const float *d_hidden) {
    struct model_acts *A = m->acts;
    if (!A || !A->have_forward)
        return err_set(ERR_INPUT, "model_backward without a model_forward before it (each forward has one backward)");
    if (check_fp32(m)) return -1;
    const model_config *c = &m->cfg;
    const int N = A->n_tokens, H = c->hidden, D = c->head_dim;
    A->have_forward = 0; /* the backward consumes activations (gate|up become their gradients) */

    PROF(PROF_OTHER, memset(A->d_res, 0, sizeof(float) * N * H));
    PROF(PROF_NORM, rmsnorm_backward(A->d_res, m->grad.final_norm, d_hidden, A->x_out, m->w.final_norm, A->rstd_f, N, H));
    for (int l = c->n_layers - 1; l >= 0; l--) {
        const layer_config *lc = &c->layers[l];
        const layer_weights *lw = &m->w.layers[l];
        layer_weights *gw = &m->grad.layers[l];
        const layer_linears *ln = &m->lin[l];
        const int Q = lc->n_heads * D, KV = lc->n_kv_heads * D, W = Q + 2 * KV, I = lc->intermediate;
        layer_acts *a = &A->layers[l];

        /* MLP: next = x_mid + h W_down^T, h = silu(gate) * up, [gate|up] = xn2 W_gu^T */
        PCALL(PROF_MLP_GEMM, linear_backward_input(A->d_h, I, A->d_res, H, &ln->down, N, 0));
        PCALL(PROF_MLP_GEMM, linear_backward_params(gw->w_down, NULL, A->d_res, H, a->h, I, N, H, I, ln->down.bf16_compute));
        PROF(PROF_SWIGLU, swiglu_backward(a->gu, a->gu + I, A->d_h, a->gu, a->gu + I, 2 * I, N, I));
        PCALL(PROF_MLP_GEMM, linear_backward_input(A->d_xn, H, a->gu, 2 * I, &ln->gate_up, N, 0));
        /* gate|up adjacent */
        PCALL(PROF_MLP_GEMM, linear_backward_params(gw->w_gate, NULL, a->gu, 2 * I, a->xn2, H, N, 2 * I, H, ln->gate_up.bf16_compute));
        PROF(PROF_NORM, rmsnorm_backward(A->d_res, gw->mlp_norm, A->d_xn, a->x_mid, lw->mlp_norm, a->rstd2, N, H));

        /* attention: x_mid = x_in + att W_o^T */
        PCALL(PROF_O, linear_backward_input(A->d_att, Q, A->d_res, H, &ln->o, N, 0));
        PCALL(PROF_O, linear_backward_params(gw->wo, NULL, A->d_res, H, a->att, Q, N, H, Q, ln->o.bf16_compute));
        PCALL(PROF_ATTN, batch_attention(m, l, 1));
        PROF(PROF_ROPE, rope_backward(A->d_qkv, W, A->pos, m->rope_cos, m->rope_sin, N, lc->n_heads, D);
             rope_backward(A->d_qkv + Q, W, A->pos, m->rope_cos, m->rope_sin, N, lc->n_kv_heads, D));
        PCALL(PROF_QKV, linear_backward_input(A->d_xn, H, A->d_qkv, W, &ln->qkv, N, 0));
        PCALL(PROF_QKV, linear_backward_params(gw->wq, c->attention_bias ? gw->bq : NULL, A->d_qkv, W, a->xn1, H, N, W, H,
                                               ln->qkv.bf16_compute));
        PROF(PROF_NORM, rmsnorm_backward(A->d_res, gw->attn_norm, A->d_xn, a->x_in, lw->attn_norm, a->rstd1, N, H));
    }
    PROF(PROF_EMBED, embedding_backward(m->grad.embed, A->d_res, A->tokens, N, H));
    return 0;
}
