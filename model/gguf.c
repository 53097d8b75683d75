/* gguf.c: validated reading of GGUF files (mmap or borrowed bytes). The parser walks the header
 * with a cursor that refuses every read past the end, bounds every count by the bytes left
 * (an entry needs at least a few bytes, so a huge count in a small file is damage), and checks
 * the tensor table as a whole: known types, shapes that are whole blocks, sizes that fit in the
 * data section, aligned offsets, no overlap, unique names. Messages name the file and the field. */
#include "model/gguf.h"

#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/error.h"
#include "common/fsutil.h"

static const struct {
    const char *name;
    size_t size; /* bytes of a scalar (0: string/array) */
} vtype_info[GGUF_N_VTYPES] = {
    [GGUF_U8] = {"u8", 1},   [GGUF_I8] = {"i8", 1},    [GGUF_U16] = {"u16", 2},   [GGUF_I16] = {"i16", 2},
    [GGUF_U32] = {"u32", 4}, [GGUF_I32] = {"i32", 4},  [GGUF_F32] = {"f32", 4},   [GGUF_BOOL] = {"bool", 1},
    [GGUF_STRING] = {"string", 0}, [GGUF_ARRAY] = {"array", 0}, [GGUF_U64] = {"u64", 8}, [GGUF_I64] = {"i64", 8},
    [GGUF_F64] = {"f64", 8},
};

const char *gguf_vtype_name(gguf_vtype t) { return (unsigned)t < GGUF_N_VTYPES ? vtype_info[t].name : "?"; }

/* ---- the cursor ---- */

typedef struct {
    const uint8_t *p;
    uint64_t size, pos;
    const char *what;
} cursor;

static int corrupt(const cursor *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int corrupt(const cursor *c, const char *fmt, ...) {
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return err_set(ERR_CORRUPT, "%s: %s", c->what, msg);
}

static uint64_t left(const cursor *c) { return c->size - c->pos; }

static int need(cursor *c, uint64_t n, const char *field) {
    if (n > left(c))
        return corrupt(c, "%s at byte %llu needs %llu bytes but only %llu remain; the file is truncated or not a GGUF "
                       "file", field, (unsigned long long)c->pos, (unsigned long long)n, (unsigned long long)left(c));
    return 0;
}

static uint64_t rd(const uint8_t *p, int n) {
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; i--) v = v << 8 | p[i];
    return v;
}

static int read_u32(cursor *c, uint32_t *v, const char *field) {
    if (need(c, 4, field)) return -1;
    *v = (uint32_t)rd(c->p + c->pos, 4);
    c->pos += 4;
    return 0;
}

static int read_u64(cursor *c, uint64_t *v, const char *field) {
    if (need(c, 8, field)) return -1;
    *v = rd(c->p + c->pos, 8);
    c->pos += 8;
    return 0;
}

/* A string: uint64 length + bytes. *s points into the file. */
static int read_str(cursor *c, const uint8_t **s, uint64_t *len, const char *field) {
    if (read_u64(c, len, field) || need(c, *len, field)) return -1;
    *s = c->p + c->pos;
    c->pos += *len;
    return 0;
}

/* A name (key or tensor name) as a NUL-terminated copy: bounded, without NUL bytes. */
static int read_name(cursor *c, char **out, const char *field) {
    const uint8_t *s;
    uint64_t len;
    if (read_str(c, &s, &len, field)) return -1;
    if (len == 0 || len >= GGUF_MAX_NAME)
        return corrupt(c, "%s at byte %llu is %llu bytes long; names are 1 to %d bytes", field,
                       (unsigned long long)(c->pos - len - 8), (unsigned long long)len, GGUF_MAX_NAME - 1);
    if (memchr(s, 0, len)) return corrupt(c, "%s '%.*s' holds a NUL byte", field, (int)len, (const char *)s);
    *out = xstrndup((const char *)s, len);
    return *out ? 0 : -1;
}

