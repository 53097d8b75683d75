/* cuda_llama.c: the decoder of cuda_llama.h on one GPU. The order of operations follows
 * model/model_train.c and model/model_infer.c line for line, with each kernel replaced by its CUDA
 * twin and each linear by a bf16 GEMM (fp32 sums) over the bf16 copies of its input and weight.
 * Shapes: N tokens, H hidden, per layer Q = heads*head_dim, KV = kv_heads*head_dim, W = Q + 2 KV,
 * I intermediate, V vocab. */
#include "bench/cuda_llama.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "kernels/rope.h"

#define LM_CHUNK_FLOATS ((size_t)1 << 27) /* logits per LM-head chunk: 512 MB */

typedef struct {
    unsigned char *base;
    size_t off;
} carver;
static void *take(carver *cv, size_t bytes) {
    const size_t at = (cv->off + 255) & ~(size_t)255;
    cv->off = at + bytes;
    return cv->base ? cv->base + at : NULL;
}
#define TAKE_F(cv, n) ((float *)take(cv, sizeof(float) * (size_t)(n)))
#define TAKE_H(cv, n) ((uint16_t *)take(cv, 2 * (size_t)(n)))

static void widths(const model_config *c, int *mq, int *mw, int *mi, int *mkv) {
    *mq = *mw = *mi = *mkv = 0;
    for (int l = 0; l < c->n_layers; l++) {
        const layer_config *lc = &c->layers[l];
        const int q = lc->n_heads * c->head_dim, kv = lc->n_kv_heads * c->head_dim;
        *mq = q > *mq ? q : *mq, *mw = q + 2 * kv > *mw ? q + 2 * kv : *mw;
        *mi = lc->intermediate > *mi ? lc->intermediate : *mi, *mkv = kv > *mkv ? kv : *mkv;
    }
}

