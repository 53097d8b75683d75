/* qlinear.c: building the payloads of quantized linears from qweights, the reference forward, the
 * per-token activation quantizations and the run-time choice of kernel family (see qlinear.h). */
#include "kernels/qlinear.h"

#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "kernels/bf16.h"
#include "kernels/qlinear_internal.h"
#include "kernels/threads.h"

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

/* ---- kernel family ---- */

static int isa_cap = -1; /* the cap (SMELT_QKERNEL or qlinear_set_isa); -1 until first use */

static qlinear_isa_kind isa_cpu(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni"))
        return bf16_available() ? QISA_AVX512BF16 : QISA_AVX512;
    /* F16C (FP8 decoding through half precision) is not a __builtin_cpu_supports name in every
     * compiler: CPUID leaf 1, ECX bit 29 */
    unsigned a, b, c, d;
    const int f16c = __get_cpuid(1, &a, &b, &c, &d) && (c & (1u << 29));
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && f16c)
        return QISA_AVX2;
#endif
    return QISA_PORTABLE;
}

const char *qlinear_isa_name(qlinear_isa_kind k) {
    switch (k) {
    case QISA_AVX512BF16: return "avx512-bf16";
    case QISA_AVX512: return "avx512-vnni";
    case QISA_AVX2: return "avx2";
    default: return "portable";
    }
}

qlinear_isa_kind qlinear_set_isa(qlinear_isa_kind want) {
    isa_cap = (int)want;
    return qlinear_isa();
}

qlinear_isa_kind qlinear_isa(void) {
    static int cpu = -1;
    if (cpu < 0) cpu = (int)isa_cpu();
    if (isa_cap < 0) {
        const char *e = getenv("SMELT_QKERNEL");
        isa_cap = QISA_AVX512BF16;
        if (e && !strcmp(e, "avx512")) isa_cap = QISA_AVX512;
        if (e && !strcmp(e, "portable")) isa_cap = QISA_PORTABLE;
        else if (e && !strcmp(e, "avx2")) isa_cap = QISA_AVX2;
    }
    return (qlinear_isa_kind)(isa_cap < cpu ? isa_cap : cpu);
}

/* ---- scratch ---- */

#define QL_SCRATCH_SLOTS 6
static _Thread_local void *scratch_buf[QL_SCRATCH_SLOTS];
static _Thread_local size_t scratch_cap[QL_SCRATCH_SLOTS];

void *qlinear_scratch(int slot, size_t bytes) {
    if (bytes <= scratch_cap[slot] && scratch_buf[slot]) return scratch_buf[slot];
    free(scratch_buf[slot]);
    scratch_cap[slot] = 0;
    /* 64-byte aligned, whole cache lines (the kernels read in 64-byte vectors) */
    const size_t n = (bytes + 63) & ~(size_t)63;
    scratch_buf[slot] = aligned_alloc(64, n ? n : 64);
    if (!scratch_buf[slot]) {
        err_set(ERR_NOMEM, "cannot allocate %zu bytes of quantized-kernel scratch", bytes);
        return NULL;
    }
    scratch_cap[slot] = n;
    return scratch_buf[slot];
}

/* ---- activation quantization ---- */

void qlinear_quant_int8(signed char *q, float *scale, const float *x, int n_in) {
    float amax = 0;
    for (int j = 0; j < n_in; j++) amax = fmaxf(amax, fabsf(x[j]));
    if (!(amax > 0)) {
        *scale = 0;
        memset(q, 0, (size_t)n_in);
        return;
    }
    *scale = amax / 127.0f;
    const float inv = 127.0f / amax;
    for (int j = 0; j < n_in; j++) {
        float v = nearbyintf(x[j] * inv);
        q[j] = (signed char)(v > 127.0f ? 127 : v < -127.0f ? -127 : (int)v);
    }
}

