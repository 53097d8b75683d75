/* checkpoint.c: whole-model load and save in the Hugging Face layout (config.json +
 * model.safetensors or shards), into and out of one model_weights allocation. Loading checks
 * the checkpoint against the config tensor by tensor, so that a mismatch is reported by name
 * instead of producing a model that silently computes garbage. */
#include "model/checkpoint.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/error.h"
#include "common/fsutil.h"
#include "common/log.h"
#include "common/strbuf.h"
#include "model/gguf.h"
#include "model/gguf_model.h"
#include "model/hfconfig.h"
#include "model/qcheckpoint.h"

ckpt_format checkpoint_detect(const char *path) {
    if (fs_is_dir(path)) {
        char *cfg = fs_join(path, "config.json");
        int ok = cfg && fs_exists(cfg);
        free(cfg);
        if (ok) return CKPT_HF;
        err_set(ERR_INPUT, "%s is a folder without config.json; expected a Hugging Face model folder", path);
        return CKPT_UNKNOWN;
    }
    if (!fs_exists(path)) {
        err_set(ERR_INPUT, "%s does not exist", path);
        return CKPT_UNKNOWN;
    }
    if (str_ends_with(path, ".safetensors") || str_ends_with(path, ".json")) return CKPT_HF;
    if (gguf_sniff(path)) return CKPT_GGUF;
    if (str_ends_with(path, ".gguf")) {
        err_set(ERR_INPUT, "%s does not start with the GGUF magic: it is not a GGUF file (truncated download?)", path);
        return CKPT_UNKNOWN;
    }
    /* a safetensors file under another name: 8-byte length then '{' */
    unsigned char head[9];
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        err_errno("cannot open %s", path);
        return CKPT_UNKNOWN;
    }
    ssize_t n = read(fd, head, sizeof head);
    close(fd);
    if (n < 0) {
        err_errno("cannot read %s", path);
        return CKPT_UNKNOWN;
    }
    if (n == 9 && head[8] == '{' && !head[6] && !head[7]) return CKPT_HF;
    return CKPT_LLAMA2C; /* llama2c_read_config says clearly when it is not one either */
}

static void shape_str(char *buf, size_t n, int ndim, const int64_t *shape) {
    size_t o = 0;
    o += (size_t)snprintf(buf, n, "[");
    for (int i = 0; i < ndim && o < n - 24; i++) o += (size_t)snprintf(buf + o, n - o, "%s%lld", i ? ", " : "", (long long)shape[i]);
    snprintf(buf + o, n - o, "]");
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(const char *const *)a, *(const char *const *)b); }

/* Checks that one expected tensor is in the set with the shape the config implies and a float
 * dtype (before anything is allocated, so that a wrong config fails fast and small). */
static int check_tensor(const st_set *s, const weights_tensor *wt, const char *cfg_path) {
    int fi;
    const st_tensor *t = st_set_find(s, wt->name, &fi);
    char want[64], got[160];
    shape_str(want, sizeof want, wt->ndim, wt->shape);
    if (!t)
        return err_set(ERR_INPUT, "%s: tensor '%s' (shape %s from %s) is missing; the checkpoint does not match its "
                       "config.json", s->dir, wt->name, want, cfg_path);
    const char *file = s->files[fi].path;
    int same = t->ndim == wt->ndim;
    for (int i = 0; same && i < t->ndim; i++) same = t->shape[i] == wt->shape[i];
    if (!same) {
        shape_str(got, sizeof got, t->ndim, t->shape);
        return err_set(ERR_INPUT, "%s: tensor '%s' has shape %s but %s implies %s; the checkpoint does not match its "
                       "config.json", file, wt->name, got, cfg_path, want);
    }
    if (t->dtype != ST_F32 && t->dtype != ST_BF16 && t->dtype != ST_F16)
        return err_set(ERR_INPUT, "%s: tensor '%s' is %s; only F32, F16 and BF16 tensors convert to fp32 weights (a "
                       "quantized checkpoint needs its own loader)", file, wt->name, st_dtype_name(t->dtype));
    return 0;
}

