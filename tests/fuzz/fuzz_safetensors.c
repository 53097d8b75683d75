/* fuzz_safetensors.c: libFuzzer target for the safetensors header parser and validator
 * (st_parse) on arbitrary bytes; every accepted file is then read the way a loader does
 * (lookups, metadata, conversion of small float tensors), so that validation gaps show up as
 * out-of-bounds reads under ASan. Seeds: the .safetensors files of tests/fixtures. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "model/safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    st_file f;
    if (st_parse(&f, data, size, "fuzz") == 0) {
        float *buf = malloc(4096 * sizeof(float));
        for (int i = 0; i < f.n_tensors; i++) {
            const st_tensor *t = &f.tensors[i];
            if (st_find(&f, t->name) != t) abort(); /* names are unique and sorted */
            if (t->end > f.data_len || t->end - t->begin != t->n_elems * st_dtype_size(t->dtype)) abort();
            if (buf && t->n_elems <= 4096 && st_to_f32(buf, t, "fuzz")) err_clear();
            volatile uint8_t sink = 0;
            for (uint64_t k = t->begin; k < t->end; k += 61) sink ^= f.data[k]; /* touch the tensor's bytes */
            (void)sink;
        }
        if (f.n_meta) (void)st_meta_get(&f, f.meta[0]);
        free(buf);
        st_close(&f);
    }
    err_clear();
    return 0;
}