void qlinear_quant_fp8_with(unsigned char *q, float s, const float *x, int n_in) {
    for (int j = 0; j < n_in; j++) q[j] = fp8_e4m3_from_float_fast(x[j] / s);
}

void qlinear_quant_fp8(unsigned char *q, float *scale, const float *x, int n_in) {
    *scale = qlinear_fp8_tensor_scale(x, n_in, 1, n_in);
    qlinear_quant_fp8_with(q, *scale, x, n_in);
}

float qlinear_fp8_tensor_scale(const float *x, int ldx, int n, int n_in) {
    float amax = 0;
    for (int t = 0; t < n; t++)
        for (int j = 0; j < n_in; j++) amax = fmaxf(amax, fabsf(x[(size_t)t * ldx + j]));
    return fmaxf(amax / 448.0f, 1.0f / (448.0f * 512.0f));
}

/* ---- building ---- */

static float part_scale(const qweight *p, int r, int g) {
    return p->n_scales == 1 ? p->scales[0] : p->scales[(size_t)r * (p->n_in / p->group_size) + g];
}

static int check_parts(const qweight *const *parts, int n_parts, linear_format *kind, int *n_out) {
    if (n_parts < 1) return err_set(ERR_INPUT, "a quantized linear needs at least one weight");
    const qweight *a = parts[0];
    *n_out = 0;
    for (int i = 0; i < n_parts; i++) {
        const qweight *p = parts[i];
        if (!p->codes || !p->scales || p->n_out < 1 || p->n_in < 1 || p->group_size < 1 || p->n_in % p->group_size)
            return err_set(ERR_INPUT, "quantized weight %d of the stack is empty or malformed ([%d, %d], group %d)", i,
                           p->n_out, p->n_in, p->group_size);
        if (p->type != a->type || p->bits != a->bits || p->act != a->act || p->n_in != a->n_in ||
            p->group_size != a->group_size)
            return err_set(ERR_INPUT, "the stacked quantized weights differ (weight %d: type %d, %d bits, activations %d, "
                           "%d inputs, group %d; weight 0: type %d, %d bits, activations %d, %d inputs, group %d); "
                           "fused projections (q/k/v, gate/up) must be quantized alike", i, (int)p->type, p->bits,
                           (int)p->act, p->n_in, p->group_size, (int)a->type, a->bits, (int)a->act, a->n_in,
                           a->group_size);
        if (!p->mins != !a->mins)
            return err_set(ERR_INPUT, "the stacked quantized weights differ: weight %d %s float minimums, weight 0 %s; "
                           "fused projections (q/k/v, gate/up) must be quantized alike", i, p->mins ? "has" : "has no",
                           a->mins ? "has them" : "has none");
        if (!p->g_idx != !a->g_idx || (p->g_idx && memcmp(p->g_idx, a->g_idx, sizeof(int32_t) * (size_t)a->n_in)))
            return err_set(ERR_INPUT, "the stacked quantized weights group their columns differently (weight %d: act "
                           "order %s, weight 0: %s); fused projections (q/k/v, gate/up) read the same input and must "
                           "share one column order", i, p->g_idx ? "g_idx" : "none", a->g_idx ? "g_idx" : "none");
        *n_out += p->n_out;
    }
    if (a->type == QW_INT && a->act == QA_INT8) *kind = LINEAR_QINT8;
    else if (a->type == QW_INT && a->act == QA_NONE) *kind = LINEAR_QWINT;
    else if (a->type == QW_FP8 && (a->act == QA_NONE || a->act == QA_FP8 || a->act == QA_FP8_TENSOR)) *kind = LINEAR_QFP8;
    else
        return err_set(ERR_INPUT, "%s weights with %s activations are not supported; use int8 or no activation "
                       "quantization with integer weights, fp8 or none with FP8 weights",
                       a->type == QW_FP8 ? "FP8" : "integer", a->act == QA_INT8 ? "int8" : "fp8");
    if (a->type == QW_FP8)
        for (int i = 0; i < n_parts; i++)
            for (size_t j = 0; j < (size_t)parts[i]->n_out * a->n_in; j++)
                if ((parts[i]->codes[j] & 0x7F) == 0x7F)
                    return err_set(ERR_INPUT, "FP8 weight %d of the stack holds a NaN code at row %zu, column %zu; a "
                                   "weight that is not a number cannot run (re-quantize the model)", i,
                                   j / (size_t)a->n_in, j % (size_t)a->n_in);
    if (a->mins && (a->type != QW_INT || a->act != QA_NONE))
        return err_set(ERR_INPUT, "float minimums (GGUF Q4_1) run with fp32 activations only; quantize such weights "
                       "with activations: none");
    if (a->type == QW_INT && (a->bits < 2 || a->bits > 8))
        return err_set(ERR_INPUT, "integer weights of %d bits; 2 to 8 are supported", a->bits);
    return 0;
}

