/* error.h: the error slot. Library code records a message (cause and fix) and returns -1;
 * only cmd/ prints it and chooses the exit status. One slot per thread. */
#ifndef SMELT_ERROR_H
#define SMELT_ERROR_H

#include <stddef.h>

/* What kind of failure, which decides the exit status in cmd/. */
typedef enum {
    ERR_NONE = 0,
    ERR_INPUT,    /* bad usage or bad input (recipe, file, flag): exit 2 */
    ERR_IO,       /* the file system or a library failed: exit 1 */
    ERR_NOMEM,    /* an allocation failed: exit 1 */
    ERR_CORRUPT,  /* a stored object, checkpoint or archive does not verify: exit 2 */
    ERR_STAGE,    /* a stage's own work failed: exit 1 */
    ERR_INTERNAL, /* a bug (an impossible state): exit 1 */
} err_kind;

/* Records a formatted message of the given kind; returns -1 so that callers can
 * write `return err_set(ERR_INPUT, "...")`. */
int err_set(err_kind kind, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Prepends context ("loading x: ") to the current message, keeping its kind; returns -1. */
int err_prefix(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

const char *err_msg(void);   /* "" when no error was recorded */
err_kind err_kind_get(void);
void err_clear(void);

/* errno-based helper: "<what>: <strerror(errno)>" with kind ERR_IO. */
int err_errno(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Allocation helpers that record ERR_NOMEM on failure (and return NULL). */
void *xmalloc(size_t n);
void *xcalloc(size_t count, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);
char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
