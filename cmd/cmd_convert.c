/* cmd_convert.c: `smelt convert IN OUT [--dtype D] [--tokenizer SPEC]`: a llama2.c .bin, a GGUF
 * file or a Hugging Face folder/safetensors (sharded or not, any float dtype) -> a Hugging Face
 * folder (config.json, generation_config.json, model.safetensors, tokenizer files) that
 * transformers/vLLM load, or, when OUT ends in .gguf, a GGUF file that llama.cpp loads. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd/cli.h"
#include "cmd/commands.h"
#include "common/error.h"
#include "common/fsutil.h"
#include "common/log.h"
#include "model/checkpoint.h"
#include "model/gguf_export.h"
#include "model/tokenizer.h"

/* Tokenizer files copied verbatim from an HF source folder, so that OUT is usable as is. */
static const char *const tokenizer_files[] = {
    "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.json",
    "merges.txt",     "tokenizer.model",       "added_tokens.json",
};

static int convert_parse_dtype(const char *s, st_dtype *out) {
    if (!strcmp(s, "fp32") || !strcmp(s, "f32") || !strcmp(s, "float32")) *out = ST_F32;
    else if (!strcmp(s, "bf16") || !strcmp(s, "bfloat16")) *out = ST_BF16;
    else if (!strcmp(s, "fp16") || !strcmp(s, "f16") || !strcmp(s, "float16")) *out = ST_F16;
    else return -1;
    return 0;
}

/* The float dtype the source stores (one for all weight tensors), else F32. */
static st_dtype source_dtype(const char *in) {
    if (checkpoint_detect(in) != CKPT_HF) {
        err_clear();
        return ST_F32;
    }
    st_set s;
    if (st_set_open(&s, in)) {
        err_clear();
        return ST_F32;
    }
    st_dtype d = s.n_tensors ? s.tensors[0]->dtype : ST_F32;
    for (int i = 1; i < s.n_tensors; i++)
        if (s.tensors[i]->dtype != d) d = ST_F32;
    st_set_close(&s);
    return (d == ST_BF16 || d == ST_F16) ? d : ST_F32;
}

static int copy_tokenizer(const char *in, const char *out) {
    char *dir = fs_is_dir(in) ? xstrdup(in) : NULL;
    if (!dir) return 0; /* a single file or llama2.c: nothing beside it is ours to copy */
    int rc = 0;
    for (size_t i = 0; i < sizeof tokenizer_files / sizeof *tokenizer_files && !rc; i++) {
        char *src = fs_join(dir, tokenizer_files[i]), *dst = fs_join(out, tokenizer_files[i]);
        if (!src || !dst) rc = -1;
        else if (fs_exists(src) && strcmp(src, dst)) {
            rc = fs_copy_file(dst, src);
            if (!rc) log_info("copied %s", tokenizer_files[i]);
        }
        free(src);
        free(dst);
    }
    free(dir);
    return rc;
}

static int ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && !strcmp(s + n - m, suffix);
}

/* The tokenizer to carry over: --tokenizer, else IN's own (a folder's files, a GGUF's metadata);
 * NULL (no message) when IN has none. */
static int convert_tokenizer(const char *in, const char *spec, tokenizer **tok) {
    *tok = NULL;
    if (spec) return tokenizer_load(tok, spec);
    if (!fs_is_dir(in) && checkpoint_detect(in) != CKPT_GGUF) {
        err_clear();
        return 0;
    }
    if (tokenizer_load(tok, in)) {
        if (err_kind_get() == ERR_INPUT && (strstr(err_msg(), "holds no tokenizer") || strstr(err_msg(), "has no tokenizer"))) {
            err_clear();
            return 0;
        }
        return -1;
    }
    return 0;
}

/* The model folder's name (or the file's without extension) as general.name. */
static char *model_name(const char *in) {
    char *p = xstrdup(in);
    if (!p) return NULL;
    size_t n = strlen(p);
    while (n > 1 && p[n - 1] == '/') p[--n] = 0;
    char *base = strrchr(p, '/') ? strrchr(p, '/') + 1 : p;
    char *dot = fs_is_dir(in) ? NULL : strrchr(base, '.');
    if (dot && dot != base) *dot = 0;
    char *name = xstrdup(base);
    free(p);
    return name;
}

