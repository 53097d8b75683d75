/* model_infer.c: inference with a KV cache: chunked prefill and decode steps, logits only at the
 * requested rows. Uses the growable scratch buffers of model_internal.h (no training state).
 *
 * Decode (up to GEMV_MAX_ROWS new tokens) runs as a team: ONE OpenMP parallel region for the
 * whole step, every linear layer split by output rows so that each weight byte is read once by
 * one thread, attention split by heads, and a spinning barrier (kernels/team.h) between the
 * steps of a layer instead of a parallel region per kernel. */
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "kernels/attention.h"
#include "kernels/embedding.h"
#include "kernels/gemv.h"
#include "kernels/linear.h"
#include "kernels/rmsnorm.h"
#include "kernels/rope.h"
#include "kernels/swiglu.h"
#include "kernels/threads.h"
#include "model/model.h"
#include "model/model_internal.h"

int model_scratch_tokens(model *m, int rows) {
    struct model_scratch *s = m->scratch;
    if (rows <= s->cap_tokens) return 0;
    int max_q, max_w, max_i, max_h;
    model_max_widths(&m->cfg, &max_q, &max_w, &max_i, &max_h);
    const size_t n = (size_t)rows, H = (size_t)m->cfg.hidden;
    free(s->x), free(s->xn), free(s->qkv), free(s->att), free(s->gu), free(s->h), free(s->sel), free(s->pos);
    s->x = malloc(sizeof(float) * n * H);
    s->xn = malloc(sizeof(float) * n * H);
    s->sel = malloc(sizeof(float) * n * H);
    s->qkv = malloc(sizeof(float) * n * max_w);
    s->att = malloc(sizeof(float) * n * max_q);
    s->gu = malloc(sizeof(float) * n * 2 * max_i);
    s->h = malloc(sizeof(float) * n * max_i);
    s->pos = malloc(sizeof(int) * n);
    s->cap_tokens = rows;
    if (!s->x || !s->xn || !s->sel || !s->qkv || !s->att || !s->gu || !s->h || !s->pos) {
        s->cap_tokens = 0;
        return err_set(ERR_NOMEM, "cannot allocate inference buffers for %d tokens", rows);
    }
    return 0;
}

static int check_extend(const model *m, const kv_cache *kv, const int *tokens, int n, const int *out_rows,
                        int n_out) {
    if (!kv_cache_matches(kv, &m->cfg))
        return err_set(ERR_INPUT, "the KV cache was made for another architecture; create it with this model's config");
    if (n < 1) return err_set(ERR_INPUT, "model_extend needs at least one token");
    if ((long)kv->len + n > kv->capacity)
        return err_set(ERR_INPUT, "the KV cache holds %d positions; %d are filled and %d more were given; allocate a "
                       "larger cache or shorten the input", kv->capacity, kv->len, n);
    if (n_out < 0 || n_out > n || (!out_rows && n_out > 1))
        return err_set(ERR_INPUT, "model_extend: %d logit rows asked for %d tokens (without a row list only the last)",
                       n_out, n);
    for (int i = 0; out_rows && i < n_out; i++)
        if (out_rows[i] < 0 || out_rows[i] >= n || (i && out_rows[i] <= out_rows[i - 1]))
            return err_set(ERR_INPUT, "model_extend: logit rows must be ascending indices in [0, %d); entry %d is %d", n,
                           i, out_rows[i]);
    return model_check_tokens(m, tokens, n);
}

/* Thread t's share of decoder layer l for the team's n <= GEMV_MAX_ROWS tokens (see the file's
 * header). Every step reads what the step before wrote, after a barrier; the formats stream
 * (checked by extend_decode), so nothing here can fail. */
