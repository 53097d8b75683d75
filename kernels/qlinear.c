/* qlinear.c: building the payloads of quantized linears from qweights, the reference forward, the
 * per-token activation quantizations and the run-time choice of kernel family (see qlinear.h). */
#include "kernels/qlinear.h"

#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "kernels/qlinear_internal.h"
#include "kernels/threads.h"

/* ---- kernel family ---- */

static int isa_cap = -1; /* the cap (SMELT_QKERNEL or qlinear_set_isa); -1 until first use */

static qlinear_isa_kind isa_cpu(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni"))
        return QISA_AVX512;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        return QISA_AVX2;
#endif
    return QISA_PORTABLE;
}

const char *qlinear_isa_name(qlinear_isa_kind k) {
    switch (k) {
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
        isa_cap = QISA_AVX512;
        if (e && !strcmp(e, "portable")) isa_cap = QISA_PORTABLE;
        else if (e && !strcmp(e, "avx2")) isa_cap = QISA_AVX2;
    }
    return (qlinear_isa_kind)(isa_cap < cpu ? isa_cap : cpu);
}

/* ---- scratch ---- */

#define QL_SCRATCH_SLOTS 4
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

void qlinear_quant_fp8(unsigned char *q, float *scale, const float *x, int n_in) {
    float amax = 0;
    for (int j = 0; j < n_in; j++) amax = fmaxf(amax, fabsf(x[j]));
    const float s = fmaxf(amax / 448.0f, 1.0f / (448.0f * 512.0f));
    *scale = s;
    for (int j = 0; j < n_in; j++) q[j] = fp8_e4m3_from_float(x[j] / s);
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
        *n_out += p->n_out;
    }
    if (a->type == QW_INT && a->act == QA_INT8) *kind = LINEAR_QINT8;
    else if (a->type == QW_INT && a->act == QA_NONE) *kind = LINEAR_QWINT;
    else if (a->type == QW_FP8 && (a->act == QA_NONE || a->act == QA_FP8)) *kind = LINEAR_QFP8;
    else
        return err_set(ERR_INPUT, "%s weights with %s activations are not supported; use int8 or no activation "
                       "quantization with integer weights, fp8 or none with FP8 weights",
                       a->type == QW_FP8 ? "FP8" : "integer", a->act == QA_INT8 ? "int8" : "fp8");
    if (a->type == QW_INT && (a->bits < 2 || a->bits > 8))
        return err_set(ERR_INPUT, "integer weights of %d bits; 2 to 8 are supported", a->bits);
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
                    const int k = g * q->g4 + j, v = (int)p->codes[(size_t)r * q->n_in + g * G + j] - c;
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

