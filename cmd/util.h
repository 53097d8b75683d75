/* util.h: helpers shared by the subcommands (cmd/util.c). */
#ifndef SMELT_CMD_UTIL_H
#define SMELT_CMD_UTIL_H

#include <stdarg.h>
#include <stdio.h>

#include "store/runs.h"
#include "store/store.h"

/* Opens the store of --store (flag may be NULL), else $SMELT_STORE, else ./smelt-store. */
int cli_open_store(store **s, const char *flag, int flags);

/* One option of a command besides --store: `--name VALUE` (has_arg: *str = VALUE) or `--name`
 * (*flag = 1); letter is its short form or a code above 255. A table ends with {0}. */
typedef struct {
    const char *name;
    int has_arg, letter;
    const char **str;
    int *flag;
} cli_opt;
/* Parses --store DIR and the command's options, and checks that there are min_pos to max_pos
 * positional arguments (they start at argv[optind]); `expected` says what they are. Returns 0,
 * or EXIT_USAGE after printing the usage error. */
int cli_args(const char *cmd, int argc, char **argv, const cli_opt *opts, int min_pos, int max_pos,
             const char *expected, const char **store_flag);
/* Opens the store, resolves RUN (an id, a unique prefix or "latest"; NULL: "latest") and, when rr
 * is not NULL, loads the run's row (the caller frees it). Returns 0, or the exit status after
 * printing the error (the store is then closed, *s NULL). */
int cli_open_run(const char *cmd, const char *store_flag, int flags, const char *spec, store **s, char run[RUN_ID_MAX],
                 run_row *rr);
/* Bad input before any work: the folder of an output file named by `flag` must exist (ERR_INPUT). */
int cli_check_out_path(const char *flag, const char *path);
/* The absolute path of the running smelt binary (caller frees). */
char *cli_self_exe(void);

/* A table of text cells printed with aligned columns; the first row is the header. align, when
 * set (table_init_aligned, cmd/rtable.h), holds one letter per column: 'l' left, 'r' right,
 * 'L' left and truncatable. */
typedef struct {
    int n_cols, n_rows;
    char **cells;
    char *align;
} table;
int table_init(table *t, int n_cols, const char *const *headers);
/* Sets a cell of the current row (replacing what it held); column 0 starts a new row. */
int table_cell(table *t, int col, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
void table_print(table *t, FILE *f);
void table_free(table *t);
void fmt_seconds(char *buf, size_t n, double s);
/* Display width of UTF-8 text: code points, assuming one column each. */
int text_width(const char *s);

#endif
