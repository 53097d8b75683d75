/* cmd_inspect.c: `smelt inspect MODEL [--json]`: architecture, per-layer sizes, parameter
 * count, dtypes and files on disk of an HF folder/safetensors, a GGUF file or a llama2.c .bin,
 * and whether the tensors match the config (shapes only: nothing is loaded into memory). A
 * quantized HF checkpoint (compressed-tensors, GPTQ) is read whole by the loader that runs it
 * (qcheckpoint.h): its check is that read, and its quantized linears are summarized. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cmd/cli.h"
#include "cmd/commands.h"
#include "common/error.h"
#include "common/fsutil.h"
#include "common/strbuf.h"
#include "model/checkpoint.h"
#include "model/gguf_model.h"
#include "model/hfconfig.h"
#include "model/model_load.h"
#include "model/qcheckpoint.h"
#include "model/qmodel.h"

typedef struct {
    const char *path;
    ckpt_format fmt;
    model_config cfg;
    size_t n_params;
    int n_files;
    char **file_names;
    uint64_t *file_bytes;
    uint64_t dtype_tensors[ST_N_DTYPES], dtype_bytes[ST_N_DTYPES];
    uint64_t ggml_tensors[GGML_N_TYPES], ggml_bytes[GGML_N_TYPES]; /* GGUF: by ggml type */
    char check[512]; /* "ok" or the first problem */
    char qformat[96]; /* quantized checkpoints: "compressed-tensors pack-quantized"; "" when dense */
    char quant[512];  /* quantized checkpoints: model_quant_summary */
} inspect_info;

static int file_size(const char *path, uint64_t *bytes) {
    struct stat st;
    if (stat(path, &st)) return err_errno("cannot stat %s", path);
    *bytes = (uint64_t)st.st_size;
    return 0;
}

static int add_file(inspect_info *in, const char *name, uint64_t bytes) {
    char **nn = xrealloc(in->file_names, (size_t)(in->n_files + 1) * sizeof *nn);
    if (!nn) return -1;
    in->file_names = nn;
    uint64_t *nb = xrealloc(in->file_bytes, (size_t)(in->n_files + 1) * sizeof *nb);
    if (!nb) return -1;
    in->file_bytes = nb;
    if (!(in->file_names[in->n_files] = xstrdup(name))) return -1;
    in->file_bytes[in->n_files++] = bytes;
    return 0;
}

/* Shapes of the expected tensors against the set, without loading anything. */
static void check_shapes(inspect_info *in, const st_set *s) {
    model_weights w;
    memset(&w, 0, sizeof w);
    int n = weights_tensors(&w, &in->cfg, NULL, 0), matched = 0;
    weights_tensor *wt = xcalloc((size_t)n, sizeof *wt);
    if (!wt) {
        snprintf(in->check, sizeof in->check, "not checked: %s", err_msg());
        return;
    }
    weights_tensors(&w, &in->cfg, wt, n);
    snprintf(in->check, sizeof in->check, "ok");
    for (int i = 0; i < n; i++) {
        const st_tensor *t = st_set_find(s, wt[i].name, NULL);
        int ok = t && t->ndim == wt[i].ndim && t->shape[0] == wt[i].shape[0] && (t->ndim < 2 || t->shape[1] == wt[i].shape[1]);
        if (!ok) {
            char want[64];
            if (wt[i].ndim == 2)
                snprintf(want, sizeof want, "[%lld, %lld]", (long long)wt[i].shape[0], (long long)wt[i].shape[1]);
            else
                snprintf(want, sizeof want, "[%lld]", (long long)wt[i].shape[0]);
            snprintf(in->check, sizeof in->check, "tensor '%s' is %s (the config implies shape %s)", wt[i].name,
                     t ? "of another shape" : "missing", want);
            free(wt);
            return;
        }
        if (t->dtype != ST_F32 && t->dtype != ST_BF16 && t->dtype != ST_F16) {
            snprintf(in->check, sizeof in->check, "tensor '%s' is %s; smelt loads F32/F16/BF16 weights", wt[i].name,
                     st_dtype_name(t->dtype));
            free(wt);
            return;
        }
        matched++;
    }
    int extra = s->n_tensors - matched;
    if (in->cfg.tie_embeddings && st_set_find(s, "lm_head.weight", NULL)) extra--;
    if (extra > 0) snprintf(in->check, sizeof in->check, "%d tensor(s) that the config does not describe", extra);
    free(wt);
}

