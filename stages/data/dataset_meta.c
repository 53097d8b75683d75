/* dataset_meta.c: meta.json of a data artifact (dataset.h): reading and checking it, writing it,
 * and the tokenizer copied into the artifact so that every downstream stage uses the same one. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "common/fsutil.h"
#include "common/strbuf.h"
#include "stages/data/dataset.h"

#define META_MAX_BYTES (64u << 20)

static int get_str(const cJSON *o, const char *key, char *out, size_t cap, const char *path) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!cJSON_IsString(v) || strlen(v->valuestring) >= cap)
        return err_set(ERR_CORRUPT, "%s: field '%s' is missing or not a string of at most %zu bytes", path, key,
                       cap - 1);
    memcpy(out, v->valuestring, strlen(v->valuestring) + 1);
    return 0;
}

static int get_i64(const cJSON *o, const char *key, int64_t *out, int64_t lo, const char *path) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!cJSON_IsNumber(v) || v->valuedouble < (double)lo || v->valuedouble > 9.0e15 ||
        v->valuedouble != (double)(int64_t)v->valuedouble)
        return err_set(ERR_CORRUPT, "%s: field '%s' is missing or not an integer >= %lld", path, key, (long long)lo);
    *out = (int64_t)v->valuedouble;
    return 0;
}

static int get_i32(const cJSON *o, const char *key, int32_t *out, int64_t lo, const char *path) {
    int64_t v;
    if (get_i64(o, key, &v, lo, path)) return -1;
    if (v > INT32_MAX) return err_set(ERR_CORRUPT, "%s: field '%s' = %lld is too large", path, key, (long long)v);
    *out = (int32_t)v;
    return 0;
}

static int parse_meta(dataset *ds, const cJSON *j, const char *path) {
    const cJSON *fmt = cJSON_GetObjectItemCaseSensitive(j, "format");
    if (!cJSON_IsString(fmt) || strcmp(fmt->valuestring, "smelt-dataset"))
        return err_set(ERR_CORRUPT, "%s is not the meta.json of a smelt data artifact (format is not "
                       "\"smelt-dataset\"); pass the output of a data stage", path);
    int64_t version;
    if (get_i64(j, "version", &version, 1, path)) return -1;
    if (version != 1 && version != DS_FORMAT_VERSION)
        return err_set(ERR_CORRUPT, "%s has format version %lld, this smelt reads versions 1 and %d; re-run the data "
                       "stage with this smelt", path, (long long)version, DS_FORMAT_VERSION);
    ds->version = (int)version;
    if (get_str(j, "source", ds->source, sizeof ds->source, path) || get_str(j, "kind", ds->kind, sizeof ds->kind, path) ||
        get_str(j, "role", ds->role, sizeof ds->role, path))
        return -1;
    const cJSON *tk = cJSON_GetObjectItemCaseSensitive(j, "tokenizer");
    if (!cJSON_IsObject(tk)) return err_set(ERR_CORRUPT, "%s: field 'tokenizer' is missing", path);
    char spec[64];
    if (get_str(tk, "spec", spec, sizeof spec, path) ||
        get_str(tk, "format", ds->tokenizer_format, sizeof ds->tokenizer_format, path) ||
        get_i32(tk, "vocab_size", &ds->vocab, 1, path) || get_i32(tk, "bos_id", &ds->bos_id, -1, path) ||
        get_i32(tk, "eos_id", &ds->eos_id, -1, path))
        return -1;
    if (!strncmp(spec, "builtin:", 8)) ds->tokenizer_spec = xstrdup(spec);
    else if (!strcmp(spec, "tokenizer")) ds->tokenizer_spec = fs_join(ds->dir, "tokenizer");
    else return err_set(ERR_CORRUPT, "%s: tokenizer.spec '%s' must be builtin:... or \"tokenizer\"", path, spec);
    if (!ds->tokenizer_spec) return -1;
    const cJSON *lb = cJSON_GetObjectItemCaseSensitive(j, "labels");
    if (!cJSON_IsObject(lb)) return err_set(ERR_CORRUPT, "%s: field 'labels' is missing", path);
    if (get_str(lb, "yes", ds->yes_text, sizeof ds->yes_text, path) ||
        get_str(lb, "no", ds->no_text, sizeof ds->no_text, path) || get_i32(lb, "yes_id", &ds->yes_id, -1, path) ||
        get_i32(lb, "no_id", &ds->no_id, -1, path))
        return -1;
    if (ds->yes_id >= ds->vocab || ds->no_id >= ds->vocab)
        return err_set(ERR_CORRUPT, "%s: label ids %d/%d outside the vocabulary of %d", path, ds->yes_id, ds->no_id,
                       ds->vocab);
    const cJSON *tasks = cJSON_GetObjectItemCaseSensitive(j, "tasks");
    int nt = cJSON_GetArraySize(tasks);
    if (!cJSON_IsArray(tasks) || nt < 1 || nt > DS_MAX_TASKS)
        return err_set(ERR_CORRUPT, "%s: 'tasks' must list 1 to %d tasks", path, DS_MAX_TASKS);
    ds->tasks = xcalloc((size_t)nt, sizeof *ds->tasks);
    if (!ds->tasks) return -1;
    const cJSON *t;
    cJSON_ArrayForEach(t, tasks) {
        const cJSON *n = cJSON_GetObjectItemCaseSensitive(t, "name"), *in = cJSON_GetObjectItemCaseSensitive(t, "instruction");
        if (!cJSON_IsString(n) || !cJSON_IsString(in))
            return err_set(ERR_CORRUPT, "%s: task %d needs 'name' and 'instruction' strings", path, ds->n_tasks);
        ds_task *dt = &ds->tasks[ds->n_tasks++];
        if (!(dt->name = xstrdup(n->valuestring)) || !(dt->instruction = xstrdup(in->valuestring))) return -1;
    }
    const cJSON *splits = cJSON_GetObjectItemCaseSensitive(j, "splits"), *sp;
    if (!cJSON_IsObject(splits)) return err_set(ERR_CORRUPT, "%s: field 'splits' is missing", path);
    cJSON_ArrayForEach(sp, splits) {
        if (ds->n_splits == DS_MAX_SPLITS) return err_set(ERR_CORRUPT, "%s: more than %d splits", path, DS_MAX_SPLITS);
        ds_split_info *si = &ds->splits[ds->n_splits++];
        if (strlen(sp->string) >= sizeof si->name || strchr(sp->string, '/') || sp->string[0] == '.')
            return err_set(ERR_CORRUPT, "%s: bad split name '%s'", path, sp->string);
        memcpy(si->name, sp->string, strlen(sp->string) + 1);
        if (get_str(sp, "file", si->file, sizeof si->file, path) || get_i64(sp, "examples", &si->examples, 0, path) ||
            get_i64(sp, "tokens", &si->tokens, 0, path) || get_i64(sp, "groups", &si->groups, 0, path) ||
            get_i64(sp, "positives", &si->positives, 0, path) || get_i64(sp, "negatives", &si->negatives, 0, path) ||
            get_i64(sp, "max_tokens", &si->max_tokens, 0, path))
            return -1;
        if (strchr(si->file, '/') || si->file[0] == '.')
            return err_set(ERR_CORRUPT, "%s: split file '%s' must be a plain name", path, si->file);
        char *f = fs_join(ds->dir, si->file);
        int ok = f && fs_exists(f);
        free(f);
        if (!ok) return err_set(ERR_CORRUPT, "%s lists split %s in %s, which is missing", path, si->name, si->file);
    }
    const cJSON *params = cJSON_GetObjectItemCaseSensitive(j, "params");
    if (params && !(ds->params = cJSON_Duplicate(params, 1))) return err_set(ERR_NOMEM, "copying the data parameters");
    return 0;
}

int dataset_open(dataset *ds, const char *dir) {
    memset(ds, 0, sizeof *ds);
    ds->dir = xstrdup(dir);
    char *path = fs_join(dir, "meta.json"), *text = NULL;
    cJSON *j = NULL;
    int rc = -1;
    if (!ds->dir || !path) goto out;
    if (!fs_exists(path)) {
        err_set(ERR_INPUT, "%s has no meta.json: it is not a data artifact; pass the output of a data stage", dir);
        goto out;
    }
    if (fs_read_file(path, META_MAX_BYTES, &text, NULL)) goto out;
    if (!(j = cJSON_Parse(text))) {
        err_set(ERR_CORRUPT, "%s is not valid JSON; re-run the data stage", path);
        goto out;
    }
    rc = parse_meta(ds, j, path);
out:
    if (rc && path) err_prefix("opening data set: ");
    cJSON_Delete(j);
    free(text);
    free(path);
    if (rc) dataset_close(ds);
    return rc;
}

void dataset_close(dataset *ds) {
    for (int i = 0; ds->tasks && i < ds->n_tasks; i++) {
        free(ds->tasks[i].name);
        free(ds->tasks[i].instruction);
    }
    free(ds->tasks);
    free(ds->dir);
    free(ds->tokenizer_spec);
    cJSON_Delete(ds->params);
    memset(ds, 0, sizeof *ds);
}

const ds_split_info *dataset_split_info(const dataset *ds, const char *name) {
    for (int i = 0; i < ds->n_splits; i++)
        if (!strcmp(ds->splits[i].name, name)) return &ds->splits[i];
    return NULL;
}

int dataset_split_open(const dataset *ds, const char *name, ds_split *s) {
    memset(s, 0, sizeof *s);
    const ds_split_info *si = dataset_split_info(ds, name);
    if (!si) {
        strbuf sb = STRBUF_INIT;
        for (int i = 0; i < ds->n_splits; i++) sb_printf(&sb, "%s%s", i ? ", " : "", ds->splits[i].name);
        err_set(ERR_INPUT, "data set %s has no split '%s'; it has: %s", ds->dir, name, sb_str(&sb));
        sb_free(&sb);
        return -1;
    }
    char *path = fs_join(ds->dir, si->file);
    if (!path) return -1;
    int rc = ds_split_open(s, path);
    free(path);
    if (rc) return -1;
    snprintf(s->name, sizeof s->name, "%s", si->name);
    if (s->vocab != ds->vocab || s->n_tasks != ds->n_tasks || s->n_examples != si->examples ||
        s->n_tokens != si->tokens) {
        err_set(ERR_CORRUPT, "%s: vocab %d, tasks %d, examples %lld, tokens %lld disagree with meta.json (%d, %d, "
                "%lld, %lld); re-run the data stage", s->path, s->vocab, s->n_tasks, (long long)s->n_examples,
                (long long)s->n_tokens, ds->vocab, ds->n_tasks, (long long)si->examples, (long long)si->tokens);
        ds_split_close(s);
        return -1;
    }
    return 0;
}

int dataset_tokenizer_load(const dataset *ds, tokenizer **tok) {
    if (tokenizer_load(tok, ds->tokenizer_spec)) return err_prefix("the tokenizer of data set %s: ", ds->dir);
    if (tokenizer_vocab_size(*tok) != ds->vocab) {
        int32_t v = tokenizer_vocab_size(*tok);
        tokenizer_free(*tok);
        *tok = NULL;
        return err_set(ERR_CORRUPT, "the tokenizer of data set %s has %d tokens but meta.json says %d; re-run the "
                       "data stage", ds->dir, v, ds->vocab);
    }
    return 0;
}

static const char *format_name(tokenizer_format_t f) {
    switch (f) {
    case TOKENIZER_HF_JSON: return "hf-json";
    case TOKENIZER_HF_VOCAB: return "hf-vocab";
    case TOKENIZER_TIKTOKEN: return "tiktoken";
    case TOKENIZER_LLAMA2C: return "llama2c";
    case TOKENIZER_BUILTIN_BYTES: return "builtin-bytes";
    case TOKENIZER_GGUF: return "gguf";
    }
    return "unknown";
}

/* Copies src_dir/name (when it exists, or always when required) to dst_dir/as. */
static int copy_beside(const char *src_dir, const char *name, const char *dst_dir, const char *as, int required) {
    char *src = fs_join(src_dir, name), *dst = fs_join(dst_dir, as);
    int rc = -1;
    if (!src || !dst) goto out;
    if (!fs_exists(src)) {
        rc = required ? err_set(ERR_INPUT, "tokenizer file %s is missing", src) : 0;
        goto out;
    }
    rc = fs_copy_file(dst, src);
out:
    free(src);
    free(dst);
    return rc;
}

