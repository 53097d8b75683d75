/* safetensors.h: the safetensors format (8-byte little-endian header length, a JSON header,
 * then the raw bytes of every tensor) and sharded checkpoints (model.safetensors.index.json).
 * Files are mmapped read-only and every header field is validated before a tensor is touched. */
#ifndef SMELT_MODEL_SAFETENSORS_H
#define SMELT_MODEL_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

/* The dtypes of the format that have a whole number of bytes per element. */
typedef enum {
    ST_BOOL, ST_U8, ST_I8, ST_F8_E5M2, ST_F8_E4M3, ST_I16, ST_U16, ST_F16, ST_BF16,
    ST_I32, ST_U32, ST_F32, ST_F64, ST_I64, ST_U64,
    ST_N_DTYPES
} st_dtype;

#define ST_MAX_DIMS 8
/* Largest header accepted (the reference implementation's limit): a bigger length field is
 * damage, not a model. */
#define ST_MAX_HEADER (100u * 1000u * 1000u)

typedef struct {
    char *name;
    st_dtype dtype;
    int ndim;                     /* 0 (a scalar) to ST_MAX_DIMS */
    int64_t shape[ST_MAX_DIMS];
    uint64_t n_elems;             /* product of shape (1 for a scalar) */
    uint64_t begin, end;          /* byte offsets inside the data section: end-begin = n_elems*size */
    const void *data;             /* the first byte; NOT necessarily aligned (use memcpy or st_to_f32) */
} st_tensor;

/* One validated safetensors file. Owns its mapping (or borrows the caller's bytes, st_parse). */
typedef struct {
    char *path;                   /* for messages: the file name, or the `what` of st_parse */
    void *map;                    /* mmap of the whole file; NULL when the bytes are borrowed */
    size_t map_len;
    const uint8_t *data;          /* the data section (after 8 + header_len bytes) */
    uint64_t data_len;
    uint64_t header_len;
    int n_tensors;
    st_tensor *tensors;           /* sorted by name (st_find is a binary search) */
    int n_meta;
    char **meta;                  /* __metadata__ as key, value pairs: meta[2i], meta[2i+1] */
} st_file;

const char *st_dtype_name(st_dtype d);           /* "BF16"; "?" out of range */
int st_dtype_parse(const char *s, st_dtype *out); /* 0, or -1 (no message) for an unknown name */
size_t st_dtype_size(st_dtype d);                 /* bytes per element */

/* Validates a whole file image (bytes[0..len)): header length, JSON object, dtypes, shapes,
 * offsets covering the data section exactly without overlap, sizes. f borrows `bytes` (keep them
 * alive until st_close). `what` names the file in messages. 0, or -1 with ERR_CORRUPT. */
int st_parse(st_file *f, const void *bytes, size_t len, const char *what);
/* mmaps path and validates it as st_parse does. 0 or -1 (ERR_IO, ERR_CORRUPT). */
int st_open(st_file *f, const char *path);
void st_close(st_file *f);                        /* safe on a zeroed or failed st_file */

const st_tensor *st_find(const st_file *f, const char *name); /* NULL when absent */
const char *st_meta_get(const st_file *f, const char *key);   /* NULL when absent */

/* Converts a F32, F16 or BF16 tensor to fp32: out holds t->n_elems floats. Other dtypes fail
 * with ERR_INPUT naming the tensor and `what` (the file). */
int st_to_f32(float *out, const st_tensor *t, const char *what);

/* Scalar conversions. f32 -> bf16/f16 round to nearest, ties to even; NaN stays NaN. */
float st_bf16_to_f32(uint16_t h);
uint16_t st_f32_to_bf16(float f);
float st_f16_to_f32(uint16_t h);
uint16_t st_f32_to_f16(float f);

/* ---- sharded checkpoints ---- */

/* The tensors of one checkpoint, in one file or in the shards of an index. */
typedef struct {
    char *dir;                    /* the folder holding the files */
    int n_files;
    st_file *files;
    char **file_names;            /* base names, parallel to files */
    int n_tensors;
    const st_tensor **tensors;    /* every tensor of every file, sorted by name (unique) */
    int *tensor_file;             /* index into files of each entry of tensors */
} st_set;

/* Opens `path`: a .safetensors file; a model.safetensors.index.json (weight_map: tensor ->
 * shard file in the same folder); or a folder holding model.safetensors or
 * model.safetensors.index.json. Checks that every tensor the index lists is in its shard and
 * that no name appears twice. 0 or -1. */
int st_set_open(st_set *s, const char *path);
void st_set_close(st_set *s);
/* NULL when absent; *file (if non-NULL) receives the index of the file holding it. */
const st_tensor *st_set_find(const st_set *s, const char *name, int *file);

/* ---- writing ---- */

/* One tensor to write: either fp32 values converted to the file's dtype, or raw bytes. */
typedef struct {
    const char *name;
    int ndim;
    int64_t shape[ST_MAX_DIMS];
    const float *f32;             /* fp32 source, written as `dtype` of st_write; or NULL and: */
    const void *raw;              /* raw little-endian elements of raw_dtype, written as they are */
    st_dtype raw_dtype;
} st_entry;

/* Writes a safetensors file atomically (temporary file, fsync, rename, fsync of the folder):
 * tensors in the given order, header padded with spaces to a multiple of 8 bytes, `meta`
 * (n_meta key/value pairs: meta[2i], meta[2i+1]) as __metadata__. dtype: ST_F32, ST_BF16 or
 * ST_F16 for the f32 entries. 0 or -1. */
int st_write(const char *path, const st_entry *entries, int n, st_dtype dtype, const char *const *meta, int n_meta);

#endif
