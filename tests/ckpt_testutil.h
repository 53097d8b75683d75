/* ckpt_testutil.h: what the checkpoint tests share: a failure counter with file:line messages,
 * error-slot expectations (kind and substrings of the message), temp folders, fixture paths. */
#ifndef SMELT_TESTS_CKPT_TESTUTIL_H
#define SMELT_TESTS_CKPT_TESTUTIL_H

#include <stddef.h>

#include "common/error.h"
#include "model/config.h"
#include "model/weights.h"

extern int t_failures;

void t_fail(const char *file, int line, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
#define CHECK(cond, ...)                                         \
    do {                                                         \
        if (!(cond)) t_fail(__FILE__, __LINE__, __VA_ARGS__);    \
    } while (0)
/* rc must be -1 with an error of `kind` whose message contains every string of the NULL-ended list. */
#define EXPECT_ERR(rc, kind, ...) t_expect_err(__FILE__, __LINE__, (rc), (kind), __VA_ARGS__, (const char *)NULL)
void t_expect_err(const char *file, int line, int rc, err_kind kind, ...);
/* rc must be 0; prints the error message otherwise. */
#define EXPECT_OK(rc, what) t_expect_ok(__FILE__, __LINE__, (rc), (what))
void t_expect_ok(const char *file, int line, int rc, const char *what);

/* A fresh folder under $TMPDIR (or /tmp); t_tmp_cleanup removes it. Returns a static path. */
const char *t_tmpdir(void);
void t_tmp_cleanup(void);
/* "<tmpdir>/<name>" in a static ring of buffers (valid for the next 7 calls). */
const char *t_path(const char *name);
/* "$SMELT_SOURCE_DIR/tests/fixtures/<name>" (static ring as above). */
const char *t_fixture(const char *name);
void t_write(const char *path, const void *data, size_t n);
/* Copies every regular file of folder src into folder dst (created). */
void t_copy_dir(const char *dst, const char *src);
/* Fields of two configs (layers too) equal; reports the first difference. */
int t_config_equal(const model_config *a, const model_config *b);
/* Deterministic pseudo-random floats in [-1, 1). */
void t_fill_random(float *x, size_t n, unsigned seed);
/* Ends the test: summary line, cleanup, exit status 0 or 1. */
int t_finish(const char *name);

#endif
