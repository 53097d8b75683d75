/* gguf_quants.h: ggml's tensor types (the numbers GGUF files store), their block sizes, and
 * conversion to fp32 of F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0 and the K-quants Q2_K..Q6_K,
 * bit for bit what the `gguf` Python package's gguf.quants.dequantize computes (each step rounded
 * to fp32 in the same order); and quantization of fp32 to F32, F16, BF16, Q8_0, Q4_0 and Q4_1 as
 * ggml's reference quantizers do (the GGUF writer's formats).
 *
 * Block layouts (little-endian, fp16 scales): Q8_0 {d, int8 q[32]}: w = d*q. Q4_0 {d, nibbles[16]}:
 * w = d*(q-8). Q4_1 {d, m, nibbles[16]}: w = d*q + m. The low nibbles of the 16 bytes are weights
 * 0..15, the high nibbles 16..31. Q5_0/Q5_1 add a uint32 of fifth bits after the scales. K-quants:
 * super-blocks of 256 weights with 16 or 8 sub-block scales (gguf_quants.c spells out each). */
#ifndef SMELT_MODEL_GGUF_QUANTS_H
#define SMELT_MODEL_GGUF_QUANTS_H

#include <stddef.h>
#include <stdint.h>

typedef enum {
    GGML_F32 = 0, GGML_F16 = 1, GGML_Q4_0 = 2, GGML_Q4_1 = 3, GGML_Q5_0 = 6, GGML_Q5_1 = 7, GGML_Q8_0 = 8,
    GGML_Q8_1 = 9, GGML_Q2_K = 10, GGML_Q3_K = 11, GGML_Q4_K = 12, GGML_Q5_K = 13, GGML_Q6_K = 14,
    GGML_Q8_K = 15, GGML_IQ2_XXS = 16, GGML_IQ2_XS = 17, GGML_IQ3_XXS = 18, GGML_IQ1_S = 19,
    GGML_IQ4_NL = 20, GGML_IQ3_S = 21, GGML_IQ2_S = 22, GGML_IQ4_XS = 23, GGML_I8 = 24, GGML_I16 = 25,
    GGML_I32 = 26, GGML_I64 = 27, GGML_F64 = 28, GGML_IQ1_M = 29, GGML_BF16 = 30, GGML_TQ1_0 = 34,
    GGML_TQ2_0 = 35, GGML_MXFP4 = 39,
    GGML_N_TYPES = 40
} ggml_type;

#define GGML_QK 32   /* weights per block of the 32-weight formats */
#define GGML_QK_K 256 /* weights per K-quant super-block */

/* The type's name ("Q4_K"), or NULL for a number ggml does not define. */
const char *ggml_type_name(ggml_type t);
/* Parses a name, case-insensitive ("q8_0", "F16"); -1 when unknown. */
int ggml_type_parse(const char *name, ggml_type *out);
/* Weights per block and bytes per block; 0 for an undefined type. */
int ggml_blck_size(ggml_type t);
size_t ggml_type_size(ggml_type t);
/* 1 when ggml_dequantize converts this type. */
int ggml_can_dequantize(ggml_type t);
/* 1 when ggml_quantize produces this type. */
int ggml_can_quantize(ggml_type t);

/* Bytes of n weights of type t (n a multiple of the block size; 0 otherwise). */
size_t ggml_row_bytes(ggml_type t, int64_t n);

/* out [n] = the fp32 values of the n weights at src (n a multiple of the block size).
 * 0, or -1 (ERR_INPUT) for a type it cannot convert or a bad n. */
int ggml_dequantize(float *out, const void *src, ggml_type t, int64_t n);
/* dst (ggml_row_bytes(t, n) bytes) = x [n] in type t, as ggml's reference quantizer does
 * (F16/BF16: round to nearest even). 0, or -1 (ERR_INPUT). */
int ggml_quantize(void *dst, const float *x, ggml_type t, int64_t n);

/* A quantizer of one type: the GGUF writer takes one per tensor, so a stage that quantizes its
 * own way (GPTQ into Q4_0 blocks) hands over ready blocks instead. */
typedef int (*ggml_quantize_fn)(void *dst, const float *x, ggml_type t, int64_t n);

#endif