/* Carves every buffer out of base (or only counts, base NULL); returns the bytes. */
static size_t layout(cuda_llama *L, unsigned char *base) {
    const model_config *c = &L->cfg;
    carver cv = {base, 0};
    const size_t np = weights_count(c), N = (size_t)L->max_tokens, H = (size_t)c->hidden, V = (size_t)c->vocab;
    int mq, mw, mi, mkv;
    widths(c, &mq, &mw, &mi, &mkv);
    float *wm = TAKE_F(&cv, np), *gm = TAKE_F(&cv, np), *mm = TAKE_F(&cv, np), *vm = TAKE_F(&cv, np);
    L->w16 = TAKE_H(&cv, np);
    if (base) {
        /* layouts over device memory (weights_layout leaves mem NULL: borrowed memory) */
        weights_layout(&L->w, c, wm), weights_layout(&L->g, c, gm), weights_layout(&L->m, c, mm);
        weights_layout(&L->v, c, vm);
        L->w.mem = wm, L->g.mem = gm, L->m.mem = mm, L->v.mem = vm;
    }
    const size_t d16 = N * (size_t)(mw > 2 * mi ? (mw > (int)H ? mw : (int)H) : 2 * mi);
    if (N) {
        for (int l = 0; l < c->n_layers; l++) {
            const layer_config *lc = &c->layers[l];
            const size_t q = (size_t)lc->n_heads * c->head_dim, w = q + 2 * (size_t)lc->n_kv_heads * c->head_dim;
            const size_t I = (size_t)lc->intermediate;
            cl_layer_acts *a = &L->la[l];
            a->x_in = TAKE_F(&cv, N * H), a->xn1 = TAKE_F(&cv, N * H), a->rstd1 = TAKE_F(&cv, N);
            a->qkv = TAKE_F(&cv, N * w), a->att = TAKE_F(&cv, N * q), a->lse = TAKE_F(&cv, N * lc->n_heads);
            a->x_mid = TAKE_F(&cv, N * H), a->xn2 = TAKE_F(&cv, N * H), a->rstd2 = TAKE_F(&cv, N);
            a->gu = TAKE_F(&cv, N * 2 * I);
            a->xn1_16 = TAKE_H(&cv, N * H), a->att16 = TAKE_H(&cv, N * q), a->xn2_16 = TAKE_H(&cv, N * H);
            a->h16 = TAKE_H(&cv, N * I);
        }
        L->x_out = TAKE_F(&cv, N * H), L->rstd_f = TAKE_F(&cv, N), L->hidden = TAKE_F(&cv, N * H);
        L->d_hidden = TAKE_F(&cv, N * H), L->d_res = TAKE_F(&cv, N * H), L->d_xn = TAKE_F(&cv, N * H);
        L->d_att = TAKE_F(&cv, N * mq), L->d_qkv = TAKE_F(&cv, N * mw), L->d_h = TAKE_F(&cv, N * mi);
        L->hidden16 = TAKE_H(&cv, N * H);
        L->d16 = TAKE_H(&cv, d16 > (size_t)L->lm_rows * V ? d16 : (size_t)L->lm_rows * V);
        L->losses = TAKE_F(&cv, L->lm_rows), L->row_w = TAKE_F(&cv, N);
        L->tokens = (int *)TAKE_F(&cv, N), L->targets = (int *)TAKE_F(&cv, N);
        L->emb_order = (int *)TAKE_F(&cv, N), L->emb_starts = (int *)TAKE_F(&cv, N + 1);
        L->seqs = (attn_seq *)take(&cv, sizeof(attn_seq) * (size_t)L->max_seqs);
    }
    L->logits = TAKE_F(&cv, (L->lm_rows > 1 ? (size_t)L->lm_rows : 1) * V);
    const int max_pos = L->max_tokens > L->max_ctx ? L->max_tokens : L->max_ctx;
    L->pos = (int *)TAKE_F(&cv, N);
    L->inv_freq = TAKE_F(&cv, c->head_dim / 2);
    L->rope_cos = TAKE_F(&cv, (size_t)max_pos * (c->head_dim / 2)), L->rope_sin = TAKE_F(&cv, (size_t)max_pos * (c->head_dim / 2));
    L->loss = (double *)take(&cv, 8), L->sumsq = (double *)take(&cv, 8), L->norm = (double *)take(&cv, 8);
    L->clip_scale = TAKE_F(&cv, 1), L->bad = (int *)TAKE_F(&cv, 1);
    if (L->max_ctx) {
        const size_t R = (size_t)L->infer_rows;
        for (int l = 0; l < c->n_layers; l++) {
            const size_t kv = (size_t)c->layers[l].n_kv_heads * c->head_dim;
            L->kc[l] = TAKE_F(&cv, (size_t)L->max_ctx * kv), L->vc[l] = TAKE_F(&cv, (size_t)L->max_ctx * kv);
        }
        L->ix = TAKE_F(&cv, R * H), L->ixn = TAKE_F(&cv, R * H), L->iqkv = TAKE_F(&cv, R * mw);
        L->iatt = TAKE_F(&cv, R * mq), L->igu = TAKE_F(&cv, R * 2 * mi), L->ih = TAKE_F(&cv, R * mi);
        L->ipos = (int *)TAKE_F(&cv, R), L->itok = (int *)TAKE_F(&cv, R), L->iseq = (attn_seq *)take(&cv, sizeof(attn_seq));
        L->i16 = TAKE_H(&cv, R * (size_t)(mi > mq ? (mi > (int)H ? mi : (int)H) : (mq > (int)H ? mq : (int)H)));
    }
    return cv.off + 256;
}

size_t cl_bytes(const model_config *cfg, int max_tokens, int max_seqs, int max_ctx, int infer_rows) {
    cuda_llama L;
    memset(&L, 0, sizeof L);
    L.cfg = *cfg, L.max_tokens = max_tokens, L.max_seqs = max_seqs, L.max_ctx = max_ctx, L.infer_rows = infer_rows;
    L.lm_rows = max_tokens ? (int)(LM_CHUNK_FLOATS / cfg->vocab < (size_t)max_tokens ? LM_CHUNK_FLOATS / cfg->vocab : (size_t)max_tokens) : 0;
    return layout(&L, NULL);
}

