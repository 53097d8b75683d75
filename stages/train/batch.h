/* batch.h: the training data of the `train` stage: examples fitted to seq_len as sequence units
 * (fit.c: old history lines dropped by the data stage's budget rule; long generative examples
 * refused or cut into pieces), a deterministic stream of units over epochs (a seeded permutation
 * per epoch, so the position in the stream is two integers: the data cursor of the in-stage
 * checkpoints), global batches by token budget or sequence count, the contiguous share of one MPI
 * rank, and packed sequence sets with their token masks. */
#ifndef SMELT_STAGES_TRAIN_BATCH_H
#define SMELT_STAGES_TRAIN_BATCH_H

#include <stdint.h>

#include "stages/data/dataset.h"

/* Where the stream stands: `index` units of epoch `epoch`'s order have been taken. */
typedef struct {
    int64_t epoch, index;
} data_cursor;

/* One training sequence made of an example: its tokens [0, head) then [start, end), head + end -
 * start tokens in all (a whole example: head 0, start 0, end n_tokens). */
typedef struct {
    int64_t example; /* index in the split */
    int32_t head, start, end;
} seq_unit;

/* What happens to an example longer than seq_len that dropping history cannot fit (`long_examples`). */
typedef enum { LONG_REFUSE = 0, LONG_CUT = 1 } long_policy;

/* What fitting a split to seq_len did (counts of examples unless said otherwise). */
typedef struct {
    int64_t examples;        /* examples fitted */
    int64_t whole;           /* kept whole */
    int64_t fitted;          /* dropped their oldest history lines */
    int64_t lines_dropped;   /* history lines left out, in all */
    int64_t cut, pieces;     /* cut into pieces (LONG_CUT), and the sequences they made */
    int64_t refused;         /* cannot fit: no unit; the caller reports them */
    int64_t refused_ranking; /* of which ranking examples (never cut: that would separate the answer
                              * from the instruction) */
    int64_t first_refused;   /* the first refused example (-1: none) */
    int longest;             /* tokens of the longest example */
} fit_stats;

/* The units of examples [0, n) of split for sequences of at most seq_len tokens, in order:
 *  - an example that fits is one unit;
 *  - a longer one with history cuts leaves out its oldest history lines (ds_fit_cuts, the rule the
 *    data stage fitted max_tokens with), never its head (BOS, instruction, member) nor its tail
 *    (candidate, answer);
 *  - anything else (a generative or text example, a ranking one too long even without history) is
 *    refused (counted, no unit), except that with LONG_CUT a non-ranking example becomes pieces of
 *    seq_len tokens, each after the first starting with the example's first token when that is
 *    bos (as the data stage cuts text documents); a piece of one token is dropped.
 * *units is allocated (caller frees). 0 or -1 (ERR_NOMEM, ERR_INPUT for seq_len < 2). */
int fit_units(seq_unit **units, int64_t *n_units, fit_stats *st, const ds_split *s, int64_t n, int seq_len,
              long_policy policy, int32_t bos);
/* The prompt of example i (its tokens before the first answer token) fitted to budget tokens the
 * same way: 1 with *u set (end = the answer position), 0 when it cannot fit even without history. */
int fit_prompt(seq_unit *u, const ds_split *s, int64_t i, int budget);

typedef struct {
    const seq_unit *units; /* borrowed: the stream's sequences */
    int64_t n_units;
    int64_t batch_tokens;  /* > 0: a batch takes sequences while their tokens fit (at least one) */
    int64_t batch_size;    /* > 0 (when batch_tokens == 0): a batch takes this many sequences */
    uint64_t seed;
    int shuffle;           /* 0: the units' order every epoch */
    int64_t *order;        /* the permutation of order_epoch (owned) */
    int64_t order_epoch;
} data_stream;

/* One global batch: its sequences and their lengths. */
typedef struct {
    int n, cap;
    seq_unit *unit;   /* [n] */
    int *len;         /* [n] tokens of each */
    int64_t tokens;   /* sum of len */
} batch_plan;

/* Sequences with their tokens and masks in one buffer each (a rank's share, or sampled ones). */
typedef struct {
    int n, cap;
    int *len;         /* [n] */
    int64_t *off;     /* [n] offset of each sequence in tokens/mask */
    uint8_t *flags;   /* [n] SEQ_* of loss.h */
    int64_t *example; /* [n] the example each came from (-1: none) */
    int *tokens;
    uint8_t *mask;
    int64_t n_tokens, cap_tokens;
} seq_set;

/* A stream over units[n_units] (borrowed; n_units >= 1). */
int stream_init(data_stream *s, const seq_unit *units, int64_t n_units, int64_t batch_tokens, int64_t batch_size,
                uint64_t seed, int shuffle);
void stream_free(data_stream *s);
/* The next global batch from *cur; advances *cur. 0 or -1 (ERR_NOMEM). */
int stream_next(data_stream *s, data_cursor *cur, batch_plan *b);
/* Optimizer steps that consume `epochs` passes over the split from the start (the last batch may
 * reach into the next epoch). */
int stream_steps_for_epochs(data_stream *s, int64_t epochs, int64_t *steps);
void batch_plan_free(batch_plan *b);
/* A plan of units[0..n) in order (validation). */
int batch_plan_units(batch_plan *b, const seq_unit *units, int64_t n);

/* The sequences [*s0, *s1) of b that rank `rank` of `world` processes: contiguous, balanced by
 * tokens (a sequence goes to the rank its middle token falls in). */
void batch_rank_range(const batch_plan *b, int rank, int world, int *s0, int *s1);

/* Appends sequences [s0, s1) of b with their tokens and masks (copied from the split); the
 * example of each is recorded. */
int seq_set_from_plan(seq_set *out, const ds_split *split, const batch_plan *b, int s0, int s1);
/* Appends one sequence (tokens and mask copied). */
int seq_set_add(seq_set *out, const int *tokens, const uint8_t *mask, int len, uint8_t flags, int64_t example);
void seq_set_clear(seq_set *s);
void seq_set_free(seq_set *s);

/* Micro-batches: the sequences from *next on that fit in max_tokens together (at least one);
 * returns how many (0 at the end) and advances *next. */
int seq_set_next_micro(const seq_set *s, int *next, int max_tokens);

#endif
