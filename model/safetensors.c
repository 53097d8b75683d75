/* safetensors.c: validated reading of one safetensors file (mmap or borrowed bytes), dtype
 * conversion to fp32, and the atomic writer. Sharded sets are in safetensors_set.c.
 * Every check names the file and the tensor, because a damaged checkpoint is a user's problem
 * to fix and "invalid file" tells them nothing. */
#include "model/safetensors.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/error.h"
#include "common/fsutil.h"
#include "common/strbuf.h"

static const struct {
    const char *name;
    size_t size;
} dtype_info[ST_N_DTYPES] = {
    [ST_BOOL] = {"BOOL", 1},      [ST_U8] = {"U8", 1},     [ST_I8] = {"I8", 1},
    [ST_F8_E5M2] = {"F8_E5M2", 1}, [ST_F8_E4M3] = {"F8_E4M3", 1},
    [ST_I16] = {"I16", 2},        [ST_U16] = {"U16", 2},   [ST_F16] = {"F16", 2},
    [ST_BF16] = {"BF16", 2},      [ST_I32] = {"I32", 4},   [ST_U32] = {"U32", 4},
    [ST_F32] = {"F32", 4},        [ST_F64] = {"F64", 8},   [ST_I64] = {"I64", 8},
    [ST_U64] = {"U64", 8},
};

const char *st_dtype_name(st_dtype d) { return (unsigned)d < ST_N_DTYPES ? dtype_info[d].name : "?"; }
size_t st_dtype_size(st_dtype d) { return (unsigned)d < ST_N_DTYPES ? dtype_info[d].size : 0; }

int st_dtype_parse(const char *s, st_dtype *out) {
    for (int i = 0; i < ST_N_DTYPES; i++)
        if (!strcmp(s, dtype_info[i].name)) {
            *out = (st_dtype)i;
            return 0;
        }
    return -1;
}

/* ---- scalar conversions ---- */

static uint32_t f32_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}
static float bits_f32(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

float st_bf16_to_f32(uint16_t h) { return bits_f32((uint32_t)h << 16); }

uint16_t st_f32_to_bf16(float f) {
    uint32_t u = f32_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40); /* quiet NaN */
    u += 0x7fffu + ((u >> 16) & 1u);  /* round to nearest, ties to even; overflow goes to inf */
    return (uint16_t)(u >> 16);
}

float st_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16, exp = (h >> 10) & 0x1fu, man = h & 0x3ffu;
    if (exp == 0x1f) return bits_f32(sign | 0x7f800000u | (man << 13));  /* inf, NaN */
    if (exp == 0) {
        /* zero or subnormal: man * 2^-24, exact in fp32 */
        float v = (float)man * 0x1p-24f;
        return sign ? -v : v;
    }
    return bits_f32(sign | ((exp + 112u) << 23) | (man << 13));
}

uint16_t st_f32_to_f16(float f) {
    uint32_t u = f32_bits(f), sign = (u >> 16) & 0x8000u, a = u & 0x7fffffffu;
    if (a > 0x7f800000u) return (uint16_t)(sign | 0x7e00u);       /* NaN */
    if (a >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u);      /* rounds to >= 65520: inf */
    if (a < 0x38800000u) {
        /* below the smallest normal half (2^-14): subnormal half = round(|f| * 2^24) */
        float v = bits_f32(a) * 0x1p24f;   /* exact: a power-of-two scaling */
        return (uint16_t)(sign | (uint16_t)lrintf(v)); /* lrintf rounds ties to even */
    }
    uint32_t r = a + 0xfffu + ((a >> 13) & 1u);  /* round the 13 dropped bits to nearest even */
    return (uint16_t)(sign | ((r - 0x38000000u) >> 13));
}

/* ---- parsing ---- */