/* Uniform weights of standard deviation 1/sqrt(fan-in) (0.02 for the embedding), norms 1: filled on
 * the host in pieces of 16M floats and uploaded. */
static int random_weights(cuda_llama *L, uint64_t seed) {
    const int nt = weights_tensors(&L->w, &L->cfg, NULL, 0);
    weights_tensor *t = xmalloc(sizeof *t * (size_t)nt);
    float *buf = xmalloc(sizeof(float) * ((size_t)1 << 24));
    if (!t || !buf) return free(t), free(buf), -1;
    weights_tensors(&L->w, &L->cfg, t, nt);
    uint64_t s = seed * 0x9E3779B97F4A7C15ull + 1;
    int rc = 0;
    for (int i = 0; i < nt && !rc; i++) {
        const size_t off = (size_t)(t[i].data - L->w.mem), n = (size_t)t[i].shape[0] * (t[i].ndim == 2 ? (size_t)t[i].shape[1] : 1);
        const int embed = !strcmp(t[i].name, "model.embed_tokens.weight");
        const double a = t[i].ndim == 2 ? sqrt(3.0) * (embed ? 0.02 : 1.0 / sqrt((double)t[i].shape[1])) : 0;
        for (size_t done = 0; done < n && !rc; done += (size_t)1 << 24) {
            const size_t k = n - done < ((size_t)1 << 24) ? n - done : ((size_t)1 << 24);
            for (size_t j = 0; j < k; j++) {
                s ^= s >> 12, s ^= s << 25, s ^= s >> 27;
                buf[j] = t[i].ndim == 2 ? (float)(a * (2.0 * (double)((s * 0x2545F4914F6CDD1Dull) >> 11) / 9007199254740992.0 - 1))
                                        : (strstr(t[i].name, "norm") ? 1.0f : 0.0f);
            }
            rc = cu_upload(L->c, L->w.mem + off + done, buf, k * sizeof(float)) || cu_sync(L->c);
        }
    }
    free(t), free(buf);
    return rc ? -1 : 0;
}

int cl_init(cuda_llama *L, cu_ctx *c, const model_config *cfg, const float *weights, uint64_t seed, int max_tokens,
            int max_seqs, int max_ctx, int infer_rows) {
    memset(L, 0, sizeof *L);
    if (config_validate(cfg)) return -1;
    if (cfg->attention_bias) return err_set(ERR_INPUT, "cuda_llama: q/k/v biases (Qwen2) are not supported");
    if (!cu_attention_supports(cfg->head_dim))
        return err_set(ERR_INPUT, "cuda_llama: head_dim %d (the CUDA attention runs 32, 64, 128)", cfg->head_dim);
    L->cfg = *cfg, L->c = c, L->max_tokens = max_tokens, L->max_seqs = max_seqs, L->max_ctx = max_ctx;
    L->infer_rows = max_ctx ? infer_rows : 0;
    L->lm_rows = max_tokens ? (int)(LM_CHUNK_FLOATS / cfg->vocab < (size_t)max_tokens ? LM_CHUNK_FLOATS / cfg->vocab : (size_t)max_tokens) : 0;
    const size_t bytes = layout(L, NULL);
    if (cu_arena_init(c, &L->arena, bytes, "the GPU model (weights, gradients, AdamW moments, activations)")) return -1;
    layout(L, L->arena.base);
    const size_t np = weights_count(cfg);
    int rc = weights ? cu_upload(c, L->w.mem, weights, np * sizeof(float)) : random_weights(L, seed);
    rc = rc || cu_zero(c, L->g.mem, np * 4) || cu_zero(c, L->m.mem, np * 4) || cu_zero(c, L->v.mem, np * 4);
    rc = rc || cu_convert(c, L->w16, CU_BF16, L->w.mem, CU_F32, np);
    /* RoPE tables for every position a batch or the cache reaches */
    float *inv = xmalloc(sizeof(float) * (size_t)(cfg->head_dim / 2));
    rope_scaling sc = {.llama3 = cfg->rope_scaling == ROPE_SCALING_LLAMA3, .factor = cfg->rope_factor,
                       .low_freq_factor = cfg->rope_low_freq_factor, .high_freq_factor = cfg->rope_high_freq_factor,
                       .original_max_pos = cfg->rope_original_max_pos};
    if (!inv) rc = -1;
    else rope_inv_freq(inv, cfg->head_dim, cfg->rope_theta, &sc);
    const int max_pos = max_tokens > max_ctx ? max_tokens : max_ctx;
    rc = rc || cu_upload(c, L->inv_freq, inv, sizeof(float) * (size_t)(cfg->head_dim / 2)) ||
         cu_rope_tables(c, L->rope_cos, L->rope_sin, L->inv_freq, 0, max_pos, cfg->head_dim / 2) || cu_sync(c);
    free(inv);
    /* decay per run of the layout: matrices decay, norms do not (optim_config.decay_all aside) */
    const int nt = weights_tensors(&L->w, cfg, NULL, 0);
    weights_tensor *t = xmalloc(sizeof *t * (size_t)nt);
    L->ranges = xmalloc(sizeof *L->ranges * (size_t)nt);
    if (rc || !t || !L->ranges) {
        free(t);
        cl_free(L);
        return -1;
    }
    weights_tensors(&L->w, cfg, t, nt);
    for (int i = 0; i < nt; i++) {
        const long off = (long)(t[i].data - L->w.mem), len = (long)t[i].shape[0] * (t[i].ndim == 2 ? (long)t[i].shape[1] : 1);
        L->ranges[L->n_ranges++] = (optim_range){off, len, t[i].ndim == 2};
    }
    free(t);
    return 0;
}

