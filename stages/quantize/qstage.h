/* qstage.h: what the files of the `quantize` stage share: its options (quantize.c parses and checks
 * them before any work), the model being quantized with one qweight per decoder linear, the layer-by-
 * layer pass (pass.c) and the in-stage checkpoints (ckpt.c). */
#ifndef SMELT_STAGES_QUANTIZE_QSTAGE_H
#define SMELT_STAGES_QUANTIZE_QSTAGE_H

#include <stdint.h>

#include "model/layerwise.h"
#include "model/model.h"
#include "model/qcheckpoint.h"
#include "model/qmodel.h"
#include "stages/quantize/quant.h"
#include "stages/stage.h"

/* The decoder linears of a layer are model/qmodel.h's QLIN_Q .. QLIN_DOWN (qlin_short: the metric
 * families "q" .. "down"; qlin_module: "self_attn.q_proj" ..). */

typedef enum { QM_RTN, QM_GPTQ, QM_QUANTEASE, QM_FP8 } qmethod;

typedef struct {
    qmethod method;
    int smooth;              /* smoothquant+... */
    double alpha;
    int smooth_qkv, smooth_mlp; /* mappings: input_layernorm -> q/k/v, post_attention_layernorm -> gate/up */
    quant_grid grid;         /* group_size -1 until the model's sizes are known */
    int act_order;
    double damp;
    int iterations;
    int init_gptq;           /* QuantEase's start: GPTQ (1) or RTN (0) */
    qa_type act;
    int fp8_per_channel;     /* weights_fp8: channel (1) or tensor (0) */
    qckpt_format format;     /* compressed-tensors, gptq, gguf */
    const cJSON *ignore;     /* list of strings */
} qopts;

typedef struct {
    stage_ctx *ctx;
    qopts o;
    model m;
    int have_model;
    uint8_t (*skip)[QLIN_N]; /* [n_layers][QLIN_N] linears kept in float (ignore:) */
    model_quant *mq;         /* the quantized linears, attached to (owned by) m */
    int32_t *tokens, *seq_lens;  /* this rank's calibration sequences */
    int n_seqs, n_tokens_total;
    layerwise *lw;
    int layer;               /* the next layer to quantize */
    char *fingerprint;
    double sum_err_rel;      /* sum of per-linear relative errors (rel_error_mean) */
    int n_err;
} qrun;

/* ---- quantize.c ---- */
int qopts_parse(qopts *o, const cJSON *params);
/* The float pointer and shape [n_out, n_in] of linear k (QLIN_Q .. QLIN_DOWN) of layer l. */
float *lin_weights(model *m, int l, int k, int *n_out, int *n_in);

/* ---- pass.c ---- */
/* A status agreed by every rank: the first failure stops all (ERR_STAGE on the others). */
int qagree(stage_ctx *ctx, int rc);
/* Quantizes layers qr->layer .. n_layers-1, with calibration (qr->lw set) or without (RTN/FP8 with no
 * calibration: weights only), checkpointing after each layer. 0 or -1. */
int qpass_run(qrun *qr);

/* ---- ckpt.c ---- */
/* Writes the in-stage checkpoint after layer `layer` (rank 0 writes the layer file and the state; every
 * rank its stream). 0 or -1. */
int qckpt_save(qrun *qr, int layer);
/* Restores the newest checkpoint into qr (weights of the done layers, qweights, stream); returns the
 * number of layers done (0: none), or -1. */
int qckpt_load(qrun *qr);

#endif
