/* hfconfig.h: Hugging Face config.json <-> model_config for model_type llama and qwen2,
 * with the smelt extension "smelt_layers" for per-layer sizes that differ (pruned models).
 * Defaults follow transformers' LlamaConfig / Qwen2Config; see docs/checkpoints.md. */
#ifndef SMELT_MODEL_HFCONFIG_H
#define SMELT_MODEL_HFCONFIG_H

#include <stddef.h>

#include "common/strbuf.h"
#include "model/config.h"

/* Parses the text of a config.json (json[0..len)) into cfg, fills layers[] (uniform, or from
 * "smelt_layers") and validates it. `path` names the file in messages. 0 or -1 (ERR_INPUT
 * naming the field, what was found and what is expected). */
int hfconfig_parse(model_config *cfg, const char *json, size_t len, const char *path);
/* Reads and parses a config.json file (at most 16 MiB). A quantization_config is refused (the
 * model is quantized); hfconfig_load_quantized accepts it, for the loaders that read it
 * (qcheckpoint.c). */
int hfconfig_load(model_config *cfg, const char *path);
int hfconfig_load_quantized(model_config *cfg, const char *path);

/* Appends a standard config.json for cfg to out: architectures (LlamaForCausalLM or
 * Qwen2ForCausalLM), sizes, rope_theta / rope_scaling, torch_dtype (e.g. "bfloat16",
 * "float32"; NULL: omitted), bos/eos. When layers differ, the keys hold layer 0's sizes and
 * "smelt_layers" lists every layer's {num_attention_heads, num_key_value_heads,
 * intermediate_size}. 0 or -1. */
int hfconfig_to_json(strbuf *out, const model_config *cfg, const char *torch_dtype);
/* Writes hfconfig_to_json atomically to path. */
int hfconfig_save(const char *path, const model_config *cfg, const char *torch_dtype);
/* Writes a generation_config.json (bos/eos ids) atomically to path. */
int hfconfig_save_generation(const char *path, const model_config *cfg);

/* 1 when every layers[i] equals the top-level n_heads/n_kv_heads/intermediate. */
int config_is_uniform(const model_config *cfg);
/* Sets every layers[i] (i < n_layers) to the top-level sizes. */
void config_fill_uniform(model_config *cfg);

#endif
