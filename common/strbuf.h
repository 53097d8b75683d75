/* strbuf.h: a growable, always NUL-terminated byte buffer (the sds idea, as a plain struct).
 * The owner frees `buf` with strbuf_free. Append functions return 0 or -1 (ERR_NOMEM). */
#ifndef SMELT_STRBUF_H
#define SMELT_STRBUF_H

#include <stddef.h>

typedef struct {
    char *buf;  /* NULL until the first append; then NUL-terminated */
    size_t len;
    size_t cap;
} strbuf;

#define STRBUF_INIT {NULL, 0, 0}

int sb_grow(strbuf *sb, size_t extra);
int sb_append(strbuf *sb, const char *s, size_t n);
int sb_puts(strbuf *sb, const char *s);
int sb_putc(strbuf *sb, char c);
int sb_printf(strbuf *sb, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Appends s as a JSON string literal with quotes and escapes (control bytes as \u00XX). */
int sb_json_string(strbuf *sb, const char *s);
void sb_reset(strbuf *sb);
void sb_free(strbuf *sb);
/* Returns the buffer (never NULL: "" when empty) and leaves sb empty; the caller frees it. */
char *sb_detach(strbuf *sb);
const char *sb_str(const strbuf *sb); /* "" when empty */

/* 1 when s ends with suffix ("model.safetensors", ".safetensors"). */
int str_ends_with(const char *s, const char *suffix);

#endif
