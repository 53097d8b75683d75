/* reader.c: input helpers of the data sources: UTF-8 validation, a strict CSV/TSV reader with line
 * numbers, and whole-file reads from disk or from inside a zip/tar archive (libarchive), so that
 * MovieLens archives are read as downloaded. Every error names the file (and the line). */
#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "common/fsutil.h"
#include "stages/data/source.h"

int utf8_valid(const char *s, size_t n) {
    const unsigned char *p = (const unsigned char *)s, *e = p + n;
    while (p < e) {
        unsigned c = *p;
        if (c < 0x80) {
            p++;
            continue;
        }
        int len;
        unsigned cp;
        if (c >= 0xc2 && c <= 0xdf) len = 2, cp = c & 0x1f;
        else if (c >= 0xe0 && c <= 0xef) len = 3, cp = c & 0x0f;
        else if (c >= 0xf0 && c <= 0xf4) len = 4, cp = c & 0x07;
        else return 0;
        if (e - p < len) return 0;
        for (int i = 1; i < len; i++) {
            if ((p[i] & 0xc0) != 0x80) return 0;
            cp = (cp << 6) | (p[i] & 0x3f);
        }
        if ((len == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) || (len == 4 && (cp < 0x10000 || cp > 0x10ffff)))
            return 0;
        p += len;
    }
    return 1;
}

/* ---- CSV ---- */

void csv_init(csv_reader *r, const char *name, const char *data, size_t len, char sep, int quotes) {
    memset(r, 0, sizeof *r);
    r->p = data;
    r->end = data + len;
    r->name = name;
    r->sep = sep;
    r->quotes = quotes;
    /* a UTF-8 byte order mark is not part of the first column's name */
    if (len >= 3 && !memcmp(data, "\xef\xbb\xbf", 3)) r->p += 3;
}

void csv_free(csv_reader *r) {
    free(r->fields);
    free(r->starts);
    sb_free(&r->buf);
    r->fields = NULL;
    r->starts = NULL;
}

static int add_field(csv_reader *r, int *nf) {
    if (*nf == r->cap_fields) {
        int cap = r->cap_fields ? 2 * r->cap_fields : 16;
        if (cap > 65536) return err_set(ERR_INPUT, "%s:%lld: more than 65536 fields", r->name, (long long)r->line);
        size_t *s = xrealloc(r->starts, (size_t)cap * sizeof *s);
        if (!s) return -1;
        r->starts = s;
        char **f = xrealloc(r->fields, (size_t)cap * sizeof *f);
        if (!f) return -1;
        r->fields = f;
        r->cap_fields = cap;
    }
    r->starts[(*nf)++] = r->buf.len;
    return 0;
}

int csv_next(csv_reader *r) {
    if (r->next_line == 0) r->next_line = 1;
    for (;;) {
        if (r->p >= r->end) return 0;
        r->line = r->next_line;
        sb_reset(&r->buf);
        if (sb_grow(&r->buf, 64)) return -1;
        int nf = 0, in_q = 0, quoted = 0;
        if (add_field(r, &nf)) return -1;
        const char *p = r->p, *rec = r->p;
        for (;;) {
            if (p >= r->end) {
                if (in_q)
                    return err_set(ERR_INPUT, "%s:%lld: a quoted field is not closed before the end of the file; close "
                                   "the quote or remove it", r->name, (long long)r->line);
                break;
            }
            char c = *p++;
            if (c == 0)
                return err_set(ERR_INPUT, "%s:%lld: a NUL byte; this is not a text file", r->name,
                               (long long)r->next_line);
            if (c == '\n') r->next_line++;
            if (in_q) {
                if (c == '"' && p < r->end && *p == '"') {
                    if (sb_putc(&r->buf, '"')) return -1;
                    p++;
                } else if (c == '"') {
                    in_q = 0;
                } else if (sb_putc(&r->buf, c)) {
                    return -1;
                }
                continue;
            }
            if (c == '\n') break;
            if (c == '\r' && (p >= r->end || *p == '\n')) continue;
            if (c == r->sep) {
                if (sb_putc(&r->buf, 0) || add_field(r, &nf)) return -1;
                quoted = 0;
                continue;
            }
            if (c == '"' && r->quotes && r->buf.len == r->starts[nf - 1] && !quoted) {
                in_q = quoted = 1;
                continue;
            }
            if (sb_putc(&r->buf, c)) return -1;
        }
        r->p = p;
        if (!utf8_valid(rec, (size_t)(p - rec)))
            return err_set(ERR_INPUT, "%s:%lld: the text is not valid UTF-8; convert the file to UTF-8 (for example "
                           "iconv -f latin1 -t utf-8)", r->name, (long long)r->line);
        if (sb_putc(&r->buf, 0)) return -1;
        if (nf == 1 && r->buf.buf[0] == 0 && !quoted) continue; /* blank line */
        for (int i = 0; i < nf; i++) r->fields[i] = r->buf.buf + r->starts[i];
        r->n_fields = nf;
        return 1;
    }
}