/* A tied checkpoint may still carry lm_head.weight: accept it when it equals the embedding. */
static int check_tied_head(const st_set *s, const st_tensor *t, const model_config *c, const model_weights *w) {
    int fi;
    st_set_find(s, t->name, &fi);
    const char *file = s->files[fi].path;
    if (t->ndim != 2 || t->shape[0] != c->vocab || t->shape[1] != c->hidden)
        return err_set(ERR_INPUT, "%s: lm_head.weight has the wrong shape for a tied head ([%d, %d] expected)", file,
                       c->vocab, c->hidden);
    size_t n = (size_t)t->n_elems;
    float *tmp = xmalloc(n * sizeof(float));
    if (!tmp) return -1;
    int rc = st_to_f32(tmp, t, file);
    for (size_t i = 0; !rc && i < n; i++)
        if (memcmp(&tmp[i], &w->embed[i], sizeof(float)))
            rc = err_set(ERR_INPUT, "%s: tie_word_embeddings is true but lm_head.weight differs from "
                         "model.embed_tokens.weight (first at element %zu: %g vs %g); set tie_word_embeddings to "
                         "false in config.json if the head is separate", file, i, tmp[i], w->embed[i]);
    free(tmp);
    return rc;
}

/* Every tensor of the files must be one of the n names the config implies, a tied lm_head, or
 * an old rotary buffer; the others are listed in the error. */
static int check_extra(const st_set *s, const model_config *cfg, const char **names, int n, ckpt_skip_fn skip,
                       void *skip_ctx) {
    const char **sorted = xmalloc((size_t)n * sizeof *sorted);
    if (!sorted) return -1;
    memcpy(sorted, names, (size_t)n * sizeof *sorted);
    qsort(sorted, (size_t)n, sizeof *sorted, cmp_str);
    strbuf extra = STRBUF_INIT;
    int n_extra = 0;
    for (int i = 0; i < s->n_tensors; i++) {
        const char *key = s->tensors[i]->name;
        if (bsearch(&key, sorted, (size_t)n, sizeof *sorted, cmp_str)) continue;
        if (skip && skip(skip_ctx, key)) continue; /* read by the caller's own loader */
        if (cfg->tie_embeddings && !strcmp(key, "lm_head.weight")) continue; /* compared after loading */
        if (str_ends_with(key, ".rotary_emb.inv_freq")) continue; /* a buffer old transformers saved */
        if (n_extra < 5) sb_printf(&extra, "%s'%s'", n_extra ? ", " : "", key);
        n_extra++;
    }
    int rc = 0;
    if (n_extra)
        rc = err_set(ERR_INPUT, "%s: %d tensor(s) that config.json does not describe: %s%s; the checkpoint does not "
                     "match its config.json (attention_bias, tie_word_embeddings, num_hidden_layers?) or is not a "
                     "plain %s model", s->dir, n_extra, sb_str(&extra), n_extra > 5 ? ", ..." : "", cfg->model_type);
    sb_free(&extra);
    free(sorted);
    return rc;
}

static int load_hf(const char *path, model_config *cfg, model_weights *w, ckpt_skip_fn skip, void *skip_ctx) {
    char *dir = fs_is_dir(path) ? xstrdup(path) : fs_dir_of(path);
    char *cfg_path = dir ? fs_join(dir, "config.json") : NULL;
    weights_tensor *wt = NULL;
    const char **names = NULL;
    st_set s;
    memset(&s, 0, sizeof s);
    int rc = -1;
    if (!cfg_path) goto done;
    if (!fs_exists(cfg_path)) {
        err_set(ERR_INPUT, "no config.json in %s: a safetensors file alone does not say the architecture; put the "
                "model's config.json beside it", dir);
        goto done;
    }
    /* a path to config.json itself means its folder */
    const char *set_path = str_ends_with(path, "config.json") && !str_ends_with(path, "index.json") ? dir : path;
    if ((skip ? hfconfig_load_quantized : hfconfig_load)(cfg, cfg_path) || st_set_open(&s, set_path)) goto done;
    /* names and shapes first (over a zeroed layout: data pointers NULL), then allocate and copy */
    model_weights shape_only;
    memset(&shape_only, 0, sizeof shape_only);
    int n = weights_tensors(&shape_only, cfg, NULL, 0);
    wt = xcalloc((size_t)n, sizeof *wt);
    names = xcalloc((size_t)n, sizeof *names);
    if (!wt || !names) goto done;
    weights_tensors(&shape_only, cfg, wt, n);
    for (int i = 0; i < n; i++) {
        names[i] = wt[i].name;
        if (skip && skip(skip_ctx, wt[i].name)) continue;
        if (check_tensor(&s, &wt[i], cfg_path)) goto done;
    }
    if (check_extra(&s, cfg, names, n, skip, skip_ctx)) goto done;
    if (weights_alloc(w, cfg)) goto done;
    weights_tensors(w, cfg, wt, n); /* the same order, now with data pointers */
    for (int i = 0; i < n; i++) {
        int fi;
        if (skip && skip(skip_ctx, wt[i].name)) continue; /* left zero */
        const st_tensor *t = st_set_find(&s, wt[i].name, &fi);
        if (st_to_f32(wt[i].data, t, s.files[fi].path)) goto done;
    }
    const st_tensor *head = cfg->tie_embeddings ? st_set_find(&s, "lm_head.weight", NULL) : NULL;
    if (head && check_tied_head(&s, head, cfg, w)) goto done;
    rc = 0;
done:
    if (rc) weights_free(w);
    st_set_close(&s);
    free(wt);
    free(names);
    free(cfg_path);
    free(dir);
    return rc;
}

