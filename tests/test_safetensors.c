/* test_safetensors.c: the safetensors reader, writer and sharded sets. Conversions are checked
 * against brute force (every half value; bf16 nearest-even by comparing both neighbours), the
 * writer by reading back, and the validator by 24 malformed files built here, each of which must
 * fail with ERR_CORRUPT and a message naming the file, the tensor and the cause. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/fsutil.h"
#include "model/safetensors.h"
#include "tests/ckpt_testutil.h"

/* ---- conversions ---- */

static double bits_value(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    if ((u & 0x7fffffffu) == 0x7f800000u) return (u >> 31) ? -ldexp(1, 128) : ldexp(1, 128); /* inf as 2^128 */
    return f;
}

/* bf16 round to nearest even by brute force: the two bf16 neighbours of f, the closer wins, ties to
 * the even one; overflow past the largest finite value + half an ulp goes to inf. */
static uint16_t bf16_brute(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    uint32_t lo = u & 0xffff0000u, hi = lo + 0x10000u; /* same sign: hi is the next away from zero */
    double dl = fabs((double)f - bits_value(lo)), dh = fabs(bits_value(hi) - (double)f);
    if (dl < dh) return (uint16_t)(lo >> 16);
    if (dh < dl) return (uint16_t)(hi >> 16);
    return (uint16_t)(((lo >> 16) & 1) ? hi >> 16 : lo >> 16);
}

static void test_bf16(void) {
    float x[20000];
    t_fill_random(x, 20000, 7);
    int bad = 0;
    for (int i = 0; i < 20000; i++) {
        float f = x[i] * ldexpf(1.0f, (i % 200) - 100); /* many exponents */
        if (st_f32_to_bf16(f) != bf16_brute(f) && bad++ < 5)
            CHECK(0, "bf16(%a) = 0x%04x, brute force 0x%04x", (double)f, st_f32_to_bf16(f), bf16_brute(f));
    }
    /* ties: 1 + 2^-8 is halfway between 1 and 1 + 2^-7 -> even (1.0); 1 + 3*2^-8 -> 1 + 2^-6 */
    CHECK(st_f32_to_bf16(1.0f + 0x1p-8f) == 0x3f80, "tie to even (down)");
    CHECK(st_f32_to_bf16(1.0f + 3 * 0x1p-8f) == 0x3f82, "tie to even (up)");
    CHECK(st_f32_to_bf16(-1.0f - 0x1p-8f - 0x1p-20f) == 0xbf81, "above the tie rounds away");
    CHECK(st_f32_to_bf16(INFINITY) == 0x7f80 && st_f32_to_bf16(-INFINITY) == 0xff80, "inf");
    CHECK(st_f32_to_bf16(3.4028235e38f) == 0x7f80, "FLT_MAX rounds to inf in bf16");
    uint16_t nan = st_f32_to_bf16(NAN);
    CHECK((nan & 0x7f80) == 0x7f80 && (nan & 0x7f), "NaN stays NaN (0x%04x)", nan);
    for (uint32_t h = 0; h < 65536; h++) {
        float f = st_bf16_to_f32((uint16_t)h);
        if (!isnan(f)) CHECK(st_f32_to_bf16(f) == h, "bf16 0x%04x does not round-trip", h);
    }
}

/* The value of a half from its fields, in double: the definition, not the bit trick. */
static double f16_value(uint16_t h) {
    int s = h >> 15, e = (h >> 10) & 31, m = h & 1023;
    double v = e == 0 ? ldexp(m, -24) : e == 31 ? (m ? NAN : INFINITY) : ldexp(1024 + m, e - 25);
    return s ? -v : v;
}