int dataset_copy_tokenizer(dataset *ds, const tokenizer *tok, const char *dir) {
    tokenizer_format_t f = tokenizer_format(tok);
    snprintf(ds->tokenizer_format, sizeof ds->tokenizer_format, "%s", format_name(f));
    ds->vocab = tokenizer_vocab_size(tok);
    ds->bos_id = tokenizer_bos_id(tok);
    ds->eos_id = tokenizer_eos_id(tok);
    free(ds->tokenizer_spec);
    ds->tokenizer_spec = NULL;
    if (f == TOKENIZER_BUILTIN_BYTES) return (ds->tokenizer_spec = xstrdup("builtin:bytes")) ? 0 : -1;
    char *tdir = fs_join(dir, "tokenizer"), *src = xstrdup(tokenizer_source(tok));
    int rc = -1;
    if (!tdir || !src || fs_mkdir_p(tdir, 0755)) goto out;
    char *slash = strrchr(src, '/');
    const char *base = slash ? slash + 1 : src;
    const char *src_dir = ".";
    if (slash) {
        *slash = 0;
        src_dir = src[0] ? src : "/";
    }
    switch (f) {
    case TOKENIZER_HF_JSON:
        rc = copy_beside(src_dir, base, tdir, "tokenizer.json", 1) ||
             copy_beside(src_dir, "tokenizer_config.json", tdir, "tokenizer_config.json", 0);
        break;
    case TOKENIZER_HF_VOCAB:
        rc = copy_beside(src_dir, base, tdir, "vocab.json", 1) || copy_beside(src_dir, "merges.txt", tdir, "merges.txt", 1) ||
             copy_beside(src_dir, "tokenizer_config.json", tdir, "tokenizer_config.json", 0);
        break;
    case TOKENIZER_TIKTOKEN: rc = copy_beside(src_dir, base, tdir, "tokenizer.model", 1); break;
    case TOKENIZER_LLAMA2C: rc = copy_beside(src_dir, base, tdir, "tokenizer.bin", 1); break;
    case TOKENIZER_GGUF: {
        /* a model file is hundreds of MB: keep only its tokenizer, as a vocabulary-only GGUF */
        char *dst = fs_join(tdir, "tokenizer.gguf");
        rc = dst ? tokenizer_save_gguf(tok, dst) : -1;
        free(dst);
        break;
    }
    default: rc = err_set(ERR_INTERNAL, "tokenizer format %d cannot be copied", (int)f); break;
    }
    rc = rc ? -1 : 0;
    if (!rc && !(ds->tokenizer_spec = xstrdup(tdir))) rc = -1;
out:
    if (rc) err_prefix("copying the tokenizer into the data artifact: ");
    free(tdir);
    free(src);
    return rc;
}

