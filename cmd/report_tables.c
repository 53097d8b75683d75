/* report_tables.c: the sections of `smelt report`: models (parameters, bytes, AUC and its delta
 * against the evaluation's reference), serving (TTFT, TPOT, throughput per benchmark stage),
 * prefill (prefix hits, cold and hot prefill, attention's share), evaluations, training, pruning
 * and quantization. Values come from the stages' latest metrics; per-layer series are read for
 * sums and maxima. A value that is not there is "-". */
#include "cmd/report_tables.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cmd/util.h"
#include "common/error.h"
#include "common/strbuf.h"

#define NUM(buf, v, fmt) (fmt_num(buf, sizeof buf, v, fmt), buf)

rsection *report_section_add(rsection **sec, int *n, const char *id, const char *title, const char *align,
                             const char *const *hdr) {
    rsection *a = xrealloc(*sec, (size_t)(*n + 1) * sizeof *a);
    if (!a) return NULL;
    *sec = a;
    rsection *x = &a[(*n)++];
    memset(x, 0, sizeof *x);
    snprintf(x->id, sizeof x->id, "%s", id);
    snprintf(x->title, sizeof x->title, "%s", title);
    if (table_init_aligned(&x->t, align, hdr)) return NULL;
    return x;
}

static const char *from_stage(const rstage *x) {
    const rinput *in = rstage_input(x, "model");
    if (!in) in = rstage_input(x, "init");
    if (!in) in = rstage_input(x, "init.from"); /* a student of some of a model's layers */
    return in ? in->from_stage : rstage_param(x, "model");
}

/* Sum and maximum of a per-layer series (NAN when it has no points). */
static int series_stats(store *s, const rrun *r, const rstage *x, const char *key, double *sum, double *max,
                        int64_t *argmax) {
    int64_t *steps;
    double *v;
    int n;
    *sum = NAN, *max = NAN, *argmax = -1;
    if (rstage_series(s, r->id, x->name, key, &steps, &v, &n)) return -1;
    for (int i = 0; i < n; i++) {
        if (isnan(v[i])) continue;
        *sum = isnan(*sum) ? v[i] : *sum + v[i];
        if (isnan(*max) || v[i] > *max) *max = v[i], *argmax = steps[i];
    }
    free(steps), free(v);
    return 0;
}

static int models_section(rsection **sec, int *n, const rmodel *ms, int nm) {
    static const char *const hdr[] = {"MODEL", "KIND", "PARAMS", "BYTES", "AUC", "ΔAUC %", "ΔAUC", "VS"};
    rsection *x = report_section_add(sec, n, "models", "Models", "LLrrrrrL", hdr);
    if (!x) return -1;
    strbuf fr[3] = {STRBUF_INIT, STRBUF_INIT, STRBUF_INIT};
    int any_ttft = 0, rc = 0;
    for (int i = 0; i < nm && !rc; i++) {
        const rmodel *m = &ms[i];
        char p[32], b[32], a[32], dp[32], d[32];
        double auc = m->eval ? rstage_metric(m->eval, "auc") : NAN;
        double pct = m->eval ? rstage_metric(m->eval, "auc_delta_pct") : NAN;
        double del = m->eval ? rstage_metric(m->eval, "auc_delta") : NAN;
        fmt_count(p, sizeof p, m->params);
        fmt_bytes(b, sizeof b, m->bytes);
        rc = table_cell(&x->t, 0, "%s", m->label) || table_cell(&x->t, 1, "%s", m->kind) ||
             table_cell(&x->t, 2, "%s", p) ||
             table_cell(&x->t, 3, "%s%s", b, m->bytes_measured || isnan(m->bytes) ? "" : "*") ||
             table_cell(&x->t, 4, "%s", NUM(a, auc, "%.4f")) || table_cell(&x->t, 5, "%s", NUM(dp, pct, "%+.2f%%")) ||
             table_cell(&x->t, 6, "%s", NUM(d, del, "%+.4f")) || table_cell(&x->t, 7, "%s", m->ref);
        for (int w = 0; w < 3 && !rc; w++)
            if (m->pareto[w]) rc = sb_printf(&fr[w], "%s%s", fr[w].len ? ", " : "", m->label);
        any_ttft |= m->bench != NULL;
    }
    if (!rc)
        x->note = xasprintf("AUC: mean of the per-task AUCs of each model's evaluation (the first on split test); "
                            "ΔAUC %% = 100·(AUC − AUC_ref)/AUC_ref and ΔAUC the absolute difference, against the "
                            "model VS. BYTES: weights as served (a quantize stage's bytes metric; * dense: 4 bytes "
                            "per parameter). Pareto fronts (no model has a higher AUC for less): against "
                            "parameters %s; against bytes %s%s%s.",
                            fr[0].len ? sb_str(&fr[0]) : "-", fr[1].len ? sb_str(&fr[1]) : "-",
                            any_ttft ? "; against TTFT p50 " : "", any_ttft ? (fr[2].len ? sb_str(&fr[2]) : "-") : "");
    for (int w = 0; w < 3; w++) sb_free(&fr[w]);
    return rc || !x->note ? -1 : 0;
}

