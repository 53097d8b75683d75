/* check.h: minimal assertions for the C tests: each failing check prints file:line and the
 * values, and the test's main returns check_failures() != 0. */
#ifndef SMELT_TESTS_CHECK_H
#define SMELT_TESTS_CHECK_H

#include <stdio.h>
#include <string.h>

static int check_failed_count;

#define CHECK(cond)                                                                 \
    do {                                                                            \
        if (!(cond)) {                                                              \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
            check_failed_count++;                                                   \
        }                                                                           \
    } while (0)

#define CHECK_STR(a, b)                                                                             \
    do {                                                                                            \
        const char *_a = (a), *_b = (b);                                                            \
        if (!_a || !_b || strcmp(_a, _b)) {                                                         \
            fprintf(stderr, "%s:%d: CHECK_STR failed: '%s' != '%s'\n", __FILE__, __LINE__,          \
                    _a ? _a : "(null)", _b ? _b : "(null)");                                       \
            check_failed_count++;                                                                   \
        }                                                                                           \
    } while (0)

#define CHECK_INT(a, b)                                                                                      \
    do {                                                                                                     \
        long long _a = (long long)(a), _b = (long long)(b);                                                  \
        if (_a != _b) {                                                                                      \
            fprintf(stderr, "%s:%d: CHECK_INT failed: %s = %lld, expected %lld\n", __FILE__, __LINE__, #a, _a, \
                    _b);                                                                                     \
            check_failed_count++;                                                                            \
        }                                                                                                    \
    } while (0)

/* Runs fn and checks that it returned 0, printing the error slot otherwise. */
#define CHECK_OK(call)                                                                                \
    do {                                                                                              \
        if ((call) != 0) {                                                                            \
            fprintf(stderr, "%s:%d: %s failed: %s\n", __FILE__, __LINE__, #call, err_msg());          \
            check_failed_count++;                                                                     \
        }                                                                                             \
    } while (0)

static inline int check_report(const char *name) {
    if (check_failed_count) fprintf(stderr, "%s: %d checks failed\n", name, check_failed_count);
    else printf("%s: all checks passed\n", name);
    return check_failed_count ? 1 : 0;
}

#endif