static int corrupt(const char *what, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int corrupt(const char *what, const char *fmt, ...) {
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return err_set(ERR_CORRUPT, "%s: %s", what, msg);
}

/* A JSON number that is a non-negative integer exactly representable (<= 2^53). */
static int json_u64(const cJSON *j, uint64_t *out) {
    if (!cJSON_IsNumber(j)) return -1;
    double v = j->valuedouble;
    if (!(v >= 0) || v > 9007199254740992.0 || v != floor(v)) return -1;
    *out = (uint64_t)v;
    return 0;
}

static void json_snippet(char *buf, size_t n, const cJSON *j) {
    char *s = j ? cJSON_PrintUnformatted(j) : NULL;
    snprintf(buf, n, "%s", s ? s : "(missing)");
    if (strlen(buf) == n - 1 && n > 4) memcpy(buf + n - 4, "...", 4);
    free(s);
}

static int cmp_name(const void *a, const void *b) {
    return strcmp(((const st_tensor *)a)->name, ((const st_tensor *)b)->name);
}

static int cmp_offset(const void *a, const void *b) {
    const st_tensor *x = *(const st_tensor *const *)a, *y = *(const st_tensor *const *)b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return 0;
}

static int parse_tensor(st_tensor *t, const cJSON *j, uint64_t data_len, const char *what) {
    char snip[96];
    if (!cJSON_IsObject(j)) {
        json_snippet(snip, sizeof snip, j);
        return corrupt(what, "tensor '%s': its header entry is %s, expected an object with dtype, shape "
                       "and data_offsets; the file is damaged", t->name, snip);
    }
    const cJSON *jd = cJSON_GetObjectItemCaseSensitive(j, "dtype");
    const cJSON *js = cJSON_GetObjectItemCaseSensitive(j, "shape");
    const cJSON *jo = cJSON_GetObjectItemCaseSensitive(j, "data_offsets");
    if (!cJSON_IsString(jd) || st_dtype_parse(jd->valuestring, &t->dtype)) {
        json_snippet(snip, sizeof snip, jd);
        return corrupt(what, "tensor '%s': dtype %s is unknown; supported: BOOL U8 I8 F8_E5M2 F8_E4M3 I16 "
                       "U16 F16 BF16 I32 U32 F32 F64 I64 U64 (convert the checkpoint to one of these)", t->name, snip);
    }
    if (!cJSON_IsArray(js)) {
        json_snippet(snip, sizeof snip, js);
        return corrupt(what, "tensor '%s': shape is %s, expected an array of non-negative integers", t->name, snip);
    }
    int nd = cJSON_GetArraySize(js);
    if (nd > ST_MAX_DIMS)
        return corrupt(what, "tensor '%s' has %d dimensions; at most %d are supported", t->name, nd, ST_MAX_DIMS);
    t->ndim = nd;
    uint64_t n = 1;
    int k = 0;
    for (const cJSON *e = js->child; e; e = e->next, k++) {
        uint64_t d;
        if (json_u64(e, &d)) {
            json_snippet(snip, sizeof snip, e);
            return corrupt(what, "tensor '%s': shape entry %d is %s, expected a non-negative integer", t->name, k, snip);
        }
        t->shape[k] = (int64_t)d;
        if (__builtin_mul_overflow(n, d, &n))
            return corrupt(what, "tensor '%s': the product of its shape overflows 64 bits; the header is damaged", t->name);
    }
    t->n_elems = n;
    uint64_t bytes;
    if (__builtin_mul_overflow(n, (uint64_t)st_dtype_size(t->dtype), &bytes))
        return corrupt(what, "tensor '%s': %llu elements of %s overflow 64 bits of bytes; the header is damaged",
                       t->name, (unsigned long long)n, st_dtype_name(t->dtype));
    if (!cJSON_IsArray(jo) || cJSON_GetArraySize(jo) != 2 || json_u64(jo->child, &t->begin) ||
        json_u64(jo->child->next, &t->end)) {
        json_snippet(snip, sizeof snip, jo);
        return corrupt(what, "tensor '%s': data_offsets is %s, expected [begin, end] (non-negative integers)", t->name, snip);
    }
    if (t->end < t->begin)
        return corrupt(what, "tensor '%s': data_offsets [%llu, %llu] end before they begin; the header is damaged",
                       t->name, (unsigned long long)t->begin, (unsigned long long)t->end);
    if (t->end - t->begin != bytes) {
        char shp[160] = "";
        size_t o = 0;
        for (int i = 0; i < nd && o < sizeof shp - 24; i++)
            o += (size_t)snprintf(shp + o, sizeof shp - o, "%s%lld", i ? ", " : "", (long long)t->shape[i]);
        return corrupt(what, "tensor '%s': data_offsets [%llu, %llu] hold %llu bytes but shape [%s] of %s needs "
                       "%llu bytes; the header is damaged or was written by a broken exporter",
                       t->name, (unsigned long long)t->begin, (unsigned long long)t->end,
                       (unsigned long long)(t->end - t->begin), shp, st_dtype_name(t->dtype), (unsigned long long)bytes);
    }
    if (t->end > data_len)
        return corrupt(what, "tensor '%s': data_offsets [%llu, %llu] run past the end of the data section (%llu "
                       "bytes); the file is truncated (re-download or re-save it)", t->name,
                       (unsigned long long)t->begin, (unsigned long long)t->end, (unsigned long long)data_len);
    return 0;
}

/* Offsets sorted: they must tile [0, data_len) exactly, as the reference implementation demands. */
static int check_coverage(st_file *f, const char *what) {
    int n = f->n_tensors;
    if (n == 0) {
        if (f->data_len)
            return corrupt(what, "the header lists no tensors but %llu data bytes follow it; the header is damaged",
                           (unsigned long long)f->data_len);
        return 0;
    }
    const st_tensor **order = xmalloc((size_t)n * sizeof *order);
    if (!order) return -1;
    for (int i = 0; i < n; i++) order[i] = &f->tensors[i];
    qsort(order, (size_t)n, sizeof *order, cmp_offset);
    uint64_t pos = 0;
    int rc = 0;
    const st_tensor *prev = NULL;
    for (int i = 0; i < n && !rc; i++) {
        const st_tensor *t = order[i];
        if (t->begin < pos)
            rc = corrupt(what, "tensors '%s' and '%s' overlap (one ends at byte %llu, the other begins at %llu "
                         "of the data section); the header is damaged", prev->name, t->name,
                         (unsigned long long)pos, (unsigned long long)t->begin);
        else if (t->begin > pos)
            rc = corrupt(what, "bytes [%llu, %llu) of the data section belong to no tensor (before '%s'); the "
                         "header does not describe the file", (unsigned long long)pos,
                         (unsigned long long)t->begin, t->name);
        pos = t->end;
        prev = t;
    }
    if (!rc && pos != f->data_len)
        rc = corrupt(what, "the tensors cover %llu bytes but the data section holds %llu: %llu trailing bytes "
                     "belong to no tensor; the header does not describe the file", (unsigned long long)pos,
                     (unsigned long long)f->data_len, (unsigned long long)(f->data_len - pos));
    free(order);
    return rc;
}

static int parse_meta(st_file *f, const cJSON *j, const char *what) {
    if (!cJSON_IsObject(j)) return corrupt(what, "__metadata__ is not an object of strings; the header is damaged");
    int n = cJSON_GetArraySize(j);
    f->meta = xcalloc((size_t)n * 2 + 1, sizeof(char *));
    if (!f->meta) return -1;
    for (const cJSON *e = j->child; e; e = e->next) {
        if (!cJSON_IsString(e))
            return corrupt(what, "__metadata__ value of '%s' is not a string; the header is damaged", e->string);
        f->meta[2 * f->n_meta] = xstrdup(e->string);
        f->meta[2 * f->n_meta + 1] = xstrdup(e->valuestring);
        f->n_meta++;
        if (!f->meta[2 * f->n_meta - 2] || !f->meta[2 * f->n_meta - 1]) return -1;
    }
    return 0;
}

static int parse_header(st_file *f, const char *hdr, size_t hlen, const char *what) {
    if (hdr[0] != '{')
        return corrupt(what, "the header does not begin with '{' (found byte 0x%02x): not a safetensors file or "
                       "damaged", (unsigned char)hdr[0]);
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(hdr, hlen, &end, 0);
    if (!root) {
        size_t at = end ? (size_t)(end - hdr) : 0;
        const char *ep = cJSON_GetErrorPtr();
        if (ep && ep >= hdr && ep <= hdr + hlen) at = (size_t)(ep - hdr);
        return corrupt(what, "the %zu-byte header is not valid JSON (error near byte %zu); the file is damaged "
                       "or not safetensors", hlen, at);
    }
    int rc = 0;
    if (!cJSON_IsObject(root)) {
        rc = corrupt(what, "the header is JSON but not an object; the file is damaged or not safetensors");
        goto done;
    }
    for (const char *p = end; p && p < hdr + hlen; p++)
        if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r') {
            rc = corrupt(what, "bytes after the header's JSON object (at byte %zu) are not padding spaces; the header "
                         "is damaged", (size_t)(p - hdr));
            goto done;
        }
    int n = 0;
    for (const cJSON *e = root->child; e; e = e->next) n++;
    f->tensors = xcalloc((size_t)n + 1, sizeof *f->tensors);
    if (!f->tensors) {
        rc = -1;
        goto done;
    }
    for (const cJSON *e = root->child; e && !rc; e = e->next) {
        if (!strcmp(e->string, "__metadata__")) {
            if (f->meta) rc = corrupt(what, "__metadata__ appears twice; the header is damaged");
            else rc = parse_meta(f, e, what);
            continue;
        }
        st_tensor *t = &f->tensors[f->n_tensors++];
        t->name = xstrdup(e->string);
        if (!t->name) rc = -1;
        else rc = parse_tensor(t, e, f->data_len, what);
    }
    if (rc) goto done;
    qsort(f->tensors, (size_t)f->n_tensors, sizeof *f->tensors, cmp_name);
    for (int i = 1; i < f->n_tensors; i++)
        if (!strcmp(f->tensors[i - 1].name, f->tensors[i].name)) {
            rc = corrupt(what, "tensor '%s' appears twice in the header; the file is damaged", f->tensors[i].name);
            goto done;
        }
    rc = check_coverage(f, what);
    for (int i = 0; i < f->n_tensors && !rc; i++) f->tensors[i].data = f->data + f->tensors[i].begin;
done:
    cJSON_Delete(root);
    return rc;
}

