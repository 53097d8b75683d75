/* sha256.h: SHA-256 of buffers and files (OpenSSL libcrypto), as 64 lowercase hex digits. */
#ifndef SMELT_SHA256_H
#define SMELT_SHA256_H

#include <stddef.h>
#include <stdint.h>

#define SHA256_HEX_LEN 64

typedef struct sha256_ctx sha256_ctx;

sha256_ctx *sha256_new(void);             /* NULL on failure (error slot set) */
void sha256_update(sha256_ctx *c, const void *data, size_t n);
void sha256_final_hex(sha256_ctx *c, char out[SHA256_HEX_LEN + 1]); /* frees c */
void sha256_free(sha256_ctx *c);          /* for abandoning a context */

void sha256_hex(char out[SHA256_HEX_LEN + 1], const void *data, size_t n);
/* Hashes a whole file; *bytes (if non-NULL) receives its size. Returns 0 or -1. */
int sha256_file(char out[SHA256_HEX_LEN + 1], const char *path, uint64_t *bytes);
/* 1 if s is 64 lowercase hex digits. */
int sha256_is_hex(const char *s);

#endif
