/* engine_forward.c: one batched forward of the serving engine: the tokens of every scheduled
 * sequence (decode tokens and prefill chunks) are rows of one matrix, so each projection is one
 * linear_forward over all of them; attention reads each sequence's keys and values from its KV
 * blocks (attention_paged_forward). The per-layer body mirrors model_layer_infer (model_infer.c)
 * with the paged cache in place of the contiguous one. Time is accounted per layer (attention
 * part, MLP part) and for the embedding and head, for the benchmark's breakdown. */
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "common/log.h"
#include "kernels/embedding.h"
#include "kernels/linear.h"
#include "kernels/rmsnorm.h"
#include "kernels/rope.h"
#include "kernels/swiglu.h"
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

/* Decoder layer l over the n rows of the step: e->x becomes the layer's output. */
static int engine_layer(struct engine *e, int l, int n, const eseg *seg, int n_seg) {
    model *m = e->m;
    const model_config *c = &m->cfg;
    const int H = c->hidden, D = c->head_dim, B = e->o.block_size;
    const layer_config *lc = &c->layers[l];
    const layer_weights *lw = &m->w.layers[l];
    const layer_linears *ln = &m->lin[l];
    const int Q = lc->n_heads * D, KV = lc->n_kv_heads * D, W = Q + 2 * KV, I = lc->intermediate;
    const double t0 = time_monotonic();

    rmsnorm_forward(e->xn, NULL, e->x, lw->attn_norm, n, H, c->rms_eps);
    if (linear_forward(e->qkv, W, e->xn, H, &ln->qkv, n, 0)) return -1;
    rope_forward(e->qkv, W, e->pos, m->rope_cos, m->rope_sin, n, lc->n_heads, D);
    rope_forward(e->qkv + Q, W, e->pos, m->rope_cos, m->rope_sin, n, lc->n_kv_heads, D);
    int max_nkv = 0;
    for (int i = 0; i < n_seg; i++) { /* keys and values of the new positions into their blocks */
        const eseg *g = &seg[i];
        for (int t = 0; t < g->n; t++) {
            const int p = g->p0 + t;
            const size_t dst = ((size_t)g->s->blocks[p / B] * B + p % B) * KV;
            const float *row = e->qkv + (size_t)(g->row0 + t) * W;
            memcpy(e->pool.k[l] + dst, row + Q, sizeof(float) * KV);
            memcpy(e->pool.v[l] + dst, row + Q + KV, sizeof(float) * KV);
        }
        if (g->p0 + g->n > max_nkv) max_nkv = g->p0 + g->n;
    }
    attn_shape sh = {.n_heads = lc->n_heads, .n_kv_heads = lc->n_kv_heads, .head_dim = D, .ldq = W, .ldk = KV,
                     .ldv = KV, .ldo = Q};
    if (model_grow(&e->att_work, &e->att_work_cap, attention_paged_work_floats(&sh, max_nkv), "attention tiles"))
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
    for (int l = 0; l < m->cfg.n_layers; l++)
        if (engine_layer(e, l, n_rows, seg, n_seg)) return -1;
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
    e->st.embed_head_s += dt;
    e->st.forward_s += dt;
    return rc;
}
