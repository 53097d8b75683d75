/* bf16.h: bfloat16 numbers and the bf16 matrix products of mixed precision. A bf16 is the upper
 * half of an fp32 (8 significant bits: unit roundoff u = 2^-8). Products of two bf16 are exact in
 * fp32, so a bf16 GEMM with fp32 accumulation differs from the fp32 product of the ROUNDED
 * operands only by the fp32 summation.
 *
 * The fast products use AVX512_BF16 (VDPBF16PS: 32 bf16 multiply-adds per instruction, twice the
 * fp32 FMA rate), detected at run time; bf16_available() says whether this CPU has it. Without it
 * gemm_bf16* compute the same rounded products with plain loops (summed in double: slow, for
 * tests and odd machines), so callers that want speed ask bf16_available() and use fp32 instead.
 *
 * Like VCVTNEPS2BF16, rounding is to nearest even, denormals become (signed) zero and a NaN stays a
 * (quiet) NaN. */
#ifndef SMELT_KERNELS_BF16_H
#define SMELT_KERNELS_BF16_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

typedef uint16_t bf16;

/* 1 when this CPU runs AVX512_BF16 (and the environment does not set SMELT_NO_BF16=1, which
 * forces the portable paths, for tests and comparisons). */
int bf16_available(void);
/* Tests: 0 forces the portable paths, 1 restores detection. */
void bf16_force_portable(int on);

/* The scalar conversions (the reference of the vector ones; bitwise the same). */
static inline bf16 bf16_from_f32(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    if ((u & 0x7f800000u) == 0x7f800000u && (u & 0x007fffffu)) return (bf16)((u >> 16) | 0x0040u); /* quiet NaN */
    if ((u & 0x7f800000u) == 0) return (bf16)((u >> 16) & 0x8000u); /* zero and denormals: signed zero */
    u += 0x7fffu + ((u >> 16) & 1u);                                 /* to nearest, ties to even */
    return (bf16)(u >> 16);
}
static inline float bf16_to_f32(bf16 h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}
/* x rounded to bf16 and back. */
static inline float bf16_round(float f) { return bf16_to_f32(bf16_from_f32(f)); }

/* dst[n] = bf16(src[n]) and the reverse. */
void bf16_from_f32_n(bf16 *dst, const float *src, size_t n);
void bf16_to_f32_n(float *dst, const bf16 *src, size_t n);

/* ---- products (gemm_bf16.c) ---- */

/* C[m, n] = alpha op(A) op(B) + beta C with matmul()'s arguments (row-major, trans flags, leading
 * dimensions; beta == 0 overwrites C), A and B rounded to bf16 and the products summed in fp32:
 * each element is one sum over k in a fixed order, whatever the thread count. 0, or -1
 * (ERR_NOMEM: the packed copies of A and B take (m + n) k * 2 bytes). */
int gemm_bf16(float *c, int ldc, const float *a, int lda, int trans_a, const float *b, int ldb, int trans_b, int m,
              int n, int k, float alpha, float beta);
/* An operand B packed once for many products with it: an LM head over chunks of rows, or the
 * weights of a linear layer stored in bf16 (B = W^T; panels of GEMM_BF16_NR outputs, each holding
 * pairs of bf16 along k: half the bytes of fp32, and the layout both products below read). */
#define GEMM_BF16_NR 48
typedef struct {
    uint32_t *panels; /* owned (gemm_bf16_b_free) */
    int n, k;
} gemm_bf16_b;
/* Packs op(B) [k, n] of matmul's arguments (b, ldb, trans_b) into pb, zeroed before first use (a
 * pb of the same shape is packed again in place). A linear layer's weights W [n_out, n_in]:
 * gemm_bf16_pack_b(pb, W, n_in, 1, n_out, n_in). 0 or -1 (ERR_NOMEM: n k * 2 bytes). */
int gemm_bf16_pack_b(gemm_bf16_b *pb, const float *b, int ldb, int trans_b, int n, int k);
void gemm_bf16_b_free(gemm_bf16_b *pb);
/* gemm_bf16 with a packed B: C[m, pb->n] = alpha op(A) B + beta C; the same sums. 0 or -1. */
int gemm_bf16_packed(float *c, int ldc, const float *a, int lda, int trans_a, const gemm_bf16_b *pb, int m, float alpha,
                     float beta);
/* A few rows against a packed B, reading each weight once (decode): y[r, j] (+)= x[r, :] . B[:, j]
 * for j in [j0, j1). x stays fp32 and the bf16 weights are widened exactly: fp32 products summed
 * in order of k (bound (k + 1) eps sum |x w|), the same whatever the range. On the calling thread;
 * callers split [0, n) among threads in multiples of GEMM_BF16_NR (a range cut inside a panel
 * reads that panel whole). */
void gemv_bf16_packed(float *y, int ldy, const float *x, int ldx, const gemm_bf16_b *pb, int n_rows, int j0, int j1,
                      int accumulate);

/* The reference: bf16-rounded operands, sums in double. */
void gemm_bf16_ref(float *c, int ldc, const float *a, int lda, int trans_a, const float *b, int ldb, int trans_b, int m,
                   int n, int k, float alpha, float beta);

#endif
