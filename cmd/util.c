/* util.c: helpers shared by the subcommands: opening the store named by --store/$SMELT_STORE,
 * the path of this binary, and aligned table printing for human-readable output. */
#include "cmd/util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <getopt.h>

#include "cmd/cli.h"
#include "common/error.h"
#include "common/fsutil.h"

int cli_open_store(store **s, const char *flag, int flags) {
    const char *dir = store_default_dir(flag);
    return store_open(s, dir, flags);
}

#define CLI_MAX_OPTS 16

int cli_args(const char *cmd, int argc, char **argv, const cli_opt *opts, int min_pos, int max_pos,
             const char *expected, const char **store_flag) {
    struct option all[CLI_MAX_OPTS + 2] = {{"store", required_argument, 0, 's'}};
    char shorts[2 * CLI_MAX_OPTS + 3] = "s:";
    int n = 0;
    for (; opts && opts[n].name && n < CLI_MAX_OPTS; n++) {
        all[n + 1] = (struct option){opts[n].name, opts[n].has_arg ? required_argument : no_argument, 0, opts[n].letter};
        if (opts[n].letter < 256) {
            size_t k = strlen(shorts);
            shorts[k] = (char)opts[n].letter;
            if (opts[n].has_arg) shorts[k + 1] = ':';
        }
    }
    *store_flag = NULL;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, shorts, all, NULL)) != -1) {
        int k = 0;
        while (k < n && opts[k].letter != c) k++;
        if (c == 's') *store_flag = optarg;
        else if (k == n) return cli_usage_error(cmd, "unknown option");
        else if (opts[k].has_arg) *opts[k].str = optarg;
        else *opts[k].flag = 1;
    }
    int n_pos = argc - optind;
    if (n_pos < min_pos || n_pos > max_pos) return cli_usage_error(cmd, "%s", expected);
    return 0;
}

int cli_open_run(const char *cmd, const char *store_flag, int flags, const char *spec, store **s, char run[RUN_ID_MAX],
                 run_row *rr) {
    *s = NULL;
    if (cli_open_store(s, store_flag, flags) || store_run_resolve(*s, spec ? spec : "latest", run) ||
        (rr && store_run_load(*s, run, rr))) {
        int status = cli_fail(cmd);
        store_close(*s);
        *s = NULL;
        return status;
    }
    return 0;
}

int cli_check_out_path(const char *flag, const char *path) {
    char *dir = fs_dir_of(path);
    int ok = dir && fs_is_dir(dir);
    if (dir && !ok) err_set(ERR_INPUT, "%s %s: the folder %s does not exist; create it or name another file", flag, path, dir);
    free(dir);
    return ok ? 0 : -1;
}

char *cli_self_exe(void) {
    char buf[4096];
    ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 1);
    if (n <= 0) {
        err_errno("cannot find the smelt binary (/proc/self/exe)");
        return NULL;
    }
    buf[n] = 0;
    return xstrdup(buf);
}

int table_init(table *t, int n_cols, const char *const *headers) {
    memset(t, 0, sizeof *t);
    t->n_cols = n_cols;
    t->cells = NULL;
    for (int c = 0; c < n_cols; c++)
        if (table_cell(t, c, "%s", headers[c])) return -1;
    return 0;
}

int table_cell(table *t, int col, const char *fmt, ...) {
    if (col == 0) {
        char **nc = xrealloc(t->cells, (size_t)(t->n_rows + 1) * (size_t)t->n_cols * sizeof *nc);
        if (!nc) return -1;
        t->cells = nc;
        for (int c = 0; c < t->n_cols; c++) t->cells[t->n_rows * t->n_cols + c] = NULL;
        t->n_rows++;
    }
    va_list ap;
    va_start(ap, fmt);
    char *s = NULL;
    if (vasprintf(&s, fmt, ap) < 0) s = NULL;
    va_end(ap);
    if (!s) return err_set(ERR_NOMEM, "out of memory");
    char **cell = &t->cells[(t->n_rows - 1) * t->n_cols + col];
    free(*cell);
    *cell = s;
    return 0;
}

int text_width(const char *s) {
    int w = 0;
    for (; *s; s++) w += ((unsigned char)*s & 0xC0) != 0x80;
    return w;
}

void table_print(table *t, FILE *f) {
    int *w = calloc((size_t)t->n_cols, sizeof *w);
    if (!w) return;
    for (int r = 0; r < t->n_rows; r++)
        for (int c = 0; c < t->n_cols; c++) {
            const char *s = t->cells[r * t->n_cols + c];
            int k = s ? text_width(s) : 0;
            if (k > w[c]) w[c] = k;
        }
    for (int r = 0; r < t->n_rows; r++) {
        for (int c = 0; c < t->n_cols; c++) {
            const char *s = t->cells[r * t->n_cols + c];
            if (!s) s = "";
            fputs(s, f);
            if (c + 1 < t->n_cols) fprintf(f, "%*s", w[c] - text_width(s) + 2, "");
        }
        fputc('\n', f);
    }
    free(w);
}

void table_free(table *t) {
    for (int i = 0; i < t->n_rows * t->n_cols; i++) free(t->cells[i]);
    free(t->cells);
    free(t->align);
    memset(t, 0, sizeof *t);
}

void fmt_seconds(char *buf, size_t n, double s) {
    if (!(s >= 0)) snprintf(buf, n, "-");
    else if (s < 10) snprintf(buf, n, "%.2fs", s);
    else if (s < 600) snprintf(buf, n, "%.1fs", s);
    else snprintf(buf, n, "%dm%02ds", (int)s / 60, (int)s % 60);
}
