/* strbuf.c: growable byte buffer; doubling growth, so appends are amortized O(1). */
#include "common/strbuf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"

int sb_grow(strbuf *sb, size_t extra) {
    size_t need = sb->len + extra + 1;
    if (need <= sb->cap) return 0;
    size_t cap = sb->cap ? sb->cap : 64;
    while (cap < need) cap *= 2;
    char *p = xrealloc(sb->buf, cap);
    if (!p) return -1;
    sb->buf = p;
    sb->cap = cap;
    return 0;
}

int sb_append(strbuf *sb, const char *s, size_t n) {
    if (sb_grow(sb, n)) return -1;
    memcpy(sb->buf + sb->len, s, n);
    sb->len += n;
    sb->buf[sb->len] = 0;
    return 0;
}

int sb_puts(strbuf *sb, const char *s) { return sb_append(sb, s, strlen(s)); }
int sb_putc(strbuf *sb, char c) { return sb_append(sb, &c, 1); }

int sb_printf(strbuf *sb, const char *fmt, ...) {
    va_list ap, ap2;
    va_start(ap, fmt);
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0 || sb_grow(sb, (size_t)n)) {
        va_end(ap2);
        return -1;
    }
    vsnprintf(sb->buf + sb->len, (size_t)n + 1, fmt, ap2);
    va_end(ap2);
    sb->len += (size_t)n;
    return 0;
}

int sb_json_string(strbuf *sb, const char *s) {
    if (sb_putc(sb, '"')) return -1;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        int rc;
        switch (*p) {
        case '"': rc = sb_puts(sb, "\\\""); break;
        case '\\': rc = sb_puts(sb, "\\\\"); break;
        case '\n': rc = sb_puts(sb, "\\n"); break;
        case '\r': rc = sb_puts(sb, "\\r"); break;
        case '\t': rc = sb_puts(sb, "\\t"); break;
        default:
            rc = *p < 0x20 ? sb_printf(sb, "\\u%04x", *p) : sb_putc(sb, (char)*p);
        }
        if (rc) return -1;
    }
    return sb_putc(sb, '"');
}

void sb_reset(strbuf *sb) {
    sb->len = 0;
    if (sb->buf) sb->buf[0] = 0;
}

void sb_free(strbuf *sb) {
    free(sb->buf);
    sb->buf = NULL;
    sb->len = sb->cap = 0;
}

char *sb_detach(strbuf *sb) {
    char *p = sb->buf ? sb->buf : xstrdup("");
    sb->buf = NULL;
    sb->len = sb->cap = 0;
    return p;
}

const char *sb_str(const strbuf *sb) { return sb->buf ? sb->buf : ""; }

int str_ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && !strcmp(s + n - m, suffix);
}
