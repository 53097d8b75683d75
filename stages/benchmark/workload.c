/* workload.c: prompts and arrival times of the benchmark stage (see workload.h). */
#include "stages/benchmark/workload.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "common/log.h"
#include "stages/data/rng.h"

void workload_free(workload *w) {
    free(w->prompts);
    free(w->unit);
    free(w->pool);
    memset(w, 0, sizeof *w);
}

void workload_unit_arrivals(double *unit, int n, arrival_kind kind, uint64_t seed) {
    drng r;
    drng_seed(&r, seed ^ 0xA5A5F00Dull);
    double t = 0;
    for (int g = 0; g < n; g++) {
        t += kind == ARRIVAL_FIXED ? 1.0 : -log(1.0 - drng_uniform(&r));
        unit[g] = t;
    }
}

/* Unit-rate time u (expected arrivals) to seconds. Bursty: each period holds rate * period_s
 * expected arrivals, all inside its first period_s / peak_to_mean seconds. */
static double unit_to_time(double u, const arrival_spec *a, double rate) {
    if (a->kind != ARRIVAL_BURSTY || a->peak_to_mean <= 1) return u / rate;
    const double per = rate * a->period_s, k = floor(u / per);
    return k * a->period_s + (u - k * per) / (rate * a->peak_to_mean);
}

double workload_arrival(const workload *w, const arrival_spec *a, double rate, int g) {
    return unit_to_time(w->unit[g], a, rate);
}

int workload_count_within(const double *unit, int n, const arrival_spec *a, double rate, double duration_s) {
    int c = 0;
    while (c < n && unit_to_time(unit[c], a, rate) < duration_s) c++;
    return c;
}

static int alloc_prompts(workload *w, int ranking, int k, int n_groups, size_t n_tokens) {
    memset(w, 0, sizeof *w);
    w->ranking = ranking, w->k = k, w->n_groups = n_groups;
    w->prompts = xcalloc((size_t)n_groups * k, sizeof *w->prompts);
    w->unit = xmalloc(sizeof(double) * (size_t)n_groups);
    w->pool = xmalloc(sizeof(int) * (n_tokens ? n_tokens : 1));
    if (!w->prompts || !w->unit || !w->pool) {
        workload_free(w);
        return -1;
    }
    return 0;
}

static void account(workload *w) {
    for (int i = 0; i < w->n_groups * w->k; i++) {
        const bw_prompt *p = &w->prompts[i];
        if (p->n_tokens + p->output > w->max_positions) w->max_positions = p->n_tokens + p->output;
        w->prompt_tokens += p->n_tokens;
        w->output_tokens += p->output;
    }
}

int workload_synthetic(workload *w, int ranking, int k, int n_groups, const synth_spec *sp, int vocab, uint64_t seed) {
    if (!ranking) k = 1;
    const int L = sp->context_tokens, out = ranking ? 1 : sp->output_tokens;
    if (L < 1 || out < 1 || vocab < 1)
        return err_set(ERR_INPUT, "synthetic prompts need context_tokens >= 1 and output_tokens >= 1 (got %d, %d)", L,
                       out);
    int shared = ranking && k > 1 ? (int)lround(sp->shared * L) : 0;
    if (shared > L - 1) shared = L - 1;
    if (alloc_prompts(w, ranking, k, n_groups, (size_t)n_groups * k * L)) return -1;
    drng r;
    drng_seed(&r, seed);
    int *t = w->pool;
    for (int g = 0; g < n_groups; g++)
        for (int c = 0; c < k; c++) {
            bw_prompt *p = &w->prompts[g * k + c];
            p->tokens = t, p->n_tokens = L, p->output = out;
            for (int i = 0; i < L; i++) t[i] = c > 0 && i < shared ? w->prompts[g * k].tokens[i] : (int)drng_below(&r, vocab);
            t += L;
        }
    account(w);
    return 0;
}

/* The prompt of example i: tokens up to its answer (its first target). */
static int example_prompt(const ds_split *s, int64_t i, int *len, int *out) {
    const ds_example *e = &s->ex[i];
    *len = (int)e->answer_pos;
    *out = (int)e->n_tokens - (int)e->answer_pos;
    return *len >= 1 && *out >= 1;
}

int workload_from_split(workload *w, int ranking, int k, int n_groups, const ds_split *s, uint64_t seed) {
    if (!ranking) k = 1;
    /* usable groups: their first k examples all have a prompt and a target */
    int64_t n_g = 0, *starts = xmalloc(sizeof(int64_t) * (size_t)(s->n_groups + 1));
    if (!starts) return -1;
    for (int64_t g0 = 0; g0 < s->n_examples; g0 = ds_group_end(s, g0)) {
        int64_t g1 = ds_group_end(s, g0);
        int ok = g1 - g0 >= (ranking ? k : 1), len, out;
        for (int64_t i = g0; ok && i < g0 + k; i++) ok = example_prompt(s, i, &len, &out);
        if (ok) starts[n_g++] = g0;
    }
    if (n_g == 0) {
        free(starts);
        return err_set(ERR_INPUT, "split %s has no member with %d candidate%s that have a prompt and an answer; lower "
                       "workload.candidates or use another split", s->name, k, k > 1 ? "s" : "");
    }
    if (n_g < n_groups)
        log_info("workload: split %s has %lld usable members for %d requests; members repeat (and hit the prefix cache)",
                 s->name, (long long)n_g, n_groups);
    drng r;
    drng_seed(&r, seed);
    for (int64_t i = n_g - 1; i > 0; i--) { /* a seeded order of the members */
        int64_t j = (int64_t)drng_below(&r, (uint64_t)i + 1), t = starts[i];
        starts[i] = starts[j], starts[j] = t;
    }
    size_t n_tok = 0;
    for (int g = 0; g < n_groups; g++)
        for (int c = 0; c < k; c++) n_tok += s->ex[starts[g % n_g] + c].answer_pos;
    if (alloc_prompts(w, ranking, k, n_groups, n_tok)) {
        free(starts);
        return -1;
    }
    int *t = w->pool;
    for (int g = 0; g < n_groups; g++)
        for (int c = 0; c < k; c++) {
            int64_t i = starts[g % n_g] + c;
            bw_prompt *p = &w->prompts[g * k + c];
            int len, out;
            example_prompt(s, i, &len, &out);
            const int32_t *src = ds_example_tokens(s, i);
            for (int j = 0; j < len; j++) t[j] = src[j];
            p->tokens = t, p->n_tokens = len, p->output = ranking ? 1 : out;
            t += len;
        }
    free(starts);
    account(w);
    return 0;
}
