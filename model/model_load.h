/* model_load.h: one loader for every checkpoint smelt reads, so that the commands and stages that
 * only run a model (evaluate, generate, inspect, benchmark) take any of them: a Hugging Face folder
 * (dense F32/F16/BF16, or quantized: compressed-tensors, GPTQ; qcheckpoint.h), a GGUF file, a
 * llama2.c .bin, or whatever else checkpoint_load reads. A quantized checkpoint comes back with its quantized linears
 * attached (model_is_quantized), running the quantized kernels. */
#ifndef SMELT_MODEL_MODEL_LOAD_H
#define SMELT_MODEL_MODEL_LOAD_H

#include <stddef.h>

#include "model/model.h"
#include "model/qcheckpoint.h"

/* Loads path into *m (model_init'ed; the caller frees it with model_free). 0 or -1 (the message
 * names the file; m is left empty). A GGUF file (or a folder without config.json holding
 * model.gguf) written by smelt's quantize stage (smelt.quantized) comes back quantized; other GGUF
 * files (llama.cpp's) come back dense, dequantized to fp32, as the quantize stage reads its input. */
int model_load(model *m, const char *path);

/* Any GGUF file with the linears stored as Q8_0, Q4_0 or Q4_1 blocks running those blocks' weights
 * through the quantized kernels (llama.cpp's own Q4_1 SmolLM2, for instance); other tensors fp32.
 * 0 or -1. */
int model_load_quantized_gguf(model *m, const char *path);

/* Whether path holds a quantized checkpoint (without loading it): 1 (and *f, desc such as
 * "compressed-tensors pack-quantized"), 0 (a dense one), -1 (unreadable). The quantize stage
 * refuses to quantize again with it. f and desc may be NULL. */
int model_path_is_quantized(const char *path, qckpt_format *f, char *desc, size_t desc_len);

/* The GGUF file path stands for (a GGUF file, or a folder without config.json holding model.gguf:
 * what the quantize stage writes for format gguf), as a new string (the caller frees it); NULL
 * otherwise (no error). */
char *model_gguf_path(const char *path);

#endif
