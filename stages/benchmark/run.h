/* run.h: running a workload through the serving engine on a clock, and what the benchmark derives
 * from it: per-request traces, TTFT/TPOT/E2E percentiles, throughput, a linear cost model of a
 * step's time, and the capacity search under a TTFT SLO.
 *
 * The clock. Each engine step advances it by the step's measured wall time (or, in a simulation,
 * by the cost model's prediction); while the engine is idle it jumps to the next arrival. Requests
 * arriving during a step join at the next step, as in a live server, so latencies are those of a
 * live run without waiting through the idle gaps. */
#ifndef SMELT_STAGES_BENCHMARK_RUN_H
#define SMELT_STAGES_BENCHMARK_RUN_H

#include "model/engine.h"
#include "stages/benchmark/workload.h"

typedef struct {
    double arrival, first, finish; /* seconds on the run's clock; first/finish < 0 when never reached */
    int group, cand;
    int prompt_tokens, output_tokens, cached_tokens;
    int error;                     /* HTTP runs: 1 when the request failed */
} req_trace;

typedef struct {
    int n_seqs, prefill_tokens, decode_tokens;
    double attn_pairs, seconds;
} step_rec;

typedef struct {
    req_trace *tr;   /* [n] in workload order (member g, candidate c at g*k + c) */
    int n;
    step_rec *steps; /* [n_steps] */
    int n_steps, cap_steps;
} run_result;

/* A step's time: t = c[0] + c[1] tokens + c[2] attn_pairs + c[3] n_seqs (seconds), fitted by least
 * squares with non-negative coefficients over the steps of a measured run. Steps far slower than a
 * robust fit predicts (least trimmed squares over half the steps; a residual above 3 robust standard
 * deviations, 1.4826 x the median absolute residual, and above 1 us) were stalled by something
 * outside the engine (another process took the core, a page fault): they are left out (n < 12:
 * none is). */
typedef struct {
    double c[4];
    double r2;       /* coefficient of determination on the fitted steps */
    int n;           /* steps fitted */
    int outliers;    /* measured steps left out as stalled */
} step_cost;

typedef struct {
    double ttft_p50, ttft_p99, tpot_p50, tpot_p99, e2e_p50, e2e_p99; /* ms */
    double input_tps, output_tps, rps, hit_ratio, duration_s;
    int has_tpot, n_ok, n_err;
} run_summary;

/* Runs every member of w arriving at `rate` per second through e (whose prefix cache should be
 * empty), with greedy decoding to each prompt's output length. cost == NULL: the clock advances by
 * measured step times; else by cost's predictions (e may be a dry-run engine). 0 or -1. */
int run_engine(engine *e, const workload *w, const arrival_spec *a, double rate, const step_cost *cost,
               run_result *res);
void run_result_free(run_result *r);
/* The q-quantile (0..1) of v[0..n) with linear interpolation (numpy's default); sorts v. */
double percentile(double *v, int n, double q);
void run_summarize(const run_result *r, run_summary *s);

int step_cost_fit(step_cost *c, const step_rec *s, int n);
double step_cost_predict(const step_cost *c, int tokens, double attn_pairs, int n_seqs);

/* One trial of the capacity search. */
typedef struct {
    double rate, ttft_p99_ms;
    int meets;
} cap_trial;

/* The highest arrival rate (members per second) whose simulated p99 TTFT meets slo_ms: from
 * start_rate, doubling or halving until the SLO is bracketed, then bisection in log(rate) for
 * `iters` rounds. Every trial is a deterministic simulation (dry-run engine, cost model, the
 * workload's fixed unit arrivals), so the result is a function of the workload, its seed and the
 * cost model. *rate = 0 when even 1/1024 of start_rate misses the SLO. trials gets up to
 * max_trials entries (*n_trials). 0 or -1. */
int capacity_search(engine *dry, const workload *w, const arrival_spec *a, double start_rate, const step_cost *cost,
                    double slo_ms, int iters, double *rate, double *p99_ms, cap_trial *trials, int max_trials,
                    int *n_trials);

#endif
