/* test_checkpoint.c: config.json parsing/writing, whole-model load against the transformers
 * fixtures (every tensor's sha256 as PyTorch recorded it), save/load round trips (fp32 bitwise,
 * bf16/f16 = round-to-nearest-even of the original), sharded folders built here, pruned
 * (per-layer) configs, and checkpoints that do not match their config. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/fsutil.h"
#include "common/sha256.h"
#include "model/checkpoint.h"
#include "model/hfconfig.h"
#include "tests/ckpt_testutil.h"

static const char *const fixtures[] = {"llama_gqa", "llama_tied", "llama_rope3", "qwen2_bias"};
#define N_FIXTURES 4

/* ---- config.json ---- */

static const char *const base_llama = "\"model_type\": \"llama\", \"hidden_size\": 16, \"num_hidden_layers\": 2, "
                                      "\"num_attention_heads\": 4, \"intermediate_size\": 32, \"vocab_size\": 64";

static int parse_with(model_config *c, const char *fmt, const char *extra) {
    char buf[2048];
    snprintf(buf, sizeof buf, fmt, extra);
    return hfconfig_parse(c, buf, strlen(buf), "cfg.json");
}

typedef struct {
    const char *json;        /* a whole config.json */
    const char *expect[3];
} bad_config;

#define LL "{\"model_type\": \"llama\", \"hidden_size\": 16, \"num_hidden_layers\": 2, \"num_attention_heads\": 4, " \
           "\"intermediate_size\": 32"
static const bad_config bad_configs[] = {
    {"[1, 2]", {"not a JSON object"}},
    {"{\"model_type\": \"gpt2\"}", {"\"gpt2\" is not supported"}},
    {"{\"hidden_size\": 16}", {"\"model_type\" is (missing)"}},
    {LL ", \"vocab_size\": -3}", {"\"vocab_size\" is -3", "integer from 1"}},
    {LL ", \"vocab_size\": \"64\"}", {"\"vocab_size\" is \"64\""}},
    {LL "}", {"\"vocab_size\" is missing"}},
    {LL ", \"vocab_size\": 64, \"num_key_value_heads\": 3}", {"4 attention heads and 3 key/value heads"}},
    {LL ", \"vocab_size\": 64, \"rope_scaling\": {\"rope_type\": \"yarn\", \"factor\": 4}}", {"rope_type is \"yarn\""}},
    {LL ", \"vocab_size\": 64, \"rope_parameters\": {\"rope_type\": \"llama3\", \"rope_theta\": 1e4, "
        "\"low_freq_factor\": 1, \"high_freq_factor\": 4}}", {"no \"factor\""}},
    {LL ", \"vocab_size\": 64, \"hidden_act\": \"gelu\"}", {"\"hidden_act\" is \"gelu\""}},
    {LL ", \"vocab_size\": 64, \"attention_bias\": true}", {"attention_bias is true"}},
    {LL ", \"vocab_size\": 64, \"smelt_layers\": [{\"num_attention_heads\": 4, \"intermediate_size\": 32}]}",
     {"\"smelt_layers\"", "list of 2 per-layer"}},
    {LL ", \"vocab_size\": 64, \"rms_norm_eps\": 0}", {"\"rms_norm_eps\" is 0", "positive"}},
    {LL ", \"vocab_size\": 64, \"tie_word_embeddings\": \"yes\"}", {"\"tie_word_embeddings\"", "true or false"}},
    {"{\"model_type\": \"llama\", \"hidden_size\": 16, \"num_hidden_layers\": 1000, \"num_attention_heads\": 4, "
     "\"intermediate_size\": 32, \"vocab_size\": 64}", {"\"num_hidden_layers\" is 1000", "1 to 256"}},
    {LL ", \"vocab_size\": 64, \"quantization_config\": {\"quant_method\": \"gptq\"}}", {"quantized"}},
    {LL ", \"vocab_size\": 64, \"head_dim\": 5}", {"head_dim 5 is odd"}},
    {LL ", \"vocab_size\": 64, \"eos_token_id\": \"x\"}", {"\"eos_token_id\""}},
    {"{\"model_type\": \"llama\", \"hidden_size\": 18, \"num_hidden_layers\": 2, \"num_attention_heads\": 4, "
     "\"intermediate_size\": 32, \"vocab_size\": 64}", {"not a multiple", "add \"head_dim\""}},
    {"{\"model_type\": \"qwen2\", \"hidden_size\": 16, \"num_hidden_layers\": 2, \"num_attention_heads\": 4, "
     "\"intermediate_size\": 32, \"vocab_size\": 64, \"use_sliding_window\": true}", {"use_sliding_window is true"}},
    /* found by fuzz_hfconfig: a derived head_dim above the limit an explicit one has */
    {"{\"model_type\": \"llama\", \"hidden_size\": 161000, \"num_hidden_layers\": 2, \"num_attention_heads\": 1, "
     "\"intermediate_size\": 32, \"vocab_size\": 64}", {"head_dim (hidden_size 161000 / num_attention_heads 1", "2 to 4096"}},
    {"{\"model_type\": \"qwen2\", \"hidden_size\": 16, \"num_hidden_layers\": 2, \"num_attention_heads\": 4, "
     "\"intermediate_size\": 32, \"vocab_size\": 64, \"layer_types\": [\"full_attention\", \"sliding_attention\"]}",
     {"\"layer_types\"", "sliding_attention"}},
    {LL ", \"vocab_size\": 64, \"num_key_value_heads\": 2, \"smelt_layers\": [{\"num_attention_heads\": 4, "
        "\"num_key_value_heads\": 2, \"intermediate_size\": 30}, {\"num_attention_heads\": 2, \"intermediate_size\": 8}]}",
     {"smelt_layers[0]", "differs from the top-level"}},
};

