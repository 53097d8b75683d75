/* benchmark.h: what the files of the benchmark stage share: its parameters as read, its state,
 * the in-process and HTTP runs, and the writer of its outputs and metrics. */
#ifndef SMELT_STAGES_BENCHMARK_BENCHMARK_H
#define SMELT_STAGES_BENCHMARK_BENCHMARK_H

#include "model/engine.h"
#include "stages/benchmark/run.h"
#include "stages/stage.h"

typedef struct {
    int ranking, k, n_groups;
    double rate, duration_s;
    uint64_t seed;
    arrival_spec arrival;
    engine_opts eo;              /* block_size, kv budget, batch tokens, seqs, prefix cache */
    const char *target;          /* NULL: in process */
    double slo_ms;               /* 0: no capacity search */
    int slo_iters, slo_verify;
    int has_fleet, fleet_down;
    double fleet_rate;
} bench_params;

typedef struct {
    model m;
    int have_model;
    workload w;
    int have_w;
    run_result res;              /* the main run */
    run_summary sum;
    /* in process */
    double forward_ms, attention_ms, mlp_ms, other_ms;
    double *layer_attn_ms, *layer_mlp_ms; /* [n_layers] */
    double prefill_cold_ms, prefill_hot_ms;
    int have_prefill;
    step_cost cost;
    int have_slo;
    double slo_rate, slo_p99, slo_verified_p99;
    cap_trial *trials;
    int n_trials;
    /* HTTP */
    double http_overhead_ms;
    char served_model[256];
} bench_state;

void bench_state_free(bench_state *st);
/* inproc.c: the main run, the breakdown, cold/hot prefill and the capacity search. 0 or -1. */
int bench_inprocess(stage_ctx *ctx, const bench_params *bp, bench_state *st);
/* http.c: the same workload against target (libcurl, streaming). 0 or -1. */
int bench_http(stage_ctx *ctx, const bench_params *bp, bench_state *st);
/* report.c: trace.csv, steps.csv, capacity.csv, metrics.json and the stage's metrics. 0 or -1. */
int bench_write(stage_ctx *ctx, const bench_params *bp, const bench_state *st);

#endif
