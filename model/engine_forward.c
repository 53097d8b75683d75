/* engine_forward.c: one batched forward of the serving engine: the tokens of every scheduled
 * sequence (decode tokens and prefill chunks) are rows of one matrix, so each projection is one
 * linear_forward over all of them; attention reads each sequence's keys and values from its KV
 * blocks (attention_paged_forward). The per-layer body mirrors model_layer_infer (model_infer.c)
 * with the paged cache in place of the contiguous one. Time is accounted per layer (attention
 * part, MLP part) and for the embedding and head, for the benchmark's breakdown.
 *
 * A step of at most GEMV_MAX_ROWS rows whose linears all stream (the decode steps) runs as a team,
 * as model_extend's decode does (model_infer.c): ONE parallel region for all the layers, each linear
 * split by output rows (linear_forward_cols: the same values as linear_forward's), attention by
 * items (attention_paged_part), a barrier (kernels/team.h) between the steps instead of a
 * parallel region per kernel, whose wake-up costs tens of microseconds with passive waiting. */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "common/log.h"
#include "kernels/embedding.h"
#include "kernels/gemv.h"
#include "kernels/linear.h"
#include "kernels/rmsnorm.h"
#include "kernels/rope.h"
#include "kernels/swiglu.h"
#include "kernels/threads.h"
#include "model/engine_internal.h"
#include "model/model_internal.h"

#define ENGINE_HEAD_FLOATS ((size_t)4 << 20) /* logits of one LM-head chunk: 16 MiB */

int engine_buffers_init(struct engine *e) {
    const model_config *c = &e->m->cfg;
    int max_q, max_w, max_i, max_h;
    model_max_widths(c, &max_q, &max_w, &max_i, &max_h);
    const size_t n = (size_t)e->o.max_batch_tokens, H = (size_t)c->hidden, V = (size_t)c->vocab;
    size_t hr = ENGINE_HEAD_FLOATS / V;
    e->head_rows = hr < 1 ? 1 : hr > n ? (int)n : (int)hr;
    e->x = xmalloc(sizeof(float) * n * H);
    e->xn = xmalloc(sizeof(float) * n * H);
    e->qkv = xmalloc(sizeof(float) * n * max_w);
    e->att = xmalloc(sizeof(float) * n * max_q);
    e->gu = xmalloc(sizeof(float) * n * 2 * max_i);
    e->h = xmalloc(sizeof(float) * n * max_i);
    e->tok = xmalloc(sizeof(int) * n);
    e->pos = xmalloc(sizeof(int) * n);
    e->sel = xmalloc(sizeof(float) * (size_t)e->head_rows * H);
    e->logits = xmalloc(sizeof(float) * (size_t)e->head_rows * V);
    e->sample_buf = xmalloc(sizeof(float) * V);
    if (!e->x || !e->xn || !e->qkv || !e->att || !e->gu || !e->h || !e->tok || !e->pos || !e->sel ||
        !e->logits || !e->sample_buf)
        return err_prefix("serving engine buffers for %d tokens per step (lower max_batch_tokens): ",
                          e->o.max_batch_tokens);
    return 0;
}

void engine_buffers_free(struct engine *e) {
    free(e->x), free(e->xn), free(e->qkv), free(e->att), free(e->gu), free(e->h);
    free(e->tok), free(e->pos), free(e->sel), free(e->logits), free(e->sample_buf);
    free(e->att_work);
}

/* The attention shape of layer l. */
static attn_shape layer_shape(const model *m, int l) {
    const layer_config *lc = &m->cfg.layers[l];
    const int D = m->cfg.head_dim, Q = lc->n_heads * D, KV = lc->n_kv_heads * D;
    return (attn_shape){.n_heads = lc->n_heads, .n_kv_heads = lc->n_kv_heads, .head_dim = D, .ldq = Q + 2 * KV,
                        .ldk = KV, .ldv = KV, .ldo = Q};
}

/* RoPE on the step's queries and keys of layer l (e->qkv), then the new keys and values into their
 * cache blocks. */