static void check_roundtrip_json(const model_config *c, const char *what) {
    strbuf sb = STRBUF_INIT;
    EXPECT_OK(hfconfig_to_json(&sb, c, "bfloat16"), "hfconfig_to_json");
    model_config back;
    EXPECT_OK(hfconfig_parse(&back, sb_str(&sb), sb.len, what), "parse of written config");
    CHECK(t_config_equal(c, &back), "%s: config.json written then read differs:\n%s", what, sb_str(&sb));
    sb_free(&sb);
}

static void test_config(void) {
    model_config c;
    /* transformers 5 (rope_parameters, dtype) as the fixtures were saved */
    char path[4200];
    snprintf(path, sizeof path, "%s/config.json", t_fixture("llama_rope3"));
    EXPECT_OK(hfconfig_load(&c, path), "llama_rope3 config");
    CHECK(c.rope_scaling == ROPE_SCALING_LLAMA3 && c.rope_factor == 8 && c.rope_low_freq_factor == 1 &&
          c.rope_high_freq_factor == 4 && c.rope_original_max_pos == 64 && c.rope_theta == 10000 && c.max_pos == 256,
          "llama3 rope_parameters read");
    CHECK(c.n_heads == 2 && c.n_kv_heads == 1 && c.head_dim == 8 && c.layers[1].intermediate == 32, "rope3 sizes");
    snprintf(path, sizeof path, "%s/config.json", t_fixture("llama_gqa"));
    EXPECT_OK(hfconfig_load(&c, path), "llama_gqa config");
    CHECK(c.head_dim == 8 && c.n_heads == 4 && c.n_kv_heads == 2 && !c.tie_embeddings && c.rms_eps == 1e-5f &&
          c.bos_id == 1 && c.eos_id == 2, "gqa: explicit head_dim 8 with hidden 16 / 4 heads");
    snprintf(path, sizeof path, "%s/config.json", t_fixture("qwen2_bias"));
    EXPECT_OK(hfconfig_load(&c, path), "qwen2 config");
    CHECK(c.attention_bias && !strcmp(c.model_type, "qwen2") && c.bos_id == -1 && c.eos_id == 3 && c.head_dim == 4,
          "qwen2: qkv bias implied, bos null");
    /* legacy keys as Llama 3.1 ships them: rope_theta, rope_scaling with "rope_type", eos list */
    EXPECT_OK(parse_with(&c, "{%s, \"rope_theta\": 500000.0, \"rope_scaling\": {\"factor\": 8.0, \"low_freq_factor\": 1.0, "
                             "\"high_freq_factor\": 4.0, \"original_max_position_embeddings\": 8192, \"rope_type\": "
                             "\"llama3\"}, \"eos_token_id\": [128001, 128008, 128009], \"bos_token_id\": 128000, "
                             "\"torch_dtype\": \"bfloat16\", \"max_position_embeddings\": 131072}", base_llama), "legacy");
    CHECK(c.rope_theta == 500000 && c.rope_scaling == ROPE_SCALING_LLAMA3 && c.rope_original_max_pos == 8192 &&
          c.eos_id == 128001 && c.n_eos == 3 && c.eos_ids[2] == 128009 && c.bos_id == 128000, "legacy llama 3.1 keys");
    check_roundtrip_json(&c, "legacy");
    /* "type" instead of "rope_type", original_max defaulting to max_position_embeddings */
    EXPECT_OK(parse_with(&c, "{%s, \"rope_scaling\": {\"type\": \"llama3\", \"factor\": 2, \"low_freq_factor\": 1, "
                             "\"high_freq_factor\": 2}, \"max_position_embeddings\": 77}", base_llama), "type key");
    CHECK(c.rope_scaling == ROPE_SCALING_LLAMA3 && c.rope_original_max_pos == 77, "original_max defaults to max_pos");
    /* defaults */
    EXPECT_OK(parse_with(&c, "{%s}", base_llama), "minimal llama");
    CHECK(c.n_kv_heads == 4 && c.head_dim == 4 && c.rms_eps == 1e-6f && c.rope_theta == 10000 && c.max_pos == 2048 &&
          !c.tie_embeddings && !c.attention_bias && c.bos_id == 1 && c.eos_id == 2 && c.layers[1].n_heads == 4,
          "llama defaults (transformers LlamaConfig)");
    EXPECT_OK(parse_with(&c, "{%s, \"rope_scaling\": {\"rope_type\": \"default\"}, \"num_key_value_heads\": null}",
                         base_llama), "default rope type, null kv heads");
    CHECK(c.rope_scaling == ROPE_SCALING_NONE && c.n_kv_heads == 4, "default rope");
    for (size_t i = 0; i < sizeof bad_configs / sizeof *bad_configs; i++) {
        const bad_config *b = &bad_configs[i];
        int rc = hfconfig_parse(&c, b->json, strlen(b->json), "bad.json");
        if (rc != -1) fprintf(stderr, "bad config %zu parsed: %s\n", i, b->json);
        EXPECT_ERR(rc, ERR_INPUT, "bad.json", b->expect[0], b->expect[1], b->expect[2]);
    }
    /* per-layer sizes (pruned): the smelt extension round-trips; the standard keys hold layer 0 */
    EXPECT_OK(parse_with(&c, "{%s, \"num_key_value_heads\": 2}", base_llama), "base");
    c.layers[1] = (layer_config){2, 1, 24};
    strbuf sb = STRBUF_INIT;
    EXPECT_OK(hfconfig_to_json(&sb, &c, NULL), "to_json");
    CHECK(strstr(sb_str(&sb), "\"smelt_layers\"") && strstr(sb_str(&sb), "\"intermediate_size\": 32,"),
          "smelt_layers written, top-level = layer 0");
    sb_free(&sb);
    check_roundtrip_json(&c, "pruned");
    CHECK(!config_is_uniform(&c), "pruned is not uniform");
}

