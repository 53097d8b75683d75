/* model_loss.c: the LM head and its loss over chunks of positions (logits of all positions are
 * never held at once), the built-in weighted cross-entropy, and next-token targets. */
#include <string.h>

#include "common/error.h"
#include "kernels/gemv.h"
#include "kernels/linear.h"
#include "kernels/softmax.h"
#include "kernels/threads.h"
#include "model/model.h"
#include "model/model_internal.h"

/* Logits kept per chunk: about 2M floats (8 MB), 16 .. 1024 rows. */
#define LM_CHUNK_FLOATS (1 << 21)

int model_lm_chunk_rows(const model *m) {
    if (m->lm_chunk_rows > 0) return m->lm_chunk_rows;
    int rows = LM_CHUNK_FLOATS / m->cfg.vocab;
    if (rows > 1024) rows = 1024;
    if (rows < 16) rows = 16;
    return rows;
}

/* logits [n, vocab] of hidden [n, hidden]: with b (the head packed for this call, mixed precision)
 * a bf16 GEMM over it, else linear_forward. */
static int head_forward(model *m, float *logits, const float *hidden, int n, const gemm_bf16_b *b) {
    if (b) return gemm_bf16_packed(logits, m->cfg.vocab, hidden, m->cfg.hidden, 0, b, n, 1.0f, 0.0f);
    return linear_forward(logits, m->cfg.vocab, hidden, m->cfg.hidden, &m->lm_head, n, 0);
}

int model_logits(model *m, float *logits, const float *hidden, int n) { return head_forward(m, logits, hidden, n, NULL); }

static int lm_loss_inner(model *m, const float *hidden, float *d_hidden, int n, lm_loss_fn fn, void *ctx, double *loss);

/* With gradients, a part of the training step: on one thread when the step is small (model_forward). */
int model_lm_loss(model *m, const float *hidden, float *d_hidden, int n, lm_loss_fn fn, void *ctx, double *loss) {
    const double macs = d_hidden && m->acts ? m->acts->call_macs : model_call_macs(m, 0, 0, n);
    const int cap = kernels_call_begin(macs);
    const int rc = lm_loss_inner(m, hidden, d_hidden, n, fn, ctx, loss);
    kernels_cap_threads(cap);
    return rc;
}

static int lm_loss_inner(model *m, const float *hidden, float *d_hidden, int n, lm_loss_fn fn, void *ctx, double *loss) {
    const int V = m->cfg.vocab, H = m->cfg.hidden, rows = model_lm_chunk_rows(m);
    *loss = 0;
    if (d_hidden && !m->grad.mem)
        return err_set(ERR_INPUT, "the LM-head gradient needs gradient buffers; call model_reserve_train first");
    if (d_hidden && m->lm_head.format != LINEAR_F32)
        return err_set(ERR_INPUT, "the LM head is quantized; its backward needs the fp32 model");
    if (model_scratch_ensure(m)) return -1;
    struct model_scratch *s = m->scratch;
    size_t need = (size_t)rows * V;
    if (model_grow(&s->logits, &s->logits_cap, need, "LM-head logits")) return -1;
    if (d_hidden && model_grow(&s->dlogits, &s->dlogits_cap, need, "LM-head logit gradients")) return -1;
    /* mixed precision: the head (for logits) and its transpose (for d hidden) packed once for
     * every chunk, instead of once per chunk */
    gemm_bf16_b fw = {0}, bw = {0};
    const int packed = m->lm_head.bf16_compute && n > rows;
    int rc = 0;
    if (packed)
        PROF(PROF_HEAD, rc = gemm_bf16_pack_b(&fw, m->lm_head.w, H, 1, V, H) ||
                             (d_hidden && gemm_bf16_pack_b(&bw, m->lm_head.w, H, 0, H, V)));
    for (int r0 = 0; r0 < n && !rc; r0 += rows) {
        const int nr = n - r0 < rows ? n - r0 : rows;
        const float *hc = hidden + (size_t)r0 * H;
        PROF(PROF_HEAD, rc = head_forward(m, s->logits, hc, nr, packed ? &fw : NULL));
        lm_chunk c = {.row0 = r0, .n_rows = nr, .vocab = V, .hidden = hc, .logits = s->logits,
                      .dlogits = d_hidden ? s->dlogits : NULL};
        if (!rc) PROF(PROF_LOSS, rc = fn(ctx, &c, loss));
        if (!rc && d_hidden) {
            float *dh = d_hidden + (size_t)r0 * H;
            PROF(PROF_HEAD, rc = (packed ? gemm_bf16_packed(dh, H, s->dlogits, V, 0, &bw, nr, 1, 0)
                                                               : linear_backward_input(dh, H, s->dlogits, V, &m->lm_head, nr, 0)) ||
                                 linear_backward_params(m->grad.lm_head, NULL, s->dlogits, V, hc, H, nr, V, H,
                                                        m->lm_head.bf16_compute));
        }
    }
    gemm_bf16_b_free(&fw);
    gemm_bf16_b_free(&bw);
    return rc ? -1 : 0;
}

int lm_loss_ce(void *ctx, const lm_chunk *c, double *loss) {
    const lm_ce_ctx *x = ctx;
    const int *t = x->targets + c->row0;
    for (int i = 0; i < c->n_rows; i++)
        if (t[i] >= c->vocab)
            return err_set(ERR_INPUT, "target %d at position %d is outside the vocabulary [0, %d)", t[i], c->row0 + i,
                           c->vocab);
    float part[256];
    for (int i0 = 0; i0 < c->n_rows; i0 += 256) {
        int nr = c->n_rows - i0 < 256 ? c->n_rows - i0 : 256;
        size_t o = (size_t)i0 * c->vocab;
        cross_entropy(part, c->dlogits ? c->dlogits + o : NULL, c->logits + o, t + i0,
                      x->weights ? x->weights + c->row0 + i0 : NULL, nr, c->vocab);
        for (int i = 0; i < nr; i++) *loss += part[i];
    }
    return 0;
}

int model_batch_targets(const model_batch *b, int *targets) {
    int n = 0;
    for (int s = 0, i = 0; s < b->n_seqs; s++)
        for (int p = 0; p < b->seq_lens[s]; p++, i++) {
            targets[i] = p + 1 < b->seq_lens[s] ? b->tokens[i + 1] : -1;
            n += targets[i] >= 0;
        }
    return n;
}