static void rope_store_kv(struct engine *e, int l, int n, const eseg *seg, int n_seg) {
    const model *m = e->m;
    const layer_config *lc = &m->cfg.layers[l];
    const int D = m->cfg.head_dim, B = e->o.block_size;
    const int Q = lc->n_heads * D, KV = lc->n_kv_heads * D, W = Q + 2 * KV;
    rope_forward(e->qkv, W, e->pos, m->rope_cos, m->rope_sin, n, lc->n_heads, D);
    rope_forward(e->qkv + Q, W, e->pos, m->rope_cos, m->rope_sin, n, lc->n_kv_heads, D);
    for (int i = 0; i < n_seg; i++) {
        const eseg *g = &seg[i];
        for (int t = 0; t < g->n; t++) {
            const int p = g->p0 + t;
            const size_t dst = ((size_t)g->s->blocks[p / B] * B + p % B) * KV;
            const float *row = e->qkv + (size_t)(g->row0 + t) * W;
            if (e->pool.f16) { /* rounded to nearest even */
                attn_f32_to_f16(e->pool.k16[l] + dst, row + Q, KV);
                attn_f32_to_f16(e->pool.v16[l] + dst, row + Q + KV, KV);
            } else {
                memcpy(e->pool.k[l] + dst, row + Q, sizeof(float) * KV);
                memcpy(e->pool.v[l] + dst, row + Q + KV, sizeof(float) * KV);
            }
        }
    }
}

/* Decoder layer l over the n rows of the step: e->x becomes the layer's output. */
static int engine_layer(struct engine *e, int l, int n, const eseg *seg, int n_seg) {
    model *m = e->m;
    const model_config *c = &m->cfg;
    const int H = c->hidden, D = c->head_dim;
    const layer_config *lc = &c->layers[l];
    const layer_weights *lw = &m->w.layers[l];
    const layer_linears *ln = &m->lin[l];
    const int Q = lc->n_heads * D, KV = lc->n_kv_heads * D, W = Q + 2 * KV, I = lc->intermediate;
    const double t0 = time_monotonic();

    rmsnorm_forward(e->xn, NULL, e->x, lw->attn_norm, n, H, c->rms_eps);
    if (linear_forward(e->qkv, W, e->xn, H, &ln->qkv, n, 0)) return -1;
    rope_store_kv(e, l, n, seg, n_seg);
    const attn_shape sh = layer_shape(m, l);
    if (model_grow(&e->att_work, &e->att_work_cap, attention_paged_work_floats(&sh, e->pseqs, n_seg), "attention tiles"))
        return -1;
    attn_paged_kv kv = kv_pool_layer(&e->pool, l);
    if (attention_paged_forward(e->att, e->qkv, &kv, &sh, e->pseqs, n_seg, e->att_work, e->att_work_cap)) return -1;
    if (linear_forward(e->x, H, e->att, Q, &ln->o, n, 1)) return -1;
    const double t1 = time_monotonic();

    rmsnorm_forward(e->xn, NULL, e->x, lw->mlp_norm, n, H, c->rms_eps);
    if (linear_forward(e->gu, 2 * I, e->xn, H, &ln->gate_up, n, 0)) return -1;
    swiglu_forward(e->h, e->gu, e->gu + I, 2 * I, n, I);
    if (linear_forward(e->x, H, e->h, I, &ln->down, n, 1)) return -1;
    const double t2 = time_monotonic();
    e->st.layer_attn_s[l] += t1 - t0;
    e->st.layer_mlp_s[l] += t2 - t1;
    return 0;
}

/* A thread's clock for the decode profile (engine_set_profile): acc NULL when it is off. */
typedef struct {
    double *acc; /* [ENGINE_TP_N] this thread's seconds by kind */
    double t;    /* the last mark */
} tclock;

/* The time since the last mark goes to kind. */
static inline void tmark(tclock *c, int kind) {
    if (!c->acc) return;
    const double now = time_monotonic();
    c->acc[kind] += now - c->t;
    c->t = now;
}

/* The work since the last mark goes to kind, then the barrier's wait to ENGINE_TP_BARRIER. */
static inline void team_wait(team_barrier *bar, tclock *c, int kind) {
    tmark(c, kind);
    team_barrier_wait(bar);
    tmark(c, ENGINE_TP_BARRIER);
}