/* ---- fixtures ---- */

/* Every tensor's shape and sha256 against the reference.json that PyTorch wrote. */
static void check_hashes(const model_config *c, const model_weights *w, const char *fixture, const char *key) {
    char path[4200];
    snprintf(path, sizeof path, "%s/reference.json", fixture);
    char *text = NULL;
    size_t len;
    if (fs_read_file(path, 0, &text, &len)) {
        CHECK(0, "%s", err_msg());
        return;
    }
    cJSON *root = cJSON_Parse(text);
    free(text);
    const cJSON *tensors = cJSON_GetObjectItem(root, key);
    int n = weights_tensors(w, c, NULL, 0);
    weights_tensor *wt = calloc((size_t)n, sizeof *wt);
    weights_tensors(w, c, wt, n);
    CHECK(cJSON_GetArraySize(tensors) == n, "%s: %d tensors, reference has %d", fixture, n, cJSON_GetArraySize(tensors));
    for (int i = 0; i < n; i++) {
        const cJSON *t = cJSON_GetObjectItem(tensors, wt[i].name);
        if (!t) {
            CHECK(0, "%s: reference has no %s", fixture, wt[i].name);
            continue;
        }
        const cJSON *shape = cJSON_GetObjectItem(t, "shape");
        int ok = cJSON_GetArraySize(shape) == wt[i].ndim;
        for (int k = 0; ok && k < wt[i].ndim; k++) ok = cJSON_GetArrayItem(shape, k)->valueint == wt[i].shape[k];
        CHECK(ok, "%s: %s has another shape than the reference", fixture, wt[i].name);
        size_t elems = (size_t)wt[i].shape[0] * (size_t)(wt[i].ndim == 2 ? wt[i].shape[1] : 1);
        char hex[SHA256_HEX_LEN + 1];
        sha256_hex(hex, wt[i].data, elems * sizeof(float));
        CHECK(!strcmp(hex, cJSON_GetObjectItem(t, "sha256")->valuestring), "%s: %s differs from PyTorch's bytes",
              fixture, wt[i].name);
    }
    free(wt);
    cJSON_Delete(root);
}