static void layer_decode(model *m, int l, int n, kv_cache *kv, int t, int nt, team_barrier *bar) {
    struct model_scratch *s = m->scratch;
    const model_config *c = &m->cfg;
    const int H = c->hidden, D = c->head_dim, p0 = kv->len;
    const layer_config *lc = &c->layers[l];
    const layer_weights *lw = &m->w.layers[l];
    const layer_linears *ln = &m->lin[l];
    const int Q = lc->n_heads * D, KV = lc->n_kv_heads * D, W = Q + 2 * KV, I = lc->intermediate;
    const int rep = lc->n_heads / lc->n_kv_heads;
    int lo, hi;
    if (t == 0) rmsnorm_forward(s->xn, NULL, s->x, lw->attn_norm, n, H, c->rms_eps);
    team_barrier_wait(bar);
    split_range(W, t, nt, linear_col_align(&ln->qkv), &lo, &hi);
    if (hi > lo) (void)linear_forward_cols(s->qkv, W, s->xn, H, &ln->qkv, n, lo, hi, 0);
    team_barrier_wait(bar);
    /* RoPE on this thread's kv heads and their query heads; the new keys and values into the cache */
    split_range(lc->n_kv_heads, t, nt, 1, &lo, &hi);
    for (int g = lo; g < hi; g++) {
        rope_forward(s->qkv + (size_t)g * rep * D, W, s->pos, m->rope_cos, m->rope_sin, n, rep, D);
        rope_forward(s->qkv + Q + (size_t)g * D, W, s->pos, m->rope_cos, m->rope_sin, n, 1, D);
        for (int i = 0; i < n; i++) {
            const float *row = s->qkv + (size_t)i * W;
            memcpy(kv->k[l] + (size_t)(p0 + i) * KV + (size_t)g * D, row + Q + (size_t)g * D, sizeof(float) * D);
            memcpy(kv->v[l] + (size_t)(p0 + i) * KV + (size_t)g * D, row + Q + KV + (size_t)g * D, sizeof(float) * D);
        }
    }
    team_barrier_wait(bar);
    split_range(lc->n_heads, t, nt, 1, &lo, &hi);
    for (int h = lo; h < hi; h++)
        attention_decode_head(s->att + (size_t)h * D, Q, s->qkv + (size_t)h * D, W, kv->k[l] + (size_t)(h / rep) * D, KV,
                              kv->v[l] + (size_t)(h / rep) * D, KV, n, p0 + n, D, s->scores + (size_t)t * s->scores_ld);
    team_barrier_wait(bar);
    split_range(H, t, nt, linear_col_align(&ln->o), &lo, &hi);
    if (hi > lo) (void)linear_forward_cols(s->x, H, s->att, Q, &ln->o, n, lo, hi, 1);
    team_barrier_wait(bar);
    if (t == 0) rmsnorm_forward(s->xn, NULL, s->x, lw->mlp_norm, n, H, c->rms_eps);
    team_barrier_wait(bar);
    /* gate and up rows of the same neurons on one thread: its SwiGLU needs no barrier */
    split_range(I, t, nt, linear_col_align(&ln->gate_up), &lo, &hi);
    if (hi > lo) {
        (void)linear_forward_cols(s->gu, 2 * I, s->xn, H, &ln->gate_up, n, lo, hi, 0);
        (void)linear_forward_cols(s->gu, 2 * I, s->xn, H, &ln->gate_up, n, I + lo, I + hi, 0);
        for (int i = 0; i < n; i++)
            swiglu_forward(s->h + (size_t)i * I + lo, s->gu + (size_t)i * 2 * I + lo, s->gu + (size_t)i * 2 * I + I + lo,
                           2 * I, 1, hi - lo);
    }
    team_barrier_wait(bar);
    split_range(H, t, nt, linear_col_align(&ln->down), &lo, &hi);
    if (hi > lo) (void)linear_forward_cols(s->x, H, s->h, I, &ln->down, n, lo, hi, 1);
    team_barrier_wait(bar);
}

/* Decoder layer l over the n tokens in the scratch buffers (s->x holds their residual stream,
 * s->pos their positions): s->x becomes the layer's output. With kv, the tokens continue kv at
 * kv->len and their keys and values are appended to it; without, they are the packed sequences
 * seqs[0..n_seqs). tap (may be NULL) receives the inputs of the layer's linears; with
 * tap->partial the layer stops after the last site tap asked for (s->x is then not the output).
 * Inside model_extend's decode team (s->team set) every thread of the team calls it and does its
 * share of the layer (layer_decode). */