int dataset_write_meta(const dataset *ds, const char *dir) {
    cJSON *j = cJSON_CreateObject(), *tk, *lb, *tasks, *splits;
    int rc = -1;
    if (!j) return err_set(ERR_NOMEM, "building meta.json");
    cJSON_AddStringToObject(j, "format", "smelt-dataset");
    cJSON_AddNumberToObject(j, "version", DS_FORMAT_VERSION);
    cJSON_AddStringToObject(j, "source", ds->source);
    cJSON_AddStringToObject(j, "kind", ds->kind);
    cJSON_AddStringToObject(j, "role", ds->role[0] ? ds->role : "dataset");
    tk = cJSON_AddObjectToObject(j, "tokenizer");
    int builtin = ds->tokenizer_spec && !strncmp(ds->tokenizer_spec, "builtin:", 8);
    if (tk) {
        cJSON_AddStringToObject(tk, "spec", builtin ? ds->tokenizer_spec : "tokenizer");
        cJSON_AddStringToObject(tk, "format", ds->tokenizer_format);
        cJSON_AddNumberToObject(tk, "vocab_size", ds->vocab);
        cJSON_AddNumberToObject(tk, "bos_id", ds->bos_id);
        cJSON_AddNumberToObject(tk, "eos_id", ds->eos_id);
    }
    lb = cJSON_AddObjectToObject(j, "labels");
    if (lb) {
        cJSON_AddStringToObject(lb, "yes", ds->yes_text);
        cJSON_AddStringToObject(lb, "no", ds->no_text);
        cJSON_AddNumberToObject(lb, "yes_id", ds->yes_id);
        cJSON_AddNumberToObject(lb, "no_id", ds->no_id);
    }
    tasks = cJSON_AddArrayToObject(j, "tasks");
    for (int i = 0; tasks && i < ds->n_tasks; i++) {
        cJSON *t = cJSON_CreateObject();
        if (!t) break;
        cJSON_AddStringToObject(t, "name", ds->tasks[i].name);
        cJSON_AddStringToObject(t, "instruction", ds->tasks[i].instruction);
        cJSON_AddItemToArray(tasks, t);
    }
    splits = cJSON_AddObjectToObject(j, "splits");
    for (int i = 0; splits && i < ds->n_splits; i++) {
        const ds_split_info *si = &ds->splits[i];
        cJSON *s = cJSON_AddObjectToObject(splits, si->name);
        if (!s) break;
        cJSON_AddStringToObject(s, "file", si->file);
        cJSON_AddNumberToObject(s, "examples", (double)si->examples);
        cJSON_AddNumberToObject(s, "tokens", (double)si->tokens);
        cJSON_AddNumberToObject(s, "groups", (double)si->groups);
        cJSON_AddNumberToObject(s, "positives", (double)si->positives);
        cJSON_AddNumberToObject(s, "negatives", (double)si->negatives);
        cJSON_AddNumberToObject(s, "max_tokens", (double)si->max_tokens);
    }
    if (ds->params) cJSON_AddItemToObject(j, "params", cJSON_Duplicate(ds->params, 1));
    char *text = cJSON_Print(j), *path = fs_join(dir, "meta.json");
    if (!text) err_set(ERR_NOMEM, "printing meta.json");
    else if (path) {
        size_t n = strlen(text);
        text[n] = '\n'; /* over the NUL: the buffer holds n + 1 bytes */
        rc = fs_write_atomic(path, text, n + 1);
        text[n] = 0;
    }
    cJSON_free(text);
    free(path);
    cJSON_Delete(j);
    return rc;
}
