/* gguf_export.h: smelt models as GGUF files that llama.cpp (and its `gguf` Python reader) loads:
 * the `<arch>.*` keys of the config (per-layer arrays when a pruned model's sizes differ), the
 * tokenizer's tokenizer.ggml.* keys, and the weights under llama.cpp's names, with the Llama q/k
 * rows permuted back to llama.cpp's interleaved RoPE layout. 1-D tensors (norms, biases) stay F32;
 * 2-D weights take the chosen type (F16 when their rows are not whole blocks of it).
 *
 * The quantize stage writes its own formats through gguf_export_begin: it adds the metadata and
 * the F32 tensors, then hands over its quantized blocks per weight (gguf_add_tensor_raw, or fp32
 * with its own quantizer: gguf_add_tensor_f32), then gguf_writer_write. */
#ifndef SMELT_MODEL_GGUF_EXPORT_H
#define SMELT_MODEL_GGUF_EXPORT_H

#include "model/config.h"
#include "model/gguf_quants.h"
#include "model/gguf_write.h"
#include "model/tokenizer.h"
#include "model/weights.h"

/* The metadata of cfg (general.*, <arch>.*) and of tok (may be NULL: no tokenizer keys) into w.
 * `type` is the file's main tensor type (general.file_type); name goes to general.name.
 * ERR_INPUT for what GGUF cannot carry (Llama 3 RoPE scaling, an architecture llama.cpp names
 * otherwise). 0 or -1. */
int gguf_export_metadata(gguf_writer *w, const model_config *cfg, const tokenizer *tok, ggml_type type,
                         const char *name);

/* The weights of the model in `type` (F32, F16, BF16, Q8_0, Q4_0, Q4_1), quantized while writing.
 * Llama q/k weights are permuted into copies owned by *scratch (free it after writing). */
int gguf_export_weights(gguf_writer *w, const model_config *cfg, const model_weights *wts, ggml_type type,
                        float **scratch);
/* The same, leaving out the tensors whose Hugging Face name skip(ctx, name) answers 1 for (the
 * quantized linears model/qckpt_gguf.c adds as blocks of its own). */
int gguf_export_weights_except(gguf_writer *w, const model_config *cfg, const model_weights *wts, ggml_type type,
                               float **scratch, int (*skip)(void *ctx, const char *hf_name), void *ctx);

/* The whole file: metadata, weights, written atomically to path. 0 or -1. */
int gguf_save_model(const char *path, const model_config *cfg, const model_weights *wts, const tokenizer *tok,
                    ggml_type type, const char *name);

#endif
