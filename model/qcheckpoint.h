/* qcheckpoint.h: quantized checkpoints in the formats serving engines read (ALGORITHMS.md section
 * 5), saved from and loaded into a model_quant (qmodel.h) plus the model's fp32 tensors:
 *
 *   compressed-tensors  (vLLM, SGLang, transformers) config.json "quantization_config" with
 *                       quant_method "compressed-tensors"; per quantized linear, by its scheme:
 *                       pack-quantized (integer weights, fp32 activations: weight_packed int32
 *                         [out, ceil(in * bits / 32)], each row a little-endian bit stream of the
 *                         codes q (= signed value + 2^(bits-1)), weight_scale, weight_shape int64
 *                         [2], asymmetric: weight_zero_point packed the same way along the rows);
 *                       int-quantized (integer weights x int8 per-token activations: weight int8
 *                         = q - 2^(bits-1), weight_scale, asymmetric: weight_zero_point int8);
 *                       float-quantized (FP8 E4M3 weight, weight_scale [out, 1] per channel or [1]
 *                         per tensor; activations none, or FP8 dynamic per token or per tensor).
 *                       Scales are written F32 (exactly what smelt evaluated); the dense tensors
 *                       in the dtype asked for. Unquantized linears are listed in "ignore".
 *   gptq                (AutoGPTQ / GPTQModel "v1" layout, W4A16 and such) per linear qweight int32
 *                       [in / (32 / bits), out] (codes along the input dimension, lowest bits
 *                       first), qzeros int32 [n_groups, out / (32 / bits)] holding (zero - 1) mod
 *                       2^bits along the output dimension, scales F16 [n_groups, out], g_idx int32
 *                       [in] = column / group_size, or each column's group (act order: qweight's
 *                       g_idx); quantization_config {quant_method gptq, bits, group_size (-1: per
 *                       channel), desc_act (true when a linear regroups), sym}. Bits 2, 4 or 8.
 *   gguf                llama.cpp: one GGUF file (model/qckpt_gguf.c): quantized linears as Q8_0
 *                       (8-bit symmetric), Q4_0 (4-bit symmetric) or Q4_1 (4-bit with float
 *                       minimums, or zero points whose -scale*zero is an fp16 number) blocks of
 *                       32, fp16 scales; every other tensor F32; marked smelt.quantized.
 *
 * Loading reads every one of them back into qweights, bit for bit. */
#ifndef SMELT_MODEL_QCHECKPOINT_H
#define SMELT_MODEL_QCHECKPOINT_H

#include <stddef.h>

#include "kernels/qweight.h"
#include "model/config.h"
#include "model/qmodel.h"
#include "model/safetensors.h"
#include "model/weights.h"

typedef enum {
    QCKPT_NONE = 0,
    QCKPT_COMPRESSED_TENSORS = 1,
    QCKPT_GPTQ = 2,
    QCKPT_GGUF = 3,
} qckpt_format;

const char *qckpt_format_name(qckpt_format f); /* "compressed-tensors", "gptq", "gguf" */
/* "compressed-tensors" | "gptq" | "gguf" -> f; 0, or -1 (ERR_INPUT listing the names). */
int qckpt_format_parse(const char *s, qckpt_format *f);

/* Whether format f can hold linears quantized so (before any work: the quantize stage checks its
 * parameters with it). group_size -1: one group per output channel; n_in: an input size the
 * groups must divide (0: not checked). 0, or -1 with ERR_INPUT saying what the format cannot hold
 * and what would work (bits 3 in GPTQ, activations in GPTQ, FP8 in GPTQ, ...). */
int qcheckpoint_check_scheme(qckpt_format f, qw_type type, int bits, qa_type act, int group_size, int asym,
                             int per_tensor, int n_in);

