/* gguf.h: GGUF files (llama.cpp's format, versions 2 and 3, little-endian): the header, metadata of
 * every value type (arrays of numbers and of strings included), tensor infos and the aligned data
 * section. Files are mmapped read-only; every count, length and offset is checked against the
 * file's size before it is used, so a damaged file gives a message that names the field.
 * Writing is model/gguf_write.h; the ggml tensor types and their (de)quantization model/gguf_quants.h. */
#ifndef SMELT_MODEL_GGUF_H
#define SMELT_MODEL_GGUF_H

#include <stddef.h>
#include <stdint.h>

#include "model/gguf_quants.h"

#define GGUF_MAGIC "GGUF"
#define GGUF_VERSION 3
#define GGUF_DEFAULT_ALIGNMENT 32
#define GGUF_MAX_DIMS 4
/* Bounds a file may not exceed (llama.cpp's own limits are tighter for names: 64 bytes). */
#define GGUF_MAX_NAME 256          /* bytes of a key or a tensor name */
#define GGUF_MAX_KV (1 << 20)      /* metadata entries */
#define GGUF_MAX_TENSORS (1 << 20) /* tensor infos */

/* Metadata value types (the numbers are the file's). */
typedef enum {
    GGUF_U8 = 0, GGUF_I8 = 1, GGUF_U16 = 2, GGUF_I16 = 3, GGUF_U32 = 4, GGUF_I32 = 5, GGUF_F32 = 6,
    GGUF_BOOL = 7, GGUF_STRING = 8, GGUF_ARRAY = 9, GGUF_U64 = 10, GGUF_I64 = 11, GGUF_F64 = 12,
    GGUF_N_VTYPES
} gguf_vtype;

/* One metadata entry. Values point into the file's bytes (never NUL-terminated). */
typedef struct {
    char *key;             /* NUL-terminated copy */
    gguf_vtype type;
    gguf_vtype elem_type;  /* arrays: the elements' type (never GGUF_ARRAY: nested arrays are refused) */
    uint64_t n;            /* arrays: elements; 1 otherwise */
    const uint8_t *data;   /* a number or bool: its bytes; a string: its bytes (str_len of them);
                            * an array of numbers: the first element */
    uint64_t str_len;
    uint64_t *str_off;     /* arrays of strings: n+1 offsets from data of each string's 8-byte length */
} gguf_kv;

typedef struct {
    char *name;            /* NUL-terminated copy */
    int n_dims;            /* 1 .. GGUF_MAX_DIMS */
    int64_t ne[GGUF_MAX_DIMS]; /* ne[0] is the contiguous dimension; unused dims are 1 */
    ggml_type type;
    uint64_t offset;       /* from the start of the data section (a multiple of the alignment) */
    uint64_t n_elems, n_bytes;
    const uint8_t *data;   /* the first byte (aligned to `alignment` when the map is) */
} gguf_tensor;

typedef struct gguf_file_s {
    char *path;            /* for messages */
    void *map;             /* the mmap of the whole file, or NULL when the bytes are borrowed */
    size_t map_len;
    const uint8_t *bytes;  /* the whole file */
    uint64_t size;
    uint32_t version;
    int64_t n_kv;
    gguf_kv *kv;           /* in file order */
    int64_t *kv_sorted;    /* indices of kv sorted by key (lookups) */
    int64_t n_tensors;
    gguf_tensor *tensors;  /* in file order */
    int64_t *tensor_sorted;
    uint64_t alignment;    /* general.alignment, or 32 */
    uint64_t data_offset;  /* start of the data section in the file */
} gguf_file;

/* Validates a whole file image (bytes[0..len)); f borrows the bytes. `what` names the file in
 * messages. 0, or -1 with ERR_CORRUPT (or ERR_NOMEM). */
int gguf_parse(gguf_file *f, const void *bytes, size_t len, const char *what);
/* mmaps path and parses it. 0 or -1 (ERR_IO, ERR_CORRUPT). */
int gguf_open(gguf_file *f, const char *path);
void gguf_close(gguf_file *f); /* safe on a zeroed or failed gguf_file */
/* 1 when the file at path starts with the GGUF magic (no message otherwise). */
int gguf_sniff(const char *path);

const char *gguf_vtype_name(gguf_vtype t); /* "u32", "string", ... ("?" out of range) */

const gguf_kv *gguf_get(const gguf_file *f, const char *key); /* NULL when absent */
const gguf_tensor *gguf_find_tensor(const gguf_file *f, const char *name);

/* Typed getters: absent keys return 1 (the caller's default stands), a value of the wrong type or
 * out of range is -1 with ERR_CORRUPT naming the key. Integers accept every integer type. */
int gguf_get_int(const gguf_file *f, const char *key, int64_t lo, int64_t hi, int64_t *out);
int gguf_get_float(const gguf_file *f, const char *key, double *out); /* f32, f64 or an integer */
int gguf_get_bool(const gguf_file *f, const char *key, int *out);
/* A string value as a new NUL-terminated copy (caller frees); strings holding NUL are refused. */
int gguf_get_string(const gguf_file *f, const char *key, char **out);

/* Array elements (i < kv->n; the caller checks the kv's elem_type). */
const char *gguf_arr_str(const gguf_kv *kv, uint64_t i, uint64_t *len);
double gguf_arr_num(const gguf_kv *kv, uint64_t i); /* any numeric or bool element type */
/* The array under key: of strings (strings = 1) or of numbers (0), with n elements (n = 0: any):
 * 0 and *kv, 1 when absent, -1 (ERR_CORRUPT naming the key) otherwise. */
int gguf_get_array(const gguf_file *f, const char *key, int strings, uint64_t n, const gguf_kv **kv);

#endif