/* ---- metadata ---- */

static int read_value(cursor *c, gguf_kv *kv) {
    uint32_t t;
    if (read_u32(c, &t, "a metadata value type")) return -1;
    if (t >= GGUF_N_VTYPES)
        return corrupt(c, "metadata '%s' has value type %u; GGUF defines 0 to %d", kv->key, t, GGUF_N_VTYPES - 1);
    kv->type = (gguf_vtype)t;
    kv->n = 1;
    if (t == GGUF_STRING) return read_str(c, &kv->data, &kv->str_len, kv->key);
    if (t != GGUF_ARRAY) {
        if (need(c, vtype_info[t].size, kv->key)) return -1;
        kv->data = c->p + c->pos;
        c->pos += vtype_info[t].size;
        return 0;
    }
    uint32_t et;
    if (read_u32(c, &et, kv->key) || read_u64(c, &kv->n, kv->key)) return -1;
    if (et >= GGUF_N_VTYPES)
        return corrupt(c, "metadata array '%s' has element type %u; GGUF defines 0 to %d", kv->key, et, GGUF_N_VTYPES - 1);
    if (et == GGUF_ARRAY) return corrupt(c, "metadata '%s' is an array of arrays, which smelt does not read", kv->key);
    kv->elem_type = (gguf_vtype)et;
    kv->data = c->p + c->pos;
    if (et != GGUF_STRING) {
        uint64_t sz = vtype_info[et].size;
        if (kv->n > left(c) / sz)
            return corrupt(c, "metadata array '%s' claims %llu %s elements but only %llu bytes remain", kv->key,
                           (unsigned long long)kv->n, vtype_info[et].name, (unsigned long long)left(c));
        c->pos += kv->n * sz;
        return 0;
    }
    /* strings: each needs at least its 8-byte length */
    if (kv->n > left(c) / 8)
        return corrupt(c, "metadata array '%s' claims %llu strings but only %llu bytes remain", kv->key,
                       (unsigned long long)kv->n, (unsigned long long)left(c));
    kv->str_off = xmalloc((size_t)(kv->n + 1) * sizeof *kv->str_off);
    if (!kv->str_off) return -1;
    uint64_t start = c->pos;
    for (uint64_t i = 0; i < kv->n; i++) {
        const uint8_t *s;
        uint64_t len;
        kv->str_off[i] = c->pos - start;
        if (read_str(c, &s, &len, kv->key)) return err_prefix("element %llu: ", (unsigned long long)i);
    }
    kv->str_off[kv->n] = c->pos - start;
    return 0;
}

static int cmp_kv(const void *a, const void *b, void *ctx) {
    const gguf_file *f = ctx;
    return strcmp(f->kv[*(const int64_t *)a].key, f->kv[*(const int64_t *)b].key);
}
static int cmp_tensor_name(const void *a, const void *b, void *ctx) {
    const gguf_file *f = ctx;
    return strcmp(f->tensors[*(const int64_t *)a].name, f->tensors[*(const int64_t *)b].name);
}
static int cmp_tensor_offset(const void *a, const void *b, void *ctx) {
    const gguf_file *f = ctx;
    const gguf_tensor *x = &f->tensors[*(const int64_t *)a], *y = &f->tensors[*(const int64_t *)b];
    return (x->offset > y->offset) - (x->offset < y->offset);
}

/* The indices 0..n-1 sorted by cmp (caller frees). */
static int64_t *sorted_index(gguf_file *f, int64_t n, int (*cmp)(const void *, const void *, void *)) {
    int64_t *idx = xmalloc((size_t)(n ? n : 1) * sizeof *idx);
    if (!idx) return NULL;
    for (int64_t i = 0; i < n; i++) idx[i] = i;
    if (n > 1) qsort_r(idx, (size_t)n, sizeof *idx, cmp, f);
    return idx;
}

