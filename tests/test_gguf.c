/* test_gguf.c: the GGUF reader, writer and (de)quantization (model/gguf*.c).
 * - Every dequantized format equals the `gguf` Python package's gguf.quants.dequantize bit for bit
 *   (fp32) on random blocks, and the writer's quantizers (F16, BF16, Q8_0, Q4_0, Q4_1) equal
 *   gguf.quants.quantize byte for byte (fixtures: tools/make_gguf_fixtures.py).
 * - The writer's file is byte-identical to one assembled here by hand from the format's
 *   description, and reads back with every metadata type and tensor intact.
 * - Malformed files: every truncation, wrong magic/version, huge counts, offsets past the end,
 *   misaligned or overlapping tensors, unknown types, partial blocks, duplicate keys or names,
 *   nested arrays, a bad alignment: each fails with ERR_CORRUPT naming the field.
 * - The real SmolLM2 file of ../shared: header, every metadata value, every tensor's type, shape
 *   and offset as gguf.GGUFReader reads them, and the sha256 of every tensor's dequantized fp32
 *   bytes as gguf.quants.dequantize computes them (skipped with one line when ../shared is absent). */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/fsutil.h"
#include "common/sha256.h"
#include "common/strbuf.h"
#include "model/gguf.h"
#include "model/gguf_quants.h"
#include "model/gguf_write.h"
#include "tests/ckpt_testutil.h"
#include "tests/shared_dir.h"

static uint8_t *hex_decode(const char *hex, size_t *n) {
    size_t len = strlen(hex);
    uint8_t *out = malloc(len / 2 + 1);
    for (size_t i = 0; i + 1 < len; i += 2) {
        unsigned v;
        sscanf(hex + i, "%2x", &v);
        out[i / 2] = (uint8_t)v;
    }
    *n = len / 2;
    return out;
}

static cJSON *load_fixture(void) {
    char *text;
    size_t len;
    char path[4200];
    snprintf(path, sizeof path, "%s/quants.json", t_fixture("gguf"));
    if (fs_read_file(path, 0, &text, &len)) {
        fprintf(stderr, "FAIL: %s (run tools/make_gguf_fixtures.py)\n", err_msg());
        exit(1);
    }
    cJSON *j = cJSON_Parse(text);
    free(text);
    if (!j) {
        fprintf(stderr, "FAIL: %s is not JSON\n", path);
        exit(1);
    }
    return j;
}

/* ---- fixtures: dequantization and quantization against gguf-py ---- */

static void test_dequant(const cJSON *fx) {
    int n_types = 0;
    for (const cJSON *c = cJSON_GetObjectItem(fx, "dequant")->child; c; c = c->next) {
        ggml_type t = (ggml_type)cJSON_GetObjectItem(c, "type")->valueint;
        size_t nb;
        uint8_t *blocks = hex_decode(cJSON_GetObjectItem(c, "blocks")->valuestring, &nb);
        int64_t n = (int64_t)cJSON_GetObjectItem(c, "n")->valuedouble;
        CHECK(ggml_row_bytes(t, n) == nb, "%s: %lld weights are %zu bytes, ggml_row_bytes says %zu", c->string,
              (long long)n, nb, ggml_row_bytes(t, n));
        CHECK(ggml_can_dequantize(t), "%s can be dequantized", c->string);
        float *out = malloc((size_t)n * sizeof(float));
        EXPECT_OK(ggml_dequantize(out, blocks, t, n), c->string);
        char hex[SHA256_HEX_LEN + 1];
        sha256_hex(hex, out, (size_t)n * sizeof(float));
        const cJSON *head = cJSON_GetObjectItem(c, "head");
        int k = 0;
        for (const cJSON *h = head->child; h; h = h->next, k++)
            CHECK((float)h->valuedouble == out[k], "%s: element %d is %.9g, gguf-py %.9g", c->string, k, out[k],
                  h->valuedouble);
        CHECK(!strcmp(hex, cJSON_GetObjectItem(c, "sha256")->valuestring),
              "%s: the fp32 output of %lld weights differs from gguf.quants.dequantize's (sha256)", c->string,
              (long long)n);
        n_types++;
        free(out);
        free(blocks);
    }
    CHECK(n_types == 13, "13 formats in the fixture, found %d", n_types);
    printf("dequantization: %d formats bit-exact against gguf.quants.dequantize\n", n_types);
}

