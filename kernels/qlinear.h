/* qlinear.h: quantized linear layers y = x W^T + b behind linear.h's descriptor. A qlinear is the
 * private, kernel-ready form ("payload") of one or more qweights (qweight.h) whose rows are stacked
 * (the fused q/k/v and gate/up projections); linear_qlinear() makes the descriptor the model calls
 * linear_forward on. Three kinds, by the qweights' type and activations:
 *
 *   LINEAR_QINT8  integer weights (2..8 bits, groups, zero points) x int8 activations quantized per
 *                 token at run time (s_t = max|x_t| / 127, q = round_half_even(x * (127 / max|x_t|)))
 *                 through an int8 x int8 -> int32 product. Exact: per group an int32 sum, combined as
 *                 acc = fmaf(s_group, (float)isum, acc) in group order, y = s_t * acc (+ b). Every
 *                 kernel (portable, AVX2, AVX-512 VNNI) gives the bits of qlinear_forward_ref.
 *   LINEAR_QWINT  integer weights x fp32 activations ("W4A16"): up to QLINEAR_GEMV_ROWS tokens, a
 *                 fused GEMV reads each packed weight byte once and decodes it in registers; more
 *                 tokens, panels of rows are dequantized (SIMD) and multiplied by sgemm. Never a fp32
 *                 copy of the whole weight.
 *   LINEAR_QFP8   FP8 E4M3 weights (per-tensor or per-channel scales) x fp32 activations, or x FP8
 *                 activations quantized per token (s_t = max(max|x_t| / 448, 1 / (448 * 512)),
 *                 code = e4m3(x / s_t)) or with one such scale for all the tokens of the call
 *                 (QA_FP8_TENSOR): codes decode exactly (SIMD: through IEEE half precision), the
 *                 same two paths as QWINT, products and sums in fp32.
 * Float kinds multiply exactly the weights qweight_dequantize gives and match the reference within
 * a bound derived from fp32 rounding (tests/test_qlinear.c). Act order (qweight g_idx): the payload
 * keeps its columns sorted by group and each call permutes its input to match.
 *
 * Kernels are chosen at run time: the best the CPU has (AVX-512 BF16, AVX-512 VNNI, AVX2, portable
 * C), capped by the environment variable SMELT_QKERNEL=portable|avx2|avx512|avx512bf16 or by
 * qlinear_set_isa (tests). */
#ifndef SMELT_KERNELS_QLINEAR_H
#define SMELT_KERNELS_QLINEAR_H

#include <stddef.h>

#include "kernels/linear.h"
#include "kernels/qweight.h"

typedef struct qlinear qlinear;

/* Builds the payload of the row-stack of parts[0..n_parts) (each [n_out_i, n_in]; rows of part 0
 * first). The parts must share type, bits, activations, n_in and group size (zero points and FP8
 * per-tensor scales may differ: they are expanded per group / per row). 0 or -1 (ERR_INPUT naming
 * the mismatch or the unsupported combination: int weights with FP8 activations, FP8 weights with
 * int8 activations; ERR_NOMEM). The parts are copied: they may be freed afterwards. */
int qlinear_build(qlinear **out, const qweight *const *parts, int n_parts);
void qlinear_free(qlinear *q);
/* The descriptor running q, with bias b [n_out] (may be NULL). q must outlive it. */
linear linear_qlinear(const qlinear *q, const float *b);
/* Bytes the payload holds (codes, scales, zero points, sums). */
size_t qlinear_bytes(const qlinear *q);

/* Tokens up to which a product streams the weights (the decode path): each weight byte is read
 * once and multiplies every token from registers. */
#define QLINEAR_GEMV_ROWS 8

/* The forward of output rows [j0, j1) only (out's columns j0 .. j1-1; bias included), for
 * n <= QLINEAR_GEMV_ROWS tokens, on the calling thread: a decode team splits the rows itself. j0
 * and j1 multiples of qlinear_col_align (j1 may be n_out). Every output is computed as
 * linear_forward computes it, so a split of the rows changes no value. 0 or -1 (ERR_NOMEM for the
 * thread's scratch, ERR_INTERNAL for too many tokens or a misaligned range). */
int qlinear_forward_cols(float *out, int ldo, const float *x, int ldx, const linear *l, int n, int j0, int j1,
                         int accumulate);
/* The granularity of the row ranges of qlinear_forward_cols (the int8 layout's blocks of 16 rows). */
int qlinear_col_align(const linear *l);

/* The reference: out[n, ldo] = (or +=, with accumulate) x[n, ldx] W^T + b computed from the qweights
 * themselves with the arithmetic described above (integer kinds: the exact result; float kinds: the
 * dequantized weights of qweight_dequantize against the activations, summed in double). */
void qlinear_forward_ref(float *out, int ldo, const float *x, int ldx, const qweight *const *parts, int n_parts,
                         const float *b, int n, int accumulate);

/* The dynamic per-token activation quantizations, for references and tests: x [n_in] ->
 * codes [n_in] and the token's scale. */
void qlinear_quant_int8(signed char *q, float *scale, const float *x, int n_in);
void qlinear_quant_fp8(unsigned char *q, float *scale, const float *x, int n_in);
/* FP8 codes of x [n_in] with a given scale s (> 0): code = e4m3(x / s). */
void qlinear_quant_fp8_with(unsigned char *q, float s, const float *x, int n_in);
/* The one scale of QA_FP8_TENSOR over n tokens x [n, ldx]: max(max|x| / 448, 1 / (448 * 512)). */
float qlinear_fp8_tensor_scale(const float *x, int ldx, int n, int n_in);

/* Kernel families, best last. */
/* QISA_AVX512BF16: AVX-512 VNNI plus AVX512_BF16: as QISA_AVX512, except that the decode GEMV of
 * symmetric W4A16-style linears (codes of <= 4 bits, no zero points nor minimums, groups a multiple
 * of 32 columns or one per row) rounds the activations to bf16 (round to nearest even) and sums the
 * products in fp32 with vdpbf16ps (qlinear_bf16_acts says when). SMELT_QKERNEL=avx512 or
 * SMELT_NO_BF16=1 keep fp32 activations. */
typedef enum { QISA_PORTABLE = 0, QISA_AVX2 = 1, QISA_AVX512 = 2, QISA_AVX512BF16 = 3 } qlinear_isa_kind;
/* The family in use (the best the CPU supports, capped by SMELT_QKERNEL). */
qlinear_isa_kind qlinear_isa(void);
/* Caps the family (tests, benchmarks); returns the one now in use (never above the CPU's). */
qlinear_isa_kind qlinear_set_isa(qlinear_isa_kind want);
const char *qlinear_isa_name(qlinear_isa_kind k);
/* 1 when a product of n tokens through l (a quantized linear) rounds its activations to bf16 under
 * the family in use (QISA_AVX512BF16's decode GEMV, above), else 0. */
int qlinear_bf16_acts(const linear *l, int n);

/* linear_forward's cases for the three kinds (l->q is the qlinear). 0 or -1 (ERR_NOMEM). */
int linear_qint8_forward(float *out, int ldo, const float *x, int ldx, const linear *l, int n, int accumulate);
int linear_qwint_forward(float *out, int ldo, const float *x, int ldx, const linear *l, int n, int accumulate);
int linear_qfp8_forward(float *out, int ldo, const float *x, int ldx, const linear *l, int n, int accumulate);

#endif
