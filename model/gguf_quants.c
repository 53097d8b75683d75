/* gguf_quants.c: the ggml type table, dequantization of the block formats to fp32 and the
 * reference quantizers of the formats the GGUF writer produces.
 *
 * Bit-exactness: gguf.quants.dequantize (NumPy, fp32 arrays) rounds after every operation, so
 * each formula below is written as the same sequence of fp32 operations in the same order
 * (Q4_1: (d*q) + m, never a fused multiply-add). GCC in ISO C mode does not contract; clang is
 * told so by the pragma. tests/test_gguf.c checks every format against the package. */
#include "model/gguf_quants.h"

#include <math.h>
#include <string.h>
#include <strings.h>

#include "common/error.h"
#include "model/safetensors.h"

#ifdef __clang__
#pragma STDC FP_CONTRACT OFF
#endif

static const struct {
    const char *name;
    int blck;
    size_t size;
} type_info[GGML_N_TYPES] = {
    [GGML_F32] = {"F32", 1, 4},          [GGML_F16] = {"F16", 1, 2},          [GGML_Q4_0] = {"Q4_0", 32, 18},
    [GGML_Q4_1] = {"Q4_1", 32, 20},      [GGML_Q5_0] = {"Q5_0", 32, 22},      [GGML_Q5_1] = {"Q5_1", 32, 24},
    [GGML_Q8_0] = {"Q8_0", 32, 34},      [GGML_Q8_1] = {"Q8_1", 32, 40},      [GGML_Q2_K] = {"Q2_K", 256, 84},
    [GGML_Q3_K] = {"Q3_K", 256, 110},    [GGML_Q4_K] = {"Q4_K", 256, 144},    [GGML_Q5_K] = {"Q5_K", 256, 176},
    [GGML_Q6_K] = {"Q6_K", 256, 210},    [GGML_Q8_K] = {"Q8_K", 256, 292},    [GGML_IQ2_XXS] = {"IQ2_XXS", 256, 66},
    [GGML_IQ2_XS] = {"IQ2_XS", 256, 74}, [GGML_IQ3_XXS] = {"IQ3_XXS", 256, 98}, [GGML_IQ1_S] = {"IQ1_S", 256, 50},
    [GGML_IQ4_NL] = {"IQ4_NL", 32, 18},  [GGML_IQ3_S] = {"IQ3_S", 256, 110},  [GGML_IQ2_S] = {"IQ2_S", 256, 82},
    [GGML_IQ4_XS] = {"IQ4_XS", 256, 136}, [GGML_I8] = {"I8", 1, 1},          [GGML_I16] = {"I16", 1, 2},
    [GGML_I32] = {"I32", 1, 4},          [GGML_I64] = {"I64", 1, 8},          [GGML_F64] = {"F64", 1, 8},
    [GGML_IQ1_M] = {"IQ1_M", 256, 56},   [GGML_BF16] = {"BF16", 1, 2},        [GGML_TQ1_0] = {"TQ1_0", 256, 54},
    [GGML_TQ2_0] = {"TQ2_0", 256, 66},   [GGML_MXFP4] = {"MXFP4", 32, 17},
};

const char *ggml_type_name(ggml_type t) { return (unsigned)t < GGML_N_TYPES ? type_info[t].name : NULL; }
int ggml_blck_size(ggml_type t) { return (unsigned)t < GGML_N_TYPES ? type_info[t].blck : 0; }
size_t ggml_type_size(ggml_type t) { return (unsigned)t < GGML_N_TYPES ? type_info[t].size : 0; }

int ggml_type_parse(const char *name, ggml_type *out) {
    for (int t = 0; t < GGML_N_TYPES; t++)
        if (type_info[t].name && !strcasecmp(type_info[t].name, name)) {
            *out = (ggml_type)t;
            return 0;
        }
    return -1;
}

size_t ggml_row_bytes(ggml_type t, int64_t n) {
    int b = ggml_blck_size(t);
    if (!b || n < 0 || n % b) return 0;
    return (size_t)(n / b) * ggml_type_size(t);
}

int ggml_can_dequantize(ggml_type t) {
    switch (t) {
    case GGML_F32: case GGML_F16: case GGML_BF16: case GGML_Q4_0: case GGML_Q4_1: case GGML_Q5_0:
    case GGML_Q5_1: case GGML_Q8_0: case GGML_Q2_K: case GGML_Q3_K: case GGML_Q4_K: case GGML_Q5_K:
    case GGML_Q6_K: return 1;
    default: return 0;
    }
}

int ggml_can_quantize(ggml_type t) {
    return t == GGML_F32 || t == GGML_F16 || t == GGML_BF16 || t == GGML_Q8_0 || t == GGML_Q4_0 || t == GGML_Q4_1;
}