static void test_fixtures_and_roundtrips(void) {
    for (int f = 0; f < N_FIXTURES; f++) {
        model_config c, c2;
        model_weights w, w2;
        const char *fx = t_fixture(fixtures[f]);
        EXPECT_OK(checkpoint_load(fx, &c, &w), fixtures[f]);
        if (!w.mem) continue;
        check_hashes(&c, &w, fx, "tensors");
        CHECK(w.n_floats == weights_count(&c), "n_floats");
        static const st_dtype dts[] = {ST_F32, ST_BF16, ST_F16};
        for (int d = 0; d < 3; d++) {
            char name[64];
            snprintf(name, sizeof name, "%s-%s", fixtures[f], st_dtype_name(dts[d]));
            const char *out = t_path(name);
            EXPECT_OK(checkpoint_save(out, &c, &w, dts[d]), "checkpoint_save");
            EXPECT_OK(checkpoint_load(out, &c2, &w2), "load of the save");
            if (!w2.mem) continue;
            CHECK(t_config_equal(&c, &c2), "%s: config changed by the round trip", name);
            CHECK(w2.n_floats == w.n_floats, "%s: size", name);
            size_t bad = 0;
            for (size_t i = 0; i < w.n_floats; i++) {
                float want = w.mem[i];
                if (dts[d] == ST_BF16) want = st_bf16_to_f32(st_f32_to_bf16(want));
                if (dts[d] == ST_F16) want = st_f16_to_f32(st_f32_to_f16(want));
                bad += memcmp(&want, &w2.mem[i], sizeof(float)) != 0;
            }
            CHECK(!bad, "%s: %zu of %zu floats differ from the %s rounding of the original", name, bad, w.n_floats,
                  st_dtype_name(dts[d]));
            if (c.tie_embeddings) CHECK(w2.lm_head == w2.embed, "tied head stays tied");
            st_set s;
            EXPECT_OK(st_set_open(&s, out), "open the save");
            int all = s.n_tensors > 0;
            for (int i = 0; i < s.n_tensors; i++) all &= s.tensors[i]->dtype == dts[d];
            CHECK(all && (st_set_find(&s, "lm_head.weight", NULL) == NULL) == (c.tie_embeddings != 0), "%s: dtype and lm_head", name);
            CHECK(s.n_files == 1 && st_meta_get(&s.files[0], "format") && !strcmp(st_meta_get(&s.files[0], "format"), "pt"),
                  "metadata format pt (transformers requires it)");
            st_set_close(&s);
            weights_free(&w2);
        }
        weights_free(&w);
    }
}

