/* report_plots.c: the figures of the HTML report (report_plots.h). Series come from the metrics
 * view (a step is a training step or a layer index); latency distributions from the benchmark's
 * trace.csv (one row per request), or from its p50/p99 metrics when the trace is absent. */
#include "cmd/report_plots.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd/svg.h"
#include "common/error.h"
#include "common/fsutil.h"
#include "common/strbuf.h"

#define PLOT_W 440
#define PLOT_H 300
#define CDF_POINTS 400
#define TRACE_MAX_BYTES (512u << 20)
#define TRACE_MAX_COLS 32

/* The height a plot needs for a legend of n entries. */
static int legend_height(int n) { return 80 + 16 * n > PLOT_H ? 80 + 16 * n : PLOT_H; }

static void figure_begin(doc *d) { doc_printf(d, "<figure>\n"); }

static void figure_end(doc *d, const char *caption) {
    doc_printf(d, "<figcaption>");
    doc_text(d, caption);
    doc_printf(d, "</figcaption></figure>\n");
}

/* A series of a metric read into doubles (x: steps). Frees nothing on failure beyond itself. */
typedef struct {
    double *x, *y;
    int n;
} series;

static int series_read(series *sr, store *s, const rrun *r, const char *stage, const char *key) {
    int64_t *steps;
    memset(sr, 0, sizeof *sr);
    if (rstage_series(s, r->id, stage, key, &steps, &sr->y, &sr->n)) return -1;
    sr->x = xcalloc((size_t)sr->n + 1, sizeof *sr->x);
    if (!sr->x) {
        free(steps), free(sr->y);
        return -1;
    }
    for (int i = 0; i < sr->n; i++) sr->x[i] = (double)steps[i];
    free(steps);
    return 0;
}

static void series_free(series *sr) { free(sr->x), free(sr->y), memset(sr, 0, sizeof *sr); }

/* ---- AUC against parameters and TTFT ---- */

static int scatter_pareto(doc *d, const char *title, const char *xlabel, const char *fewer, const rmodel *ms, int n,
                          int which) {
    double *x = xcalloc((size_t)n + 1, sizeof *x), *y = xcalloc((size_t)n + 1, sizeof *y);
    double *fx = xcalloc((size_t)n + 1, sizeof *fx), *fy = xcalloc((size_t)n + 1, sizeof *fy);
    const char **lab = xcalloc((size_t)n + 1, sizeof *lab);
    int *on = xcalloc((size_t)n + 1, sizeof *on);
    if (!x || !y || !fx || !fy || !lab || !on) {
        free(x), free(y), free(fx), free(fy), free(lab), free(on);
        return -1;
    }
    int points = 0, nf = 0;
    for (int i = 0; i < n; i++) {
        x[i] = report_pareto_x(&ms[i], which);
        y[i] = ms[i].eval ? rstage_metric(ms[i].eval, "auc") : NAN;
        lab[i] = ms[i].label;
        on[i] = ms[i].pareto[which];
        points += isfinite(x[i]) && isfinite(y[i]);
    }
    /* the front, by increasing x (its AUC increases too) */
    for (int i = 0; i < n; i++)
        if (on[i]) {
            int j = nf++;
            while (j > 0 && fx[j - 1] > x[i]) fx[j] = fx[j - 1], fy[j] = fy[j - 1], j--;
            fx[j] = x[i], fy[j] = y[i];
        }
    int written = 0;
    if (points) {
        svg_axes a = {.title = title, .xlabel = xlabel, .ylabel = "AUC (mean over tasks)", .width = PLOT_W,
                      .height = PLOT_H, .xbytes = which == PARETO_BYTES, .xmin = NAN, .xmax = NAN, .ymin = NAN,
                      .ymax = NAN};
        for (int i = 0; i < n; i++) /* the range of the points that have both values */
            if (isfinite(x[i]) && isfinite(y[i])) svg_range(&a.xmin, &a.xmax, &x[i], 1, 0), svg_range(&a.ymin, &a.ymax, &y[i], 1, 0);
        a.xlog = svg_wide(a.xmin, a.xmax, 8);
        svg_plot p;
        figure_begin(d);
        svg_begin(&p, d, &a);
        svg_line(&p, fx, fy, nf, "#999", 1, 1);
        const char *blue = svg_color(0);
        for (int i = 0; i < n; i++) svg_markers(&p, &x[i], &y[i], 1, blue, on[i], NULL);
        svg_labels(&p, x, y, n, lab);
        svg_end(&p);
        strbuf cap = STRBUF_INIT;
        int rc = sb_printf(&cap, "%s. Filled points and the dashed staircase: the Pareto front (no other model has a "
                                 "higher AUC with %s): ", title, fewer);
        for (int i = 0, k = 0; i < nf && !rc; i++)
            for (int j = 0; j < n && !rc; j++)
                if (on[j] && x[j] == fx[i] && y[j] == fy[i] && !(i > 0 && fx[i - 1] == fx[i] && fy[i - 1] == fy[i]))
                    rc = sb_printf(&cap, "%s%s", k++ ? ", " : "", lab[j]);
        if (!rc) rc = sb_puts(&cap, ".");
        figure_end(d, rc ? title : sb_str(&cap));
        sb_free(&cap);
        written = 1;
    }
    free(x), free(y), free(fx), free(fy), free(lab), free(on);
    return written;
}

