/* layerwise.c: the layer-by-layer calibration forward of layerwise.h over the model's inference
 * scratch (model_layer_infer), one chunk of whole sequences at a time. */
#include "model/layerwise.h"

#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "kernels/embedding.h"
#include "kernels/rmsnorm.h"
#include "model/model_internal.h"

struct layerwise {
    model *m;
    int n_seqs, layer, chunk_tokens, max_len;
    int64_t n_tokens;
    int *seq_lens;      /* [n_seqs] */
    int64_t *seq_off;   /* [n_seqs + 1] first token of each sequence in the stream */
    float *x;           /* [n_tokens, hidden] the residual stream at the input of `layer` */
    attn_seq *aseqs;    /* [n_seqs] one chunk's sequences */
};

int layerwise_open(layerwise **out, model *m, const int *tokens, const int *seq_lens, int n_seqs, int chunk_tokens) {
    *out = NULL;
    if (n_seqs < 1) return err_set(ERR_INPUT, "layerwise: no calibration sequence was given");
    layerwise *lw = xcalloc(1, sizeof *lw);
    if (!lw) return -1;
    lw->m = m;
    lw->n_seqs = n_seqs;
    lw->seq_lens = xmalloc(sizeof(int) * (size_t)n_seqs);
    lw->seq_off = xmalloc(sizeof(int64_t) * ((size_t)n_seqs + 1));
    lw->aseqs = xmalloc(sizeof(attn_seq) * (size_t)n_seqs);
    if (!lw->seq_lens || !lw->seq_off || !lw->aseqs) goto fail;
    lw->seq_off[0] = 0;
    for (int i = 0; i < n_seqs; i++) {
        if (seq_lens[i] < 1) {
            err_set(ERR_INPUT, "layerwise: calibration sequence %d is empty", i);
            goto fail;
        }
        lw->seq_lens[i] = seq_lens[i];
        lw->seq_off[i + 1] = lw->seq_off[i] + seq_lens[i];
        if (seq_lens[i] > lw->max_len) lw->max_len = seq_lens[i];
    }
    lw->n_tokens = lw->seq_off[n_seqs];
    if (lw->n_tokens > INT32_MAX) {
        err_set(ERR_INPUT, "layerwise: %lld calibration tokens; at most %d are supported", (long long)lw->n_tokens,
                INT32_MAX);
        goto fail;
    }
    if (m->cfg.max_pos > 0 && lw->max_len > m->cfg.max_pos) {
        err_set(ERR_INPUT, "layerwise: a calibration sequence has %d tokens but the model allows %d positions; "
                "shorten the calibration examples", lw->max_len, m->cfg.max_pos);
        goto fail;
    }
    lw->chunk_tokens = chunk_tokens > lw->max_len ? chunk_tokens : lw->max_len;
    if (model_check_tokens(m, tokens, (int)lw->n_tokens)) goto fail;
    const size_t H = (size_t)m->cfg.hidden;
    lw->x = malloc(sizeof(float) * (size_t)lw->n_tokens * H);
    if (!lw->x) {
        err_set(ERR_NOMEM, "layerwise: cannot allocate %.1f MiB for the residual stream of %lld calibration tokens",
                (double)lw->n_tokens * H * 4.0 / 1048576.0, (long long)lw->n_tokens);
        goto fail;
    }
    if (model_scratch_ensure(m) || model_rope_ensure(m, lw->max_len) || model_scratch_tokens(m, lw->chunk_tokens))
        goto fail;
    embedding_forward(lw->x, m->w.embed, tokens, (int)lw->n_tokens, (int)H);
    *out = lw;
    return 0;
fail:
    layerwise_close(lw);
    return -1;
}

void layerwise_close(layerwise *lw) {
    if (!lw) return;
    free(lw->seq_lens);
    free(lw->seq_off);
    free(lw->aseqs);
    free(lw->x);
    free(lw);
}

int64_t layerwise_tokens(const layerwise *lw) { return lw->n_tokens; }
int layerwise_layer(const layerwise *lw) { return lw->layer; }
const float *layerwise_stream(const layerwise *lw) { return lw->x; }

/* Runs the current layer over every chunk; with keep, the chunk's output goes back to the stream. */
static int run_layer(layerwise *lw, const model_tap *tap, int keep) {
    model *m = lw->m;
    if (lw->layer >= m->cfg.n_layers)
        return err_set(ERR_INPUT, "layerwise: every one of the %d layers has already run", m->cfg.n_layers);
    /* compression may shrink a layer (never widen it): the scratch sized at open still fits */
    if (model_scratch_tokens(m, lw->chunk_tokens)) return -1;
    struct model_scratch *s = m->scratch;
    const size_t H = (size_t)m->cfg.hidden;
    for (int q0 = 0; q0 < lw->n_seqs;) {
        int q1 = q0, n = 0;
        while (q1 < lw->n_seqs && n + lw->seq_lens[q1] <= lw->chunk_tokens) {
            lw->aseqs[q1 - q0] = (attn_seq){.q0 = n, .nq = lw->seq_lens[q1], .k0 = n, .nkv = lw->seq_lens[q1]};
            for (int p = 0; p < lw->seq_lens[q1]; p++) s->pos[n + p] = p;
            n += lw->seq_lens[q1++];
        }
        float *x = lw->x + (size_t)lw->seq_off[q0] * H;
        memcpy(s->x, x, sizeof(float) * (size_t)n * H);
        if (model_layer_infer(m, lw->layer, n, NULL, lw->aseqs, q1 - q0, tap)) return -1;
        if (keep) memcpy(x, s->x, sizeof(float) * (size_t)n * H);
        q0 = q1;
    }
    return 0;
}

int layerwise_capture(layerwise *lw, const model_tap *tap) {
    if (!tap || !tap->fn) return err_set(ERR_INPUT, "layerwise_capture needs a tap with a callback");
    return run_layer(lw, tap, 0);
}

int layerwise_advance(layerwise *lw) {
    if (run_layer(lw, NULL, 1)) return -1;
    lw->layer++;
    return 0;
}

int layerwise_final_hidden(layerwise *lw, float *hidden) {
    const model_config *c = &lw->m->cfg;
    if (lw->layer != c->n_layers)
        return err_set(ERR_INPUT, "layerwise: the stream is at layer %d of %d; advance through every layer first",
                       lw->layer, c->n_layers);
    rmsnorm_forward(hidden, NULL, lw->x, lw->m->w.final_norm, (int)lw->n_tokens, c->hidden, c->rms_eps);
    return 0;
}

int layerwise_restore(layerwise *lw, int layer, const float *stream) {
    if (layer < 0 || layer > lw->m->cfg.n_layers)
        return err_set(ERR_INPUT, "layerwise: layer %d is outside 0..%d", layer, lw->m->cfg.n_layers);
    memcpy(lw->x, stream, sizeof(float) * (size_t)lw->n_tokens * (size_t)lw->m->cfg.hidden);
    lw->layer = layer;
    return 0;
}