int model_layer_infer(model *m, int l, int n, kv_cache *kv, const attn_seq *seqs, int n_seqs, const model_tap *tap) {
    struct model_scratch *s = m->scratch;
    if (s->team && kv && !tap) {
        layer_decode(m, l, n, kv, omp_get_thread_num(), s->team_n, s->team);
        return 0;
    }
    const model_config *c = &m->cfg;
    const int H = c->hidden, D = c->head_dim, p0 = kv ? kv->len : 0;
    const layer_config *lc = &c->layers[l];
    const layer_weights *lw = &m->w.layers[l];
    const layer_linears *ln = &m->lin[l];
    const int Q = lc->n_heads * D, KV = lc->n_kv_heads * D, W = Q + 2 * KV, I = lc->intermediate;
    const unsigned sites = tap ? tap->sites : 0u;
#define TAP(site, x, in)                                                                         \
    do {                                                                                         \
        if ((sites & (1u << (site))) && tap->fn(tap->ctx, (site), (x), n, (in))) return -1;     \
        if (tap && tap->partial && !(sites >> ((site) + 1))) return 0;                           \
    } while (0)

    PROF(PROF_NORM, rmsnorm_forward(s->xn, NULL, s->x, lw->attn_norm, n, H, c->rms_eps));
    TAP(MODEL_SITE_QKV, s->xn, H);
    PCALL(PROF_QKV, linear_forward(s->qkv, W, s->xn, H, &ln->qkv, n, 0));
    PROF(PROF_ROPE, rope_forward(s->qkv, W, s->pos, m->rope_cos, m->rope_sin, n, lc->n_heads, D);
         rope_forward(s->qkv + Q, W, s->pos, m->rope_cos, m->rope_sin, n, lc->n_kv_heads, D));
    attn_shape sh = {.n_heads = lc->n_heads, .n_kv_heads = lc->n_kv_heads, .head_dim = D, .ldq = W, .ldk = W,
                     .ldv = W, .ldo = Q};
    const float *k = s->qkv + Q, *v = s->qkv + Q + KV;
    attn_seq one = {.q0 = 0, .nq = n, .k0 = 0, .nkv = p0 + n};
    int max_nkv = p0 + n;
    if (kv) {
        for (int i = 0; i < n; i++) {
            memcpy(kv->k[l] + (size_t)(p0 + i) * KV, s->qkv + (size_t)i * W + Q, sizeof(float) * KV);
            memcpy(kv->v[l] + (size_t)(p0 + i) * KV, s->qkv + (size_t)i * W + Q + KV, sizeof(float) * KV);
        }
        sh.ldk = sh.ldv = KV, k = kv->k[l], v = kv->v[l], seqs = &one, n_seqs = 1;
    } else {
        max_nkv = 0;
        for (int i = 0; i < n_seqs; i++) max_nkv = seqs[i].nkv > max_nkv ? seqs[i].nkv : max_nkv;
    }
    if (model_grow(&s->att_work, &s->att_work_cap, attention_work_floats(&sh, max_nkv), "attention tiles")) return -1;
    PCALL(PROF_ATTN, attention_forward(s->att, NULL, s->qkv, k, v, &sh, seqs, n_seqs, s->att_work, s->att_work_cap));
    TAP(MODEL_SITE_O, s->att, Q);
    PCALL(PROF_O, linear_forward(s->x, H, s->att, Q, &ln->o, n, 1));

    PROF(PROF_NORM, rmsnorm_forward(s->xn, NULL, s->x, lw->mlp_norm, n, H, c->rms_eps));
    TAP(MODEL_SITE_GATE_UP, s->xn, H);
    PCALL(PROF_MLP_GEMM, linear_forward(s->gu, 2 * I, s->xn, H, &ln->gate_up, n, 0));
    PROF(PROF_SWIGLU, swiglu_forward(s->h, s->gu, s->gu + I, 2 * I, n, I));
    TAP(MODEL_SITE_DOWN, s->h, I);
    PCALL(PROF_MLP_GEMM, linear_forward(s->x, H, s->h, I, &ln->down, n, 1));
#undef TAP
    return 0;
}

/* Every decoder layer over n tokens (embedding first); leaves the last residual stream in s->x. */
static int scratch_layers(model *m, const int *tokens, int n, kv_cache *kv, const attn_seq *seqs, int n_seqs) {
    struct model_scratch *s = m->scratch;
    PROF(PROF_EMBED, embedding_forward(s->x, m->w.embed, tokens, n, m->cfg.hidden));
    for (int l = 0; l < m->cfg.n_layers; l++)
        if (model_layer_infer(m, l, n, kv, seqs, n_seqs, NULL)) return -1;
    return 0;
}

