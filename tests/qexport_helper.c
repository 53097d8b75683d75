/* qexport_helper.c: a helper of tools/check_qexport.py and of the quantized CLI test (not a test):
 *   qexport_helper OUT_DIR                 writes every case of qexport_cases.h into OUT_DIR/<name>/
 *                                          (from $SMELT_SOURCE_DIR/tests/fixtures)
 *   qexport_helper quantize IN OUT CASE    quantizes the dense checkpoint IN by RTN with CASE's
 *                                          scheme and saves it in CASE's format into OUT */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "tests/qexport_cases.h"

static int quantize(const char *in, const char *out, const char *name) {
    for (int i = 0; i < QEXPORT_N_CASES; i++) {
        if (strcmp(qexport_cases[i].name, name)) continue;
        model_config cfg;
        model_weights w;
        if (checkpoint_load(in, &cfg, &w)) return -1;
        model_quant *q = qt_quantize_model(&cfg, &w, &qexport_cases[i].s);
        int rc = q ? qcheckpoint_save(out, &cfg, &w, q, qexport_cases[i].s.format, ST_F32) : -1;
        model_quant_free(q);
        weights_free(&w);
        return rc;
    }
    return err_set(ERR_INPUT, "no case named '%s' in tests/qexport_cases.h", name);
}

int main(int argc, char **argv) {
    if (argc == 5 && !strcmp(argv[1], "quantize")) {
        if (quantize(argv[2], argv[3], argv[4])) {
            fprintf(stderr, "qexport_helper: %s\n", err_msg());
            return 1;
        }
        return 0;
    }
    if (argc != 2) {
        fprintf(stderr, "usage: qexport_helper OUT_DIR | quantize IN OUT CASE\n");
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