/* The input column of payload column k. */
static inline int col(const struct qlinear *q, int k) { return q->perm ? q->perm[k] : k; }

/* Act order: the payload's columns sorted by group (stable), every group group_size columns
 * (qweight_set_g_idx checked it). 0 or -1. */
static int build_perm(struct qlinear *q, const int32_t *g_idx) {
    const int G = q->group_size;
    int *fill = calloc((size_t)q->n_groups, sizeof(int));
    q->perm = malloc(sizeof(int32_t) * (size_t)q->n_in);
    if (!fill || !q->perm) {
        free(fill);
        return err_set(ERR_NOMEM, "cannot allocate the column order of a quantized linear");
    }
    for (int j = 0; j < q->n_in; j++) {
        const int g = g_idx[j];
        if (g < 0 || g >= q->n_groups || fill[g] >= G) {
            free(fill);
            return err_set(ERR_INPUT, "g_idx[%d] = %d: not %d groups of %d columns", j, g, q->n_groups, G);
        }
        q->perm[g * G + fill[g]++] = j;
    }
    free(fill);
    return 0;
}

static int build_int8(struct qlinear *q, const qweight *const *parts, int n_parts) {
    const int G = q->group_size, ng = q->n_groups, c = 1 << (q->bits - 1);
    q->n_out16 = (q->n_out + 15) & ~15;
    q->g4 = (G + 3) & ~3;
    q->k4 = ng * q->g4;
    const size_t nb = (size_t)q->n_out16 / 16;
    q->w8 = calloc(nb * (size_t)q->k4 * 16, 1);
    q->rowsum = calloc(nb * ng * 16, sizeof(int32_t));
    q->scales = calloc(nb * ng * 16, sizeof(float));
    q->zc = q->asym ? calloc(nb * ng * 16, sizeof(int32_t)) : NULL;
    if (!q->w8 || !q->rowsum || !q->scales || (q->asym && !q->zc)) return err_set(ERR_NOMEM, "cannot allocate an int8 linear");
    for (int i = 0, o = 0; i < n_parts; i++)
        for (int r = 0; r < parts[i]->n_out; r++, o++) {
            const qweight *p = parts[i];
            const size_t blk = (size_t)(o / 16), lane = (size_t)(o % 16);
            for (int g = 0; g < ng; g++) {
                const size_t gi = (blk * ng + g) * 16 + lane;
                int32_t sum = 0;
                for (int j = 0; j < G; j++) {
                    const int k = g * q->g4 + j, v = (int)p->codes[(size_t)r * q->n_in + col(q, g * G + j)] - c;
                    q->w8[(blk * (q->k4 / 4) + k / 4) * 64 + lane * 4 + k % 4] = (int8_t)v;
                    sum += v;
                }
                q->rowsum[gi] = sum;
                q->scales[gi] = part_scale(p, r, g);
                if (q->zc) q->zc[gi] = qweight_zero(p, r, g) - c;
            }
        }
    return 0;
}

