/* schedule.h: learning-rate schedules with linear warmup, as transformers defines them
 * (get_cosine_schedule_with_warmup, get_linear_schedule_with_warmup, with an optional floor). */
#ifndef SMELT_KERNELS_SCHEDULE_H
#define SMELT_KERNELS_SCHEDULE_H

typedef enum { LR_CONSTANT = 0, LR_COSINE = 1, LR_LINEAR = 2 } lr_kind;

typedef struct {
    lr_kind kind;
    double lr;           /* peak learning rate */
    double min_lr_ratio; /* floor as a fraction of lr after warmup (0: decays to 0) */
    long warmup;         /* warmup steps: lr * step / warmup for step < warmup */
    long total;          /* total optimizer steps (cosine and linear reach the floor here) */
} lr_schedule;

/* The learning rate of the optimizer step that follows `step` completed steps (0 for the first
 * step), i.e. transformers' LambdaLR value at that step: with warmup > 0 the first step has lr 0. */
double lr_schedule_at(const lr_schedule *s, long step);

#endif
