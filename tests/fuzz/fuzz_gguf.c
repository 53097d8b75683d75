/* fuzz_gguf.c: libFuzzer target for the GGUF parser (gguf_parse) on arbitrary bytes. Every
 * accepted file is then read the way the loaders do: each metadata value through its typed
 * getter, every element of every array, each tensor found by name and small ones dequantized,
 * the model config and the tokenizer built from the metadata (and a text encoded and decoded
 * with it), so that a validation gap shows up as an out-of-bounds read under ASan. Seeds:
 * corpus_gguf/ (every value type; byte-level BPE and SentencePiece vocabularies). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "model/gguf.h"
#include "model/gguf_model.h"
#include "model/tokenizer.h"

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
        model_config cfg;
        if (gguf_model_config(&f, &cfg) == 0 && gguf_model_check(&f, &cfg)) err_clear();
        err_clear();
        tokenizer *tok = NULL;
        if (tokenizer_load_gguf_file(&tok, &f) == 0) {
            static const char text[] = "Hello world 2024, <|im_start|>user\n \xc3\xa9t\xc3\xa9 \xe2\x82\xac!";
            int32_t *ids;
            size_t n;
            if (tokenizer_encode(tok, text, sizeof text - 1, &ids, &n) == 0) {
                char *back;
                size_t len;
                if (tokenizer_decode(tok, ids, n, &back, &len) == 0) free(back);
                free(ids);
            }
            tokenizer_free(tok);
        }
        err_clear();
        (void)sink;
        gguf_close(&f);
    }
    err_clear();
    return 0;
}