static void test_quant(const cJSON *fx) {
    for (const cJSON *c = cJSON_GetObjectItem(fx, "quant")->child; c; c = c->next) {
        ggml_type t = (ggml_type)cJSON_GetObjectItem(c, "type")->valueint;
        size_t nx, nq;
        uint8_t *x = hex_decode(cJSON_GetObjectItem(c, "x")->valuestring, &nx);
        uint8_t *want = hex_decode(cJSON_GetObjectItem(c, "bytes")->valuestring, &nq);
        int64_t n = (int64_t)(nx / 4);
        float *xf = malloc(nx);
        memcpy(xf, x, nx);
        uint8_t *got = calloc(1, nq + 1);
        CHECK(ggml_row_bytes(t, n) == nq, "%s: size %zu vs %zu", c->string, ggml_row_bytes(t, n), nq);
        EXPECT_OK(ggml_quantize(got, xf, t, n), c->string);
        size_t first = nq;
        for (size_t i = 0; i < nq; i++)
            if (got[i] != want[i]) {
                first = i;
                break;
            }
        CHECK(first == nq, "%s: byte %zu is 0x%02x, gguf.quants.quantize wrote 0x%02x", c->string, first,
              first < nq ? got[first] : 0, first < nq ? want[first] : 0);
        free(x), free(want), free(xf), free(got);
    }
    /* a format smelt does not write is refused, naming it */
    float x[256] = {0};
    uint8_t y[300];
    EXPECT_ERR(ggml_quantize(y, x, GGML_Q4_K, 256), ERR_INPUT, "Q4_K");
    EXPECT_ERR(ggml_dequantize(x, y, GGML_IQ2_XXS, 256), ERR_INPUT, "IQ2_XXS");
    EXPECT_ERR(ggml_dequantize(x, y, GGML_Q8_0, 33), ERR_INPUT, "blocks of 32");
    printf("quantization: F16, BF16, Q8_0, Q4_0, Q4_1 byte-exact against gguf.quants.quantize\n");
}

/* ---- a file assembled by hand ---- */

static void le(strbuf *b, uint64_t v, int n) {
    for (int i = 0; i < n; i++) sb_putc(b, (char)(v >> (8 * i)));
}
static void str(strbuf *b, const char *s) {
    le(b, strlen(s), 8);
    sb_puts(b, s);
}
static void pad(strbuf *b) {
    while (b->len % 32) sb_putc(b, 0);
}

/* Metadata of every type, and three tensors: F32 [4], Q8_0 [32, 2] from fp32, raw Q4_K [256]. */
static float f32_vals[4] = {1.5f, -2.25f, 0.0f, 3e-8f};
static float q8_src[64];
static uint8_t q4k_raw[144];

