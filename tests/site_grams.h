/* site_grams.h: a layerwise tap (model/layerwise.h) that sums H = Σ x xᵀ in float64 at each site it
 * is asked for, for the tests and benches that calibrate one layer by hand (the stages have their
 * own, with MPI sums and checkpoints). After the capture, gram_symmetrize each H; free with
 * site_grams_free. */
#ifndef SMELT_TESTS_SITE_GRAMS_H
#define SMELT_TESTS_SITE_GRAMS_H
#include <stdlib.h>

#include "kernels/gram.h"
#include "model/checkpoint.h"
#include "model/layerwise.h"

typedef struct {
    double *h[MODEL_SITE_N]; /* [in, in] one triangle filled until gram_symmetrize; NULL if never tapped */
    int in[MODEL_SITE_N];
} site_grams;

static inline int site_grams_tap(void *ctx, model_site site, const float *x, int n, int in) {
    site_grams *g = ctx;
    if (!g->h[site] && !(g->h[site] = calloc((size_t)in * in, sizeof(double)))) return -1;
    g->in[site] = in;
    return gram_accumulate(g->h[site], x, in, n, in);
}

static inline void site_grams_free(site_grams *g) {
    for (int s = 0; s < MODEL_SITE_N; s++) free(g->h[s]), g->h[s] = NULL;
}

/* Loads the model at path into m and opens the layer-by-layer stream over the packed sequences
 * (layerwise_open). 0 or -1 (err_msg says why). */
static inline int site_grams_open(model *m, layerwise **lw, const char *path, const int *toks, const int *lens,
                                  int n_seqs, int chunk_tokens) {
    model_config cfg;
    model_weights w;
    if (checkpoint_load(path, &cfg, &w) || model_init(m, &cfg, &w)) return -1;
    if (!layerwise_open(lw, m, toks, lens, n_seqs, chunk_tokens)) return 0;
    model_free(m);
    return -1;
}
#endif
