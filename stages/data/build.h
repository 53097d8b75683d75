/* build.h: from a source's corpus or records to the split files of a data artifact: temporal
 * splits per member, groups of candidates sharing a prompt prefix, the history that fits the
 * token budget, tokenization, statistics; random splits of prompt/response records. Internal to
 * stages/data. */
#ifndef SMELT_STAGES_DATA_BUILD_H
#define SMELT_STAGES_DATA_BUILD_H

#include <cjson/cJSON.h>
#include <stdint.h>

#include "model/tokenizer.h"
#include "stages/data/data.h"
#include "stages/data/dataset.h"
#include "stages/data/source.h"

#define BUILD_N_SPLITS 3 /* train, valid, test */

typedef struct {
    const tokenizer *tok;
    int32_t bos, eos, yes_id, no_id;
    int64_t history, history_tokens, max_tokens, candidates, min_history, train_groups;
    double valid_frac, test_frac;
    int64_t seed;
    data_metric_fn metric;
    void *metric_ctx;
} build_opts;

/* Writes out_dir/{train,valid,test}.bin from an interaction corpus and fills ds->splits. */
int build_interactions(const rs_corpus *c, const build_opts *o, const char *out_dir, dataset *ds);
/* Writes out_dir/{train,valid,test}.bin from prompt/response records (pairs) or documents (text)
 * and fills ds->splits and ds->kind. answers_auto: yes/no responses become label tokens; when they
 * all are but label_err is set (the labels are not single tokens), that message is the error. */
int build_records(const rs_records *r, int is_text, int answers_auto, const char *label_err, const build_opts *o,
                  const char *out_dir, dataset *ds);
/* Fills a split's info from the split file just written (counts, labels, longest example). */
int build_split_info(ds_split_info *si, const char *dir, const char *name);

#endif