/* Threads of a decode team: by the weights of an average linear layer (a team splits each layer
 * into about four streamed products, with a barrier of about a microsecond after each). */
int model_decode_threads(const model *m) {
    const model_config *c = &m->cfg;
    double floats = 0;
    for (int l = 0; l < c->n_layers; l++) {
        const layer_linears *ln = &m->lin[l];
        floats += (double)ln->qkv.n_out * ln->qkv.n_in + (double)ln->o.n_out * ln->o.n_in +
                  (double)ln->gate_up.n_out * ln->gate_up.n_in + (double)ln->down.n_out * ln->down.n_in;
    }
    return kernels_threads_for(floats / (4.0 * c->n_layers), THR_TEAM_FLOATS);
}

int model_decode_streams(const model *m) {
    for (int l = 0; l < m->cfg.n_layers; l++) {
        const layer_linears *ln = &m->lin[l];
        if (!linear_streams(&ln->qkv) || !linear_streams(&ln->o) || !linear_streams(&ln->gate_up) ||
            !linear_streams(&ln->down))
            return 0;
    }
    return linear_streams(&m->lm_head);
}

/* model_extend of n <= GEMV_MAX_ROWS tokens as one team (see the file's header). */
static int extend_decode(model *m, kv_cache *kv, const int *tokens, int n, const int *out_rows, int n_out,
                         float *logits) {
    struct model_scratch *s = m->scratch;
    const int H = m->cfg.hidden, V = m->cfg.vocab, nkv = kv->len + n;
    if (model_scratch_tokens(m, n)) return -1;
    int nt = model_decode_threads(m);
    if (model_grow(&s->scores, &s->scores_cap, (size_t)nt * nkv, "attention scores")) return -1;
    s->scores_ld = (size_t)nkv;
    for (int i = 0; i < n; i++) s->pos[i] = kv->len + i;
    PROF(PROF_EMBED, embedding_forward(s->x, m->w.embed, tokens, n, H));
    const int ns = n_out; /* rows with logits, normed into s->sel by thread 0 after the layers */
    team_barrier bar;
    for (;;) {
        int short_team = 0;
        team_barrier_init(&bar, nt);
        s->team = &bar;
        s->team_n = nt;
#pragma omp parallel num_threads(nt) if (nt > 1)
        {
            const int t = omp_get_thread_num();
            if (omp_get_num_threads() != nt) { /* the runtime gave fewer threads: redo on one */
                if (t == 0) short_team = 1;
            } else {
                for (int l = 0; l < m->cfg.n_layers; l++) (void)model_layer_infer(m, l, n, kv, NULL, 0, NULL);
                if (t == 0)
                    for (int r = 0; r < ns; r++) {
                        const int row = out_rows ? out_rows[r] : n - 1;
                        rmsnorm_forward(s->sel + (size_t)r * H, NULL, s->x + (size_t)row * H, m->w.final_norm, 1, H,
                                        m->cfg.rms_eps);
                    }
                team_barrier_wait(&bar);
                int lo, hi;
                split_range(V, t, nt, linear_col_align(&m->lm_head), &lo, &hi);
                if (ns && hi > lo) (void)linear_forward_cols(logits, V, s->sel, H, &m->lm_head, ns, lo, hi, 0);
            }
        }
        s->team = NULL;
        if (!short_team) break;
        nt = 1;
    }
    kv->len += n;
    return 0;
}

static int extend_chunks(model *m, kv_cache *kv, const int *tokens, int n, const int *out_rows, int n_out,
                         float *logits);

int model_extend(model *m, kv_cache *kv, const int *tokens, int n, const int *out_rows, int n_out, float *logits) {
    if (check_extend(m, kv, tokens, n, out_rows, n_out)) return -1;
    if (model_scratch_ensure(m) || model_rope_ensure(m, kv->len + n)) return -1;
    if (n <= GEMV_MAX_ROWS && model_decode_streams(m)) return extend_decode(m, kv, tokens, n, out_rows, n_out, logits);
    /* a small prefill runs on one thread (kernels_call_begin; the decode team has its own threshold) */
    const int cap = kernels_call_begin(model_call_macs(m, n, (double)n * kv->len + 0.5 * n * (n + 1.0), n_out));
    const int rc = extend_chunks(m, kv, tokens, n, out_rows, n_out, logits);
    kernels_cap_threads(cap);
    return rc;
}

