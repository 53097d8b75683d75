/* rtable.h: the tables of `smelt report` and `smelt compare` (cmd/util.h's table with an
 * alignment per column), printed in a terminal within a width (columns marked truncatable shrink,
 * widest first, with an ellipsis) or as an HTML <table>. Also the document buffer the HTML pages
 * are written into: appends stop at the first allocation failure, which doc_finish reports. */
#ifndef SMELT_CMD_RTABLE_H
#define SMELT_CMD_RTABLE_H

#include <stdio.h>

#include "cmd/util.h"
#include "common/strbuf.h"

typedef struct {
    strbuf sb;
    int failed;
} doc;

void doc_printf(doc *d, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Appends text escaped for HTML and SVG (& < > " '). */
void doc_text(doc *d, const char *s);
/* 0, or -1 with ERR_NOMEM set when an append failed. */
int doc_finish(doc *d);

/* A table whose columns are aligned by `align`, one letter per column ("Llrr"). */
int table_init_aligned(table *t, const char *align, const char *const *headers);
/* Prints within max_width columns (shrinking 'L' columns), `indent` spaces before each row; an
 * empty cell prints as "-". */
void table_print_fit(const table *t, FILE *f, int indent, int max_width);
/* An HTML table (class attribute cls); right-aligned columns get class "num". */
void table_html(const table *t, doc *d, const char *cls);

#endif
