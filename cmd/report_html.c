/* report_html.c: the HTML page of `smelt report --html` (and the frame `smelt compare --html`
 * shares): the run's tables, then its figures in a grid. Self-contained: inline CSS and SVG,
 * no script, no request to anywhere; written atomically (a reader never sees half a page). */
#include "cmd/report_html.h"

#include <stdlib.h>
#include <string.h>

#include "cmd/report_plots.h"
#include "common/fsutil.h"

static const char css[] =
    "body{font-family:'DejaVu Sans',Arial,sans-serif;margin:24px;color:#222;max-width:1320px}"
    "h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:26px 0 6px;border-bottom:1px solid #ddd}"
    "p.run{color:#555;margin:0 0 10px}p.note{color:#555;font-size:12px;margin:4px 0 0;max-width:1000px}"
    "table{border-collapse:collapse;font-size:13px}th,td{padding:3px 10px;border-bottom:1px solid #eee;"
    "text-align:left;white-space:nowrap}th{background:#f4f4f4}td.num,th.num{text-align:right;"
    "font-variant-numeric:tabular-nums}"
    ".figures{display:flex;flex-wrap:wrap;gap:18px}figure{margin:0;border:1px solid #ddd;padding:8px;"
    "background:#fff}figcaption{font-size:12px;color:#555;max-width:580px;margin-top:4px}"
    "nav a{margin-right:12px;font-size:13px}";

void html_begin(doc *d, const char *title) {
    doc_printf(d, "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>");
    doc_text(d, title);
    doc_printf(d, "</title><style>%s</style></head><body>\n<h1>", css);
    doc_text(d, title);
    doc_printf(d, "</h1>\n");
}

void html_section(doc *d, const rsection *sec) {
    doc_printf(d, "<h2 id=\"%s\">", sec->id);
    doc_text(d, sec->title);
    doc_printf(d, "</h2>\n");
    table_html(&sec->t, d, sec->id);
    if (sec->note) {
        doc_printf(d, "<p class=\"note\">");
        doc_text(d, sec->note);
        doc_printf(d, "</p>\n");
    }
}

int html_end_write(doc *d, const char *path) {
    doc_printf(d, "</body></html>\n");
    if (doc_finish(d)) return -1;
    return fs_write_atomic(path, d->sb.buf, d->sb.len);
}

/* One group of figures under a heading; the heading is dropped when no figure came. */
typedef int (*plot_fn)(doc *d, const rrun *r, store *s);

static int figure_group(doc *d, const char *id, const char *title, plot_fn fn, const rrun *r, store *s) {
    size_t mark = d->sb.len;
    doc_printf(d, "<h2 id=\"%s\">%s</h2>\n<div class=\"figures\">\n", id, title);
    int k = fn(d, r, s);
    if (k < 0) return -1;
    if (k == 0 && !d->failed) { /* nothing to show: take the heading back */
        d->sb.len = mark;
        d->sb.buf[mark] = 0;
        return 0;
    }
    doc_printf(d, "</div>\n");
    return k;
}

int report_html_write(const char *path, const rrun *r, const rmodel *ms, int n_models, const rsection *sec, int n_sec,
                      store *s) {
    doc d = {STRBUF_INIT, 0};
    char title[RUN_ID_MAX + 160], line[512];
    snprintf(title, sizeof title, "smelt report: %s", r->name);
    html_begin(&d, title);
    report_run_line(line, sizeof line, r);
    doc_printf(&d, "<p class=\"run\">");
    doc_text(&d, line);
    doc_printf(&d, "</p>\n<nav>");
    for (int i = 0; i < n_sec; i++) {
        doc_printf(&d, "<a href=\"#%s\">", sec[i].id);
        doc_text(&d, sec[i].title);
        doc_printf(&d, "</a>");
    }
    doc_printf(&d, "<a href=\"#plots\">Plots</a></nav>\n");
    for (int i = 0; i < n_sec; i++) html_section(&d, &sec[i]);
    int rc = 0;
    doc_printf(&d, "<div id=\"plots\"></div>\n");
    size_t mark = d.sb.len;
    doc_printf(&d, "<h2 id=\"tradeoffs\">AUC against size and latency</h2>\n<div class=\"figures\">\n");
    int k = plot_auc_tradeoffs(&d, ms, n_models);
    if (k < 0) rc = -1;
    else if (k == 0 && !d.failed) d.sb.len = mark, d.sb.buf[mark] = 0;
    else doc_printf(&d, "</div>\n");
    if (!rc) rc = figure_group(&d, "errors-prune", "Pruning errors per layer", plot_pruning, r, s) < 0 ||
                  figure_group(&d, "errors-quant", "Quantization errors per layer", plot_quantization, r, s) < 0 ||
                  figure_group(&d, "loss", "Training loss", plot_training, r, s) < 0 ||
                  figure_group(&d, "latency", "Serving latency", plot_latency, r, s) < 0;
    if (rc) {
        sb_free(&d.sb);
        return -1;
    }
    rc = html_end_write(&d, path);
    sb_free(&d.sb);
    return rc;
}