void cl_free(cuda_llama *L) {
    if (L->c) cu_arena_free(L->c, &L->arena);
    free(L->ranges);
    memset(L, 0, sizeof *L);
}

/* the bf16 copy of a tensor of the fp32 layout */
static const uint16_t *w16(const cuda_llama *L, const float *w) { return L->w16 + (w - L->w.mem); }

/* y [n, out] (= or += with beta 1) x16 [n, in] W^T */
static int lin_fwd(cuda_llama *L, float *y, int ldy, const uint16_t *x16, int ldx, const float *w, int n_out, int n_in,
                   int n, float beta) {
    return cu_gemm(L->c, y, CU_F32, ldy, x16, ldx, 0, w16(L, w), n_in, 1, CU_BF16, n, n_out, n_in, 1.0f, beta);
}
/* dx [n, in] = dy16 [n, out] W; dW [out, in] += dy16^T x16 */
static int lin_bwd(cuda_llama *L, float *dx, int ldx, float *dw, const uint16_t *dy16, int ldy, const uint16_t *x16,
                   int ldxx, const float *w, int n_out, int n_in, int n) {
    return cu_gemm(L->c, dx, CU_F32, ldx, dy16, ldy, 0, w16(L, w), n_in, 0, CU_BF16, n, n_in, n_out, 1.0f, 0.0f) ||
           cu_gemm(L->c, dw, CU_F32, n_in, dy16, ldy, 1, x16, ldxx, 0, CU_BF16, n_out, n_in, n, 1.0f, 1.0f);
}
static int to16(cuda_llama *L, uint16_t *dst, const float *src, size_t n) {
    return cu_convert(L->c, dst, CU_BF16, src, CU_F32, n);
}

