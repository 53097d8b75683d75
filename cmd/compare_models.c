/* compare_models.c: models side by side. In `smelt compare RUN_A RUN_B` a section with each
 * model's AUC, TTFT p50 and bytes in both runs (matched by the producing stage's name); in
 * `smelt compare --models [RUN]...` one row per model of one or more runs, with its kind,
 * parameters, bytes, AUC, TTFT and TPOT p50 and AUC per millisecond of TTFT, optionally filtered
 * by the producing stage's kind and sorted by one column, so that "which quantized student has
 * the best AUC per millisecond" is `smelt compare --models --kind quantize --sort auc-per-ms`. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd/compare_models.h"
#include "cmd/util.h"
#include "common/error.h"

#define NUM(buf, v, fmt) (fmt_num(buf, sizeof buf, v, fmt), buf)

static double model_auc(const rmodel *m) { return m->eval ? rstage_metric(m->eval, "auc") : NAN; }
static double model_ttft(const rmodel *m) { return report_pareto_x(m, PARETO_TTFT); }
static double model_tpot(const rmodel *m) { return m->bench ? rstage_metric(m->bench, "tpot_ms_p50") : NAN; }

static const rmodel *find(const rmodel *ms, int n, const char *label) {
    for (int i = 0; i < n; i++)
        if (!strcmp(ms[i].label, label)) return &ms[i];
    return NULL;
}

static int pair_row(table *t, const rmodel *a, const rmodel *b) {
    char v[7][32];
    double xa = a ? model_auc(a) : NAN, xb = b ? model_auc(b) : NAN;
    fmt_bytes(v[5], sizeof v[5], a ? a->bytes : NAN);
    fmt_bytes(v[6], sizeof v[6], b ? b->bytes : NAN);
    if (a && !a->bytes_measured && !isnan(a->bytes)) strcat(v[5], "*");
    if (b && !b->bytes_measured && !isnan(b->bytes)) strcat(v[6], "*");
    return table_cell(t, 0, "%s", (a ? a : b)->label) || table_cell(t, 1, "%s", NUM(v[0], xa, "%.4f")) ||
           table_cell(t, 2, "%s", NUM(v[1], xb, "%.4f")) || table_cell(t, 3, "%s", NUM(v[2], xb - xa, "%+.4f")) ||
           table_cell(t, 4, "%s", NUM(v[3], a ? model_ttft(a) : NAN, "%.1f")) ||
           table_cell(t, 5, "%s", NUM(v[4], b ? model_ttft(b) : NAN, "%.1f")) || table_cell(t, 6, "%s", v[5]) ||
           table_cell(t, 7, "%s", v[6]);
}

int compare_models_section(rsection **sec, int *n, const rmodel *ma, int na, const rmodel *mb, int nb) {
    static const char *const hdr[] = {"MODEL", "AUC A", "AUC B", "B − A", "TTFT A", "TTFT B", "BYTES A", "BYTES B"};
    if (na + nb == 0) return 0;
    rsection *x = report_section_add(sec, n, "models", "Models", "Lrrrrrrr", hdr);
    if (!x) return -1;
    for (int i = 0; i < nb; i++)
        if (pair_row(&x->t, find(ma, na, mb[i].label), &mb[i])) return -1;
    for (int i = 0; i < na; i++)
        if (!find(mb, nb, ma[i].label) && pair_row(&x->t, &ma[i], NULL)) return -1;
    x->note = xstrdup("Models matched by the name of the stage that made them. AUC: mean over tasks of the model's "
                      "evaluation (the first on split test); TTFT: p50 in ms of its first benchmark; BYTES: "
                      "weights as served (* dense: 4 bytes per parameter).");
    return x->note ? 0 : -1;
}

/* The sort keys of --sort: the column, and whether larger is better (sorted first). */
static const struct {
    const char *name;
    int larger_first;
} sorts[] = {{"auc", 1}, {"auc-per-ms", 1}, {"params", 0}, {"bytes", 0}, {"ttft", 0}, {"tpot", 0}};

int compare_sort_valid(const char *key) {
    for (size_t i = 0; i < sizeof sorts / sizeof *sorts; i++)
        if (!strcmp(key, sorts[i].name)) return 1;
    return 0;
}

typedef struct {
    const rmodel *m;
    int run;      /* index into the runs */
    double key;   /* the --sort column, NAN when unknown */
    int ord;      /* position in the listing before sorting (stable ties) */
} row;

static double sort_value(const rmodel *m, const char *key) {
    if (!strcmp(key, "auc")) return model_auc(m);
    if (!strcmp(key, "auc-per-ms")) return model_auc(m) / model_ttft(m);
    if (!strcmp(key, "params")) return m->params;
    if (!strcmp(key, "bytes")) return m->bytes;
    if (!strcmp(key, "ttft")) return model_ttft(m);
    return model_tpot(m);
}