/* Thread t's share of decoder layer l in a team of nt (see the file's header); the same values as
 * engine_layer. A failed kernel sets *failed and copies its message into msg (size 256). */
static void engine_layer_team(struct engine *e, int l, int n, const eseg *seg, int n_seg, int t, int nt,
                              team_barrier *bar, tclock *ck, int *failed, char *msg) {
    model *m = e->m;
    const model_config *c = &m->cfg;
    const int H = c->hidden, D = c->head_dim;
    const layer_config *lc = &c->layers[l];
    const layer_weights *lw = &m->w.layers[l];
    const layer_linears *ln = &m->lin[l];
    const int Q = lc->n_heads * D, KV = lc->n_kv_heads * D, W = Q + 2 * KV, I = lc->intermediate;
    const double t0 = t == 0 ? time_monotonic() : 0;
    int lo, hi, rc = 0;
    if (t == 0) rmsnorm_forward(e->xn, NULL, e->x, lw->attn_norm, n, H, c->rms_eps);
    team_wait(bar, ck, ENGINE_TP_NORM);
    split_range(W, t, nt, linear_col_align(&ln->qkv), &lo, &hi);
    if (hi > lo) rc |= linear_forward_cols(e->qkv, W, e->xn, H, &ln->qkv, n, lo, hi, 0);
    team_wait(bar, ck, ENGINE_TP_GEMV);
    if (t == 0) rope_store_kv(e, l, n, seg, n_seg); /* a few rows: one thread */
    team_wait(bar, ck, ENGINE_TP_ROPE_KV);
    const attn_shape sh = layer_shape(m, l);
    attn_paged_kv kv = kv_pool_layer(&e->pool, l);
    rc |= attention_paged_part(e->att, e->qkv, &kv, &sh, e->pseqs, n_seg, e->att_work, e->att_work_cap, t, nt);
    team_wait(bar, ck, ENGINE_TP_ATTN);
    if (attention_paged_needs_merge(&sh, e->pseqs, n_seg)) { /* the key ranges' partial softmaxes */
        attention_paged_merge_part(e->att, &sh, e->pseqs, n_seg, e->att_work, t, nt);
        team_wait(bar, ck, ENGINE_TP_ATTN);
    }
    split_range(H, t, nt, linear_col_align(&ln->o), &lo, &hi);
    if (hi > lo) rc |= linear_forward_cols(e->x, H, e->att, Q, &ln->o, n, lo, hi, 1);
    team_wait(bar, ck, ENGINE_TP_GEMV);
    const double t1 = t == 0 ? time_monotonic() : 0;
    if (t == 0) rmsnorm_forward(e->xn, NULL, e->x, lw->mlp_norm, n, H, c->rms_eps);
    team_wait(bar, ck, ENGINE_TP_NORM);
    /* gate and up rows of the same neurons on one thread: its SwiGLU needs no barrier */
    split_range(I, t, nt, linear_col_align(&ln->gate_up), &lo, &hi);
    if (hi > lo) {
        rc |= linear_forward_cols(e->gu, 2 * I, e->xn, H, &ln->gate_up, n, lo, hi, 0);
        rc |= linear_forward_cols(e->gu, 2 * I, e->xn, H, &ln->gate_up, n, I + lo, I + hi, 0);
        tmark(ck, ENGINE_TP_GEMV);
        for (int i = 0; i < n; i++)
            swiglu_forward(e->h + (size_t)i * I + lo, e->gu + (size_t)i * 2 * I + lo, e->gu + (size_t)i * 2 * I + I + lo,
                           2 * I, 1, hi - lo);
    }
    team_wait(bar, ck, ENGINE_TP_SWIGLU);
    split_range(H, t, nt, linear_col_align(&ln->down), &lo, &hi);
    if (hi > lo) rc |= linear_forward_cols(e->x, H, e->h, I, &ln->down, n, lo, hi, 1);
    team_wait(bar, ck, ENGINE_TP_GEMV);
    if (t == 0) {
        const double t2 = time_monotonic();
        e->st.layer_attn_s[l] += t1 - t0;
        e->st.layer_mlp_s[l] += t2 - t1;
    }
    if (rc)
#pragma omp critical(engine_team_error)
    {
        if (!*failed) snprintf(msg, 256, "%s", err_msg());
        *failed = 1;
    }
}