static int convert_to_gguf(const char *in, const char *out, const char *dtype_arg, const char *tok_spec) {
    ggml_type type = GGML_F32;
    if (dtype_arg) {
        const char *d = !strcmp(dtype_arg, "fp32") ? "f32" : !strcmp(dtype_arg, "fp16") ? "f16" : dtype_arg;
        if (ggml_type_parse(d, &type) ||
            (type != GGML_F32 && type != GGML_F16 && type != GGML_BF16 && type != GGML_Q8_0 && type != GGML_Q4_0 &&
             type != GGML_Q4_1))
            return cli_usage_error("convert", "--dtype '%s' is not one of f32, f16, bf16, q8_0, q4_0, q4_1 for a GGUF "
                                   "output", dtype_arg);
    } else {
        st_dtype sd = source_dtype(in);
        type = sd == ST_BF16 ? GGML_BF16 : sd == ST_F16 ? GGML_F16 : GGML_F32;
    }
    if (checkpoint_detect(in) == CKPT_UNKNOWN) return cli_fail("convert");
    tokenizer *tok = NULL;
    if (convert_tokenizer(in, tok_spec, &tok)) return cli_fail("convert");
    model_config cfg;
    model_weights w;
    if (checkpoint_load(in, &cfg, &w)) {
        tokenizer_free(tok);
        return cli_fail("convert");
    }
    char *name = model_name(in);
    int rc = gguf_save_model(out, &cfg, &w, tok, type, name);
    free(name);
    if (!rc) {
        uint64_t bytes = 0;
        fs_tree_bytes(out, &bytes);
        printf("wrote %s: GGUF %s %d layers, %zu parameters, %s, %llu bytes%s\n", out, cfg.model_type, cfg.n_layers,
               w.n_floats, ggml_type_name(type), (unsigned long long)bytes,
               tok ? "" : "; no tokenizer (pass --tokenizer to embed one)");
    }
    tokenizer_free(tok);
    weights_free(&w);
    return rc ? cli_fail("convert") : EXIT_OK;
}

int cmd_convert(int argc, char **argv) {
    const char *in = NULL, *out = NULL, *dtype_arg = NULL, *tok_spec = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--dtype") || !strcmp(argv[i], "--tokenizer")) {
            if (i + 1 >= argc) return cli_usage_error("convert", "%s needs a value", argv[i]);
            if (!strcmp(argv[i], "--dtype")) dtype_arg = argv[++i];
            else tok_spec = argv[++i];
        } else if (!strncmp(argv[i], "--dtype=", 8)) {
            dtype_arg = argv[i] + 8;
        } else if (argv[i][0] == '-' && argv[i][1]) {
            return cli_usage_error("convert", "unknown option '%s'", argv[i]);
        } else if (!in) {
            in = argv[i];
        } else if (!out) {
            out = argv[i];
        } else {
            return cli_usage_error("convert", "unexpected argument '%s'", argv[i]);
        }
    }
    if (!in || !out) return cli_usage_error("convert", "expected IN and OUT");
    if (ends_with(out, ".gguf")) return convert_to_gguf(in, out, dtype_arg, tok_spec);
    st_dtype dtype;
    if (dtype_arg && convert_parse_dtype(dtype_arg, &dtype))
        return cli_usage_error("convert", "--dtype '%s' is not one of bf16, fp32, fp16 for a Hugging Face folder (the "
                               "quantized types are for a .gguf OUT)", dtype_arg);
    if (!dtype_arg) dtype = source_dtype(in);
    ckpt_format fmt = checkpoint_detect(in);
    if (fmt == CKPT_UNKNOWN) return cli_fail("convert");
    tokenizer *tok = NULL;
    /* a folder's tokenizer files are copied as they are; a GGUF's tokenizer (or --tokenizer) is written */
    if ((fmt == CKPT_GGUF || tok_spec) && convert_tokenizer(in, tok_spec, &tok)) return cli_fail("convert");
    model_config cfg;
    model_weights w;
    if (checkpoint_load(in, &cfg, &w)) {
        tokenizer_free(tok);
        return cli_fail("convert");
    }
    int rc = checkpoint_save(out, &cfg, &w, dtype);
    if (!rc) rc = tok ? tokenizer_save_hf(tok, out) : copy_tokenizer(in, out);
    tokenizer_free(tok);
    if (rc) {
        weights_free(&w);
        return cli_fail("convert");
    }
    uint64_t bytes = 0;
    fs_tree_bytes(out, &bytes);
    printf("wrote %s: %s %d layers, %zu parameters, %s, %llu bytes\n", out, cfg.model_type, cfg.n_layers, w.n_floats,
           st_dtype_name(dtype), (unsigned long long)bytes);
    if (fmt == CKPT_LLAMA2C && !tok_spec)
        printf("note: the llama2.c tokenizer (tokenizer.bin, e.g. tok512.bin) is not converted; load it with smelt's "
               "llama2.c tokenizer (see docs/checkpoints.md)\n");
    weights_free(&w);
    return EXIT_OK;
}
