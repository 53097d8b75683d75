/* batch.h: the training data of the `train` stage: a deterministic stream of examples over epochs
 * (a seeded permutation per epoch, so the position in the stream is two integers: the data cursor
 * of the in-stage checkpoints), global batches by token budget or example count, the contiguous
 * share of one MPI rank, and packed sequence sets with their token masks. */
#ifndef SMELT_STAGES_TRAIN_BATCH_H
#define SMELT_STAGES_TRAIN_BATCH_H

#include <stdint.h>

#include "stages/data/dataset.h"

/* Where the stream stands: `index` examples of epoch `epoch`'s order have been taken. */
typedef struct {
    int64_t epoch, index;
} data_cursor;

typedef struct {
    const ds_split *split;
    int seq_len;           /* longer examples keep their LAST seq_len tokens (answer and recent context) */
    int64_t batch_tokens;  /* > 0: a batch takes examples while their tokens fit (at least one) */
    int64_t batch_size;    /* > 0 (when batch_tokens == 0): a batch takes this many examples */
    uint64_t seed;
    int shuffle;           /* 0: file order every epoch */
    int64_t *order;        /* the permutation of order_epoch (owned) */
    int64_t order_epoch;
} data_stream;

/* One global batch: the examples and the tokens kept of each. */
typedef struct {
    int n, cap;
    int64_t *example; /* [n] index in the split */
    int *start, *len; /* [n] first token kept, tokens kept */
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

int stream_init(data_stream *s, const ds_split *split, int seq_len, int64_t batch_tokens, int64_t batch_size,
                uint64_t seed, int shuffle);
void stream_free(data_stream *s);
/* The next global batch from *cur; advances *cur. 0 or -1 (ERR_NOMEM, or ERR_INPUT for an empty split). */
int stream_next(data_stream *s, data_cursor *cur, batch_plan *b);
/* Optimizer steps that consume `epochs` passes over the split from the start (the last batch may
 * reach into the next epoch). */
int stream_steps_for_epochs(data_stream *s, int64_t epochs, int64_t *steps);
void batch_plan_free(batch_plan *b);
/* A plan of the first n examples of split in file order (validation), each cut to seq_len. */
int batch_plan_first(batch_plan *b, const ds_split *split, int64_t n, int seq_len);

/* The sequences [*s0, *s1) of b that rank `rank` of `world` processes: contiguous, balanced by
 * tokens (a sequence goes to the rank its middle token falls in). */
void batch_rank_range(const batch_plan *b, int rank, int world, int *s0, int *s1);

/* Appends sequences [s0, s1) of b with their tokens and masks (copied from the split). */
int seq_set_from_plan(seq_set *out, const ds_split *split, const batch_plan *b, int s0, int s1);
/* Appends one sequence (tokens and mask copied). */
int seq_set_add(seq_set *out, const int *tokens, const uint8_t *mask, int len, uint8_t flags, int64_t example);
void seq_set_clear(seq_set *s);
void seq_set_free(seq_set *s);

/* Micro-batches: the sequences from *next on that fit in max_tokens together (at least one);
 * returns how many (0 at the end) and advances *next. */
int seq_set_next_micro(const seq_set *s, int *next, int max_tokens);

#endif
