/* benchmark.c: the `benchmark` stage kind: a serving workload (RecSys ranking: members with k
 * candidates sharing a prefix; or generation) through the serving engine in process, or through
 * any OpenAI-compatible server (`target:`); TTFT, TPOT, E2E at p50/p99, throughput, prefix hit
 * ratio, cold and hot prefill, a per-layer time breakdown, a per-request trace, and with `slo:`
 * the highest arrival rate that meets a p99 TTFT (and with `fleet:` the replicas needed). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "common/fsutil.h"
#include "common/log.h"
#include "common/strbuf.h"
#include "model/model_load.h"
#include "model/qmodel.h"
#include "stages/benchmark/benchmark.h"
#include "stages/stage.h"

static const char *const kind_choices[] = {"ranking", "generation", NULL};
static const char *const arrival_choices[] = {"poisson", "fixed", "bursty", NULL};
static const char *const kv_dtype_choices[] = {"f32", "f16", NULL};

static const param_spec model_alts[] = {
    {.name = "stage", .type = P_REF, .help = "a stage whose main output is a model"},
    {.name = "path", .type = P_PATH,
     .help = "a Hugging Face folder (dense or quantized), .safetensors or llama2.c .bin (write ./x for a path)"},
    {.name = NULL},
};
static const param_spec synth_fields[] = {
    {.name = "context_tokens", .type = P_INT, .def = "512", .has_min = 1, .min = 1, .has_max = 1, .max = 1 << 20,
     .help = "prompt length in tokens"},
    {.name = "output_tokens", .type = P_INT, .def = "64", .has_min = 1, .min = 1, .has_max = 1, .max = 1 << 20,
     .help = "tokens generated per request (generation; ranking generates 1)"},
    {.name = "shared", .type = P_FLOAT, .def = "0.9", .has_min = 1, .min = 0, .has_max = 1, .max = 1,
     .help = "fraction of a ranking prompt shared by a member's candidates"},
    {.name = NULL},
};
static const param_spec prompts_alts[] = {
    {.name = "stage", .type = P_REF, .help = "a data stage: its prompts (up to each answer) are sent"},
    {.name = "path", .type = P_PATH, .help = "a data artifact folder"},
    {.name = "synthetic", .type = P_MAP, .fields = synth_fields, .help = "{context_tokens, output_tokens, shared}"},
    {.name = NULL},
};
static const param_spec arrival_fields[] = {
    {.name = "kind", .type = P_STRING, .def = "bursty", .choices = arrival_choices, .help = "the arrival process"},
    {.name = "peak_to_mean", .type = P_FLOAT, .def = "4", .has_min = 1, .min = 1, .has_max = 1, .max = 1e6,
     .help = "bursty: rate in a burst / mean rate"},
    {.name = "period_s", .type = P_FLOAT, .def = "10", .has_min = 1, .min = 1e-6, .help = "bursty: one burst per period"},
    {.name = NULL},
};
static const param_spec arrival_alts[] = {
    {.name = "name", .type = P_STRING, .choices = arrival_choices, .help = "poisson, fixed or bursty"},
    {.name = "spec", .type = P_MAP, .fields = arrival_fields, .help = "{kind, peak_to_mean, period_s}"},
    {.name = NULL},
};
static const param_spec workload_fields[] = {
    {.name = "kind", .type = P_STRING, .def = "ranking", .choices = kind_choices,
     .help = "ranking (k candidates per member, one output token) or generation"},
    {.name = "candidates", .type = P_INT, .def = "8", .has_min = 1, .min = 1, .has_max = 1, .max = 4096,
     .help = "prompts per member (ranking)"},
    {.name = "prompts", .type = P_UNION, .def = "{}", .alts = prompts_alts,
     .help = "a data stage, a data folder, or synthetic {context_tokens, output_tokens, shared}"},
    {.name = "split", .type = P_STRING, .def = "test", .help = "the data split whose prompts are sent"},
    {.name = "requests", .type = P_INT, .def = "64", .has_min = 1, .min = 1, .has_max = 1, .max = 1 << 22,
     .help = "members arriving (ranking: each sends `candidates` requests)"},
    {.name = "duration_s", .type = P_FLOAT, .def = "0", .has_min = 1, .min = 0,
     .help = "when > 0: the members arriving within this many seconds at `rate` instead of `requests`"},
    {.name = "arrival", .type = P_UNION, .def = "poisson", .alts = arrival_alts,
     .help = "poisson, fixed, bursty or {kind: bursty, peak_to_mean, period_s}"},
    {.name = "rate", .type = P_FLOAT, .def = "1", .has_min = 1, .min = 1e-9, .help = "members per second"},
    {.name = "seed", .type = P_INT, .def = "1", .help = "seed of the prompts and arrival times"},
    {.name = NULL},
};
static const param_spec slo_fields[] = {
    {.name = "ttft_ms_p99", .type = P_FLOAT, .required = 1, .has_min = 1, .min = 1e-6, .help = "the p99 TTFT to meet"},
    {.name = "iterations", .type = P_INT, .def = "12", .has_min = 1, .min = 1, .has_max = 1, .max = 60,
     .help = "bisection rounds over log(rate)"},
    {.name = "verify", .type = P_BOOL, .def = "true", .help = "re-run the found rate for real and report its p99 TTFT"},
    {.name = NULL},
};
static const param_spec fleet_fields[] = {
    {.name = "members_per_s", .type = P_FLOAT, .required = 1, .has_min = 1, .min = 0, .help = "traffic to serve"},
    {.name = "replicas_down", .type = P_INT, .def = "0", .has_min = 1, .min = 0, .help = "replicas that may be lost"},
    {.name = NULL},
};

static const param_spec benchmark_params[] = {
    {.name = "model", .type = P_UNION, .alts = model_alts, .help = "the model served (required without target)"},
    {.name = "target", .type = P_STRING, .help = "http://HOST:PORT of an OpenAI-compatible server to measure instead"},
    {.name = "workload", .type = P_MAP, .def = "{}", .fields = workload_fields, .help = "what is sent and when"},
    {.name = "prefix_cache", .type = P_BOOL, .def = "true", .help = "reuse cached prefixes (radix tree)"},
    {.name = "max_batch_tokens", .type = P_INT, .def = "1024", .has_min = 1, .min = 1, .has_max = 1, .max = 1 << 20,
     .help = "tokens one engine step runs (decode + prefill chunks)"},
    {.name = "kv_budget_mb", .type = P_FLOAT, .def = "256", .has_min = 1, .min = 1e-6, .help = "KV cache memory"},
    {.name = "kv_dtype", .type = P_STRING, .def = "f32", .choices = kv_dtype_choices,
     .help = "KV cache numbers: f32 (the plain forward's values) or f16 (half the bytes)"},
    {.name = "block_size", .type = P_INT, .def = "16", .has_min = 1, .min = 1, .has_max = 1, .max = 1024,
     .help = "positions per KV block"},
    {.name = "max_seqs", .type = P_INT, .def = "64", .has_min = 1, .min = 1, .has_max = 1, .max = 65536,
     .help = "requests running at once"},
    {.name = "slo", .type = P_MAP, .fields = slo_fields, .help = "{ttft_ms_p99: X}: search the highest rate meeting it"},
    {.name = "fleet", .type = P_MAP, .fields = fleet_fields,
     .help = "{members_per_s: R, replicas_down: k}: replicas needed under the SLO"},
    {.name = NULL},
};

static const stage_output_spec benchmark_outputs[] = {
    {.name = "output", .kind = "benchmark"},
    {.name = NULL},
};

static int input_path(stage_ctx *ctx, const char *name, const char **path) {
    stage_input *in = stage_input_get(ctx, name);
    return in ? stage_input_dir(ctx, in, path) : param_string(ctx->params, name, path);
}

/* The workload's prompts, from a data artifact or synthetic. vocab: the model's (0: unknown). */
static int build_workload(stage_ctx *ctx, const bench_params *bp, int vocab, workload *w) {
    const cJSON *pr = param_get(ctx->params, "workload.prompts");
    if (cJSON_IsObject(pr)) {
        synth_spec sp = {.context_tokens = (int)cJSON_GetObjectItem(pr, "context_tokens")->valuedouble,
                         .output_tokens = (int)cJSON_GetObjectItem(pr, "output_tokens")->valuedouble,
                         .shared = cJSON_GetObjectItem(pr, "shared")->valuedouble};
        /* without a model (target), ids below 256 exist in every byte-level vocabulary */
        return workload_synthetic(w, bp->ranking, bp->k, bp->n_groups, &sp, vocab > 0 ? vocab : 256, bp->seed);
    }
    const char *dir, *split;
    dataset ds;
    ds_split s;
    memset(&s, 0, sizeof s);
    if (input_path(ctx, "workload.prompts", &dir) || param_string(ctx->params, "workload.split", &split)) return -1;
    if (dataset_open(&ds, dir)) return -1;
    int rc = dataset_split_open(&ds, split, &s);
    if (!rc && vocab > 0 && s.vocab > vocab)
        rc = err_set(ERR_INPUT, "the data set's tokenizer has %d tokens but the model's vocabulary %d; benchmark a model "
                     "trained with this data set's tokenizer", s.vocab, vocab);
    if (!rc) rc = workload_from_split(w, bp->ranking, bp->k, bp->n_groups, &s, bp->seed);
    if (s.map) ds_split_close(&s);
    dataset_close(&ds);
    return rc;
}