static int gather_gguf(inspect_info *in) {
    gguf_file f;
    if (gguf_open(&f, in->path)) return -1;
    int rc = -1;
    if (gguf_model_config(&f, &in->cfg)) goto out;
    in->n_params = weights_count(&in->cfg);
    for (int64_t i = 0; i < f.n_tensors; i++) {
        in->ggml_tensors[f.tensors[i].type]++;
        in->ggml_bytes[f.tensors[i].type] += f.tensors[i].n_bytes;
    }
    if (gguf_model_check(&f, &in->cfg)) {
        snprintf(in->check, sizeof in->check, "%s", err_msg());
        err_clear();
    } else {
        snprintf(in->check, sizeof in->check, "ok");
    }
    const char *base = strrchr(in->path, '/') ? strrchr(in->path, '/') + 1 : in->path;
    rc = add_file(in, base, f.size);
out:
    gguf_close(&f);
    return rc;
}

/* A quantized checkpoint: read it as model_load does; the check is whether that succeeds. */
static void check_quantized(inspect_info *in) {
    model_config cfg;
    model_weights w;
    model_quant *q = NULL;
    if (qcheckpoint_load(in->path, &cfg, &w, &q)) {
        snprintf(in->check, sizeof in->check, "%s", err_msg());
        err_clear();
        return;
    }
    strbuf sb = STRBUF_INIT;
    if (model_quant_summary(&sb, q) == 0) snprintf(in->quant, sizeof in->quant, "%s", sb_str(&sb));
    snprintf(in->check, sizeof in->check, "ok (the quantized checkpoint reads back whole)");
    sb_free(&sb);
    model_quant_free(q);
    weights_free(&w);
}

static int gather(inspect_info *in) {
    in->fmt = checkpoint_detect(in->path);
    if (in->fmt == CKPT_UNKNOWN) return -1;
    if (in->fmt == CKPT_GGUF) return gather_gguf(in);
    if (in->fmt == CKPT_LLAMA2C) {
        uint64_t bytes = 0;
        if (llama2c_read_config(in->path, &in->cfg) || file_size(in->path, &bytes)) return -1;
        in->n_params = weights_count(&in->cfg);
        in->dtype_tensors[ST_F32] = (uint64_t)(2 + 9 * in->cfg.n_layers + !in->cfg.tie_embeddings);
        in->dtype_bytes[ST_F32] = 4 * (uint64_t)in->n_params;
        const char *base = strrchr(in->path, '/') ? strrchr(in->path, '/') + 1 : in->path;
        snprintf(in->check, sizeof in->check, "ok (file size matches the header)");
        return add_file(in, base, bytes);
    }
    char *dir = fs_is_dir(in->path) ? xstrdup(in->path) : NULL;
    if (!dir) {
        const char *slash = strrchr(in->path, '/');
        dir = slash ? xstrndup(in->path, (size_t)(slash - in->path)) : xstrdup(".");
    }
    char *cfg_path = dir ? fs_join(dir, "config.json") : NULL;
    st_set s;
    memset(&s, 0, sizeof s);
    int rc = -1;
    uint64_t bytes = 0;
    size_t plen = strlen(in->path);
    int is_cfg = plen >= 11 && !strcmp(in->path + plen - 11, "config.json"); /* config.json itself: its folder */
    const int quantized = qcheckpoint_probe(in->path, NULL, in->qformat, sizeof in->qformat);
    if (quantized < 0 || !cfg_path || (quantized ? hfconfig_load_quantized : hfconfig_load)(&in->cfg, cfg_path) ||
        st_set_open(&s, is_cfg ? dir : in->path))
        goto done;
    in->n_params = weights_count(&in->cfg);
    if (file_size(cfg_path, &bytes) || add_file(in, "config.json", bytes)) goto done;
    char *index = fs_join(dir, "model.safetensors.index.json");
    int sharded = index && (s.n_files > 1 || strcmp(s.file_names[0], "model.safetensors")) && fs_exists(index);
    if (sharded && (file_size(index, &bytes) || add_file(in, "model.safetensors.index.json", bytes))) sharded = -1;
    free(index);
    if (sharded < 0) goto done;
    for (int i = 0; i < s.n_files; i++)
        if (file_size(s.files[i].path, &bytes) || add_file(in, s.file_names[i], bytes)) goto done;
    for (int i = 0; i < s.n_tensors; i++) {
        in->dtype_tensors[s.tensors[i]->dtype]++;
        in->dtype_bytes[s.tensors[i]->dtype] += s.tensors[i]->end - s.tensors[i]->begin;
    }
    if (quantized) check_quantized(in);
    else check_shapes(in, &s);
    rc = 0;
done:
    st_set_close(&s);
    free(cfg_path);
    free(dir);
    return rc;
}

