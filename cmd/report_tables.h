/* report_tables.h: the sections of `smelt report` (the paper's tables for one run), built once
 * and printed either in a terminal (report_sections_print, within 100 columns) or into the HTML
 * page (report_html.c). */
#ifndef SMELT_CMD_REPORT_TABLES_H
#define SMELT_CMD_REPORT_TABLES_H

#include <stdio.h>

#include "cmd/report_data.h"
#include "cmd/rtable.h"

#define REPORT_WIDTH 100

typedef struct {
    char id[32];      /* an anchor: "models", "serving", ... */
    char title[96];
    char *note;       /* owned; a sentence under the title, or NULL */
    table t;
} rsection;

/* Every section that has rows, in the order they are shown. */
int report_sections(rsection **out, int *n, const rrun *r, const rmodel *ms, int n_models, store *s);
/* Appends an empty section with a table of these columns (table_init_aligned); NULL when out of memory. */
rsection *report_section_add(rsection **sec, int *n, const char *id, const char *title, const char *align,
                             const char *const *hdr);
void report_sections_free(rsection *sec, int n);
void report_sections_print(const rsection *sec, int n, FILE *f);
/* "run ID (NAME): STATUS, N stages (A run, B cached, C failed), TIME" */
void report_run_line(char *buf, size_t n, const rrun *r);

#endif