static void test_f16(void) {
    for (uint32_t h = 0; h < 65536; h++) {
        double want = f16_value((uint16_t)h);
        float got = st_f16_to_f32((uint16_t)h);
        if (isnan(want)) {
            CHECK(isnan(got), "half 0x%04x should be NaN", h);
            continue;
        }
        CHECK((double)got == want && !signbit(got) == !signbit(want), "half 0x%04x -> %g, expected %g", h, (double)got, want);
        CHECK(st_f32_to_f16(got) == h, "half 0x%04x does not round-trip (0x%04x)", h, st_f32_to_f16(got));
    }
    /* rounding: the result must be the nearest of its neighbours (ties to even); positives only, the
     * sign is a separate bit */
    float x[20000];
    t_fill_random(x, 20000, 11);
    for (int i = 0; i < 20000; i++) {
        float f = fabsf(x[i]) * ldexpf(1.0f, (i % 46) - 28); /* from subnormal halves to past 65504 */
        uint16_t r = st_f32_to_f16(f);
        double d = fabs(f16_value(r) - f);
        if (r == 0x7c00) {
            CHECK(f >= 65520.0f, "%a rounded to inf", (double)f);
            continue;
        }
        double dn = r < 0x7bff ? fabs(f16_value((uint16_t)(r + 1)) - f) : INFINITY;
        double dp = r > 0 ? fabs(f16_value((uint16_t)(r - 1)) - f) : INFINITY;
        CHECK(d <= dn && d <= dp, "f16(%a) = 0x%04x is not the nearest", (double)f, r);
        CHECK(!((d == dn || d == dp) && (r & 1)), "f16(%a) = 0x%04x: tie not to even", (double)f, r);
    }
}

/* ---- writer and reader ---- */

static void test_write_read(void) {
    float a[6] = {1.5f, -2.25f, 3.0f, 0.1f, -0.0f, 65504.0f};
    int32_t ids[3] = {7, -1, 123456};
    float scalar = 42.0f;
    st_entry e[3] = {
        {.name = "weights.a", .ndim = 2, .shape = {2, 3}, .f32 = a},
        {.name = "ids \"quoted\"", .ndim = 1, .shape = {3}, .raw = ids, .raw_dtype = ST_I32},
        {.name = "s", .ndim = 0, .f32 = &scalar},
    };
    const char *meta[] = {"format", "pt", "note", "smelt test"};
    st_dtype dts[3] = {ST_F32, ST_BF16, ST_F16};
    for (int d = 0; d < 3; d++) {
        const char *path = t_path(d == 0 ? "w32.safetensors" : d == 1 ? "w16b.safetensors" : "w16.safetensors");
        EXPECT_OK(st_write(path, e, 3, dts[d], meta, 2), "st_write");
        st_file f;
        EXPECT_OK(st_open(&f, path), "st_open");
        CHECK(f.n_tensors == 3 && (8 + f.header_len) % 8 == 0, "3 tensors, data 8-aligned (header %llu)",
              (unsigned long long)f.header_len);
        CHECK(st_meta_get(&f, "note") && !strcmp(st_meta_get(&f, "note"), "smelt test"), "metadata read back");
        const st_tensor *ta = st_find(&f, "weights.a"), *ti = st_find(&f, "ids \"quoted\""), *ts = st_find(&f, "s");
        CHECK(ta && ti && ts && !st_find(&f, "missing"), "names found");
        if (ta && ti && ts) {
            CHECK(ta->dtype == dts[d] && ta->ndim == 2 && ta->shape[0] == 2 && ta->shape[1] == 3, "shape of a");
            float back[6];
            EXPECT_OK(st_to_f32(back, ta, path), "st_to_f32");
            for (int i = 0; i < 6; i++) {
                float want = d == 0 ? a[i] : d == 1 ? st_bf16_to_f32(st_f32_to_bf16(a[i])) : st_f16_to_f32(st_f32_to_f16(a[i]));
                CHECK(!memcmp(&back[i], &want, 4), "dtype %d element %d: %g vs %g", d, i, back[i], want);
            }
            CHECK(ti->dtype == ST_I32 && !memcmp(ti->data, ids, sizeof ids), "raw I32 written as is");
            CHECK(ts->ndim == 0 && ts->n_elems == 1, "scalar");
            float b = 0;
            EXPECT_ERR(st_to_f32(&b, ti, path), ERR_INPUT, "ids", "I32");
        }
        st_close(&f);
    }
    st_entry dup[2] = {{.name = "x", .ndim = 1, .shape = {1}, .f32 = a}, {.name = "x", .ndim = 1, .shape = {1}, .f32 = a}};
    EXPECT_ERR(st_write(t_path("dup.safetensors"), dup, 2, ST_F32, NULL, 0), ERR_INPUT, "'x' is given twice");
    EXPECT_ERR(st_write(t_path("i8.safetensors"), dup, 1, ST_I8, NULL, 0), ERR_INPUT, "choose F32");
    CHECK(!fs_exists(t_path("dup.safetensors")), "a failed write leaves nothing");
}