/* model_extend over more tokens than a decode team takes: chunks of MODEL_INFER_CHUNK. */
static int extend_chunks(model *m, kv_cache *kv, const int *tokens, int n, const int *out_rows, int n_out,
                         float *logits) {
    const int chunk = n < MODEL_INFER_CHUNK ? n : MODEL_INFER_CHUNK, H = m->cfg.hidden, V = m->cfg.vocab;
    if (model_scratch_tokens(m, chunk)) return -1;
    struct model_scratch *s = m->scratch;
    int next_out = 0; /* index into out_rows of the next row to emit */
    for (int c0 = 0; c0 < n; c0 += chunk) {
        const int nc = n - c0 < chunk ? n - c0 : chunk;
        for (int i = 0; i < nc; i++) s->pos[i] = kv->len + i;
        if (scratch_layers(m, tokens + c0, nc, kv, NULL, 0)) return -1;
        kv->len += nc;
        /* gather the requested rows of this chunk, norm them, and run the LM head on them */
        int ns = 0, first = next_out;
        while (next_out < n_out) {
            int r = out_rows ? out_rows[next_out] : n - 1;
            if (r >= c0 + nc) break;
            memcpy(s->sel + (size_t)ns * H, s->x + (size_t)(r - c0) * H, sizeof(float) * H);
            ns++, next_out++;
        }
        if (ns) {
            PROF(PROF_NORM, rmsnorm_forward(s->sel, NULL, s->sel, m->w.final_norm, ns, H, m->cfg.rms_eps));
            PCALL(PROF_HEAD, model_logits(m, logits + (size_t)first * V, s->sel, ns));
        }
    }
    return 0;
}

int model_forward_hidden(model *m, const model_batch *b, float *hidden) {
    if (b->n_tokens < 1 || b->n_seqs < 1)
        return err_set(ERR_INPUT, "empty batch (%d tokens in %d sequences)", b->n_tokens, b->n_seqs);
    long sum = 0;
    int max_len = 0;
    for (int i = 0; i < b->n_seqs; i++) {
        if (b->seq_lens[i] < 1)
            return err_set(ERR_INPUT, "sequence %d of the batch has length %d; every sequence needs a token", i,
                           b->seq_lens[i]);
        sum += b->seq_lens[i];
        max_len = b->seq_lens[i] > max_len ? b->seq_lens[i] : max_len;
    }
    if (sum != b->n_tokens)
        return err_set(ERR_INPUT, "the sequence lengths add up to %ld but the batch has %d tokens", sum, b->n_tokens);
    if (model_check_tokens(m, b->tokens, b->n_tokens) || model_scratch_ensure(m) || model_rope_ensure(m, max_len) ||
        model_scratch_tokens(m, b->n_tokens))
        return -1;
    struct model_scratch *s = m->scratch;
    if ((size_t)b->n_seqs > s->aseqs_cap) {
        free(s->aseqs);
        s->aseqs = xmalloc(sizeof(attn_seq) * (size_t)b->n_seqs);
        s->aseqs_cap = s->aseqs ? (size_t)b->n_seqs : 0;
        if (!s->aseqs) return -1;
    }
    for (int q = 0, i = 0; q < b->n_seqs; q++) {
        s->aseqs[q] = (attn_seq){.q0 = i, .nq = b->seq_lens[q], .k0 = i, .nkv = b->seq_lens[q]};
        for (int p = 0; p < b->seq_lens[q]; p++) s->pos[i++] = p;
    }
    double pairs = 0;
    for (int q = 0; q < b->n_seqs; q++) pairs += 0.5 * b->seq_lens[q] * (b->seq_lens[q] + 1.0);
    const int cap = kernels_call_begin(model_call_macs(m, b->n_tokens, pairs, 0)); /* one thread when small */
    const int rc = scratch_layers(m, b->tokens, b->n_tokens, NULL, s->aseqs, b->n_seqs);
    if (!rc)
        PROF(PROF_NORM, rmsnorm_forward(hidden, NULL, s->x, m->w.final_norm, b->n_tokens, m->cfg.hidden, m->cfg.rms_eps));
    kernels_cap_threads(cap);
    return rc;
}

int model_decode(model *m, kv_cache *kv, int token, float *logits) {
    return model_extend(m, kv, &token, 1, NULL, 1, logits);
}
