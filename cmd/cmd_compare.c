/* cmd_compare.c: `smelt compare RUN_A RUN_B [--html FILE]`: two runs side by side. The first
 * stage (in run B's order) whose cache key differs is where the lineage diverges; the key's
 * fields say why (a parameter, the seed, the kind's version, an input artifact). Then every
 * stage: ran or reused (and from which run), same or different key; the parameters that differ;
 * the latest metrics that differ, with B − A. Stages are matched by name. */
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd/commands.h"
#include "cmd/compare_models.h"
#include "cmd/report_html.h"
#include "cmd/report_tables.h"
#include "cmd/svg.h"
#include "cmd/util.h"
#include "common/error.h"
#include "pipeline/key.h"

#define COMPARE_MAX_RUNS 26 /* --models names the runs A to Z */

typedef struct {
    const rrun *a, *b;
    char first[STAGE_NAME_MAX]; /* the first stage whose key differs, "" when none */
    char *why;                  /* its key's differing fields ("    path: a -> b" lines), owned */
    strbuf roots;               /* other stages that diverge with all their inputs the same */
} cmp;

static int same_key(const rstage *x, const rstage *y) {
    return x && y && x->cache_key && y->cache_key && !strcmp(x->cache_key, y->cache_key);
}

/* "ran", "reused from A", "reused from 2026…", "failed", ... */
static void how(char *buf, size_t n, const rstage *x, const rrun *other, const char *other_name) {
    if (!x) snprintf(buf, n, "-");
    else if (!strcmp(x->status, "ok")) snprintf(buf, n, "ran");
    else if (!strcmp(x->status, "cached") && x->cached_from && !strcmp(x->cached_from, other->id))
        snprintf(buf, n, "reused from %s", other_name);
    else if (!strcmp(x->status, "cached")) snprintf(buf, n, "reused from %s", x->cached_from ? x->cached_from : "?");
    else snprintf(buf, n, "%s", x->status);
}

/* 1 when every input of y carries the same artifact in x. */
static int same_inputs(const rstage *x, const rstage *y) {
    if (x->n_in != y->n_in) return 0;
    for (int i = 0; i < y->n_in; i++) {
        const rinput *o = rstage_input(x, y->in[i].input);
        if (!o || strcmp(o->digest, y->in[i].digest)) return 0;
    }
    return 1;
}

static int find_divergence(cmp *c) {
    for (int i = 0; i < c->b->n_st; i++) {
        const rstage *y = &c->b->st[i], *x = rrun_stage(c->a, y->name);
        if (same_key(x, y)) continue;
        if (!c->first[0]) {
            snprintf(c->first, sizeof c->first, "%s", y->name);
            strbuf sb = STRBUF_INIT;
            if (!x) {
                if (sb_puts(&sb, "    the stage is not in run A\n")) return -1;
            } else if (!x->key_json || !y->key_json) {
                if (sb_printf(&sb, "    it has no cache key in run %s (it never became ready)\n", x->key_json ? "B" : "A"))
                    return -1;
            } else if (key_diff(&sb, x->key_json, y->key_json) < 0) {
                sb_free(&sb);
                return -1;
            }
            c->why = sb_detach(&sb);
        } else if (x && x->key_json && y->key_json && same_inputs(x, y)) {
            if (sb_printf(&c->roots, "%s%s", c->roots.len ? ", " : "", y->name)) return -1;
        }
    }
    for (int i = 0; i < c->a->n_st && !c->first[0]; i++)
        if (!rrun_stage(c->b, c->a->st[i].name)) {
            snprintf(c->first, sizeof c->first, "%s", c->a->st[i].name);
            c->why = xstrdup("    the stage is not in run B\n");
            if (!c->why) return -1;
        }
    return 0;
}

static int stages_section(rsection **sec, int *n, const cmp *c) {
    static const char *const hdr[] = {"STAGE", "KIND", "RUN A", "RUN B", "CACHE KEY"};
    rsection *x = report_section_add(sec, n, "stages", "Stages", "LlLLl", hdr);
    if (!x) return -1;
    int same = 0, rc = 0;
    for (int pass = 0; pass < 2 && !rc; pass++) {
        const rrun *r = pass ? c->a : c->b;
        for (int i = 0; i < r->n_st && !rc; i++) {
            const rstage *y = pass ? NULL : &r->st[i], *xa = rrun_stage(c->a, r->st[i].name);
            if (pass && rrun_stage(c->b, r->st[i].name)) continue; /* shown in the first pass */
            char ha[96], hb[96];
            how(ha, sizeof ha, xa, c->b, "B");
            how(hb, sizeof hb, y, c->a, "A");
            const char *key = !xa ? "only in B" : !y ? "only in A" : same_key(xa, y) ? "same" : "differs";
            same += same_key(xa, y);
            rc = table_cell(&x->t, 0, "%s", r->st[i].name) || table_cell(&x->t, 1, "%s", r->st[i].kind) ||
                 table_cell(&x->t, 2, "%s", ha) || table_cell(&x->t, 3, "%s", hb) || table_cell(&x->t, 4, "%s", key);
        }
    }
    if (!rc && !(x->note = xasprintf("%d of %d stages have the same cache key in both runs (their outputs are the same "
                                     "artifacts). ran: computed in that run; reused: linked from an earlier run.",
                                     same, x->t.n_rows - 1)))
        rc = -1;
    return rc;
}

