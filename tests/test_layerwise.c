/* test_layerwise.c: the layer-by-layer calibration forward of model/layerwise.h (prune, quantize).
 *   - the stream advanced through every layer, in chunks of whole sequences, then normed, equals the
 *     training forward's hidden states (model_forward, an independent implementation checked against
 *     transformers): normalized error <= 2 eps (L (2H + Q + I + T) + H), the reduction lengths of the
 *     layers (T the longest sequence), as for the KV-cache test;
 *   - the inputs handed to a tap are the layer's: the q/k/v input is rmsnorm(embedding) (a double
 *     reference, tolerance 4 eps H), the down_proj input is silu(gate) * up of the gate/up input (double
 *     reference over H terms: 4 eps H max|.|); a partial tap gives bitwise the same rows; a capture
 *     does not move the stream;
 *   - compression between capture and advance is seen by the next layers: zeroing MLP neurons of
 *     layer 0 gives the stream of model_forward over the same zeroed weights (and not the dense one);
 *   - bad input is refused with a message. */
#include "engine_testmodel.h"
#include "kernels/threads.h"
#include "model/layerwise.h"

enum { N = 15, NSEQ = 3 };
static const int lens[NSEQ] = {5, 3, 7};

typedef struct {
    float *rows[MODEL_SITE_N]; /* [N, in] per site, filled chunk by chunk */
    int filled[MODEL_SITE_N], in[MODEL_SITE_N], calls;
} capture;

static int sink(void *ctx, model_site site, const float *x, int n, int in) {
    capture *c = ctx;
    c->calls++;
    if (!c->rows[site]) c->rows[site] = tu_alloc((size_t)N * in), c->in[site] = in;
    memcpy(c->rows[site] + (size_t)c->filled[site] * in, x, sizeof(float) * (size_t)n * in);
    c->filled[site] += n;
    return 0;
}

static double hidden_tol(const model_config *c) {
    int Q = 0, I = 0;
    for (int l = 0; l < c->n_layers; l++) {
        if (c->layers[l].n_heads * c->head_dim > Q) Q = c->layers[l].n_heads * c->head_dim;
        if (c->layers[l].intermediate > I) I = c->layers[l].intermediate;
    }
    return 2 * TU_EPS * (c->n_layers * (2.0 * c->hidden + Q + I + 7) + c->hidden);
}

static void stream_vs_forward(model *m, const int *tok, int chunk, const char *what) {
    layerwise *lw;
    model_batch b = {.tokens = tok, .seq_lens = lens, .n_tokens = N, .n_seqs = NSEQ};
    const float *ref;
    const int H = m->cfg.hidden;
    float *got = tu_alloc((size_t)N * H);
    if (!tu_expect(model_forward(m, &b, &ref) == 0, "model_forward: %s", err_msg())) return;
    if (!tu_expect(layerwise_open(&lw, m, tok, lens, NSEQ, chunk) == 0, "open: %s", err_msg())) return;
    for (int l = 0; l < m->cfg.n_layers; l++) tu_expect(layerwise_advance(lw) == 0, "advance %d: %s", l, err_msg());
    tu_expect(layerwise_layer(lw) == m->cfg.n_layers, "%s: the stream is past the last layer", what);
    tu_expect(layerwise_final_hidden(lw, got) == 0, "final hidden: %s", err_msg());
    char name[128];
    snprintf(name, sizeof name, "%s: layerwise stream == model_forward (chunk %d)", what, chunk);
    tu_expect_close(name, got, ref, (size_t)N * H, hidden_tol(&m->cfg));
    layerwise_close(lw);
    free(got);
}

static void check_sites(model *m, const int *tok) {
    const model_config *c = &m->cfg;
    const int H = c->hidden, I = c->layers[0].intermediate;
    layerwise *lw;
    capture cap = {0};
    if (!tu_expect(layerwise_open(&lw, m, tok, lens, NSEQ, 8) == 0, "open: %s", err_msg())) return;
    float *before = tu_copy(layerwise_stream(lw), (size_t)N * H);
    model_tap all = {.sites = 0xF, .fn = sink, .ctx = &cap};
    tu_expect(layerwise_capture(lw, &all) == 0, "capture: %s", err_msg());
    tu_expect(!memcmp(before, layerwise_stream(lw), sizeof(float) * N * H), "a capture leaves the stream as it was");
    for (int s = 0; s < MODEL_SITE_N; s++) tu_expect(cap.filled[s] == N, "site %d saw %d of %d rows", s, cap.filled[s], N);
    tu_expect(cap.calls == 4 * 2, "chunks of 8 tokens over sequences of 5, 3, 7 make 2 chunks (%d calls)", cap.calls);

    /* q/k/v input: rmsnorm of the embedding, in double */
    float *ref = tu_alloc((size_t)N * H);
    for (int t = 0; t < N; t++) {
        const float *e = m->w.embed + (size_t)tok[t] * H;
        double ss = 0;
        for (int j = 0; j < H; j++) ss += (double)e[j] * e[j];
        double r = 1.0 / sqrt(ss / H + c->rms_eps);
        for (int j = 0; j < H; j++) ref[(size_t)t * H + j] = (float)(e[j] * r * m->w.layers[0].attn_norm[j]);
    }
    tu_expect_close("q/k/v input == rmsnorm(embedding)", cap.rows[MODEL_SITE_QKV], ref, (size_t)N * H, 4 * TU_EPS * H);

    /* down_proj input: silu(x Wg^T) * (x Wu^T) of the gate/up input x, in double */
    float *h = tu_alloc((size_t)N * I);
    const float *x = cap.rows[MODEL_SITE_GATE_UP];
    for (int t = 0; t < N; t++)
        for (int i = 0; i < I; i++) {
            double g = 0, u = 0;
            for (int j = 0; j < H; j++)
                g += (double)x[(size_t)t * H + j] * m->w.layers[0].w_gate[(size_t)i * H + j],
                u += (double)x[(size_t)t * H + j] * m->w.layers[0].w_up[(size_t)i * H + j];
            h[(size_t)t * I + i] = (float)(g / (1 + exp(-g)) * u);
        }
    tu_expect_close("down_proj input == silu(gate) * up", cap.rows[MODEL_SITE_DOWN], h, (size_t)N * I, 4 * TU_EPS * H);

    /* a partial tap of the o_proj input alone gives the same rows */
    capture one = {0};
    model_tap o = {.sites = MODEL_SITE_BIT(MODEL_SITE_O), .fn = sink, .ctx = &one, .partial = 1};
    tu_expect(layerwise_capture(lw, &o) == 0, "partial capture: %s", err_msg());
    tu_expect(one.filled[MODEL_SITE_O] == N && one.filled[MODEL_SITE_DOWN] == 0, "partial tap: only the o_proj rows");
    tu_expect(one.rows[MODEL_SITE_O] && !memcmp(one.rows[MODEL_SITE_O], cap.rows[MODEL_SITE_O],
                                                 sizeof(float) * N * cap.in[MODEL_SITE_O]),
              "partial tap rows equal the full tap's bitwise");
    for (int s = 0; s < MODEL_SITE_N; s++) free(cap.rows[s]), free(one.rows[s]);
    free(before), free(ref), free(h);
    layerwise_close(lw);
}

