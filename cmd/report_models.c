/* report_models.c: the models of a run, found through the lineage: every stage output (or path)
 * that an evaluate or benchmark stage measured, described by its producing stage (train sft or
 * distill, prune method and amounts, quantize method and scheme), its parameter count (the
 * `params` metric of the stage, or of the model a quantize stage read, or the artifact's
 * config.json), its weight bytes, its primary evaluation and benchmark, and whether it is on the
 * Pareto front of AUC against parameters and against TTFT. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd/report_data.h"
#include "common/error.h"
#include "model/config.h"
#include "model/hfconfig.h"
#include "model/model.h"

static int is_measure(const rstage *x) { return !strcmp(x->kind, "evaluate") || !strcmp(x->kind, "benchmark"); }

const char *report_measured_label(const rrun *r, const rstage *m, char *buf, size_t n) {
    (void)r;
    const rinput *in = rstage_input(m, "model");
    const char *path = rstage_param(m, "model");
    if (in) snprintf(buf, n, "%s", in->from_stage);
    else if (path) {
        size_t len = strlen(path);
        while (len > 1 && path[len - 1] == '/') len--; /* "models/x/" names x */
        const char *b = path + len;
        while (b > path && b[-1] != '/') b--;
        snprintf(buf, n, "%.*s", (int)(path + len - b), b);
    } else if (rstage_param(m, "target")) snprintf(buf, n, "%s", rstage_param(m, "target"));
    else snprintf(buf, n, "-");
    return buf;
}

static double param_num(const rstage *x, const char *key) {
    const char *v = rstage_param(x, key);
    char *end;
    double d = v ? strtod(v, &end) : NAN;
    return v && end != v && !*end ? d : NAN;
}

static int param_is(const rstage *x, const char *key, const char *value) {
    const char *v = rstage_param(x, key);
    return v && !strcmp(v, value);
}

/* "train distill fkl", "prune osscar mlp-88 kv-1", "quantize gptq w4 g32", "quantize fp8 w8a8". */
void report_describe(char *buf, size_t n, const rstage *x, int with_kind) {
    if (!x) {
        snprintf(buf, n, "path");
        return;
    }
    buf[0] = 0;
    size_t k = with_kind ? (size_t)snprintf(buf, n, "%s", x->kind) : 0;
#define ADD(...) (k < n ? k += (size_t)snprintf(buf + k, n - k, __VA_ARGS__) : 0)
    if (!strcmp(x->kind, "train")) {
        if (rstage_input(x, "teacher")) {
            ADD(" distill");
            static const char *const terms[] = {"fkl", "rkl", "jsd"};
            for (int i = 0; i < 3; i++) {
                char key[32];
                snprintf(key, sizeof key, "loss.%s", terms[i]);
                if (param_num(x, key) > 0) ADD(" %s", terms[i]);
            }
        } else {
            ADD(" sft");
        }
        if (param_num(x, "on_policy.fraction") > 0) ADD(" on-policy");
    } else if (!strcmp(x->kind, "prune")) {
        const char *m = rstage_param(x, "method");
        if (m) ADD(" %s", m);
        double mlp = param_num(x, "mlp.remove"), keep = param_num(x, "mlp.keep_ratio"),
               kv = param_num(x, "attention.remove_kv_groups");
        if (mlp > 0) ADD(" mlp-%.0f", mlp);
        else if (keep >= 0 && keep < 1) ADD(" mlp x%.2g", keep);
        if (kv > 0) ADD(" kv-%.0f", kv);
    } else if (!strcmp(x->kind, "quantize")) {
        const char *m = rstage_param(x, "method"), *act = rstage_param(x, "activations");
        int act8 = act && strcmp(act, "none") != 0;
        if (m) ADD(" %s", m);
        if (m && !strcmp(m, "fp8")) ADD(" w8a%s", act8 ? "8" : "16");
        else {
            double bits = param_num(x, "bits"), g = param_num(x, "group_size");
            if (!isnan(bits)) ADD(" w%.0f%s", bits, act8 ? "a8" : "");
            if (g > 0) ADD(" g%.0f", g);
        }
    }
#undef ADD
    if (!with_kind && buf[0] == ' ') memmove(buf, buf + 1, strlen(buf));
}

/* Parameters of a model: the `params` metric of its stage, of the model a quantize stage read
 * (quantization keeps the count), or the count its config.json implies. NAN when none says. */
static double model_params(const rrun *r, const rstage *x, store *s) {
    const rstage *cur = x;
    for (int depth = 0; cur && depth < 64; depth++) {
        double p = rstage_metric(cur, "params");
        if (!isnan(p)) return p;
        const rinput *in = strcmp(cur->kind, "quantize") ? NULL : rstage_input(cur, "model");
        if (!in) break;
        cur = rrun_stage(r, in->from_stage);
    }
    const char *digest = x ? rstage_main_digest(x) : NULL;
    char *path = NULL;
    model_config *cfg = xcalloc(1, sizeof *cfg);
    double p = NAN;
    if (digest && cfg && !store_artifact_file(s, digest, "config.json", &path) && !hfconfig_load_quantized(cfg, path))
        p = (double)model_n_params(cfg);
    err_clear(); /* not a model folder (or not one smelt reads): the count stays unknown */
    free(path);
    free(cfg);
    return p;
}

