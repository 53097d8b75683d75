/* bench_serve.c: the serving engine on one model: prefill tokens/s (one prompt, empty cache),
 * decode tokens/s (one sequence), cold vs hot prefill of k candidates sharing 90% of their tokens,
 * and TTFT p50/p99 of a ranking workload under Poisson load. Prints a table; asserts nothing.
 * bench/serve_compare.sh puts transformers and llama.cpp beside it.
 * usage: bench_serve [MODEL|smollm2-shape][:w8a8|:w4a16|:fp8[+head]] [threads] [prompt_len] [decode_steps] [members] [rate]
 *                    [f32|f16]
 *   f32|f16: the engine's KV cache numbers (engine_opts.kv_f16; default f32).
 *   MODEL: anything model_load reads (HF folder, GGUF file, llama2.c .bin, quantized checkpoint);
 *   smollm2-shape: random weights of SmolLM2-135M's shape (hidden 576, 30 layers, 9/3 heads, MLP
 *   1536, vocab 49152, tied). A suffix quantizes the linears by round to nearest (W8A8: int8 per
 *   channel, int8 activations per token; W4A16: int4 groups of 32 with fp16 scales; FP8: E4M3 per channel; a tied
 *   LM head stays fp32 unless "+head" follows: then the head is quantized alike and the embedding
 *   lookup stays fp32, as llama.cpp's files quantize token_embd), run by the quantized kernels. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "common/log.h"
#include "kernels/threads.h"
#include "model/model_load.h"
#include "stages/benchmark/run.h"
#include "tests/eval_testmodel.h"
#include "tests/qtestutil.h"

static void die(const char *what) {
    fprintf(stderr, "bench_serve: %s: %s\n", what, err_msg());
    exit(1);
}

static void drain(engine *e) {
    while (engine_n_waiting(e) + engine_n_running(e) > 0)
        if (engine_step(e, NULL, NULL, NULL)) die("engine_step");
}

/* Wall time of one request of n prompt tokens and `gen` new tokens; *t_first: to its first token. */
static double run_one(engine *e, const int *tok, int n, int gen, double *t_first) {
    engine_request q = {.prompt = tok, .n_prompt = n, .max_new_tokens = gen, .ignore_eos = 1};
    double t0 = time_monotonic();
    if (engine_submit(e, &q, NULL)) die("submit");
    if (engine_step(e, NULL, NULL, NULL)) die("step");
    *t_first = time_monotonic() - t0;
    drain(e);
    return time_monotonic() - t0;
}