static int params_section(rsection **sec, int *n, const cmp *c) {
    static const char *const hdr[] = {"STAGE", "PARAMETER", "RUN A", "RUN B"};
    rsection *x = NULL;
    for (int i = 0; i < c->b->n_st; i++) {
        const rstage *y = &c->b->st[i], *xa = rrun_stage(c->a, y->name);
        if (!xa) continue;
        /* both arrays are sorted by key: one merge */
        int ia = 0, ib = 0;
        while (ia < xa->n_p || ib < y->n_p) {
            int cmpk = ia == xa->n_p ? 1 : ib == y->n_p ? -1 : strcmp(xa->p[ia].key, y->p[ib].key);
            const char *key = cmpk <= 0 ? xa->p[ia].key : y->p[ib].key;
            const char *va = cmpk <= 0 ? xa->p[ia].value : NULL, *vb = cmpk >= 0 ? y->p[ib].value : NULL;
            ia += cmpk <= 0, ib += cmpk >= 0;
            if (va && vb && !strcmp(va, vb)) continue;
            if (!x && !(x = report_section_add(sec, n, "params", "Parameters that differ", "LLLL", hdr))) return -1;
            if (table_cell(&x->t, 0, "%s", y->name) || table_cell(&x->t, 1, "%s", key) ||
                table_cell(&x->t, 2, "%s", va ? va : "(absent)") || table_cell(&x->t, 3, "%s", vb ? vb : "(absent)"))
                return -1;
        }
    }
    return 0;
}

static int metrics_section(rsection **sec, int *n, const cmp *c) {
    static const char *const hdr[] = {"STAGE", "METRIC", "RUN A", "RUN B", "B − A", "%"};
    rsection *x = NULL;
    int equal = 0;
    for (int i = 0; i < c->b->n_st; i++) {
        const rstage *y = &c->b->st[i], *xa = rrun_stage(c->a, y->name);
        if (!xa) continue;
        int ia = 0, ib = 0;
        while (ia < xa->n_m || ib < y->n_m) {
            int k = ia == xa->n_m ? 1 : ib == y->n_m ? -1 : strcmp(xa->m[ia].key, y->m[ib].key);
            const char *key = k <= 0 ? xa->m[ia].key : y->m[ib].key;
            double va = k <= 0 ? xa->m[ia].value : NAN, vb = k >= 0 ? y->m[ib].value : NAN;
            ia += k <= 0, ib += k >= 0;
            if (va == vb || (isnan(va) && isnan(vb))) {
                equal++;
                continue;
            }
            if (!x && !(x = report_section_add(sec, n, "metrics", "Metrics that differ", "LLrrrr", hdr))) return -1;
            char a[32], b[32], d[32], p[32];
            fmt_num(a, sizeof a, va, "%.6g");
            fmt_num(b, sizeof b, vb, "%.6g");
            fmt_num(d, sizeof d, vb - va, "%+.4g");
            fmt_num(p, sizeof p, va != 0 ? 100 * (vb - va) / fabs(va) : NAN, "%+.2f%%");
            if (table_cell(&x->t, 0, "%s", y->name) || table_cell(&x->t, 1, "%s", key) || table_cell(&x->t, 2, "%s", a) ||
                table_cell(&x->t, 3, "%s", b) || table_cell(&x->t, 4, "%s", d) || table_cell(&x->t, 5, "%s", p))
                return -1;
        }
    }
    if (x && !(x->note = xasprintf("Latest values of the stages both runs have; %d more are equal. %% is (B − A)/|A|.",
                                   equal)))
        return -1;
    return 0;
}

static void print_header(const cmp *c, FILE *f) {
    char la[512], lb[512];
    report_run_line(la, sizeof la, c->a);
    report_run_line(lb, sizeof lb, c->b);
    fprintf(f, "A: %s\nB: %s\n", la, lb);
    fprintf(f, "recipe: %s\n", strcmp(c->a->recipe_sha, c->b->recipe_sha) ? "different texts" : "the same text");
}