int st_parse(st_file *f, const void *bytes, size_t len, const char *what) {
    memset(f, 0, sizeof *f);
    f->path = xstrdup(what ? what : "(safetensors)");
    if (!f->path) return -1;
    what = f->path;
    const uint8_t *b = bytes;
    if (len < 8) {
        corrupt(what, "the file is %zu bytes, shorter than the 8-byte header length: it is truncated or not a "
                "safetensors file", len);
        goto fail;
    }
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) n = (n << 8) | b[i];
    if (n == 0) {
        corrupt(what, "the header length is 0: not a safetensors file (or its first 8 bytes are zeroed)");
        goto fail;
    }
    if (n > ST_MAX_HEADER) {
        corrupt(what, "the header length field says %llu bytes, more than the %u-byte limit: the file is damaged or "
                "not safetensors", (unsigned long long)n, ST_MAX_HEADER);
        goto fail;
    }
    if (n > len - 8) {
        corrupt(what, "the header length field says %llu bytes but only %zu follow it: the file is truncated "
                "(re-download or re-save it)", (unsigned long long)n, len - 8);
        goto fail;
    }
    f->header_len = n;
    f->data = b + 8 + n;
    f->data_len = len - 8 - n;
    if (parse_header(f, (const char *)b + 8, (size_t)n, what)) goto fail;
    return 0;