static int serving_sections(rsection **sec, int *n, const rrun *r) {
    static const char *const hdr[] = {"BENCHMARK", "MODEL", "TTFT p50", "TTFT p99", "TPOT p50", "TPOT p99",
                                      "REQ/S", "IN TOK/S", "OUT TOK/S"};
    static const char *const hdr2[] = {"BENCHMARK", "MODEL", "PREFIX HITS", "COLD ms", "HOT ms", "SPEEDUP",
                                       "ATTENTION", "MLP"};
    int xi = -1, yi = -1; /* indices: adding a section may move the array */
    for (int i = 0; i < r->n_st; i++) {
        const rstage *b = &r->st[i];
        if (strcmp(b->kind, "benchmark")) continue;
        char model[STAGE_NAME_MAX], v[8][32];
        report_measured_label(r, b, model, sizeof model);
        if (xi < 0 && !report_section_add(sec, n, "serving", "Serving", "LLrrrrrrr", hdr)) return -1;
        if (xi < 0) xi = *n - 1;
        table *t = &(*sec)[xi].t;
        if (table_cell(t, 0, "%s", b->name) || table_cell(t, 1, "%s", model) ||
            table_cell(t, 2, "%s", NUM(v[0], rstage_metric(b, "ttft_ms_p50"), "%.1f")) ||
            table_cell(t, 3, "%s", NUM(v[1], rstage_metric(b, "ttft_ms_p99"), "%.1f")) ||
            table_cell(t, 4, "%s", NUM(v[2], rstage_metric(b, "tpot_ms_p50"), "%.2f")) ||
            table_cell(t, 5, "%s", NUM(v[3], rstage_metric(b, "tpot_ms_p99"), "%.2f")) ||
            table_cell(t, 6, "%s", NUM(v[4], rstage_metric(b, "requests_per_s"), "%.2f")) ||
            table_cell(t, 7, "%s", NUM(v[5], rstage_metric(b, "input_tokens_per_s"), "%.0f")) ||
            table_cell(t, 8, "%s", NUM(v[6], rstage_metric(b, "output_tokens_per_s"), "%.1f")))
            return -1;
        double hit = rstage_metric(b, "prefix_hit_ratio"), cold = rstage_metric(b, "prefill_cold_ms"),
               hot = rstage_metric(b, "prefill_hot_ms"), att = rstage_metric(b, "attention_share"),
               fw = rstage_metric(b, "forward_ms"), mlp = rstage_metric(b, "mlp_ms");
        if (isnan(hit) && isnan(cold) && isnan(att)) continue;
        if (yi < 0 && !report_section_add(sec, n, "prefill", "Prefill and time per part", "LLrrrrrr", hdr2)) return -1;
        if (yi < 0) yi = *n - 1;
        t = &(*sec)[yi].t;
        if (table_cell(t, 0, "%s", b->name) || table_cell(t, 1, "%s", model) ||
            table_cell(t, 2, "%s", NUM(v[0], 100 * hit, "%.1f%%")) ||
            table_cell(t, 3, "%s", NUM(v[1], cold, "%.2f")) || table_cell(t, 4, "%s", NUM(v[2], hot, "%.2f")) ||
            table_cell(t, 5, "%s", NUM(v[3], cold / hot, "%.2fx")) ||
            table_cell(t, 6, "%s", NUM(v[4], 100 * att, "%.1f%%")) ||
            table_cell(t, 7, "%s", NUM(v[5], 100 * mlp / fw, "%.1f%%")))
            return -1;
    }
    if (xi >= 0 && !((*sec)[xi].note = xstrdup("Times in milliseconds (p50, p99 over the benchmark's requests); TTFT: "
                                               "queueing and prefill up to the first token; TPOT: per output token "
                                               "after the first; throughput per second over the whole run.")))
        return -1;
    if (yi >= 0 && !((*sec)[yi].note = xstrdup("PREFIX HITS: prompt tokens served from the prefix cache; COLD and HOT: "
                                               "prefill of one prompt without and with its shared prefix cached; "
                                               "ATTENTION and MLP: their shares of the forward time (the paper's "
                                               "Figure 4).")))
        return -1;
    return 0;
}

