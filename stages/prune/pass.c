/* pass.c: one decoder layer of the pruning pass. The layer's calibration forward gathers the Gram
 * matrices of the o_proj and down_proj inputs (float64, kernels/gram.h); with several MPI ranks each
 * rank holds a shard of the calibration set and rank 0 adds the others' matrices in rank order
 * (H = ((H_0 + H_1) + H_2) + ...), runs OSSCAR, and sends the pruned layer to every rank; then every
 * rank moves its stream through the pruned layer. */
#include <math.h>
#include <mpi.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "common/log.h"
#include "kernels/gram.h"
#include "stages/prune/prune.h"
#include "stages/train/dp.h"

enum { PRUNE_TAG = 1101 };
#define MPI_CHUNK (1 << 24) /* elements per MPI message (counts are ints) */

int prune_agree(int rc, int world) {
    if (world <= 1) return rc ? -1 : 0;
    int status = rc ? 1 : 0;
    if (dp_exchange(NULL, 0, &status, world)) return -1;
    if (status && !rc) return err_set(ERR_STAGE, "another rank failed while pruning (see its lines in the log)");
    return status ? -1 : 0;
}

typedef struct {
    double *h[MODEL_SITE_N]; /* [d, d] per site, accumulated in the upper triangle */
} gram_tap;

static int tap_gram(void *ctx, model_site site, const float *x, int n, int in) {
    gram_tap *g = ctx;
    return g->h[site] ? gram_accumulate(g->h[site], x, in, n, in) : 0;
}

/* Rank 0's h becomes the sum over ranks in rank order, symmetrized. */
static int gram_reduce(double *h, int d, int rank, int world) {
    const size_t n = (size_t)d * d;
    int rc = 0;
    if (world > 1) {
        double *buf = rank == 0 ? xmalloc(sizeof(double) * (n < MPI_CHUNK ? n : MPI_CHUNK)) : NULL;
        if (rank == 0 && !buf) rc = -1;
        for (int r = 1; r < world && !rc; r++)
            for (size_t o = 0; o < n && !rc; o += MPI_CHUNK) {
                const int cnt = (int)(n - o < MPI_CHUNK ? n - o : MPI_CHUNK);
                if (rank == 0) {
                    if (MPI_Recv(buf, cnt, MPI_DOUBLE, r, PRUNE_TAG, MPI_COMM_WORLD, MPI_STATUS_IGNORE) != MPI_SUCCESS)
                        rc = err_set(ERR_IO, "MPI_Recv of a Gram matrix from rank %d failed", r);
                    for (int i = 0; i < cnt && !rc; i++) h[o + i] += buf[i];
                } else if (rank == r &&
                           MPI_Send(h + o, cnt, MPI_DOUBLE, 0, PRUNE_TAG, MPI_COMM_WORLD) != MPI_SUCCESS) {
                    rc = err_set(ERR_IO, "MPI_Send of a Gram matrix to rank 0 failed");
                }
            }
        free(buf);
    }
    if (rank == 0) gram_symmetrize(h, d);
    return prune_agree(rc, world);
}

/* Rank 0's layer l (weights and masks) on every rank. */
static int bcast_layer(model *m, prune_masks *mk, int l, int world) {
    if (world <= 1) return 0;
    size_t n;
    float *span = prune_layer_span(m, l, &n);
    int rc = 0;
    for (size_t o = 0; o < n && !rc; o += MPI_CHUNK) {
        const int cnt = (int)(n - o < MPI_CHUNK ? n - o : MPI_CHUNK);
        if (MPI_Bcast(span + o, cnt, MPI_FLOAT, 0, MPI_COMM_WORLD) != MPI_SUCCESS)
            rc = err_set(ERR_IO, "MPI_Bcast of layer %d's weights failed", l);
    }
    const layer_config *lc = &m->cfg.layers[l];
    if (!rc && (MPI_Bcast(mk->mlp[l], lc->intermediate, MPI_UNSIGNED_CHAR, 0, MPI_COMM_WORLD) != MPI_SUCCESS ||
                MPI_Bcast(mk->kv[l], lc->n_kv_heads, MPI_UNSIGNED_CHAR, 0, MPI_COMM_WORLD) != MPI_SUCCESS))
        rc = err_set(ERR_IO, "MPI_Bcast of layer %d's masks failed", l);
    return prune_agree(rc, world);
}

/* OSSCAR (or a baseline) on o_proj by KV groups, then the q/k/v rows of the removed groups. */
static int prune_attention(model *m, int l, const double *h, prune_masks *mk, prune_layer_stats *st, const prune_opts *o) {
    const model_config *c = &m->cfg;
    const layer_config *lc = &c->layers[l];
    const int gs = lc->n_heads / lc->n_kv_heads * c->head_dim;
    osscar_stats os;
    if (osscar_prune(m->w.layers[l].wo, mk->kv[l], &os, h, c->hidden, lc->n_kv_heads, gs, o->plan[l].kv, &o->solver))
        return err_prefix("layer %d, attention (o_proj by KV groups): ", l);
    prune_zero_attention(m, l, mk->kv[l]);
    st->rel_error_attn = os.rel_error, st->rel_error_attn_greedy = os.rel_error_greedy;
    st->removed_attn = os.removed, st->swaps_attn = os.ls_swaps, st->dead_attn = os.dead;
    return 0;
}