static int build_float(struct qlinear *q, const qweight *const *parts, int n_parts) {
    const int ng = q->n_groups, n_in = q->n_in;
    q->scales = malloc((size_t)q->n_out * ng * sizeof(float));
    if (!q->scales) return err_set(ERR_NOMEM, "cannot allocate the scales of a quantized linear");
    if (q->kind == LINEAR_QFP8) {
        q->codes = malloc((size_t)q->n_out * n_in);
        if (!q->codes) return err_set(ERR_NOMEM, "cannot allocate an FP8 linear");
    } else {
        const size_t chunks = (size_t)(n_in + 31) / 32;
        q->row_bytes = chunks * (q->bits <= 4 ? 16 : 32);
        q->wq = calloc((size_t)q->n_out * q->row_bytes, 1);
        q->zeros = q->asym ? malloc((size_t)q->n_out * ng) : NULL;
        if (!q->wq || (q->asym && !q->zeros)) return err_set(ERR_NOMEM, "cannot allocate an integer linear");
    }
    for (int i = 0, o = 0; i < n_parts; i++)
        for (int r = 0; r < parts[i]->n_out; r++, o++) {
            const qweight *p = parts[i];
            const uint8_t *src = p->codes + (size_t)r * n_in;
            for (int g = 0; g < ng; g++) {
                q->scales[(size_t)o * ng + g] = part_scale(p, r, g);
                if (q->zeros) q->zeros[(size_t)o * ng + g] = (uint8_t)qweight_zero(p, r, g);
            }
            if (q->codes) {
                memcpy(q->codes + (size_t)o * n_in, src, (size_t)n_in);
                continue;
            }
            uint8_t *row = q->wq + (size_t)o * q->row_bytes;
            for (int j = 0; j < n_in; j++) {
                if (q->bits > 4) row[j] = src[j];
                else row[(size_t)(j >> 5) * 16 + (j & 15)] |= (uint8_t)(src[j] << ((j & 16) ? 4 : 0));
            }
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
    int rc = kind == LINEAR_QINT8 ? build_int8(q, parts, n_parts) : build_float(q, parts, n_parts);
    if (rc) {
        qlinear_free(q);
        return -1;
    }
    *out = q;
    return 0;
}

void qlinear_free(qlinear *q) {
    if (!q) return;
    free(q->w8), free(q->rowsum), free(q->zc), free(q->wq), free(q->zeros), free(q->codes), free(q->scales);
    free(q);
}

linear linear_qlinear(const qlinear *q, const float *b) {
    linear l = {.format = q->kind, .n_out = q->n_out, .n_in = q->n_in, .w = NULL, .b = b, .q = q};
    return l;
}

size_t qlinear_bytes(const qlinear *q) {
    size_t b = sizeof *q;
    if (q->kind == LINEAR_QINT8) {
        const size_t ng = (size_t)q->n_out16 * q->n_groups;
        b += (size_t)q->n_out16 * q->k4 + ng * (sizeof(int32_t) + sizeof(float)) + (q->zc ? ng * sizeof(int32_t) : 0);
    } else {
        const size_t ng = (size_t)q->n_out * q->n_groups;
        b += ng * sizeof(float) + (q->zeros ? ng : 0);
        b += q->codes ? (size_t)q->n_out * q->n_in : (size_t)q->n_out * q->row_bytes;
    }
    return b;
}

/* ---- float kinds: products over panels of dequantized rows ---- */

int qlinear_panel_forward(float *out, int ldo, const float *x, int ldx, const struct qlinear *q, const float *b, int n,
                          int accumulate, qlinear_dequant_fn dequant) {
    if (n <= 0) return 0;
    /* A few tokens (decode): panels of 16 rows, whose dequantized floats stay in L1/L2 while every
     * token reads them; more tokens: 64 rows, so each sgemm call has work enough. */
    const int P = n < 8 ? 16 : 64, n_panels = (q->n_out + P - 1) / P;
    const int T = omp_in_parallel() ? 1 : kernels_threads();
    const int nt = (double)n * q->n_out * q->n_in >= 65536.0 && n_panels > 1 ? (T < n_panels ? T : n_panels) : 1;
    int failed = 0;
#pragma omp parallel num_threads(nt) if (nt > 1) reduction(| : failed)
    {
        const int t = omp_get_thread_num(), cnt = omp_get_num_threads();
        const int p0 = (int)((long)n_panels * t / cnt), p1 = (int)((long)n_panels * (t + 1) / cnt);
        float *w = p1 > p0 ? qlinear_scratch(3, (size_t)P * q->n_in * sizeof(float)) : NULL;
        if (p1 > p0 && !w) failed = 1;
        for (int p = p0; w && p < p1; p++) {
            const int o0 = p * P, o1 = o0 + P < q->n_out ? o0 + P : q->n_out;
            dequant(w, q, o0, o1);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, o1 - o0, q->n_in, 1.0f, x, ldx, w, q->n_in,
                        accumulate ? 1.0f : 0.0f, out + o0, ldo);
            for (int i = 0; b && i < n; i++)
                for (int o = o0; o < o1; o++) out[(size_t)i * ldo + o] += b[o];
        }
    }
    return failed ? err_set(ERR_NOMEM, "cannot allocate the dequantization panels of a quantized linear") : 0;
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
    for (int t = 0; t < n; t++) {
        const float *xt = x + (size_t)t * ldx;
        float st = 1;
        if (a->act == QA_INT8) qlinear_quant_int8(xq, &st, xt, n_in);
        else if (a->act == QA_FP8) qlinear_quant_fp8(xf, &st, xt, n_in);
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
                        for (int j = g * G; j < (g + 1) * G; j++) {
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
                        const double xv = a->act == QA_FP8 ? (double)st * fp8_e4m3_to_float(xf[j]) : xt[j];
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
