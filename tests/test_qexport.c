/* test_qexport.c: smelt's quantized exports against what the reference implementations read from
 * them (tests/fixtures/quant, written by tools/check_qexport.py with the compressed-tensors
 * package, transformers and a NumPy GPTQ decoder). For every case of qexport_cases.h:
 *   1. smelt writes the case again: config.json and model.safetensors have the sha256 the
 *      reference read (the files checked in Python are the files smelt writes);
 *   2. model_load reads it back quantized, and qweight_dequantize of every quantized linear has,
 *      bit for bit, the sha256 of the weight compressed-tensors decompressed (GPTQ: the NumPy
 *      decoder) from smelt's file: the weights the reference sees are the weights smelt evaluates;
 *   3. the logits of smelt's quantized engine against transformers' on those weights:
 *      - fp32 activations: within the fp32 bound of the engine tests (normalized error <=
 *        2 eps (L (2 H + Q + I + D + T) + H), test_engine_fixtures.c), the quantized kernels adding
 *        no rounding beyond a sum's (test_qlinear);
 *      - quantized activations: against `logits_actq` (smelt's per-token rule emulated in PyTorch)
 *        within a tenth of the effect of activation quantization itself (E = |logits_actq -
 *        logits|): fp32 rounding differences can move a few activation codes across a rounding
 *        boundary, each moving its products by one quantization step (at most 1/127 (int8) or 1/16
 *        (fp8) of the token's largest input), which stays well below E, while an engine that did
 *        not quantize would be off by E itself; and against transformers' own run of the folder
 *        (compressed-tensors fake-quantizes activations with another rounding rule: int8 scale
 *        max|x|/127.5) within 2 E_t, E_t = |logits_transformers - logits|: "within the
 *        activation-quantization tolerance". */
#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "common/fsutil.h"
#include "common/sha256.h"
#include "kernels/threads.h"
#include "model/kvcache.h"
#include "model/model_load.h"
#include "model/safetensors.h"
#include "tests/ckpt_testutil.h"
#include "tests/engine_testutil.h"
#include "tests/qexport_cases.h"

static const float *ref_tensor(const st_file *f, const char *name, size_t n) {
    const st_tensor *t = st_find(f, name);
    if (!t || t->dtype != ST_F32 || t->n_elems != n) {
        t_fail(__FILE__, __LINE__, "%s: %s missing or not F32 [%zu]", f->path, name, n);
        return NULL;
    }
    return t->data;
}