static int read_metadata(cursor *c, gguf_file *f) {
    for (int64_t i = 0; i < f->n_kv; i++) {
        gguf_kv *kv = &f->kv[i];
        char field[48];
        snprintf(field, sizeof field, "the key of metadata entry %lld", (long long)i);
        if (read_name(c, &kv->key, field) || read_value(c, kv)) return -1;
    }
    if (!(f->kv_sorted = sorted_index(f, f->n_kv, cmp_kv))) return -1;
    for (int64_t i = 1; i < f->n_kv; i++)
        if (!strcmp(f->kv[f->kv_sorted[i]].key, f->kv[f->kv_sorted[i - 1]].key))
            return corrupt(c, "metadata key '%s' appears twice", f->kv[f->kv_sorted[i]].key);
    const gguf_kv *al = gguf_get(f, "general.alignment");
    f->alignment = GGUF_DEFAULT_ALIGNMENT;
    if (al) {
        if (al->type != GGUF_U32)
            return corrupt(c, "general.alignment is a %s; it must be a u32 power of two", gguf_vtype_name(al->type));
        uint64_t a = rd(al->data, 4);
        if (a == 0 || (a & (a - 1)) || a > (1u << 30))
            return corrupt(c, "general.alignment is %llu; it must be a power of two (32 by default)", (unsigned long long)a);
        f->alignment = a;
    }
    return 0;
}

/* ---- tensor infos ---- */

static int read_tensor_info(cursor *c, gguf_tensor *t, int64_t i) {
    char field[64];
    snprintf(field, sizeof field, "the name of tensor %lld", (long long)i);
    if (read_name(c, &t->name, field)) return -1;
    uint32_t nd, type;
    if (read_u32(c, &nd, t->name)) return -1;
    if (nd < 1 || nd > GGUF_MAX_DIMS)
        return corrupt(c, "tensor '%s' has %u dimensions; smelt reads 1 to %d", t->name, nd, GGUF_MAX_DIMS);
    t->n_dims = (int)nd;
    t->n_elems = 1;
    for (int d = 0; d < GGUF_MAX_DIMS; d++) t->ne[d] = 1;
    for (uint32_t d = 0; d < nd; d++) {
        uint64_t ne;
        if (read_u64(c, &ne, t->name)) return -1;
        /* 2^40 weights of one tensor is far beyond any model and keeps products from overflowing */
        if (ne == 0 || ne > (1ull << 40) || t->n_elems > (1ull << 40) / ne)
            return corrupt(c, "tensor '%s' has dimension %u of size %llu; sizes must be 1 to 2^40 with at most 2^40 "
                           "elements in all", t->name, d, (unsigned long long)ne);
        t->ne[d] = (int64_t)ne;
        t->n_elems *= ne;
    }
    if (read_u32(c, &type, t->name) || read_u64(c, &t->offset, t->name)) return -1;
    if (type >= GGML_N_TYPES || !ggml_type_name((ggml_type)type))
        return corrupt(c, "tensor '%s' has ggml type %u, which smelt does not know (a newer llama.cpp format?)",
                       t->name, type);
    t->type = (ggml_type)type;
    int b = ggml_blck_size(t->type);
    if (t->ne[0] % b)
        return corrupt(c, "tensor '%s' is %s with rows of %lld weights, not a whole number of blocks of %d", t->name,
                       ggml_type_name(t->type), (long long)t->ne[0], b);
    t->n_bytes = t->n_elems / (uint64_t)b * ggml_type_size(t->type);
    return 0;
}