/* The task of a per-task AUC metric ("auc_like" -> "like"), NULL for other keys. */
static const char *auc_task(const char *key) {
    if (strncmp(key, "auc_", 4) || !strncmp(key, "auc_delta", 9) || !strcmp(key, "auc_ref")) return NULL;
    return key + 4;
}

/* "like 0.612 save 0.598" for the per-task AUCs of an evaluation. */
static int task_aucs(strbuf *sb, const rstage *e) {
    for (int k = 0; k < e->n_m; k++) {
        const char *task = auc_task(e->m[k].key);
        if (task && sb_printf(sb, "%s%s %.3f", sb->len ? " " : "", task, e->m[k].value)) return -1;
    }
    return 0;
}

/* One row per evaluation and task: the task's AUC and its delta against the reference's
 * (auc_delta_<task>); the reference's AUC is AUC − delta. */
static int task_section(rsection **sec, int *n, const rrun *r) {
    static const char *const hdr[] = {"EVALUATION", "MODEL", "TASK", "AUC", "REF AUC", "ΔAUC", "ΔAUC %"};
    rsection *x = NULL;
    for (int i = 0; i < r->n_st; i++) {
        const rstage *e = &r->st[i];
        if (strcmp(e->kind, "evaluate")) continue;
        for (int k = 0; k < e->n_m; k++) {
            const char *task = auc_task(e->m[k].key);
            if (!task) continue;
            if (!x && !(x = report_section_add(sec, n, "tasks", "AUC per task", "LLLrrrr", hdr))) return -1;
            char dkey[STAGE_NAME_MAX + 16], model[STAGE_NAME_MAX], v[4][32];
            snprintf(dkey, sizeof dkey, "auc_delta_%s", task);
            double auc = e->m[k].value, d = rstage_metric(e, dkey);
            if (table_cell(&x->t, 0, "%s", e->name) ||
                table_cell(&x->t, 1, "%s", report_measured_label(r, e, model, sizeof model)) ||
                table_cell(&x->t, 2, "%s", task) || table_cell(&x->t, 3, "%s", NUM(v[0], auc, "%.4f")) ||
                table_cell(&x->t, 4, "%s", NUM(v[1], auc - d, "%.4f")) || table_cell(&x->t, 5, "%s", NUM(v[2], d, "%+.4f")) ||
                table_cell(&x->t, 6, "%s", NUM(v[3], 100 * d / (auc - d), "%+.2f%%")))
                return -1;
        }
    }
    if (x && !(x->note = xstrdup("AUC of each task of each evaluation; REF AUC: the task's AUC in the evaluation's "
                                 "reference; ΔAUC % = 100·(AUC − REF AUC)/REF AUC.")))
        return -1;
    return 0;
}

static int evaluation_section(rsection **sec, int *n, const rrun *r) {
    static const char *const hdr[] = {"EVALUATION", "MODEL", "SPLIT", "EXAMPLES", "AUC", "LOG LOSS", "PPL", "TASKS (AUC)"};
    rsection *x = NULL;
    for (int i = 0; i < r->n_st; i++) {
        const rstage *e = &r->st[i];
        if (strcmp(e->kind, "evaluate")) continue;
        if (!x && !(x = report_section_add(sec, n, "evaluations", "Evaluations", "LLlrrrrL", hdr))) return -1;
        char model[STAGE_NAME_MAX], v[4][32];
        strbuf tasks = STRBUF_INIT;
        const char *split = rstage_param(e, "split");
        int rc = task_aucs(&tasks, e) || table_cell(&x->t, 0, "%s", e->name) ||
                 table_cell(&x->t, 1, "%s", report_measured_label(r, e, model, sizeof model)) ||
                 table_cell(&x->t, 2, "%s", split ? split : "") ||
                 table_cell(&x->t, 3, "%s", NUM(v[0], rstage_metric(e, "examples"), "%.0f")) ||
                 table_cell(&x->t, 4, "%s", NUM(v[1], rstage_metric(e, "auc"), "%.4f")) ||
                 table_cell(&x->t, 5, "%s", NUM(v[2], rstage_metric(e, "log_loss"), "%.4f")) ||
                 table_cell(&x->t, 6, "%s", NUM(v[3], rstage_metric(e, "perplexity"), "%.3g")) ||
                 table_cell(&x->t, 7, "%s", sb_str(&tasks));
        sb_free(&tasks);
        if (rc) return -1;
    }
    return 0;
}

