/* qlinear_internal.h: the payload layouts of quantized linears, shared by qlinear.c (building) and
 * the kernel files (linear_int8.c, linear_wint.c, linear_fp8.c). Nobody else reads them. */
#ifndef SMELT_KERNELS_QLINEAR_INTERNAL_H
#define SMELT_KERNELS_QLINEAR_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "kernels/qlinear.h"

struct qlinear {
    linear_format kind; /* LINEAR_QINT8, LINEAR_QWINT or LINEAR_QFP8 */
    qw_type type;
    int bits;
    qa_type act;
    int n_out, n_in, group_size, n_groups;
    int asym;           /* some group has a zero point other than 2^(bits-1) */

    /* LINEAR_QINT8: rows in blocks of 16 (n_out16 rows, the padding rows all zero), the reduction in
     * quads: each group is padded to g4 (a multiple of 4) columns of zeros, k4 = n_groups * g4.
     * Weight (row o, padded column k) = w8[((o / 16) * (k4 / 4) + k / 4) * 64 + (o % 16) * 4 + k % 4],
     * the signed code q - 2^(bits-1) (in [-128, 127]). Per group and row, [n_out16 / 16][n_groups][16]:
     * scales, rowsum (the sum of the group's w8, for VNNI's unsigned-activation trick) and zc
     * (zero - 2^(bits-1); NULL when every group is symmetric). */
    int n_out16, g4, k4;
    int8_t *w8;
    int32_t *rowsum, *zc;

    /* LINEAR_QWINT: codes of each row in chunks of 32 columns; with bits <= 4 a chunk is 16 bytes,
     * byte i holding column i (low nibble) and column i + 16 (high nibble), else 32 bytes, one code
     * each; row_bytes per row. zeros [n_out][n_groups] or NULL (symmetric). */
    uint8_t *wq;
    size_t row_bytes;
    uint8_t *zeros;

    /* LINEAR_QFP8: the E4M3 codes [n_out][n_in] as they are. */
    uint8_t *codes;

    /* LINEAR_QWINT and LINEAR_QFP8: scales [n_out][n_groups] (a per-tensor scale repeated per row);
     * LINEAR_QINT8: the blocked layout above. */
    float *scales;
};

/* The integer code of row o, column j of a QWINT payload. */
static inline int qwint_code(const struct qlinear *q, int o, int j) {
    const uint8_t *row = q->wq + (size_t)o * q->row_bytes;
    if (q->bits <= 4) {
        const uint8_t b = row[(size_t)(j >> 5) * 16 + (j & 15)];
        return (j & 16) ? b >> 4 : b & 15;
    }
    return row[j];
}

/* Thread-local scratch of at least `bytes` bytes (grown, contents not kept; owned by the calling
 * thread and reused by its next calls). NULL with ERR_NOMEM. */
void *qlinear_scratch(int slot, size_t bytes);

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

/* Float kinds (QWINT, QFP8): w [o1 - o0][n_in] = the dequantized rows o0 .. o1-1 (scale * value,
 * the same floats qweight_dequantize gives). One function per kind and CPU family. */
typedef void (*qlinear_dequant_fn)(float *w, const struct qlinear *q, int o0, int o1);
void qwint_dequant_rows(float *w, const struct qlinear *q, int o0, int o1);
void qfp8_dequant_rows(float *w, const struct qlinear *q, int o0, int o1);
/* The float product over panels of dequantized rows (qlinear.c): x [n, ldx] (already the
 * dequantized FP8 activations when the kind quantizes them) times the rows of q. 0 or -1. */
int qlinear_panel_forward(float *out, int ldo, const float *x, int ldx, const struct qlinear *q, const float *b, int n,
                          int accumulate, qlinear_dequant_fn dequant);

#endif