static float h2f(const uint8_t *p) { return st_f16_to_f32((uint16_t)(p[0] | p[1] << 8)); }
static void f2h(uint8_t *p, float f) {
    uint16_t h = st_f32_to_f16(f);
    p[0] = (uint8_t)h;
    p[1] = (uint8_t)(h >> 8);
}

/* ---- 32-weight blocks ---- */

/* Q4_0 {d, qs[16]}: w = d * (q - 8) */
static void deq_q4_0(float *y, const uint8_t *b) {
    float d = h2f(b);
    for (int j = 0; j < 16; j++) {
        y[j] = d * (float)((b[2 + j] & 0xF) - 8);
        y[j + 16] = d * (float)((b[2 + j] >> 4) - 8);
    }
}

/* Q4_1 {d, m, qs[16]}: w = d*q + m */
static void deq_q4_1(float *y, const uint8_t *b) {
    float d = h2f(b), m = h2f(b + 2);
    for (int j = 0; j < 16; j++) {
        float lo = d * (float)(b[4 + j] & 0xF), hi = d * (float)(b[4 + j] >> 4);
        y[j] = lo + m;
        y[j + 16] = hi + m;
    }
}

/* Q5_0 {d, qh (u32), qs[16]}: q = low nibble | bit j of qh << 4; w = d * (q - 16) */
static void deq_q5_0(float *y, const uint8_t *b) {
    float d = h2f(b);
    uint32_t qh = (uint32_t)b[2] | (uint32_t)b[3] << 8 | (uint32_t)b[4] << 16 | (uint32_t)b[5] << 24;
    for (int j = 0; j < 32; j++) {
        int ql = j < 16 ? (b[6 + j] & 0xF) : (b[6 + j - 16] >> 4);
        int q = ql | (int)((qh >> j) & 1) << 4;
        y[j] = d * (float)(q - 16);
    }
}

/* Q5_1 {d, m, qh, qs[16]}: w = d*q + m */
static void deq_q5_1(float *y, const uint8_t *b) {
    float d = h2f(b), m = h2f(b + 2);
    uint32_t qh = (uint32_t)b[4] | (uint32_t)b[5] << 8 | (uint32_t)b[6] << 16 | (uint32_t)b[7] << 24;
    for (int j = 0; j < 32; j++) {
        int ql = j < 16 ? (b[8 + j] & 0xF) : (b[8 + j - 16] >> 4);
        float v = d * (float)(ql | (int)((qh >> j) & 1) << 4);
        y[j] = v + m;
    }
}

/* Q8_0 {d, int8 qs[32]}: w = q * d */
static void deq_q8_0(float *y, const uint8_t *b) {
    float d = h2f(b);
    for (int j = 0; j < 32; j++) y[j] = (float)(int8_t)b[2 + j] * d;
}

/* ---- K-quants: super-blocks of 256 ---- */

/* Q2_K {scales[16], qs[64], d, dmin}: 16 sub-blocks of 16; scales low nibble x d, high nibble
 * x dmin; weight i is 2 bits of qs[32*(i/128) + i%32] at shift 2*((i%128)/32): w = dl*q - ml. */
static void deq_q2_k(float *y, const uint8_t *b) {
    const uint8_t *sc = b, *qs = b + 16;
    float d = h2f(b + 80), dmin = h2f(b + 82);
    for (int i = 0; i < 256; i++) {
        int s = sc[i / 16];
        float dl = d * (float)(s & 0xF), ml = dmin * (float)(s >> 4);
        int q = (qs[32 * (i / 128) + i % 32] >> (2 * ((i % 128) / 32))) & 3;
        float v = dl * (float)q;
        y[i] = v - ml;
    }
}

/* Q3_K {hmask[32], qs[64], scales[12], d}: 6-bit signed scales (low 4 bits from bytes 0..7,
 * high 2 from bytes 8..11); q = 2 low bits as Q2_K minus 4 where the hmask bit is 0. */
static void deq_q3_k(float *y, const uint8_t *b) {
    const uint8_t *hm = b, *qs = b + 32, *sc = b + 96;
    float d = h2f(b + 108);
    float dl[16];
    for (int k = 0; k < 16; k++) {
        int lo = (sc[k % 8] >> (4 * (k / 8))) & 0xF, hi = (sc[8 + k % 4] >> (2 * (k / 4))) & 3;
        dl[k] = d * (float)((int8_t)(lo | hi << 4) - 32);
    }
    for (int i = 0; i < 256; i++) {
        int ql = (qs[32 * (i / 128) + i % 32] >> (2 * ((i % 128) / 32))) & 3;
        int h = (hm[i % 32] >> (i / 32)) & 1;
        y[i] = dl[i / 16] * (float)(ql - ((h ^ 1) << 2));
    }
}