int cl_forward_backward(cuda_llama *L, const model_batch *b, const int *targets, const float *weights) {
    const model_config *c = &L->cfg;
    cu_ctx *cx = L->c;
    const int N = b->n_tokens, H = c->hidden, D = c->head_dim, V = c->vocab;
    if (N < 1 || N > L->max_tokens || b->n_seqs < 1 || b->n_seqs > L->max_seqs)
        return err_set(ERR_INPUT, "cuda_llama: a batch of %d tokens in %d sequences (room for %d and %d)", N, b->n_seqs,
                       L->max_tokens, L->max_seqs);
    attn_seq *hs = xmalloc(sizeof *hs * (size_t)b->n_seqs);
    int *pos = xmalloc(sizeof(int) * (size_t)N), *grp = xmalloc(sizeof(int) * (2 * (size_t)N + 1)), max_len = 0;
    if (!hs || !pos || !grp || (L->n_groups = cu_embedding_groups(grp, grp + N, b->tokens, N)) < 0)
        return free(hs), free(pos), free(grp), -1;
    for (int s = 0, i = 0; s < b->n_seqs; s++) {
        hs[s] = (attn_seq){.q0 = i, .nq = b->seq_lens[s], .k0 = i, .nkv = b->seq_lens[s]};
        for (int p = 0; p < b->seq_lens[s]; p++) pos[i++] = p;
        max_len = b->seq_lens[s] > max_len ? b->seq_lens[s] : max_len;
    }
    int rc = cu_upload(cx, L->tokens, b->tokens, sizeof(int) * N) || cu_upload(cx, L->pos, pos, sizeof(int) * N) ||
             cu_upload(cx, L->seqs, hs, sizeof *hs * b->n_seqs) || cu_upload(cx, L->targets, targets, sizeof(int) * N) ||
             cu_upload(cx, L->row_w, weights, sizeof(float) * N) || cu_upload(cx, L->emb_order, grp, sizeof(int) * N) ||
             cu_upload(cx, L->emb_starts, grp + N, sizeof(int) * (size_t)(L->n_groups + 1)) || cu_sync(cx);
    free(hs), free(pos), free(grp);
    if (rc) return -1;
    const cu_attn_batch ab = {.seqs = L->seqs, .n_seqs = b->n_seqs, .max_nq = max_len, .max_nkv = max_len, .n_rows = N};
    if (cu_zero(cx, L->g.mem, weights_count(c) * sizeof(float))) return -1; /* gradients are assigned */

    /* forward (model_forward) */
    if (cu_embedding_forward(cx, L->la[0].x_in, L->w.embed, L->tokens, N, H, CU_F32)) return -1;
    for (int l = 0; l < c->n_layers; l++) {
        const layer_config *lc = &c->layers[l];
        const layer_weights *lw = &L->w.layers[l];
        const int Q = lc->n_heads * D, KV = lc->n_kv_heads * D, W = Q + 2 * KV, I = lc->intermediate;
        cl_layer_acts *a = &L->la[l];
        float *next = l + 1 < c->n_layers ? L->la[l + 1].x_in : L->x_out;
        const attn_shape sh = {.n_heads = lc->n_heads, .n_kv_heads = lc->n_kv_heads, .head_dim = D, .ldq = W, .ldk = W,
                               .ldv = W, .ldo = Q};
        if (cu_rmsnorm_forward(cx, a->xn1, a->rstd1, a->x_in, lw->attn_norm, N, H, c->rms_eps, CU_F32) ||
            to16(L, a->xn1_16, a->xn1, (size_t)N * H) || lin_fwd(L, a->qkv, W, a->xn1_16, H, lw->wq, W, H, N, 0) ||
            cu_rope_forward(cx, a->qkv, W, L->pos, L->rope_cos, L->rope_sin, N, lc->n_heads, D, CU_F32) ||
            cu_rope_forward(cx, a->qkv + Q, W, L->pos, L->rope_cos, L->rope_sin, N, lc->n_kv_heads, D, CU_F32) ||
            cu_attention_forward(cx, a->att, a->lse, a->qkv, a->qkv + Q, a->qkv + Q + KV, &sh, &ab, CU_F32) ||
            to16(L, a->att16, a->att, (size_t)N * Q) || cu_copy(cx, a->x_mid, a->x_in, sizeof(float) * N * H) ||
            lin_fwd(L, a->x_mid, H, a->att16, Q, lw->wo, H, Q, N, 1) ||
            cu_rmsnorm_forward(cx, a->xn2, a->rstd2, a->x_mid, lw->mlp_norm, N, H, c->rms_eps, CU_F32) ||
            to16(L, a->xn2_16, a->xn2, (size_t)N * H) || lin_fwd(L, a->gu, 2 * I, a->xn2_16, H, lw->w_gate, 2 * I, H, N, 0) ||
            cu_swiglu_forward(cx, L->d_h, a->gu, a->gu + I, 2 * I, N, I, CU_F32) || to16(L, a->h16, L->d_h, (size_t)N * I) ||
            cu_copy(cx, next, a->x_mid, sizeof(float) * N * H) || lin_fwd(L, next, H, a->h16, I, lw->w_down, H, I, N, 1))
            return err_prefix("layer %d forward: ", l);
    }
    if (cu_rmsnorm_forward(cx, L->hidden, L->rstd_f, L->x_out, L->w.final_norm, N, H, c->rms_eps, CU_F32) ||
        to16(L, L->hidden16, L->hidden, (size_t)N * H) || cu_zero(cx, L->loss, 8))
        return -1;

    /* LM head and loss in chunks (model_lm_loss): logits, cross-entropy in place, d hidden, d lm_head */
    for (int r0 = 0; r0 < N; r0 += L->lm_rows) {
        const int nr = N - r0 < L->lm_rows ? N - r0 : L->lm_rows;
        if (lin_fwd(L, L->logits, V, L->hidden16 + (size_t)r0 * H, H, L->w.lm_head, V, H, nr, 0) ||
            cu_cross_entropy(cx, L->losses, L->logits, L->logits, L->targets + r0, L->row_w + r0, nr, V, CU_F32) ||
            cu_sum(cx, L->loss, L->losses, nr, 1) || to16(L, L->d16, L->logits, (size_t)nr * V) ||
            lin_bwd(L, L->d_hidden + (size_t)r0 * H, H, L->g.lm_head, L->d16, V, L->hidden16 + (size_t)r0 * H, H,
                    L->w.lm_head, V, H, nr))
            return err_prefix("LM head: ");
    }

    /* backward (model_backward) */
    if (cu_zero(cx, L->d_res, sizeof(float) * N * H) ||
        cu_rmsnorm_backward(cx, L->d_res, L->g.final_norm, L->d_hidden, L->x_out, L->w.final_norm, L->rstd_f, N, H, CU_F32))
        return -1;
    for (int l = c->n_layers - 1; l >= 0; l--) {
        const layer_config *lc = &c->layers[l];
        const layer_weights *lw = &L->w.layers[l];
        layer_weights *gw = &L->g.layers[l];
        const int Q = lc->n_heads * D, KV = lc->n_kv_heads * D, W = Q + 2 * KV, I = lc->intermediate;
        cl_layer_acts *a = &L->la[l];
        const attn_shape sh = {.n_heads = lc->n_heads, .n_kv_heads = lc->n_kv_heads, .head_dim = D, .ldq = W, .ldk = W,
                               .ldv = W, .ldo = Q};
        /* MLP: next = x_mid + h W_down^T, h = silu(gate) * up, [gate|up] = xn2 W_gu^T */
        if (to16(L, L->d16, L->d_res, (size_t)N * H) ||
            lin_bwd(L, L->d_h, I, gw->w_down, L->d16, H, a->h16, I, lw->w_down, H, I, N) ||
            cu_swiglu_backward(cx, a->gu, a->gu + I, L->d_h, a->gu, a->gu + I, 2 * I, N, I, CU_F32) ||
            to16(L, L->d16, a->gu, (size_t)N * 2 * I) ||
            lin_bwd(L, L->d_xn, H, gw->w_gate, L->d16, 2 * I, a->xn2_16, H, lw->w_gate, 2 * I, H, N) ||
            cu_rmsnorm_backward(cx, L->d_res, gw->mlp_norm, L->d_xn, a->x_mid, lw->mlp_norm, a->rstd2, N, H, CU_F32) ||
            /* attention: x_mid = x_in + att W_o^T */
            to16(L, L->d16, L->d_res, (size_t)N * H) ||
            lin_bwd(L, L->d_att, Q, gw->wo, L->d16, H, a->att16, Q, lw->wo, H, Q, N) ||
            cu_attention_backward(cx, L->d_qkv, L->d_qkv + Q, L->d_qkv + Q + KV, L->d_att, a->att, a->lse, a->qkv,
                                  a->qkv + Q, a->qkv + Q + KV, &sh, &ab, CU_F32) ||
            cu_rope_backward(cx, L->d_qkv, W, L->pos, L->rope_cos, L->rope_sin, N, lc->n_heads, D, CU_F32) ||
            cu_rope_backward(cx, L->d_qkv + Q, W, L->pos, L->rope_cos, L->rope_sin, N, lc->n_kv_heads, D, CU_F32) ||
            to16(L, L->d16, L->d_qkv, (size_t)N * W) ||
            lin_bwd(L, L->d_xn, H, gw->wq, L->d16, W, a->xn1_16, H, lw->wq, W, H, N) ||
            cu_rmsnorm_backward(cx, L->d_res, gw->attn_norm, L->d_xn, a->x_in, lw->attn_norm, a->rstd1, N, H, CU_F32))
            return err_prefix("layer %d backward: ", l);
    }
    return cu_embedding_backward_grouped(cx, L->g.embed, L->d_res, L->tokens, L->emb_order, L->emb_starts, L->n_groups,
                                         H, CU_F32);
}