/* ---- sharded ---- */

static void test_sharded(void) {
    model_config c, c2;
    model_weights w, w2;
    EXPECT_OK(checkpoint_load(t_fixture("qwen2_bias"), &c, &w), "load");
    if (!w.mem) return;
    const char *dir = t_path("sharded");
    fs_mkdir_p(dir, 0755);
    int n = weights_tensors(&w, &c, NULL, 0);
    weights_tensor *wt = calloc((size_t)n, sizeof *wt);
    st_entry *e = calloc((size_t)n, sizeof *e);
    weights_tensors(&w, &c, wt, n);
    strbuf idx = STRBUF_INIT;
    sb_puts(&idx, "{\"metadata\": {}, \"weight_map\": {");
    for (int i = 0; i < n; i++) {
        e[i] = (st_entry){.name = wt[i].name, .ndim = wt[i].ndim, .shape = {wt[i].shape[0], wt[i].shape[1]}, .f32 = wt[i].data};
        sb_printf(&idx, "%s\"%s\": \"model-0000%d-of-00002.safetensors\"", i ? ", " : "", wt[i].name, i < n / 2 ? 1 : 2);
    }
    sb_puts(&idx, "}}");
    char p[4200];
    snprintf(p, sizeof p, "%s/model-00001-of-00002.safetensors", dir);
    EXPECT_OK(st_write(p, e, n / 2, ST_F32, NULL, 0), "shard 1");
    snprintf(p, sizeof p, "%s/model-00002-of-00002.safetensors", dir);
    EXPECT_OK(st_write(p, e + n / 2, n - n / 2, ST_BF16, NULL, 0), "shard 2 (bf16: mixed dtypes load too)");
    snprintf(p, sizeof p, "%s/model.safetensors.index.json", dir);
    t_write(p, idx.buf, idx.len);
    snprintf(p, sizeof p, "%s/config.json", dir);
    EXPECT_OK(hfconfig_save(p, &c, "float32"), "config");
    for (int via = 0; via < 2; via++) {
        snprintf(p, sizeof p, "%s/model.safetensors.index.json", dir);
        EXPECT_OK(checkpoint_load(via ? p : dir, &c2, &w2), "sharded load");
        if (!w2.mem) continue;
        CHECK(t_config_equal(&c, &c2), "config");
        size_t bad = 0, half = (size_t)(wt[n / 2].data - w.mem); /* floats of the fp32 shard */
        for (size_t i = 0; i < w.n_floats; i++) {
            float want = i < half ? w.mem[i] : st_bf16_to_f32(st_f32_to_bf16(w.mem[i]));
            bad += memcmp(&want, &w2.mem[i], 4) != 0;
        }
        CHECK(!bad, "sharded load: %zu floats differ", bad);
        weights_free(&w2);
    }
    sb_free(&idx);
    free(wt);
    free(e);
    weights_free(&w);
}

/* ---- checkpoints that do not match their config ---- */

/* Writes dir/model.safetensors from the tensors of (c, w), dropping `drop`, adding `extra` (an
 * fp32 [rows] tensor of zeros, or a copy of embed when named lm_head.weight), and storing `i8`
 * as raw I8. Then dir/config.json from c. */