/* The fp16 copy of x [n] when every value is an fp16 number (exactly), else NULL (no error). */
static uint16_t *half_copy(const float *x, size_t n) {
    uint16_t *h = malloc(n * sizeof(uint16_t));
    for (size_t i = 0; h && i < n; i++) {
        uint32_t b;
        memcpy(&b, &x[i], 4);
        const uint32_t sign = (b >> 16) & 0x8000, e = (b >> 23) & 255, m = b & 0x7FFFFF;
        uint32_t v;
        if (!(b & 0x7FFFFFFF)) v = sign;                                       /* zero */
        else if (e >= 113 && e <= 142 && !(m & 0x1FFF)) v = sign | (e - 112) << 10 | m >> 13; /* normal */
        else if (e >= 103 && e < 113 && !((m | 0x800000) & ((1u << (126 - e)) - 1)))
            v = sign | (m | 0x800000) >> (126 - e);                            /* subnormal half */
        else {
            free(h);
            return NULL;
        }
        h[i] = (uint16_t)v;
    }
    return h;
}

static int build_float(struct qlinear *q, const qweight *const *parts, int n_parts) {
    const int ng = q->n_groups, n_in = q->n_in, G = q->group_size;
    const int nib = q->kind == LINEAR_QWINT && q->bits <= 4;
    q->scales = malloc((size_t)q->n_out * ng * sizeof(float));
    q->n_chunks = qlinear_k32(q) / QL_CHUNK;
    q->chunk_bytes = nib ? 16 : 32;
    const size_t n_rb = (size_t)(q->n_out + QL_RB - 1) / QL_RB;
    q->wq = calloc(n_rb * QL_RB * q->n_chunks * q->chunk_bytes, 1);
    q->zeros = q->asym ? malloc((size_t)q->n_out * ng) : NULL;
    q->mins = parts[0]->mins ? malloc((size_t)q->n_out * ng * sizeof(float)) : NULL;
    if (!q->scales || !q->wq || (q->asym && !q->zeros) || (parts[0]->mins && !q->mins))
        return err_set(ERR_NOMEM, "cannot allocate a quantized linear");
    q->simd = G % 16 == 0 || ng == 1;
    /* the bf16 GEMV's case (linear_wint_bf16.c): symmetric codes of <= 4 bits, whole chunks per group */
    const int bf = nib && !q->asym && !q->mins && (G % QL_CHUNK == 0 || ng == 1);
    if (bf && !(q->bscales = calloc(n_rb * QL_RB * ng, sizeof(float))))
        return err_set(ERR_NOMEM, "cannot allocate a quantized linear");
    for (int i = 0, o = 0; i < n_parts; i++)
        for (int r = 0; r < parts[i]->n_out; r++, o++) {
            const qweight *p = parts[i];
            const uint8_t *src = p->codes + (size_t)r * n_in;
            for (int g = 0; g < ng; g++) {
                const float sc = part_scale(p, r, g);
                q->scales[(size_t)o * ng + g] = sc;
                if (q->bscales) q->bscales[((size_t)(o / QL_RB) * ng + g) * QL_RB + o % QL_RB] = sc;
                /* FP8 SIMD decoding gives value / 256 (half precision) and multiplies by scale * 256 */
                if (q->kind == LINEAR_QFP8 && !isfinite(sc * 256.0f)) q->simd = 0;
                if (q->zeros) q->zeros[(size_t)o * ng + g] = (uint8_t)qweight_zero(p, r, g);
                if (q->mins) q->mins[(size_t)o * ng + g] = p->mins[(size_t)r * ng + g];
            }
            for (int j = 0; j < n_in; j++) {
                const uint8_t v = src[col(q, j)];
                uint8_t *ch = (uint8_t *)ql_chunk(q, o, j >> 5);
                if (!nib) ch[j & 31] = v;
                else ch[j & 15] |= (uint8_t)(v << ((j & 16) ? 4 : 0));
            }
        }
    /* fp16 scales and minimums when they all are fp16 numbers: half the bytes for the GEMV */
    const size_t ns = (size_t)q->n_out * ng;
    uint16_t *s16 = half_copy(q->scales, ns), *m16 = q->mins ? half_copy(q->mins, ns) : NULL;
    if (s16 && (!q->mins || m16)) {
        free(q->scales), free(q->mins);
        q->scales = NULL, q->mins = NULL, q->scales16 = s16, q->mins16 = m16;
        if (q->bscales) { /* fp16 numbers all (padding rows 0): the bf16 GEMV reads them in fp16 */
            q->bscales16 = half_copy(q->bscales, n_rb * QL_RB * ng);
            if (q->bscales16) free(q->bscales), q->bscales = NULL;
        }
    } else {
        free(s16), free(m16);
    }
    return 0;
}

