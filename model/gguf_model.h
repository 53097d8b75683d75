/* gguf_model.h: GGUF files as smelt models (llama and qwen2 architectures): the config from
 * the `<arch>.*` and tokenizer.ggml.* keys, the weights dequantized to fp32 with llama.cpp's
 * Llama q/k row permutation undone, and the tensor names of both worlds. checkpoint_load and
 * checkpoint_read_config call these for .gguf paths; the writer is model/gguf_export.h. */
#ifndef SMELT_MODEL_GGUF_MODEL_H
#define SMELT_MODEL_GGUF_MODEL_H

#include <stddef.h>

#include "model/config.h"
#include "model/gguf.h"
#include "model/weights.h"

/* The config of an open file: sizes (scalars or per-layer arrays), RMSNorm epsilon, RoPE base,
 * context, vocabulary (token_embd's rows), tied head (no output.weight), q/k/v biases, BOS and
 * stop tokens. ERR_INPUT for an architecture or feature smelt does not run, ERR_CORRUPT for a
 * missing or inconsistent key. */
int gguf_model_config(const gguf_file *f, model_config *cfg);
/* Config and weights (one allocation, freed with weights_free); every tensor must be present
 * with the shape the metadata implies and no other tensor may be there. 0 or -1. */
/* The checks of gguf_model_load_file without loading anything (smelt inspect). */
int gguf_model_check(const gguf_file *f, const model_config *cfg);
int gguf_model_load_file(const gguf_file *f, model_config *cfg, model_weights *w);
/* The same, leaving zero the weights whose Hugging Face name skip(ctx, name) answers 1 for (the
 * quantized linears that model/qckpt_gguf.c reads as such). */
int gguf_model_load_file_except(const gguf_file *f, model_config *cfg, model_weights *w,
                                int (*skip)(void *ctx, const char *hf_name), void *ctx);
int gguf_model_load(const char *path, model_config *cfg, model_weights *w);
int gguf_model_read_config(const char *path, model_config *cfg);

/* llama.cpp's name of a Hugging Face tensor name ("model.layers.3.mlp.up_proj.weight" ->
 * "blk.3.ffn_up.weight"); -1 when it has none. */
int gguf_tensor_name(char *out, size_t n, const char *hf_name);
/* 1 when llama.cpp permutes the q/k rows of this model_type (llama), 0 otherwise (qwen2). */
int gguf_qk_permuted(const char *model_type);

#endif
