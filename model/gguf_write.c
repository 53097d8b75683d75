/* gguf_write.c: the GGUF writer. Metadata entries are serialized as they are set (key, type,
 * value in the file's encoding), so writing is a concatenation; tensor data is streamed at
 * write time, quantized one row at a time when it comes as fp32. */
#include "model/gguf_write.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/error.h"
#include "common/fsutil.h"
#include "common/strbuf.h"

typedef struct {
    char *name;
    int n_dims;
    int64_t ne[GGUF_MAX_DIMS];
    ggml_type type;
    const void *raw;      /* ready bytes, or NULL and: */
    const float *f32;
    ggml_quantize_fn quantize;
    uint64_t n_bytes, offset;
} wtensor;

struct gguf_writer {
    strbuf kv;            /* the serialized metadata entries */
    int64_t n_kv;
    char **keys;
    int64_t cap_keys;
    wtensor *t;
    int64_t n_t, cap_t;
};

static const size_t scalar_size[GGUF_N_VTYPES] = {
    [GGUF_U8] = 1, [GGUF_I8] = 1, [GGUF_U16] = 2, [GGUF_I16] = 2, [GGUF_U32] = 4, [GGUF_I32] = 4,
    [GGUF_F32] = 4, [GGUF_BOOL] = 1, [GGUF_U64] = 8, [GGUF_I64] = 8, [GGUF_F64] = 8,
};

gguf_writer *gguf_writer_new(void) { return xcalloc(1, sizeof(gguf_writer)); }

void gguf_writer_free(gguf_writer *w) {
    if (!w) return;
    sb_free(&w->kv);
    for (int64_t i = 0; i < w->n_kv; i++) free(w->keys[i]);
    free(w->keys);
    for (int64_t i = 0; i < w->n_t; i++) free(w->t[i].name);
    free(w->t);
    free(w);
}

static int put_le(strbuf *b, uint64_t v, int n) {
    uint8_t x[8];
    for (int i = 0; i < n; i++) x[i] = (uint8_t)(v >> (8 * i));
    return sb_append(b, (const char *)x, (size_t)n);
}

static int put_str(strbuf *b, const char *s, size_t len) { return put_le(b, len, 8) || sb_append(b, s, len); }

int gguf_writer_has(const gguf_writer *w, const char *key) {
    for (int64_t i = 0; i < w->n_kv; i++)
        if (!strcmp(w->keys[i], key)) return 1;
    return 0;
}

/* Starts an entry: checks the key, records it, writes key and type. */
static int begin_kv(gguf_writer *w, const char *key, gguf_vtype type) {
    size_t len = strlen(key);
    if (!len || len >= GGUF_MAX_NAME) return err_set(ERR_INPUT, "GGUF metadata key '%s' must be 1 to %d bytes", key, GGUF_MAX_NAME - 1);
    if (gguf_writer_has(w, key)) return err_set(ERR_INPUT, "GGUF metadata key '%s' is set twice", key);
    if (w->n_kv == w->cap_keys) {
        int64_t cap = w->cap_keys ? 2 * w->cap_keys : 32;
        char **k = xrealloc(w->keys, (size_t)cap * sizeof *k);
        if (!k) return -1;
        w->keys = k;
        w->cap_keys = cap;
    }
    if (!(w->keys[w->n_kv] = xstrdup(key))) return -1;
    w->n_kv++;
    return put_str(&w->kv, key, len) || put_le(&w->kv, (uint64_t)type, 4);
}

int gguf_set_scalar(gguf_writer *w, const char *key, gguf_vtype type, const void *value) {
    if ((unsigned)type >= GGUF_N_VTYPES || !scalar_size[type])
        return err_set(ERR_INPUT, "GGUF metadata '%s': type %d is not a number or bool", key, (int)type);
    return begin_kv(w, key, type) || sb_append(&w->kv, (const char *)value, scalar_size[type]) ? -1 : 0;
}

int gguf_set_u32(gguf_writer *w, const char *key, uint32_t v) { return gguf_set_scalar(w, key, GGUF_U32, &v); }
int gguf_set_i32(gguf_writer *w, const char *key, int32_t v) { return gguf_set_scalar(w, key, GGUF_I32, &v); }
int gguf_set_f32(gguf_writer *w, const char *key, float v) { return gguf_set_scalar(w, key, GGUF_F32, &v); }
int gguf_set_bool(gguf_writer *w, const char *key, int v) {
    uint8_t b = v ? 1 : 0;
    return gguf_set_scalar(w, key, GGUF_BOOL, &b);
}

int gguf_set_str(gguf_writer *w, const char *key, const char *s, size_t len) {
    return begin_kv(w, key, GGUF_STRING) || put_str(&w->kv, s, len) ? -1 : 0;
}

