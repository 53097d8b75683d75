/* gguf_export.c: writing smelt models as GGUF (see gguf_export.h). The keys and names are those
 * llama.cpp's convert_hf_to_gguf.py writes for LlamaForCausalLM and Qwen2ForCausalLM, so that
 * llama.cpp, gguf-py and transformers' gguf_file= loader read the file like one of theirs. */
#include "model/gguf_export.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "common/log.h"
#include "model/checkpoint.h"
#include "model/gguf_model.h"
#include "model/hfconfig.h"

/* llama.cpp's general.file_type (LlamaFileType) of a file whose weights are mostly `type`. */
static int file_type(ggml_type type) {
    switch (type) {
    case GGML_F32: return 0;
    case GGML_F16: return 1;
    case GGML_Q4_0: return 2;
    case GGML_Q4_1: return 3;
    case GGML_Q8_0: return 7;
    case GGML_BF16: return 32;
    case GGML_Q5_0: return 8;
    case GGML_Q5_1: return 9;
    case GGML_Q2_K: return 10;
    case GGML_Q4_K: return 15;
    case GGML_Q5_K: return 17;
    case GGML_Q6_K: return 18;
    default: return -1;
    }
}

/* A size per layer: one u32 when all layers agree, else an i32 array (llama.cpp reads both). */
static int set_layer_sizes(gguf_writer *w, const char *key, const model_config *c, int which) {
    int32_t v[MODEL_MAX_LAYERS] = {0};
    int uniform = 1;
    for (int l = 0; l < c->n_layers; l++) {
        const layer_config *lc = &c->layers[l];
        v[l] = which == 0 ? lc->n_heads : which == 1 ? lc->n_kv_heads : lc->intermediate;
        uniform &= v[l] == v[0];
    }
    return uniform ? gguf_set_u32(w, key, (uint32_t)v[0]) : gguf_set_arr_num(w, key, GGUF_I32, v, (uint64_t)c->n_layers);
}

int gguf_export_metadata(gguf_writer *w, const model_config *c, const tokenizer *tok, ggml_type type, const char *name) {
    const char *arch = c->model_type;
    if (strcmp(arch, "llama") && strcmp(arch, "qwen2"))
        return err_set(ERR_INPUT, "model_type '%s' has no GGUF writer in smelt (llama and qwen2 do)", arch);
    if (c->rope_scaling != ROPE_SCALING_NONE)
        return err_set(ERR_INPUT, "the model uses Llama 3 RoPE scaling, which GGUF carries as a rope_freqs tensor smelt "
                       "does not write; export it as a Hugging Face folder instead");
    if (file_type(type) < 0) return err_set(ERR_INPUT, "%s is not a GGUF file type smelt writes", ggml_type_name(type));
    char key[96];
#define K(s) (snprintf(key, sizeof key, "%s." s, arch), key)
    int rc = gguf_set_str(w, "general.architecture", arch, strlen(arch)) ||
             gguf_set_str(w, "general.type", "model", 5) ||
             (name && gguf_set_str(w, "general.name", name, strlen(name))) ||
             gguf_set_u32(w, "general.file_type", (uint32_t)file_type(type)) ||
             (type != GGML_F32 && type != GGML_F16 && type != GGML_BF16 &&
              gguf_set_u32(w, "general.quantization_version", 2)) ||
             gguf_set_u32(w, K("block_count"), (uint32_t)c->n_layers) ||
             gguf_set_u32(w, K("context_length"), (uint32_t)c->max_pos) ||
             gguf_set_u32(w, K("embedding_length"), (uint32_t)c->hidden) ||
             set_layer_sizes(w, K("feed_forward_length"), c, 2) ||
             set_layer_sizes(w, K("attention.head_count"), c, 0) ||
             set_layer_sizes(w, K("attention.head_count_kv"), c, 1) ||
             gguf_set_f32(w, K("rope.freq_base"), c->rope_theta) ||
             gguf_set_f32(w, K("attention.layer_norm_rms_epsilon"), c->rms_eps) ||
             gguf_set_u32(w, K("rope.dimension_count"), (uint32_t)c->head_dim) ||
             gguf_set_u32(w, K("vocab_size"), (uint32_t)c->vocab);
    if (!rc && c->head_dim * c->n_heads != c->hidden)
        rc = gguf_set_u32(w, K("attention.key_length"), (uint32_t)c->head_dim) ||
             gguf_set_u32(w, K("attention.value_length"), (uint32_t)c->head_dim);
#undef K
    if (rc) return -1;
    if (tok) {
        if (tokenizer_vocab_size(tok) > c->vocab)
            return err_set(ERR_INPUT, "the tokenizer has %d tokens but the model only %d; they do not belong together",
                           tokenizer_vocab_size(tok), c->vocab);
        if (tokenizer_to_gguf(tok, w)) return -1;
    } else {
        /* no tokenizer: the ids the model config knows, so that readers can stop at EOS */
        if ((c->bos_id >= 0 && gguf_set_u32(w, "tokenizer.ggml.bos_token_id", (uint32_t)c->bos_id)) ||
            (c->eos_id >= 0 && gguf_set_u32(w, "tokenizer.ggml.eos_token_id", (uint32_t)c->eos_id)))
            return -1;
    }
    return 0;
}