static int training_section(rsection **sec, int *n, const rrun *r) {
    static const char *const hdr[] = {"TRAINING", "KIND", "PARAMS", "STEPS", "LOSS", "VALID LOSS", "SELECTED", "TOK/S"};
    rsection *x = NULL;
    for (int i = 0; i < r->n_st; i++) {
        const rstage *t = &r->st[i];
        if (strcmp(t->kind, "train")) continue;
        if (!x && !(x = report_section_add(sec, n, "training", "Training", "LLrrrrrr", hdr))) return -1;
        char v[6][32];
        double steps = NAN;
        for (int k = 0; k < t->n_m; k++)
            if (!strcmp(t->m[k].key, "loss")) steps = (double)t->m[k].step;
        fmt_count(v[0], sizeof v[0], rstage_metric(t, "params"));
        if (table_cell(&x->t, 0, "%s", t->name) ||
            table_cell(&x->t, 1, "%s", rstage_input(t, "teacher") ? "distill" : "sft") ||
            table_cell(&x->t, 2, "%s", v[0]) || table_cell(&x->t, 3, "%s", NUM(v[1], steps, "%.0f")) ||
            table_cell(&x->t, 4, "%s", NUM(v[2], rstage_metric(t, "loss"), "%.4f")) ||
            table_cell(&x->t, 5, "%s", NUM(v[3], rstage_metric(t, "valid_loss"), "%.4f")) ||
            table_cell(&x->t, 6, "%s", NUM(v[4], rstage_metric(t, "selected_step"), "%.0f")) ||
            table_cell(&x->t, 7, "%s", NUM(v[5], rstage_metric(t, "tokens_per_s"), "%.0f")))
            return -1;
    }
    if (x && !(x->note = xstrdup("LOSS: the last training step's; VALID LOSS: the last validation's; SELECTED: the "
                                 "step whose weights were kept.")))
        return -1;
    return 0;
}

static int pruning_section(rsection **sec, int *n, const rrun *r, store *s) {
    static const char *const hdr[] = {"PRUNING", "FROM", "METHOD", "PARAMS", "MLP CUT", "KV CUT", "ERR MLP",
                                      "ERR ATTN"};
    rsection *x = NULL;
    for (int i = 0; i < r->n_st; i++) {
        const rstage *p = &r->st[i];
        if (strcmp(p->kind, "prune")) continue;
        if (!x && !(x = report_section_add(sec, n, "pruning", "Pruning", "LLLrrrrr", hdr))) return -1;
        double cut_mlp, cut_kv, mx;
        int64_t am;
        if (series_stats(s, r, p, "groups_removed_mlp", &cut_mlp, &mx, &am) ||
            series_stats(s, r, p, "groups_removed_attn", &cut_kv, &mx, &am))
            return -1;
        char b[32], a[32], v[4][32], m[96];
        const char *from = from_stage(p);
        report_describe(m, sizeof m, p, 0);
        fmt_count(b, sizeof b, rstage_metric(p, "params_before"));
        fmt_count(a, sizeof a, rstage_metric(p, "params"));
        if (table_cell(&x->t, 0, "%s", p->name) || table_cell(&x->t, 1, "%s", from ? from : "") ||
            table_cell(&x->t, 2, "%s", m) || table_cell(&x->t, 3, "%s → %s", b, a) ||
            table_cell(&x->t, 4, "%s", NUM(v[0], cut_mlp, "%.0f")) || table_cell(&x->t, 5, "%s", NUM(v[1], cut_kv, "%.0f")) ||
            table_cell(&x->t, 6, "%s", NUM(v[2], rstage_metric(p, "rel_error_mlp_mean"), "%.3g")) ||
            table_cell(&x->t, 7, "%s", NUM(v[3], rstage_metric(p, "rel_error_attn_mean"), "%.3g")))
            return -1;
    }
    if (x && !(x->note = xstrdup("CUT: groups removed over all layers (MLP neurons, KV groups); ERR: the mean over "
                                 "layers of the relative reconstruction error ‖X(Ŵ−W)ᵀ‖²/‖XWᵀ‖² of down_proj and "
                                 "o_proj on the calibration set.")))
        return -1;
    return 0;
}

