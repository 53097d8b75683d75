/* fuzz_qcheckpoint.c: libFuzzer target for the quantized-checkpoint reader (model_load of a
 * quantized HF folder: qcheckpoint_load's quantization_config parsing for compressed-tensors and
 * GPTQ, the per-linear tensors, packed codes, zero points, scales, g_idx, then attaching the
 * quantized linears to a model) on arbitrary bytes. An input is one folder: a 4-byte little-endian
 * length n, then n bytes of config.json, then model.safetensors (the rest); or, when it starts with
 * the GGUF magic, a GGUF file read with its Q8_0/Q4_0/Q4_1 linears quantized
 * (model_load_quantized_gguf). Any bytes must give a
 * loaded model or a clean error, never a crash, a leak or undefined behaviour. A model that loads
 * runs one forward of two tokens through the quantized kernels (so that a payload the reader
 * accepted but the kernels misread shows up under ASan). Configs whose weights exceed 2^20 floats
 * are skipped before loading (the fuzzer's memory limit, not the reader's). Seeds: small
 * quantized folders and one GGUF file written by tests/qexport_helper (tests/fuzz/corpus_qcheckpoint/). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/error.h"
#include "common/fsutil.h"
#include "model/gguf_model.h"
#include "model/hfconfig.h"
#include "model/kvcache.h"
#include "model/model_load.h"
#include "model/weights.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char dir[64], cfg_path[96], st_path[96], gguf_path[96];

static void cleanup(void) { fs_rm_rf(dir); }

static int write_all(const char *path, const uint8_t *p, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    const int ok = fwrite(p, 1, n, f) == n;
    return fclose(f) == 0 && ok ? 0 : -1;
}

/* One forward of two tokens through what loaded. */
static void run(model *m) {
    static const int tokens[2] = {0, 1}, rows[2] = {0, 1};
    float *logits = malloc(sizeof(float) * 2 * (size_t)m->cfg.vocab);
    kv_cache kv;
    if (m->cfg.vocab >= 2 && logits && kv_cache_init(&kv, &m->cfg, 2) == 0) {
        if (model_extend(m, &kv, tokens, 2, rows, 2, logits)) err_clear();
        kv_cache_free(&kv);
    }
    free(logits);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!dir[0]) {
        snprintf(dir, sizeof dir, "/tmp/fuzz-qckpt-%ld", (long)getpid());
        snprintf(cfg_path, sizeof cfg_path, "%s/config.json", dir);
        snprintf(st_path, sizeof st_path, "%s/model.safetensors", dir);
        snprintf(gguf_path, sizeof gguf_path, "%s/model.gguf", dir);
        if (fs_mkdir_p(dir, 0700)) abort();
        atexit(cleanup);
    }
    if (size < 4) return 0;
    model m;
    if (!memcmp(data, "GGUF", 4)) {
        model_config c;
        if (write_all(gguf_path, data, size)) abort();
        if (gguf_model_read_config(gguf_path, &c) == 0 && weights_count(&c) <= (1u << 20) &&
            model_load_quantized_gguf(&m, gguf_path) == 0) {
            run(&m);
            model_free(&m);
        }
        err_clear();
        return 0;
    }
    const uint32_t n = (uint32_t)data[0] | (uint32_t)data[1] << 8 | (uint32_t)data[2] << 16 | (uint32_t)data[3] << 24;
    if (n > size - 4) return 0;
    model_config c;
    if (hfconfig_parse(&c, (const char *)data + 4, n, "config.json") || weights_count(&c) > (1u << 20)) {
        err_clear();
        return 0;
    }
    if (write_all(cfg_path, data + 4, n) || write_all(st_path, data + 4 + n, size - 4 - n)) abort();
    if (model_load(&m, dir) == 0) {
        run(&m);
        model_free(&m);
    }
    err_clear();
    return 0;
}
