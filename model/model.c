/* model.c: a model's life cycle: init from a config and weights, the linear descriptors over the
 * weights, RoPE tables, the training activation allocation, and freeing. */
#include "model/model.h"

#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "kernels/attention.h"
#include "kernels/rope.h"
#include "kernels/threads.h"
#include "model/model_internal.h"
#include "model/qmodel.h"

void model_max_widths(const model_config *c, int *max_q, int *max_qkv, int *max_i, int *max_heads) {
    int q = 0, w = 0, in = 0, hd = 0;
    for (int l = 0; l < c->n_layers; l++) {
        const layer_config *lc = &c->layers[l];
        if (lc->n_heads * c->head_dim > q) q = lc->n_heads * c->head_dim;
        if ((lc->n_heads + 2 * lc->n_kv_heads) * c->head_dim > w) w = (lc->n_heads + 2 * lc->n_kv_heads) * c->head_dim;
        if (lc->intermediate > in) in = lc->intermediate;
        if (lc->n_heads > hd) hd = lc->n_heads;
    }
    *max_q = q, *max_qkv = w, *max_i = in, *max_heads = hd;
}

size_t model_n_params(const model_config *cfg) { return weights_count(cfg); }

/* The fused descriptors need q, k, v (and their biases) and gate, up adjacent in the layout. */
static int check_adjacent(const model_weights *w, const model_config *c) {
    const size_t H = (size_t)c->hidden, D = (size_t)c->head_dim;
    for (int l = 0; l < c->n_layers; l++) {
        const layer_weights *lw = &w->layers[l];
        size_t q = c->layers[l].n_heads * D, kv = c->layers[l].n_kv_heads * D, I = c->layers[l].intermediate;
        int ok = lw->wk == lw->wq + q * H && lw->wv == lw->wk + kv * H && lw->w_up == lw->w_gate + I * H;
        if (c->attention_bias) ok = ok && lw->bk == lw->bq + q && lw->bv == lw->bk + kv;
        if (!ok)
            return err_set(ERR_INTERNAL, "layer %d: q/k/v or gate/up weights are not adjacent in the weight layout "
                           "(model/weights.c changed its order); the fused projections need them adjacent", l);
    }
    return 0;
}

int model_init(model *m, const model_config *cfg, model_weights *w) {
    memset(m, 0, sizeof *m);
    if (config_validate(cfg)) return err_prefix("model: ");
    if (cfg->head_dim % 2)
        return err_set(ERR_INPUT, "head_dim %d is odd; rotary embeddings need an even head_dim", cfg->head_dim);
    m->cfg = *cfg;
    if (w) {
        if (!w->embed || w->n_floats != weights_count(cfg)) {
            memset(m, 0, sizeof *m);
            return err_set(ERR_INPUT, "model: the weights (%zu floats) do not have the layout of the config (%zu floats)",
                           w->n_floats, weights_count(cfg));
        }
        m->w = *w;
    } else if (weights_alloc(&m->w, cfg)) {
        memset(m, 0, sizeof *m);
        return -1;
    }
    if (check_adjacent(&m->w, cfg)) {
        if (!w) weights_free(&m->w);
        memset(m, 0, sizeof *m);
        return -1;
    }
    if (w) memset(w, 0, sizeof *w);
    kernels_threads();
    model_bind_linears(m);
    return 0;
}