int main(int argc, char **argv) {
    const char *spec = argc > 1 ? argv[1] : "smollm2-shape";
    const int threads = kernels_set_threads(argc > 2 ? atoi(argv[2]) : 0);
    const int L = argc > 3 ? atoi(argv[3]) : 512, steps = argc > 4 ? atoi(argv[4]) : 128;
    const int members = argc > 5 ? atoi(argv[5]) : 12;
    const double rate = argc > 6 ? atof(argv[6]) : 0.5;
    const char *kvd = argc > 7 ? argv[7] : "f32";
    if (strcmp(kvd, "f32") && strcmp(kvd, "f16")) {
        fprintf(stderr, "bench_serve: the KV cache is f32 or f16, not '%s'\n", kvd);
        return 2;
    }
    log_set_level(LOG_WARN);
    model m;
    static const qt_scheme schemes[] = {
        {"w8a8", QCKPT_COMPRESSED_TENSORS, QW_INT, 8, QA_INT8, -1, 0, 0, 0, 0},
        {"w4a16", QCKPT_GPTQ, QW_INT, 4, QA_NONE, 32, 0, 0, 0, 0}, /* fp16 scales, as GPTQ and GGUF store them */
        {"fp8", QCKPT_COMPRESSED_TENSORS, QW_FP8, 8, QA_NONE, -1, 0, 0, 0, 0},
    };
    char path[1024];
    snprintf(path, sizeof path, "%s", spec);
    const qt_scheme *qs = NULL;
    char *colon = strrchr(path, ':'), *plus = colon ? strstr(colon, "+head") : NULL;
    const int quant_head = plus && !strcmp(plus, "+head");
    if (quant_head) *plus = 0;
    for (int i = 0; colon && i < 3; i++)
        if (!strcmp(colon + 1, schemes[i].name)) qs = &schemes[i], *colon = 0;
    if (quant_head && !qs) {
        fprintf(stderr, "bench_serve: \"+head\" follows a scheme (w8a8, w4a16, fp8): %s\n", spec);
        return 2;
    }
    if (!strcmp(path, "smollm2-shape")) {
        model_config c = em_config(576, 30, 9, 3, 1536, 49152);
        c.head_dim = 64, c.max_pos = 8192, c.rope_theta = 100000;
        if (em_random_model(&m, &c, 1)) die("random model");
    } else if (model_load(&m, path)) {
        die(path);
    }
    if (qs) {
        qt_scheme sc = *qs;
        sc.head = quant_head || !m.cfg.tie_embeddings;
        model_quant *q = qt_quantize_model(&m.cfg, &m.w, &sc);
        if (!q || model_attach_quant(&m, q)) die("quantize");
    }
    engine_opts o = engine_opts_default();
    o.prefix_cache = 0;
    o.kv_f16 = !strcmp(kvd, "f16");
    engine *e;
    if (engine_create(&e, &m, &o)) die("engine");
    int *tok = malloc(sizeof(int) * (size_t)L * 2);
    for (int i = 0; i < 2 * L; i++) tok[i] = (int)((i * 2654435761u) % (unsigned)m.cfg.vocab);
    double tf, best = 1e30, dec = 1e30;
    run_one(e, tok, 16, 1, &tf); /* warm-up */
    for (int r = 0; r < 3; r++) {
        run_one(e, tok, L, 1, &tf);
        best = tf < best ? tf : best;
    }
    for (int r = 0; r < 2; r++) {
        double all = run_one(e, tok, L, steps + 1, &tf);
        dec = (all - tf) / steps < dec ? (all - tf) / steps : dec;
    }
    /* where a decode step's time goes: one more run with the profile's clock reads on */
    double prof_ms[ENGINE_TP_N], prof_dec;
    int64_t prof_steps;
    {
        engine_stats_reset(e);
        engine_set_profile(e, 1);
        const double all = run_one(e, tok, L, steps + 1, &tf);
        engine_set_profile(e, 0);
        const engine_stats *st = engine_get_stats(e);
        prof_steps = st->team_steps;
        prof_dec = (all - tf) / steps;
        for (int k = 0; k < ENGINE_TP_N; k++)
            prof_ms[k] = k >= ENGINE_TP_HEAD ? 1e3 * st->team_s[k] / (steps + 1)
                         : prof_steps ? 1e3 * st->team_s[k] / (double)prof_steps / threads : 0;
    }
    engine_free(e);
    /* the plain KV-cache path (model_extend / model_decode) on the same model: the engine's overhead */
    double plain_pre = 1e30, plain_dec;
    {
        kv_cache kv;
        float *lg = malloc(sizeof(float) * (size_t)m.cfg.vocab);
        if (!lg || kv_cache_init(&kv, &m.cfg, L + steps + 1)) die("kv cache");
        for (int r = 0; r < 3; r++) {
            kv_cache_truncate(&kv, 0);
            double t0 = time_monotonic();
            if (model_extend(&m, &kv, tok, L, NULL, 1, lg)) die("model_extend");
            plain_pre = time_monotonic() - t0 < plain_pre ? time_monotonic() - t0 : plain_pre;
        }
        double t0 = time_monotonic();
        for (int i = 0; i < steps; i++)
            if (model_decode(&m, &kv, tok[i % (2 * L)], lg)) die("model_decode"); /* tok holds 2L ids */
        plain_dec = (time_monotonic() - t0) / steps;
        kv_cache_free(&kv);
        free(lg);
    }
    /* cold vs hot: candidate 2 shares 90% of candidate 1's tokens */
    o.prefix_cache = 1;
    if (engine_create(&e, &m, &o)) die("engine");
    const int shared = L * 9 / 10;
    memcpy(tok + L, tok, sizeof(int) * (size_t)shared);
    double cold = 1e30, hot = 1e30;
    for (int r = 0; r < 3; r++) {
        engine_cache_clear(e);
        double c1, h1;
        run_one(e, tok, L, 1, &c1);
        run_one(e, tok + L, L, 1, &h1);
        cold = c1 < cold ? c1 : cold, hot = h1 < hot ? h1 : hot;
    }
    /* TTFT under Poisson load: members with 8 candidates sharing 90% */
    engine_cache_clear(e);
    workload w;
    synth_spec sp = {.context_tokens = L, .output_tokens = 1, .shared = 0.9};
    if (workload_synthetic(&w, 1, 8, members, &sp, m.cfg.vocab, 1)) die("workload");
    workload_unit_arrivals(w.unit, w.n_groups, ARRIVAL_POISSON, 1);
    arrival_spec a = {.kind = ARRIVAL_POISSON};
    run_result res;
    run_summary s;
    if (run_engine(e, &w, &a, rate, NULL, &res)) die("run");
    run_summarize(&res, &s);
    printf("smelt serving engine, %s (%zu parameters), %d threads, %s KV cache, %s\n", spec, model_n_params(&m.cfg), threads,
           o.kv_f16 ? "fp16" : "fp32",
           !model_is_quantized(&m) ? "fp32"
           : quant_head || !m.cfg.tie_embeddings ? "quantized linears and LM head"
                                                  : "quantized linears (tied LM head fp32)");
    printf("%-52s %12s\n", "measure", "smelt");
    printf("%-52s %12.1f\n", "prefill tokens/s (one prompt, empty cache)", L / best);
    printf("%-52s %12.1f\n", "decode tokens/s (one sequence)", 1 / dec);
    printf("%-52s %12.1f\n", "plain KV-cache path: prefill tokens/s", L / plain_pre);
    printf("%-52s %12.1f\n", "plain KV-cache path: decode tokens/s", 1 / plain_dec);
    printf("%-52s %12.2f\n", "prefill cold ms (one candidate)", 1e3 * cold);
    printf("%-52s %12.2f\n", "prefill hot ms (next candidate, 90% shared)", 1e3 * hot);
    printf("%-52s %12.2f\n", "hot speedup (x)", cold / hot);
    printf("%-52s %12.2f\n", "TTFT p50 ms (8 candidates/member, Poisson)", s.ttft_p50);
    printf("%-52s %12.2f\n", "TTFT p99 ms", s.ttft_p99);
    printf("(prompt %d tokens, %d decode steps; load: %d members at %g/s, prefix hit ratio %.2f)\n", L, steps, members,
           rate, s.hit_ratio);
    printf("decode step profile, ms per token (team kinds: per thread, the mean over %d; %lld team steps; profiled "
           "run %.3f ms per token):\n", threads, (long long)prof_steps, 1e3 * prof_dec);
    double prof_sum = 0;
    for (int k = 0; k < ENGINE_TP_N; k++) {
        printf("  %-40s %8.3f\n", engine_tp_names[k], prof_ms[k]);
        prof_sum += prof_ms[k];
    }
    printf("  %-40s %8.3f\n", "sum (the rest: scheduling, events)", prof_sum);
    run_result_free(&res);
    workload_free(&w);
    engine_free(e);
    free(tok);
    model_free(&m);
    return 0;
}