int csv_column(const csv_reader *r, const char *col, int required) {
    for (int i = 0; i < r->n_fields; i++)
        if (!strcmp(r->fields[i], col)) return i;
    if (!required) return -1;
    strbuf sb = STRBUF_INIT;
    for (int i = 0; i < r->n_fields; i++) sb_printf(&sb, "%s%s", i ? ", " : "", r->fields[i]);
    err_set(ERR_INPUT, "%s:%lld: no column '%s' in the header (it has: %s); name the right column in the recipe", r->name,
            (long long)r->line, col, sb_str(&sb));
    sb_free(&sb);
    return -1;
}

static int field_missing(const csv_reader *r, int col, const char *col_name) {
    if (col < r->n_fields) return 0;
    return err_set(ERR_INPUT, "%s:%lld: the row has %d fields, column '%s' is missing", r->name, (long long)r->line,
                   r->n_fields, col_name);
}

int csv_double(const csv_reader *r, int col, const char *col_name, double *out) {
    if (field_missing(r, col, col_name)) return -1;
    const char *s = r->fields[col];
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (!*s || *end || errno || !isfinite(v))
        return err_set(ERR_INPUT, "%s:%lld: column '%s' holds '%s', which is not a number", r->name,
                       (long long)r->line, col_name, s);
    *out = v;
    return 0;
}

int csv_int64(const csv_reader *r, int col, const char *col_name, int64_t *out) {
    if (field_missing(r, col, col_name)) return -1;
    const char *s = r->fields[col];
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (!*s || *end || errno)
        return err_set(ERR_INPUT, "%s:%lld: column '%s' holds '%s', which is not an integer", r->name,
                       (long long)r->line, col_name, s);
    *out = v;
    return 0;
}

/* ---- files, plain or inside an archive ---- */

int rs_read_file(const char *path, size_t max_bytes, char **out, size_t *len) {
    *out = NULL;
    *len = 0;
    if (fs_read_file(path, max_bytes, out, len)) return -1;
    if (*len == 0) {
        free(*out);
        *out = NULL;
        return err_set(ERR_INPUT, "%s is empty; give a file with data", path);
    }
    return 0;
}

static int bundle_dir(const char *path, const char *name, size_t max_bytes, char **out, size_t *len, char **display,
                      int *found) {
    char *p = fs_join(path, name);
    if (!p) return -1;
    if (!fs_exists(p)) {
        free(p);
        return 0;
    }
    *found = 1;
    if (rs_read_file(p, max_bytes, out, len)) {
        free(p);
        return -1;
    }
    *display = p;
    return 0;
}

