/* error.c: the thread-local error slot and allocation helpers that fill it. */
#include "common/error.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ERR_CAP 4096

static _Thread_local char err_buf[ERR_CAP];
static _Thread_local err_kind err_cur = ERR_NONE;

int err_set(err_kind kind, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err_buf, sizeof err_buf, fmt, ap);
    va_end(ap);
    err_cur = kind;
    return -1;
}

int err_prefix(const char *fmt, ...) {
    char pre[1024], old[ERR_CAP];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(pre, sizeof pre, fmt, ap);
    va_end(ap);
    memcpy(old, err_buf, sizeof old);
    size_t np = strlen(pre), no = strlen(old);
    if (np > sizeof err_buf - 1) np = sizeof err_buf - 1;
    if (no > sizeof err_buf - 1 - np) no = sizeof err_buf - 1 - np;
    memcpy(err_buf, pre, np);
    memcpy(err_buf + np, old, no);
    err_buf[np + no] = 0;
    if (err_cur == ERR_NONE) err_cur = ERR_INTERNAL;
    return -1;
}

int err_errno(const char *fmt, ...) {
    int e = errno;
    char what[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    return err_set(e == ENOMEM ? ERR_NOMEM : ERR_IO, "%s: %s", what, strerror(e));
}

const char *err_msg(void) { return err_buf; }
err_kind err_kind_get(void) { return err_cur; }

void err_clear(void) {
    err_buf[0] = 0;
    err_cur = ERR_NONE;
}

void *xmalloc(size_t n) {
    void *p = malloc(n ? n : 1);
    if (!p) err_set(ERR_NOMEM, "out of memory allocating %zu bytes", n);
    return p;
}

void *xcalloc(size_t count, size_t size) {
    void *p = calloc(count ? count : 1, size ? size : 1);
    if (!p) err_set(ERR_NOMEM, "out of memory allocating %zu x %zu bytes", count, size);
    return p;
}

void *xrealloc(void *p, size_t n) {
    void *q = realloc(p, n ? n : 1);
    if (!q) err_set(ERR_NOMEM, "out of memory growing a buffer to %zu bytes", n);
    return q;
}

char *xstrdup(const char *s) { return xstrndup(s, strlen(s)); }

char *xstrndup(const char *s, size_t n) {
    char *p = xmalloc(n + 1);
    if (!p) return NULL;
    memcpy(p, s, n);
    p[n] = 0;
    return p;
}

char *xasprintf(const char *fmt, ...) {
    va_list ap, ap2;
    va_start(ap, fmt);
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    char *p = n < 0 ? NULL : xmalloc((size_t)n + 1);
    if (p) vsnprintf(p, (size_t)n + 1, fmt, ap2);
    va_end(ap2);
    return p;
}