int qlinear_build(qlinear **out, const qweight *const *parts, int n_parts) {
    *out = NULL;
    linear_format kind = LINEAR_F32;
    int n_out = 0;
    if (check_parts(parts, n_parts, &kind, &n_out)) return -1;
    struct qlinear *q = xcalloc(1, sizeof *q);
    if (!q) return -1;
    const qweight *a = parts[0];
    *q = (struct qlinear){.kind = kind, .type = a->type, .bits = a->bits, .act = a->act, .n_out = n_out, .n_in = a->n_in,
                          .group_size = a->group_size, .n_groups = a->n_in / a->group_size};
    for (int i = 0; i < n_parts; i++)
        for (int r = 0; a->type == QW_INT && !q->asym && parts[i]->zeros && r < parts[i]->n_out; r++)
            for (int g = 0; g < q->n_groups; g++)
                if (qweight_zero(parts[i], r, g) != 1 << (a->bits - 1)) q->asym = 1;
    int rc = a->g_idx ? build_perm(q, a->g_idx) : 0;
    if (!rc) rc = kind == LINEAR_QINT8 ? build_int8(q, parts, n_parts) : build_float(q, parts, n_parts);
    if (rc) {
        qlinear_free(q);
        return -1;
    }
    *out = q;
    return 0;
}

void qlinear_free(qlinear *q) {
    if (!q) return;
    free(q->w8), free(q->rowsum), free(q->zc), free(q->wq), free(q->zeros), free(q->scales), free(q->perm), free(q->mins);
    free(q->scales16), free(q->mins16), free(q->bscales), free(q->bscales16);
    free(q);
}

linear linear_qlinear(const qlinear *q, const float *b) {
    linear l = {.format = q->kind, .n_out = q->n_out, .n_in = q->n_in, .w = NULL, .b = b, .q = q};
    return l;
}

size_t qlinear_bytes(const qlinear *q) {
    size_t b = sizeof *q + (q->perm ? sizeof(int32_t) * (size_t)q->n_in : 0);
    if (q->kind == LINEAR_QINT8) {
        const size_t ng = (size_t)q->n_out16 * q->n_groups;
        b += (size_t)q->n_out16 * q->k4 + ng * (sizeof(int32_t) + sizeof(float)) + (q->zc ? ng * sizeof(int32_t) : 0);
    } else {
        const size_t ng = (size_t)q->n_out * q->n_groups;
        const size_t sz = q->scales16 ? sizeof(uint16_t) : sizeof(float);
        b += ng * sz + (q->zeros ? ng : 0) + (ql_has_mins(q) ? ng * sz : 0) +
             (ql_has_bscales(q) ? (size_t)(q->n_out + QL_RB - 1) / QL_RB * QL_RB * q->n_groups * (q->bscales16 ? 2 : 4) : 0) +
             (size_t)(q->n_out + QL_RB - 1) / QL_RB * QL_RB * q->n_chunks * q->chunk_bytes;
    }
    return b;
}