int gguf_set_arr_num(gguf_writer *w, const char *key, gguf_vtype elem, const void *data, uint64_t n) {
    if ((unsigned)elem >= GGUF_N_VTYPES || !scalar_size[elem])
        return err_set(ERR_INPUT, "GGUF metadata '%s': arrays of type %d are not arrays of numbers", key, (int)elem);
    if (begin_kv(w, key, GGUF_ARRAY) || put_le(&w->kv, (uint64_t)elem, 4) || put_le(&w->kv, n, 8)) return -1;
    return n ? sb_append(&w->kv, (const char *)data, (size_t)n * scalar_size[elem]) : 0;
}

int gguf_set_arr_str(gguf_writer *w, const char *key, const char *const *strs, const size_t *lens, uint64_t n) {
    if (begin_kv(w, key, GGUF_ARRAY) || put_le(&w->kv, GGUF_STRING, 4) || put_le(&w->kv, n, 8)) return -1;
    for (uint64_t i = 0; i < n; i++)
        if (put_str(&w->kv, strs[i], lens ? lens[i] : strlen(strs[i]))) return -1;
    return 0;
}

int gguf_copy_kv(gguf_writer *w, const gguf_kv *kv) {
    if (kv->type == GGUF_STRING) return gguf_set_str(w, kv->key, (const char *)kv->data, kv->str_len);
    if (kv->type != GGUF_ARRAY) return gguf_set_scalar(w, kv->key, kv->type, kv->data);
    if (kv->elem_type != GGUF_STRING) return gguf_set_arr_num(w, kv->key, kv->elem_type, kv->data, kv->n);
    /* strings are stored in the file's encoding already: copy the bytes */
    if (begin_kv(w, kv->key, GGUF_ARRAY) || put_le(&w->kv, GGUF_STRING, 4) || put_le(&w->kv, kv->n, 8)) return -1;
    return sb_append(&w->kv, (const char *)kv->data, (size_t)kv->str_off[kv->n]);
}

/* ---- tensors ---- */

static int add_tensor(gguf_writer *w, const char *name, int n_dims, const int64_t *ne, ggml_type type, wtensor **out) {
    size_t len = strlen(name);
    if (!len || len >= 64)
        return err_set(ERR_INPUT, "GGUF tensor name '%s' must be 1 to 63 bytes (llama.cpp's limit)", name);
    if (n_dims < 1 || n_dims > GGUF_MAX_DIMS)
        return err_set(ERR_INPUT, "GGUF tensor '%s': %d dimensions (1 to %d)", name, n_dims, GGUF_MAX_DIMS);
    if (!ggml_blck_size(type)) return err_set(ERR_INPUT, "GGUF tensor '%s': ggml type %d is not defined", name, (int)type);
    uint64_t n = 1;
    for (int d = 0; d < n_dims; d++) {
        if (ne[d] < 1 || ne[d] > (1ll << 40)) return err_set(ERR_INPUT, "GGUF tensor '%s': dimension %d is %lld", name, d, (long long)ne[d]);
        n *= (uint64_t)ne[d];
    }
    if (ne[0] % ggml_blck_size(type))
        return err_set(ERR_INPUT, "GGUF tensor '%s': rows of %lld weights cannot be stored as %s (blocks of %d); keep "
                       "this tensor in F16 or F32", name, (long long)ne[0], ggml_type_name(type), ggml_blck_size(type));
    for (int64_t i = 0; i < w->n_t; i++)
        if (!strcmp(w->t[i].name, name)) return err_set(ERR_INPUT, "GGUF tensor '%s' is added twice", name);
    if (w->n_t == w->cap_t) {
        int64_t cap = w->cap_t ? 2 * w->cap_t : 64;
        wtensor *t = xrealloc(w->t, (size_t)cap * sizeof *t);
        if (!t) return -1;
        w->t = t;
        w->cap_t = cap;
    }
    wtensor *t = &w->t[w->n_t];
    memset(t, 0, sizeof *t);
    if (!(t->name = xstrdup(name))) return -1;
    w->n_t++;
    t->n_dims = n_dims;
    for (int d = 0; d < GGUF_MAX_DIMS; d++) t->ne[d] = d < n_dims ? ne[d] : 1;
    t->type = type;
    t->n_bytes = n / (uint64_t)ggml_blck_size(type) * ggml_type_size(type);
    *out = t;
    return 0;
}

int gguf_add_tensor_raw(gguf_writer *w, const char *name, int n_dims, const int64_t *ne, ggml_type type,
                        const void *data, size_t n_bytes) {
    wtensor *t;
    if (add_tensor(w, name, n_dims, ne, type, &t)) return -1;
    if (t->n_bytes != n_bytes) {
        w->n_t--;
        free(t->name);
        return err_set(ERR_INPUT, "GGUF tensor '%s': %zu bytes given, its shape as %s needs %llu", name, n_bytes,
                       ggml_type_name(type), (unsigned long long)t->n_bytes);
    }
    t->raw = data;
    return 0;
}

