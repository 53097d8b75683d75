/* cmd_convert.c: `smelt convert IN OUT [--dtype bf16|fp32|fp16]`: a llama2.c .bin or a Hugging
 * Face folder/safetensors (sharded or not, any float dtype) -> a Hugging Face folder
 * (config.json, generation_config.json, model.safetensors) that transformers/vLLM load. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd/cli.h"
#include "cmd/commands.h"
#include "common/error.h"
#include "common/fsutil.h"
#include "common/log.h"
#include "model/checkpoint.h"

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

int cmd_convert(int argc, char **argv) {
    const char *in = NULL, *out = NULL, *dtype_arg = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--dtype")) {
            if (++i >= argc) return cli_usage_error("convert", "--dtype needs a value: bf16, fp32 or fp16");
            dtype_arg = argv[i];
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
    st_dtype dtype;
    if (dtype_arg && convert_parse_dtype(dtype_arg, &dtype))
        return cli_usage_error("convert", "--dtype '%s' is not one of bf16, fp32, fp16", dtype_arg);
    if (!dtype_arg) dtype = source_dtype(in);
    ckpt_format fmt = checkpoint_detect(in);
    if (fmt == CKPT_UNKNOWN) return cli_fail("convert");
    model_config cfg;
    model_weights w;
    if (checkpoint_load(in, &cfg, &w)) return cli_fail("convert");
    int rc = checkpoint_save(out, &cfg, &w, dtype);
    if (!rc) rc = copy_tokenizer(in, out);
    if (rc) {
        weights_free(&w);
        return cli_fail("convert");
    }
    uint64_t bytes = 0;
    fs_tree_bytes(out, &bytes);
    printf("wrote %s: %s %d layers, %zu parameters, %s, %llu bytes\n", out, cfg.model_type, cfg.n_layers, w.n_floats,
           st_dtype_name(dtype), (unsigned long long)bytes);
    if (fmt == CKPT_LLAMA2C)
        printf("note: the llama2.c tokenizer (tokenizer.bin, e.g. tok512.bin) is not converted; load it with smelt's "
               "llama2.c tokenizer (see docs/checkpoints.md)\n");
    weights_free(&w);
    return EXIT_OK;
}