static int read_params(stage_ctx *ctx, bench_params *bp) {
    memset(bp, 0, sizeof *bp);
    const char *kind, *target = NULL, *kvd;
    int64_t k, req, seed, mbt, bs, ms;
    double dur, kvmb;
    if (param_string(ctx->params, "workload.kind", &kind) || param_int(ctx->params, "workload.candidates", &k) ||
        param_int(ctx->params, "workload.requests", &req) || param_float(ctx->params, "workload.duration_s", &dur) ||
        param_float(ctx->params, "workload.rate", &bp->rate) || param_int(ctx->params, "workload.seed", &seed) ||
        param_bool(ctx->params, "prefix_cache", &bp->eo.prefix_cache) ||
        param_int(ctx->params, "max_batch_tokens", &mbt) || param_float(ctx->params, "kv_budget_mb", &kvmb) ||
        param_int(ctx->params, "block_size", &bs) || param_int(ctx->params, "max_seqs", &ms) ||
        param_string(ctx->params, "kv_dtype", &kvd))
        return -1;
    bp->eo.kv_f16 = !strcmp(kvd, "f16");
    bp->ranking = !strcmp(kind, "ranking");
    bp->k = bp->ranking ? (int)k : 1;
    bp->n_groups = (int)req;
    bp->duration_s = dur;
    bp->seed = (uint64_t)seed;
    bp->eo.max_batch_tokens = (int)mbt, bp->eo.kv_budget_mb = kvmb, bp->eo.block_size = (int)bs, bp->eo.max_seqs = (int)ms;
    const cJSON *arr = param_get(ctx->params, "workload.arrival");
    const char *an = cJSON_IsString(arr) ? arr->valuestring : cJSON_GetObjectItem(arr, "kind")->valuestring;
    bp->arrival.kind = !strcmp(an, "fixed") ? ARRIVAL_FIXED : !strcmp(an, "bursty") ? ARRIVAL_BURSTY : ARRIVAL_POISSON;
    bp->arrival.peak_to_mean = 4, bp->arrival.period_s = 10;
    if (cJSON_IsObject(arr)) {
        bp->arrival.peak_to_mean = cJSON_GetObjectItem(arr, "peak_to_mean")->valuedouble;
        bp->arrival.period_s = cJSON_GetObjectItem(arr, "period_s")->valuedouble;
    }
    if (param_get(ctx->params, "target") && param_string(ctx->params, "target", &target)) return -1;
    bp->target = target;
    const cJSON *slo = param_get(ctx->params, "slo"), *fleet = param_get(ctx->params, "fleet");
    if (slo) {
        bp->slo_ms = cJSON_GetObjectItem(slo, "ttft_ms_p99")->valuedouble;
        bp->slo_iters = (int)cJSON_GetObjectItem(slo, "iterations")->valuedouble;
        bp->slo_verify = cJSON_IsTrue(cJSON_GetObjectItem(slo, "verify"));
    }
    if (fleet) {
        if (!slo) return err_set(ERR_INPUT, "fleet: needs slo: {ttft_ms_p99: X} (replicas are sized under an SLO)");
        bp->fleet_rate = cJSON_GetObjectItem(fleet, "members_per_s")->valuedouble;
        bp->fleet_down = (int)cJSON_GetObjectItem(fleet, "replicas_down")->valuedouble;
        bp->has_fleet = 1;
    }
    if (!target && !param_get(ctx->params, "model"))
        return err_set(ERR_INPUT, "benchmark: give model: (served in process) or target: http://HOST:PORT");
    if (target && slo)
        return err_set(ERR_INPUT, "benchmark: slo: searches rates in process; remove target: or slo:");
    if (target && strncmp(target, "http://", 7))
        return err_set(ERR_INPUT, "target '%s': expected http://HOST:PORT", target);
    return 0;
}

