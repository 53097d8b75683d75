/* data.h: the `data` stage kind as a library call: build a data artifact (train/valid/test splits)
 * and its calibration artifact from the stage's resolved parameters. The stage (data.c) wraps it;
 * tests and tools call it directly. */
#ifndef SMELT_STAGES_DATA_DATA_H
#define SMELT_STAGES_DATA_DATA_H

#include <cjson/cJSON.h>
#include <stdint.h>

/* Receives data statistics (examples_train, positives_test, ratings, ...). 0 or -1. */
typedef int (*data_metric_fn)(void *ctx, const char *key, double value);

/* Builds the artifact in out_dir (meta.json, tokenizer/, train.bin, valid.bin, test.bin) and the
 * calibration artifact in calib_dir (meta.json, tokenizer/, calibration.bin); both directories
 * exist. params: the data stage's parameters with defaults filled (as the recipe validator makes
 * them). Labels and parameters are checked before any work. 0 or -1 (error slot names the file
 * and line of bad input). */
int data_build(const cJSON *params, int64_t seed, const char *out_dir, const char *calib_dir, data_metric_fn metric,
               void *metric_ctx);

#endif