/* The 8 (scale, min) pairs of Q4_K/Q5_K, 6 bits each packed in 12 bytes. */
static void k_scale_min(const uint8_t *s, int *sc, int *mn) {
    for (int j = 0; j < 4; j++) {
        sc[j] = s[j] & 63;
        mn[j] = s[4 + j] & 63;
        sc[4 + j] = (s[8 + j] & 0xF) | ((s[j] >> 2) & 0x30);
        mn[4 + j] = (s[8 + j] >> 4) | ((s[4 + j] >> 2) & 0x30);
    }
}

/* Q4_K {d, dmin, scales[12], qs[128]}: 8 sub-blocks of 32; weight i is the nibble of
 * qs[32*(i/64) + i%32] at shift 4*((i%64)/32): w = (d*sc)*q - dmin*m. */
static void deq_q4_k(float *y, const uint8_t *b) {
    float d = h2f(b), dmin = h2f(b + 2);
    int sc[8], mn[8];
    k_scale_min(b + 4, sc, mn);
    const uint8_t *qs = b + 16;
    for (int i = 0; i < 256; i++) {
        int j = i / 32;
        float dj = d * (float)sc[j], mj = dmin * (float)mn[j];
        int q = (qs[32 * (i / 64) + i % 32] >> (4 * ((i % 64) / 32))) & 0xF;
        float v = dj * (float)q;
        y[i] = v - mj;
    }
}

/* Q5_K {d, dmin, scales[12], qh[32], qs[128]}: Q4_K plus a fifth bit, bit i/32 of qh[i%32]. */
static void deq_q5_k(float *y, const uint8_t *b) {
    float d = h2f(b), dmin = h2f(b + 2);
    int sc[8], mn[8];
    k_scale_min(b + 4, sc, mn);
    const uint8_t *qh = b + 16, *qs = b + 48;
    for (int i = 0; i < 256; i++) {
        int j = i / 32;
        float dj = d * (float)sc[j], mj = dmin * (float)mn[j];
        int q = (qs[32 * (i / 64) + i % 32] >> (4 * ((i % 64) / 32))) & 0xF;
        q |= ((qh[i % 32] >> j) & 1) << 4;
        float v = dj * (float)q;
        y[i] = v - mj;
    }
}

/* Q6_K {ql[128], qh[64], int8 scales[16], d}: 16 sub-blocks of 16; low 4 bits from
 * ql[64*(i/128) + i%64] at shift 4*((i%128)/64), high 2 from qh[32*(i/128) + i%32] at shift
 * 2*((i%128)/32); w = (d*scale) * (q - 32). */
static void deq_q6_k(float *y, const uint8_t *b) {
    const uint8_t *ql = b, *qh = b + 128;
    const int8_t *sc = (const int8_t *)(b + 192);
    float d = h2f(b + 208);
    for (int i = 0; i < 256; i++) {
        int h = i / 128, r = i % 128;
        int lo = (ql[64 * h + r % 64] >> (4 * (r / 64))) & 0xF, hi = (qh[32 * h + r % 32] >> (2 * (r / 32))) & 3;
        float dk = d * (float)sc[i / 16];
        y[i] = dk * (float)((int8_t)(lo | hi << 4) - 32);
    }
}

typedef void (*deq_block_fn)(float *y, const uint8_t *b);

static deq_block_fn deq_fn(ggml_type t) {
    switch (t) {
    case GGML_Q4_0: return deq_q4_0;
    case GGML_Q4_1: return deq_q4_1;
    case GGML_Q5_0: return deq_q5_0;
    case GGML_Q5_1: return deq_q5_1;
    case GGML_Q8_0: return deq_q8_0;
    case GGML_Q2_K: return deq_q2_k;
    case GGML_Q3_K: return deq_q3_k;
    case GGML_Q4_K: return deq_q4_k;
    case GGML_Q5_K: return deq_q5_k;
    case GGML_Q6_K: return deq_q6_k;
    default: return NULL;
    }
}

static int check_n(ggml_type t, int64_t n, const char *what) {
    const char *name = ggml_type_name(t);
    if (!name) return err_set(ERR_INPUT, "%s: ggml type %d is not a type ggml defines", what, (int)t);
    int b = type_info[t].blck;
    if (n < 0 || n % b)
        return err_set(ERR_INPUT, "%s: %lld %s weights are not a whole number of blocks of %d", what, (long long)n, name, b);
    return 0;
}