static int build_with_writer(const char *path) {
    gguf_writer *w = gguf_writer_new();
    uint8_t u8 = 200;
    int8_t i8 = -100;
    uint16_t u16 = 60000;
    int16_t i16 = -30000;
    uint64_t u64 = 1ull << 40;
    int64_t i64 = -(1ll << 40);
    double f64 = 0.1;
    int32_t arr_i32[3] = {-1, 0, 7};
    float arr_f32[2] = {0.5f, -1e10f};
    const char *arr_s[3] = {"a", "", "\xc3\xa9t\xc3\xa9"};
    int64_t ne1[1] = {4}, ne2[2] = {32, 2}, ne3[1] = {256};
    int rc = gguf_set_str(w, "general.architecture", "llama", 5) || gguf_set_scalar(w, "t.u8", GGUF_U8, &u8) ||
             gguf_set_scalar(w, "t.i8", GGUF_I8, &i8) || gguf_set_scalar(w, "t.u16", GGUF_U16, &u16) ||
             gguf_set_scalar(w, "t.i16", GGUF_I16, &i16) || gguf_set_u32(w, "t.u32", 4000000000u) ||
             gguf_set_i32(w, "t.i32", -7) || gguf_set_f32(w, "t.f32", 0.25f) || gguf_set_bool(w, "t.bool", 1) ||
             gguf_set_scalar(w, "t.u64", GGUF_U64, &u64) || gguf_set_scalar(w, "t.i64", GGUF_I64, &i64) ||
             gguf_set_scalar(w, "t.f64", GGUF_F64, &f64) || gguf_set_arr_num(w, "t.ai32", GGUF_I32, arr_i32, 3) ||
             gguf_set_arr_num(w, "t.af32", GGUF_F32, arr_f32, 2) || gguf_set_arr_str(w, "t.astr", arr_s, NULL, 3) ||
             gguf_add_tensor_raw(w, "a", 1, ne1, GGML_F32, f32_vals, sizeof f32_vals) ||
             gguf_add_tensor_f32(w, "b.weight", 2, ne2, GGML_Q8_0, q8_src, NULL) ||
             gguf_add_tensor_raw(w, "c", 1, ne3, GGML_Q4_K, q4k_raw, sizeof q4k_raw) || gguf_writer_write(w, path);
    EXPECT_ERR(gguf_set_u32(w, "t.u32", 1), ERR_INPUT, "twice");
    EXPECT_ERR(gguf_add_tensor_raw(w, "d", 1, ne1, GGML_Q8_0, f32_vals, 16), ERR_INPUT, "blocks of 32");
    EXPECT_ERR(gguf_add_tensor_f32(w, "e", 1, ne3, GGML_Q4_K, q8_src, NULL), ERR_INPUT, "Q4_K");
    gguf_writer_free(w);
    return rc;
}

/* The same file from the format's description: what llama.cpp expects, byte for byte. */
static void build_by_hand(strbuf *b, uint64_t version, uint64_t n_tensors, uint64_t n_kv) {
    sb_append(b, "GGUF", 4);
    le(b, version, 4);
    le(b, n_tensors, 8);
    le(b, n_kv, 8);
    str(b, "general.architecture"), le(b, 8, 4), str(b, "llama");
    str(b, "t.u8"), le(b, 0, 4), le(b, 200, 1);
    str(b, "t.i8"), le(b, 1, 4), le(b, (uint8_t)-100, 1);
    str(b, "t.u16"), le(b, 2, 4), le(b, 60000, 2);
    str(b, "t.i16"), le(b, 3, 4), le(b, (uint16_t)-30000, 2);
    str(b, "t.u32"), le(b, 4, 4), le(b, 4000000000u, 4);
    str(b, "t.i32"), le(b, 5, 4), le(b, (uint32_t)-7, 4);
    float q = 0.25f;
    uint32_t qb;
    memcpy(&qb, &q, 4);
    str(b, "t.f32"), le(b, 6, 4), le(b, qb, 4);
    str(b, "t.bool"), le(b, 7, 4), le(b, 1, 1);
    str(b, "t.u64"), le(b, 10, 4), le(b, 1ull << 40, 8);
    str(b, "t.i64"), le(b, 11, 4), le(b, (uint64_t)-(1ll << 40), 8);
    double d = 0.1;
    uint64_t db;
    memcpy(&db, &d, 8);
    str(b, "t.f64"), le(b, 12, 4), le(b, db, 8);
    str(b, "t.ai32"), le(b, 9, 4), le(b, 5, 4), le(b, 3, 8), le(b, (uint32_t)-1, 4), le(b, 0, 4), le(b, 7, 4);
    float af[2] = {0.5f, -1e10f};
    uint32_t a0, a1;
    memcpy(&a0, &af[0], 4), memcpy(&a1, &af[1], 4);
    str(b, "t.af32"), le(b, 9, 4), le(b, 6, 4), le(b, 2, 8), le(b, a0, 4), le(b, a1, 4);
    str(b, "t.astr"), le(b, 9, 4), le(b, 8, 4), le(b, 3, 8), str(b, "a"), str(b, ""), str(b, "\xc3\xa9t\xc3\xa9");
    str(b, "a"), le(b, 1, 4), le(b, 4, 8), le(b, 0, 4), le(b, 0, 8);
    str(b, "b.weight"), le(b, 2, 4), le(b, 32, 8), le(b, 2, 8), le(b, 8, 4), le(b, 32, 8);
    str(b, "c"), le(b, 1, 4), le(b, 256, 8), le(b, 12, 4), le(b, 128, 8);
    pad(b);
    sb_append(b, (const char *)f32_vals, 16);
    pad(b);
    uint8_t q8[68];
    ggml_quantize(q8, q8_src, GGML_Q8_0, 64);
    sb_append(b, (const char *)q8, 68);
    pad(b);
    sb_append(b, (const char *)q4k_raw, 144);
}