int qlinear_threads(int n, int n_out, int n_in, size_t bytes) {
    const int a = kernels_threads_for((double)n * n_out * n_in, THR_GEMM_MACS);
    const int b = kernels_threads_for((double)bytes / 4, THR_GEMV_FLOATS);
    return a > b ? a : b;
}

/* ---- float kinds: the fused GEMV (few tokens) or panels of dequantized rows times sgemm ---- */

/* Rows per dequantized panel: each sgemm call has work enough, and the panel (64 x n_in floats)
 * stays in L2 while the tokens read it. */
#define QL_PANEL 64

/* The kernels of a float kind: the family in use where q->simd allows it, else portable. */
static void float_kernels(const struct qlinear *q, qlinear_dequant_fn *dequant, qlinear_gemv_fn *gemv) {
    const int fp8 = q->kind == LINEAR_QFP8;
    *dequant = fp8 ? qfp8_dequant_portable : qwint_dequant_portable;
    *gemv = fp8 ? qfp8_gemv_portable : qwint_gemv_portable;
#if defined(__x86_64__)
    const qlinear_isa_kind isa = q->simd ? qlinear_isa() : QISA_PORTABLE;
    if (isa >= QISA_AVX512) {
        *dequant = fp8 ? qfp8_dequant_avx512 : qwint_dequant_avx512;
        *gemv = fp8 ? qfp8_gemv_avx512 : isa == QISA_AVX512BF16 && ql_has_bscales(q) ? qwint_gemv_bf16 : qwint_gemv_avx512;
    } else if (isa == QISA_AVX2) {
        *dequant = fp8 ? qfp8_dequant_avx2 : qwint_dequant_avx2;
        *gemv = fp8 ? qfp8_gemv_avx2 : qwint_gemv_avx2;
    }
#endif
}

const float *qlinear_input(const float *x, int ldx, const struct qlinear *q, int n, int pad, int *ldp) {
    const int K = q->n_in, W = pad ? qlinear_k32(q) : K;
    *ldp = ldx;
    if (W == K && !q->perm) return x;
    float *p = qlinear_scratch(QL_SLOT_XPAD, (size_t)n * W * sizeof(float));
    if (!p) return NULL;
    for (int t = 0; t < n; t++) {
        const float *xt = x + (size_t)t * ldx;
        float *pt = p + (size_t)t * W;
        if (q->perm)
            for (int k = 0; k < K; k++) pt[k] = xt[q->perm[k]];
        else
            memcpy(pt, xt, sizeof(float) * K);
        memset(pt + K, 0, sizeof(float) * (W - K));
    }
    *ldp = W;
    return p;
}

void qlinear_dequant_chunks(float *w, int ldw, const struct qlinear *q, int o0, int o1, ql_chunk_fn chunk) {
    for (int o = o0; o < o1; o++)
        for (int c = 0; c < q->n_chunks; c++) chunk(w + (size_t)(o - o0) * ldw + (size_t)c * QL_CHUNK, q, o, c);
}

void qlinear_gemv_chunks(float *out, int ldo, const float *x, int ldx, const struct qlinear *q, const float *b, int n,
                         int o0, int o1, int accumulate, ql_chunk_fn chunk) {
    float w[QL_CHUNK], acc[QLINEAR_GEMV_ROWS][QL_CHUNK]; /* lanes summed at the end */
    for (int o = o0; o < o1; o++) {
        memset(acc, 0, sizeof acc);
        for (int c = 0; c < q->n_chunks; c++) {
            chunk(w, q, o, c);
            for (int t = 0; t < n; t++) {
                const float *xt = x + (size_t)t * ldx + (size_t)c * QL_CHUNK;
                for (int i = 0; i < QL_CHUNK; i++) acc[t][i] += xt[i] * w[i];
            }
        }
        for (int t = 0; t < n; t++) {
            float y = 0;
            for (int i = 0; i < QL_CHUNK; i++) y += acc[t][i];
            qlinear_store(out + (size_t)t * ldo + o, y, b, o, accumulate);
        }
    }
}

