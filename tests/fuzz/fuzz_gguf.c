/* fuzz_gguf.c: libFuzzer target for the GGUF parser (gguf_parse) on arbitrary bytes. Every
 * accepted file is then read the way the loaders do: each metadata value through its typed
 * getter, every element of every array, each tensor found by name and small ones dequantized,
 * so that a validation gap shows up as an out-of-bounds read under ASan. Seeds: corpus_gguf/. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "model/gguf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    gguf_file f;
    if (gguf_parse(&f, data, size, "fuzz") == 0) {
        volatile double sink = 0;
        for (int64_t i = 0; i < f.n_kv; i++) {
            const gguf_kv *kv = &f.kv[i];
            if (gguf_get(&f, kv->key) != kv) abort(); /* keys are unique */
            int64_t v;
            double d;
            int b;
            char *s = NULL;
            if (gguf_get_int(&f, kv->key, INT64_MIN, INT64_MAX, &v) == 0) sink += (double)v;
            if (gguf_get_float(&f, kv->key, &d) == 0) sink += d;
            if (gguf_get_bool(&f, kv->key, &b) == 0) sink += b;
            if (gguf_get_string(&f, kv->key, &s) == 0) sink += (double)strlen(s);
            free(s);
            err_clear();
            if (kv->type != GGUF_ARRAY) continue;
            for (uint64_t k = 0; k < kv->n; k++) {
                if (kv->elem_type == GGUF_STRING) {
                    uint64_t len;
                    const char *e = gguf_arr_str(kv, k, &len);
                    if (len) sink += (unsigned char)e[len - 1];
                } else {
                    sink += gguf_arr_num(kv, k);
                }
            }
        }
        float *buf = malloc(4096 * sizeof(float));
        for (int64_t i = 0; i < f.n_tensors; i++) {
            const gguf_tensor *t = &f.tensors[i];
            if (gguf_find_tensor(&f, t->name) != t) abort();
            if (t->data + t->n_bytes > (const uint8_t *)data + size) abort();
            if (buf && t->n_elems <= 4096 && ggml_can_dequantize(t->type) &&
                ggml_dequantize(buf, t->data, t->type, (int64_t)t->n_elems))
                abort(); /* a validated tensor of a readable type always converts */
        }
        free(buf);
        (void)sink;
        gguf_close(&f);
    }
    err_clear();
    return 0;
}
