/* shared_dir.h: how a C test uses the shared data folder (../shared; SMELT_SHARED_DIR names it).
 * The convention of every test (README "Tests"): a part that needs a file from it runs when the
 * file is there; otherwise the test prints ONE line, "skip: <what>: <path> is absent ...", goes
 * on with the rest, and exits SHARED_SKIPPED_ALL (77, ctest's SKIP_RETURN_CODE) when it skipped
 * everything. With SMELT_REQUIRE_SHARED=1 (CI sets it) a missing folder or file is a failure:
 * the test says which and exits 1 at once. Call shared_dir() first thing in main, so that a
 * test that needs the folder fails at its start when it is required and absent. */
#ifndef SMELT_TESTS_SHARED_DIR_H
#define SMELT_TESTS_SHARED_DIR_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define SHARED_SKIPPED_ALL 77

static inline int shared_required(void) {
    const char *e = getenv("SMELT_REQUIRE_SHARED");
    return e && !strcmp(e, "1");
}

/* The folder: $SMELT_SHARED_DIR (CMake sets it), else ../shared. */
static inline const char *shared_dir(void) {
    const char *d = getenv("SMELT_SHARED_DIR");
    if (!d || !d[0]) d = "../shared";
    struct stat sb;
    if (shared_required() && (stat(d, &sb) || !S_ISDIR(sb.st_mode))) {
        fprintf(stderr, "FAIL: the shared folder %s is absent and SMELT_REQUIRE_SHARED=1: the tests that need it "
                        "must run (set SMELT_SHARED_DIR to it)\n", d);
        exit(1);
    }
    return d;
}

/* 1 when <shared>/rel exists (its path in path[cap]); otherwise the skip line for `what` (the
 * part of the test that needs it) and 0, or, with SMELT_REQUIRE_SHARED=1, a failure (exit 1). */
static inline int shared_file(char *path, size_t cap, const char *rel, const char *what) {
    snprintf(path, cap, "%s/%s", shared_dir(), rel);
    struct stat sb;
    if (!stat(path, &sb)) return 1;
    if (shared_required()) {
        fprintf(stderr, "FAIL: %s needs %s, which is absent, and SMELT_REQUIRE_SHARED=1\n", what, path);
        exit(1);
    }
    printf("skip: %s: %s is absent (set SMELT_SHARED_DIR to the shared folder)\n", what, path);
    return 0;
}

/* SmolLM2-135M-Instruct's GGUF: $SMELT_SMOLLM2 when set, else the shared folder's (as shared_file). */
static inline int shared_smollm2(char *path, size_t cap, const char *what) {
    const char *e = getenv("SMELT_SMOLLM2");
    if (e && e[0]) return snprintf(path, cap, "%s", e), 1;
    return shared_file(path, cap, "models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf", what);
}

#endif