static void print_text(const inspect_info *in) {
    const model_config *c = &in->cfg;
    uint64_t total = 0;
    printf("model:        %s (%s)\n", in->path,
           in->fmt == CKPT_LLAMA2C ? "llama2.c checkpoint" : in->fmt == CKPT_GGUF ? "GGUF" : "Hugging Face safetensors");
    printf("architecture: %s (%s)\n", c->model_type, strcmp(c->model_type, "qwen2") ? "LlamaForCausalLM" : "Qwen2ForCausalLM");
    printf("hidden %d, layers %d, heads %d, kv heads %d, head_dim %d, intermediate %d, vocab %d\n", c->hidden,
           c->n_layers, c->n_heads, c->n_kv_heads, c->head_dim, c->intermediate, c->vocab);
    printf("rms_norm_eps %g, rope_theta %g", c->rms_eps, c->rope_theta);
    if (c->rope_scaling == ROPE_SCALING_LLAMA3)
        printf(", rope llama3 (factor %g, low %g, high %g, original max %d)", c->rope_factor, c->rope_low_freq_factor,
               c->rope_high_freq_factor, c->rope_original_max_pos);
    printf(", max positions %d\n", c->max_pos);
    printf("tied embeddings %s, qkv bias %s, bos %d, eos %d\n", c->tie_embeddings ? "yes" : "no",
           c->attention_bias ? "yes" : "no", c->bos_id, c->eos_id);
    printf("parameters:   %zu (%.2f M)\n", in->n_params, (double)in->n_params / 1e6);
    if (in->qformat[0]) printf("quantized:    %s: %s\n", in->qformat, in->quant[0] ? in->quant : "(not read)");
    printf("layers:       %s\n", config_is_uniform(c) ? "uniform" : "per-layer sizes differ (pruned)");
    printf("  layer  heads  kv_heads  intermediate\n");
    for (int l = 0; l < c->n_layers; l++)
        printf("  %5d  %5d  %8d  %12d\n", l, c->layers[l].n_heads, c->layers[l].n_kv_heads, c->layers[l].intermediate);
    printf("dtypes on disk:\n");
    for (int d = 0; d < ST_N_DTYPES; d++)
        if (in->dtype_tensors[d])
            printf("  %-8s %6llu tensors  %14llu bytes\n", st_dtype_name((st_dtype)d),
                   (unsigned long long)in->dtype_tensors[d], (unsigned long long)in->dtype_bytes[d]);
    for (int t = 0; t < GGML_N_TYPES; t++)
        if (in->ggml_tensors[t])
            printf("  %-8s %6llu tensors  %14llu bytes\n", ggml_type_name((ggml_type)t),
                   (unsigned long long)in->ggml_tensors[t], (unsigned long long)in->ggml_bytes[t]);
    printf("files:\n");
    for (int i = 0; i < in->n_files; i++) {
        printf("  %-40s %14llu bytes\n", in->file_names[i], (unsigned long long)in->file_bytes[i]);
        total += in->file_bytes[i];
    }
    printf("  %-40s %14llu bytes\n", "total", (unsigned long long)total);
    printf("check:        %s\n", in->check);
}

/* The shortest decimal that reads back as the same float (1e-05 rather than 9.99999975e-06). */
static const char *short_float(char buf[32], float v) {
    for (int prec = 1; prec <= 9; prec++) {
        snprintf(buf, 32, "%.*g", prec, (double)v);
        if (strtof(buf, NULL) == v) break;
    }
    return buf;
}