static void print_divergence(const cmp *c, FILE *f) {
    if (!c->first[0]) {
        fprintf(f, "lineage: identical (every stage has the same cache key in both runs)\n");
        return;
    }
    fprintf(f, "lineage diverges first at stage %s:\n%s", c->first, c->why ? c->why : "");
    if (c->roots.len) fprintf(f, "also diverging with the same inputs in both runs: %s\n", sb_str(&c->roots));
}

/* The HTML page: header, divergence, the tables, and AUC of the models of B against A. */
static int compare_html(const char *path, const cmp *c, const rsection *sec, int n_sec, const rmodel *ma, int na,
                        const rmodel *mb, int nb) {
    doc d = {STRBUF_INIT, 0};
    char title[256], la[512], lb[512];
    snprintf(title, sizeof title, "smelt compare: %s and %s", c->a->name, c->b->name);
    html_begin(&d, title);
    report_run_line(la, sizeof la, c->a);
    report_run_line(lb, sizeof lb, c->b);
    doc_printf(&d, "<p class=\"run\">A: ");
    doc_text(&d, la);
    doc_printf(&d, "<br>B: ");
    doc_text(&d, lb);
    doc_printf(&d, "<br>recipe: %s</p>\n<h2 id=\"lineage\">Lineage</h2>\n<p>",
               strcmp(c->a->recipe_sha, c->b->recipe_sha) ? "different texts" : "the same text");
    if (!c->first[0]) doc_printf(&d, "Identical: every stage has the same cache key in both runs.");
    else {
        doc_printf(&d, "Diverges first at stage <b>");
        doc_text(&d, c->first);
        doc_printf(&d, "</b>:</p>\n<pre>");
        doc_text(&d, c->why ? c->why : "");
        doc_printf(&d, "</pre><p>");
        if (c->roots.len) {
            doc_printf(&d, "Also diverging with the same inputs in both runs: ");
            doc_text(&d, sb_str(&c->roots));
        }
    }
    doc_printf(&d, "</p>\n");
    for (int i = 0; i < n_sec; i++) html_section(&d, &sec[i]);
    /* AUC of each model in B against its AUC in A */
    double *x = xcalloc((size_t)nb + 1, sizeof *x), *y = xcalloc((size_t)nb + 1, sizeof *y);
    const char **lab = xcalloc((size_t)nb + 1, sizeof *lab);
    int rc = !x || !y || !lab ? -1 : 0;
    int pts = 0;
    for (int i = 0; !rc && i < nb; i++) {
        const rmodel *o = NULL;
        for (int j = 0; j < na; j++)
            if (!strcmp(ma[j].label, mb[i].label)) o = &ma[j];
        x[i] = o && o->eval ? rstage_metric(o->eval, "auc") : NAN;
        y[i] = mb[i].eval ? rstage_metric(mb[i].eval, "auc") : NAN;
        lab[i] = mb[i].label;
        pts += isfinite(x[i]) && isfinite(y[i]);
    }
    if (!rc && pts) {
        svg_axes a = {.title = "AUC of each model: run B against run A", .xlabel = "AUC in run A (mean over tasks)",
                      .ylabel = "AUC in run B (mean over tasks)", .width = 480, .height = 380,
                      .xmin = NAN, .xmax = NAN, .ymin = NAN, .ymax = NAN};
        svg_range(&a.xmin, &a.xmax, x, nb, 0);
        svg_range(&a.xmin, &a.xmax, y, nb, 0);
        a.ymin = a.xmin, a.ymax = a.xmax;
        svg_plot p;
        doc_printf(&d, "<h2 id=\"auc\">AUC</h2>\n<div class=\"figures\"><figure>\n");
        svg_begin(&p, &d, &a);
        double diag[2] = {p.xmin, p.xmax};
        svg_line(&p, diag, diag, 2, "#999", 1, 0);
        svg_markers(&p, x, y, nb, svg_color(0), 1, lab);
        svg_end(&p);
        doc_printf(&d, "<figcaption>Each model measured in both runs; above the dashed diagonal it scores higher in "
                       "run B.</figcaption></figure></div>\n");
    }
    free(x), free(y), free(lab);
    if (!rc) rc = html_end_write(&d, path);
    sb_free(&d.sb);
    return rc;
}

