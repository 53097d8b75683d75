/* rtable.c: aligned text tables that fit a terminal width, the same tables as HTML, and the
 * sticky-error document buffer of the HTML pages. */
#include "cmd/rtable.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "cmd/util.h"
#include "common/error.h"

void doc_printf(doc *d, const char *fmt, ...) {
    if (d->failed) return;
    va_list ap;
    va_start(ap, fmt);
    char *s = NULL;
    int n = vasprintf(&s, fmt, ap);
    va_end(ap);
    if (n < 0 || sb_append(&d->sb, s, (size_t)n)) d->failed = 1;
    free(s);
}

void doc_text(doc *d, const char *s) {
    for (; s && *s && !d->failed; s++) {
        const char *e = *s == '&' ? "&amp;" : *s == '<' ? "&lt;" : *s == '>' ? "&gt;" : *s == '"' ? "&quot;"
                      : *s == '\'' ? "&#39;" : NULL;
        if (e ? sb_puts(&d->sb, e) : sb_putc(&d->sb, *s)) d->failed = 1;
    }
}

int doc_finish(doc *d) { return d->failed ? err_set(ERR_NOMEM, "out of memory while writing the page") : 0; }

int table_init_aligned(table *t, const char *align, const char *const *headers) {
    if (table_init(t, (int)strlen(align), headers)) return -1;
    t->align = xstrdup(align);
    return t->align ? 0 : -1;
}

static const char *cell_text(const table *t, int r, int c) {
    const char *s = t->cells[r * t->n_cols + c];
    return s && *s ? s : "-";
}

/* Prints the first `width` columns of s (an ellipsis replaces the rest when it is longer). */
static void put_clipped(FILE *f, const char *s, int width) {
    int w = text_width(s);
    if (w <= width) {
        fputs(s, f);
        return;
    }
    int keep = width - 1;
    for (const char *p = s; *p && keep >= 0; p++) {
        if (((unsigned char)*p & 0xC0) != 0x80 && keep-- == 0) break;
        fputc(*p, f);
    }
    fputs("\xe2\x80\xa6", f);
}

void table_print_fit(const table *t, FILE *f, int indent, int max_width) {
    int *w = calloc((size_t)t->n_cols, sizeof *w);
    if (!w) return;
    for (int r = 0; r < t->n_rows; r++)
        for (int c = 0; c < t->n_cols; c++) {
            int k = text_width(cell_text(t, r, c));
            if (k > w[c]) w[c] = k;
        }
    /* shrink the widest truncatable column, one character at a time, down to 6 */
    for (;;) {
        int total = indent, widest = -1;
        for (int c = 0; c < t->n_cols; c++) total += w[c] + (c ? 2 : 0);
        if (total <= max_width) break;
        for (int c = 0; c < t->n_cols; c++)
            if (t->align[c] == 'L' && w[c] > 6 && (widest < 0 || w[c] > w[widest])) widest = c;
        if (widest < 0) break;
        w[widest]--;
    }
    for (int r = 0; r < t->n_rows; r++) {
        fprintf(f, "%*s", indent, "");
        for (int c = 0; c < t->n_cols; c++) {
            const char *s = cell_text(t, r, c);
            int pad = w[c] - (text_width(s) < w[c] ? text_width(s) : w[c]);
            int last = c + 1 == t->n_cols;
            if (t->align[c] == 'r') fprintf(f, "%*s", pad, "");
            put_clipped(f, s, w[c]);
            if (t->align[c] != 'r' && !last) fprintf(f, "%*s", pad, "");
            if (!last) fputs("  ", f);
        }
        fputc('\n', f);
    }
    free(w);
}

void table_html(const table *t, doc *d, const char *cls) {
    doc_printf(d, "<table class=\"%s\">\n", cls);
    for (int r = 0; r < t->n_rows; r++) {
        doc_printf(d, "<tr>");
        for (int c = 0; c < t->n_cols; c++) {
            const char *tag = r == 0 ? "th" : "td";
            doc_printf(d, "<%s%s>", tag, t->align[c] == 'r' ? " class=\"num\"" : "");
            doc_text(d, cell_text(t, r, c));
            doc_printf(d, "</%s>", tag);
        }
        doc_printf(d, "</tr>\n");
    }
    doc_printf(d, "</table>\n");
}
