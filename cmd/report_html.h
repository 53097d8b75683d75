/* report_html.h: the self-contained HTML pages of `smelt report --html` and `smelt compare
 * --html`: one file, inline CSS and SVG, no script and nothing fetched. */
#ifndef SMELT_CMD_REPORT_HTML_H
#define SMELT_CMD_REPORT_HTML_H

#include "cmd/report_tables.h"

void html_begin(doc *d, const char *title);
void html_section(doc *d, const rsection *sec);
/* Closes the page and writes it to path atomically. 0 or -1. */
int html_end_write(doc *d, const char *path);

/* The report of one run: its sections, then the figures. */
int report_html_write(const char *path, const rrun *r, const rmodel *ms, int n_models, const rsection *sec, int n_sec,
                      store *s);

#endif
