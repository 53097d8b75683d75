/* util.h: helpers shared by the subcommands (cmd/util.c). */
#ifndef SMELT_CMD_UTIL_H
#define SMELT_CMD_UTIL_H

#include <stdarg.h>
#include <stdio.h>

#include "store/store.h"

/* Opens the store of --store (flag may be NULL), else $SMELT_STORE, else ./smelt-store. */
int cli_open_store(store **s, const char *flag, int flags);
/* The absolute path of the running smelt binary (caller frees). */
char *cli_self_exe(void);

/* A table of text cells printed with aligned columns; the first row is the header. */
typedef struct {
    int n_cols, n_rows;
    char **cells;
} table;
int table_init(table *t, int n_cols, const char *const *headers);
/* Sets a cell of the current row; column 0 starts a new row. */
int table_cell(table *t, int col, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
void table_print(table *t, FILE *f);
void table_free(table *t);
void fmt_seconds(char *buf, size_t n, double s);

#endif
