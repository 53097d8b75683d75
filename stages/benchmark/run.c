/* run.c: the benchmark's clocked runs, summaries, cost model and capacity search (see run.h). */
#include "stages/benchmark/run.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "common/log.h"

typedef struct {
    run_result *r;
    int *first, n_first, *fin, n_fin; /* requests whose first token / last token came this step */
} run_ctx;

static int on_event(void *ctx, const engine_event *ev) {
    run_ctx *c = ctx;
    if (ev->kind != ENGINE_EV_TOKEN) return 0;
    const int i = (int)(intptr_t)ev->user;
    req_trace *t = &c->r->tr[i];
    if (ev->n_generated == 1) {
        c->first[c->n_first++] = i;
        t->cached_tokens = ev->cached_tokens;
    }
    t->output_tokens = ev->n_generated;
    if (ev->finish) c->fin[c->n_fin++] = i;
    return 0;
}

static int add_step(run_result *r, const engine_step_info *in, double secs) {
    if (r->n_steps == r->cap_steps) {
        int cap = r->cap_steps ? 2 * r->cap_steps : 256;
        step_rec *s = xrealloc(r->steps, sizeof *s * (size_t)cap);
        if (!s) return -1;
        r->steps = s, r->cap_steps = cap;
    }
    r->steps[r->n_steps++] = (step_rec){.n_seqs = in->n_seqs, .prefill_tokens = in->prefill_tokens,
                                        .decode_tokens = in->decode_tokens, .attn_pairs = in->attn_pairs,
                                        .seconds = secs};
    return 0;
}

void run_result_free(run_result *r) {
    free(r->tr);
    free(r->steps);
    memset(r, 0, sizeof *r);
}