static void test_roundtrip(strbuf *hand) {
    t_fill_random(q8_src, 64, 3);
    for (int i = 0; i < 144; i++) q4k_raw[i] = (uint8_t)(i * 37 + 11);
    q4k_raw[0] = 0x00, q4k_raw[1] = 0x2c; /* d = 0.0625 (fp16), finite scales */
    q4k_raw[2] = 0x00, q4k_raw[3] = 0x28;
    const char *path = t_path("w.gguf");
    EXPECT_OK(build_with_writer(path), "writing a GGUF");
    build_by_hand(hand, 3, 3, 15);
    char *text;
    size_t len;
    EXPECT_OK(fs_read_file(path, 0, &text, &len), "reading it back");
    CHECK(len == hand->len && !memcmp(text, hand->buf, len), "the writer's %zu bytes equal the hand-built %zu bytes",
          len, hand->len);
    free(text);
    gguf_file f;
    EXPECT_OK(gguf_open(&f, path), "gguf_open");
    if (!f.bytes) return;
    CHECK(f.version == 3 && f.n_kv == 15 && f.n_tensors == 3 && f.alignment == 32, "header");
    int64_t v;
    double x;
    int bv;
    char *s = NULL;
    CHECK(!gguf_get_int(&f, "t.u8", 0, 255, &v) && v == 200, "u8");
    CHECK(!gguf_get_int(&f, "t.i8", -128, 127, &v) && v == -100, "i8");
    CHECK(!gguf_get_int(&f, "t.u16", 0, 70000, &v) && v == 60000, "u16");
    CHECK(!gguf_get_int(&f, "t.i16", -40000, 0, &v) && v == -30000, "i16");
    CHECK(!gguf_get_int(&f, "t.u32", 0, 1ll << 33, &v) && v == 4000000000ll, "u32");
    CHECK(!gguf_get_int(&f, "t.i32", -10, 10, &v) && v == -7, "i32");
    CHECK(!gguf_get_int(&f, "t.u64", 0, 1ll << 41, &v) && v == 1ll << 40, "u64");
    CHECK(!gguf_get_int(&f, "t.i64", -(1ll << 41), 0, &v) && v == -(1ll << 40), "i64");
    CHECK(!gguf_get_float(&f, "t.f32", &x) && x == 0.25, "f32");
    CHECK(!gguf_get_float(&f, "t.f64", &x) && x == 0.1, "f64");
    CHECK(!gguf_get_bool(&f, "t.bool", &bv) && bv == 1, "bool");
    CHECK(!gguf_get_string(&f, "general.architecture", &s) && s && !strcmp(s, "llama"), "string");
    free(s);
    CHECK(gguf_get_int(&f, "absent", 0, 1, &v) == 1, "an absent key returns 1");
    EXPECT_ERR(gguf_get_int(&f, "t.i32", 0, 10, &v), ERR_CORRUPT, "t.i32", "outside");
    EXPECT_ERR(gguf_get_int(&f, "t.f32", 0, 10, &v), ERR_CORRUPT, "t.f32", "f32", "integer");
    EXPECT_ERR(gguf_get_bool(&f, "t.u8", &bv), ERR_CORRUPT, "t.u8");
    const gguf_kv *kv;
    CHECK(!gguf_get_array(&f, "t.ai32", 0, 3, &kv) && gguf_arr_num(kv, 0) == -1 && gguf_arr_num(kv, 2) == 7, "i32 array");
    CHECK(!gguf_get_array(&f, "t.af32", 0, 0, &kv) && gguf_arr_num(kv, 1) == -1e10f, "f32 array");
    uint64_t sl;
    CHECK(!gguf_get_array(&f, "t.astr", 1, 3, &kv), "string array");
    if (kv) {
        const char *e = gguf_arr_str(kv, 2, &sl);
        CHECK(sl == 5 && !memcmp(e, "\xc3\xa9t\xc3\xa9", 5), "string element 2");
        gguf_arr_str(kv, 1, &sl);
        CHECK(sl == 0, "an empty string element");
    }
    EXPECT_ERR(gguf_get_array(&f, "t.astr", 0, 0, &kv), ERR_CORRUPT, "t.astr", "numbers");
    EXPECT_ERR(gguf_get_array(&f, "t.ai32", 0, 4, &kv), ERR_CORRUPT, "3 elements");
    const gguf_tensor *t = gguf_find_tensor(&f, "b.weight");
    CHECK(t && t->type == GGML_Q8_0 && t->n_dims == 2 && t->ne[0] == 32 && t->ne[1] == 2 && t->n_bytes == 68, "b.weight");
    if (t) {
        float back[64];
        EXPECT_OK(ggml_dequantize(back, t->data, t->type, 64), "dequantize b.weight");
        /* Q8_0 rounding: |w - d*q| <= d/2 with d = max|x|/127 per block of 32 (plus d's fp16 rounding) */
        for (int blk = 0; blk < 2; blk++) {
            float amax = 0;
            for (int i = 0; i < 32; i++) amax = fmaxf(amax, fabsf(q8_src[32 * blk + i]));
            for (int i = 0; i < 32; i++)
                CHECK(fabsf(back[32 * blk + i] - q8_src[32 * blk + i]) <= amax / 127 * (0.5f + 128 * 0x1p-11f),
                      "Q8_0 element %d within rounding", 32 * blk + i);
        }
    }
    t = gguf_find_tensor(&f, "c");
    CHECK(t && t->type == GGML_Q4_K && !memcmp(t->data, q4k_raw, 144), "raw Q4_K tensor");
    CHECK(!gguf_find_tensor(&f, "zzz") && !gguf_find_tensor(&f, "B.weight"), "absent tensors");
    gguf_close(&f);
    printf("writer: byte-identical to the hand-built file; every value type reads back\n");
}