static int check_tensors(cursor *c, gguf_file *f) {
    if (!(f->tensor_sorted = sorted_index(f, f->n_tensors, cmp_tensor_name))) return -1;
    for (int64_t i = 1; i < f->n_tensors; i++)
        if (!strcmp(f->tensors[f->tensor_sorted[i]].name, f->tensors[f->tensor_sorted[i - 1]].name))
            return corrupt(c, "tensor '%s' appears twice", f->tensors[f->tensor_sorted[i]].name);
    uint64_t data_len = f->size > f->data_offset ? f->size - f->data_offset : 0;
    for (int64_t i = 0; i < f->n_tensors; i++) {
        gguf_tensor *t = &f->tensors[i];
        if (t->offset % f->alignment)
            return corrupt(c, "tensor '%s' has offset %llu, not a multiple of the alignment %llu", t->name,
                           (unsigned long long)t->offset, (unsigned long long)f->alignment);
        if (t->offset > data_len || t->n_bytes > data_len - t->offset)
            return corrupt(c, "tensor '%s' (%s, %llu bytes at offset %llu) runs past the end of the data section "
                           "(%llu bytes); the file is truncated", t->name, ggml_type_name(t->type),
                           (unsigned long long)t->n_bytes, (unsigned long long)t->offset, (unsigned long long)data_len);
        t->data = f->bytes + f->data_offset + t->offset;
    }
    int64_t *by_off = sorted_index(f, f->n_tensors, cmp_tensor_offset);
    if (!by_off) return -1;
    int rc = 0;
    for (int64_t i = 1; i < f->n_tensors && !rc; i++) {
        const gguf_tensor *a = &f->tensors[by_off[i - 1]], *b = &f->tensors[by_off[i]];
        if (a->offset + a->n_bytes > b->offset)
            rc = corrupt(c, "tensors '%s' and '%s' overlap (offsets %llu and %llu, %llu bytes)", a->name, b->name,
                         (unsigned long long)a->offset, (unsigned long long)b->offset, (unsigned long long)a->n_bytes);
    }
    free(by_off);
    return rc;
}

int gguf_parse(gguf_file *f, const void *bytes, size_t len, const char *what) {
    memset(f, 0, sizeof *f);
    f->bytes = bytes;
    f->size = len;
    if (!(f->path = xstrdup(what ? what : "(gguf)"))) return -1;
    cursor c = {bytes, len, 0, f->path};
    if (len < 4 || memcmp(bytes, GGUF_MAGIC, 4)) {
        corrupt(&c, "the file does not start with the GGUF magic (\"GGUF\"); it is not a GGUF file");
        goto fail;
    }
    c.pos = 4;
    uint64_t nt, nkv;
    if (read_u32(&c, &f->version, "the version")) goto fail;
    if (f->version != 2 && f->version != 3) {
        uint32_t sw = __builtin_bswap32(f->version);
        if (sw == 2 || sw == 3)
            corrupt(&c, "the file is a big-endian GGUF (version %u byte-swapped); smelt reads little-endian files", sw);
        else
            corrupt(&c, "GGUF version %u is not supported; smelt reads versions 2 and 3%s", f->version,
                    f->version == 1 ? " (convert version 1 files with llama.cpp's gguf tools)" : "");
        goto fail;
    }
    if (read_u64(&c, &nt, "the tensor count") || read_u64(&c, &nkv, "the metadata count")) goto fail;
    /* a metadata entry takes at least 13 bytes (key length, 1-byte key, type, 1-byte value), a tensor
     * info at least 33; bigger counts cannot fit in the file */
    if (nkv > GGUF_MAX_KV || nkv > left(&c) / 13) {
        corrupt(&c, "the header claims %llu metadata entries, more than the file can hold", (unsigned long long)nkv);
        goto fail;
    }
    if (nt > GGUF_MAX_TENSORS || nt > left(&c) / 33) {
        corrupt(&c, "the header claims %llu tensors, more than the file can hold", (unsigned long long)nt);
        goto fail;
    }
    f->n_kv = (int64_t)nkv;
    f->n_tensors = (int64_t)nt;
    f->kv = xcalloc(nkv ? nkv : 1, sizeof *f->kv);
    f->tensors = xcalloc(nt ? nt : 1, sizeof *f->tensors);
    if (!f->kv || !f->tensors || read_metadata(&c, f)) goto fail;
    for (int64_t i = 0; i < f->n_tensors; i++)
        if (read_tensor_info(&c, &f->tensors[i], i)) goto fail;
    f->data_offset = (c.pos + f->alignment - 1) / f->alignment * f->alignment;
    if (check_tensors(&c, f)) goto fail;
    return 0;
fail:
    gguf_close(f);
    return -1;
}