static int benchmark_run(stage_ctx *ctx) {
    bench_params bp;
    if (read_params(ctx, &bp)) return -1;
    bench_state st;
    memset(&st, 0, sizeof st);
    int rc = -1;
    const char *model_path = NULL;
    if (param_get(ctx->params, "model")) {
        if (input_path(ctx, "model", &model_path)) goto out;
        if (model_load(&st.m, model_path)) { /* dense, llama2.c or quantized: the engine runs any */
            err_prefix("loading the model: ");
            goto out;
        }
        st.have_model = 1;
        log_info("model %s%s", model_path, model_is_quantized(&st.m) ? " (quantized linears)" : "");
    }
    /* the workload: with duration_s, the members arriving within it at the configured rate */
    if (bp.duration_s > 0) {
        const int cap = 1 << 22;
        double *unit = xmalloc(sizeof(double) * cap);
        if (!unit) goto out;
        workload_unit_arrivals(unit, cap, bp.arrival.kind, bp.seed);
        bp.n_groups = workload_count_within(unit, cap, &bp.arrival, bp.rate, bp.duration_s);
        free(unit);
        if (bp.n_groups < 1) {
            err_set(ERR_INPUT, "no member arrives within duration_s %g at rate %g; raise one of them", bp.duration_s,
                    bp.rate);
            goto out;
        }
    }
    if (build_workload(ctx, &bp, st.have_model ? st.m.cfg.vocab : 0, &st.w)) goto out;
    st.have_w = 1;
    workload_unit_arrivals(st.w.unit, st.w.n_groups, bp.arrival.kind, bp.seed);
    log_info("workload: %s, %d members x %d prompts (%lld prompt tokens, %lld output tokens, longest %d positions), %s "
             "arrivals at %g members/s", bp.ranking ? "ranking" : "generation", st.w.n_groups, st.w.k,
             (long long)st.w.prompt_tokens, (long long)st.w.output_tokens, st.w.max_positions,
             bp.arrival.kind == ARRIVAL_FIXED ? "fixed" : bp.arrival.kind == ARRIVAL_BURSTY ? "bursty" : "poisson", bp.rate);
    rc = bp.target ? bench_http(ctx, &bp, &st) : bench_inprocess(ctx, &bp, &st);
    if (!rc && ctx->rank == 0) rc = bench_write(ctx, &bp, &st);
out:
    bench_state_free(&st);
    return rc ? -1 : 0;
}

void bench_state_free(bench_state *st) {
    run_result_free(&st->res);
    free(st->trials);
    free(st->layer_attn_ms);
    free(st->layer_mlp_ms);
    if (st->have_w) workload_free(&st->w);
    if (st->have_model) model_free(&st->m);
}

const stage_kind stage_kind_benchmark = {
    .name = "benchmark",
    .version = 1,
    .summary = "serving latency and throughput of a model under a RecSys workload (TTFT/TPOT p50/p99, capacity)",
    .params = benchmark_params,
    .outputs = benchmark_outputs,
    .supports_ranks = 0,
    .copy_inputs = 0,
    .run = benchmark_run,
};