/* `smelt compare --models [RUN]...`: the models of the runs in one table. */
static int compare_models_cmd(const char *store_flag, char **specs, int n_specs, const char *sort, const char *kind) {
    store *s = NULL;
    if (cli_open_store(&s, store_flag, STORE_NOWRITE)) return cli_fail("compare");
    int n = n_specs ? n_specs : 1, status = 0;
    rrun *runs = xcalloc((size_t)n, sizeof *runs);
    rmodel **ms = xcalloc((size_t)n, sizeof *ms);
    int *nm = xcalloc((size_t)n, sizeof *nm), loaded = 0;
    if (!runs || !ms || !nm) status = cli_fail("compare");
    for (; !status && loaded < n; loaded++) {
        char id[RUN_ID_MAX];
        if (store_run_resolve(s, n_specs ? specs[loaded] : "latest", id) || rrun_load(&runs[loaded], s, id)) {
            status = cli_fail("compare");
            break;
        }
        if (report_models(&ms[loaded], &nm[loaded], &runs[loaded], s)) {
            loaded++;
            status = cli_fail("compare");
        }
    }
    if (!status && compare_models_print(stdout, runs, ms, nm, n, sort, kind)) status = cli_fail("compare");
    for (int i = 0; i < loaded; i++) {
        free(ms[i]);
        rrun_free(&runs[i]);
    }
    free(runs), free(ms), free(nm);
    store_close(s);
    return status;
}

int cmd_compare(int argc, char **argv) {
    const char *store_flag, *html = NULL, *sort = NULL, *kind = NULL;
    int models = 0;
    const cli_opt opts[] = {{"html", 1, 'H', &html, NULL},
                            {"models", 0, 'M', NULL, &models},
                            {"sort", 1, 'S', &sort, NULL},
                            {"kind", 1, 'K', &kind, NULL},
                            {0}};
    if (cli_args("compare", argc, argv, opts, 0, COMPARE_MAX_RUNS, "expected two run ids (RUN_A RUN_B)", &store_flag))
        return EXIT_USAGE;
    int n_pos = argc - optind;
    if (models && html)
        return cli_usage_error("compare", "--html compares two runs; --models prints a table (leave out one of them)");
    if (!models && (sort || kind))
        return cli_usage_error("compare", "--%s goes with --models (smelt compare --models [RUN]... --%s %s)",
                               sort ? "sort" : "kind", sort ? "sort" : "kind", sort ? sort : kind);
    if (!models && n_pos != 2)
        return cli_usage_error("compare", "expected two run ids (RUN_A RUN_B), or --models [RUN]... for the models of "
                                          "one or more runs side by side");
    if (sort && !compare_sort_valid(sort))
        return cli_usage_error("compare", "unknown --sort key '%s': use auc, auc-per-ms, params, bytes, ttft or tpot",
                               sort);
    if (kind && !*kind) return cli_usage_error("compare", "--kind needs a stage kind: train, prune, quantize, command");
    if (models) return compare_models_cmd(store_flag, argv + optind, n_pos, sort, kind);
    if (html && cli_check_out_path("--html", html)) return cli_fail("compare");
    store *s = NULL;
    char ida[RUN_ID_MAX], idb[RUN_ID_MAX];
    int status = cli_open_run("compare", store_flag, STORE_NOWRITE, argv[optind], &s, ida, NULL);
    if (status) return status;
    rrun a, b;
    memset(&a, 0, sizeof a), memset(&b, 0, sizeof b);
    cmp c = {.a = &a, .b = &b, .roots = STRBUF_INIT};
    rsection *sec = NULL;
    rmodel *ma = NULL, *mb = NULL;
    int ns = 0, na = 0, nb = 0;
    if (store_run_resolve(s, argv[optind + 1], idb) || rrun_load(&a, s, ida) || rrun_load(&b, s, idb) ||
        find_divergence(&c) || stages_section(&sec, &ns, &c) || params_section(&sec, &ns, &c) ||
        metrics_section(&sec, &ns, &c) || report_models(&ma, &na, &a, s) || report_models(&mb, &nb, &b, s) ||
        compare_models_section(&sec, &ns, ma, na, mb, nb)) {
        status = cli_fail("compare");
        goto out;
    }
    print_header(&c, stdout);
    print_divergence(&c, stdout);
    report_sections_print(sec, ns, stdout);
    if (ns == 1 + (na + nb > 0)) printf("\nno parameter or metric differs\n");
    if (html) {
        if (compare_html(html, &c, sec, ns, ma, na, mb, nb)) status = cli_fail("compare");
        else printf("\nwrote %s\n", html);
    }
out:
    report_sections_free(sec, ns);
    free(ma), free(mb);
    free(c.why);
    sb_free(&c.roots);
    rrun_free(&a);
    rrun_free(&b);
    store_close(s);
    return status;
}