int run_engine(engine *e, const workload *w, const arrival_spec *a, double rate, const step_cost *cost,
               run_result *res) {
    memset(res, 0, sizeof *res);
    const int n = w->n_groups * w->k;
    res->n = n;
    res->tr = xcalloc((size_t)n, sizeof *res->tr);
    run_ctx c = {.r = res, .first = xmalloc(sizeof(int) * (size_t)n), .fin = xmalloc(sizeof(int) * (size_t)n)};
    int rc = -1;
    if (!res->tr || !c.first || !c.fin) goto out;
    for (int i = 0; i < n; i++) {
        req_trace *t = &res->tr[i];
        t->group = i / w->k, t->cand = i % w->k;
        t->arrival = workload_arrival(w, a, rate, t->group);
        t->prompt_tokens = w->prompts[i].n_tokens;
        t->first = t->finish = -1;
    }
    double clock = 0;
    int next = 0, done = 0;
    while (done < n) {
        if (next < w->n_groups && engine_n_waiting(e) + engine_n_running(e) == 0 && res->tr[next * w->k].arrival > clock)
            clock = res->tr[next * w->k].arrival; /* idle until the next member arrives */
        for (; next < w->n_groups && res->tr[next * w->k].arrival <= clock; next++)
            for (int j = 0; j < w->k; j++) {
                const int i = next * w->k + j;
                const bw_prompt *p = &w->prompts[i];
                engine_request q = {.prompt = p->tokens, .n_prompt = p->n_tokens, .max_new_tokens = p->output,
                                    .ignore_eos = 1, .temperature = 0, .user = (void *)(intptr_t)i};
                if (engine_submit(e, &q, NULL)) goto out;
            }
        engine_step_info info;
        c.n_first = c.n_fin = 0;
        if (engine_step(e, on_event, &c, &info)) goto out;
        if (info.n_seqs == 0) {
            if (next >= w->n_groups || engine_n_waiting(e) + engine_n_running(e) > 0) { /* stuck: a bug */
                err_set(ERR_INTERNAL, "benchmark: %d of %d requests never finished", n - done, n);
                goto out;
            }
            continue;
        }
        const double dt = cost ? step_cost_predict(cost, info.prefill_tokens + info.decode_tokens, info.attn_pairs,
                                                   info.n_seqs)
                               : info.seconds;
        if (add_step(res, &info, dt)) goto out;
        clock += dt;
        for (int i = 0; i < c.n_first; i++) res->tr[c.first[i]].first = clock;
        for (int i = 0; i < c.n_fin; i++) res->tr[c.fin[i]].finish = clock;
        done += c.n_fin;
    }
    rc = 0;
out:
    free(c.first);
    free(c.fin);
    return rc;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

double percentile(double *v, int n, double q) {
    if (n <= 0) return NAN;
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    double pos = q * (n - 1);
    int lo = (int)floor(pos), hi = lo + 1 < n ? lo + 1 : lo;
    return v[lo] + (v[hi] - v[lo]) * (pos - lo);
}

void run_summarize(const run_result *r, run_summary *s) {
    memset(s, 0, sizeof *s);
    double *ttft = malloc(sizeof(double) * (size_t)(r->n + 1)), *tpot = malloc(sizeof(double) * (size_t)(r->n + 1)),
           *e2e = malloc(sizeof(double) * (size_t)(r->n + 1));
    if (!ttft || !tpot || !e2e) {
        free(ttft), free(tpot), free(e2e);
        s->n_err = r->n;
        return;
    }
    int nt = 0, np = 0;
    double t0 = INFINITY, t1 = -INFINITY, in = 0, out = 0, cached = 0;
    for (int i = 0; i < r->n; i++) {
        const req_trace *t = &r->tr[i];
        if (t->error || t->first < 0 || t->finish < 0) {
            s->n_err++;
            continue;
        }
        s->n_ok++;
        ttft[nt] = 1e3 * (t->first - t->arrival);
        e2e[nt++] = 1e3 * (t->finish - t->arrival);
        if (t->output_tokens > 1) tpot[np++] = 1e3 * (t->finish - t->first) / (t->output_tokens - 1);
        t0 = fmin(t0, t->arrival), t1 = fmax(t1, t->finish);
        in += t->prompt_tokens, out += t->output_tokens, cached += t->cached_tokens;
    }
    s->ttft_p50 = percentile(ttft, nt, 0.5), s->ttft_p99 = percentile(ttft, nt, 0.99);
    s->e2e_p50 = percentile(e2e, nt, 0.5), s->e2e_p99 = percentile(e2e, nt, 0.99);
    s->has_tpot = np > 0;
    if (np) s->tpot_p50 = percentile(tpot, np, 0.5), s->tpot_p99 = percentile(tpot, np, 0.99);
    s->duration_s = nt ? t1 - t0 : 0;
    if (s->duration_s > 0) s->input_tps = in / s->duration_s, s->output_tps = out / s->duration_s, s->rps = nt / s->duration_s;
    s->hit_ratio = in > 0 ? cached / in : 0;
    free(ttft), free(tpot), free(e2e);
}

double step_cost_predict(const step_cost *c, int tokens, double attn_pairs, int n_seqs) {
    return c->c[0] + c->c[1] * tokens + c->c[2] * attn_pairs + c->c[3] * n_seqs;
}

/* Solves the normal equations over the features in `use` and the rows in `keep` (Gaussian
 * elimination with partial pivoting, a tiny ridge for features that never vary). */
static void solve_ls(double *coef, const double (*X)[4], const double *y, const unsigned char *keep, int n,
                     const int *use) {
    double A[4][5] = {{0}};
    int idx[4], m = 0;
    for (int j = 0; j < 4; j++) {
        coef[j] = 0;
        if (use[j]) idx[m++] = j;
    }
    for (int i = 0; i < n; i++)
        for (int a = 0; a < m && keep[i]; a++) {
            for (int b = 0; b < m; b++) A[a][b] += X[i][idx[a]] * X[i][idx[b]];
            A[a][m] += X[i][idx[a]] * y[i];
        }
    for (int a = 0; a < m; a++) A[a][a] += 1e-12 * (A[a][a] + 1);
    for (int col = 0; col < m; col++) {
        int piv = col;
        for (int r = col + 1; r < m; r++) piv = fabs(A[r][col]) > fabs(A[piv][col]) ? r : piv;
        for (int k = 0; k <= m; k++) {
            double t = A[col][k];
            A[col][k] = A[piv][k], A[piv][k] = t;
        }
        for (int r = 0; r < m; r++) {
            if (r == col || A[col][col] == 0) continue;
            double f = A[r][col] / A[col][col];
            for (int k = col; k <= m; k++) A[r][k] -= f * A[col][k];
        }
    }
    for (int a = 0; a < m; a++) coef[idx[a]] = A[a][a] != 0 ? A[a][m] / A[a][a] : 0;
}

/* Non-negative least squares over the rows in keep, by elimination: drop the most negative
 * coefficient and refit. */
static void fit_nonneg(step_cost *c, const double (*X)[4], const double *y, const unsigned char *keep, int n) {
    int use[4] = {1, 1, 1, 1};
    for (int round = 0; round < 4; round++) {
        solve_ls(c->c, X, y, keep, n, use);
        int worst = -1;
        for (int j = 0; j < 4; j++)
            if (use[j] && c->c[j] < 0 && (worst < 0 || c->c[j] < c->c[worst])) worst = j;
        if (worst < 0) break;
        use[worst] = 0;
    }
}

static void residuals(double *r, const step_cost *c, const double (*X)[4], const double *y, int n) {
    for (int i = 0; i < n; i++) r[i] = y[i] - step_cost_predict(c, (int)X[i][1], X[i][2], (int)X[i][3]);
}

/* Least trimmed squares, then one reweighting (Rousseeuw's LTS with concentration steps): from the
 * plain fit, fit the h = n/2 + 3 steps of smallest |residual| and repeat until that set stops
 * changing; the robust scale is 1.4826 x the median |residual| under that fit; every step whose
 * residual is above 3 scales (and 1 us) is left out as stalled and the rest fitted once more. */
int step_cost_fit(step_cost *c, const step_rec *s, int n) {
    memset(c, 0, sizeof *c);
    if (n < 1) return err_set(ERR_INPUT, "no measured step to fit a cost model to");
    double (*X)[4] = malloc(sizeof *X * (size_t)n), *y = malloc(sizeof(double) * (size_t)n),
           *r = malloc(sizeof(double) * (size_t)n), *sorted = malloc(sizeof(double) * (size_t)n);
    unsigned char *keep = malloc((size_t)n);
    if (!X || !y || !r || !sorted || !keep) {
        free(X), free(y), free(r), free(sorted), free(keep);
        return err_set(ERR_NOMEM, "cost model of %d steps", n);
    }
    for (int i = 0; i < n; i++) {
        X[i][0] = 1, X[i][1] = s[i].prefill_tokens + s[i].decode_tokens, X[i][2] = s[i].attn_pairs, X[i][3] = s[i].n_seqs;
        y[i] = s[i].seconds;
        keep[i] = 1;
    }
    const double (*Xc)[4] = (const double (*)[4])X;
    fit_nonneg(c, Xc, y, keep, n);
    if (n >= 12) {
        const int h = n / 2 + 3;
        for (int round = 0; round < 20; round++) { /* concentration steps: the trimmed sum never grows */
            residuals(r, c, Xc, y, n);
            for (int i = 0; i < n; i++) sorted[i] = fabs(r[i]);
            qsort(sorted, (size_t)n, sizeof *sorted, cmp_double);
            const double kth = sorted[h - 1]; /* the h-th smallest |r| */
            int changed = 0, taken = 0;
            for (int i = 0; i < n; i++) {
                const unsigned char k = fabs(r[i]) <= kth && taken < h;
                taken += k;
                changed |= k != keep[i];
                keep[i] = k;
            }
            if (!changed && round) break;
            fit_nonneg(c, Xc, y, keep, n);
        }
        residuals(r, c, Xc, y, n);
        for (int i = 0; i < n; i++) sorted[i] = fabs(r[i]);
        const double cut = fmax(3 * 1.4826 * percentile(sorted, n, 0.5), 1e-6);
        for (int i = 0; i < n; i++) keep[i] = r[i] <= cut;
        fit_nonneg(c, Xc, y, keep, n);
    }
    double mean = 0, ss_tot = 0, ss_res = 0;
    for (int i = 0; i < n; i++) c->n += keep[i];
    for (int i = 0; i < n; i++) mean += keep[i] ? y[i] / c->n : 0;
    residuals(r, c, Xc, y, n);
    for (int i = 0; i < n; i++)
        if (keep[i]) ss_tot += (y[i] - mean) * (y[i] - mean), ss_res += r[i] * r[i];
    c->r2 = ss_tot > 0 ? 1 - ss_res / ss_tot : 1;
    c->outliers = n - c->n;
    free(X), free(y), free(r), free(sorted), free(keep);
    return 0;
}

static int trial(engine *dry, const workload *w, const arrival_spec *a, double rate, const step_cost *cost,
                 double *p99) {
    run_result r;
    engine_cache_clear(dry);
    int rc = run_engine(dry, w, a, rate, cost, &r);
    if (!rc) {
        run_summary s;
        run_summarize(&r, &s);
        *p99 = s.ttft_p99;
    }
    run_result_free(&r);
    return rc;
}

int capacity_search(engine *dry, const workload *w, const arrival_spec *a, double start_rate, const step_cost *cost,
                    double slo_ms, int iters, double *rate, double *p99_ms, cap_trial *trials, int max_trials,
                    int *n_trials) {
    *n_trials = 0;
    *rate = 0, *p99_ms = NAN;
    double lo = 0, hi = 0, p_lo = NAN, r = start_rate, p;
#define TRY(x)                                                                                  \
    do {                                                                                        \
        if (trial(dry, w, a, (x), cost, &p)) return -1;                                         \
        if (*n_trials < max_trials) trials[(*n_trials)++] = (cap_trial){(x), p, p <= slo_ms};   \
    } while (0)
    TRY(r);
    if (p <= slo_ms) {
        lo = r, p_lo = p;
        for (int i = 0; i < 30 && !hi; i++) {
            r *= 2;
            TRY(r);
            if (p <= slo_ms) lo = r, p_lo = p;
            else hi = r;
        }
        if (!hi) { /* still met at 2^30 x the start: the workload cannot load the server */
            log_warn("capacity: the SLO is met even when every member arrives at once (p99 %.3g ms): the workload is too "
                     "short to load the server; raise workload.requests or duration_s", p_lo);
            *rate = lo, *p99_ms = p_lo;
            return 0;
        }
    } else {
        hi = r;
        for (int i = 0; i < 10 && !lo; i++) {
            r /= 2;
            TRY(r);
            if (p <= slo_ms) lo = r, p_lo = p;
            else hi = r;
        }
        if (!lo) return 0; /* unreachable SLO */
    }
    for (int i = 0; i < iters; i++) {
        const double mid = sqrt(lo * hi);
        TRY(mid);
        if (p <= slo_ms) lo = mid, p_lo = p;
        else hi = mid;
    }
#undef TRY
    *rate = lo, *p99_ms = p_lo;
    return 0;
}
