/* inproc.c: the benchmark stage in process: limits checked before any work, a warm-up request,
 * the main run on the measured clock, the per-layer breakdown, cold and hot prefill of a member's
 * candidates, and the capacity search on a dry-run engine with a cost model fitted to the main
 * run's steps (verified by one real run at the rate found). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "common/log.h"
#include "stages/benchmark/benchmark.h"

/* Every request of the workload must fit the context and the KV pool: an error now, not mid-run. */
static int check_workload(const engine *e, const workload *w) {
    for (int i = 0; i < w->n_groups * w->k; i++)
        if (engine_check_fits(e, w->prompts[i].n_tokens, w->prompts[i].output))
            return err_prefix("workload prompt %d (member %d): ", i, i / w->k);
    return 0;
}

static int drain(engine *e) {
    for (int guard = 0; engine_n_waiting(e) + engine_n_running(e) > 0; guard++)
        if (guard > 10000000 || engine_step(e, NULL, NULL, NULL)) return -1;
    return 0;
}

/* Wall time of one request's prefill (submit to first token) alone in the engine. */
static int time_prefill(engine *e, const bw_prompt *p, double *ms) {
    engine_request q = {.prompt = p->tokens, .n_prompt = p->n_tokens, .max_new_tokens = 1, .temperature = 0};
    const double t0 = time_monotonic();
    if (engine_submit(e, &q, NULL) || drain(e)) return -1;
    *ms = 1e3 * (time_monotonic() - t0);
    return 0;
}

static int cold_hot(engine *e, const workload *w, bench_state *st) {
    const int n = w->n_groups < 5 ? w->n_groups : 5;
    double cold[5], hot[5];
    for (int g = 0; g < n; g++) {
        engine_cache_clear(e);
        if (time_prefill(e, &w->prompts[g * w->k], &cold[g]) || time_prefill(e, &w->prompts[g * w->k + 1], &hot[g]))
            return -1;
    }
    st->prefill_cold_ms = percentile(cold, n, 0.5);
    st->prefill_hot_ms = percentile(hot, n, 0.5);
    st->have_prefill = 1;
    log_info("prefill of one candidate: cold %.2f ms, hot %.2f ms (%.1fx; median of %d members)", st->prefill_cold_ms,
             st->prefill_hot_ms, st->prefill_cold_ms / st->prefill_hot_ms, n);
    return 0;
}

static int breakdown(const engine *e, bench_state *st) {
    const engine_stats *es = engine_get_stats(e);
    const int L = engine_config(e)->n_layers;
    st->layer_attn_ms = xcalloc((size_t)L, sizeof(double));
    st->layer_mlp_ms = xcalloc((size_t)L, sizeof(double));
    if (!st->layer_attn_ms || !st->layer_mlp_ms) return -1;
    for (int l = 0; l < L; l++) {
        st->layer_attn_ms[l] = 1e3 * es->layer_attn_s[l];
        st->layer_mlp_ms[l] = 1e3 * es->layer_mlp_s[l];
        st->attention_ms += st->layer_attn_ms[l];
        st->mlp_ms += st->layer_mlp_ms[l];
    }
    st->other_ms = 1e3 * es->embed_head_s;
    st->forward_ms = 1e3 * es->forward_s;
    return 0;
}

static int capacity(const bench_params *bp, bench_state *st, engine *e) {
    if (step_cost_fit(&st->cost, st->res.steps, st->res.n_steps)) return -1;
    log_info("cost model of a step (fitted to %d steps, %d stalled steps left out, R^2 %.3f): %.3g s + %.3g s/token + "
             "%.3g s/attention pair + %.3g s/sequence", st->cost.n, st->cost.outliers, st->cost.r2, st->cost.c[0],
             st->cost.c[1], st->cost.c[2], st->cost.c[3]);
    engine_opts dry = bp->eo;
    dry.dry_run = 1;
    engine *d;
    if (engine_create(&d, &st->m, &dry)) return -1;
    const int max_trials = 64;
    st->trials = xcalloc(max_trials, sizeof *st->trials);
    int rc = !st->trials || capacity_search(d, &st->w, &bp->arrival, bp->rate, &st->cost, bp->slo_ms, bp->slo_iters,
                                            &st->slo_rate, &st->slo_p99, st->trials, max_trials, &st->n_trials);
    engine_free(d);
    if (rc) return -1;
    st->have_slo = 1;
    st->slo_verified_p99 = NAN;
    if (st->slo_rate <= 0) {
        log_warn("SLO p99 TTFT %g ms: not met even at %g members/s", bp->slo_ms, bp->rate / 1024);
        return 0;
    }
    log_info("SLO p99 TTFT %g ms: highest rate %.4g members/s (simulated p99 %.2f ms, %d trials)", bp->slo_ms,
             st->slo_rate, st->slo_p99, st->n_trials);
    if (!bp->slo_verify) return 0;
    run_result r;
    run_summary s;
    engine_cache_clear(e);
    if (run_engine(e, &st->w, &bp->arrival, st->slo_rate, NULL, &r)) {
        run_result_free(&r);
        return -1;
    }
    run_summarize(&r, &s);
    run_result_free(&r);
    st->slo_verified_p99 = s.ttft_p99;
    log_info("verified: a real run at %.4g members/s has p99 TTFT %.2f ms", st->slo_rate, s.ttft_p99);
    return 0;
}

int bench_inprocess(stage_ctx *ctx, const bench_params *bp, bench_state *st) {
    engine_opts eo = bp->eo;
    engine *e;
    if (engine_create(&e, &st->m, &eo)) return -1;
    int rc = -1;
    if (check_workload(e, &st->w)) goto out;
    /* warm-up: one request, so that the measured run does not pay first-touch page faults */
    double warm;
    if (time_prefill(e, &st->w.prompts[0], &warm)) goto out;
    engine_cache_clear(e);
    engine_stats_reset(e);
    log_info("running %d requests in process (prefix cache %s)", st->w.n_groups * st->w.k, eo.prefix_cache ? "on" : "off");
    if (run_engine(e, &st->w, &bp->arrival, bp->rate, NULL, &st->res) || breakdown(e, st)) goto out;
    run_summarize(&st->res, &st->sum);
    log_info("TTFT p50 %.2f ms, p99 %.2f ms; %.1f input tokens/s; prefix hit ratio %.3f", st->sum.ttft_p50,
             st->sum.ttft_p99, st->sum.input_tps, st->sum.hit_ratio);
    if (bp->ranking && st->w.k >= 2 && cold_hot(e, &st->w, st)) goto out;
    if (bp->slo_ms > 0 && capacity(bp, st, e)) goto out;
    rc = 0;
out:
    engine_free(e);
    (void)ctx;
    return rc;
}