fail:
    st_close(f);
    return -1;
}

int st_open(st_file *f, const char *path) {
    memset(f, 0, sizeof *f);
    void *map;
    size_t len;
    if (fs_map_file(path, "a .safetensors file", &map, &len)) return -1;
    static const uint8_t empty[1];
    if (st_parse(f, map ? map : empty, len, path)) {
        fs_unmap(map, len);
        return -1;
    }
    f->map = map;
    f->map_len = len;
    return 0;
}

void st_close(st_file *f) {
    if (f->tensors)
        for (int i = 0; i < f->n_tensors; i++) free(f->tensors[i].name);
    free(f->tensors);
    if (f->meta)
        for (int i = 0; i < 2 * f->n_meta; i++) free(f->meta[i]);
    free(f->meta);
    fs_unmap(f->map, f->map_len);
    free(f->path);
    memset(f, 0, sizeof *f);
}

const st_tensor *st_find(const st_file *f, const char *name) {
    st_tensor key = {.name = (char *)name};
    if (!f->n_tensors) return NULL;
    return bsearch(&key, f->tensors, (size_t)f->n_tensors, sizeof key, cmp_name);
}

const char *st_meta_get(const st_file *f, const char *key) {
    for (int i = 0; i < f->n_meta; i++)
        if (!strcmp(f->meta[2 * i], key)) return f->meta[2 * i + 1];
    return NULL;
}