int rs_bundle_read(const char *path, const char *name, size_t max_bytes, char **out, size_t *len, char **display,
                   int *found) {
    *out = NULL;
    *len = 0;
    *display = NULL;
    *found = 0;
    if (fs_is_dir(path)) return bundle_dir(path, name, max_bytes, out, len, display, found);
    struct archive *a = archive_read_new();
    if (!a) return err_set(ERR_NOMEM, "libarchive: cannot allocate a reader");
    archive_read_support_filter_all(a);
    archive_read_support_format_zip(a);
    archive_read_support_format_tar(a);
    int rc = 0;
    if (archive_read_open_filename(a, path, 65536) != ARCHIVE_OK) {
        rc = err_set(ERR_INPUT, "%s is neither a folder nor a readable zip/tar archive (%s); give the MovieLens zip as "
                     "downloaded or the folder it extracts to", path, archive_error_string(a));
        goto out;
    }
    struct archive_entry *e;
    for (;;) {
        int r = archive_read_next_header(a, &e);
        if (r == ARCHIVE_EOF) break;
        if (r != ARCHIVE_OK && r != ARCHIVE_WARN) {
            rc = err_set(ERR_CORRUPT, "%s: the archive is damaged or truncated (%s); download it again", path,
                         archive_error_string(a));
            goto out;
        }
        const char *en = archive_entry_pathname(e);
        const char *base = en ? strrchr(en, '/') : NULL;
        base = base ? base + 1 : en;
        if (!base || strcmp(base, name) || archive_entry_filetype(e) != AE_IFREG) continue;
        *found = 1;
        if (!(*display = xasprintf("%s:%s", path, en))) {
            rc = -1;
            goto out;
        }
        int64_t sz = archive_entry_size_is_set(e) ? archive_entry_size(e) : -1;
        if (sz > (int64_t)max_bytes) {
            rc = err_set(ERR_INPUT, "%s is %lld bytes, more than the limit of %zu", *display, (long long)sz, max_bytes);
            goto out;
        }
        strbuf sb = STRBUF_INIT;
        for (;;) {
            if (sb_grow(&sb, 1 << 16)) {
                rc = -1;
                break;
            }
            la_ssize_t n = archive_read_data(a, sb.buf + sb.len, sb.cap - sb.len - 1);
            if (n < 0) {
                rc = err_set(ERR_CORRUPT, "%s: the archive is damaged or truncated (%s); download it again", *display,
                             archive_error_string(a));
                break;
            }
            if (n == 0) break;
            sb.len += (size_t)n;
            sb.buf[sb.len] = 0;
            if (sb.len > max_bytes) {
                rc = err_set(ERR_INPUT, "%s is more than the limit of %zu bytes", *display, max_bytes);
                break;
            }
        }
        if (!rc && sz >= 0 && (int64_t)sb.len != sz)
            rc = err_set(ERR_CORRUPT, "%s: read %zu bytes of %lld; the archive is truncated, download it again",
                         *display, sb.len, (long long)sz);
        if (!rc && sb.len == 0) rc = err_set(ERR_INPUT, "%s is empty; give a file with data", *display);
        if (rc) {
            sb_free(&sb);
            goto out;
        }
        *len = sb.len;
        *out = sb.buf;
        break;
    }
out:
    archive_read_free(a);
    if (rc) {
        free(*out);
        free(*display);
        *out = NULL;
        *display = NULL;
    }
    return rc;
}

/* ---- strmap: open addressing, FNV-1a, load factor at most 1/2 ---- */

static uint64_t str_hash(const char *s) {
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

int32_t strmap_get(const strmap *m, const char *key) {
    if (!m->cap) return -1;
    for (size_t i = str_hash(key) & (m->cap - 1);; i = (i + 1) & (m->cap - 1)) {
        if (!m->keys[i]) return -1;
        if (!strcmp(m->keys[i], key)) return m->vals[i];
    }
}

static int strmap_grow(strmap *m) {
    size_t cap = m->cap ? 2 * m->cap : 1024;
    char **keys = xcalloc(cap, sizeof *keys);
    int32_t *vals = xmalloc(cap * sizeof *vals);
    if (!keys || !vals) {
        free(keys);
        free(vals);
        return -1;
    }
    for (size_t j = 0; j < m->cap; j++) {
        if (!m->keys[j]) continue;
        size_t i = str_hash(m->keys[j]) & (cap - 1);
        while (keys[i]) i = (i + 1) & (cap - 1);
        keys[i] = m->keys[j];
        vals[i] = m->vals[j];
    }
    free(m->keys);
    free(m->vals);
    m->keys = keys;
    m->vals = vals;
    m->cap = cap;
    return 0;
}

int strmap_put(strmap *m, const char *key, int32_t val) {
    if (2 * (m->n + 1) > m->cap && strmap_grow(m)) return -1;
    size_t i = str_hash(key) & (m->cap - 1);
    for (; m->keys[i]; i = (i + 1) & (m->cap - 1))
        if (!strcmp(m->keys[i], key)) return 1;
    if (!(m->keys[i] = xstrdup(key))) return -1;
    m->vals[i] = val;
    m->n++;
    return 0;
}

void strmap_free(strmap *m) {
    for (size_t i = 0; i < m->cap; i++) free(m->keys[i]);
    free(m->keys);
    free(m->vals);
    memset(m, 0, sizeof *m);
}