/* ---- malformed files ---- */

static void expect_corrupt(const strbuf *b, const char *what, const char *needle) {
    gguf_file f;
    int rc = gguf_parse(&f, b->buf, b->len, "bad.gguf");
    if (rc == 0) {
        t_fail(__FILE__, __LINE__, "%s: a malformed file was accepted", what);
        gguf_close(&f);
        return;
    }
    if (err_kind_get() != ERR_CORRUPT || !strstr(err_msg(), needle) || !strstr(err_msg(), "bad.gguf"))
        t_fail(__FILE__, __LINE__, "%s: expected ERR_CORRUPT naming \"%s\", got: %s", what, needle, err_msg());
    if (getenv("SMELT_TEST_VERBOSE")) fprintf(stderr, "  %s: %s\n", what, err_msg());
    err_clear();
}

/* A copy of good with len bytes at off replaced by the little-endian v. */
static void mutate(strbuf *out, const strbuf *good, size_t off, uint64_t v, int n) {
    sb_reset(out);
    sb_append(out, good->buf, good->len);
    for (int i = 0; i < n; i++) out->buf[off + i] = (char)(v >> (8 * i));
}

static size_t find(const strbuf *b, const char *s) {
    size_t n = strlen(s);
    for (size_t i = 0; i + n <= b->len; i++)
        if (!memcmp(b->buf + i, s, n)) return i;
    fprintf(stderr, "FAIL: '%s' not in the file\n", s);
    exit(1);
}

