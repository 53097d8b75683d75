/* test_prune_smollm2.c: OSSCAR against the two baselines on the first two layers of the real
 * SmolLM2-135M (../shared/models/smollm2-135m-instruct, or $SMELT_SMOLLM2), calibrated on the
 * recommendation-style paragraphs below (tokenized by the GGUF's own tokenizer, one sequence each).
 * Every method solves the same problem (both layers on the unpruned model's inputs, as the stage's
 * `inputs: dense`): remove 25% and 50% of down_proj's 1536 neurons and 1 of o_proj's 3 KV groups.
 *
 * What is asserted, and why it may be: removing ONE group, OSSCAR's greedy step is the exact
 * minimizer of the damped objective E(R) over every single group, so its E is <= each baseline's
 * (re-fitted the same way) up to rounding (checked with a relative 1e-9: E is a sum of in·out
 * float64 terms, far above its rounding). Removing hundreds of neurons the greedy is a heuristic
 * and nothing guarantees it beats a baseline; that OSSCAR's undamped layer-wise error is below
 * magnitude's and activation's on these fixed inputs is the empirical acceptance point on
 * the real model, checked here on 2 layers (the whole model: recipes/prune_methods_smollm2.yaml,
 * docs/prune.md). With 534 tokens, fewer than the 1536 neurons, the kept neurons nearly reproduce
 * down_proj's output on these inputs (MLP errors about 1e-4); the stage's run on 4,600 MovieLens tokens
 * gives the figures that mean something. About 7 s of CPU in Release. */
#include "engine_testutil.h"
#include "model/checkpoint.h"
#include "model/layerwise.h"
#include "model/tokenizer.h"
#include "shared_dir.h"
#include "site_grams.h"
#include "stages/prune/osscar.h"

static const char *const texts[] = {
    "A member of the site watched Toy Story (1995), Jumanji (1995), The Lion King (1994), Aladdin (1992) and "
    "Beauty and the Beast (1991), and rated the comedies and the musicals highly but gave two stars to a long "
    "war drama. Would they like Finding Nemo (2003)? Answer yes or no.",
    "Recent history: Heat (1995) 4.0, Casino (1995) 4.5, The Usual Suspects (1995) 5.0, Se7en (1995) 4.0, "
    "Fargo (1996) 3.5, Pulp Fiction (1994) 5.0, Reservoir Dogs (1992) 4.0. Candidate: The Godfather (1972). "
    "Does this user like the candidate?",
    "Structured pruning removes whole neurons of the feed-forward block and whole key-value groups of the "
    "attention, so the matrices really get smaller. The weights that remain are fitted again by least squares "
    "on the calibration inputs, which absorbs part of the error the removed columns leave behind.",
    "The user watched Titanic (1997), Notting Hill (1999), Pretty Woman (1990) and Sleepless in Seattle (1993), "
    "and disliked Alien (1979) and The Terminator (1984). They often rate romantic comedies five stars and "
    "rarely finish science fiction. Would they enjoy When Harry Met Sally (1989)? Answer yes or no.",
    "Once upon a time a small robot lived in a quiet town by the sea. Every morning it swept the streets, "
    "watered the flowers and said hello to the fishermen. One day a storm broke the lighthouse, and the robot "
    "climbed the stairs all night to keep the lamp burning until the boats came home.",
    "Ratings so far: The Matrix (1999) 5.0, Star Wars (1977) 4.5, Blade Runner (1982) 4.0, The Fifth Element "
    "(1997) 3.5, Jurassic Park (1993) 4.0, Independence Day (1996) 3.0, Men in Black (1997) 3.5. Next movie: "
    "Inception (2010). Will the member rate it above their average?",
};
enum { N_TEXTS = sizeof texts / sizeof texts[0] };

/* Prunes a copy of w with each method; e[method] = the undamped relative error, obj[method] = E(R). */
static int run_methods(double e[3], double obj[3], const float *w, const double *h, int out, int n_groups, int gs,
                       int n_remove) {
    const size_t n = (size_t)out * n_groups * gs;
    float *wc = tu_alloc(n);
    unsigned char *keep = malloc((size_t)n_groups);
    int rc = keep ? 0 : -1;
    for (int m = 0; m < 3 && !rc; m++) {
        osscar_opts o = {.method = (prune_method)m, .damp = 0.01, .update_every = 1, .refit = 1, .want_error = 1};
        osscar_stats st;
        memcpy(wc, w, sizeof(float) * n);
        rc = osscar_prune(wc, keep, &st, h, out, n_groups, gs, n_remove, &o);
        e[m] = st.rel_error, obj[m] = st.objective;
    }
    free(wc), free(keep);
    return rc;
}