int gguf_add_tensor_f32(gguf_writer *w, const char *name, int n_dims, const int64_t *ne, ggml_type type,
                        const float *x, ggml_quantize_fn quantize) {
    wtensor *t;
    if (!quantize && !ggml_can_quantize(type))
        return err_set(ERR_INPUT, "GGUF tensor '%s': smelt cannot quantize to %s (it writes F32, F16, BF16, Q8_0, Q4_0, "
                       "Q4_1)", name, ggml_type_name(type) ? ggml_type_name(type) : "?");
    if (add_tensor(w, name, n_dims, ne, type, &t)) return -1;
    t->f32 = x;
    t->quantize = quantize ? quantize : ggml_quantize;
    return 0;
}

/* ---- writing ---- */

static int pad_to(strbuf *b, uint64_t base, uint64_t align) {
    while ((base + b->len) % align)
        if (sb_putc(b, 0)) return -1;
    return 0;
}

static int write_tensor(int fd, const wtensor *t, void *row) {
    if (t->raw) return fs_write_all(fd, t->raw, (size_t)t->n_bytes) ? err_errno("writing tensor %s", t->name) : 0;
    size_t rb = ggml_row_bytes(t->type, t->ne[0]);
    uint64_t rows = t->n_bytes / rb;
    for (uint64_t r = 0; r < rows; r++) {
        if (t->quantize(row, t->f32 + r * (uint64_t)t->ne[0], t->type, t->ne[0]))
            return err_prefix("quantizing tensor %s to %s: ", t->name, ggml_type_name(t->type));
        if (fs_write_all(fd, row, rb)) return err_errno("writing tensor %s", t->name);
    }
    return 0;
}

int gguf_writer_write(gguf_writer *w, const char *path) {
    const uint64_t align = GGUF_DEFAULT_ALIGNMENT;
    strbuf h = STRBUF_INIT;
    int rc = -1, fd = -1;
    char *tmp = NULL;
    void *row = NULL;
    size_t max_row = 1;
    if (sb_append(&h, GGUF_MAGIC, 4) || put_le(&h, GGUF_VERSION, 4) || put_le(&h, (uint64_t)w->n_t, 8) ||
        put_le(&h, (uint64_t)w->n_kv, 8) || sb_append(&h, w->kv.buf ? w->kv.buf : "", w->kv.len))
        goto out;
    uint64_t off = 0;
    for (int64_t i = 0; i < w->n_t; i++) {
        wtensor *t = &w->t[i];
        t->offset = off;
        if (put_str(&h, t->name, strlen(t->name)) || put_le(&h, (uint64_t)t->n_dims, 4)) goto out;
        for (int d = 0; d < t->n_dims; d++)
            if (put_le(&h, (uint64_t)t->ne[d], 8)) goto out;
        if (put_le(&h, (uint64_t)t->type, 4) || put_le(&h, off, 8)) goto out;
        off += (t->n_bytes + align - 1) / align * align;
        size_t rb = ggml_row_bytes(t->type, t->ne[0]);
        if (!t->raw && rb > max_row) max_row = rb;
    }
    if (pad_to(&h, 0, align)) goto out;
    if (!(row = xmalloc(max_row)) || !(tmp = xasprintf("%s.tmp.%ld", path, (long)getpid()))) goto out;
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        err_errno("cannot create %s", tmp);
        goto out;
    }
    if (fs_write_all(fd, h.buf, h.len)) {
        err_errno("writing %s", tmp);
        goto out;
    }
    static const uint8_t zeros[GGUF_DEFAULT_ALIGNMENT];
    for (int64_t i = 0; i < w->n_t; i++) {
        const wtensor *t = &w->t[i];
        if (write_tensor(fd, t, row)) goto out;
        uint64_t pad = (align - t->n_bytes % align) % align;
        if (i + 1 < w->n_t && pad && fs_write_all(fd, zeros, (size_t)pad)) {
            err_errno("writing %s", tmp);
            goto out;
        }
    }
    if (fsync(fd)) {
        err_errno("fsync %s", tmp);
        goto out;
    }
    if (close(fd)) {
        fd = -1;
        err_errno("closing %s", tmp);
        goto out;
    }
    fd = -1;
    if (rename(tmp, path)) {
        err_errno("cannot rename %s to %s", tmp, path);
        goto out;
    }
    if (fs_fsync_parent(path)) goto out;
    rc = 0;
out:
    if (fd >= 0) close(fd);
    if (rc && tmp) unlink(tmp);
    if (rc) err_prefix("writing %s: ", path);
    free(tmp);
    free(row);
    sb_free(&h);
    return rc;
}