static void test_malformed(const strbuf *good) {
    gguf_file f;
    EXPECT_OK(gguf_parse(&f, good->buf, good->len, "good.gguf"), "the good file parses");
    gguf_close(&f);
    /* every truncation: the last tensor is not padded, so every prefix misses bytes */
    int fails = 0;
    for (size_t n = 0; n < good->len; n++) {
        if (gguf_parse(&f, good->buf, n, "bad.gguf") == 0) {
            gguf_close(&f);
            t_fail(__FILE__, __LINE__, "the first %zu of %zu bytes were accepted", n, good->len);
        } else if (err_kind_get() != ERR_CORRUPT) {
            t_fail(__FILE__, __LINE__, "truncation at %zu: kind %d: %s", n, err_kind_get(), err_msg());
        } else {
            fails++;
        }
        err_clear();
    }
    CHECK(fails == (int)good->len, "every truncation fails");
    strbuf b = STRBUF_INIT;
    mutate(&b, good, 0, 'G' | 'G' << 8 | 'M' << 16 | 'L' << 24, 4);
    expect_corrupt(&b, "wrong magic", "magic");
    mutate(&b, good, 4, 1, 4);
    expect_corrupt(&b, "version 1", "version 1");
    mutate(&b, good, 4, 4, 4);
    expect_corrupt(&b, "version 4", "version 4");
    mutate(&b, good, 4, 3u << 24, 4);
    expect_corrupt(&b, "big-endian", "big-endian");
    mutate(&b, good, 8, 1ull << 40, 8);
    expect_corrupt(&b, "huge tensor count", "tensors");
    mutate(&b, good, 16, 1ull << 40, 8);
    expect_corrupt(&b, "huge metadata count", "metadata entries");
    size_t k = find(good, "t.u32") - 8; /* the key's length field */
    mutate(&b, good, k, 1ull << 50, 8);
    expect_corrupt(&b, "a key longer than the file", "bytes");
    mutate(&b, good, k + 8 + 5, 13, 4);
    expect_corrupt(&b, "value type 13", "value type 13");
    size_t astr = find(good, "t.astr") + 6;
    mutate(&b, good, astr + 8, 1ull << 59, 8);
    expect_corrupt(&b, "a string array longer than the file", "t.astr");
    mutate(&b, good, astr + 4, 9, 4);
    expect_corrupt(&b, "an array of arrays", "array of arrays");
    size_t ai = find(good, "t.ai32") + 6;
    mutate(&b, good, ai + 8, 1ull << 62, 8);
    expect_corrupt(&b, "a number array longer than the file", "t.ai32");
    size_t tb = find(good, "b.weight") + 8; /* n_dims of b.weight */
    mutate(&b, good, tb, 5, 4);
    expect_corrupt(&b, "5 dimensions", "5 dimensions");
    mutate(&b, good, tb + 4, 0, 8);
    expect_corrupt(&b, "a zero dimension", "b.weight");
    mutate(&b, good, tb + 4, 33, 8);
    expect_corrupt(&b, "a partial Q8_0 block", "whole number of blocks");
    mutate(&b, good, tb + 20, 99, 4);
    expect_corrupt(&b, "ggml type 99", "type 99");
    mutate(&b, good, tb + 20, 4, 4); /* 4 and 5 are removed types (Q4_2, Q4_3) */
    expect_corrupt(&b, "ggml type 4", "type 4");
    mutate(&b, good, tb + 24, 48, 8);
    expect_corrupt(&b, "a misaligned offset", "multiple of the alignment");
    mutate(&b, good, tb + 24, 1ull << 40, 8);
    expect_corrupt(&b, "an offset past the end", "past the end");
    mutate(&b, good, tb + 24, 0, 8);
    expect_corrupt(&b, "overlapping tensors", "overlap");
    size_t u16 = find(good, "t.u16");
    mutate(&b, good, u16 - 8, 4, 8); /* key "t.u1" then garbage: the parse goes astray, and fails */
    {
        gguf_file g;
        CHECK(gguf_parse(&g, b.buf, b.len, "bad.gguf") == -1, "a shortened key breaks the file");
        err_clear();
    }
    /* duplicate key: rename "t.u16" to "t.i16" */
    mutate(&b, good, u16 + 2, 'i', 1);
    expect_corrupt(&b, "a duplicate key", "appears twice");
    /* duplicate tensor name: rename "c" to "a" (the info of c is the last "\x01\0\0\0\0\0\0\0c") */
    size_t cname = find(good, "b.weight") + 8 + 4 + 16 + 4 + 8 + 8;
    mutate(&b, good, cname, 'a', 1);
    expect_corrupt(&b, "a duplicate tensor name", "appears twice");
    /* general.alignment of 48 and of a wrong type, prepended as a 16th entry */
    for (int variant = 0; variant < 2; variant++) {
        strbuf h = STRBUF_INIT;
        sb_append(&h, good->buf, 24);
        str(&h, "general.alignment");
        le(&h, variant ? GGUF_I32 : GGUF_U32, 4);
        le(&h, 48, 4);
        sb_append(&h, good->buf + 24, good->len - 24);
        h.buf[16] = 16;
        expect_corrupt(&h, variant ? "alignment of type i32" : "alignment 48", "general.alignment");
        sb_free(&h);
    }
    sb_free(&b);
    printf("malformed: %d truncations and 23 damaged fields rejected with ERR_CORRUPT\n", fails);
}