int model_rope_ensure(model *m, int n_pos) {
    const int half = m->cfg.head_dim / 2;
    if (!m->inv_freq) {
        m->inv_freq = xmalloc(sizeof(float) * half);
        if (!m->inv_freq) return -1;
        rope_scaling s = {.llama3 = m->cfg.rope_scaling == ROPE_SCALING_LLAMA3,
                          .factor = m->cfg.rope_factor,
                          .low_freq_factor = m->cfg.rope_low_freq_factor,
                          .high_freq_factor = m->cfg.rope_high_freq_factor,
                          .original_max_pos = m->cfg.rope_original_max_pos};
        rope_inv_freq(m->inv_freq, m->cfg.head_dim, m->cfg.rope_theta, &s);
    }
    if (n_pos <= m->rope_len) return 0;
    int len = m->rope_len * 2 > n_pos ? m->rope_len * 2 : n_pos;
    if (len < 256) len = 256;
    float *c = realloc(m->rope_cos, sizeof(float) * half * (size_t)len);
    if (!c) return err_set(ERR_NOMEM, "cannot grow the RoPE tables to %d positions", len);
    m->rope_cos = c;
    float *s = realloc(m->rope_sin, sizeof(float) * half * (size_t)len);
    if (!s) return err_set(ERR_NOMEM, "cannot grow the RoPE tables to %d positions", len);
    m->rope_sin = s;
    rope_tables(m->rope_cos + (size_t)m->rope_len * half, m->rope_sin + (size_t)m->rope_len * half, m->inv_freq,
                m->rope_len, len - m->rope_len, half);
    m->rope_len = len;
    return 0;
}

int model_grow(float **buf, size_t *cap, size_t n, const char *what) {
    if (n <= *cap && *buf) return 0;
    free(*buf);
    *buf = malloc(sizeof(float) * (n ? n : 1));
    if (!*buf) {
        *cap = 0;
        return err_set(ERR_NOMEM, "cannot allocate %.1f MiB for %s", n * 4.0 / 1048576.0, what);
    }
    *cap = n;
    return 0;
}

int model_scratch_ensure(model *m) {
    if (m->scratch) return 0;
    m->scratch = xcalloc(1, sizeof *m->scratch);
    return m->scratch ? 0 : -1;
}

int model_check_tokens(const model *m, const int *tokens, int n) {
    for (int i = 0; i < n; i++)
        if (tokens[i] < 0 || tokens[i] >= m->cfg.vocab)
            return err_set(ERR_INPUT, "token %d at index %d is outside the vocabulary [0, %d); the tokenizer does not "
                           "match the model", tokens[i], i, m->cfg.vocab);
    return 0;
}

/* Float counts of the training activation layout (fills a when mem != NULL). */
static size_t acts_layout(struct model_acts *a, const model_config *c, int N, float *mem) {
    size_t off = 0;
    const size_t H = (size_t)c->hidden, n = (size_t)N;
#define TAKE(ptr, cnt)                    \
    do {                                  \
        if (mem) (ptr) = mem + off;       \
        off += ((cnt) + 15) & ~(size_t)15; \
    } while (0)
    int max_q, max_w, max_i, max_h;
    model_max_widths(c, &max_q, &max_w, &max_i, &max_h);
    size_t work = 0;
    for (int l = 0; l < c->n_layers; l++) {
        const layer_config *lc = &c->layers[l];
        size_t q = (size_t)lc->n_heads * c->head_dim, w = (size_t)(lc->n_heads + 2 * lc->n_kv_heads) * c->head_dim;
        size_t I = (size_t)lc->intermediate;
        layer_acts *la = mem ? &a->layers[l] : NULL;
        float *dummy;
#define L(field) (*(la ? &la->field : &dummy))
        TAKE(L(x_in), n * H);
        TAKE(L(xn1), n * H);
        TAKE(L(rstd1), n);
        TAKE(L(qkv), n * w);
        TAKE(L(att), n * q);
        TAKE(L(lse), n * lc->n_heads);
        TAKE(L(x_mid), n * H);
        TAKE(L(xn2), n * H);
        TAKE(L(rstd2), n);
        TAKE(L(gu), n * 2 * I);
        TAKE(L(h), n * I);
#undef L
        attn_shape s = {.n_heads = lc->n_heads, .n_kv_heads = lc->n_kv_heads, .head_dim = c->head_dim};
        size_t wk = attention_work_floats(&s, N);
        if (wk > work) work = wk;
    }
    float *dummy2;
#define A(field) (*(mem ? &a->field : &dummy2))
    TAKE(A(x_out), n * H);
    TAKE(A(rstd_f), n);
    TAKE(A(hidden), n * H);
    TAKE(A(d_res), n * H);
    TAKE(A(d_xn), n * H);
    TAKE(A(d_att), n * max_q);
    TAKE(A(d_qkv), n * max_w);
    TAKE(A(d_h), n * max_i);
    TAKE(A(att_work), work);
#undef A
#undef TAKE
    if (mem) a->att_work_floats = work;
    return off;
}

