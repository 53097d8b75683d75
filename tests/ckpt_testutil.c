/* ckpt_testutil.c: helpers shared by the checkpoint tests (see ckpt_testutil.h). */
#include "tests/ckpt_testutil.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/fsutil.h"

int t_failures;
static char tmp_root[4096];

void t_fail(const char *file, int line, const char *fmt, ...) {
    va_list ap;
    fprintf(stderr, "FAIL %s:%d: ", file, line);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    t_failures++;
}

void t_expect_err(const char *file, int line, int rc, err_kind kind, ...) {
    if (rc != -1) {
        t_fail(file, line, "expected failure (rc -1), got rc %d", rc);
        return;
    }
    if (err_kind_get() != kind) t_fail(file, line, "error kind %d, expected %d: %s", err_kind_get(), kind, err_msg());
    va_list ap;
    va_start(ap, kind);
    for (const char *s; (s = va_arg(ap, const char *));)
        if (!strstr(err_msg(), s)) t_fail(file, line, "message lacks \"%s\": %s", s, err_msg());
    va_end(ap);
    if (getenv("SMELT_TEST_VERBOSE")) fprintf(stderr, "  ok error: %s\n", err_msg());
    err_clear();
}

void t_expect_ok(const char *file, int line, int rc, const char *what) {
    if (rc) t_fail(file, line, "%s failed: %s", what, err_msg());
    err_clear();
}

const char *t_tmpdir(void) {
    if (!tmp_root[0]) {
        const char *base = getenv("TMPDIR");
        snprintf(tmp_root, sizeof tmp_root, "%s/smelt-ckpt-XXXXXX", base && base[0] ? base : "/tmp");
        if (!mkdtemp(tmp_root)) {
            perror("mkdtemp");
            exit(1);
        }
    }
    return tmp_root;
}

void t_tmp_cleanup(void) {
    if (tmp_root[0] && !getenv("SMELT_TEST_KEEP")) fs_rm_rf(tmp_root);
    tmp_root[0] = 0;
}

static char *ring(void) {
    static char bufs[8][4096];
    static int i;
    return bufs[i++ & 7];
}

const char *t_path(const char *name) {
    char *b = ring();
    snprintf(b, 4096, "%s/%s", t_tmpdir(), name);
    return b;
}

const char *t_fixture(const char *name) {
    const char *src = getenv("SMELT_SOURCE_DIR");
    char *b = ring();
    snprintf(b, 4096, "%s/tests/fixtures/%s", src ? src : ".", name);
    return b;
}

void t_write(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(data, 1, n, f) != n || fclose(f)) {
        perror(path);
        exit(1);
    }
}

static int copy_one(const char *rel, const char *abs, void *ctx) {
    char dst[4096];
    snprintf(dst, sizeof dst, "%s/%s", (const char *)ctx, rel);
    return fs_copy_file(dst, abs);
}

void t_copy_dir(const char *dst, const char *src) {
    if (fs_mkdir_p(dst, 0755) || fs_walk_files(src, copy_one, (void *)dst)) {
        fprintf(stderr, "copying %s to %s: %s\n", src, dst, err_msg());
        exit(1);
    }
}

int t_config_equal(const model_config *a, const model_config *b) {
#define F(x)                                                                          \
    if (a->x != b->x) {                                                               \
        fprintf(stderr, "  config field " #x " differs: %g vs %g\n", (double)a->x, (double)b->x); \
        return 0;                                                                     \
    }
    if (strcmp(a->model_type, b->model_type)) return 0;
    F(hidden) F(n_layers) F(n_heads) F(n_kv_heads) F(head_dim) F(intermediate) F(vocab) F(rms_eps) F(rope_theta)
    F(rope_scaling) F(rope_factor) F(rope_low_freq_factor) F(rope_high_freq_factor) F(rope_original_max_pos)
    F(tie_embeddings) F(attention_bias) F(max_pos) F(bos_id) F(eos_id) F(n_eos)
    for (int i = 0; i < a->n_eos; i++) F(eos_ids[i])
    for (int l = 0; l < a->n_layers; l++) {
        F(layers[l].n_heads) F(layers[l].n_kv_heads) F(layers[l].intermediate)
    }
#undef F
    return 1;
}

void t_fill_random(float *x, size_t n, unsigned seed) {
    uint64_t s = 0x9e3779b97f4a7c15ull * (seed + 1);
    for (size_t i = 0; i < n; i++) {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        x[i] = (float)((double)(s >> 11) / 4503599627370496.0) - 1.0f; /* 2^52: [0, 2) - 1 */
    }
}

int t_finish(const char *name) {
    t_tmp_cleanup();
    if (t_failures) {
        fprintf(stderr, "%s: %d check(s) failed\n", name, t_failures);
        return 1;
    }
    printf("%s: all checks passed\n", name);
    return 0;
}