/* ---- the real file ---- */

static void array_digest(const gguf_kv *kv, char hex[SHA256_HEX_LEN + 1]) {
    sha256_ctx *c = sha256_new();
    for (uint64_t i = 0; i < kv->n; i++) {
        uint8_t b[8];
        if (kv->elem_type == GGUF_STRING) {
            uint64_t len;
            const char *s = gguf_arr_str(kv, i, &len);
            for (int k = 0; k < 8; k++) b[k] = (uint8_t)(len >> (8 * k));
            sha256_update(c, b, 8);
            sha256_update(c, s, (size_t)len);
        } else if (kv->elem_type == GGUF_F32 || kv->elem_type == GGUF_F64) {
            double d = gguf_arr_num(kv, i);
            sha256_update(c, &d, 8);
        } else {
            int64_t v = (int64_t)gguf_arr_num(kv, i);
            sha256_update(c, &v, 8);
        }
    }
    sha256_final_hex(c, hex);
}

static void check_kv(const gguf_file *f, const char *key, const cJSON *ref) {
    const gguf_kv *kv = gguf_get(f, key);
    int type = cJSON_GetObjectItem(ref, "type")->valueint;
    if (!kv || (int)kv->type != type) {
        CHECK(0, "metadata %s: %s (type %d expected)", key, kv ? gguf_vtype_name(kv->type) : "missing", type);
        return;
    }
    const cJSON *val = cJSON_GetObjectItem(ref, "value");
    if (kv->type == GGUF_ARRAY) {
        char hex[SHA256_HEX_LEN + 1];
        array_digest(kv, hex);
        CHECK((int)kv->elem_type == cJSON_GetObjectItem(ref, "elem_type")->valueint &&
                  kv->n == (uint64_t)cJSON_GetObjectItem(ref, "n")->valuedouble &&
                  !strcmp(hex, cJSON_GetObjectItem(ref, "sha256")->valuestring),
              "metadata array %s differs from gguf.GGUFReader's", key);
    } else if (kv->type == GGUF_STRING) {
        char *s = NULL;
        CHECK(!gguf_get_string(f, key, &s) && !strcmp(s, val->valuestring), "metadata %s = '%s'", key, s ? s : "?");
        free(s);
    } else if (kv->type == GGUF_BOOL) {
        int b = -1;
        CHECK(!gguf_get_bool(f, key, &b) && b == cJSON_IsTrue(val), "metadata %s", key);
    } else {
        double d = NAN;
        CHECK(!gguf_get_float(f, key, &d) && d == val->valuedouble, "metadata %s = %g, GGUFReader %g", key, d,
              val->valuedouble);
    }
}