static void write_variant(const char *dir, const model_config *c, const model_weights *w, const char *drop,
                          const char *extra, const char *i8) {
    fs_mkdir_p(dir, 0755);
    int n = weights_tensors(w, c, NULL, 0);
    weights_tensor *wt = calloc((size_t)n, sizeof *wt);
    st_entry *e = calloc((size_t)n + 1, sizeof *e);
    static float zeros[64];
    static signed char bytes[1 << 16];
    weights_tensors(w, c, wt, n);
    int m = 0;
    for (int i = 0; i < n; i++) {
        if (drop && !strcmp(wt[i].name, drop)) continue;
        e[m] = (st_entry){.name = wt[i].name, .ndim = wt[i].ndim, .shape = {wt[i].shape[0], wt[i].shape[1]}, .f32 = wt[i].data};
        if (i8 && !strcmp(wt[i].name, i8)) {
            e[m].f32 = NULL;
            e[m].raw = bytes;
            e[m].raw_dtype = ST_I8;
        }
        m++;
    }
    if (extra && !strcmp(extra, "lm_head.weight"))
        e[m++] = (st_entry){.name = extra, .ndim = 2, .shape = {c->vocab, c->hidden}, .f32 = w->embed};
    else if (extra)
        e[m++] = (st_entry){.name = extra, .ndim = 1, .shape = {c->hidden}, .f32 = zeros};
    char p[4200];
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    EXPECT_OK(st_write(p, e, m, ST_F32, NULL, 0), "write variant");
    snprintf(p, sizeof p, "%s/config.json", dir);
    EXPECT_OK(hfconfig_save(p, c, "float32"), "config variant");
    free(wt);
    free(e);
}

static void test_mismatches(void) {
    model_config c, c2;
    model_weights w, w2;
    EXPECT_OK(checkpoint_load(t_fixture("llama_gqa"), &c, &w), "load");
    if (!w.mem) return;
    const char *d = t_path("missing");
    write_variant(d, &c, &w, "model.layers.1.mlp.up_proj.weight", NULL, NULL);
    EXPECT_ERR(checkpoint_load(d, &c2, &w2), ERR_INPUT, "'model.layers.1.mlp.up_proj.weight'", "[32, 16]", "missing");
    CHECK(!w2.mem, "nothing left allocated after a failure");
    d = t_path("extra");
    write_variant(d, &c, &w, NULL, "model.layers.0.self_attn.o_proj.bias", NULL);
    EXPECT_ERR(checkpoint_load(d, &c2, &w2), ERR_INPUT, "1 tensor(s) that config.json does not describe",
               "'model.layers.0.self_attn.o_proj.bias'");
    d = t_path("i8");
    write_variant(d, &c, &w, NULL, NULL, "model.layers.0.self_attn.k_proj.weight");
    EXPECT_ERR(checkpoint_load(d, &c2, &w2), ERR_INPUT, "'model.layers.0.self_attn.k_proj.weight' is I8");
    /* wrong shape vs config: the same weights under a config with a wider MLP */
    model_config wide = c;
    wide.intermediate = 48;
    config_fill_uniform(&wide);
    d = t_path("wide");
    write_variant(d, &c, &w, NULL, NULL, NULL);
    char p[4200];
    snprintf(p, sizeof p, "%s/config.json", d);
    EXPECT_OK(hfconfig_save(p, &wide, NULL), "wide config");
    EXPECT_ERR(checkpoint_load(d, &c2, &w2), ERR_INPUT, "'model.layers.0.mlp.gate_proj.weight' has shape [32, 16]",
               "implies [48, 16]");
    /* bad config.json values inside a checkpoint */
    t_write(p, "{\"model_type\": \"llama\", \"hidden_size\": \"x\"}", 44);
    EXPECT_ERR(checkpoint_load(d, &c2, &w2), ERR_INPUT, "config.json", "\"hidden_size\" is \"x\"");
    /* a safetensors file with no config.json beside it */
    unlink(p);
    snprintf(p, sizeof p, "%s/model.safetensors", d);
    EXPECT_ERR(checkpoint_load(p, &c2, &w2), ERR_INPUT, "no config.json");
    /* a damaged model.safetensors */
    d = t_path("trunc");
    t_copy_dir(d, t_fixture("llama_gqa"));
    snprintf(p, sizeof p, "%s/model.safetensors", d);
    if (truncate(p, 20000)) perror("truncate");
    EXPECT_ERR(checkpoint_load(d, &c2, &w2), ERR_CORRUPT, "model.safetensors", "truncated");
    weights_free(&w);

    /* tied: an lm_head equal to the embedding loads; a different one is refused */
    EXPECT_OK(checkpoint_load(t_fixture("llama_tied"), &c, &w), "tied");
    if (!w.mem) return;
    d = t_path("tied-equal");
    write_variant(d, &c, &w, NULL, "lm_head.weight", NULL);
    EXPECT_OK(checkpoint_load(d, &c2, &w2), "tied with an equal lm_head");
    weights_free(&w2);
    /* the same model plus an lm_head.weight that differs from the embedding at element 5 */
    d = t_path("tied-differ");
    fs_mkdir_p(d, 0755);
    float *head = malloc((size_t)c.vocab * c.hidden * sizeof(float));
    memcpy(head, w.embed, (size_t)c.vocab * c.hidden * sizeof(float));
    head[5] += 1.0f;
    {
        int n = weights_tensors(&w, &c, NULL, 0);
        weights_tensor *wt = calloc((size_t)n, sizeof *wt);
        st_entry *e = calloc((size_t)n + 1, sizeof *e);
        weights_tensors(&w, &c, wt, n);
        for (int i = 0; i < n; i++)
            e[i] = (st_entry){.name = wt[i].name, .ndim = wt[i].ndim, .shape = {wt[i].shape[0], wt[i].shape[1]}, .f32 = wt[i].data};
        e[n] = (st_entry){.name = "lm_head.weight", .ndim = 2, .shape = {c.vocab, c.hidden}, .f32 = head};
        snprintf(p, sizeof p, "%s/model.safetensors", d);
        EXPECT_OK(st_write(p, e, n + 1, ST_F32, NULL, 0), "tied with another head");
        snprintf(p, sizeof p, "%s/config.json", d);
        EXPECT_OK(hfconfig_save(p, &c, NULL), "tied config");
        free(wt);
        free(e);
    }
    EXPECT_ERR(checkpoint_load(d, &c2, &w2), ERR_INPUT, "tie_word_embeddings is true", "lm_head.weight differs",
               "element 5");
    free(head);
    weights_free(&w);

    /* qwen2 weights under a llama config: the biases are unexpected */
    d = t_path("qwen-as-llama");
    t_copy_dir(d, t_fixture("qwen2_bias"));
    EXPECT_OK(checkpoint_load(d, &c, &w), "qwen2 copy");
    weights_free(&w);
    snprintf(c.model_type, sizeof c.model_type, "llama");
    c.attention_bias = 0;
    snprintf(p, sizeof p, "%s/config.json", d);
    EXPECT_OK(hfconfig_save(p, &c, NULL), "llama config");
    EXPECT_ERR(checkpoint_load(d, &c2, &w2), ERR_INPUT, "6 tensor(s) that config.json does not describe",
               "q_proj.bias", ", ...");
    EXPECT_ERR(checkpoint_load(t_path("no-such-model"), &c2, &w2), ERR_INPUT, "does not exist");
}

