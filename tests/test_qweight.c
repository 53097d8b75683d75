/* test_qweight.c: kernels/qweight.c against references: the FP8 E4M3 conversions against
 * ml_dtypes.float8_e4m3fn (tests/fixtures/fp8/e4m3fn.json, tools/make_fp8_fixture.py): all 256
 * codes decode bit for bit; encoding equals ml_dtypes on every tie and its neighbours and on 10^6
 * random values (a sha256 of the codes); saturation and NaN as qweight.h documents. Then
 * allocation errors, the reference dequantization (a hand-computed case) and packed sizes. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "common/fsutil.h"
#include "common/sha256.h"
#include "engine_testutil.h"
#include "kernels/qweight.h"

static float f_of_bits(uint32_t b) {
    float f;
    memcpy(&f, &b, 4);
    return f;
}
static uint32_t bits_of(float f) {
    uint32_t b;
    memcpy(&b, &f, 4);
    return b;
}

/* The generator of tools/make_fp8_fixture.py (splitmix64; see its docstring). */
static uint64_t sm_state;
static uint64_t splitmix64(void) {
    uint64_t z = (sm_state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
static float fixture_random(void) {
    uint64_t u = splitmix64();
    uint32_t bits = (uint32_t)((u >> 63) << 31) | (uint32_t)(114 + (u >> 32) % 22) << 23 | (uint32_t)(u & 0x7FFFFF);
    float x = f_of_bits(bits);
    return fabsf(x) >= 464.0f ? x * 0.5f : x;
}

static void test_fp8_fixture(void) {
    char *path = xasprintf("%s/tests/fixtures/fp8/e4m3fn.json", getenv("SMELT_SOURCE_DIR") ? getenv("SMELT_SOURCE_DIR") : ".");
    char *text = NULL;
    size_t len = 0;
    if (!path || fs_read_file(path, 1 << 20, &text, &len)) {
        tu_expect(0, "cannot read the FP8 fixture: %s", err_msg());
        free(path);
        return;
    }
    cJSON *root = cJSON_ParseWithLength(text, len);
    tu_expect(root != NULL, "the FP8 fixture is not JSON");
    const cJSON *decode = cJSON_GetObjectItem(root, "decode"), *ties = cJSON_GetObjectItem(root, "ties");
    const cJSON *rnd = cJSON_GetObjectItem(root, "random");
    tu_expect(cJSON_GetArraySize(decode) == 256, "256 decoded codes in the fixture");

    /* decoding: every code, bit for bit (NaN codes: NaN of the code's sign) */
    int bad = 0;
    for (int c = 0; c < 256 && c < cJSON_GetArraySize(decode); c++) {
        uint32_t want = (uint32_t)strtoul(cJSON_GetArrayItem(decode, c)->valuestring, NULL, 16);
        float got = fp8_e4m3_to_float((uint8_t)c), ref = f_of_bits(want);
        int same = isnan(ref) ? isnan(got) && signbit(got) == signbit(ref) : bits_of(got) == want;
        if (!same && bad++ < 5) printf("decode 0x%02x: smelt %a, ml_dtypes %a\n", c, got, ref);
    }
    tu_expect(bad == 0, "%d of 256 codes decode differently from ml_dtypes", bad);

    /* encoding: every tie (round half to even) and the floats just around it */
    bad = 0;
    int n_ties = cJSON_GetArraySize(ties);
    for (int i = 0; i < n_ties; i++) {
        const cJSON *e = cJSON_GetArrayItem(ties, i);
        float x = f_of_bits((uint32_t)cJSON_GetArrayItem(e, 0)->valuedouble);
        int want = (int)cJSON_GetArrayItem(e, 1)->valuedouble, got = fp8_e4m3_from_float(x);
        if (got != want && bad++ < 5) printf("encode %a: smelt 0x%02x, ml_dtypes 0x%02x\n", x, got, want);
        got = fp8_e4m3_from_float_fast(x);
        if (got != want && bad++ < 5) printf("fast encode %a: smelt 0x%02x, ml_dtypes 0x%02x\n", x, got, want);
    }
    tu_expect(n_ties > 700 && bad == 0, "%d of %d tie cases encode differently from ml_dtypes", bad, n_ties);

    /* encoding: 10^6 random values spread over 2^-13 .. 2^9 */
    sm_state = (uint64_t)cJSON_GetObjectItem(rnd, "seed")->valuedouble;
    const int n = (int)cJSON_GetObjectItem(rnd, "n")->valuedouble;
    const cJSON *first = cJSON_GetObjectItem(rnd, "first");
    uint8_t *codes = malloc((size_t)n);
    bad = 0;
    for (int i = 0; i < n; i++) {
        float x = fixture_random();
        codes[i] = fp8_e4m3_from_float(x);
        if (fp8_e4m3_from_float_fast(x) != codes[i] && bad++ < 5) printf("random %d: %a: the fast encoding differs\n", i, x);
        if (i < cJSON_GetArraySize(first) && codes[i] != (int)cJSON_GetArrayItem(first, i)->valuedouble && bad++ < 5)
            printf("random %d: %a -> smelt 0x%02x, ml_dtypes 0x%02x\n", i, x, codes[i],
                   (int)cJSON_GetArrayItem(first, i)->valuedouble);
    }
    char hex[SHA256_HEX_LEN + 1];
    sha256_hex(hex, codes, (size_t)n);
    tu_expect(n == 1000000 && bad == 0 && !strcmp(hex, cJSON_GetObjectItem(rnd, "sha256")->valuestring),
              "the codes of %d random values differ from ml_dtypes (sha256 %s)", n, hex);
    free(codes);
    cJSON_Delete(root);
    free(text);
    free(path);
}

/* Where smelt and ml_dtypes part on purpose (qweight.h): beyond the range smelt saturates at
 * +-448 (ml_dtypes: 448 up to 464, NaN from 464 on, infinities NaN); NaN stays NaN. */
static void test_fp8_edges(void) {
    static const struct { float x; uint8_t code; } cases[] = {
        {448.0f, 0x7E}, {-448.0f, 0xFE}, {460.0f, 0x7E}, {463.9f, 0x7E}, {464.0f, 0x7E}, {1e9f, 0x7E},
        {-1e9f, 0xFE}, {INFINITY, 0x7E}, {-INFINITY, 0xFE}, {0.0f, 0x00}, {-0.0f, 0x80},
        {0x1p-9f, 0x01}, {0x1p-10f, 0x00}, {0x1.8p-10f, 0x01}, {0x1p-6f, 0x08}, {0x1.ep-7f, 0x08},
        {1.0f, 0x38}, {240.0f, 0x77}, {416.0f, 0x7D}, {432.0f, 0x7E}, {1e-30f, 0x00},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint8_t got = fp8_e4m3_from_float(cases[i].x), fast = fp8_e4m3_from_float_fast(cases[i].x);
        tu_expect(got == cases[i].code && fast == got, "encode %a: 0x%02x (fast 0x%02x), expected 0x%02x", cases[i].x,
                  got, fast, cases[i].code);
    }
    uint8_t pn = fp8_e4m3_from_float(NAN), nn = fp8_e4m3_from_float(-NAN);
    tu_expect(fp8_e4m3_from_float_fast(NAN) == pn && fp8_e4m3_from_float_fast(-NAN) == nn, "fast NaN encodings");
    tu_expect(pn == 0x7F && nn == 0xFF, "NaN encodes as 0x7F / 0xFF (got 0x%02x, 0x%02x)", pn, nn);
    tu_expect(isnan(fp8_e4m3_to_float(0x7F)) && isnan(fp8_e4m3_to_float(0xFF)), "0x7F and 0xFF decode as NaN");
    tu_expect(fp8_e4m3_to_float(0x7E) == 448.0f && fp8_e4m3_to_float(0x01) == 0x1p-9f, "max and min subnormal");
    /* every finite code round-trips */
    int bad = 0;
    for (int c = 0; c < 256; c++)
        if ((c & 0x7F) != 0x7F && fp8_e4m3_from_float(fp8_e4m3_to_float((uint8_t)c)) != c) bad++;
    tu_expect(bad == 0, "%d finite codes do not round-trip", bad);
}

/* The fast encoding equals the reference on every float of a strided sweep over all 2^32 bit
 * patterns (the stride, a prime, visits every residue of the low bits, so every rounding case of
 * every binade occurs), on the edges and on both sides of every code's rounding boundary.
 * (Checked once on all 2^32 patterns as well.) */
static void test_fp8_fast(void) {
    size_t bad = 0, n = 0;
    for (uint64_t b = 0; b < (1ull << 32); b += 251, n++) {
        const float x = f_of_bits((uint32_t)b);
        if (fp8_e4m3_from_float_fast(x) != fp8_e4m3_from_float(x) && bad++ < 5)
            printf("fast encode %a (0x%08x): 0x%02x, reference 0x%02x\n", x, (uint32_t)b, fp8_e4m3_from_float_fast(x),
                   fp8_e4m3_from_float(x));
    }
    for (int c = 0; c < 0x7F; c++) { /* the midpoint to the next code and its float neighbours */
        const float lo = fp8_e4m3_to_float((uint8_t)c), hi = fp8_e4m3_to_float((uint8_t)(c + 1));
        const float mid = (lo + hi) / 2;
        const float xs[] = {mid, nextafterf(mid, 0), nextafterf(mid, INFINITY), lo, hi};
        for (int i = 0; i < 5; i++, n += 2)
            for (int s = 0; s < 2; s++) {
                const float x = s ? -xs[i] : xs[i];
                if (fp8_e4m3_from_float_fast(x) != fp8_e4m3_from_float(x) && bad++ < 5)
                    printf("fast encode %a: 0x%02x, reference 0x%02x\n", x, fp8_e4m3_from_float_fast(x),
                           fp8_e4m3_from_float(x));
            }
    }
    tu_expect(bad == 0, "the fast FP8 encoding differs from the reference on %zu of %zu floats", bad, n);
}

static void test_alloc_errors(void) {
    qweight q = {.type = QW_INT, .bits = 4, .n_out = 4, .n_in = 12, .group_size = 8};
    tu_expect(qweight_alloc(&q, 0, 0) == -1 && err_kind_get() == ERR_INPUT && strstr(err_msg(), "does not divide"),
              "a group that does not divide the input: %s", err_msg());
    q.group_size = 4, q.bits = 9;
    tu_expect(qweight_alloc(&q, 0, 0) == -1 && strstr(err_msg(), "2 to 8 bits"), "9 bits: %s", err_msg());
    q.bits = 4;
    tu_expect(qweight_alloc(&q, 0, 1) == -1 && strstr(err_msg(), "FP8 layout"), "per tensor int: %s", err_msg());
    q.type = QW_FP8;
    tu_expect(qweight_alloc(&q, 1, 0) == -1 && strstr(err_msg(), "no zero point"), "fp8 zeros: %s", err_msg());
    q.n_out = 0;
    tu_expect(qweight_alloc(&q, 0, 0) == -1 && strstr(err_msg(), "positive"), "empty: %s", err_msg());
}

/* Dequantization by hand: 2 rows x 4 columns, groups of 2. */
static void test_dequantize(void) {
    qweight q = {.type = QW_INT, .bits = 4, .n_out = 2, .n_in = 4, .group_size = 2};
    tu_expect(qweight_alloc(&q, 1, 0) == 0, "alloc");
    const uint8_t codes[8] = {0, 15, 8, 9, 3, 4, 7, 7}, zeros[4] = {8, 9, 0, 7};
    const float scales[4] = {0.5f, 2.0f, 1.0f, -1.0f};
    memcpy(q.codes, codes, 8), memcpy(q.zeros, zeros, 4), memcpy(q.scales, scales, sizeof scales);
    float w[8];
    qweight_dequantize(w, &q);
    const float want[8] = {-4.0f, 3.5f, -2.0f, 0.0f, 3.0f, 4.0f, -0.0f, -0.0f}; /* 0 * -1 = -0 */
    tu_expect(!memcmp(w, want, sizeof w), "asymmetric int4 dequantization");
    /* symmetric: zero 8; sizes: 8 codes of 4 bits + 4 fp16 scales (+ 4 zeros of 4 bits) */
    tu_expect(qweight_packed_bytes(&q) == 4 + 8 + 2, "packed bytes with zeros: %zu", qweight_packed_bytes(&q));
    /* act order: columns 0 and 3 in group 1, 1 and 2 in group 0 */
    static const int32_t gi[4] = {1, 0, 0, 1}, ident[4] = {0, 0, 1, 1}, bad[4] = {1, 1, 1, 0}, out[4] = {0, 2, 1, 1};
    tu_expect(qweight_set_g_idx(&q, gi) == 0 && q.g_idx, "act-order groups set");
    qweight_dequantize(w, &q);
    /* row 0: groups (s 0.5 z 8) and (s 2 z 9); row 1: (s 1 z 0) and (s -1 z 7) */
    const float want_ao[8] = {2.0f * (0 - 9), 0.5f * (15 - 8), 0.5f * (8 - 8), 2.0f * (9 - 9),
                              -1.0f * (3 - 7), 1.0f * (4 - 0), 1.0f * (7 - 0), -1.0f * (7 - 7)};
    tu_expect(!memcmp(w, want_ao, sizeof w), "act-order dequantization");
    tu_expect(qweight_set_g_idx(&q, ident) == 0 && !q.g_idx, "the identity grouping is kept as NULL");
    tu_expect(qweight_set_g_idx(&q, bad) == -1 && err_kind_get() == ERR_INPUT && strstr(err_msg(), "g_idx[2]"),
              "a group of three columns is refused: %s", err_msg());
    tu_expect(qweight_set_g_idx(&q, out) == -1 && strstr(err_msg(), "g_idx[1] = 2"), "a group out of range is refused: %s",
              err_msg());
    qweight_free(&q);
    qweight f = {.type = QW_FP8, .n_out = 2, .n_in = 4, .group_size = 4};
    tu_expect(qweight_alloc(&f, 0, 1) == 0 && f.bits == 8 && f.n_scales == 1, "fp8 per tensor alloc");
    const uint8_t fc[8] = {0x38, 0xB8, 0x7E, 0x01, 0x00, 0x80, 0x40, 0x30};
    memcpy(f.codes, fc, 8);
    f.scales[0] = 0.25f;
    qweight_dequantize(w, &f);
    const float fw[8] = {0.25f, -0.25f, 112.0f, 0x1p-11f, 0.0f, -0.0f, 0.5f, 0.125f};
    tu_expect(!memcmp(w, fw, sizeof w), "fp8 per-tensor dequantization");
    tu_expect(qweight_packed_bytes(&f) == 8 + 2, "fp8 packed bytes: %zu", qweight_packed_bytes(&f));
    qweight_free(&f);
}

int main(void) {
    test_fp8_fixture();
    test_fp8_edges();
    test_fp8_fast();
    test_alloc_errors();
    test_dequantize();
    return tu_finish("test_qweight");
}
