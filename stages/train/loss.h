/* loss.h: the training objective of the `train` stage (ALGORITHMS.md section 1) as a loss callback
 * of model_lm_loss: per-position weights from the data's token masks (answer vs prompt tokens),
 * cross-entropy and the distillation divergences, with the teacher's logits produced per chunk
 * of positions (never [tokens x vocab] for either model).
 *
 * The objective over one global batch:
 *   position t of a sequence predicts token t+1; it is an ANSWER position when token t+1 is not a
 *   prompt token (ACTION or RESPONSE in the data, or a sampled token), a PROMPT position otherwise;
 *   the last position of a sequence predicts nothing.
 *   answer position:  ce * CE + D,  D = fkl * FKL + rkl * RKL + jsd * JSD  (divergences at T, x T^2)
 *   prompt position:  D with a teacher; ce * CE without one
 *   loss = (1 - prompt_weight) * mean over answer positions + prompt_weight * mean over prompt
 *          positions; when a batch has no positions of one kind, the other kind gets weight 1.
 *   Sequences the student sampled itself (on-policy) carry no CE (it would reinforce its own
 *   samples): their answer positions have D only. */
#ifndef SMELT_STAGES_TRAIN_LOSS_H
#define SMELT_STAGES_TRAIN_LOSS_H

#include <stdint.h>

#include "kernels/distill.h"
#include "model/model.h"

typedef struct {
    double ce, fkl, rkl, jsd;  /* weights of the terms (>= 0) */
    double prompt_weight;      /* share of the prompt positions, in [0, 1) */
    double temperature;        /* T of the divergences (> 0) */
    double beta;               /* JSD mixture weight in (0, 1) */
} loss_config;

/* What a position is. */
enum { POS_NONE = 0, POS_ANSWER = 1, POS_PROMPT = 2 };
/* Per-sequence flags. */
enum { SEQ_NO_CE = 1 };

/* 1 when the configuration has a divergence term (needs a teacher). */
int loss_has_divergence(const loss_config *lc);

/* Counts the answer and prompt positions of n_seqs packed sequences (mask: [sum of lens], the
 * data's DS_TOK_* values per token); *n_answer and *n_prompt are ADDED to. */
void loss_count_positions(int64_t *n_answer, int64_t *n_prompt, const uint8_t *mask, const int *seq_lens, int n_seqs);

/* Per-position inputs of the callback for one packed micro-batch of n positions. */
typedef struct {
    int n;
    int *targets;   /* [n] the next token where a CE is computed (answer positions, and prompt
                     * positions without a teacher), else -1 */
    uint8_t *kind;  /* [n] POS_* */
    float *w_ce;    /* [n] weight of CE at the position */
    float *w_div;   /* [n] weight of D at the position */
} loss_rows;

/* Fills rows (arrays of at least n = sum of seq_lens entries, caller-owned) for a micro-batch, from
 * the GLOBAL counts of the whole batch (so micro-batches and ranks add up to one mean). seq_flags:
 * [n_seqs] SEQ_* or NULL. */
void loss_fill_rows(loss_rows *r, const int *tokens, const uint8_t *mask, const uint8_t *seq_flags, const int *seq_lens,
                   int n_seqs, const loss_config *lc, int has_teacher, int64_t n_answer, int64_t n_prompt);

/* The positions the LM head must run over (a weight, or an answer position whose CE is a metric),
 * ascending, into sel [r->n]; returns how many. */
int loss_select(int *sel, const loss_rows *r);

/* The teacher's logits [n, vocab] for positions rows[0..n) of the current micro-batch (ascending).
 * 0 or -1. */
typedef int (*teacher_logits_fn)(void *tctx, float *logits, const int *rows, int n);

/* Sums of a pass (metrics): per kind of position, the sum of each term and the positions seen. */
enum { TERM_CE = 0, TERM_FKL, TERM_RKL, TERM_JSD, TERM_COUNT };
typedef struct {
    double answer[TERM_COUNT], prompt[TERM_COUNT]; /* unweighted sums of CE and T^2 x divergences */
    int64_t n_answer, n_prompt;                     /* positions summed (CE where a target exists) */
    int64_t n_answer_ce, n_prompt_ce;
} loss_sums;

/* The callback's context. */
typedef struct {
    const loss_rows *rows;     /* indexed by position of the micro-batch */
    const int *sel;            /* callback row -> position (the LM head runs over selected positions
                                * only); NULL: identity */
    loss_config cfg;
    teacher_logits_fn teacher; /* NULL without a teacher */
    void *tctx;
    loss_sums sums;            /* ADDED to by every chunk */
    /* scratch, grown on demand (owned; loss_ctx_free) */
    float *t_logits, *ce, *wce, *wdiv;
    int *tgt, *pos;
    double *terms;
    int cap_rows;
    int vocab_cap;
} loss_ctx;

/* The lm_loss_fn of model_lm_loss: adds the chunk's weighted loss to *loss and assigns dlogits. */
int loss_chunk(void *ctx, const lm_chunk *c, double *loss);
void loss_ctx_free(loss_ctx *x);

#endif