/* Rows [o0, o1) in panels of QL_PANEL dequantized rows (thread-local) times sgemm. */
static int panel_rows(float *out, int ldo, const float *x, int ldx, const struct qlinear *q, const float *b, int n,
                      int o0, int o1, int accumulate) {
    const int K32 = qlinear_k32(q);
    float *w = qlinear_scratch(QL_SLOT_PANEL, (size_t)QL_PANEL * K32 * sizeof(float));
    if (!w) return -1;
    qlinear_dequant_fn dequant;
    qlinear_gemv_fn gemv;
    float_kernels(q, &dequant, &gemv);
    for (int p0 = o0; p0 < o1; p0 += QL_PANEL) {
        const int p1 = p0 + QL_PANEL < o1 ? p0 + QL_PANEL : o1;
        dequant(w, K32, q, p0, p1);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, p1 - p0, q->n_in, 1.0f, x, ldx, w, K32,
                    accumulate ? 1.0f : 0.0f, out + p0, ldo);
        for (int i = 0; b && i < n; i++)
            for (int o = p0; o < p1; o++) out[(size_t)i * ldo + o] += b[o];
    }
    return 0;
}

int qlinear_float_rows(float *out, int ldo, const float *x, int ldx, const struct qlinear *q, const float *b, int n,
                       int o0, int o1, int accumulate) {
    if (n > QLINEAR_GEMV_ROWS) return panel_rows(out, ldo, x, ldx, q, b, n, o0, o1, accumulate);
    qlinear_dequant_fn dequant;
    qlinear_gemv_fn gemv;
    float_kernels(q, &dequant, &gemv);
    gemv(out, ldo, x, ldx, q, b, n, o0, o1, accumulate);
    return 0;
}

int qlinear_float_forward(float *out, int ldo, const float *x, int ldx, const struct qlinear *q, const float *b, int n,
                          int accumulate, int x_ready) {
    if (n <= 0) return 0;
    const int gemv = n <= QLINEAR_GEMV_ROWS;
    if (!x_ready && !(x = qlinear_input(x, ldx, q, n, gemv, &ldx))) return -1;
    /* threads take whole units: 16 rows streamed, or whole panels */
    const int unit = gemv ? 16 : QL_PANEL, n_units = (q->n_out + unit - 1) / unit;
    int nt = qlinear_threads(n, q->n_out, q->n_in, qlinear_bytes(q));
    if (nt > n_units) nt = n_units;
    int failed = 0;
#pragma omp parallel num_threads(nt) if (nt > 1) reduction(| : failed)
    {
        const int t = omp_get_thread_num(), cnt = omp_get_num_threads();
        const int u0 = (int)((long)n_units * t / cnt), u1 = (int)((long)n_units * (t + 1) / cnt);
        const int o0 = u0 * unit, o1 = u1 * unit < q->n_out ? u1 * unit : q->n_out;
        if (o1 > o0 && qlinear_float_rows(out, ldo, x, ldx, q, b, n, o0, o1, accumulate)) failed = 1;
    }
    return failed ? err_set(ERR_NOMEM, "cannot allocate the scratch of a quantized linear") : 0;
}

int qlinear_bf16_acts(const linear *l, int n) {
    const struct qlinear *q = l->q;
    return l->format == LINEAR_QWINT && q && ql_has_bscales(q) && q->simd && n > 0 && n <= QLINEAR_GEMV_ROWS &&
           qlinear_isa() == QISA_AVX512BF16;
}

int qlinear_col_align(const linear *l) {
    (void)l;
    return 16;
}