static int quantization_section(rsection **sec, int *n, const rrun *r, store *s) {
    static const char *const hdr[] = {"QUANTIZATION", "FROM", "METHOD", "BITS/W", "BYTES", "ERR MEAN", "ERR MAX",
                                      "AT"};
    static const char *const lin[] = {"q", "k", "v", "o", "gate", "up", "down"};
    rsection *x = NULL;
    for (int i = 0; i < r->n_st; i++) {
        const rstage *q = &r->st[i];
        if (strcmp(q->kind, "quantize")) continue;
        if (!x && !(x = report_section_add(sec, n, "quantization", "Quantization", "LLLrrrrL", hdr))) return -1;
        double worst = NAN;
        char at[64] = "";
        for (int k = 0; k < 7; k++) {
            char key[32];
            double sum, mx;
            int64_t am;
            snprintf(key, sizeof key, "rel_error_%s", lin[k]);
            if (series_stats(s, r, q, key, &sum, &mx, &am)) return -1;
            if (!isnan(mx) && (isnan(worst) || mx > worst)) {
                worst = mx;
                snprintf(at, sizeof at, "layer %lld %s", (long long)am, lin[k]);
            }
        }
        char desc[96], bytes[32], v[3][32];
        const char *from = from_stage(q);
        report_describe(desc, sizeof desc, q, 0);
        fmt_bytes(bytes, sizeof bytes, rstage_metric(q, "bytes"));
        if (table_cell(&x->t, 0, "%s", q->name) || table_cell(&x->t, 1, "%s", from ? from : "") ||
            table_cell(&x->t, 2, "%s", desc) || table_cell(&x->t, 3, "%s", NUM(v[0], rstage_metric(q, "bits_per_weight"), "%.2f")) ||
            table_cell(&x->t, 4, "%s", bytes) ||
            table_cell(&x->t, 5, "%s", NUM(v[1], rstage_metric(q, "rel_error_mean"), "%.3g")) ||
            table_cell(&x->t, 6, "%s", NUM(v[2], worst, "%.3g")) || table_cell(&x->t, 7, "%s", at))
            return -1;
    }
    if (x && !(x->note = xstrdup("BITS/W: stored bits per quantized weight (scales included); ERR: relative output "
                                 "error of each quantized linear on the calibration set, mean and worst.")))
        return -1;
    return 0;
}

int report_sections(rsection **out, int *n, const rrun *r, const rmodel *ms, int n_models, store *s) {
    *out = NULL, *n = 0;
    int rc = (n_models && models_section(out, n, ms, n_models)) || serving_sections(out, n, r) ||
             evaluation_section(out, n, r) || task_section(out, n, r) || training_section(out, n, r) || pruning_section(out, n, r, s) ||
             quantization_section(out, n, r, s);
    if (rc) {
        report_sections_free(*out, *n);
        *out = NULL, *n = 0;
        return -1;
    }
    return 0;
}

void report_sections_free(rsection *sec, int n) {
    for (int i = 0; i < n; i++) {
        free(sec[i].note);
        table_free(&sec[i].t);
    }
    free(sec);
}

/* Words of text wrapped at `width` columns, each line indented. */
static void print_wrapped(FILE *f, const char *text, int indent, int width) {
    int col = 0;
    const char *p = text;
    while (*p) {
        const char *e = p;
        while (*e && *e != ' ') e++;
        char word[512];
        snprintf(word, sizeof word, "%.*s", (int)(e - p), p);
        int w = text_width(word);
        if (col && col + 1 + w > width) {
            fputc('\n', f);
            col = 0;
        }
        if (!col) col = fprintf(f, "%*s", indent, "");
        else fputc(' ', f), col++;
        fputs(word, f);
        col += w;
        p = *e ? e + 1 : e;
    }
    if (col) fputc('\n', f);
}

void report_sections_print(const rsection *sec, int n, FILE *f) {
    for (int i = 0; i < n; i++) {
        fprintf(f, "\n%s\n", sec[i].title);
        table_print_fit(&sec[i].t, f, 2, REPORT_WIDTH);
        if (sec[i].note) print_wrapped(f, sec[i].note, 2, REPORT_WIDTH);
    }
}

void report_run_line(char *buf, size_t n, const rrun *r) {
    int ran = 0, cached = 0, failed = 0, other = 0;
    for (int i = 0; i < r->n_st; i++) {
        const char *st = r->st[i].status;
        if (!strcmp(st, "ok")) ran++;
        else if (!strcmp(st, "cached")) cached++;
        else if (!strcmp(st, "failed")) failed++;
        else other++;
    }
    char t[32];
    fmt_seconds(t, sizeof t, r->seconds);
    size_t k = (size_t)snprintf(buf, n, "run %s (%s): %s, %d stages (%d run, %d cached", r->id, r->name, r->status,
                                r->n_st, ran, cached);
    if (failed && k < n) k += (size_t)snprintf(buf + k, n - k, ", %d failed", failed);
    if (other && k < n) k += (size_t)snprintf(buf + k, n - k, ", %d not done", other);
    if (k < n) snprintf(buf + k, n - k, ")%s%s", isnan(r->seconds) ? "" : ", ", isnan(r->seconds) ? "" : t);
}