/* ---- malformed files ---- */

/* A file image: 8-byte length of hdr, hdr, then n_data bytes of 0x11. */
static size_t image(uint8_t *buf, uint64_t len_field, const char *hdr, size_t n_data) {
    size_t h = strlen(hdr);
    for (int i = 0; i < 8; i++) buf[i] = (uint8_t)(len_field >> (8 * i));
    memcpy(buf + 8, hdr, h);
    memset(buf + 8 + h, 0x11, n_data);
    return 8 + h + n_data;
}

typedef struct {
    const char *label;
    const char *hdr;       /* NULL: raw bytes below */
    int64_t len_field;     /* -1: the header's own length */
    size_t n_data;
    const char *expect[3]; /* substrings of the message */
} bad_case;

static const bad_case bad_cases[] = {
    {"header length 0", "", 0, 16, {"header length is 0"}},
    {"header length huge", "{}", (int64_t)1 << 40, 0, {"more than the", "limit"}},
    {"header length past EOF", "{\"a\":1}", 100, 4, {"only 11 follow", "truncated"}},
    {"not JSON", "{\"a\": [1, 2", -1, 0, {"not valid JSON"}},
    {"JSON, not an object", "[1, 2, 3]", -1, 0, {"does not begin with '{'"}},
    {"garbage after JSON", "{}  xyz", -1, 0, {"not padding spaces"}},
    {"unknown dtype", "{\"w\":{\"dtype\":\"F33\",\"shape\":[1],\"data_offsets\":[0,4]}}", -1, 4, {"'w'", "\"F33\" is unknown"}},
    {"negative shape", "{\"w\":{\"dtype\":\"F32\",\"shape\":[-1,2],\"data_offsets\":[0,8]}}", -1, 8, {"'w'", "shape entry 0 is -1"}},
    {"fractional shape", "{\"w\":{\"dtype\":\"F32\",\"shape\":[1.5],\"data_offsets\":[0,4]}}", -1, 4, {"'w'", "shape entry 0 is 1.5"}},
    {"overflowing shape", "{\"w\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,4294967296],\"data_offsets\":[0,4]}}",
     -1, 4, {"'w'", "overflows 64 bits"}},
    {"byte size overflow", "{\"w\":{\"dtype\":\"F64\",\"shape\":[2147483648,4294967296],\"data_offsets\":[0,4]}}", -1, 4,
     {"'w'", "overflow 64 bits of bytes"}},
    {"too many dims", "{\"w\":{\"dtype\":\"U8\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,1]}}", -1, 1, {"'w'", "9 dimensions"}},
    {"out-of-bounds offsets", "{\"w\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", -1, 8,
     {"'w'", "run past the end of the data section (8 bytes)", "truncated"}},
    {"reversed offsets", "{\"w\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[8,0]}}", -1, 8, {"'w'", "end before they begin"}},
    {"offsets malformed", "{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4,8]}}", -1, 8, {"'w'", "data_offsets is [0,4,8]"}},
    {"shape/size mismatch", "{\"w\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", -1, 8,
     {"'w'", "hold 8 bytes but shape [3] of F32 needs 12 bytes"}},
    {"overlapping offsets", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                            "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", -1, 12, {"'a' and 'b' overlap"}},
    {"gap between tensors", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                            "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]}}", -1, 12,
     {"bytes [4, 8)", "belong to no tensor", "'b'"}},
    {"offsets not covering", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", -1, 12, {"cover 4 bytes", "holds 12"}},
    {"duplicate names", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                        "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", -1, 8, {"'a' appears twice"}},
    {"entry not an object", "{\"w\":[1,2]}", -1, 0, {"'w'", "header entry is [1,2]"}},
    {"metadata not strings", "{\"__metadata__\":{\"n\":3}}", -1, 0, {"__metadata__ value of 'n'"}},
    {"no tensors but data", "{}", -1, 4, {"lists no tensors but 4 data bytes"}},
};

static void test_malformed(void) {
    static uint8_t buf[4096];
    for (size_t i = 0; i < sizeof bad_cases / sizeof *bad_cases; i++) {
        const bad_case *c = &bad_cases[i];
        uint64_t lf = c->len_field < 0 ? strlen(c->hdr) : (uint64_t)c->len_field;
        size_t n = image(buf, lf, c->hdr, c->n_data);
        /* every case also as a file, through st_open and mmap */
        char name[64];
        snprintf(name, sizeof name, "bad%02zu.safetensors", i);
        t_write(t_path(name), buf, n);
        st_file f;
        int rc = st_parse(&f, buf, n, name);
        if (rc != -1) fprintf(stderr, "case '%s':\n", c->label);
        EXPECT_ERR(rc, ERR_CORRUPT, name, c->expect[0], c->expect[1], c->expect[2]);
        rc = st_open(&f, t_path(name));
        EXPECT_ERR(rc, ERR_CORRUPT, name, c->expect[0], c->expect[1], c->expect[2]);
    }
    st_file f;
    /* shorter than the length field itself; empty */
    EXPECT_ERR(st_parse(&f, "\x10\0\0", 3, "short.safetensors"), ERR_CORRUPT, "short.safetensors", "3 bytes, shorter than");
    t_write(t_path("empty.safetensors"), "", 0);
    EXPECT_ERR(st_open(&f, t_path("empty.safetensors")), ERR_CORRUPT, "empty.safetensors", "0 bytes");
    EXPECT_ERR(st_open(&f, t_path("absent.safetensors")), ERR_IO, "absent.safetensors");
    /* a good file truncated: inside the data, then inside the header */
    float v[8] = {0};
    st_entry e = {.name = "t", .ndim = 1, .shape = {8}, .f32 = v};
    const char *good = t_path("good.safetensors");
    EXPECT_OK(st_write(good, &e, 1, ST_F32, NULL, 0), "st_write");
    char *bytes = NULL;
    size_t len = 0;
    EXPECT_OK(fs_read_file(good, 0, &bytes, &len), "read");
    EXPECT_OK(st_parse(&f, bytes, len, "good"), "the untruncated file parses");
    st_close(&f);
    t_write(t_path("trunc1.safetensors"), bytes, len - 5);
    EXPECT_ERR(st_open(&f, t_path("trunc1.safetensors")), ERR_CORRUPT, "trunc1", "'t'", "truncated");
    t_write(t_path("trunc2.safetensors"), bytes, 20);
    EXPECT_ERR(st_open(&f, t_path("trunc2.safetensors")), ERR_CORRUPT, "trunc2", "only 12 follow", "truncated");
    free(bytes);
}

/* ---- sharded sets ---- */

static void write_index(const char *path, const char *body) { t_write(path, body, strlen(body)); }

static void test_sets(void) {
    const char *dir = t_path("shards");
    fs_mkdir_p(dir, 0755);
    float a[4] = {1, 2, 3, 4}, b[2] = {5, 6};
    st_entry ea = {.name = "a", .ndim = 1, .shape = {4}, .f32 = a}, eb = {.name = "b", .ndim = 2, .shape = {1, 2}, .f32 = b};
    char p1[4200], p2[4200], idx[4200];
    snprintf(p1, sizeof p1, "%s/m-00001-of-00002.safetensors", dir);
    snprintf(p2, sizeof p2, "%s/m-00002-of-00002.safetensors", dir);
    snprintf(idx, sizeof idx, "%s/model.safetensors.index.json", dir);
    EXPECT_OK(st_write(p1, &ea, 1, ST_F32, NULL, 0), "shard 1");
    EXPECT_OK(st_write(p2, &eb, 1, ST_BF16, NULL, 0), "shard 2");
    write_index(idx, "{\"metadata\": {\"total_size\": 20}, \"weight_map\": {\"a\": \"m-00001-of-00002.safetensors\", "
                     "\"b\": \"m-00002-of-00002.safetensors\"}}");
    st_set s;
    for (int via = 0; via < 2; via++) {
        EXPECT_OK(st_set_open(&s, via ? idx : dir), "st_set_open");
        int fi = -1;
        const st_tensor *tb = st_set_find(&s, "b", &fi);
        CHECK(s.n_files == 2 && s.n_tensors == 2 && tb && tb->dtype == ST_BF16 && fi >= 0 &&
              !strcmp(s.file_names[fi], "m-00002-of-00002.safetensors"), "two shards, b in the second");
        CHECK(st_set_find(&s, "a", NULL) && !st_set_find(&s, "c", NULL), "lookup");
        st_set_close(&s);
    }
    write_index(idx, "{\"weight_map\": {\"a\": \"m-00002-of-00002.safetensors\", \"b\": \"m-00002-of-00002.safetensors\"}}");
    EXPECT_ERR(st_set_open(&s, dir), ERR_CORRUPT, "lists tensor 'a' in m-00002-of-00002.safetensors", "no such tensor");
    write_index(idx, "{\"weight_map\": {\"a\": \"../m-00001-of-00002.safetensors\"}}");
    EXPECT_ERR(st_set_open(&s, dir), ERR_CORRUPT, "not a plain file name");
    write_index(idx, "{\"weight_map\": {\"a\": \"m-00003-of-00002.safetensors\"}}");
    EXPECT_ERR(st_set_open(&s, dir), ERR_IO, "m-00003-of-00002.safetensors");
    write_index(idx, "{\"weights\": {}}");
    EXPECT_ERR(st_set_open(&s, dir), ERR_CORRUPT, "no \"weight_map\"");
    write_index(idx, "{\"weight_map\": {\"a\": 3}}");
    EXPECT_ERR(st_set_open(&s, dir), ERR_CORRUPT, "weight_map entry 'a'");
    write_index(idx, "not json");
    EXPECT_ERR(st_set_open(&s, idx), ERR_CORRUPT, "not a JSON object");
    /* the same tensor in two shards */
    st_entry both[2] = {ea, eb};
    EXPECT_OK(st_write(p2, both, 2, ST_F32, NULL, 0), "shard 2 with a and b");
    write_index(idx, "{\"weight_map\": {\"a\": \"m-00001-of-00002.safetensors\", \"b\": \"m-00002-of-00002.safetensors\"}}");
    EXPECT_ERR(st_set_open(&s, dir), ERR_CORRUPT, "tensor 'a' is in both");
    EXPECT_ERR(st_set_open(&s, t_path("nothing-here")), ERR_INPUT, "does not exist");
    fs_mkdir_p(t_path("emptydir"), 0755);
    EXPECT_ERR(st_set_open(&s, t_path("emptydir")), ERR_INPUT, "neither model.safetensors nor");
}

int main(void) {
    test_bf16();
    test_f16();
    test_write_read();
    test_malformed();
    test_sets();
    return t_finish("test_safetensors");
}