int plot_auc_tradeoffs(doc *d, const rmodel *ms, int n) {
    static const struct {
        const char *title, *xlabel, *fewer;
    } f[3] = {
        [PARETO_PARAMS] = {"AUC against parameters", "parameters (count)", "fewer parameters"},
        [PARETO_BYTES] = {"AUC against weight size", "weights as served (bytes)", "fewer bytes"},
        [PARETO_TTFT] = {"AUC against TTFT p50", "TTFT p50 (ms)", "a lower TTFT"},
    };
    int total = 0;
    for (int w = 0; w < 3; w++) {
        int k = scatter_pareto(d, f[w].title, f[w].xlabel, f[w].fewer, ms, n, w);
        if (k < 0) return -1;
        total += k;
    }
    return total;
}

/* ---- per-layer errors ---- */

/* A plot of per-layer series: keys[k] of every stage of `kind`, each stage its color and each key
 * its dash; or (mean_keys) the mean over keys per layer, one line per stage. */
typedef struct {
    const char *title, *ylabel, *caption;
    const char *const *keys;   /* metric keys, NULL-terminated */
    const char *const *names;  /* legend names of the keys */
    int mean_keys;
} layer_plot;

static int plot_layers(doc *d, const rrun *r, store *s, const char *kind, const rstage *only, const layer_plot *lp) {
    int n_keys = 0;
    while (lp->keys[n_keys]) n_keys++;
    int cap = (r->n_st + 1) * n_keys, n = 0, rc = 0;
    series *sr = xcalloc((size_t)cap + 1, sizeof *sr);
    const char **names = xcalloc((size_t)cap + 1, sizeof *names);
    int *color = xcalloc((size_t)cap + 1, sizeof *color), *dash = xcalloc((size_t)cap + 1, sizeof *dash);
    char (*label)[STAGE_NAME_MAX + 32] = xcalloc((size_t)cap + 1, sizeof *label);
    double *cnt = NULL; /* mean_keys: how many keys each layer of the current stage summed */
    if (!sr || !names || !color || !dash || !label) rc = -1;
    int n_stages = 0;
    for (int i = 0; i < r->n_st && !rc; i++) {
        const rstage *x = &r->st[i];
        if (strcmp(x->kind, kind) || (only && x != only)) continue;
        int first = n;
        for (int k = 0; k < n_keys && !rc; k++) {
            series t;
            if (series_read(&t, s, r, x->name, lp->keys[k])) {
                rc = -1;
                break;
            }
            if (!t.n) {
                series_free(&t);
                continue;
            }
            if (lp->mean_keys && n > first) { /* add into the stage's series, layer by layer */
                series *m = &sr[first];
                for (int a = 0; a < m->n; a++)
                    for (int b = 0; b < t.n; b++)
                        if (t.x[b] == m->x[a]) m->y[a] += t.y[b], cnt[a]++;
                series_free(&t);
                continue;
            }
            if (lp->mean_keys) {
                free(cnt);
                if (!(cnt = xcalloc((size_t)t.n + 1, sizeof *cnt))) {
                    series_free(&t);
                    rc = -1;
                    break;
                }
                for (int a = 0; a < t.n; a++) cnt[a] = 1;
            }
            sr[n] = t;
            color[n] = only ? k : n_stages, dash[n] = only || lp->mean_keys ? 0 : k;
            snprintf(label[n], sizeof label[n], "%s%s%s", only ? "" : x->name, only || lp->mean_keys ? "" : " ",
                     lp->mean_keys ? "" : lp->names[k]);
            names[n] = label[n];
            n++;
        }
        if (lp->mean_keys && n > first)
            for (int a = 0; a < sr[first].n; a++) sr[first].y[a] /= cnt[a];
        n_stages += n > first;
    }
    int written = 0;
    if (!rc && n) {
        svg_axes a = {.title = lp->title, .xlabel = "layer (index)", .ylabel = lp->ylabel, .width = PLOT_W, .xint = 1,
                      .height = legend_height(n), .legend = svg_longest(names, n), .xmin = NAN, .xmax = NAN, .ymin = NAN, .ymax = NAN};
        double lo = NAN, hi = NAN;
        for (int i = 0; i < n; i++) {
            svg_range(&a.xmin, &a.xmax, sr[i].x, sr[i].n, 0);
            svg_range(&lo, &hi, sr[i].y, sr[i].n, 1);
        }
        a.ylog = svg_wide(lo, hi, 20);
        for (int i = 0; i < n; i++) svg_range(&a.ymin, &a.ymax, sr[i].y, sr[i].n, a.ylog);
        svg_plot p;
        figure_begin(d);
        svg_begin(&p, d, &a);
        for (int i = 0; i < n; i++) {
            svg_line(&p, sr[i].x, sr[i].y, sr[i].n, svg_color(color[i]), dash[i], 0);
            svg_markers(&p, sr[i].x, sr[i].y, sr[i].n, svg_color(color[i]), 1, NULL);
            svg_legend_entry(&p, names[i], svg_color(color[i]), dash[i], 0);
        }
        svg_end(&p);
        figure_end(d, lp->caption);
        written = 1;
    }
    for (int i = 0; sr && i < n; i++) series_free(&sr[i]);
    free(sr), free(names), free(color), free(dash), free(label), free(cnt);
    return rc ? -1 : written;
}