int checkpoint_load_hf_except(const char *path, model_config *cfg, model_weights *w, ckpt_skip_fn skip, void *ctx) {
    memset(w, 0, sizeof *w);
    return load_hf(path, cfg, w, skip, ctx);
}

int checkpoint_load(const char *path, model_config *cfg, model_weights *w) {
    memset(w, 0, sizeof *w);
    switch (checkpoint_detect(path)) {
    case CKPT_HF: {
        char what[64];
        int quantized = qcheckpoint_probe(path, NULL, what, sizeof what);
        if (quantized < 0) return -1;
        if (quantized)
            return err_set(ERR_INPUT, "%s is a quantized checkpoint (%s): it runs as it is (smelt evaluate, generate), "
                           "but fp32 weights (training, convert, quantize) need the dense checkpoint it was made from",
                           path, what);
        return load_hf(path, cfg, w, NULL, NULL);
    }
    case CKPT_LLAMA2C: return llama2c_load(path, cfg, w);
    case CKPT_GGUF: return gguf_model_load(path, cfg, w);
    default: return -1;
    }
}

int checkpoint_read_config(const char *path, model_config *cfg) {
    ckpt_format f = checkpoint_detect(path);
    if (f == CKPT_LLAMA2C) return llama2c_read_config(path, cfg);
    if (f == CKPT_GGUF) return gguf_model_read_config(path, cfg);
    if (f != CKPT_HF) return -1;
    /* a folder, or a .safetensors / index / config.json file: config.json sits in its folder */
    char *dir = fs_is_dir(path) ? xstrdup(path) : fs_dir_of(path);
    char *cp = dir ? fs_join(dir, "config.json") : NULL;
    int rc = cp ? hfconfig_load(cfg, cp) : -1;
    free(cp);
    free(dir);
    return rc;
}

static const char *torch_dtype_name(st_dtype d) {
    switch (d) {
    case ST_F32: return "float32";
    case ST_BF16: return "bfloat16";
    case ST_F16: return "float16";
    default: return NULL;
    }
}

int checkpoint_save(const char *dir, const model_config *cfg, const model_weights *w, st_dtype dtype) {
    if (!torch_dtype_name(dtype))
        return err_set(ERR_INPUT, "cannot save a checkpoint as %s; choose F32, BF16 or F16", st_dtype_name(dtype));
    if (config_validate(cfg)) return err_prefix("saving %s: ", dir);
    if (fs_mkdir_p(dir, 0755)) return -1;
    int n = weights_tensors(w, cfg, NULL, 0);
    weights_tensor *wt = xcalloc((size_t)n, sizeof *wt);
    st_entry *e = xcalloc((size_t)n, sizeof *e);
    char *st_path = fs_join(dir, "model.safetensors");
    char *cfg_path = fs_join(dir, "config.json");
    char *gen_path = fs_join(dir, "generation_config.json");
    int rc = -1;
    if (!wt || !e || !st_path || !cfg_path || !gen_path) goto done;
    weights_tensors(w, cfg, wt, n);
    for (int i = 0; i < n; i++) {
        e[i].name = wt[i].name;
        e[i].ndim = wt[i].ndim;
        e[i].shape[0] = wt[i].shape[0];
        e[i].shape[1] = wt[i].shape[1];
        e[i].f32 = wt[i].data;
    }
    static const char *const meta[] = {"format", "pt"};
    /* weights first, config last: a folder with a config.json has its weights */
    if (st_write(st_path, e, n, dtype, meta, 1) || hfconfig_save_generation(gen_path, cfg) ||
        hfconfig_save(cfg_path, cfg, torch_dtype_name(dtype)))
        goto done;
    rc = 0;
done:
    if (rc) err_prefix("saving %s: ", dir);
    free(wt);
    free(e);
    free(st_path);
    free(cfg_path);
    free(gen_path);
    return rc;
}