int cl_optim_step(cuda_llama *L, const optim_config *oc, long step) {
    const size_t np = weights_count(&L->cfg);
    if (cu_sum_squares(L->c, L->sumsq, L->g.mem, np, 0) ||
        cu_clip_factor(L->c, L->norm, L->clip_scale, L->bad, L->sumsq, oc->clip))
        return -1;
    /* a NaN or infinite norm sets *bad: every update below then changes nothing (the CPU's guard) */
    const adamw_hparams h = {.lr = lr_schedule_at(&oc->schedule, step), .beta1 = oc->beta1, .beta2 = oc->beta2,
                             .eps = oc->eps, .weight_decay = oc->weight_decay};
    for (int r = 0; r < L->n_ranges; r++) {
        const optim_range *g = &L->ranges[r];
        if (cu_adamw(L->c, L->w.mem + g->off, L->m.mem + g->off, L->v.mem + g->off, L->g.mem + g->off, L->clip_scale,
                     L->bad, (size_t)g->len, &h, step + 1, oc->decay_all || g->decay, L->w16 + g->off, CU_BF16))
            return -1;
    }
    return 0;
}

int cl_loss(cuda_llama *L, double *loss, double *grad_norm) {
    if (loss && cu_download(L->c, loss, L->loss, sizeof *loss)) return -1;
    if (grad_norm && cu_download(L->c, grad_norm, L->norm, sizeof *grad_norm)) return -1;
    return 0;
}