int st_to_f32(float *out, const st_tensor *t, const char *what) {
    const uint8_t *p = t->data;
    size_t n = (size_t)t->n_elems;
    switch (t->dtype) {
    case ST_F32: memcpy(out, p, n * 4); return 0;
    case ST_BF16:
        for (size_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, p + 2 * i, 2);
            out[i] = st_bf16_to_f32(h);
        }
        return 0;
    case ST_F16:
        for (size_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, p + 2 * i, 2);
            out[i] = st_f16_to_f32(h);
        }
        return 0;
    default:
        return err_set(ERR_INPUT, "%s: tensor '%s' is %s; only F32, F16 and BF16 tensors convert to fp32 weights "
                       "(a quantized checkpoint needs its own loader)", what ? what : "safetensors", t->name,
                       st_dtype_name(t->dtype));
    }
}

/* ---- writing ---- */

static int entry_bytes(const st_entry *e, st_dtype dtype, uint64_t *bytes, const char *path) {
    if (!e->name || !e->name[0] || !strcmp(e->name, "__metadata__"))
        return err_set(ERR_INPUT, "%s: a tensor name is empty or reserved ('%s')", path, e->name ? e->name : "");
    if (e->ndim < 0 || e->ndim > ST_MAX_DIMS)
        return err_set(ERR_INPUT, "%s: tensor '%s' has %d dimensions (0 to %d allowed)", path, e->name, e->ndim, ST_MAX_DIMS);
    if (!e->f32 && !e->raw) return err_set(ERR_INPUT, "%s: tensor '%s' has no data", path, e->name);
    st_dtype d = e->f32 ? dtype : e->raw_dtype;
    if ((unsigned)d >= ST_N_DTYPES) return err_set(ERR_INPUT, "%s: tensor '%s' has an invalid dtype", path, e->name);
    uint64_t n = 1;
    for (int i = 0; i < e->ndim; i++)
        if (e->shape[i] < 0 || __builtin_mul_overflow(n, (uint64_t)e->shape[i], &n))
            return err_set(ERR_INPUT, "%s: tensor '%s' has a negative or overflowing shape", path, e->name);
    if (__builtin_mul_overflow(n, (uint64_t)st_dtype_size(d), bytes))
        return err_set(ERR_INPUT, "%s: tensor '%s' is too large", path, e->name);
    return 0;
}

