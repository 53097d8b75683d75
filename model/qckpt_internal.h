/* qckpt_internal.h: what the quantized checkpoint formats share (qcheckpoint.c drives saving and
 * loading; qckpt_ct.c and qckpt_gptq.c are the formats). Nobody else includes it. */
#ifndef SMELT_MODEL_QCKPT_INTERNAL_H
#define SMELT_MODEL_QCKPT_INTERNAL_H

#include <cjson/cJSON.h>
#include <stddef.h>
#include <stdint.h>

#include "common/error.h"
#include "common/strbuf.h"
#include "model/qcheckpoint.h"

/* The tensors of a file being assembled; the entries' names and raw buffers are owned here. */
typedef struct {
    st_entry *e;
    int n, cap;
    void **owned;
    int n_owned, cap_owned;
} qckpt_out;

/* Adds a tensor: raw (taken: freed with the list, even on failure; or borrowed when `borrow`) of
 * raw_dtype, or f32 (borrowed, written in the file's dtype). 0 or -1 (ERR_NOMEM). */
int qckpt_add(qckpt_out *o, const char *name, st_dtype raw_dtype, int ndim, int64_t d0, int64_t d1, void *raw,
              int borrow, const float *f32);
void qckpt_out_free(qckpt_out *o);

/* Bit streams: element i of vals (vals[i * stride]) at bits i*bits .. of little-endian 32-bit words
 * (ceil(n * bits / 32) words, lowest bits first; GPTQ's layout when bits divides 32). */
void qckpt_pack_bits(uint32_t *words, const uint8_t *vals, size_t n, size_t stride, int bits);
void qckpt_unpack_bits(uint8_t *vals, size_t stride, const uint32_t *words, size_t n, int bits);

/* A tensor of the set as integers or floats, whatever its integer / float dtype (messages name
 * `what`). 0 or -1 (ERR_INPUT: wrong dtype, ERR_NOMEM). The caller frees *out. */
int qckpt_read_ints(int64_t **out, const st_set *s, const st_tensor *t, const char *what);
int qckpt_read_floats(float **out, const st_set *s, const st_tensor *t, const char *what);
/* The tensor `module`.`param` with the given shape (ndim 1 or 2; d1 ignored for 1), or an
 * ERR_INPUT/ERR_CORRUPT naming it. required == 0: NULL without an error when absent. */
const st_tensor *qckpt_tensor(const st_set *s, const char *module, const char *param, int ndim, int64_t d0, int64_t d1,
                              int required);
/* Checks the codes, zero points and scales of a qweight (integer: below 2^bits; FP8: no NaN code;
 * finite scales). 0 or -1 (an error of `kind` naming the module and `file`). */
int qckpt_check_codes(const qweight *w, const char *module, const char *file, err_kind kind);

/* A format: its quantization_config, its per-linear writer and reader, the names of its per-linear
 * tensors (for the dense loader to leave to it). */
typedef struct {
    qckpt_format format;
    const char *const *params; /* NULL-terminated suffixes after "<module>." */
    /* Rules of the format over the whole model (NULL: none), checked before anything is written. */
    int (*check)(const model_config *cfg, const model_quant *q);
    int (*config_json)(strbuf *sb, const model_config *cfg, const model_quant *q);
    int (*write_linear)(qckpt_out *o, const char *module, const qweight *w);
    /* Reads every quantized linear named by the config / present in s into q. */
    int (*read)(model_quant *q, const cJSON *qc, const st_set *s, const model_config *cfg);
} qckpt_ops;

extern const qckpt_ops qckpt_ct_ops, qckpt_gptq_ops;

/* GGUF (qckpt_gguf.c; a file of its own, not a safetensors format): every quantized linear of q fits
 * a block type, with cfg's shapes. 0 or -1 (ERR_INPUT naming the linear and the rule). */
int qckpt_gguf_check(const model_config *cfg, const model_quant *q);

/* *bytes = the GGUF blocks of w (n_out * n_in / 32 blocks of its type). 0 or -1 (ERR_INPUT: no block
 * type holds w). */
int qckpt_gguf_linear_bytes(size_t *bytes, const qweight *w);

#endif