size_t model_train_act_bytes(const model_config *cfg, int max_tokens) {
    struct model_acts dummy;
    return acts_layout(&dummy, cfg, max_tokens, NULL) * sizeof(float) + (3 * sizeof(int) + sizeof(attn_seq)) * (size_t)max_tokens;
}

static void acts_free(struct model_acts *a) {
    if (!a) return;
    free(a->mem);
    free(a->tokens);
    free(a->seq_lens);
    free(a->pos);
    free(a->aseqs);
    free(a);
}

int model_reserve_train(model *m, int max_tokens) {
    if (max_tokens < 1) return err_set(ERR_INPUT, "a training batch needs room for at least 1 token (got %d)", max_tokens);
    if (!m->grad.mem && weights_alloc(&m->grad, &m->cfg)) return err_prefix("gradients: ");
    struct model_acts *a = xcalloc(1, sizeof *a);
    if (!a) return -1;
    size_t n = acts_layout(a, &m->cfg, max_tokens, NULL);
    a->mem = malloc(n * sizeof(float));
    a->tokens = malloc(sizeof(int) * (size_t)max_tokens);
    a->seq_lens = malloc(sizeof(int) * (size_t)max_tokens);
    a->pos = malloc(sizeof(int) * (size_t)max_tokens);
    a->aseqs = malloc(sizeof(attn_seq) * (size_t)max_tokens);
    if (!a->mem || !a->tokens || !a->seq_lens || !a->pos || !a->aseqs) {
        acts_free(a);
        return err_set(ERR_NOMEM, "cannot allocate %.1f MiB of training activations for %d tokens; use smaller batches",
                       n * 4.0 / 1048576.0, max_tokens);
    }
    acts_layout(a, &m->cfg, max_tokens, a->mem);
    a->n_floats = n;
    a->max_tokens = max_tokens;
    acts_free(m->acts);
    m->acts = a;
    m->max_tokens = max_tokens;
    return 0;
}

void model_zero_grad(model *m) {
    if (!m->grad.mem) return;
    const size_t n = m->grad.n_floats, block = 1 << 20; /* 4 MB per task: a 30M-parameter model has 30 */
    const long n_blocks = (long)((n + block - 1) / block);
    const int nt = kernels_threads_for((double)n, THR_STREAM_FLOATS);
#pragma omp parallel for schedule(static) num_threads(nt) if (nt > 1 && n_blocks > 1)
    for (long b = 0; b < n_blocks; b++) {
        size_t i0 = (size_t)b * block, len = i0 + block < n ? block : n - i0;
        memset(m->grad.mem + i0, 0, len * sizeof(float));
    }
}

void model_free(model *m) {
    model_quant_free(m->quant);
    weights_free(&m->w);
    weights_free(&m->grad);
    acts_free(m->acts);
    for (int i = 0; i < m->n_bf16; i++) gemm_bf16_b_free(&m->w_bf16[i]);
    free(m->w_bf16);
    if (m->scratch) {
        struct model_scratch *s = m->scratch;
        free(s->x), free(s->xn), free(s->qkv), free(s->att), free(s->gu), free(s->h), free(s->sel), free(s->pos);
        free(s->att_work), free(s->logits), free(s->dlogits), free(s->aseqs), free(s->scores);
        free(s);
    }
    free(m->inv_freq);
    free(m->rope_cos);
    free(m->rope_sin);
    memset(m, 0, sizeof *m);
}
