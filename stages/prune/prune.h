/* prune.h: what the files of the `prune` stage share. osscar.c prunes one linear layer; pass.c runs
 * one decoder layer of the calibration pass (Gram matrices of the o_proj and down_proj inputs,
 * summed over MPI ranks in rank order, OSSCAR on rank 0, the result sent to every rank); layers.c
 * zeroes the producers' rows of removed groups and shrinks the model physically at the end;
 * ckpt.c keeps the in-stage checkpoint of each finished layer; prune.c is the stage kind.
 *
 * While the pass runs the model keeps its shapes: a removed MLP neuron has zero gate/up rows and a
 * zero down_proj column, a removed KV group zero q/k/v rows (and biases) and zero o_proj columns, so
 * the later layers see exactly the pruned model; prune_shrink drops those rows and columns. */
#ifndef SMELT_STAGES_PRUNE_PRUNE_H
#define SMELT_STAGES_PRUNE_PRUNE_H

#include <stddef.h>

#include "model/layerwise.h"
#include "model/model.h"
#include "stages/prune/osscar.h"

/* Where down_proj's Gram matrix is gathered. */
typedef enum {
    PRUNE_ORDER_TOGETHER = 0,   /* FMCHISEL: o_proj's and down_proj's inputs in one pass, the layer's
                                 * attention still unpruned; both pruned after it */
    PRUNE_ORDER_ATTENTION_FIRST /* attention pruned first, then down_proj's inputs gathered through it */
} prune_order;

typedef struct {
    int mlp; /* neurons to remove */
    int kv;  /* KV groups to remove */
} prune_plan_layer;

typedef struct {
    osscar_opts solver;
    prune_order order;
    int dense_inputs;                      /* the stream passes through the unpruned layers (inputs: dense) */
    int chunk_tokens;                      /* tokens of one calibration forward chunk */
    prune_plan_layer plan[MODEL_MAX_LAYERS];
    /* called on every rank once a layer's Gram matrices are gathered, before its weights change
     * (the stage's kill-and-resume test hook); may be NULL */
    void (*after_capture)(void *ctx, int layer);
    void *hook_ctx;
} prune_opts;

/* One layer's outcome; every field is a double so that a checkpoint stores the array as is.
 * rel_error_* are NaN when that part of the layer was not pruned. */
typedef struct {
    double rel_error_mlp, rel_error_attn;               /* after the re-fit (and local search) */
    double rel_error_mlp_greedy, rel_error_attn_greedy; /* before the local search */
    double removed_mlp, removed_attn, swaps_mlp, swaps_attn, dead_mlp, dead_attn;
    double seconds;
} prune_layer_stats;
#define PRUNE_STATS_N (sizeof(prune_layer_stats) / sizeof(double))

/* Kept groups per layer (1 kept, 0 removed), owned. */
typedef struct {
    int n_layers;
    unsigned char *mlp[MODEL_MAX_LAYERS]; /* [intermediate of the layer] */
    unsigned char *kv[MODEL_MAX_LAYERS];  /* [n_kv_heads of the layer] */
} prune_masks;

/* ---- layers.c ---- */
int prune_masks_init(prune_masks *mk, const model_config *c);
void prune_masks_free(prune_masks *mk);
/* Zeroes the q rows (and biases) of the query heads of every removed KV group, and the k/v rows of
 * the group; the o_proj columns are the solver's. */
void prune_zero_attention(model *m, int l, const unsigned char *keep_kv);
/* Zeroes the gate_proj and up_proj rows of every removed neuron. */
void prune_zero_mlp(model *m, int l, const unsigned char *keep);
/* The floats of layer l's tensors, one contiguous span of the weight layout (attn_norm .. w_down). */
float *prune_layer_span(const model *m, int l, size_t *n);
/* The physically smaller model: out_cfg with the kept sizes per layer (head_dim unchanged, tied
 * embeddings kept tied) and out_w (allocated) holding the kept rows and columns. 0 or -1. */
int prune_shrink(model_config *out_cfg, model_weights *out_w, const model *m, const prune_masks *mk);

/* ---- pass.c ---- */
/* Prunes layer layerwise_layer(lw) of m as o->plan asks (every rank calls it; rank 0 runs the
 * solver) and advances the stream past it. world > 1: ranks hold different calibration shards and
 * their Gram matrices are summed in rank order. 0 or -1 (every rank fails together). */
int prune_layer(model *m, layerwise *lw, prune_masks *mk, prune_layer_stats *st, const prune_opts *o, int rank,
                int world);
/* The whole pass on one rank (tests, tools): layers first_layer .. n_layers-1, stats [n_layers]. */
int prune_model(model *m, const int *tokens, const int *seq_lens, int n_seqs, prune_masks *mk,
                prune_layer_stats *stats, const prune_opts *o);
/* Agrees on a status among ranks: 0 when every rank passed 0; else -1 on every rank (a rank whose
 * own rc was 0 gets an error naming the other rank's failure). */
int prune_agree(int rc, int world);

/* ---- ckpt.c ---- */
/* The in-stage checkpoint after layer l: layer-NNNN.bin holds the layer's weights (zeroed, full
 * shapes), its masks and stats (rank 0 writes it); stream-rRofW.bin holds each rank's residual
 * stream at the input of layer l + 1. fingerprint ties them to the stage's cache key. */
int prune_ckpt_save_layer(const char *dir, const char *fingerprint, const model *m, const prune_masks *mk,
                          const prune_layer_stats *st, int l);
int prune_ckpt_save_stream(const char *dir, const char *fingerprint, const layerwise *lw, const model *m, int rank,
                           int world);
/* How many leading layers (0, 1, ...) have a complete checkpoint. -1 on an unreadable directory. */
int prune_ckpt_layers(const char *dir, const char *fingerprint, const model *m);
/* Restores layer l's weights, masks and stats from its checkpoint. 0 or -1 (ERR_CORRUPT). */
int prune_ckpt_load_layer(const char *dir, const char *fingerprint, model *m, prune_masks *mk, prune_layer_stats *st,
                          int l);
/* Restores the stream when this rank's stream file is at a layer <= max_layer; returns that layer,
 * or 0 when there is none (the stream stays at the embeddings). -1 on a read error. */
int prune_ckpt_load_stream(const char *dir, const char *fingerprint, layerwise *lw, const model *m, int rank,
                           int world, int max_layer);

#endif
