/* score.c: ranking scores and target log-likelihoods of split examples (score.h), computed with
 * the KV-cache inference path (model_extend) so that a group's prefix is prefilled once. Log-sums
 * run in double over the vocabulary. */
#include "stages/evaluate/score.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "common/log.h"

#define SCORE_LOGIT_FLOATS ((size_t)8 << 20) /* logits buffer: 32 MiB */

typedef struct {
    model *m;
    const score_opts *o;
    kv_cache kv;
    float *logits;  /* [rows_max, vocab] */
    int rows_max;
    int *rows;      /* [rows_max] */
} scorer;

static double log_sum_exp(const float *x, int n) {
    float mx = x[0];
    for (int i = 1; i < n; i++) mx = x[i] > mx ? x[i] : mx;
    double s = 0;
    for (int i = 0; i < n; i++) s += exp((double)x[i] - (double)mx);
    return (double)mx + log(s);
}

/* Runs tokens [from, T) of example i (the cache holds positions [0, from)) and collects the
 * targets t in [answer_pos, T] (mask != PROMPT) from the logits at t - 1. */
static int run_suffix(scorer *sc, const ds_split *s, int64_t i, int from, double *margin, double *nll, int32_t *n_t) {
    const ds_example *e = &s->ex[i];
    const int32_t *tok = ds_example_tokens(s, i);
    const uint8_t *mask = ds_example_mask(s, i);
    const int V = sc->m->cfg.vocab, n = (int)e->n_tokens;
    *margin = NAN;
    *nll = 0;
    *n_t = 0;
    int T = n - 1; /* the last target */
    while (T >= (int)e->answer_pos && mask[T] == DS_TOK_PROMPT) T--;
    if ((int)e->answer_pos >= n || T < (int)e->answer_pos) return 0;
    if (from >= T) return err_set(ERR_INTERNAL, "score: example %lld: prefix %d reaches the last target %d", (long long)i, from, T);
    for (int a = from; a < T;) {
        /* a segment [a, b) whose target rows (positions r with a target at r + 1) fit the buffer */
        int k = 0, b = a;
        while (b < T && k < sc->rows_max) {
            if (mask[b + 1] != DS_TOK_PROMPT) sc->rows[k++] = b - a;
            b++;
        }
        if (model_extend(sc->m, &sc->kv, tok + a, b - a, sc->rows, k, sc->logits)) return -1;
        for (int j = 0; j < k; j++) {
            int t = a + sc->rows[j] + 1;
            const float *lg = sc->logits + (size_t)j * V;
            *nll += log_sum_exp(lg, V) - (double)lg[tok[t]];
            (*n_t)++;
            if (t == (int)e->answer_pos && mask[t] == DS_TOK_ACTION && sc->o->yes_id >= 0 && sc->o->no_id >= 0)
                *margin = (double)lg[sc->o->yes_id] - (double)lg[sc->o->no_id];
        }
        a = b;
    }
    return 0;
}

static int scorer_init(scorer *sc, model *m, const ds_split *s, int64_t begin, int64_t end, const score_opts *o) {
    memset(sc, 0, sizeof *sc);
    sc->m = m;
    sc->o = o;
    if (s->vocab > m->cfg.vocab)
        return err_set(ERR_INPUT, "the data set's tokenizer has %d tokens but the model's vocabulary has %d; evaluate a "
                       "model trained with this data set's tokenizer", s->vocab, m->cfg.vocab);
    if (o->yes_id >= m->cfg.vocab || o->no_id >= m->cfg.vocab)
        return err_set(ERR_INPUT, "label ids %d/%d are outside the model's vocabulary of %d", o->yes_id, o->no_id,
                       m->cfg.vocab);
    int maxlen = 1;
    for (int64_t i = begin; i < end; i++)
        if ((int)s->ex[i].n_tokens > maxlen) maxlen = (int)s->ex[i].n_tokens;
    size_t rows = SCORE_LOGIT_FLOATS / (size_t)m->cfg.vocab;
    sc->rows_max = rows < 1 ? 1 : rows > (size_t)maxlen ? maxlen : (int)rows;
    sc->logits = xmalloc((size_t)sc->rows_max * (size_t)m->cfg.vocab * sizeof *sc->logits);
    sc->rows = xmalloc((size_t)sc->rows_max * sizeof *sc->rows);
    if (!sc->logits || !sc->rows || kv_cache_init(&sc->kv, &m->cfg, maxlen)) return -1;
    return 0;
}

static void scorer_free(scorer *sc) {
    kv_cache_free(&sc->kv);
    free(sc->logits);
    free(sc->rows);
}

int score_split(model *m, const ds_split *s, int64_t begin, int64_t end, const score_opts *o, const score_out *out) {
    if (begin < 0 || end > s->n_examples || begin > end)
        return err_set(ERR_INPUT, "score_split: range [%lld, %lld) outside %lld examples", (long long)begin,
                       (long long)end, (long long)s->n_examples);
    if (begin == end) return 0;
    scorer sc;
    if (scorer_init(&sc, m, s, begin, end, o)) {
        scorer_free(&sc);
        return -1;
    }
    int rc = 0;
    progress pr;
    progress_start(&pr, "scoring", end - begin);
    for (int64_t g0 = begin, g1; g0 < end && !rc; g0 = g1) {
        g1 = ds_group_end(s, g0);
        if (g1 > end) g1 = end;
        int p = o->share_prefix ? (int)s->ex[g0].prefix_len : 0;
        if (kv_cache_truncate(&sc.kv, 0)) rc = -1;
        else if (p > 0 && model_extend(m, &sc.kv, ds_example_tokens(s, g0), p, NULL, 0, NULL)) rc = -1;
        for (int64_t i = g0; i < g1 && !rc; i++) {
            double mg, nll;
            int32_t nt;
            rc = kv_cache_truncate(&sc.kv, p) || run_suffix(&sc, s, i, p, &mg, &nll, &nt);
            if (rc) break;
            if (out->margin) out->margin[i - begin] = mg;
            if (out->nll) out->nll[i - begin] = nll;
            if (out->n_targets) out->n_targets[i - begin] = nt;
        }
        progress_update(&pr, g1 - begin, NULL);
    }
    progress_finish(&pr, NULL);
    scorer_free(&sc);
    if (rc) return err_prefix("scoring split %s: ", s->name);
    return 0;
}

int score_example_plain(model *m, const ds_split *s, int64_t i, const score_opts *o, double *margin, double *nll,
                        int32_t *n_targets) {
    scorer sc;
    int rc = scorer_init(&sc, m, s, i, i + 1, o) || run_suffix(&sc, s, i, 0, margin, nll, n_targets);
    scorer_free(&sc);
    return rc ? -1 : 0;
}

double score_p_yes(double margin) {
    /* the exp never overflows: its argument is <= 0 */
    if (margin >= 0) return 1.0 / (1.0 + exp(-margin));
    double e = exp(margin);
    return e / (1.0 + e);
}