/* The evaluate stage preferred for a model: the first on split test, else the first. */
static int better_eval(const rstage *cand, const rstage *cur) {
    if (!cur) return 1;
    int ct = param_is(cand, "split", "test"), ut = param_is(cur, "split", "test");
    return ct && !ut;
}

static rmodel *find_model(rmodel *ms, int n, const char *label) {
    for (int i = 0; i < n; i++)
        if (!strcmp(ms[i].label, label)) return &ms[i];
    return NULL;
}

void report_pareto(int *front, const double *x, const double *y, int n) {
    for (int i = 0; i < n; i++) {
        front[i] = !isnan(x[i]) && !isnan(y[i]);
        for (int j = 0; j < n && front[i]; j++) {
            if (j == i || isnan(x[j]) || isnan(y[j])) continue;
            /* j dominates i: no worse in both, better in one (equal points both stay) */
            if (x[j] <= x[i] && y[j] >= y[i] && (x[j] < x[i] || y[j] > y[i])) front[i] = 0;
        }
    }
}

double report_pareto_x(const rmodel *m, int which) {
    switch (which) {
    case PARETO_PARAMS: return m->params;
    case PARETO_BYTES: return m->bytes;
    default: return m->bench ? rstage_metric(m->bench, "ttft_ms_p50") : NAN;
    }
}

int report_models(rmodel **out, int *n_out, const rrun *r, store *s) {
    *out = NULL, *n_out = 0;
    rmodel *ms = xcalloc((size_t)r->n_st + 1, sizeof *ms);
    if (!ms) return -1;
    int n = 0;
    /* producers in stage order first, then paths in the order their measures come */
    for (int pass = 0; pass < 2; pass++)
        for (int i = 0; i < r->n_st; i++) {
            const rstage *m = &r->st[i];
            if (!is_measure(m)) continue;
            const rinput *in = rstage_input(m, "model");
            if (pass == 0 && !in) continue;
            if (pass == 1 && (in || !rstage_param(m, "model"))) continue;
            char label[STAGE_NAME_MAX];
            report_measured_label(r, m, label, sizeof label);
            if (find_model(ms, n, label)) continue;
            rmodel *x = &ms[n++];
            snprintf(x->label, sizeof x->label, "%s", label);
            x->src = in ? rrun_stage(r, in->from_stage) : NULL;
        }
    if (n > 1) { /* producers in the run's order */
        for (int i = 1; i < n; i++)
            for (int j = i; j > 0 && ms[j].src && ms[j - 1].src && ms[j].src->ord < ms[j - 1].src->ord; j--) {
                rmodel t = ms[j];
                ms[j] = ms[j - 1];
                ms[j - 1] = t;
            }
    }
    for (int i = 0; i < r->n_st; i++) {
        const rstage *m = &r->st[i];
        if (!is_measure(m)) continue;
        char label[STAGE_NAME_MAX];
        rmodel *x = find_model(ms, n, report_measured_label(r, m, label, sizeof label));
        if (!x) continue;
        if (!strcmp(m->kind, "evaluate") && better_eval(m, x->eval)) x->eval = m;
        if (!strcmp(m->kind, "benchmark") && !x->bench) x->bench = m;
    }
    for (int i = 0; i < n; i++) {
        rmodel *x = &ms[i];
        report_describe(x->kind, sizeof x->kind, x->src, 1);
        x->params = model_params(r, x->src, s);
        double b = x->src ? rstage_metric(x->src, "bytes") : NAN;
        x->bytes_measured = !isnan(b);
        x->bytes = x->bytes_measured ? b : 4 * x->params;
        const rinput *ref = x->eval ? rstage_input(x->eval, "reference") : NULL;
        const rstage *re = ref ? rrun_stage(r, ref->from_stage) : NULL;
        if (re) report_measured_label(r, re, x->ref, sizeof x->ref);
    }
    double *xs = xcalloc((size_t)n + 1, sizeof *xs), *ys = xcalloc((size_t)n + 1, sizeof *ys);
    int *fr = xcalloc((size_t)n + 1, sizeof *fr);
    if (!xs || !ys || !fr) {
        free(xs), free(ys), free(fr), free(ms);
        return -1;
    }
    for (int i = 0; i < n; i++) ys[i] = ms[i].eval ? rstage_metric(ms[i].eval, "auc") : NAN;
    for (int w = 0; w < 3; w++) {
        for (int i = 0; i < n; i++) xs[i] = report_pareto_x(&ms[i], w);
        report_pareto(fr, xs, ys, n);
        for (int i = 0; i < n; i++) ms[i].pareto[w] = fr[i];
    }
    free(xs), free(ys), free(fr);
    *out = ms, *n_out = n;
    return 0;
}
