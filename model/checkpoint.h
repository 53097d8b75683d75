/* checkpoint.h: loading and saving whole models. Hugging Face folders (config.json +
 * model.safetensors or shards) in F32/F16/BF16, llama2.c .bin checkpoints (converted to the
 * Hugging Face layout, q/k rows permuted for HF's rotate_half RoPE), and GGUF files (llama.cpp:
 * llama and qwen2 architectures, any format of model/gguf_quants.h). Weights are fp32 in memory. */
#ifndef SMELT_MODEL_CHECKPOINT_H
#define SMELT_MODEL_CHECKPOINT_H

#include "model/config.h"
#include "model/safetensors.h"
#include "model/weights.h"

typedef enum {
    CKPT_UNKNOWN = 0,
    CKPT_HF,      /* a folder with config.json, or a .safetensors / index .json beside one */
    CKPT_LLAMA2C, /* a llama2.c legacy (version 0) .bin file */
    CKPT_GGUF,    /* a GGUF file (starts with "GGUF") */
} ckpt_format;

/* Which loader a path needs (by what exists there and the first bytes); CKPT_UNKNOWN with
 * an ERR_INPUT message when neither. */
ckpt_format checkpoint_detect(const char *path);

/* Loads a model: path is an HF folder, a .safetensors file or model.safetensors.index.json
 * (config.json is read from the same folder), a llama2.c .bin or a .gguf file. Fills cfg and allocates w
 * (weights_alloc: one allocation; the caller frees it with weights_free). Every expected
 * tensor must be present with the shape the config implies (the message names the tensor and
 * both shapes); unexpected tensors are an error (listed); a tied lm_head may be absent or equal
 * to the embedding. A quantized HF checkpoint (qcheckpoint.h) is refused with a message saying
 * where it runs (model_load). On failure w is left empty. 0 or -1. */
int checkpoint_load(const char *path, model_config *cfg, model_weights *w);

/* The config of a checkpoint of any format, without loading its weights. 0 or -1. */
int checkpoint_read_config(const char *path, model_config *cfg);

/* For quantized checkpoints (qcheckpoint.c): loads the fp32 tensors of an HF checkpoint as
 * checkpoint_load does, except the tensors for which skip(ctx, name) returns nonzero: an expected
 * tensor so marked is left zero (a quantized linear), an unexpected one is accepted (its quantized
 * parameters, read by the caller). */
typedef int (*ckpt_skip_fn)(void *ctx, const char *name);
int checkpoint_load_hf_except(const char *path, model_config *cfg, model_weights *w, ckpt_skip_fn skip, void *ctx);

/* Writes dir/config.json, dir/generation_config.json and dir/model.safetensors (dtype ST_F32,
 * ST_BF16 (round to nearest even) or ST_F16), each atomically; creates dir. 0 or -1. */
int checkpoint_save(const char *dir, const model_config *cfg, const model_weights *w, st_dtype dtype);

/* llama2.c import. The header of seven int32 (dim, hidden_dim, n_layers, n_heads, n_kv_heads,
 * vocab_size (negative: separate classifier), seq_len) becomes a llama config (rope_theta
 * 10000, rms_norm_eps 1e-5, bos 1, eos 2, max_position_embeddings seq_len). The file size must
 * be exactly what the header implies. */
int llama2c_read_config(const char *path, model_config *cfg);
int llama2c_load(const char *path, model_config *cfg, model_weights *w);

/* Permutes the rows of a q or k projection [n_heads*head_dim, cols] from interleaved RoPE
 * pairs (2i, 2i+1) (llama2.c, Meta) to HF's halves (i, i+head_dim/2), in place (the permute()
 * of transformers' convert_llama_weights_to_hf.py). `inverse` undoes it. 0 or -1 (ERR_NOMEM). */
int rope_rows_to_hf(float *w, int n_heads, int head_dim, int cols, int inverse);

#endif