/* The same on down_proj by single neurons, then the gate/up rows of the removed neurons. */
static int prune_mlp(model *m, int l, const double *h, prune_masks *mk, prune_layer_stats *st, const prune_opts *o) {
    const model_config *c = &m->cfg;
    osscar_stats os;
    if (osscar_prune(m->w.layers[l].w_down, mk->mlp[l], &os, h, c->hidden, c->layers[l].intermediate, 1,
                     o->plan[l].mlp, &o->solver))
        return err_prefix("layer %d, MLP (down_proj by neurons): ", l);
    prune_zero_mlp(m, l, mk->mlp[l]);
    st->rel_error_mlp = os.rel_error, st->rel_error_mlp_greedy = os.rel_error_greedy;
    st->removed_mlp = os.removed, st->swaps_mlp = os.ls_swaps, st->dead_mlp = os.dead;
    return 0;
}

/* Captures the asked sites over this rank's shard and sums them on rank 0. */
static int capture(layerwise *lw, gram_tap *g, unsigned sites, const int *dims, const prune_opts *o, int rank, int world) {
    model_tap t = {.sites = sites, .fn = tap_gram, .ctx = g, .partial = 1};
    if (prune_agree(layerwise_capture(lw, &t), world)) return -1;
    for (int s = 0; s < MODEL_SITE_N; s++)
        if ((sites & MODEL_SITE_BIT(s)) && gram_reduce(g->h[s], dims[s], rank, world)) return -1;
    if (o->after_capture) o->after_capture(o->hook_ctx, layerwise_layer(lw));
    return 0;
}

int prune_layer(model *m, layerwise *lw, prune_masks *mk, prune_layer_stats *st, const prune_opts *o, int rank,
                int world) {
    const int l = layerwise_layer(lw);
    const model_config *c = &m->cfg;
    const layer_config *lc = &c->layers[l];
    const double t0 = time_monotonic();
    memset(st, 0, sizeof *st);
    st->rel_error_mlp = st->rel_error_attn = st->rel_error_mlp_greedy = st->rel_error_attn_greedy = NAN;
    const int attn = o->plan[l].kv > 0, mlp = o->plan[l].mlp > 0;
    int dims[MODEL_SITE_N] = {0};
    dims[MODEL_SITE_O] = lc->n_heads * c->head_dim;
    dims[MODEL_SITE_DOWN] = lc->intermediate;
    gram_tap g = {{0}};
    int rc = 0;
    /* inputs: dense keeps the layer's unpruned weights for moving the stream on */
    size_t n_span;
    float *span = prune_layer_span(m, l, &n_span), *dense = NULL;
    if (o->dense_inputs && (attn || mlp)) {
        if (!(dense = xmalloc(sizeof(float) * n_span))) rc = -1;
        else memcpy(dense, span, sizeof(float) * n_span);
    }
    if (attn && !(g.h[MODEL_SITE_O] = xcalloc((size_t)dims[MODEL_SITE_O] * dims[MODEL_SITE_O], sizeof(double)))) rc = -1;
    if (mlp && !(g.h[MODEL_SITE_DOWN] = xcalloc((size_t)dims[MODEL_SITE_DOWN] * dims[MODEL_SITE_DOWN], sizeof(double))))
        rc = -1;
    rc = prune_agree(rc, world);
    const unsigned so = MODEL_SITE_BIT(MODEL_SITE_O), sd = MODEL_SITE_BIT(MODEL_SITE_DOWN);
    if (!rc && attn && mlp && o->order == PRUNE_ORDER_ATTENTION_FIRST) {
        rc = capture(lw, &g, so, dims, o, rank, world);
        if (!rc) rc = prune_agree(rank == 0 ? prune_attention(m, l, g.h[MODEL_SITE_O], mk, st, o) : 0, world);
        if (!rc) rc = bcast_layer(m, mk, l, world); /* every rank's down_proj inputs pass the pruned attention */
        if (!rc) rc = capture(lw, &g, sd, dims, o, rank, world);
        if (!rc) rc = prune_agree(rank == 0 ? prune_mlp(m, l, g.h[MODEL_SITE_DOWN], mk, st, o) : 0, world);
    } else if (!rc && (attn || mlp)) {
        rc = capture(lw, &g, (attn ? so : 0) | (mlp ? sd : 0), dims, o, rank, world);
        if (!rc && rank == 0 && attn) rc = prune_attention(m, l, g.h[MODEL_SITE_O], mk, st, o);
        if (!rc && rank == 0 && mlp) rc = prune_mlp(m, l, g.h[MODEL_SITE_DOWN], mk, st, o);
        rc = prune_agree(rc, world);
    }
    free(g.h[MODEL_SITE_O]), free(g.h[MODEL_SITE_DOWN]);
    if (!rc && (attn || mlp)) rc = bcast_layer(m, mk, l, world);
    if (!rc && dense) { /* swap: the stream passes the unpruned layer, the model keeps the pruned one */
        for (size_t i = 0; i < n_span; i++) {
            const float t = span[i];
            span[i] = dense[i], dense[i] = t;
        }
        rc = prune_agree(layerwise_advance(lw), world);
        memcpy(span, dense, sizeof(float) * n_span);
    } else if (!rc) {
        rc = prune_agree(layerwise_advance(lw), world);
    }
    free(dense);
    st->seconds = time_monotonic() - t0;
    return rc;
}

int prune_model(model *m, const int *tokens, const int *seq_lens, int n_seqs, prune_masks *mk,
                prune_layer_stats *stats, const prune_opts *o) {
    layerwise *lw;
    if (layerwise_open(&lw, m, tokens, seq_lens, n_seqs, o->chunk_tokens)) return -1;
    int rc = 0;
    for (int l = 0; l < m->cfg.n_layers && !rc; l++) rc = prune_layer(m, lw, mk, &stats[l], o, 0, 1);
    layerwise_close(lw);
    return rc;
}