/* Every layer of a step of n <= GEMV_MAX_ROWS rows as one team. */
static int engine_team_layers(struct engine *e, const eseg *seg, int n_seg, int n) {
    model *m = e->m;
    int nt = model_decode_threads(m);
    if (nt > kernels_threads()) nt = kernels_threads(); /* the work buffer's thread count */
    size_t need = 0;
    for (int l = 0; l < m->cfg.n_layers; l++) {
        const attn_shape sh = layer_shape(m, l);
        const size_t w = attention_paged_work_floats(&sh, e->pseqs, n_seg);
        if (w > need) need = w;
    }
    if (model_grow(&e->att_work, &e->att_work_cap, need, "attention tiles")) return -1;
    team_barrier bar;
    int failed = 0;
    char msg[256] = "";
    for (;;) {
        int short_team = 0;
        team_barrier_init(&bar, nt);
#pragma omp parallel num_threads(nt) if (nt > 1)
        {
            const int t = omp_get_thread_num();
            if (omp_get_num_threads() != nt) { /* the runtime gave fewer threads: redo on one */
                if (t == 0) short_team = 1;
            } else {
                double acc[ENGINE_TP_N] = {0};
                tclock ck = {.acc = e->profile ? acc : NULL, .t = e->profile ? time_monotonic() : 0};
                for (int l = 0; l < m->cfg.n_layers; l++)
                    engine_layer_team(e, l, n, seg, n_seg, t, nt, &bar, &ck, &failed, msg);
                if (e->profile)
#pragma omp critical(engine_team_profile)
                    for (int k = 0; k < ENGINE_TP_N; k++) e->st.team_s[k] += acc[k];
            }
        }
        if (!short_team) break;
        nt = 1;
    }
    e->st.team_steps++;
    return failed ? err_set(ERR_INTERNAL, "decode step: %s", msg) : 0;
}

int engine_forward(struct engine *e, const eseg *seg, int n_seg, int n_rows) {
    model *m = e->m;
    const double t0 = time_monotonic();
    int max_pos = 0;
    for (int i = 0; i < n_seg; i++) {
        const eseg *g = &seg[i];
        for (int t = 0; t < g->n; t++) {
            e->tok[g->row0 + t] = g->s->tokens[g->p0 + t];
            e->pos[g->row0 + t] = g->p0 + t;
        }
        e->pseqs[i] = (attn_paged_seq){.q0 = g->row0, .nq = g->n, .nkv = g->p0 + g->n, .blocks = g->s->blocks};
        if (g->p0 + g->n > max_pos) max_pos = g->p0 + g->n;
    }
    if (model_rope_ensure(m, max_pos)) return -1;
    embedding_forward(e->x, m->w.embed, e->tok, n_rows, m->cfg.hidden);
    const double t1 = time_monotonic();
    e->st.embed_head_s += t1 - t0;
    if (n_rows <= GEMV_MAX_ROWS && model_decode_streams(m)) {
        if (engine_team_layers(e, seg, n_seg, n_rows)) return -1;
    } else {
        for (int l = 0; l < m->cfg.n_layers; l++)
            if (engine_layer(e, l, n_rows, seg, n_seg)) return -1;
    }
    e->st.forward_s += time_monotonic() - t0;
    return 0;
}

int engine_head(struct engine *e, const int *rows, int n) {
    model *m = e->m;
    const int H = m->cfg.hidden;
    const double t0 = time_monotonic();
    for (int i = 0; i < n; i++) memcpy(e->sel + (size_t)i * H, e->x + (size_t)rows[i] * H, sizeof(float) * H);
    rmsnorm_forward(e->sel, NULL, e->sel, m->w.final_norm, n, H, m->cfg.rms_eps);
    int rc = linear_forward(e->logits, m->cfg.vocab, e->sel, H, &m->lm_head, n, 0);
    const double dt = time_monotonic() - t0;
    if (e->profile) e->st.team_s[ENGINE_TP_HEAD] += dt;
    e->st.embed_head_s += dt;
    e->st.forward_s += dt;
    return rc;
}