int gguf_open(gguf_file *f, const char *path) {
    memset(f, 0, sizeof *f);
    void *map;
    size_t len;
    if (fs_map_file(path, "a .gguf file", &map, &len)) return -1;
    if (gguf_parse(f, map ? map : "", len, path)) {
        fs_unmap(map, len);
        return -1;
    }
    f->map = map;
    f->map_len = len;
    return 0;
}

void gguf_close(gguf_file *f) {
    if (!f) return;
    for (int64_t i = 0; f->kv && i < f->n_kv; i++) {
        free(f->kv[i].key);
        free(f->kv[i].str_off);
    }
    for (int64_t i = 0; f->tensors && i < f->n_tensors; i++) free(f->tensors[i].name);
    free(f->kv);
    free(f->kv_sorted);
    free(f->tensors);
    free(f->tensor_sorted);
    free(f->path);
    fs_unmap(f->map, f->map_len);
    memset(f, 0, sizeof *f);
}

int gguf_sniff(const char *path) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return 0;
    char head[4];
    ssize_t n = read(fd, head, 4);
    close(fd);
    return n == 4 && !memcmp(head, GGUF_MAGIC, 4);
}

/* ---- lookups and typed getters ---- */

const gguf_kv *gguf_get(const gguf_file *f, const char *key) {
    int64_t lo = 0, hi = f->n_kv - 1;
    while (f->kv_sorted && lo <= hi) {
        int64_t mid = lo + (hi - lo) / 2;
        int c = strcmp(f->kv[f->kv_sorted[mid]].key, key);
        if (!c) return &f->kv[f->kv_sorted[mid]];
        if (c < 0) lo = mid + 1;
        else hi = mid - 1;
    }
    return NULL;
}

const gguf_tensor *gguf_find_tensor(const gguf_file *f, const char *name) {
    int64_t lo = 0, hi = f->n_tensors - 1;
    while (f->tensor_sorted && lo <= hi) {
        int64_t mid = lo + (hi - lo) / 2;
        int c = strcmp(f->tensors[f->tensor_sorted[mid]].name, name);
        if (!c) return &f->tensors[f->tensor_sorted[mid]];
        if (c < 0) lo = mid + 1;
        else hi = mid - 1;
    }
    return NULL;
}

static int is_int_type(gguf_vtype t) {
    return t == GGUF_U8 || t == GGUF_I8 || t == GGUF_U16 || t == GGUF_I16 || t == GGUF_U32 || t == GGUF_I32 ||
           t == GGUF_U64 || t == GGUF_I64;
}

/* One numeric element as a double (integers up to 2^53 exactly; larger ones only for range checks). */
static double num_at(gguf_vtype t, const uint8_t *p) {
    uint64_t v = rd(p, (int)vtype_info[t].size);
    switch (t) {
    case GGUF_U8: case GGUF_U16: case GGUF_U32: case GGUF_U64: return (double)v;
    case GGUF_I8: return (double)(int8_t)v;
    case GGUF_I16: return (double)(int16_t)v;
    case GGUF_I32: return (double)(int32_t)v;
    case GGUF_I64: return (double)(int64_t)v;
    case GGUF_BOOL: return v ? 1.0 : 0.0;
    case GGUF_F32: {
        uint32_t u = (uint32_t)v;
        float x;
        memcpy(&x, &u, 4);
        return x;
    }
    case GGUF_F64: {
        double x;
        memcpy(&x, &v, 8);
        return x;
    }
    default: return 0;
    }
}

