/* gguf_write.h: writing GGUF v3 files that llama.cpp and its `gguf` Python package read. A writer
 * collects metadata (every value type, arrays included) and tensors, then writes the file
 * atomically (temporary name, fsync, rename): header, metadata, tensor infos, and each tensor's
 * bytes at an offset aligned to general.alignment (32).
 *
 * Tensors come either as ready bytes of a ggml type (a quantize stage hands over its own blocks)
 * or as fp32 values with the type to store them in and a quantizer (default ggml_quantize), run
 * row by row while writing so that no second copy of the model is held. Data pointers are
 * borrowed: they must stay valid until gguf_writer_write returns.
 *
 * Shapes are given in ggml order: ne[0] is the contiguous dimension (a Hugging Face [out, in]
 * weight is ne = {in, out}). */
#ifndef SMELT_MODEL_GGUF_WRITE_H
#define SMELT_MODEL_GGUF_WRITE_H

#include <stddef.h>
#include <stdint.h>

#include "model/gguf.h"
#include "model/gguf_quants.h"

typedef struct gguf_writer gguf_writer;

gguf_writer *gguf_writer_new(void); /* NULL with ERR_NOMEM */
void gguf_writer_free(gguf_writer *w);

/* Metadata. A key set twice is an error (ERR_INPUT). 0 or -1. */
int gguf_set_scalar(gguf_writer *w, const char *key, gguf_vtype type, const void *value); /* a number or bool */
int gguf_set_u32(gguf_writer *w, const char *key, uint32_t v);
int gguf_set_i32(gguf_writer *w, const char *key, int32_t v);
int gguf_set_f32(gguf_writer *w, const char *key, float v);
int gguf_set_bool(gguf_writer *w, const char *key, int v);
int gguf_set_str(gguf_writer *w, const char *key, const char *s, size_t len);
/* An array of n numbers of type elem, little-endian, back to back at data. */
int gguf_set_arr_num(gguf_writer *w, const char *key, gguf_vtype elem, const void *data, uint64_t n);
/* An array of n strings (lens NULL: NUL-terminated). */
int gguf_set_arr_str(gguf_writer *w, const char *key, const char *const *strs, const size_t *lens, uint64_t n);
/* Copies an entry of a file being read (any type). */
int gguf_copy_kv(gguf_writer *w, const gguf_kv *kv);
/* 1 when key is already set. */
int gguf_writer_has(const gguf_writer *w, const char *key);

/* Tensors. n_dims 1..4, ne[0] a multiple of the type's block size. */
int gguf_add_tensor_raw(gguf_writer *w, const char *name, int n_dims, const int64_t *ne, ggml_type type,
                        const void *data, size_t n_bytes);
/* x holds the ne[0]*ne[1]*... fp32 values; quantize (NULL: ggml_quantize) converts one row of
 * ne[0] values at a time into `type`. */
int gguf_add_tensor_f32(gguf_writer *w, const char *name, int n_dims, const int64_t *ne, ggml_type type,
                        const float *x, ggml_quantize_fn quantize);

/* Writes the file atomically. 0 or -1 (nothing is left at path on failure). */
int gguf_writer_write(gguf_writer *w, const char *path);

#endif
