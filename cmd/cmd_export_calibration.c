/* cmd_export_calibration.c: `smelt export-calibration DIR [--split NAME] [-o FILE]`: the token ids of a
 * data set's split (the calibration set of `smelt checkout RUN data.calibration -o DIR`), one JSON array
 * per sequence and line, so that another tool (llmcompressor, tools/llmcompressor_compare.py) calibrates
 * on exactly the sequences smelt's quantize stage used. */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "cmd/commands.h"
#include "cmd/util.h"
#include "common/error.h"
#include "stages/data/dataset.h"

int cmd_export_calibration(int argc, char **argv) {
    static const struct option opts[] = {{"split", required_argument, 0, 'p'}, {"output", required_argument, 0, 'o'},
                                         {0, 0, 0, 0}};
    const char *split = NULL, *out = NULL;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "p:o:", opts, NULL)) != -1) {
        if (c == 'p') split = optarg;
        else if (c == 'o') out = optarg;
        else return cli_usage_error("export-calibration", "unknown option");
    }
    if (optind != argc - 1) return cli_usage_error("export-calibration", "expected one data set directory");
    dataset ds;
    ds_split sp;
    if (dataset_open(&ds, argv[optind])) return cli_fail("export-calibration");
    if (!split) split = dataset_split_info(&ds, "calibration") ? "calibration" : "train";
    if (dataset_split_open(&ds, split, &sp)) {
        dataset_close(&ds);
        return cli_fail("export-calibration");
    }
    FILE *f = out ? fopen(out, "w") : stdout;
    int status = EXIT_OK;
    if (!f) {
        err_errno("cannot create %s", out);
        status = cli_fail("export-calibration");
    }
    for (int64_t i = 0; f && i < sp.n_examples; i++) {
        const int32_t *t = ds_example_tokens(&sp, i);
        fputc('[', f);
        for (uint32_t k = 0; k < sp.ex[i].n_tokens; k++) fprintf(f, k ? ", %d" : "%d", t[k]);
        fputs("]\n", f);
    }
    if (f && out && fclose(f)) {
        err_errno("cannot write %s", out);
        status = cli_fail("export-calibration");
    }
    if (out && status == EXIT_OK)
        fprintf(stderr, "%s: %lld sequences, %lld tokens of split %s\n", out, (long long)sp.n_examples,
                (long long)sp.n_tokens, split);
    ds_split_close(&sp);
    dataset_close(&ds);
    return status;
}