/* ---- per-layer sizes (pruned) ---- */

static void test_pruned(void) {
    model_config c, c2;
    model_weights w, w2;
    char p[4200];
    snprintf(p, sizeof p, "%s/config.json", t_fixture("llama_gqa"));
    EXPECT_OK(hfconfig_load(&c, p), "gqa config");
    c.layers[1] = (layer_config){2, 1, 24};
    EXPECT_OK(weights_alloc(&w, &c), "alloc");
    if (!w.mem) return;
    t_fill_random(w.mem, w.n_floats, 3);
    const char *d = t_path("pruned");
    EXPECT_OK(checkpoint_save(d, &c, &w, ST_F32), "save pruned");
    EXPECT_OK(checkpoint_load(d, &c2, &w2), "load pruned");
    if (w2.mem) {
        CHECK(t_config_equal(&c, &c2) && !config_is_uniform(&c2), "pruned config round trip");
        CHECK(w2.n_floats == w.n_floats && !memcmp(w.mem, w2.mem, w.n_floats * sizeof(float)), "pruned weights");
        CHECK(w2.layers[1].wq - w2.layers[1].attn_norm == 16, "layout");
        weights_free(&w2);
    }
    weights_free(&w);
}

int main(void) {
    test_config();
    test_fixtures_and_roundtrips();
    test_sharded();
    test_mismatches();
    test_pruned();
    return t_finish("test_checkpoint");
}
