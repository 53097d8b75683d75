/* profile.h: optional wall-time accounting per kind of work, for benchmarks' "where the time goes"
 * tables. Off by default (one branch per call); prof_enable(1) turns it on. Single-threaded use:
 * the model calls it from the main thread around whole kernel calls. */
#ifndef SMELT_KERNELS_PROFILE_H
#define SMELT_KERNELS_PROFILE_H

#include <stdio.h>

typedef enum {
    PROF_EMBED,
    PROF_NORM,
    PROF_QKV,       /* q/k/v projection GEMMs (forward and backward) */
    PROF_ROPE,
    PROF_ATTN,      /* attention (its GEMMs included) */
    PROF_O,         /* o_proj GEMMs */
    PROF_MLP_GEMM,  /* gate/up and down GEMMs */
    PROF_SWIGLU,
    PROF_HEAD,      /* LM head GEMMs */
    PROF_LOSS,      /* softmax / cross-entropy (the loss callback) */
    PROF_OPTIM,     /* gradient norm, clipping, AdamW */
    PROF_OTHER,     /* copies, bookkeeping */
    PROF_N
} prof_kind;

extern int prof_on;
extern double prof_time[PROF_N];

void prof_enable(int on);
void prof_reset(void);
double prof_now(void);
/* Prints one line per kind: seconds, share of the total. */
void prof_report(FILE *f, const char *title);

/* PROF(kind, statement): runs the statement and, when profiling is on, adds its wall time. */
#define PROF(kind, stmt)                                  \
    do {                                                  \
        double prof_t0_ = prof_on ? prof_now() : 0;       \
        stmt;                                             \
        if (prof_on) prof_time[kind] += prof_now() - prof_t0_; \
    } while (0)

#endif
