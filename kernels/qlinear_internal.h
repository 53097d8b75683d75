/* qlinear_internal.h: the payload layouts of quantized linears, shared by qlinear.c (building) and
 * the kernel files (linear_int8.c, linear_wint.c, linear_fp8.c). Nobody else reads them. */
#ifndef SMELT_KERNELS_QLINEAR_INTERNAL_H
#define SMELT_KERNELS_QLINEAR_INTERNAL_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "kernels/qlinear.h"

struct qlinear {
    linear_format kind; /* LINEAR_QINT8, LINEAR_QWINT or LINEAR_QFP8 */
    qw_type type;
    int bits;
    qa_type act;
    int n_out, n_in, group_size, n_groups;
    int asym;           /* some group has a zero point other than 2^(bits-1) */
    int32_t *perm;      /* [n_in] act order: payload column k holds input column perm[k] (the columns
                         * sorted by group, so that groups are contiguous below), or NULL */

    /* LINEAR_QINT8: rows in blocks of 16 (n_out16 rows, the padding rows all zero), the reduction in
     * quads: each group is padded to g4 (a multiple of 4) columns of zeros, k4 = n_groups * g4.
     * Weight (row o, padded column k) = w8[((o / 16) * (k4 / 4) + k / 4) * 64 + (o % 16) * 4 + k % 4],
     * the signed code q - 2^(bits-1) (in [-128, 127]). Per group and row, [n_out16 / 16][n_groups][16]:
     * scales, rowsum (the sum of the group's w8, for VNNI's unsigned-activation trick) and zc
     * (zero - 2^(bits-1); NULL when every group is symmetric). */
    int n_out16, g4, k4;
    int8_t *w8;
    int32_t *rowsum, *zc;

    /* LINEAR_QWINT and LINEAR_QFP8: the codes in chunks of 32 columns: with integer codes of <= 4
     * bits a chunk is 16 bytes, byte i holding column i (low nibble) and column i + 16 (high
     * nibble), else 32 bytes, one code each (FP8: the E4M3 codes). Rows are interleaved in blocks of
     * QL_RB: block b holds, chunk by chunk, the chunk of each of its rows (ql_chunk), so that the
     * GEMV, which takes QL_RB rows at a time, reads the weights as one sequential stream (the
     * hardware prefetcher follows one stream, not four). The padding (columns past n_in, rows past
     * n_out in the last block) holds code 0. n_chunks chunks of chunk_bytes per row. */
    uint8_t *wq;
    int n_chunks, chunk_bytes;
    uint8_t *zeros;
    float *mins; /* LINEAR_QWINT with float minimums (w = scale * q + min): [n_out][n_groups], or NULL */
    /* LINEAR_QWINT and LINEAR_QFP8: when every scale (and minimum) is an fp16 number (GPTQ, GGUF), they
     * are kept as fp16 here instead (scales / mins NULL): the GEMV streams half the bytes for them */
    uint16_t *scales16, *mins16;

    /* LINEAR_QWINT and LINEAR_QFP8: scales [n_out][n_groups] (a per-tensor scale repeated per row);
     * LINEAR_QINT8: the blocked layout above. */
    float *scales;
    /* LINEAR_QWINT with symmetric codes of <= 4 bits and groups of whole chunks (or one per row): the
     * scales again, blocked as the codes are for the bf16 GEMV: [n_out / QL_RB][n_groups][QL_RB]
     * (padding rows 0), or NULL */
    float *bscales;
    /* the same in fp16 when every scale is an fp16 number (bscales then NULL): 2 bytes per group and
     * row streamed instead of 4 (a tenth of a W4 g32 weight's bytes) */
    uint16_t *bscales16;
    /* LINEAR_QWINT and LINEAR_QFP8: the SIMD kernels apply (every vector of 16 columns lies in one
     * group: group_size a multiple of 16 or one group per row; FP8: every scale times 256 finite). */
    int simd;
};

/* Columns of x the float kinds' SIMD kernels read per row: n_in rounded up to whole chunks (the
 * padding columns of x are zeros, those of the weights finite). */
#define QL_CHUNK 32
static inline int qlinear_k32(const struct qlinear *q) { return (q->n_in + QL_CHUNK - 1) / QL_CHUNK * QL_CHUNK; }