static int wrong_type(const gguf_file *f, const gguf_kv *kv, const char *want) {
    return err_set(ERR_CORRUPT, "%s: metadata '%s' is a %s; expected %s", f->path, kv->key, gguf_vtype_name(kv->type),
                   want);
}

int gguf_get_int(const gguf_file *f, const char *key, int64_t lo, int64_t hi, int64_t *out) {
    const gguf_kv *kv = gguf_get(f, key);
    if (!kv) return 1;
    if (!is_int_type(kv->type)) return wrong_type(f, kv, "an integer");
    uint64_t raw = rd(kv->data, (int)vtype_info[kv->type].size);
    if (kv->type == GGUF_U64 && raw > (uint64_t)INT64_MAX)
        return err_set(ERR_CORRUPT, "%s: metadata '%s' is %llu, outside %lld..%lld", f->path, key,
                       (unsigned long long)raw, (long long)lo, (long long)hi);
    int64_t v = kv->type == GGUF_U64 || kv->type == GGUF_I64 ? (int64_t)raw : (int64_t)num_at(kv->type, kv->data);
    if (v < lo || v > hi)
        return err_set(ERR_CORRUPT, "%s: metadata '%s' is %lld, outside %lld..%lld", f->path, key, (long long)v,
                       (long long)lo, (long long)hi);
    *out = v;
    return 0;
}

int gguf_get_float(const gguf_file *f, const char *key, double *out) {
    const gguf_kv *kv = gguf_get(f, key);
    if (!kv) return 1;
    if (kv->type != GGUF_F32 && kv->type != GGUF_F64 && !is_int_type(kv->type)) return wrong_type(f, kv, "a number");
    *out = num_at(kv->type, kv->data);
    return 0;
}

int gguf_get_bool(const gguf_file *f, const char *key, int *out) {
    const gguf_kv *kv = gguf_get(f, key);
    if (!kv) return 1;
    if (kv->type != GGUF_BOOL) return wrong_type(f, kv, "a bool");
    *out = kv->data[0] != 0;
    return 0;
}

int gguf_get_string(const gguf_file *f, const char *key, char **out) {
    const gguf_kv *kv = gguf_get(f, key);
    if (!kv) return 1;
    if (kv->type != GGUF_STRING) return wrong_type(f, kv, "a string");
    if (memchr(kv->data, 0, kv->str_len))
        return err_set(ERR_CORRUPT, "%s: metadata '%s' holds a NUL byte", f->path, key);
    *out = xstrndup((const char *)kv->data, kv->str_len);
    return *out ? 0 : -1;
}

const char *gguf_arr_str(const gguf_kv *kv, uint64_t i, uint64_t *len) {
    const uint8_t *p = kv->data + kv->str_off[i];
    *len = rd(p, 8);
    return (const char *)p + 8;
}

double gguf_arr_num(const gguf_kv *kv, uint64_t i) {
    return num_at(kv->elem_type, kv->data + i * vtype_info[kv->elem_type].size);
}

int gguf_get_array(const gguf_file *f, const char *key, int strings, uint64_t n, const gguf_kv **out) {
    const gguf_kv *kv = gguf_get(f, key);
    *out = NULL;
    if (!kv) return 1;
    if (kv->type != GGUF_ARRAY) return wrong_type(f, kv, strings ? "an array of strings" : "an array of numbers");
    if (strings ? kv->elem_type != GGUF_STRING : kv->elem_type == GGUF_STRING)
        return err_set(ERR_CORRUPT, "%s: metadata '%s' is an array of %s; expected an array of %s", f->path, key,
                       gguf_vtype_name(kv->elem_type), strings ? "strings" : "numbers");
    if (n && kv->n != n)
        return err_set(ERR_CORRUPT, "%s: metadata '%s' has %llu elements; expected %llu", f->path, key,
                       (unsigned long long)kv->n, (unsigned long long)n);
    *out = kv;
    return 0;
}