int ggml_dequantize(float *out, const void *src, ggml_type t, int64_t n) {
    if (check_n(t, n, "dequantize")) return -1;
    const uint8_t *s = src;
    switch (t) {
    case GGML_F32: memcpy(out, s, (size_t)n * 4); return 0;
    case GGML_F16:
        for (int64_t i = 0; i < n; i++) out[i] = h2f(s + 2 * i);
        return 0;
    case GGML_BF16:
        for (int64_t i = 0; i < n; i++) out[i] = st_bf16_to_f32((uint16_t)(s[2 * i] | s[2 * i + 1] << 8));
        return 0;
    default: break;
    }
    deq_block_fn fn = deq_fn(t);
    if (!fn)
        return err_set(ERR_INPUT, "tensors of type %s cannot be converted to fp32 by smelt (it reads F32, F16, BF16, "
                       "Q4_0, Q4_1, Q5_0, Q5_1, Q8_0 and Q2_K..Q6_K); re-quantize the model to one of those",
                       ggml_type_name(t));
    int b = type_info[t].blck;
    size_t sz = type_info[t].size;
    for (int64_t k = 0; k < n / b; k++) fn(out + k * b, s + (size_t)k * sz);
    return 0;
}

/* ---- reference quantizers (ggml-quants.c quantize_row_*_ref) ---- */

/* Q8_0: d = amax/127, q = round-half-away(x/d) */
static void q_q8_0(uint8_t *y, const float *x) {
    float amax = 0;
    for (int j = 0; j < 32; j++) amax = fmaxf(amax, fabsf(x[j]));
    float d = amax / 127.0f, id = d != 0 ? 1.0f / d : 0.0f;
    f2h(y, d);
    for (int j = 0; j < 32; j++) y[2 + j] = (uint8_t)(int8_t)roundf(x[j] * id);
}

/* Q4_0: d = (the value of largest magnitude) / -8, q = min(15, trunc(x/d + 8.5)) */
static void q_q4_0(uint8_t *y, const float *x) {
    float amax = 0, max = 0;
    for (int j = 0; j < 32; j++)
        if (amax < fabsf(x[j])) {
            amax = fabsf(x[j]);
            max = x[j];
        }
    float d = max / -8.0f, id = d != 0 ? 1.0f / d : 0.0f;
    f2h(y, d);
    for (int j = 0; j < 16; j++) {
        int a = (int)(int8_t)(x[j] * id + 8.5f), b = (int)(int8_t)(x[16 + j] * id + 8.5f);
        a = a < 15 ? a : 15;
        b = b < 15 ? b : 15;
        y[2 + j] = (uint8_t)(a | b << 4);
    }
}

/* Q4_1: d = (max - min)/15, m = min, q = min(15, trunc((x - min)/d + 0.5)) */
static void q_q4_1(uint8_t *y, const float *x) {
    float mn = x[0], mx = x[0];
    for (int j = 1; j < 32; j++) {
        if (x[j] < mn) mn = x[j];
        if (x[j] > mx) mx = x[j];
    }
    float d = (mx - mn) / 15.0f, id = d != 0 ? 1.0f / d : 0.0f;
    f2h(y, d);
    f2h(y + 2, mn);
    for (int j = 0; j < 16; j++) {
        int a = (int)(int8_t)((x[j] - mn) * id + 0.5f), b = (int)(int8_t)((x[16 + j] - mn) * id + 0.5f);
        a = a < 15 ? a : 15;
        b = b < 15 ? b : 15;
        y[4 + j] = (uint8_t)(a | b << 4);
    }
}

int ggml_quantize(void *dst, const float *x, ggml_type t, int64_t n) {
    if (check_n(t, n, "quantize")) return -1;
    uint8_t *d = dst;
    void (*fn)(uint8_t *, const float *) = NULL;
    switch (t) {
    case GGML_F32: memcpy(d, x, (size_t)n * 4); return 0;
    case GGML_F16:
        for (int64_t i = 0; i < n; i++) f2h(d + 2 * i, x[i]);
        return 0;
    case GGML_BF16:
        for (int64_t i = 0; i < n; i++) {
            uint16_t h = st_f32_to_bf16(x[i]);
            d[2 * i] = (uint8_t)h;
            d[2 * i + 1] = (uint8_t)(h >> 8);
        }
        return 0;
    case GGML_Q8_0: fn = q_q8_0; break;
    case GGML_Q4_0: fn = q_q4_0; break;
    case GGML_Q4_1: fn = q_q4_1; break;
    default:
        return err_set(ERR_INPUT, "smelt cannot quantize to %s; it writes F32, F16, BF16, Q8_0, Q4_0 and Q4_1",
                       ggml_type_name(t));
    }
    size_t sz = type_info[t].size;
    for (int64_t k = 0; k < n / 32; k++) fn(d + (size_t)k * sz, x + k * 32);
    return 0;
}
