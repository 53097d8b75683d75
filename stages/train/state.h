/* state.h: in-stage checkpoints of the `train` stage: everything a resumed attempt needs to continue
 * bitwise as if never stopped: parameters, AdamW moments and step, the data cursor, the RNG state,
 * the best validation point and its weights. One folder per checkpoint, step-NNNNNNNNN/, written
 * under a temporary name and renamed (a crash leaves the previous one intact); state.json lists
 * every file's size and sha256, checked on load. Older checkpoints are removed after a new one. */
#ifndef SMELT_STAGES_TRAIN_STATE_H
#define SMELT_STAGES_TRAIN_STATE_H

#include <stdint.h>

#include "model/optim.h"
#include "stages/train/batch.h"

typedef struct {
    int64_t step;            /* optimizer steps completed */
    data_cursor cursor;      /* the stream position after those steps */
    uint64_t rng;            /* the stage's RNG state (on-policy batch choices) */
    int have_best;           /* select: best_valid_loss has a point */
    double best_loss;
    int64_t best_step;
    int64_t tokens_seen;     /* training tokens so far (metrics) */
} train_progress;

/* Writes a checkpoint of step p->step into dir (created). best: the best weights [n_floats] or NULL.
 * fingerprint: a string that must match on load (the cache key and the sizes). 0 or -1. */
int state_save(const char *dir, const train_progress *p, const model *m, const optimizer *o, const float *best,
               const char *fingerprint);
/* Loads the newest checkpoint of dir into p, m's weights, o's moments and step, and best (when not
 * NULL and saved). Returns 1 when one was loaded, 0 when dir has none, -1 on error (ERR_CORRUPT
 * naming the file; the message says to delete the folder to start over). */
int state_load(const char *dir, train_progress *p, model *m, optimizer *o, float *best, const char *fingerprint);
/* The step of the newest checkpoint in dir, or -1 when none. */
int64_t state_newest(const char *dir);

#endif
