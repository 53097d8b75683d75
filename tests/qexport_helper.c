/* qexport_helper.c: `qexport_helper OUT_DIR` writes every case of qexport_cases.h into
 * OUT_DIR/<name>/ (from $SMELT_SOURCE_DIR/tests/fixtures), for tools/check_qexport.py. Not a test. */
#include <stdio.h>
#include <stdlib.h>

#include "common/error.h"
#include "tests/qexport_cases.h"

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: qexport_helper OUT_DIR  (SMELT_SOURCE_DIR: the repository, default .)\n");
        return 2;
    }
    const char *src = getenv("SMELT_SOURCE_DIR") ? getenv("SMELT_SOURCE_DIR") : ".";
    char fx[1024], out[1024];
    snprintf(fx, sizeof fx, "%s/tests/fixtures", src);
    for (int i = 0; i < QEXPORT_N_CASES; i++) {
        snprintf(out, sizeof out, "%s/%s", argv[1], qexport_cases[i].name);
        if (qexport_write(&qexport_cases[i], fx, out)) {
            fprintf(stderr, "qexport_helper: %s: %s\n", qexport_cases[i].name, err_msg());
            return 1;
        }
        printf("%s\n", out);
    }
    return 0;
}