static const char *const prune_keys[] = {"rel_error_mlp", "rel_error_attn", NULL};
static const char *const prune_names[] = {"MLP (down_proj)", "attention (o_proj)", NULL};
static const char *const quant_keys[] = {"rel_error_q", "rel_error_k", "rel_error_v", "rel_error_o",
                                         "rel_error_gate", "rel_error_up", "rel_error_down", NULL};
static const char *const quant_names[] = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj",
                                          NULL};

int plot_pruning(doc *d, const rrun *r, store *s) {
    layer_plot lp = {.title = "Pruning: reconstruction error per layer",
                     .ylabel = "relative error ‖X(Ŵ−W)ᵀ‖² / ‖XWᵀ‖²",
                     .caption = "Per-layer relative reconstruction error of each prune stage on its calibration set: "
                                "solid lines MLP neurons (down_proj), dashed lines KV groups (o_proj).",
                     .keys = prune_keys, .names = prune_names};
    return plot_layers(d, r, s, "prune", NULL, &lp);
}

int plot_quantization(doc *d, const rrun *r, store *s) {
    layer_plot all = {.title = "Quantization: mean error per layer", .ylabel = "relative output error (mean of linears)",
                      .caption = "Per-layer relative output error of each quantize stage, averaged over the layer's "
                                 "quantized linears (q, k, v, o, gate, up, down) on the calibration set.",
                      .keys = quant_keys, .names = quant_names, .mean_keys = 1};
    int total = plot_layers(d, r, s, "quantize", NULL, &all);
    for (int i = 0; i < r->n_st && total >= 0; i++) {
        const rstage *q = &r->st[i];
        if (strcmp(q->kind, "quantize")) continue;
        char title[STAGE_NAME_MAX + 64], desc[96], caption[STAGE_NAME_MAX + 200];
        report_describe(desc, sizeof desc, q, 0);
        snprintf(title, sizeof title, "%s (%s): error per linear", q->name, desc);
        snprintf(caption, sizeof caption, "Relative output error of every quantized linear of %s, per layer.", q->name);
        layer_plot one = {.title = title, .ylabel = "relative output error", .caption = caption, .keys = quant_keys,
                          .names = quant_names};
        int k = plot_layers(d, r, s, "quantize", q, &one);
        total = k < 0 ? -1 : total + k;
    }
    return total;
}