/* Converts and writes the n elements of one fp32 entry in chunks (bounded scratch). */
static int write_converted(int fd, const float *src, uint64_t n, st_dtype dtype) {
    enum { CHUNK = 16384 };
    uint16_t buf[CHUNK];
    if (dtype == ST_F32) return fs_write_all(fd, src, (size_t)n * 4);
    for (uint64_t i = 0; i < n; i += CHUNK) {
        size_t m = (size_t)(n - i < CHUNK ? n - i : CHUNK);
        for (size_t k = 0; k < m; k++)
            buf[k] = dtype == ST_BF16 ? st_f32_to_bf16(src[i + k]) : st_f32_to_f16(src[i + k]);
        if (fs_write_all(fd, buf, m * 2)) return -1;
    }
    return 0;
}

int st_write(const char *path, const st_entry *entries, int n, st_dtype dtype, const char *const *meta, int n_meta) {
    if (dtype != ST_F32 && dtype != ST_BF16 && dtype != ST_F16)
        return err_set(ERR_INPUT, "%s: cannot write fp32 tensors as %s; choose F32, BF16 or F16", path, st_dtype_name(dtype));
    strbuf h = STRBUF_INIT;
    int rc = sb_putc(&h, '{');
    if (n_meta > 0) {
        rc |= sb_puts(&h, "\"__metadata__\":{");
        for (int i = 0; i < n_meta; i++) {
            rc |= sb_puts(&h, i ? "," : "");
            rc |= sb_json_string(&h, meta[2 * i]);
            rc |= sb_putc(&h, ':');
            rc |= sb_json_string(&h, meta[2 * i + 1]);
        }
        rc |= sb_putc(&h, '}');
    }
    uint64_t off = 0;
    for (int i = 0; i < n && !rc; i++) {
        const st_entry *e = &entries[i];
        uint64_t bytes;
        if (entry_bytes(e, dtype, &bytes, path)) {
            rc = -1;
            break;
        }
        for (int k = 0; k < i; k++)
            if (!strcmp(entries[k].name, e->name)) {
                rc = err_set(ERR_INPUT, "%s: tensor '%s' is given twice", path, e->name);
                break;
            }
        rc |= sb_puts(&h, (i || n_meta > 0) ? "," : "");
        rc |= sb_json_string(&h, e->name);
        rc |= sb_printf(&h, ":{\"dtype\":\"%s\",\"shape\":[", st_dtype_name(e->f32 ? dtype : e->raw_dtype));
        for (int k = 0; k < e->ndim; k++) rc |= sb_printf(&h, "%s%lld", k ? "," : "", (long long)e->shape[k]);
        rc |= sb_printf(&h, "],\"data_offsets\":[%llu,%llu]}", (unsigned long long)off, (unsigned long long)(off + bytes));
        off += bytes;
    }
    rc |= sb_putc(&h, '}');
    while (!rc && h.len % 8) rc |= sb_putc(&h, ' ');
    if (rc) {
        sb_free(&h);
        return -1;
    }
    fs_atomic out;
    if (fs_atomic_open(&out, path)) {
        sb_free(&h);
        return -1;
    }
    int fd = out.fd;
    uint8_t len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (uint8_t)((uint64_t)h.len >> (8 * i));
    if (fs_write_all(fd, len8, 8) || fs_write_all(fd, h.buf, h.len)) goto fail_io;
    for (int i = 0; i < n; i++) {
        const st_entry *e = &entries[i];
        uint64_t bytes;
        entry_bytes(e, dtype, &bytes, path);
        int w = e->f32 ? write_converted(fd, e->f32, bytes / st_dtype_size(dtype), dtype)
                       : fs_write_all(fd, e->raw, (size_t)bytes);
        if (w) goto fail_io;
    }
    sb_free(&h);
    return fs_atomic_commit(&out);
fail_io:
    err_errno("cannot write %s", out.tmp);
    fs_atomic_abort(&out);
    sb_free(&h);
    return -1;
}