static int print_json(const inspect_info *in) {
    char f1[32], f2[32], f3[32];
    const model_config *c = &in->cfg;
    strbuf sb = STRBUF_INIT;
    int rc = sb_puts(&sb, "{\"path\": ");
    rc |= sb_json_string(&sb, in->path);
    rc |= sb_printf(&sb, ", \"format\": \"%s\", \"model_type\": \"%s\", \"architecture\": \"%s\"",
                    in->fmt == CKPT_LLAMA2C ? "llama2c" : in->fmt == CKPT_GGUF ? "gguf" : "hf", c->model_type,
                    strcmp(c->model_type, "qwen2") ? "LlamaForCausalLM" : "Qwen2ForCausalLM");
    rc |= sb_printf(&sb, ", \"hidden_size\": %d, \"num_hidden_layers\": %d, \"num_attention_heads\": %d, "
                    "\"num_key_value_heads\": %d, \"head_dim\": %d, \"intermediate_size\": %d, \"vocab_size\": %d",
                    c->hidden, c->n_layers, c->n_heads, c->n_kv_heads, c->head_dim, c->intermediate, c->vocab);
    rc |= sb_printf(&sb, ", \"rms_norm_eps\": %s, \"rope_theta\": %s, \"rope_scaling\": ", short_float(f1, c->rms_eps),
                    short_float(f2, c->rope_theta));
    if (c->rope_scaling == ROPE_SCALING_LLAMA3)
        rc |= sb_printf(&sb, "{\"rope_type\": \"llama3\", \"factor\": %s, \"low_freq_factor\": %s, "
                        "\"high_freq_factor\": %s, \"original_max_position_embeddings\": %d}",
                        short_float(f1, c->rope_factor), short_float(f2, c->rope_low_freq_factor),
                        short_float(f3, c->rope_high_freq_factor), c->rope_original_max_pos);
    else rc |= sb_puts(&sb, "null");
    rc |= sb_printf(&sb, ", \"max_position_embeddings\": %d, \"tie_word_embeddings\": %s, \"attention_bias\": %s, "
                    "\"bos_token_id\": %d, \"eos_token_id\": %d, \"parameters\": %zu, \"uniform\": %s, \"layers\": [",
                    c->max_pos, c->tie_embeddings ? "true" : "false", c->attention_bias ? "true" : "false", c->bos_id,
                    c->eos_id, in->n_params, config_is_uniform(c) ? "true" : "false");
    for (int l = 0; l < c->n_layers; l++)
        rc |= sb_printf(&sb, "%s{\"num_attention_heads\": %d, \"num_key_value_heads\": %d, \"intermediate_size\": %d}",
                        l ? ", " : "", c->layers[l].n_heads, c->layers[l].n_kv_heads, c->layers[l].intermediate);
    rc |= sb_puts(&sb, "], \"dtypes\": {");
    int first = 1;
    for (int d = 0; d < ST_N_DTYPES; d++)
        if (in->dtype_tensors[d]) {
            rc |= sb_printf(&sb, "%s\"%s\": {\"tensors\": %llu, \"bytes\": %llu}", first ? "" : ", ",
                            st_dtype_name((st_dtype)d), (unsigned long long)in->dtype_tensors[d],
                            (unsigned long long)in->dtype_bytes[d]);
            first = 0;
        }
    for (int t = 0; t < GGML_N_TYPES; t++)
        if (in->ggml_tensors[t]) {
            rc |= sb_printf(&sb, "%s\"%s\": {\"tensors\": %llu, \"bytes\": %llu}", first ? "" : ", ",
                            ggml_type_name((ggml_type)t), (unsigned long long)in->ggml_tensors[t],
                            (unsigned long long)in->ggml_bytes[t]);
            first = 0;
        }
    rc |= sb_puts(&sb, "}, \"files\": [");
    uint64_t total = 0;
    for (int i = 0; i < in->n_files; i++) {
        rc |= sb_printf(&sb, "%s{\"name\": ", i ? ", " : "");
        rc |= sb_json_string(&sb, in->file_names[i]);
        rc |= sb_printf(&sb, ", \"bytes\": %llu}", (unsigned long long)in->file_bytes[i]);
        total += in->file_bytes[i];
    }
    rc |= sb_printf(&sb, "], \"total_bytes\": %llu, \"quantization\": ", (unsigned long long)total);
    if (in->qformat[0]) {
        rc |= sb_puts(&sb, "{\"format\": ");
        rc |= sb_json_string(&sb, in->qformat);
        rc |= sb_puts(&sb, ", \"linears\": ");
        rc |= sb_json_string(&sb, in->quant);
        rc |= sb_puts(&sb, "}");
    } else {
        rc |= sb_puts(&sb, "null");
    }
    rc |= sb_puts(&sb, ", \"check\": ");
    rc |= sb_json_string(&sb, in->check);
    rc |= sb_puts(&sb, "}\n");
    if (!rc) fputs(sb.buf, stdout);
    sb_free(&sb);
    return rc;
}

int cmd_inspect(int argc, char **argv) {
    inspect_info in;
    memset(&in, 0, sizeof in);
    int json = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--json")) json = 1;
        else if (argv[i][0] == '-' && argv[i][1]) return cli_usage_error("inspect", "unknown option '%s'", argv[i]);
        else if (!in.path) in.path = argv[i];
        else return cli_usage_error("inspect", "unexpected argument '%s'", argv[i]);
    }
    if (!in.path)
        return cli_usage_error("inspect", "expected MODEL (a folder, .safetensors, index .json, .gguf or llama2.c .bin)");
    /* a folder holding model.gguf and no config.json (the quantize stage's format gguf): the file */
    char *gguf = fs_is_dir(in.path) ? model_gguf_path(in.path) : NULL;
    if (gguf) in.path = gguf;
    int rc = gather(&in);
    if (!rc) {
        if (json) rc = print_json(&in);
        else print_text(&in);
    }
    for (int i = 0; i < in.n_files; i++) free(in.file_names[i]);
    free(in.file_names);
    free(in.file_bytes);
    rc = rc ? cli_fail("inspect") : EXIT_OK;
    free(gguf);
    return rc;
}