/* ---- training ---- */

int plot_training(doc *d, const rrun *r, store *s) {
    int total = 0;
    for (int i = 0; i < r->n_st; i++) {
        const rstage *t = &r->st[i];
        if (strcmp(t->kind, "train")) continue;
        series tr, va;
        if (series_read(&tr, s, r, t->name, "loss")) return -1;
        if (series_read(&va, s, r, t->name, "valid_loss")) {
            series_free(&tr);
            return -1;
        }
        if (tr.n || va.n) {
            char title[STAGE_NAME_MAX + 32], caption[STAGE_NAME_MAX + 160];
            snprintf(title, sizeof title, "%s: loss", t->name);
            snprintf(caption, sizeof caption, "Training loss of %s per step (solid) and validation loss (dashed): "
                                              "its weighted mix of CE and divergences, nats per token.", t->name);
            svg_axes a = {.title = title, .xlabel = "training step", .ylabel = "loss (nats per token)", .width = PLOT_W, .xint = 1,
                          .height = PLOT_H, .legend = 5, .xmin = NAN, .xmax = NAN, .ymin = NAN, .ymax = NAN};
            svg_range(&a.xmin, &a.xmax, tr.x, tr.n, 0);
            svg_range(&a.xmin, &a.xmax, va.x, va.n, 0);
            svg_range(&a.ymin, &a.ymax, tr.y, tr.n, 0);
            svg_range(&a.ymin, &a.ymax, va.y, va.n, 0);
            svg_plot p;
            figure_begin(d);
            svg_begin(&p, d, &a);
            svg_line(&p, tr.x, tr.y, tr.n, svg_color(0), 0, 0);
            svg_line(&p, va.x, va.y, va.n, svg_color(1), 1, 0);
            if (va.n < 30) svg_markers(&p, va.x, va.y, va.n, svg_color(1), 1, NULL);
            if (tr.n) svg_legend_entry(&p, "train", svg_color(0), 0, 0);
            if (va.n) svg_legend_entry(&p, "valid", svg_color(1), 1, 0);
            svg_end(&p);
            figure_end(d, caption);
            total++;
        }
        series_free(&tr), series_free(&va);
    }
    return total;
}