static void test_real_file(const cJSON *fx) {
    char path[4096];
    const cJSON *ref = cJSON_GetObjectItem(fx, "smollm2");
    CHECK(ref != NULL, "the fixture has the SmolLM2 summary (rerun tools/make_gguf_fixtures.py with ../shared)");
    if (!ref || !shared_file(path, sizeof path, "models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf",
                             "the real-file checks"))
        return;
    gguf_file f;
    EXPECT_OK(gguf_open(&f, path), "opening SmolLM2");
    if (!f.bytes) return;
#define R(k) cJSON_GetObjectItem(ref, k)->valuedouble
    CHECK(f.version == R("version") && f.n_kv == R("n_kv") && f.n_tensors == R("n_tensors") &&
              f.alignment == R("alignment") && f.data_offset == R("data_offset"),
          "header: version %u, %lld kv, %lld tensors, alignment %llu, data at %llu", f.version, (long long)f.n_kv,
          (long long)f.n_tensors, (unsigned long long)f.alignment, (unsigned long long)f.data_offset);
#undef R
    for (const cJSON *e = cJSON_GetObjectItem(ref, "kv")->child; e; e = e->next) check_kv(&f, e->string, e);
    int matched = 0, n = 0;
    float *buf = NULL;
    size_t cap = 0;
    for (const cJSON *e = cJSON_GetObjectItem(ref, "tensors")->child; e; e = e->next, n++) {
        const char *name = cJSON_GetArrayItem(e, 0)->valuestring;
        const gguf_tensor *t = gguf_find_tensor(&f, name);
        if (!t) {
            CHECK(0, "tensor %s missing", name);
            continue;
        }
        const cJSON *shape = cJSON_GetArrayItem(e, 2);
        int ok = (int)t->type == cJSON_GetArrayItem(e, 1)->valueint && t->n_dims == cJSON_GetArraySize(shape) &&
                 t->offset == (uint64_t)cJSON_GetArrayItem(e, 3)->valuedouble;
        for (int d = 0; ok && d < t->n_dims; d++) ok = t->ne[d] == cJSON_GetArrayItem(shape, d)->valueint;
        CHECK(ok, "tensor %s: type, shape or offset differ from gguf.GGUFReader's", name);
        if (t->n_elems > cap) {
            free(buf);
            cap = t->n_elems;
            buf = malloc(cap * sizeof(float));
        }
        EXPECT_OK(ggml_dequantize(buf, t->data, t->type, (int64_t)t->n_elems), name);
        char hex[SHA256_HEX_LEN + 1];
        sha256_hex(hex, buf, t->n_elems * sizeof(float));
        int same = !strncmp(hex, cJSON_GetArrayItem(e, 4)->valuestring, 16);
        CHECK(same, "tensor %s (%s): dequantized values differ from gguf.quants.dequantize's", name,
              ggml_type_name(t->type));
        matched += ok && same;
    }
    CHECK(n == f.n_tensors, "%d tensors in the reference, %lld in the file", n, (long long)f.n_tensors);
    free(buf);
    gguf_close(&f);
    printf("SmolLM2: %d of %d tensors bit-exact against gguf.quants.dequantize, every metadata value as GGUFReader\n",
           matched, n);
}

int main(void) {
    shared_dir(); /* fails at once when the folder is required and absent */
    cJSON *fx = load_fixture();
    test_dequant(fx);
    test_quant(fx);
    strbuf hand = STRBUF_INIT;
    test_roundtrip(&hand);
    test_malformed(&hand);
    sb_free(&hand);
    test_real_file(fx);
    cJSON_Delete(fx);
    return t_finish("test_gguf");
}
