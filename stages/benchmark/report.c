/* report.c: the benchmark stage's outputs: trace.csv (one row per request), steps.csv (one row per
 * engine step, in process), capacity.csv (the SLO search's trials), metrics.json, and the metrics
 * recorded in the store (README "benchmark"). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "common/fsutil.h"
#include "common/strbuf.h"
#include "stages/benchmark/benchmark.h"

static int write_file(const char *dir, const char *name, const strbuf *sb) {
    char *path = fs_join(dir, name);
    int rc = !path || fs_write_atomic(path, sb_str(sb), sb->len);
    free(path);
    return rc ? -1 : 0;
}

static int write_csvs(const char *dir, const bench_state *st) {
    strbuf sb = STRBUF_INIT;
    int rc = sb_puts(&sb, "request,member,candidate,arrival_s,first_token_s,finish_s,prompt_tokens,output_tokens,"
                          "cached_tokens,cache_hit,error\n");
    for (int i = 0; i < st->res.n && !rc; i++) {
        const req_trace *t = &st->res.tr[i];
        rc = sb_printf(&sb, "%d,%d,%d,%.6f,%.6f,%.6f,%d,%d,%d,%d,%d\n", i, t->group, t->cand, t->arrival, t->first,
                       t->finish, t->prompt_tokens, t->output_tokens, t->cached_tokens, t->cached_tokens > 0, t->error);
    }
    rc = rc || write_file(dir, "trace.csv", &sb);
    if (!rc && st->res.n_steps) {
        sb_reset(&sb);
        rc = sb_puts(&sb, "step,sequences,prefill_tokens,decode_tokens,attention_pairs,seconds\n");
        for (int i = 0; i < st->res.n_steps && !rc; i++) {
            const step_rec *s = &st->res.steps[i];
            rc = sb_printf(&sb, "%d,%d,%d,%d,%.0f,%.9f\n", i, s->n_seqs, s->prefill_tokens, s->decode_tokens,
                           s->attn_pairs, s->seconds);
        }
        rc = rc || write_file(dir, "steps.csv", &sb);
    }
    if (!rc && st->have_slo) {
        sb_reset(&sb);
        rc = sb_puts(&sb, "trial,rate,ttft_ms_p99,meets_slo\n");
        for (int i = 0; i < st->n_trials && !rc; i++)
            rc = sb_printf(&sb, "%d,%.9g,%.6f,%d\n", i, st->trials[i].rate, st->trials[i].ttft_p99_ms,
                           st->trials[i].meets);
        rc = rc || write_file(dir, "capacity.csv", &sb);
    }
    sb_free(&sb);
    return rc ? -1 : 0;
}

typedef struct {
    stage_ctx *ctx;
    cJSON *json;
    int rc;
} metric_out;

static void put(metric_out *o, const char *key, double v) {
    if (o->rc || !isfinite(v)) return;
    cJSON_AddNumberToObject(o->json, key, v);
    o->rc = stage_metric(o->ctx, key, 0, v);
}

int bench_write(stage_ctx *ctx, const bench_params *bp, const bench_state *st) {
    const char *dir = ctx->output_dirs[0];
    if (write_csvs(dir, st)) return -1;
    const run_summary *s = &st->sum;
    metric_out o = {.ctx = ctx, .json = cJSON_CreateObject()};
    if (!o.json) return err_set(ERR_NOMEM, "metrics.json");
    put(&o, "requests", st->res.n);
    put(&o, "errors", s->n_err);
    put(&o, "ttft_ms_p50", s->ttft_p50);
    put(&o, "ttft_ms_p99", s->ttft_p99);
    if (s->has_tpot) {
        put(&o, "tpot_ms_p50", s->tpot_p50);
        put(&o, "tpot_ms_p99", s->tpot_p99);
    }
    put(&o, "e2e_ms_p50", s->e2e_p50);
    put(&o, "e2e_ms_p99", s->e2e_p99);
    put(&o, "input_tokens_per_s", s->input_tps);
    put(&o, "output_tokens_per_s", s->output_tps);
    put(&o, "requests_per_s", s->rps);
    put(&o, "duration_s", s->duration_s);
    if (!bp->target) put(&o, "prefix_hit_ratio", s->hit_ratio);
    if (st->have_prefill) {
        put(&o, "prefill_cold_ms", st->prefill_cold_ms);
        put(&o, "prefill_hot_ms", st->prefill_hot_ms);
        put(&o, "prefill_hot_speedup", st->prefill_cold_ms / st->prefill_hot_ms);
    }
    if (st->forward_ms > 0) { /* the breakdown of the main run's forwards (the paper's Figure 4) */
        put(&o, "forward_ms", st->forward_ms);
        put(&o, "attention_ms", st->attention_ms);
        put(&o, "mlp_ms", st->mlp_ms);
        put(&o, "other_ms", st->other_ms);
        put(&o, "attention_share", st->attention_ms / st->forward_ms);
        put(&o, "breakdown_coverage", (st->attention_ms + st->mlp_ms + st->other_ms) / st->forward_ms);
        cJSON *la = cJSON_AddArrayToObject(o.json, "layer_attention_ms"), *lm = cJSON_AddArrayToObject(o.json, "layer_mlp_ms");
        for (int l = 0; l < st->m.cfg.n_layers && !o.rc; l++) {
            cJSON_AddItemToArray(la, cJSON_CreateNumber(st->layer_attn_ms[l]));
            cJSON_AddItemToArray(lm, cJSON_CreateNumber(st->layer_mlp_ms[l]));
            o.rc = stage_metric(ctx, "layer_attention_ms", l, st->layer_attn_ms[l]) ||
                   stage_metric(ctx, "layer_mlp_ms", l, st->layer_mlp_ms[l]);
        }
    }
    if (st->have_slo) {
        put(&o, "slo_ttft_ms_p99", bp->slo_ms);
        put(&o, "slo_rate", st->slo_rate);
        put(&o, "slo_simulated_ttft_ms_p99", st->slo_p99);
        put(&o, "slo_verified_ttft_ms_p99", st->slo_verified_p99);
        put(&o, "cost_model_r2", st->cost.r2);
        put(&o, "cost_model_outliers", st->cost.outliers);
        if (bp->has_fleet) {
            /* ALGORITHMS.md 6: ceil(R / rate) + k; no replica serves any traffic when the SLO is unreachable */
            double need = st->slo_rate > 0 ? ceil(bp->fleet_rate / st->slo_rate) + bp->fleet_down : NAN;
            put(&o, "replicas_needed", need);
            if (!isfinite(need)) cJSON_AddNullToObject(o.json, "replicas_needed");
        }
    }
    if (bp->target) {
        put(&o, "http_overhead_ms", st->http_overhead_ms);
        cJSON_AddStringToObject(o.json, "target", bp->target);
        cJSON_AddStringToObject(o.json, "served_model", st->served_model);
    }
    int rc = o.rc;
    char *text = rc ? NULL : cJSON_Print(o.json);
    if (!rc) {
        strbuf sb = STRBUF_INIT;
        rc = !text || sb_puts(&sb, text) || sb_putc(&sb, '\n') || write_file(dir, "metrics.json", &sb);
        sb_free(&sb);
    }
    free(text);
    cJSON_Delete(o.json);
    return rc ? -1 : 0;
}