int gguf_export_weights(gguf_writer *w, const model_config *c, const model_weights *wts, ggml_type type,
                        float **scratch) {
    return gguf_export_weights_except(w, c, wts, type, scratch, NULL, NULL);
}

int gguf_export_weights_except(gguf_writer *w, const model_config *c, const model_weights *wts, ggml_type type,
                               float **scratch, int (*skip)(void *ctx, const char *hf_name), void *ctx) {
    *scratch = NULL;
    if (type != GGML_F32 && !ggml_can_quantize(type))
        return err_set(ERR_INPUT, "smelt writes GGUF weights as F32, F16, BF16, Q8_0, Q4_0 or Q4_1, not %s",
                       ggml_type_name(type));
    int n = weights_tensors(wts, c, NULL, 0);
    weights_tensor *wt = xcalloc((size_t)n, sizeof *wt);
    if (!wt) return -1;
    weights_tensors(wts, c, wt, n);
    int permute = gguf_qk_permuted(c->model_type);
    size_t qk_floats = 0, off = 0;
    if (permute)
        for (int l = 0; l < c->n_layers; l++)
            qk_floats += (size_t)(c->layers[l].n_heads + c->layers[l].n_kv_heads) * (size_t)c->head_dim * (size_t)c->hidden;
    float *copies = qk_floats ? xmalloc(qk_floats * sizeof(float)) : NULL;
    int rc = -1, fallback = 0;
    if (qk_floats && !copies) goto out;
    for (int i = 0; i < n; i++) {
        char gname[96];
        if (skip && skip(ctx, wt[i].name)) continue;
        if (gguf_tensor_name(gname, sizeof gname, wt[i].name)) {
            err_set(ERR_INTERNAL, "no GGUF name for %s", wt[i].name);
            goto out;
        }
        int64_t ne[2] = {wt[i].ndim == 2 ? wt[i].shape[1] : wt[i].shape[0], wt[i].ndim == 2 ? wt[i].shape[0] : 1};
        const float *data = wt[i].data;
        int is_q = strstr(wt[i].name, ".self_attn.q_proj.weight") != NULL,
            is_k = strstr(wt[i].name, ".self_attn.k_proj.weight") != NULL;
        if (permute && (is_q || is_k)) {
            int layer = atoi(wt[i].name + strlen("model.layers."));
            int heads = is_q ? c->layers[layer].n_heads : c->layers[layer].n_kv_heads;
            size_t cnt = (size_t)ne[0] * (size_t)ne[1];
            memcpy(copies + off, data, cnt * sizeof(float));
            if (rope_rows_to_hf(copies + off, heads, c->head_dim, (int)ne[0], 1)) goto out;
            data = copies + off;
            off += cnt;
        }
        ggml_type t = wt[i].ndim == 1 ? GGML_F32 : type;
        if (ne[0] % ggml_blck_size(t)) {
            t = GGML_F16; /* llama.cpp's fallback for rows that are not whole blocks */
            fallback++;
        }
        if (gguf_add_tensor_f32(w, gname, wt[i].ndim, ne, t, data, NULL)) goto out;
    }
    if (fallback) log_warn("%d weight(s) have rows that are not whole %s blocks and are stored as F16", fallback,
                           ggml_type_name(type));
    rc = 0;
out:
    free(wt);
    if (rc) free(copies);
    else *scratch = copies;
    return rc;
}

int gguf_save_model(const char *path, const model_config *cfg, const model_weights *wts, const tokenizer *tok,
                    ggml_type type, const char *name) {
    gguf_writer *w = gguf_writer_new();
    float *scratch = NULL;
    if (!w) return -1;
    int rc = gguf_export_metadata(w, cfg, tok, type, name) || gguf_export_weights(w, cfg, wts, type, &scratch) ||
                     gguf_writer_write(w, path)
                 ? -1
                 : 0;
    free(scratch);
    gguf_writer_free(w);
    return rc ? err_prefix("writing GGUF %s: ", path) : 0;
}