/* The scales format f stores: every scale of a qweight must be exactly representable in it for the
 * saved model to be the evaluated one (GPTQ: fp16; compressed-tensors: fp32). qcheckpoint_round_scales
 * rounds a qweight's scales to it (to nearest even): quantizers call it on the scales BEFORE they
 * choose the codes. */
st_dtype qcheckpoint_scale_dtype(qckpt_format f);
void qcheckpoint_round_scales(qweight *w, qckpt_format f);

/* *bytes = what the file of format f spends on the quantized linear w: every tensor of its module
 * as the writer emits it (compressed-tensors: the packed or int8/FP8 codes, the F32 scales, zero
 * points, weight_shape; GPTQ: qweight, qzeros, F16 scales, g_idx; GGUF: its Q8_0/Q4_0/Q4_1 blocks).
 * The figure behind the quantize stage's `bits_per_weight`. 0, or -1 (ERR_INPUT when f cannot hold
 * w, ERR_NOMEM). */
int qcheckpoint_linear_bytes(size_t *bytes, const qweight *w, qckpt_format f);

/* The quantize stage's writer: dir/config.json (cfg plus quantization_config),
 * dir/generation_config.json and dir/model.safetensors: the fp32 tensors of w in `dtype` (ST_F32,
 * ST_BF16 or ST_F16; those of the quantized linears are not written) and the quantized linears of
 * q in format f. Tokenizer files are the caller's to copy. Checks everything first (every qweight
 * against the shapes of cfg and the format, scales representable, a quantized lm_head only when
 * untied) and writes nothing on a bad input; files are written atomically, config.json last.
 * 0 or -1 (ERR_INPUT naming the linear and the rule). */
int qcheckpoint_save(const char *dir, const model_config *cfg, const model_weights *w, const model_quant *q,
                     qckpt_format f, st_dtype dtype);

/* Reads a quantized HF checkpoint (a folder, or a file in it): cfg, the fp32 tensors into w (one
 * allocation as checkpoint_load; the quantized linears' entries are zero) and the quantized linears
 * into *q (model_quant_new; the caller attaches or frees it). Unsupported schemes (static activation
 * scales, block strategies, ...) are refused with the scheme named. 0 or -1; on failure w is empty
 * and *q NULL. */
int qcheckpoint_load(const char *path, model_config *cfg, model_weights *w, model_quant **q);

/* GGUF (model/qckpt_gguf.c). qcheckpoint_save with QCKPT_GGUF writes dir/model.gguf (or dir when it
 * ends in .gguf) without a tokenizer; this writes path with tok's vocabulary (may be NULL) and
 * general.name (may be NULL): a file llama.cpp runs. Checks every quantized linear first
 * (the block type it fits, fp16 scales and minimums). 0 or -1. */
struct tokenizer;
int qcheckpoint_save_gguf(const char *path, const model_config *cfg, const model_weights *w, const model_quant *q,
                          const struct tokenizer *tok, const char *name);
/* Reads a GGUF file: cfg, the fp32 tensors into w (the linears stored as Q8_0/Q4_0/Q4_1 blocks
 * stay zero there) and those linears into *q as the qweights they are (NULL when there is none; a
 * tied file's quantized token_embd also gives the quantized lm_head). 0 or -1. */
int qcheckpoint_load_gguf(const char *path, model_config *cfg, model_weights *w, model_quant **q);
/* 1 when the GGUF file at path was written by qcheckpoint_save_gguf (smelt.quantized), 0 when not,
 * -1 when it cannot be read. */
int qcheckpoint_gguf_marked(const char *path);

/* Whether path (an HF folder or a file in one) holds a quantized checkpoint smelt can tell: 1 (and
 * *f, desc: e.g. "compressed-tensors pack-quantized"), 0 (none: dense or not an HF checkpoint), or
 * -1 (config.json unreadable or quantization_config malformed). f and desc may be NULL. */
int qcheckpoint_probe(const char *path, qckpt_format *f, char *desc, size_t desc_len);

#endif