/* ---- latency ---- */

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* TTFT and TPOT per request (ms) of a benchmark's trace.csv; n 0 when it has none. */
static int read_trace(store *s, const rstage *b, double **ttft, double **tpot, int *n, int *n_tpot) {
    *ttft = *tpot = NULL, *n = *n_tpot = 0;
    const char *digest = rstage_main_digest(b);
    char *path = NULL, *text = NULL;
    size_t len;
    if (!digest || store_artifact_file(s, digest, "trace.csv", &path)) {
        err_clear(); /* no trace: the percentiles stand in */
        return 0;
    }
    int rc = fs_read_file(path, TRACE_MAX_BYTES, &text, &len);
    free(path);
    if (rc) return err_prefix("the trace of %s: ", b->name);
    int c_arr = -1, c_first = -1, c_fin = -1, c_out = -1, c_err = -1, cap = 0;
    double v[TRACE_MAX_COLS];
    char *line = text;
    const char *const names[] = {"arrival_s", "first_token_s", "finish_s", "output_tokens", "error"};
    int *const cols[] = {&c_arr, &c_first, &c_fin, &c_out, &c_err};
    for (int col = 0; *line && *line != '\n' && col < TRACE_MAX_COLS; col++) {
        size_t k = strcspn(line, ",\n");
        for (int i = 0; i < 5; i++)
            if (strlen(names[i]) == k && !strncmp(line, names[i], k)) *cols[i] = col;
        line += k + (line[k] == ',');
    }
    if (c_arr < 0 || c_first < 0) {
        free(text);
        return err_set(ERR_CORRUPT, "the trace.csv of %s lacks arrival_s or first_token_s", b->name);
    }
    while ((line = strchr(line, '\n')) && *++line) {
        int nv = 0;
        for (char *p = line; nv < TRACE_MAX_COLS; p++) { /* one row: numbers separated by commas */
            v[nv++] = strtod(p, NULL);
            p += strcspn(p, ",\n");
            if (*p != ',') break;
        }
        if (c_first >= nv || c_arr >= nv || (c_err >= 0 && c_err < nv && v[c_err] != 0)) continue;
        if (*n == cap) {
            cap = cap ? 2 * cap : 256;
            double *a = xrealloc(*ttft, (size_t)cap * sizeof *a), *t2 = a ? xrealloc(*tpot, (size_t)cap * sizeof *t2) : NULL;
            if (a) *ttft = a;
            if (!t2) {
                free(text);
                return -1;
            }
            *tpot = t2;
        }
        (*ttft)[(*n)++] = 1000 * (v[c_first] - v[c_arr]);
        if (c_fin >= 0 && c_out >= 0 && c_fin < nv && c_out < nv && v[c_out] > 1)
            (*tpot)[(*n_tpot)++] = 1000 * (v[c_fin] - v[c_first]) / (v[c_out] - 1);
    }
    free(text);
    return 0;
}

/* An empirical CDF of v (sorted in place), at most CDF_POINTS points. */
static int cdf(double *v, int n, double **x, double **y, int *m) {
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    *m = n < CDF_POINTS ? n : CDF_POINTS;
    *x = xcalloc((size_t)*m + 1, sizeof **x), *y = xcalloc((size_t)*m + 1, sizeof **y);
    if (!*x || !*y) return -1;
    for (int i = 0; i < *m; i++) {
        int k = *m == n ? i : (int)((double)(i + 1) * n / *m) - 1;
        (*x)[i] = v[k], (*y)[i] = (double)(k + 1) / n;
    }
    return 0;
}