/* IEEE half -> float (exact). */
static inline float ql_half(uint16_t h) {
    const uint32_t sign = (uint32_t)(h >> 15) << 31, e = (h >> 10) & 31, m = h & 1023;
    uint32_t bits;
    if (e == 31) bits = sign | 0x7F800000u | m << 13;       /* inf, NaN */
    else if (e) bits = sign | (e + 112) << 23 | m << 13;     /* normal: rebias 15 -> 127 */
    else if (!m) bits = sign;                                /* zero */
    else {                                                   /* subnormal: m * 2^-24 */
        int sh = 0;
        uint32_t mm = m;
        while (!(mm & 1024)) mm <<= 1, sh++;
        bits = sign | (uint32_t)(113 - sh) << 23 | (mm & 1023) << 13;
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

/* Scale and minimum i ([n_out][n_groups] order) of a float kind's payload. */
static inline float ql_scale(const struct qlinear *q, size_t i) { return q->scales16 ? ql_half(q->scales16[i]) : q->scales[i]; }
static inline float ql_min(const struct qlinear *q, size_t i) {
    return q->mins16 ? ql_half(q->mins16[i]) : q->mins ? q->mins[i] : 0.0f;
}
static inline int ql_has_mins(const struct qlinear *q) { return q->mins || q->mins16; }
/* The bf16 GEMV's blocked scales exist (linear_wint_bf16.c's case). */
static inline int ql_has_bscales(const struct qlinear *q) { return q->bscales || q->bscales16; }

/* Rows interleaved per block of the float kinds' payload (above). */
#define QL_RB 4

/* The chunk_bytes bytes of chunk c (columns 32c .. 32c+31) of row o of a QWINT / QFP8 payload. */
static inline const uint8_t *ql_chunk(const struct qlinear *q, int o, int c) {
    return q->wq + (((size_t)(o / QL_RB) * q->n_chunks + c) * QL_RB + o % QL_RB) * q->chunk_bytes;
}

/* The code of row o, column j of a QWINT / QFP8 payload. */
static inline int ql_code(const struct qlinear *q, int o, int j) {
    const uint8_t *ch = ql_chunk(q, o, j >> 5);
    if (q->chunk_bytes == 16) {
        const uint8_t b = ch[j & 15];
        return (j & 16) ? b >> 4 : b & 15;
    }
    return ch[j & 31];
}

/* Thread-local scratch of at least `bytes` bytes (grown, contents not kept; owned by the calling
 * thread and reused by its next calls). NULL with ERR_NOMEM. Slots: 0-2 activations (codes,
 * scales, sums), 3 dequantized panels, 4 padded activations. */
#define QL_SLOT_PANEL 3
#define QL_SLOT_XPAD 4
#define QL_SLOT_BF16 5
void *qlinear_scratch(int slot, size_t bytes);

/* Threads of a quantized product of n tokens against an [n_out, n_in] weight of `bytes` bytes:
 * the multiply-adds (threads.h THR_GEMM_MACS) or, for a few tokens, the weight bytes streamed
 * (THR_GEMV_FLOATS per 4 bytes), whichever asks for more. */
int qlinear_threads(int n, int n_out, int n_in, size_t bytes);

/* Shared tail of every kernel: out = y (+ b), or out += y (+ b). */
static inline void qlinear_store(float *o, float y, const float *b, int j, int accumulate) {
    if (b) y += b[j];
    *o = accumulate ? *o + y : y;
}

/* Kernels of linear_int8.c for the CPU families (the caller picked one the CPU has). */
void qint8_rows_portable(float *out, int ldo, const int8_t *xq, const float *xs, const int32_t *xsum,
                         const struct qlinear *q, const float *b, int n, int rb0, int rb1, int accumulate);
void qint8_rows_avx2(float *out, int ldo, const int8_t *xq, const float *xs, const int32_t *xsum,
                     const struct qlinear *q, const float *b, int n, int rb0, int rb1, int accumulate);
void qint8_rows_avx512(float *out, int ldo, const int8_t *xq, const float *xs, const int32_t *xsum,
                       const struct qlinear *q, const float *b, int n, int rb0, int rb1, int accumulate);

/* Defines NAME(out, ldo, x, ldx, q, b, n, o0, o1, accumulate), the GEMV entry of a SIMD family
 * (qlinear_gemv_fn): the token count made a constant R, the rows in blocks of J = JOF(R), then one
 * at a time, each block computed by ROWS(out, ldo, x, ldx, q, b, R, o, J, accumulate, V) with V
 * the value of VARIANT (0..3) as a constant (always_inline: every (R, J, V) its own code). */
#define QL_GEMV_ENTRY(NAME, TARGET, ROWS, JOF, VARIANT)                                                   \
    TARGET static inline __attribute__((always_inline)) void NAME##_span(                                  \
        float *out, int ldo, const float *x, int ldx, const struct qlinear *q, const float *b, const int R, \
        int o0, int o1, int accumulate, const int v) {                                                   \
        const int J = JOF(R);                                                                           \
        int o = o0;                                                                                     \
        for (; o + J <= o1; o += J) ROWS(out, ldo, x, ldx, q, b, R, o, J, accumulate, v);                \
        for (; o < o1; o++) ROWS(out, ldo, x, ldx, q, b, R, o, 1, accumulate, v);                        \
    }                                                                                                   \
    TARGET void NAME(float *out, int ldo, const float *x, int ldx, const struct qlinear *q, const float *b, \
                     int n, int o0, int o1, int accumulate) {                                            \
        const int variant = VARIANT;                                                                    \
        switch (n) {                                                                                    \
            QL_GEMV_CASE_(NAME, 1) QL_GEMV_CASE_(NAME, 2) QL_GEMV_CASE_(NAME, 3) QL_GEMV_CASE_(NAME, 4)   \
            QL_GEMV_CASE_(NAME, 5) QL_GEMV_CASE_(NAME, 6) QL_GEMV_CASE_(NAME, 7)                         \
            default: QL_GEMV_CALL_(NAME, 8); break;                                                     \
        }                                                                                               \
    }
#define QL_GEMV_CALL_(NAME, R)                                                                            \
    (variant == 3   ? NAME##_span(out, ldo, x, ldx, q, b, R, o0, o1, accumulate, 3)                         \
     : variant == 2 ? NAME##_span(out, ldo, x, ldx, q, b, R, o0, o1, accumulate, 2)                         \
     : variant == 1 ? NAME##_span(out, ldo, x, ldx, q, b, R, o0, o1, accumulate, 1)                         \
                    : NAME##_span(out, ldo, x, ldx, q, b, R, o0, o1, accumulate, 0))
#define QL_GEMV_CASE_(NAME, R)                                                                            \
    case R: QL_GEMV_CALL_(NAME, R); break;
/* Rows per block: the accumulators of R tokens x J rows fit the registers (AVX2: 16 of 8 lanes,
 * AVX-512: 32 of 16 lanes). */
#define QL_J_AVX2(R) ((R) == 1 ? 4 : (R) == 2 ? 2 : 1)
#define QL_J_AVX512(R) ((R) <= 2 ? 4 : (R) <= 4 ? 2 : 1)
/* The QWINT kernels' variants: nibbles (codes of <= 4 bits) and float minimums. */
#define QL_V_NIB 1
#define QL_V_MIN 2
static inline int ql_wint_variant(const struct qlinear *q) {
    return (q->bits <= 4 ? QL_V_NIB : 0) | (ql_has_mins(q) ? QL_V_MIN : 0);
}

/* Targets of the SIMD families (functions compiled for them, chosen at run time). */
#define QL_AVX2 __attribute__((target("avx2,fma,f16c")))
#define QL_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,fma,f16c")))

#if defined(__x86_64__)
#include <immintrin.h>
/* The sum of the 8 lanes of v, in a fixed tree. */
QL_AVX2 static inline float ql_hsum8(__m256 v) {
    const __m128 h = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    const __m128 h2 = _mm_add_ps(h, _mm_movehl_ps(h, h));
    return _mm_cvtss_f32(_mm_add_ss(h2, _mm_movehdup_ps(h2)));
}
#endif

/* Loops over the tokens and rows of a GEMV kernel, unrolled whole so that the accumulators are
 * registers (GCC does not unroll at -O2 by itself). */
#define QL_UNROLL _Pragma("GCC unroll 8")


/* The int8 product of output rows [o0, o1) (o0 a multiple of 16; o1 too, or n_out) for n tokens on
 * the calling thread, the activations quantized into its scratch (linear_int8.c). 0 or -1. */
int qint8_forward_rows(float *out, int ldo, const float *x, int ldx, const struct qlinear *q, const float *b, int n,
                       int o0, int o1, int accumulate);
/* The FP8 activations of n tokens (q->act QA_FP8: a scale per token; QA_FP8_TENSOR: one for all),
 * dequantized (s * e4m3 value, one float each), in the payload's column order: [n][qlinear_k32(q)]
 * in the calling thread's scratch slot 0, the padding columns zero (linear_fp8.c). NULL with
 * ERR_NOMEM. */
const float *qfp8_acts(const float *x, int ldx, const struct qlinear *q, int n);

/* Float kinds (QWINT, QFP8), one function per kind and CPU family (the caller picked one the CPU
 * has; the SIMD ones only where q->simd):
 *   dequant: w [o1 - o0][ldw] = the dequantized rows o0 .. o1-1, columns 0 .. n_in-1 bitwise the
 *            floats qweight_dequantize gives (scale * value); SIMD ones may write up to
 *            qlinear_k32(q) columns, so ldw >= qlinear_k32(q).
 *   gemv:    out[t, o] (=, or += with accumulate) = x_t . w_o (+ b[o]) for the n <= QLINEAR_GEMV_ROWS
 *            tokens x [n, ldx] and the rows o in [o0, o1), each packed weight byte read once and
 *            decoded in registers to exactly the dequantized float; x has qlinear_k32(q) columns, the
 *            padding ones zero. Each output is a sum whose order depends on the family only (not on
 *            o0, o1 or n), so a split of the rows among threads changes no value. */
typedef void (*qlinear_dequant_fn)(float *w, int ldw, const struct qlinear *q, int o0, int o1);
typedef void (*qlinear_gemv_fn)(float *out, int ldo, const float *x, int ldx, const struct qlinear *q, const float *b,
                                int n, int o0, int o1, int accumulate);
/* The portable family works a chunk at a time: w[0..QL_CHUNK) = the dequantized weights of chunk c
 * of row o (0 past n_in), any group size; the loops over chunks are shared (qlinear.c). */
typedef void (*ql_chunk_fn)(float *w, const struct qlinear *q, int o, int c);
void qwint_chunk(float *w, const struct qlinear *q, int o, int c);
void qfp8_chunk(float *w, const struct qlinear *q, int o, int c);
void qlinear_dequant_chunks(float *w, int ldw, const struct qlinear *q, int o0, int o1, ql_chunk_fn chunk);
void qlinear_gemv_chunks(float *out, int ldo, const float *x, int ldx, const struct qlinear *q, const float *b, int n,
                         int o0, int o1, int accumulate, ql_chunk_fn chunk);
void qwint_dequant_portable(float *w, int ldw, const struct qlinear *q, int o0, int o1);
void qfp8_dequant_portable(float *w, int ldw, const struct qlinear *q, int o0, int o1);
void qwint_gemv_portable(float *out, int ldo, const float *x, int ldx, const struct qlinear *q, const float *b, int n,
                         int o0, int o1, int accumulate);
void qfp8_gemv_portable(float *out, int ldo, const float *x, int ldx, const struct qlinear *q, const float *b, int n,
                        int o0, int o1, int accumulate);
#if defined(__x86_64__) /* the SIMD families exist on x86-64 only */
void qwint_dequant_avx2(float *w, int ldw, const struct qlinear *q, int o0, int o1);
void qwint_dequant_avx512(float *w, int ldw, const struct qlinear *q, int o0, int o1);
void qwint_gemv_avx2(float *out, int ldo, const float *x, int ldx, const struct qlinear *q, const float *b, int n,
                     int o0, int o1, int accumulate);
void qwint_gemv_avx512(float *out, int ldo, const float *x, int ldx, const struct qlinear *q, const float *b, int n,
                       int o0, int o1, int accumulate);
/* The QWINT GEMV with bf16 activations (linear_wint_bf16.c; q->bscales set, the CPU has AVX512_BF16). */
void qwint_gemv_bf16(float *out, int ldo, const float *x, int ldx, const struct qlinear *q, const float *b, int n,
                     int o0, int o1, int accumulate);
void qfp8_dequant_avx2(float *w, int ldw, const struct qlinear *q, int o0, int o1);
void qfp8_dequant_avx512(float *w, int ldw, const struct qlinear *q, int o0, int o1);
void qfp8_gemv_avx2(float *out, int ldo, const float *x, int ldx, const struct qlinear *q, const float *b, int n,
                    int o0, int o1, int accumulate);
void qfp8_gemv_avx512(float *out, int ldo, const float *x, int ldx, const struct qlinear *q, const float *b, int n,
                      int o0, int o1, int accumulate);
#endif

/* The float product of n tokens x [n, ldx] (already the dequantized FP8 activations when the kind
 * quantizes them) and output rows [o0, o1) of q on the calling thread: the fused GEMV for up to
 * QLINEAR_GEMV_ROWS tokens where q->simd or the family is portable, else panels of dequantized rows
 * times sgemm (qlinear.c). 0 or -1 (ERR_NOMEM). */
int qlinear_float_rows(float *out, int ldo, const float *x, int ldx, const struct qlinear *q, const float *b, int n,
                       int o0, int o1, int accumulate);
/* The same over all rows, split among threads by work size. x_ready: x is already the payload's
 * input (qlinear_input with padding, or qfp8_acts); else it is made so here. */
int qlinear_float_forward(float *out, int ldo, const float *x, int ldx, const struct qlinear *q, const float *b, int n,
                          int accumulate, int x_ready);
/* The input of the payload: x [n, ldx] with its columns in the payload's order (q->perm) and, with
 * pad (the fused GEMV), padded to qlinear_k32(q) columns by zeros; x itself when neither is needed.
 * *ldp its leading dimension. In the calling thread's scratch slot QL_SLOT_XPAD. NULL with
 * ERR_NOMEM. */
const float *qlinear_input(const float *x, int ldx, const struct qlinear *q, int n, int pad, int *ldp);

#endif
