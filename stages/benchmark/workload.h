/* workload.h: what the benchmark stage sends: members arriving over time, each with k candidate
 * prompts (ranking: one output token each) or one prompt (generation: many output tokens), and the
 * arrival process (Poisson, fixed spacing, or bursty: Poisson traffic concentrated in the first
 * 1/peak_to_mean of every period). Arrival times are a fixed sequence of unit-rate draws mapped
 * through the rate, so that runs at different rates with one seed see the same pattern, faster or
 * slower (the capacity search depends on it). */
#ifndef SMELT_STAGES_BENCHMARK_WORKLOAD_H
#define SMELT_STAGES_BENCHMARK_WORKLOAD_H

#include <stdint.h>

#include "stages/data/dataset.h"

typedef enum { ARRIVAL_POISSON = 0, ARRIVAL_FIXED = 1, ARRIVAL_BURSTY = 2 } arrival_kind;

typedef struct {
    arrival_kind kind;
    double peak_to_mean; /* bursty: rate during a burst / mean rate (>= 1) */
    double period_s;     /* bursty: one burst per period */
} arrival_spec;

typedef struct {
    int *tokens;   /* [n_tokens] (owned by the workload's token pool) */
    int n_tokens;
    int output;    /* tokens to generate (1 for ranking) */
} bw_prompt;

typedef struct {
    int ranking;         /* 1: ranking (k candidates, one output token), 0: generation */
    int k;               /* prompts per member */
    int n_groups;        /* members */
    bw_prompt *prompts;  /* [n_groups * k] member g's prompts at g*k .. g*k+k-1 */
    double *unit;        /* [n_groups] arrival of member g in unit-rate time (sum of g+1 draws);
                          * the constructors leave it for workload_unit_arrivals */
    int *pool;           /* the tokens of every prompt */
    int max_positions;   /* the longest prompt + output */
    int64_t prompt_tokens, output_tokens;
} workload;

/* Synthetic prompts of context_tokens random tokens in [0, vocab); the k candidates of a ranking
 * member share their first round(shared * context_tokens) tokens (at most context_tokens - 1). */
typedef struct {
    int context_tokens, output_tokens;
    double shared;
} synth_spec;

/* A workload of n_groups members from synthetic prompts. 0 or -1. */
int workload_synthetic(workload *w, int ranking, int k, int n_groups, const synth_spec *sp, int vocab, uint64_t seed);
/* A workload from a data split: ranking takes up to k candidates of each group (the prompt up to
 * the answer); generation one example per member (the prompt up to its first target, the response
 * length as output). Groups are visited in a seeded order and reused when n_groups exceeds them.
 * 0 or -1 (ERR_INPUT: no usable example). */
int workload_from_split(workload *w, int ranking, int k, int n_groups, const ds_split *s, uint64_t seed);
void workload_free(workload *w);

/* Arrival time of member g at `rate` members per second. */
double workload_arrival(const workload *w, const arrival_spec *a, double rate, int g);
/* Members arriving within duration_s at rate (for `duration_s` workloads): the count. */
int workload_count_within(const double *unit, int n, const arrival_spec *a, double rate, double duration_s);
/* Unit-rate arrival draws for n members (exponential gaps for Poisson and bursty, 1 for fixed). */
void workload_unit_arrivals(double *unit, int n, arrival_kind kind, uint64_t seed);

#endif