static void check_case(const qexport_case *c) {
    const char *src = getenv("SMELT_SOURCE_DIR") ? getenv("SMELT_SOURCE_DIR") : ".";
    char fx[1024], refdir[1024], dir[1024], path[1100];
    snprintf(fx, sizeof fx, "%s/tests/fixtures", src);
    snprintf(refdir, sizeof refdir, "%s/tests/fixtures/quant/%s", src, c->name);
    snprintf(dir, sizeof dir, "%s/%s", t_tmpdir(), c->name);
    EXPECT_OK(qexport_write(c, fx, dir), c->name);

    snprintf(path, sizeof path, "%s/reference.json", refdir);
    char *text = NULL;
    size_t len;
    EXPECT_OK(fs_read_file(path, 1 << 20, &text, &len), path);
    cJSON *ref = text ? cJSON_ParseWithLength(text, len) : NULL;
    CHECK(ref != NULL, "%s: reference.json", c->name);
    if (!ref) return free(text);

    /* 1. the files */
    const cJSON *files = cJSON_GetObjectItem(ref, "files");
    for (const cJSON *e = files ? files->child : NULL; e; e = e->next) {
        char hex[SHA256_HEX_LEN + 1], fp[1100];
        snprintf(fp, sizeof fp, "%s/%s", dir, e->string);
        EXPECT_OK(sha256_file(hex, fp, NULL), fp);
        CHECK(!strcmp(hex, e->valuestring), "%s: %s is not the file the reference read (rerun tools/check_qexport.py "
              "if the writer changed on purpose)", c->name, e->string);
    }

    /* 2. the weights */
    model m;
    EXPECT_OK(model_load(&m, dir), c->name);
    CHECK(model_is_quantized(&m), "%s: loads quantized", c->name);
    const cJSON *deq = cJSON_GetObjectItem(ref, "dequant_sha256");
    int n_set = 0;
    for (int l = 0; m.quant && l <= m.cfg.n_layers; l++)
        for (int k = 0; k < (l == m.cfg.n_layers ? 1 : QLIN_N); k++) {
            const int kk = l == m.cfg.n_layers ? QLIN_N : k;
            const qweight *w = model_quant_at(m.quant, l == m.cfg.n_layers ? 0 : l, kk);
            if (!qweight_is_set(w)) continue;
            n_set++;
            char mod[96], hex[SHA256_HEX_LEN + 1];
            qlin_module_name(mod, sizeof mod, l, kk);
            float *x = malloc(sizeof(float) * (size_t)w->n_out * w->n_in);
            qweight_dequantize(x, w);
            sha256_hex(hex, x, sizeof(float) * (size_t)w->n_out * w->n_in);
            free(x);
            const cJSON *want = cJSON_GetObjectItem(deq, mod);
            CHECK(want && !strcmp(want->valuestring, hex), "%s: %s dequantizes differently from the reference's reading",
                  c->name, mod);
        }
    CHECK(n_set == cJSON_GetArraySize(deq), "%s: %d quantized linears, the reference read %d", c->name, n_set,
          cJSON_GetArraySize(deq));

    /* 3. the logits */
    snprintf(path, sizeof path, "%s/reference.safetensors", refdir);
    st_file rf;
    EXPECT_OK(st_open(&rf, path), path);
    const int T = QEXPORT_N_TOKENS, V = m.cfg.vocab;
    const size_t nl = (size_t)T * V;
    float *got = malloc(sizeof(float) * nl);
    int rows[QEXPORT_N_TOKENS];
    for (int i = 0; i < T; i++) rows[i] = i;
    kv_cache kv;
    EXPECT_OK(kv_cache_init(&kv, &m.cfg, T), "kv");
    EXPECT_OK(model_extend(&m, &kv, qexport_tokens, T, rows, T, got), "extend");
    kv_cache_free(&kv);
    const float *want = ref_tensor(&rf, "logits", nl);
    const model_config *cf = &m.cfg;
    const double tol = 2 * 1.1920929e-7 *
                       (cf->n_layers * (2.0 * cf->hidden + cf->n_heads * cf->head_dim + cf->intermediate + cf->head_dim + T) +
                        cf->hidden);
    const qweight *w0 = m.quant ? model_quant_at(m.quant, 0, QLIN_Q) : NULL;
    if (want && w0 && w0->act == QA_NONE) {
        const double e = tu_nerr(got, want, nl);
        CHECK(e <= tol, "%s: logits %.3e from transformers' (tol %.3e)", c->name, e, tol);
    } else if (want && w0) {
        const float *aq = ref_tensor(&rf, "logits_actq", nl), *tr = ref_tensor(&rf, "logits_transformers", nl);
        if (aq && tr) {
            const double E = tu_nerr(aq, want, nl), Et = tu_nerr(tr, want, nl), e = tu_nerr(got, aq, nl), et = tu_nerr(got, tr, nl);
            CHECK(E > tol && e <= 0.1 * E, "%s: logits %.3e from the emulated activation quantization (effect %.3e)",
                  c->name, e, E);
            CHECK(et <= 2 * Et, "%s: logits %.3e from transformers' run (its activation quantization moves them %.3e)",
                  c->name, et, Et);
            if (getenv("SMELT_TEST_VERBOSE"))
                printf("%s: effect %.3e, smelt vs emulation %.3e, vs transformers %.3e (its effect %.3e)\n", c->name, E, e,
                       et, Et);
        }
    }
    free(got);
    st_close(&rf);
    model_free(&m);
    cJSON_Delete(ref);
    free(text);
}

int main(void) {
    kernels_set_threads(1);
    for (int i = 0; i < QEXPORT_N_CASES; i++) check_case(&qexport_cases[i]);
    return t_finish("test_qexport");
}