static int larger_first;
/* Known values first, best first; unknown (NAN) last; ties keep the listing's order. */
static int cmp_rows(const void *pa, const void *pb) {
    const row *a = pa, *b = pb;
    int na = isnan(a->key), nb = isnan(b->key);
    if (na != nb) return na - nb;
    if (!na && a->key != b->key) return (a->key < b->key) == !larger_first ? -1 : 1;
    return a->ord - b->ord;
}

/* "train" matches "train sft" and "train distill fkl"; "quantize gptq" matches its w4 and w8. */
static int kind_matches(const rmodel *m, const char *kind) {
    size_t k = strlen(kind);
    return !strncmp(m->kind, kind, k) && (m->kind[k] == 0 || m->kind[k] == ' ');
}

int compare_models_print(FILE *f, const rrun *runs, rmodel *const *ms, const int *nm, int n_runs, const char *sort,
                         const char *kind) {
    int total = 0;
    for (int r = 0; r < n_runs; r++) total += nm[r];
    row *rows = xcalloc((size_t)total + 1, sizeof *rows);
    if (!rows) return -1;
    int n = 0;
    for (int r = 0; r < n_runs; r++)
        for (int i = 0; i < nm[r]; i++)
            if (!kind || kind_matches(&ms[r][i], kind))
                rows[n] = (row){&ms[r][i], r, sort ? sort_value(&ms[r][i], sort) : NAN, n}, n++;
    if (sort) {
        for (size_t i = 0; i < sizeof sorts / sizeof *sorts; i++)
            if (!strcmp(sort, sorts[i].name)) larger_first = sorts[i].larger_first;
        qsort(rows, (size_t)n, sizeof *rows, cmp_rows);
    }
    for (int r = 0; r < n_runs; r++) {
        char line[512];
        report_run_line(line, sizeof line, &runs[r]);
        if (n_runs > 1) fprintf(f, "%c: %s\n", 'A' + r, line);
        else fprintf(f, "%s\n", line);
    }
    static const char *const hdr[] = {"RUN", "MODEL", "KIND", "PARAMS", "BYTES", "AUC", "TTFT p50", "TPOT p50",
                                      "AUC/ms"};
    int first = n_runs > 1 ? 0 : 1; /* the RUN column only when there are several runs */
    rsection *sec = NULL;
    int ns = 0, rc = 0;
    rsection *x = report_section_add(&sec, &ns, "models", "Models", &"lLLrrrrrr"[first], hdr + first);
    if (!x) rc = -1;
    for (int i = 0; i < n && !rc; i++) {
        const rmodel *m = rows[i].m;
        char v[6][32];
        fmt_count(v[0], sizeof v[0], m->params);
        fmt_bytes(v[1], sizeof v[1], m->bytes);
        int c = 0;
        if (n_runs > 1) rc = table_cell(&x->t, c++, "%c", 'A' + rows[i].run);
        rc = rc || table_cell(&x->t, c, "%s", m->label) || table_cell(&x->t, c + 1, "%s", m->kind) ||
             table_cell(&x->t, c + 2, "%s", v[0]) ||
             table_cell(&x->t, c + 3, "%s%s", v[1], m->bytes_measured || isnan(m->bytes) ? "" : "*") ||
             table_cell(&x->t, c + 4, "%s", NUM(v[2], model_auc(m), "%.4f")) ||
             table_cell(&x->t, c + 5, "%s", NUM(v[3], model_ttft(m), "%.1f")) ||
             table_cell(&x->t, c + 6, "%s", NUM(v[4], model_tpot(m), "%.2f")) ||
             table_cell(&x->t, c + 7, "%s", NUM(v[5], model_auc(m) / model_ttft(m), "%.3g"));
    }
    if (!rc && !(x->note = xasprintf("%sAUC: mean over tasks of the model's evaluation (the first on split test); "
                                     "TTFT and TPOT: p50 in ms of its first benchmark; AUC/ms: AUC per millisecond "
                                     "of TTFT p50; BYTES: weights as served (* dense: 4 bytes per parameter); "
                                     "- not measured.",
                                     n ? "" : "No model of this kind was measured by an evaluate or benchmark "
                                              "stage. ")))
        rc = -1;
    if (!rc) {
        report_sections_print(sec, ns, f);
        if (sort && n && !isnan(rows[0].key) && n_runs > 1)
            fprintf(f, "  best by %s: %s of run %c\n", sort, rows[0].m->label, 'A' + rows[0].run);
        else if (sort && n && !isnan(rows[0].key))
            fprintf(f, "  best by %s: %s\n", sort, rows[0].m->label);
    }
    report_sections_free(sec, ns);
    free(rows);
    return rc;
}
