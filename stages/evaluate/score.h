/* score.h: scoring the examples of a data split with a model, the evaluate stage's core, reusable
 * by pruning and quantization stages. Per example: the ranking margin z_yes - z_no of the logits
 * at the answer position (the logits that predict the action token), and the summed negative
 * log-likelihood of its target tokens (action and response tokens, each predicted from the
 * position before it). With prefix sharing, a group's shared prefix (profile + history) is
 * prefilled once into a KV cache and each candidate runs only its suffix.
 *
 * Why a margin and not P(yes) / (P(yes) + P(no)): that ratio is sigmoid(margin), which ranks
 * identically but saturates: in float it is exactly 1.0 from a margin of about 17.3 (in double
 * from about 36.7), so confident models would get artificial ties and an AUC drifting to 0.5. The
 * margin, in double, never saturates; score_p_yes() gives the probability when one is wanted and
 * auc.h's log_loss_margin() the log loss from log-sigmoid of the margin. */
#ifndef SMELT_STAGES_EVALUATE_SCORE_H
#define SMELT_STAGES_EVALUATE_SCORE_H

#include <stdint.h>

#include "model/model.h"
#include "stages/data/dataset.h"

typedef struct {
    int share_prefix;      /* 1: prefill each group's prefix once and reuse it */
    int32_t yes_id, no_id; /* the label tokens (meta.json); -1: no ranking scores */
} score_opts;

typedef struct {
    double *margin;      /* [n] z_yes - z_no at the answer position (logits); NAN when the example has no
                          * action token (or yes_id/no_id are -1); may be NULL */
    double *nll;         /* [n] sum of -ln p(target) over the example's targets (0 when none); may be NULL */
    int32_t *n_targets;  /* [n] how many targets; may be NULL */
} score_out;

/* Scores examples [begin, end) of split s (n = end - begin; out arrays are indexed i - begin).
 * begin and end need not be group boundaries (a partial group simply prefills its prefix once
 * more). Checks that the model's vocabulary covers the split's and the label ids. Memory: one KV
 * cache of the longest example, and logits for at most max(1, 8M / vocab) rows at a time.
 * 0 or -1 (ERR_INPUT for mismatches, ERR_NOMEM, or the model's error). */
int score_split(model *m, const ds_split *s, int64_t begin, int64_t end, const score_opts *o, const score_out *out);

/* Per-example scoring of one example without any cache reuse, by a full prefill of its tokens
 * [0, n-1): the reference the tests and the benchmark compare score_split against. */
int score_example_plain(model *m, const ds_split *s, int64_t i, const score_opts *o, double *margin, double *nll,
                        int32_t *n_targets);

/* P(yes) / (P(yes) + P(no)) = sigmoid(margin), in double (NAN stays NAN). */
double score_p_yes(double margin);

#endif
