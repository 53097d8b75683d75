/* qexport_cases.h: the quantized exports checked against the Python reference implementations
 * (tools/check_qexport.py writes tests/fixtures/quant/<name>/ from the folders qexport_helper
 * writes; test_qexport rewrites the same folders and compares). A case is a fixture model
 * (or a synthetic model of qtestutil.h: "synth_*") quantized by RTN (qtestutil.h) and saved in
 * one format. Changing a case, the RTN or a writer
 * changes the files: rerun the tool (docs/quantized.md). */
#ifndef SMELT_TESTS_QEXPORT_CASES_H
#define SMELT_TESTS_QEXPORT_CASES_H

#include <stdio.h>

#include "model/checkpoint.h"
#include "tests/qtestutil.h"

typedef struct {
    const char *name;  /* folder under tests/fixtures/quant */
    const char *model; /* folder under tests/fixtures, or a synthetic model "synth_*" (qtestutil.h) */
    qt_scheme s;
} qexport_case;

static const qexport_case qexport_cases[] = {
    {"ct_w4a16_g8", "llama_gqa", {"W4A16 group 8", QCKPT_COMPRESSED_TENSORS, QW_INT, 4, QA_NONE, 8, 0, 0, 0, 0}},
    {"ct_w4a16_asym_head", "llama_gqa", {"W4A16 asymmetric group 8, lm_head too", QCKPT_COMPRESSED_TENSORS, QW_INT, 4, QA_NONE, 8, 1, 0, 1, 0}},
    {"ct_w8a8", "llama_gqa", {"W8A8 per channel, int8 per token", QCKPT_COMPRESSED_TENSORS, QW_INT, 8, QA_INT8, -1, 0, 0, 0, 0}},
    {"ct_fp8_dynamic", "llama_gqa", {"FP8 per channel, FP8 per token", QCKPT_COMPRESSED_TENSORS, QW_FP8, 8, QA_FP8, -1, 0, 0, 0, 0}},
    {"ct_fp8_tensor_act", "llama_gqa", {"FP8 per tensor, FP8 per tensor (vLLM's online FP8)", QCKPT_COMPRESSED_TENSORS, QW_FP8, 8, QA_FP8_TENSOR, -1, 0, 1, 0, 0}},
    {"ct_fp8_tensor", "qwen2_bias", {"FP8 per tensor, fp32 activations", QCKPT_COMPRESSED_TENSORS, QW_FP8, 8, QA_NONE, -1, 0, 1, 0, 0}},
    {"gptq_w4_g8", "llama_gqa", {"GPTQ W4 group 8", QCKPT_GPTQ, QW_INT, 4, QA_NONE, 8, 0, 0, 0, 0}},
    {"gptq_w4_actorder", "llama_gqa", {"GPTQ W4 group 8, act order (g_idx)", QCKPT_GPTQ, QW_INT, 4, QA_NONE, 8, 0, 0, 0, 1}},
    {"gptq_w4_asym_head", "qwen2_bias", {"GPTQ W4 asymmetric group 8, lm_head too", QCKPT_GPTQ, QW_INT, 4, QA_NONE, 8, 1, 0, 1, 0}},
    {"gguf_q8_0_head", "synth_llama", {"GGUF Q8_0, lm_head too", QCKPT_GGUF, QW_INT, 8, QA_NONE, 32, 0, 0, 1, 0}},
    {"gguf_q4_0_tied", "synth_llama_tied", {"GGUF Q4_0, tied embedding F32", QCKPT_GGUF, QW_INT, 4, QA_NONE, 32, 0, 0, 0, 0}},
    {"gguf_q4_1_tied_head", "synth_llama_tied", {"GGUF Q4_1 (float minimums), tied head quantized", QCKPT_GGUF, QW_INT, 4, QA_NONE, 32, 1, 0, 1, 0}},
};
#define QEXPORT_N_CASES ((int)(sizeof qexport_cases / sizeof qexport_cases[0]))

/* The tokens the logits are compared on (vocab 64). */
static const int qexport_tokens[] = {1, 7, 30, 12, 55, 3, 9, 40, 21, 2, 63, 17, 5, 44};
#define QEXPORT_N_TOKENS ((int)(sizeof qexport_tokens / sizeof qexport_tokens[0]))

/* Writes case c (its fixture model from fixtures_dir) into out_dir. 0 or -1 (error slot). */
static inline int qexport_write(const qexport_case *c, const char *fixtures_dir, const char *out_dir) {
    char src[4200];
    snprintf(src, sizeof src, "%.4096s/%.64s", fixtures_dir, c->model);
    model_config cfg;
    model_weights w;
    if (!strncmp(c->model, "synth", 5) ? qt_synthetic(c->model, &cfg, &w) : checkpoint_load(src, &cfg, &w)) return -1;
    model_quant *q = qt_quantize_model(&cfg, &w, &c->s);
    int rc = q ? qcheckpoint_save(out_dir, &cfg, &w, q, c->s.format, ST_F32) : -1;
    model_quant_free(q);
    weights_free(&w);
    return rc;
}

#endif
