/* config.h: the architecture of a Llama-family decoder (Llama 2/3, Qwen2), as read from and
 * written to a Hugging Face config.json. Per-layer head counts and MLP widths may differ
 * (structured pruning); `layers[i]` always holds each layer's own sizes. */
#ifndef SMELT_MODEL_CONFIG_H
#define SMELT_MODEL_CONFIG_H

#define MODEL_MAX_LAYERS 256
#define MODEL_MAX_EOS 8

typedef struct {
    int n_heads;      /* query heads of this layer */
    int n_kv_heads;   /* key/value heads of this layer (divides n_heads) */
    int intermediate; /* MLP width of this layer */
} layer_config;

typedef enum { ROPE_SCALING_NONE = 0, ROPE_SCALING_LLAMA3 = 1 } rope_scaling_type;

typedef struct {
    char model_type[16]; /* "llama" or "qwen2" */
    int hidden;          /* hidden_size */
    int n_layers;        /* num_hidden_layers */
    int n_heads;         /* num_attention_heads (uniform value, or of layer 0) */
    int n_kv_heads;      /* num_key_value_heads */
    int head_dim;        /* head_dim (hidden / n_heads when absent) */
    int intermediate;    /* intermediate_size */
    int vocab;           /* vocab_size */
    float rms_eps;       /* rms_norm_eps */
    float rope_theta;
    rope_scaling_type rope_scaling;
    float rope_factor, rope_low_freq_factor, rope_high_freq_factor;
    int rope_original_max_pos; /* original_max_position_embeddings of llama3 scaling */
    int tie_embeddings;  /* tie_word_embeddings */
    int attention_bias;  /* q/k/v projections have biases (Qwen2) */
    int max_pos;         /* max_position_embeddings */
    int bos_id, eos_id;  /* -1 when unknown; eos_id is the first of eos_token_id when it is a list */
    int n_eos;           /* entries of eos_ids (0 or 1: only eos_id); config.json may list several */
    int eos_ids[MODEL_MAX_EOS];
    layer_config layers[MODEL_MAX_LAYERS];
} model_config;

#endif