/* Zero MLP neurons of layer 0 between capture and advance: later layers see the pruned layer. */
static void check_compression(model *m, const int *tok) {
    const model_config *c = &m->cfg;
    const int H = c->hidden, I = c->layers[0].intermediate;
    model_batch b = {.tokens = tok, .seq_lens = lens, .n_tokens = N, .n_seqs = NSEQ};
    const float *f;
    float *dense = tu_alloc((size_t)N * H), *got = tu_alloc((size_t)N * H);
    if (model_forward(m, &b, &f)) return;
    memcpy(dense, f, sizeof(float) * N * H);
    layerwise *lw;
    if (!tu_expect(layerwise_open(&lw, m, tok, lens, NSEQ, 100) == 0, "open: %s", err_msg())) return;
    const int gone[3] = {3, 7, I - 1};
    layer_weights *w = &m->w.layers[0];
    for (int k = 0; k < 3; k++) {
        int j = gone[k];
        for (int r = 0; r < H; r++) w->w_down[(size_t)r * I + j] = 0;
        memset(w->w_gate + (size_t)j * H, 0, sizeof(float) * H);
        memset(w->w_up + (size_t)j * H, 0, sizeof(float) * H);
    }
    for (int l = 0; l < c->n_layers; l++) tu_expect(layerwise_advance(lw) == 0, "advance: %s", err_msg());
    tu_expect(layerwise_final_hidden(lw, got) == 0, "final: %s", err_msg());
    tu_expect(model_forward(m, &b, &f) == 0, "forward of the pruned model: %s", err_msg());
    tu_expect_close("pruned layer 0: stream == model_forward of the pruned weights", got, f, (size_t)N * H,
                    hidden_tol(c));
    tu_expect(tu_nerr(got, dense, (size_t)N * H) > 100 * hidden_tol(c), "the pruned stream differs from the dense one");
    layerwise_close(lw);
    free(dense), free(got);
}

static void check_errors(model *m, const int *tok) {
    layerwise *lw = NULL;
    int bad_lens[2] = {5, 0}, bad_tok[N];
    memcpy(bad_tok, tok, sizeof bad_tok);
    tu_expect(layerwise_open(&lw, m, tok, bad_lens, 2, 8) != 0 && strstr(err_msg(), "empty"), "empty sequence: %s",
              err_msg());
    bad_tok[4] = m->cfg.vocab;
    tu_expect(layerwise_open(&lw, m, bad_tok, lens, NSEQ, 8) != 0 && strstr(err_msg(), "vocabulary"),
              "token out of range: %s", err_msg());
    tu_expect(layerwise_open(&lw, m, tok, lens, 0, 8) != 0, "no sequences");
    float h[N * 24];
    if (layerwise_open(&lw, m, tok, lens, NSEQ, 8) == 0) {
        tu_expect(layerwise_final_hidden(lw, h) != 0 && strstr(err_msg(), "advance"), "final hidden too early: %s",
                  err_msg());
        layerwise_close(lw);
    }
}

int main(void) {
    kernels_set_threads(0);
    for (int kind = 0; kind < 3; kind++) {
        model_config c = tm_config(kind);
        model m;
        if (model_init(&m, &c, NULL) || model_reserve_train(&m, N)) return printf("init: %s\n", err_msg()), 1;
        tm_randomize(&m, 40 + kind);
        int tok[N];
        for (int i = 0; i < N; i++) tok[i] = (int)(tu_next() % c.vocab);
        char what[32];
        snprintf(what, sizeof what, "model kind %d", kind);
        stream_vs_forward(&m, tok, 8, what);
        stream_vs_forward(&m, tok, 100, what);
        if (kind == 2) {
            check_sites(&m, tok);
            check_errors(&m, tok);
            check_compression(&m, tok);
        }
        model_free(&m);
    }
    return tu_finish("test_layerwise");
}
