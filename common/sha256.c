/* sha256.c: thin wrapper over OpenSSL's EVP digest interface. */
#include "common/sha256.h"

#include <fcntl.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/error.h"

struct sha256_ctx {
    EVP_MD_CTX *md;
};

sha256_ctx *sha256_new(void) {
    sha256_ctx *c = xmalloc(sizeof *c);
    if (!c) return NULL;
    c->md = EVP_MD_CTX_new();
    if (!c->md || EVP_DigestInit_ex(c->md, EVP_sha256(), NULL) != 1) {
        EVP_MD_CTX_free(c->md);
        free(c);
        err_set(ERR_INTERNAL, "OpenSSL could not start a SHA-256 digest");
        return NULL;
    }
    return c;
}

void sha256_update(sha256_ctx *c, const void *data, size_t n) { EVP_DigestUpdate(c->md, data, n); }

void sha256_final_hex(sha256_ctx *c, char out[SHA256_HEX_LEN + 1]) {
    unsigned char d[32];
    unsigned int n = 0;
    EVP_DigestFinal_ex(c->md, d, &n);
    for (int i = 0; i < 32; i++) {
        static const char hx[] = "0123456789abcdef";
        out[2 * i] = hx[d[i] >> 4];
        out[2 * i + 1] = hx[d[i] & 15];
    }
    out[64] = 0;
    sha256_free(c);
}

void sha256_free(sha256_ctx *c) {
    if (!c) return;
    EVP_MD_CTX_free(c->md);
    free(c);
}

void sha256_hex(char out[SHA256_HEX_LEN + 1], const void *data, size_t n) {
    unsigned char d[32];
    unsigned int len = 0;
    EVP_Digest(data, n, d, &len, EVP_sha256(), NULL);
    for (int i = 0; i < 32; i++) {
        static const char hx[] = "0123456789abcdef";
        out[2 * i] = hx[d[i] >> 4];
        out[2 * i + 1] = hx[d[i] & 15];
    }
    out[64] = 0;
}

int sha256_file(char out[SHA256_HEX_LEN + 1], const char *path, uint64_t *bytes) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return err_errno("cannot open %s", path);
    sha256_ctx *c = sha256_new();
    if (!c) {
        close(fd);
        return -1;
    }
    enum { CHUNK = 1 << 20 };
    unsigned char *buf = xmalloc(CHUNK);
    if (!buf) {
        sha256_free(c);
        close(fd);
        return -1;
    }
    uint64_t total = 0;
    for (;;) {
        ssize_t n = read(fd, buf, CHUNK);
        if (n < 0) {
            err_errno("cannot read %s", path);
            free(buf);
            sha256_free(c);
            close(fd);
            return -1;
        }
        if (n == 0) break;
        sha256_update(c, buf, (size_t)n);
        total += (uint64_t)n;
    }
    free(buf);
    close(fd);
    sha256_final_hex(c, out);
    if (bytes) *bytes = total;
    return 0;
}

int sha256_is_hex(const char *s) {
    size_t i = 0;
    for (; s[i]; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f'))) return 0;
    return i == 64;
}