static int latency_cdf(doc *d, const rrun *r, store *s, int tpot) {
    const char *p50k = tpot ? "tpot_ms_p50" : "ttft_ms_p50", *p99k = tpot ? "tpot_ms_p99" : "ttft_ms_p99";
    int n_b = 0, any = 0;
    for (int i = 0; i < r->n_st; i++) n_b += !strcmp(r->st[i].kind, "benchmark");
    if (!n_b) return 0;
    series *sr = xcalloc((size_t)n_b, sizeof *sr);
    int *from_trace = xcalloc((size_t)n_b, sizeof *from_trace), k = 0, rc = 0;
    const rstage **who = xcalloc((size_t)n_b, sizeof *who);
    char (*name)[STAGE_NAME_MAX + 24] = xcalloc((size_t)n_b, sizeof *name);
    const char **names = xcalloc((size_t)n_b, sizeof *names);
    if (!sr || !from_trace || !who || !name || !names) rc = -1;
    for (int i = 0; i < r->n_st && !rc; i++) {
        const rstage *b = &r->st[i];
        if (strcmp(b->kind, "benchmark")) continue;
        double *tt, *tp;
        int n, ntp;
        if (read_trace(s, b, &tt, &tp, &n, &ntp)) {
            rc = -1;
            break;
        }
        double *v = tpot ? tp : tt;
        int nv = tpot ? ntp : n;
        who[k] = b;
        if (nv > 0) {
            from_trace[k] = 1;
            rc = cdf(v, nv, &sr[k].x, &sr[k].y, &sr[k].n);
        } else if (!isnan(rstage_metric(b, p50k))) {
            sr[k].x = xcalloc(2, sizeof(double)), sr[k].y = xcalloc(2, sizeof(double));
            if (!sr[k].x || !sr[k].y) rc = -1;
            else {
                sr[k].x[0] = rstage_metric(b, p50k), sr[k].y[0] = 0.5;
                sr[k].x[1] = rstage_metric(b, p99k), sr[k].y[1] = 0.99;
                sr[k].n = 2;
            }
        }
        any += sr[k].n > 0;
        snprintf(name[k], sizeof name[k], "%s%s", b->name, from_trace[k] ? "" : " (p50, p99)");
        names[k] = sr[k].n ? name[k] : NULL;
        free(tt), free(tp);
        k++;
    }
    int written = 0;
    if (!rc && any) {
        svg_axes a = {.title = tpot ? "Time per output token" : "Time to first token", .legend = svg_longest(names, k),
                      .xlabel = tpot ? "TPOT (ms)" : "TTFT (ms)", .ylabel = "fraction of requests ≤ x",
                      .width = PLOT_W, .height = legend_height(any), .xmin = NAN, .xmax = NAN, .ymin = 0, .ymax = 1};
        double lo = NAN, hi = NAN;
        for (int i = 0; i < k; i++) svg_range(&lo, &hi, sr[i].x, sr[i].n, 1);
        a.xlog = svg_wide(lo, hi, 20);
        for (int i = 0; i < k; i++) svg_range(&a.xmin, &a.xmax, sr[i].x, sr[i].n, a.xlog);
        svg_plot p;
        figure_begin(d);
        svg_begin(&p, d, &a);
        for (int i = 0; i < k; i++) {
            if (!sr[i].n) continue;
            svg_line(&p, sr[i].x, sr[i].y, sr[i].n, svg_color(i), !from_trace[i], from_trace[i]);
            if (!from_trace[i]) svg_markers(&p, sr[i].x, sr[i].y, sr[i].n, svg_color(i), 1, NULL);
            svg_legend_entry(&p, name[i], svg_color(i), !from_trace[i], 0);
        }
        svg_end(&p);
        figure_end(d, tpot ? "Distribution of the time per output token after the first, per request of each "
                             "benchmark (from its trace; dashed: only its p50 and p99 are known)."
                           : "Distribution of the time to first token (queueing and prefill) per request of each "
                             "benchmark (from its trace; dashed: only its p50 and p99 are known).");
        written = 1;
    }
    for (int i = 0; sr && i < n_b; i++) series_free(&sr[i]);
    free(sr), free(from_trace), free(who), free(name), free(names);
    return rc ? -1 : written;
}

static const char *const part_keys[] = {"layer_attention_ms", "layer_mlp_ms", NULL};
static const char *const part_names[] = {"attention", "MLP", NULL};

int plot_latency(doc *d, const rrun *r, store *s) {
    int a = latency_cdf(d, r, s, 0);
    int b = a < 0 ? -1 : latency_cdf(d, r, s, 1);
    layer_plot lp = {.title = "Serving time per layer", .ylabel = "time in the run (ms)",
                     .caption = "Time each layer's attention (solid) and MLP (dashed) took over a benchmark's run "
                                "(the paper's Figure 4).",
                     .keys = part_keys, .names = part_names};
    int c = b < 0 ? -1 : plot_layers(d, r, s, "benchmark", NULL, &lp);
    return c < 0 ? -1 : a + b + c;
}
