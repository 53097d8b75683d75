/* train.h: what the files of the `train` stage share: its resolved options, the models it drives
 * (student, optional teacher) and the state of one run. train.c holds the kind's schema and the
 * run; init.c builds and saves models; policy.c runs KV-cache inference (the teacher's logits per
 * chunk, on-policy and sequence-level sampling); loop.c one training step and validation. */
#ifndef SMELT_STAGES_TRAIN_TRAIN_H
#define SMELT_STAGES_TRAIN_TRAIN_H

#include <cjson/cJSON.h>
#include <stdint.h>

#include "model/model.h"
#include "model/optim.h"
#include "model/safetensors.h"
#include "model/sample.h"
#include "stages/data/dataset.h"
#include "stages/stage.h"
#include "stages/train/batch.h"
#include "stages/train/loss.h"
#include "stages/train/state.h"

typedef struct {
    double fraction;      /* share of steps whose sequences are sampled (0: none) */
    int max_new_tokens;
    double temperature, top_p;
    int by_teacher;       /* 1: the teacher samples (sequence-level KD); 0: the student (on-policy) */
    int ce_sampled;       /* 1: CE on the sampled sequences (on_policy.ce: sampled); 0: on the data batch */
    int vocab;            /* ids the sampler may draw: the tokenizer's (set by the stage; 0: the model's) */
} policy_config;

typedef struct {
    const char *split, *valid_split;
    int seq_len;              /* 0 until resolved from the data */
    long_policy long_examples;
    int64_t steps, epochs, batch_tokens, batch_size, micro_tokens;
    int shuffle;
    loss_config loss;
    optim_config optim;
    policy_config policy;
    int select_best;          /* select: best_valid_loss */
    int64_t valid_every, valid_examples;
    int64_t checkpoint_every;
    st_dtype save_dtype;
    model_precision precision; /* of the products (the student's and the teacher's) */
} train_opts;

/* The teacher: its weights, the final hidden states of the current micro-batch, and a KV cache
 * for sequence-level sampling (policy.c). */
typedef struct {
    model m;
    kv_cache kv;
    int loaded;
    float *hidden;        /* [n_tokens, hidden] of the current micro-batch */
    size_t hidden_cap;
    int n_tokens;
    float *rows_hidden;   /* the rows a chunk asks for */
    size_t rows_cap;
} teacher_state;

/* One run of the stage on one rank. */
typedef struct {
    stage_ctx *ctx;
    train_opts o;
    dataset ds;
    ds_split train, valid;
    int have_ds, have_train, have_valid;
    model m;                 /* the student (trained) */
    optimizer opt;
    int have_model, have_opt;
    teacher_state teacher;
    int has_teacher;
    kv_cache gen_kv;         /* the student's cache for on-policy sampling */
    seq_unit *units, *valid_units; /* the training split and the validation examples fitted to seq_len */
    int64_t n_units, n_valid_units;
    fit_stats fit;
    data_stream stream;
    train_progress prog;
    batch_plan plan, valid_plan;
    seq_set local, sampled;
    int micro_tokens;        /* tokens of one forward/backward */
    loss_rows rows;          /* [micro_tokens] */
    int *sel;                /* [micro_tokens] */
    float *hsel, *dsel, *dhid; /* [micro_tokens, hidden] */
    float *best;             /* best weights (select: best_valid_loss) */
    int64_t total_steps;
    uint64_t seed;
    char *fingerprint;
} trainer;

/* What a pass over sequences measured, summed over ranks. */
typedef struct {
    double loss;
    loss_sums sums;
    int64_t tokens;
} pass_result;

/* ---- loop.c ---- */
/* One optimizer step (every rank): the next global batch, this rank's share (sampled when the step
 * is on-policy), forward/backward in micro-batches, the fixed-order gradient sum, AdamW.
 * A NaN or infinite loss stops before the update with ERR_STAGE naming the step. */
int train_step(trainer *t, pass_result *res);
/* The objective on the first valid_examples of the validation split (every rank, no gradients). */
int train_validate(trainer *t, pass_result *res);
/* Agrees on a status among ranks (after rank-local work such as writing a checkpoint). */
int train_agree(trainer *t, int rc);

/* Parses and checks the stage's parameters (cross-field rules; types and bounds are the schema's). */
int train_opts_parse(train_opts *o, const cJSON *p);

/* ---- init.c ---- */
/* Reads the architecture of a model path (HF folder or llama2.c file) without its weights. */
int train_read_config(const char *path, model_config *cfg);
/* The config of a random model from the init map, with the data set's vocabulary and special ids. */
int train_config_from_arch(model_config *cfg, const cJSON *arch, const dataset *ds, int seq_len);
/* Random weights: normal(0, std) matrices and embeddings (std 0: 1/sqrt(fan-in)), norms 1, biases 0,
 * from the seed. */
int train_init_random(model *m, const model_config *cfg, double std, uint64_t seed);
/* Loads a model from a path into m. */
int train_load_model(model *m, const char *path);
/* The config of a student that keeps the layers keep[0..n-1] of `full` (init: {from, layers}):
 * 0, or -1 (ERR_INPUT naming init.layers) for an empty list, an index outside the model's layers,
 * or indices that are not strictly increasing. */
int train_layers_config(model_config *out, const model_config *full, const int *keep, int n);
/* Loads the model at path and builds in m the student of its layers keep[0..n-1], in that order:
 * each kept layer's tensors, the embedding, the final norm and the LM head copied. */
int train_init_layers(model *m, const char *path, const int *keep, int n);
/* Writes out_dir: config.json, generation_config.json, model.safetensors (dtype) and the data set's
 * tokenizer files (so the folder loads in transformers and in smelt), with tokenizer.json and
 * tokenizer_config.json from tokenizer_save_hf for byte-level tokenizers: transformers' tokenizer
 * then gives the ids smelt trained with, BOS included. */
int train_save_model(const char *out_dir, const model *m, const dataset *ds, st_dtype dtype);

/* ---- policy.c ---- */
int teacher_open(teacher_state *t, const char *path, int capacity);
void teacher_close(teacher_state *t);
/* Runs the teacher's forward over a micro-batch (no gradients): its hidden states stay until the
 * next call. 0 or -1. */
int teacher_begin(teacher_state *t, const model_batch *b);
/* teacher_logits_fn over teacher_state: the LM head over the asked rows of the micro-batch. */
int teacher_logits(void *tctx, float *logits, const int *rows, int n);

/* Replaces the sequences of `in` by the prompts of their examples in split (the tokens before the
 * first answer token, fitted to seq_len - max_new_tokens by leaving out the oldest history lines:
 * fit_prompt) followed by up to max_new_tokens tokens sampled from gen (stopping after eos_id),
 * into out. Each sequence draws from its own RNG stream seeded by (seed, step, example), so the
 * result does not depend on the rank count. Sequences sampled by the student get SEQ_NO_CE. A
 * prompt that cannot fit is ERR_INPUT (the stage checks every training prompt before training). */
int policy_generate(seq_set *out, const seq_set *in, const ds_split *split, model *gen, kv_cache *kv,
                    const policy_config *pc, int seq_len, int eos_id, uint64_t seed, int64_t step, int by_student);

#endif
