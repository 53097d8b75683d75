/* loss.h: the training objective of the `train` stage (ALGORITHMS.md section 1) as a loss callback
 * of model_lm_loss: per-position weights from the data's token masks (answer vs prompt tokens),
 * cross-entropy and the distillation divergences, with the teacher's logits produced per chunk
 * of positions (never [tokens x vocab] for either model).
 *
 * The objective over one global batch:
 *   position t of a sequence predicts token t+1; it is an ANSWER position when token t+1 is not a
 *   prompt token (ACTION or RESPONSE in the data, or a sampled token), a PROMPT position otherwise;
 *   the last position of a sequence predicts nothing.
 *   answer position:  ce * CE + D,  D = fkl FKL + rkl RKL + jsd JSD + tvd TVD + skl SKL + srkl SRKL
 *                     (divergences at T, x T^2, over the tokenizer's ids: kernels/distill.h)
 *   prompt position:  D with a teacher; ce * CE without one
 *   loss = (1 - prompt_weight) * A + prompt_weight * P, with A the mean over the batch's answer
 *          positions and P, by prompt_norm: `batch`, the mean over all the batch's prompt positions;
 *          `sequence`, the mean over the sequences having prompt positions of each sequence's own
 *          mean (a long prompt no longer outweighs a short one). When a batch has no positions of
 *          one kind, the other kind gets weight 1.
 *   A step is computed in parts (loss_part): a supervised step is LOSS_PART_ALL of the data batch;
 *   a sampled (on-policy) step is, by default, LOSS_PART_CE of the data batch (its CE: the ground
 *   truth, as FMCHISEL adds (1 - r) CE on the original batch) plus LOSS_PART_DIV of the sampled
 *   sequences (their divergences); with on_policy.ce: sampled it is LOSS_PART_ALL of the sampled
 *   sequences, where those the student sampled itself carry no CE (SEQ_NO_CE). */
#ifndef SMELT_STAGES_TRAIN_LOSS_H
#define SMELT_STAGES_TRAIN_LOSS_H

#include <stdint.h>

#include "kernels/distill.h"
#include "model/model.h"

typedef enum { PROMPT_NORM_BATCH = 0, PROMPT_NORM_SEQUENCE = 1 } prompt_norm;

typedef struct {
    double ce, fkl, rkl, jsd, tvd, skl, srkl; /* weights of the terms (>= 0) */
    double prompt_weight;      /* share of the prompt positions, in [0, 1) */
    prompt_norm prompt_norm;   /* how the prompt part is averaged */
    double temperature;        /* T of the divergences (> 0) */
    double beta;               /* JSD mixture weight in [0, 1] (0: FKL, 1: RKL) */
    double alpha;              /* SKL/SRKL skew in [0, 1) */
} loss_config;

/* What a position is. */
enum { POS_NONE = 0, POS_ANSWER = 1, POS_PROMPT = 2 };
/* Per-sequence flags. */
enum { SEQ_NO_CE = 1 };
/* Which part of the objective a pass computes (see above). */
typedef enum { LOSS_PART_ALL = 0, LOSS_PART_CE = 1, LOSS_PART_DIV = 2 } loss_part;

/* 1 when the configuration has a divergence term (needs a teacher). */
int loss_has_divergence(const loss_config *lc);

/* Position counts of sequences: the normalization of a global batch. */
typedef struct {
    int64_t answer, prompt; /* positions */
    int64_t prompt_seqs;    /* sequences with at least one prompt position */
} loss_counts;

/* Counts the positions of n_seqs packed sequences (mask: [sum of lens], the data's DS_TOK_* values
 * per token); ADDED to *c. */
void loss_count_positions(loss_counts *c, const uint8_t *mask, const int *seq_lens, int n_seqs);

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
 * the GLOBAL counts of the whole batch (so micro-batches and ranks add up to one mean), for one
 * part of the objective. seq_flags: [n_seqs] SEQ_* or NULL. */
void loss_fill_rows(loss_rows *r, const int *tokens, const uint8_t *mask, const uint8_t *seq_flags, const int *seq_lens,
                    int n_seqs, const loss_config *lc, int has_teacher, const loss_counts *global, loss_part part);

/* The positions the LM head must run over (a weight, or an answer position whose CE is a metric),
 * ascending, into sel [r->n]; returns how many. */
int loss_select(int *sel, const loss_rows *r);

/* The teacher's logits [n, teacher vocab] for positions rows[0..n) of the current micro-batch
 * (ascending). 0 or -1. */
typedef int (*teacher_logits_fn)(void *tctx, float *logits, const int *rows, int n);

/* Sums of a pass (metrics): per kind of position, the sum of each term and the positions seen. */
enum { TERM_CE = 0, TERM_FKL, TERM_RKL, TERM_JSD, TERM_TVD, TERM_SKL, TERM_SRKL, TERM_COUNT };
/* The metric name and the weight of a term. */
const char *loss_term_name(int term);
double loss_term_weight(const loss_config *lc, int term);

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
    int teacher_vocab;         /* columns of the teacher's logits (its head; 0: the student's) */
    int vocab_used;            /* the divergences compare ids [0, vocab_used): the tokenizer's (0: all
                                * of the smaller head); CE runs over the student's whole head */
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