int main(void) {
    tu_verbose = getenv("VERBOSE") != NULL;
    char path[4096];
    if (!shared_smollm2(path, sizeof path, "pruning SmolLM2's first layers")) return SHARED_SKIPPED_ALL;
    tokenizer *tok;
    if (tokenizer_load(&tok, path)) return printf("FAIL tokenizer of %s: %s\n", path, err_msg()), 1;
    int *toks = NULL, lens[N_TEXTS], total = 0;
    for (int i = 0; i < N_TEXTS; i++) {
        int32_t *ids;
        size_t n;
        if (tokenizer_encode(tok, texts[i], strlen(texts[i]), &ids, &n)) return printf("FAIL %s\n", err_msg()), 1;
        int *grown = realloc(toks, sizeof(int) * ((size_t)total + n));
        if (!grown) return printf("FAIL out of memory\n"), 1;
        toks = grown;
        for (size_t j = 0; j < n; j++) toks[total + (int)j] = ids[j];
        lens[i] = (int)n, total += (int)n;
        free(ids);
    }
    tokenizer_free(tok);
    model m;
    layerwise *lw;
    if (site_grams_open(&m, &lw, path, toks, lens, N_TEXTS, 512)) return printf("FAIL loading %s: %s\n", path, err_msg()), 1;
    const model_config cfg = m.cfg;
    printf("SmolLM2: %d calibration tokens in %d sequences\n", total, N_TEXTS);
    const char *names[3] = {"osscar", "magnitude", "activation"};
    for (int l = 0; l < 2; l++) {
        site_grams gr = {{0}, {0}};
        model_tap t = {.sites = MODEL_SITE_BIT(MODEL_SITE_O) | MODEL_SITE_BIT(MODEL_SITE_DOWN), .fn = site_grams_tap, .ctx = &gr,
                       .partial = 1};
        if (!tu_expect(layerwise_capture(lw, &t) == 0, "capture: %s", err_msg())) break;
        gram_symmetrize(gr.h[MODEL_SITE_O], gr.in[MODEL_SITE_O]);
        gram_symmetrize(gr.h[MODEL_SITE_DOWN], gr.in[MODEL_SITE_DOWN]);
        const layer_weights *lwt = &m.w.layers[l];
        const int I = cfg.intermediate, qpg = cfg.n_heads / cfg.n_kv_heads;
        struct { const char *what; const float *w; const double *h; int out, groups, gs, remove; } pr[3] = {
            {"25% of the MLP neurons", lwt->w_down, gr.h[MODEL_SITE_DOWN], cfg.hidden, I, 1, I / 4},
            {"50% of the MLP neurons", lwt->w_down, gr.h[MODEL_SITE_DOWN], cfg.hidden, I, 1, I / 2},
            {"1 KV group", lwt->wo, gr.h[MODEL_SITE_O], cfg.hidden, cfg.n_kv_heads, qpg * cfg.head_dim, 1}};
        for (int k = 0; k < 3; k++) {
            double e[3], obj[3];
            int ok = run_methods(e, obj, pr[k].w, pr[k].h, pr[k].out, pr[k].groups, pr[k].gs, pr[k].remove) == 0;
            printf("layer %d, %s: relative error osscar %.4g, magnitude %.4g, activation %.4g\n", l, pr[k].what, e[0],
                   e[1], e[2]);
            if (!tu_expect(ok, "layer %d %s: %s", l, pr[k].what, err_msg())) continue;
            for (int b = 1; b < 3; b++) {
                if (pr[k].remove == 1)
                    tu_expect(obj[0] <= obj[b] * (1 + 1e-9), "layer %d %s: OSSCAR's E %.10g > %s's %.10g (exact for one group)",
                              l, pr[k].what, obj[0], names[b], obj[b]);
                else
                    tu_expect(e[0] < e[b], "layer %d %s: OSSCAR's error %.4g is not below %s's %.4g", l, pr[k].what, e[0],
                              names[b], e[b]);
            }
        }
        site_grams_free(&gr);
        if (!tu_expect(layerwise_advance(lw) == 0, "advance: %s", err_msg())) break;
    }
    layerwise_close(lw);
    model_free(&m);
    free(toks);
    return tu_finish("test_prune_smollm2");
}