int qlinear_forward_cols(float *out, int ldo, const float *x, int ldx, const linear *l, int n, int j0, int j1,
                         int accumulate) {
    const struct qlinear *q = l->q;
    if (n > QLINEAR_GEMV_ROWS || j0 % 16 || (j1 % 16 && j1 != q->n_out) || j0 < 0 || j1 > q->n_out)
        return err_set(ERR_INTERNAL, "qlinear_forward_cols: %d tokens, rows [%d, %d) of %d", n, j0, j1, q->n_out);
    if (n <= 0 || j1 <= j0) return 0;
    switch (q->kind) {
    case LINEAR_QINT8: return qint8_forward_rows(out, ldo, x, ldx, q, l->b, n, j0, j1, accumulate);
    case LINEAR_QFP8:
        if (q->act != QA_NONE) {
            const float *xd = qfp8_acts(x, ldx, q, n);
            return xd ? qlinear_float_rows(out, ldo, xd, qlinear_k32(q), q, l->b, n, j0, j1, accumulate) : -1;
        }
        /* fall through */
    default:
        if (!(x = qlinear_input(x, ldx, q, n, 1, &ldx))) return -1;
        return qlinear_float_rows(out, ldo, x, ldx, q, l->b, n, j0, j1, accumulate);
    }
}

/* ---- reference ---- */

void qlinear_forward_ref(float *out, int ldo, const float *x, int ldx, const qweight *const *parts, int n_parts,
                         const float *b, int n, int accumulate) {
    const qweight *a = parts[0];
    const int n_in = a->n_in, G = a->group_size, ng = n_in / G;
    signed char *xq = malloc((size_t)n_in);
    unsigned char *xf = malloc((size_t)n_in);
    float *w = NULL;
    size_t wcap = 0;
    const float s_all = a->act == QA_FP8_TENSOR ? qlinear_fp8_tensor_scale(x, ldx, n, n_in) : 1;
    for (int t = 0; t < n; t++) {
        const float *xt = x + (size_t)t * ldx;
        float st = 1;
        if (a->act == QA_INT8) qlinear_quant_int8(xq, &st, xt, n_in);
        else if (a->act == QA_FP8) qlinear_quant_fp8(xf, &st, xt, n_in);
        else if (a->act == QA_FP8_TENSOR) qlinear_quant_fp8_with(xf, st = s_all, xt, n_in);
        for (int i = 0, o = 0; i < n_parts; i++) {
            const qweight *p = parts[i];
            if (a->act != QA_INT8 && wcap < (size_t)p->n_out * n_in) {
                free(w);
                wcap = (size_t)p->n_out * n_in;
                w = malloc(wcap * sizeof(float));
            }
            if (a->act != QA_INT8) qweight_dequantize(w, p);
            for (int r = 0; r < p->n_out; r++, o++) {
                float y;
                if (a->act == QA_INT8) { /* exact integer sums per group, combined in group order */
                    const int c = 1 << (p->bits - 1);
                    float acc = 0;
                    for (int g = 0; g < ng; g++) {
                        int32_t isum = 0, xs = 0;
                        for (int j = 0; j < n_in; j++) /* the group's columns (in order without act order) */
                            if (qweight_group(p, j) == g) {
                                isum += (int32_t)xq[j] * ((int)p->codes[(size_t)r * n_in + j] - c);
                                xs += xq[j];
                            }
                        isum -= (qweight_zero(p, r, g) - c) * xs;
                        acc = fmaf(part_scale(p, r, g), (float)isum, acc);
                    }
                    y = st * acc;
                } else {
                    double s = 0;
                    for (int j = 0; j < n_in; j++) {
                        const double xv = a->act == QA_NONE ? xt[j] : (double)st * fp8_e4m3_to_float(xf[j]);
                        s += xv * w[(size_t)r * n_in + j];
                    }
                    y = (float)s;
                }
                qlinear_store(out + (size_t)t * ldo + o, y, b, o, accumulate);
            }
        }
    }
    free(xq), free(xf), free(w);
}