int cl_download(cuda_llama *L, float *host, const float *dev, size_t n) {
    return cu_download(L->c, host, dev, n * sizeof(float));
}

int cl_extend(cuda_llama *L, const int *tokens, int n, float *logits) {
    const model_config *c = &L->cfg;
    cu_ctx *cx = L->c;
    const int H = c->hidden, D = c->head_dim, V = c->vocab;
    if (!L->max_ctx || n < 1 || L->kv_len + n > L->max_ctx)
        return err_set(ERR_INPUT, "cuda_llama: %d tokens after %d do not fit a KV cache of %d positions", n, L->kv_len,
                       L->max_ctx);
    for (int c0 = 0; c0 < n; c0 += L->infer_rows) {
        const int nc = n - c0 < L->infer_rows ? n - c0 : L->infer_rows;
        int *pos = xmalloc(sizeof(int) * (size_t)nc * 2);
        if (!pos) return -1;
        for (int i = 0; i < nc; i++) pos[i] = L->kv_len + i, pos[nc + i] = tokens[c0 + i];
        const attn_seq one = {.q0 = 0, .nq = nc, .k0 = 0, .nkv = L->kv_len + nc};
        int *dpos = L->ipos;
        attn_seq *dseq = L->iseq;
        int rc = cu_upload(cx, dpos, pos, sizeof(int) * nc) || cu_upload(cx, L->itok, pos + nc, sizeof(int) * nc) ||
                 cu_upload(cx, dseq, &one, sizeof one) || cu_embedding_forward(cx, L->ix, L->w.embed, L->itok, nc, H, CU_F32);
        free(pos);
        if (rc) return err_prefix("cuda_llama extend: ");
        const cu_attn_batch ab = {.seqs = dseq, .n_seqs = 1, .max_nq = nc, .max_nkv = L->kv_len + nc, .n_rows = nc};
        for (int l = 0; l < c->n_layers; l++) {
            const layer_config *lc = &c->layers[l];
            const layer_weights *lw = &L->w.layers[l];
            const int Q = lc->n_heads * D, KV = lc->n_kv_heads * D, W = Q + 2 * KV, I = lc->intermediate;
            const attn_shape sh = {.n_heads = lc->n_heads, .n_kv_heads = lc->n_kv_heads, .head_dim = D, .ldq = W,
                                   .ldk = KV, .ldv = KV, .ldo = Q};
            float *kdst = L->kc[l] + (size_t)L->kv_len * KV, *vdst = L->vc[l] + (size_t)L->kv_len * KV;
            if (cu_rmsnorm_forward(cx, L->ixn, NULL, L->ix, lw->attn_norm, nc, H, c->rms_eps, CU_F32) ||
                to16(L, L->i16, L->ixn, (size_t)nc * H) || lin_fwd(L, L->iqkv, W, L->i16, H, lw->wq, W, H, nc, 0) ||
                cu_rope_forward(cx, L->iqkv, W, dpos, L->rope_cos, L->rope_sin, nc, lc->n_heads, D, CU_F32) ||
                cu_rope_forward(cx, L->iqkv + Q, W, dpos, L->rope_cos, L->rope_sin, nc, lc->n_kv_heads, D, CU_F32) ||
                cu_copy_2d(cx, kdst, KV * 4, L->iqkv + Q, W * 4, KV * 4, nc) ||
                cu_copy_2d(cx, vdst, KV * 4, L->iqkv + Q + KV, W * 4, KV * 4, nc) ||
                cu_attention_forward(cx, L->iatt, NULL, L->iqkv, L->kc[l], L->vc[l], &sh, &ab, CU_F32) ||
                to16(L, L->i16, L->iatt, (size_t)nc * Q) || lin_fwd(L, L->ix, H, L->i16, Q, lw->wo, H, Q, nc, 1) ||
                cu_rmsnorm_forward(cx, L->ixn, NULL, L->ix, lw->mlp_norm, nc, H, c->rms_eps, CU_F32) ||
                to16(L, L->i16, L->ixn, (size_t)nc * H) ||
                lin_fwd(L, L->igu, 2 * I, L->i16, H, lw->w_gate, 2 * I, H, nc, 0) ||
                cu_swiglu_forward(cx, L->ih, L->igu, L->igu + I, 2 * I, nc, I, CU_F32) ||
                to16(L, L->i16, L->ih, (size_t)nc * I) || lin_fwd(L, L->ix, H, L->i16, I, lw->w_down, H, I, nc, 1))
                return err_prefix("cuda_llama extend, layer %d: ", l);
        }
        L->kv_len += nc;
        if (logits && c0 + nc == n) { /* the last row: final norm and the LM head */
            if (cu_rmsnorm_forward(cx, L->ixn, NULL, L->ix + (size_t)(nc - 1) * H, L->w.final_norm, 1, H, c->rms_eps, CU_F32) ||
                to16(L, L->i16, L->ixn, H) || lin_fwd(L, L->logits, V, L->i16, H, L->w.lm_head, V, H, 1, 0) ||
                cu_download(cx, logits, L->logits, sizeof(float) * V))
                return -1;
        }
    }
    return 0;
}
