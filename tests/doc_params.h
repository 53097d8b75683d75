/* doc_params.h: a stage kind's parameter schema against the table of its docs page (STYLE.md 12:
 * a table that exists twice is checked by a test). The table is the rows "| `name` |" of the page's
 * "### Parameters" section; maps are listed by their fields ("optim.lr"), and a union by the
 * fields of each of its map alternatives. */
#ifndef SMELT_TESTS_DOC_PARAMS_H
#define SMELT_TESTS_DOC_PARAMS_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "common/fsutil.h"
#include "stages/stage.h"

/* 1 (printed) when text lacks the row "| `name.field` |" (field NULL: "| `name` |"), else 0. */
static inline int doc_row(const char *text, const char *doc, const char *name, const char *field) {
    char row[128];
    snprintf(row, sizeof row, field ? "| `%s.%s` |" : "| `%s` |", name, field ? field : "");
    if (strstr(text, row)) return 0;
    printf("FAIL %s lacks the row of parameter %s\n", doc, row);
    return 1;
}

/* Returns the number of faults (a schema parameter without its row, or a row count that differs
 * from the schema's), each printed with its cause. doc is relative to $SMELT_SOURCE_DIR. */
static inline int doc_params_check(const char *kind, const char *doc) {
    const char *src = getenv("SMELT_SOURCE_DIR");
    char *path = xasprintf("%s/%s", src ? src : ".", doc), *text = NULL;
    const stage_kind *k = stage_kind_find(kind);
    int faults = 0, n = 0;
    if (!path || !k || fs_read_file(path, 0, &text, NULL)) {
        printf("FAIL reading %s for kind %s: %s\n", doc, kind, err_msg());
        free(path);
        return 1;
    }
    for (const param_spec *p = k->params; p->name; p++) {
        /* a map's fields; a union's fields of each map alternative (train's init {arch: ...} and
         * {from: ...} each have a row per field, even two of one name) and its own row */
        int maps = 0;
        for (int i = 0; p->type == P_UNION ? p->alts[i].name != NULL : i < 1; i++) {
            const param_spec *a = p->type == P_UNION ? &p->alts[i] : p;
            if (a->type != P_MAP || !a->fields) continue;
            for (const param_spec *f = a->fields; f->name; f++) faults += doc_row(text, doc, p->name, f->name), n++;
            maps++;
        }
        if (p->type == P_UNION || !maps) faults += doc_row(text, doc, p->name, NULL), n++;
    }
    int rows = 0;
    const char *sec = strstr(text, "### Parameters"), *end = sec ? strstr(sec + 1, "\n### ") : NULL;
    for (const char *q = sec; q && (q = strstr(q, "\n| `")) && (!end || q < end); q++) rows++;
    if (rows != n) printf("FAIL %s's parameter table has %d rows, the schema of %s %d\n", doc, rows, kind, n), faults++;
    free(text), free(path);
    return faults;
}

#endif
