/* test_stories260k.c: import of the real llama2.c checkpoint ../shared/models/stories260K.
 * Every tensor, after conversion to the HF layout, must have the shape and the sha256 that
 * tools/make_fixtures.py recorded from its own (transformers-verified) conversion; the config
 * must be the header's. Needs ../shared (tests/shared_dir.h: skips with 77 without it). */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/fsutil.h"
#include "common/sha256.h"
#include "model/checkpoint.h"
#include "model/hfconfig.h"
#include "tests/ckpt_testutil.h"
#include "tests/shared_dir.h"

int main(void) {
    char bin[4096], ref[4200];
    if (!shared_file(bin, sizeof bin, "models/stories260K/stories260K.bin", "the stories260K import (every test here)"))
        return SHARED_SKIPPED_ALL;
    snprintf(ref, sizeof ref, "%s/reference.json", t_fixture("stories260K"));
    char *text = NULL;
    size_t len;
    if (fs_read_file(ref, 0, &text, &len)) {
        fprintf(stderr, "FAIL: %s\n", err_msg());
        return 1;
    }
    cJSON *root = cJSON_Parse(text);
    free(text);
    const cJSON *hdr = cJSON_GetObjectItem(root, "header"), *tensors = cJSON_GetObjectItem(root, "tensors");
    model_config c;
    model_weights w;
    EXPECT_OK(checkpoint_load(bin, &c, &w), "stories260K");
    if (w.mem && hdr && tensors) {
#define H(k) cJSON_GetObjectItem(hdr, k)->valueint
        CHECK(c.hidden == H("dim") && c.intermediate == H("hidden") && c.n_layers == H("n_layers") &&
              c.n_heads == H("n_heads") && c.n_kv_heads == H("n_kv") && c.vocab == H("vocab") &&
              c.max_pos == H("seq_len") && c.tie_embeddings == cJSON_IsTrue(cJSON_GetObjectItem(hdr, "shared")),
              "config = header");
#undef H
        CHECK(c.hidden == 64 && c.n_layers == 5 && c.n_kv_heads == 4 && c.vocab == 512, "the documented sizes");
        int n = weights_tensors(&w, &c, NULL, 0);
        weights_tensor *wt = calloc((size_t)n, sizeof *wt);
        weights_tensors(&w, &c, wt, n);
        CHECK(n == cJSON_GetArraySize(tensors), "%d tensors, reference %d", n, cJSON_GetArraySize(tensors));
        int matched = 0;
        for (int i = 0; i < n; i++) {
            const cJSON *t = cJSON_GetObjectItem(tensors, wt[i].name);
            if (!t) {
                CHECK(0, "reference lacks %s", wt[i].name);
                continue;
            }
            const cJSON *shape = cJSON_GetObjectItem(t, "shape");
            int ok = cJSON_GetArraySize(shape) == wt[i].ndim;
            for (int k = 0; ok && k < wt[i].ndim; k++) ok = cJSON_GetArrayItem(shape, k)->valueint == wt[i].shape[k];
            size_t elems = (size_t)wt[i].shape[0] * (size_t)(wt[i].ndim == 2 ? wt[i].shape[1] : 1);
            char hex[SHA256_HEX_LEN + 1];
            sha256_hex(hex, wt[i].data, elems * sizeof(float));
            ok = ok && !strcmp(hex, cJSON_GetObjectItem(t, "sha256")->valuestring);
            CHECK(ok, "%s: shape or bytes differ from the reference conversion", wt[i].name);
            matched += ok;
        }
        printf("stories260K: %d of %d tensors match the transformers-verified conversion bit for bit\n", matched, n);
        free(wt);
        /* the llama2.c-only reader agrees with the full load */
        model_config c2;
        EXPECT_OK(llama2c_read_config(bin, &c2), "read config");
        CHECK(t_config_equal(&c, &c2), "llama2c_read_config = llama2c_load's config");
    }
    weights_free(&w);
    cJSON_Delete(root);
    return t_finish("test_stories260k");
}
