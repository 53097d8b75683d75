/* fuzz_dataset.c: libFuzzer target for the split-file reader of data artifacts (ds_split_open_mem)
 * on arbitrary bytes; every accepted split is then walked the way a consumer does (each example's
 * tokens and mask, groups, shared prefixes, history cuts), so that a validation gap shows up as an
 * out-of-bounds read under ASan. Seeds: tests/fuzz/corpus_dataset (small valid splits, versions 1
 * and 2). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "stages/data/dataset.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    /* an aligned copy: the reader maps sections in place */
    void *buf = malloc(size ? size : 1);
    if (!buf) return 0;
    memcpy(buf, data, size);
    ds_split s;
    if (ds_split_open_mem(&s, buf, size, "fuzz.bin") == 0) {
        volatile int64_t sink = 0;
        for (int64_t i = 0; i < s.n_examples; i = ds_group_end(&s, i)) {
            int64_t end = ds_group_end(&s, i);
            for (int64_t k = i; k < end; k++) {
                const ds_example *e = &s.ex[k];
                const int32_t *t = ds_example_tokens(&s, k);
                const uint8_t *m = ds_example_mask(&s, k);
                if (e->prefix_len >= e->n_tokens || e->answer_pos > e->n_tokens) abort();
                if (memcmp(t, ds_example_tokens(&s, i), e->prefix_len * sizeof *t)) abort();
                for (uint32_t j = 0; j < e->n_tokens; j++) {
                    if (t[j] < 0 || t[j] >= s.vocab || m[j] > DS_TOK_RESPONSE) abort();
                    sink += t[j] + m[j];
                }
                if (e->answer_pos < e->n_tokens && (m[e->answer_pos] == DS_TOK_PROMPT || e->prefix_len >= e->answer_pos))
                    abort();
                int nc;
                const uint32_t *c = ds_example_cuts(&s, k, &nc);
                for (int j = 0; j < nc; j++) /* cuts stay inside the prompt and increase */
                    if (c[j] < 1 || c[j] > e->answer_pos || (j && c[j] <= c[j - 1])) abort();
                if (nc == 1 || ds_fit_cuts(c, nc, e->n_tokens, e->n_tokens / 2) > (nc ? nc - 1 : 0)) abort();
            }
        }
        (void)sink;
        ds_split_close(&s);
    }
    free(buf);
    err_clear();
    return 0;
}
