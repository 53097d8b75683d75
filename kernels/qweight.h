/* qweight.h: the in-memory form of a quantized linear weight, the contract between the quantize
 * stage (stages/quantize/: RTN, GPTQ, QuantEase, SmoothQuant, FP8 produce qweights) and the
 * quantized inference kernels and checkpoint formats (kernels/, model/: run them, save and load
 * them). ALGORITHMS.md sections 4-5.
 *
 * A weight W [n_out, n_in] (Hugging Face layout) is stored as one code per weight, unpacked (one
 * byte each; kernels and file formats repack privately), with a scale per group of `group_size`
 * consecutive input columns of one output row (group_size == n_in: per output channel), and for
 * asymmetric integer formats a zero point per group:
 *
 *   QW_INT   b-bit integers (2 <= b <= 8). codes are the unsigned grid indices q in [0, 2^b - 1];
 *            w = scale * (q - zero). Symmetric: zero = 2^(b-1) for every group (zeros may be NULL);
 *            asymmetric: zeros [n_out, n_groups]; or, with float minimums (mins, GGUF Q4_1),
 *            w = scale * q + min. (W8A8 int8 symmetric per channel: q - 128 is the
 *            signed int8 that the int8 GEMM multiplies.)
 *   QW_FP8   FP8 E4M3 (finite-only "fn" variant: bias 7, max 448, no infinities, NaN = 0x7F/0xFF):
 *            codes are the E4M3 bit patterns; w = scale * fp8_e4m3_to_float(code); scales per
 *            tensor (n_scales == 1) or per output channel (group_size == n_in).
 *
 * Activations: `act` says how the input x of the layer is quantized at run time, dynamically per
 * token (one scale per row of x): none (fp32 input, "W4A16"-style), int8 symmetric
 * (s_t = max|x_t| / 127), or fp8 e4m3 (s_t = max(max|x_t| / 448, 1 / (448 * 512))); or fp8 e4m3
 * with one scale for all the tokens of a call (QA_FP8_TENSOR, FP8 weights only).
 *
 * Act order (GPTQ desc_act): g_idx maps each input column to its group, every group still of
 * group_size columns; the kernels permute the input once per call to make the groups contiguous.
 *
 * Ownership: a qweight owns its arrays (qweight_free). The model keeps its quantized linears
 * in a model_quant (model/ side) and points its `linear` descriptors at them. */
#ifndef SMELT_KERNELS_QWEIGHT_H
#define SMELT_KERNELS_QWEIGHT_H

#include <stddef.h>
#include <stdint.h>

typedef enum {
    QW_INT = 1, /* b-bit integer grid with scales and zero points */
    QW_FP8 = 2, /* FP8 E4M3 codes with scales */
} qw_type;

typedef enum {
    QA_NONE = 0, /* activations stay fp32 */
    QA_INT8 = 1, /* dynamic per-token int8, symmetric */
    QA_FP8 = 2,  /* dynamic per-token fp8 e4m3 */
    QA_FP8_TENSOR = 3, /* dynamic fp8 e4m3 with one scale per call (the whole batch of tokens), as vLLM's
                        * online FP8 runs it: s = max(max|x| / 448, 1 / (448 * 512)) over every row */
} qa_type;

typedef struct {
    qw_type type;
    int bits;          /* QW_INT: 2..8; QW_FP8: 8 */
    qa_type act;
    int n_out, n_in;
    int group_size;    /* divides n_in; n_in = per output channel */
    int n_scales;      /* n_out * (n_in / group_size), or 1 (QW_FP8 per tensor) */
    uint8_t *codes;    /* [n_out, n_in] one code per weight (see above) */
    float *scales;     /* [n_out, n_in / group_size], or [1] */
    uint8_t *zeros;    /* [n_out, n_in / group_size] zero points (QW_INT asymmetric), or NULL (symmetric) */
    int32_t *g_idx;    /* [n_in] the group of each input column (GPTQ act order: groups of group_size
                        * columns taken in another order), or NULL: column j is in group j / group_size */
    float *mins;       /* [n_out, n_in / group_size] QW_INT with a float minimum per group instead of a
                        * zero point (GGUF Q4_1, llama.cpp's asymmetric blocks): w = scale * q + min
                        * (the product rounded, then the sum); NULL otherwise; never with zeros */
} qweight;

/* The zero point of group g of row r (2^(bits-1) when symmetric). */
static inline int qweight_zero(const qweight *q, int r, int g) {
    return q->zeros ? q->zeros[(size_t)r * (q->n_in / q->group_size) + g] : 1 << (q->bits - 1);
}

/* The group of input column j. */
static inline int qweight_group(const qweight *q, int j) { return q->g_idx ? q->g_idx[j] : j / q->group_size; }

/* Allocates q->mins (zeroed) for an integer qweight allocated without zero points. 0 or -1. */
int qweight_alloc_mins(qweight *q);

/* Sets the column groups of q from g [n_in] (copied; q->g_idx stays NULL when g is the identity
 * grouping j / group_size). Every group must hold exactly group_size columns, as act order gives.
 * 0 or -1 (ERR_INPUT naming the first bad entry, ERR_NOMEM). */
int qweight_set_g_idx(qweight *q, const int32_t *g);

/* Allocates the arrays of q for the shape and layout already set in *q (type, bits, n_out, n_in,
 * group_size; zeros when asym is set, n_scales == 1 when per_tensor). Codes and scales are zeroed.
 * 0 or -1 (ERR_INPUT for a bad shape or a group size that does not divide n_in, ERR_NOMEM). */
int qweight_alloc(qweight *q, int asym, int per_tensor);
void qweight_free(qweight *q);
/* w [n_out, n_in] = the weights q stands for (the reference dequantization). */
void qweight_dequantize(float *w, const qweight *q);
/* Bytes of the weight as stored in a packed file (codes at `bits` bits, fp16 scales, zeros at
 * `bits` bits): the figure behind the `bytes` and `bits_per_weight` metrics. */
size_t qweight_packed_bytes(const qweight *q);

/* FP8 E4M3 (fn) conversion. Decoding is exact (0x7F and 0xFF are NaN). Encoding rounds to nearest
 * even and keeps NaN a NaN (0x7F, or 0xFF for a negative NaN), as ml_dtypes.float8_e4m3fn does; it
 * SATURATES beyond the range (|x| > 448 and infinities give +-448), where ml_dtypes gives NaN from
 * 464 up: quantizers clamp to +-448 first (ALGORITHMS.md), so the two agree on every input they meet. */
float fp8_e4m3_to_float(uint8_t code);
uint8_t fp8_e4m3_from_float(float x);
/* The same encoding by bit manipulation (the mantissa rounded to 3 bits in the float's own bits,
 * subnormals by one exact scaling and nearbyintf), several times faster: what the kernels quantize
 * activations with. Equal to fp8_e4m3_from_float on every float (tests/test_qweight.c). */
uint8_t fp8_e4m3_from_float_fast(float x);

#endif
