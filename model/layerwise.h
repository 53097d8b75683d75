/* layerwise.h: layer-by-layer forward over a calibration set, for the compression stages (prune,
 * quantize; ALGORITHMS.md: "each layer's calibration inputs are recomputed through the layers already
 * compressed"). The residual stream of every calibration token is kept between layers. For layer l,
 * layerwise_capture runs the layer with its current weights, chunk by chunk, and hands the inputs of
 * the asked linears to a callback (to accumulate H = X^T X); the stream does not move. Once the caller
 * has changed the layer's weights (and rebound the model's linears), layerwise_advance runs the layer
 * again and the stream becomes its output, the input of layer l+1.
 *
 * Memory: the stream is [n_tokens, hidden] floats; one chunk of whole sequences (at most
 * chunk_tokens tokens) runs at a time in the model's inference scratch. */
#ifndef SMELT_MODEL_LAYERWISE_H
#define SMELT_MODEL_LAYERWISE_H

#include <stdint.h>

#include "model/model.h"

/* The linears of a decoder layer whose inputs can be read, in the order the layer computes them. */
typedef enum {
    MODEL_SITE_QKV = 0,  /* input_layernorm output [n, hidden]: input of q/k/v_proj */
    MODEL_SITE_O = 1,    /* attention output [n, n_heads*head_dim]: input of o_proj */
    MODEL_SITE_GATE_UP,  /* post_attention_layernorm output [n, hidden]: input of gate/up_proj */
    MODEL_SITE_DOWN,     /* silu(gate)*up [n, intermediate]: input of down_proj */
    MODEL_SITE_N
} model_site;
#define MODEL_SITE_BIT(s) (1u << (s))

/* x: [n, in] rows of the site's input for n tokens of one chunk. Returns 0 or -1 (error set). */
typedef int (*model_site_fn)(void *ctx, model_site site, const float *x, int n, int in);

typedef struct {
    unsigned sites;   /* MODEL_SITE_BIT(...) | ... */
    model_site_fn fn;
    void *ctx;
    int partial;      /* the caller discards the layer's output: stop after the last asked site */
} model_tap;

typedef struct layerwise layerwise;

/* Embeds the packed sequences (tokens [sum seq_lens], each sequence attends only to itself and its
 * positions start at 0) into the stream. chunk_tokens bounds the tokens of one chunk (raised to the
 * longest sequence). The model is borrowed and must outlive lw. 0 or -1 (ERR_INPUT for bad lengths or
 * tokens, ERR_NOMEM naming the size). */
int layerwise_open(layerwise **lw, model *m, const int *tokens, const int *seq_lens, int n_seqs, int chunk_tokens);
void layerwise_close(layerwise *lw);
int64_t layerwise_tokens(const layerwise *lw);
/* The layer the stream is the input of (0 after open, l+1 after layerwise_advance(l)). */
int layerwise_layer(const layerwise *lw);

/* Runs layer `layerwise_layer(lw)` over every chunk with the model's current weights and calls tap
 * for each asked site; the stream does not change. 0 or -1. */
int layerwise_capture(layerwise *lw, const model_tap *tap);
/* Runs the current layer over every chunk and replaces the stream with its output. 0 or -1. */
int layerwise_advance(layerwise *lw);
/* The final normed hidden states [n_tokens, hidden] after the last layer (ERR_INPUT before). */
int layerwise_final_hidden(layerwise *lw, float *hidden);

/* Stream state for in-stage checkpoints: the stream [n_tokens, hidden] and its layer. Restoring
 * needs an lw opened on the same sequences. 0 or -1. */
const float *layerwise_stream(const layerwise *lw);
int layerwise_restore(layerwise *lw, int layer, const float *stream);

#endif
