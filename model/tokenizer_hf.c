/* tokenizer_hf.c: Hugging Face byte-level BPE tokenizers: tokenizer.json (model BPE, merges as
 * "a b" strings or [a, b] lists, ignore_merges, added tokens, Split/ByteLevel pre-tokenizers)
 * and vocab.json + merges.txt with an optional tokenizer_config.json beside them. */
#include <cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "common/fsutil.h"
#include "model/tokenizer_internal.h"

/* ---- small JSON helpers ---- */

static const cJSON *jget(const cJSON *o, const char *key) { return cJSON_GetObjectItemCaseSensitive(o, key); }

static int jbool(const cJSON *o, const char *key, int dflt) {
    const cJSON *v = jget(o, key);
    if (cJSON_IsBool(v)) return cJSON_IsTrue(v);
    return dflt;
}

static const char *jstr(const cJSON *o, const char *key) {
    const cJSON *v = jget(o, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* An integer id in 0..TOK_MAX_VOCAB-1, or -1. */
static int32_t jid(const cJSON *v) {
    if (!cJSON_IsNumber(v)) return -1;
    double d = v->valuedouble;
    if (!(d >= 0 && d < TOK_MAX_VOCAB) || d != floor(d)) return -1;
    return (int32_t)d;
}

static int parse_json(const char *path, const char *text, size_t len, cJSON **out) {
    const char *end = NULL;
    *out = cJSON_ParseWithLengthOpts(text, len, &end, 0);
    if (*out) return 0;
    size_t at = end && end >= text && end <= text + len ? (size_t)(end - text) : 0;
    return err_set(ERR_CORRUPT, "%s is not valid JSON (parsing stopped at byte %zu); re-download or regenerate it",
                   path, at);
}

/* Converts a vocabulary string to the bytes it stands for; flags gets TOKF_RAW when it is not
 * a byte-level string. The result stays in sb (reset by the caller). */
int tok_vocab_bytes(const char *s, strbuf *sb, unsigned *flags) {
    sb_reset(sb);
    int rc = tok_bytelevel_decode(s, strlen(s), sb);
    if (rc < 0) return -1;
    if (rc == 1) *flags |= TOKF_RAW;
    return 0;
}

static int define_vocab(tokenizer *tok, const cJSON *vocab, const char *what) {
    if (!cJSON_IsObject(vocab))
        return err_set(ERR_CORRUPT, "%s: %s is not a JSON object of token -> id", tok->source, what);
    strbuf sb = STRBUF_INIT;
    for (const cJSON *it = vocab->child; it; it = it->next) {
        int32_t id = jid(it);
        if (id < 0) {
            sb_free(&sb);
            return err_set(ERR_CORRUPT, "%s: %s entry '%.64s' has id %s, expected an integer in 0..%d", tok->source,
                           what, it->string ? it->string : "", cJSON_IsNumber(it) ? "out of range" : "that is not a number",
                           TOK_MAX_VOCAB - 1);
        }
        unsigned flags = 0;
        if (!it->string || tok_vocab_bytes(it->string, &sb, &flags) ||
            tok_define(tok, id, sb.buf ? sb.buf : "", sb.len, flags)) {
            sb_free(&sb);
            return err_prefix("%s: %s entry '%.64s': ", tok->source, what, it->string ? it->string : "");
        }
    }
    sb_free(&sb);
    return 0;
}

/* One merge given as its two halves (vocabulary strings). */
int tok_add_merge_strings(tokenizer *tok, const char *a, const char *b, int32_t rank, const char *where, strbuf *sb) {
    unsigned fa = 0, fb = 0;
    if (tok_vocab_bytes(a, sb, &fa)) return -1;
    int32_t ia = tok_lookup(tok, sb->buf ? sb->buf : "", sb->len);
    if (tok_vocab_bytes(b, sb, &fb)) return -1;
    int32_t ib = tok_lookup(tok, sb->buf ? sb->buf : "", sb->len);
    if (ia < 0 || ib < 0)
        return err_set(ERR_CORRUPT, "%s: merge %ld (%s) refers to the token '%.64s', which is not in the vocabulary; "
                                    "the merges and the vocabulary do not belong together",
                       tok->source, (long)rank, where, ia < 0 ? a : b);
    char what[1024];
    snprintf(what, sizeof what, "%s, %s", tok->source, where);
    return tok_add_merge(tok, ia, ib, rank, what);
}

/* Splits "a b" at its one space (HF requires exactly two parts). */
int tok_split_merge_line(char *line, char **a, char **b) {
    char *sp = strchr(line, ' ');
    if (!sp || sp == line || !sp[1] || strchr(sp + 1, ' ')) return -1;
    *sp = 0;
    *a = line;
    *b = sp + 1;
    return 0;
}

/* ---- added tokens and tokenizer_config.json ---- */

static int define_added(tokenizer *tok, int32_t id, const cJSON *t) {
    const char *content = jstr(t, "content");
    if (id < 0 || !content || !*content)
        return err_set(ERR_CORRUPT, "%s: an added token lacks an integer \"id\" or a non-empty \"content\"", tok->source);
    unsigned flags = 0;
    if (jbool(t, "special", 0)) flags |= TOKF_SPECIAL;
    if (jbool(t, "lstrip", 0)) flags |= TOKF_LSTRIP;
    if (jbool(t, "rstrip", 0)) flags |= TOKF_RSTRIP;
    if (jbool(t, "single_word", 0)) flags |= TOKF_SINGLE_WORD;
    if (jbool(t, "normalized", !(flags & TOKF_SPECIAL))) flags |= TOKF_NORMALIZED;
    return tok_define_added(tok, id, content, flags);
}

/* A token named by a config field: a string or {"content": ...}; NULL/absent gives -2. */
static int config_token(const tokenizer *tok, const cJSON *cfg, const char *key, const char *cfg_path, int32_t *out) {
    const cJSON *v = jget(cfg, key);
    const char *name = cJSON_IsString(v) ? v->valuestring : cJSON_IsObject(v) ? jstr(v, "content") : NULL;
    if (!name) return 0;
    int32_t id = tok_lookup(tok, name, strlen(name));
    if (id < 0)
        return err_set(ERR_CORRUPT, "%s names %s '%s', which is not a token of %s; fix the config or the vocabulary",
                       cfg_path, key, name, tok->source);
    *out = id;
    return 0;
}

/* Reads dir-of(path)/tokenizer_config.json when it exists (*cfg NULL otherwise). */
static int read_config(const char *path, cJSON **cfg, char **cfg_path) {
    *cfg = NULL;
    *cfg_path = NULL;
    char *dir = fs_dir_of(path);
    if (!dir) return -1;
    char *p = fs_join(dir, "tokenizer_config.json");
    free(dir);
    if (!p) return -1;
    if (!fs_exists(p)) {
        free(p);
        return 0;
    }
    char *text;
    size_t len;
    if (fs_read_file(p, 64u << 20, &text, &len)) {
        free(p);
        return -1;
    }
    int rc = parse_json(p, text, len, cfg);
    free(text);
    if (rc) {
        free(p);
        return -1;
    }
    *cfg_path = p;
    return 0;
}

/* chat_template: a string, or a list of {name, template} (the one named "default"). */
static int config_chat_template(tokenizer *tok, const cJSON *cfg) {
    const cJSON *ct = jget(cfg, "chat_template");
    const char *text = cJSON_IsString(ct) ? ct->valuestring : NULL;
    for (const cJSON *it = cJSON_IsArray(ct) ? ct->child : NULL; it && !text; it = it->next) {
        const char *name = jstr(it, "name");
        if (name && !strcmp(name, "default")) text = jstr(it, "template");
    }
    if (!text) return 0;
    free(tok->chat_template);
    tok->chat_template = xstrdup(text);
    return tok->chat_template ? 0 : -1;
}

static int apply_config(tokenizer *tok, const cJSON *cfg, const char *cfg_path, int add_tokens) {
    if (add_tokens) {
        const cJSON *dec = jget(cfg, "added_tokens_decoder");
        for (const cJSON *it = cJSON_IsObject(dec) ? dec->child : NULL; it; it = it->next) {
            char *end;
            long id = strtol(it->string ? it->string : "", &end, 10);
            if (!it->string || !*it->string || *end || id < 0 || id >= TOK_MAX_VOCAB)
                return err_set(ERR_CORRUPT, "%s: added_tokens_decoder key '%.32s' is not a token id", cfg_path,
                               it->string ? it->string : "");
            if (define_added(tok, (int32_t)id, it)) return err_prefix("%s: ", cfg_path);
        }
        if (tok_build_index(tok)) return -1;
    }
    if (config_token(tok, cfg, "bos_token", cfg_path, &tok->bos)) return -1;
    if (config_token(tok, cfg, "eos_token", cfg_path, &tok->eos)) return -1;
    /* padding and unknown tokens are only carried to GGUF: one the vocabulary lacks is ignored */
    if (config_token(tok, cfg, "pad_token", cfg_path, &tok->pad) || config_token(tok, cfg, "unk_token", cfg_path, &tok->unk))
        err_clear();
    return config_chat_template(tok, cfg);
}

/* ---- tokenizer.json ---- */

static int parse_pretokenizer(tokenizer *tok, const cJSON *pt, int depth, int *bytelevel) {
    if (!pt || cJSON_IsNull(pt)) return 0;
    const char *type = jstr(pt, "type");
    if (!type || depth > 4) return err_set(ERR_CORRUPT, "%s: pre_tokenizer has no \"type\"", tok->source);
    if (!strcmp(type, "Sequence")) {
        const cJSON *list = jget(pt, "pretokenizers");
        if (!cJSON_IsArray(list))
            return err_set(ERR_CORRUPT, "%s: pre_tokenizer Sequence has no \"pretokenizers\" list", tok->source);
        for (const cJSON *it = list->child; it; it = it->next)
            if (parse_pretokenizer(tok, it, depth + 1, bytelevel)) return -1;
        return 0;
    }
    if (!strcmp(type, "ByteLevel")) {
        *bytelevel = 1;
        return tok_add_step_bytelevel(tok, jbool(pt, "add_prefix_space", 1), jbool(pt, "trim_offsets", 1),
                                      jbool(pt, "use_regex", 1));
    }
    if (!strcmp(type, "Split")) {
        const cJSON *pat = jget(pt, "pattern");
        const char *re = jstr(pat, "Regex"), *lit = jstr(pat, "String");
        const char *beh = jstr(pt, "behavior");
        if (!re && !lit)
            return err_set(ERR_CORRUPT, "%s: pre_tokenizer Split has no pattern {\"Regex\": ...} or {\"String\": ...}",
                           tok->source);
        int behavior;
        if (!beh || !strcmp(beh, "Isolated")) behavior = TOKSPLIT_ISOLATED;
        else if (!strcmp(beh, "Removed")) behavior = TOKSPLIT_REMOVED;
        else
            return err_set(ERR_INPUT, "%s: pre_tokenizer Split behavior '%s' is not supported (smelt reads Isolated "
                                      "and Removed)", tok->source, beh);
        return tok_add_step_split(tok, re ? re : lit, !re, behavior, jbool(pt, "invert", 0));
    }
    return err_set(ERR_INPUT, "%s: pre_tokenizer type '%s' is not supported (smelt reads Sequence, Split and "
                              "ByteLevel: byte-level BPE tokenizers)", tok->source, type);
}

static int has_bytelevel_decoder(const cJSON *d) {
    const char *type = jstr(d, "type");
    if (!type) return 0;
    if (!strcmp(type, "ByteLevel")) return 1;
    if (!strcmp(type, "Sequence"))
        for (const cJSON *it = jget(d, "decoders") ? jget(d, "decoders")->child : NULL; it; it = it->next)
            if (has_bytelevel_decoder(it)) return 1;
    return 0;
}

static int parse_normalizer(tokenizer *tok, const cJSON *n) {
    if (!n || cJSON_IsNull(n)) return 0;
    const char *type = jstr(n, "type");
    if (type && !strcmp(type, "NFC")) {
        strcpy(tok->normalizer, "NFC");
        return 0;
    }
    if (type && !strcmp(type, "Sequence")) {
        const cJSON *list = jget(n, "normalizers");
        for (const cJSON *it = cJSON_IsArray(list) ? list->child : NULL; it; it = it->next)
            if (parse_normalizer(tok, it)) return -1;
        return 0;
    }
    return err_set(ERR_INPUT, "%s: normalizer '%s' is not supported (smelt reads none or NFC)", tok->source,
                   type ? type : "?");
}

/* BOS from a TemplateProcessing post-processor whose single template starts with a special
 * token; returns 1 when one does. */
static int post_processor_bos(tokenizer *tok, const cJSON *pp) {
    const char *type = jstr(pp, "type");
    if (!type) return 0;
    if (!strcmp(type, "Sequence")) {
        int found = 0;
        for (const cJSON *it = jget(pp, "processors") ? jget(pp, "processors")->child : NULL; it; it = it->next)
            found |= post_processor_bos(tok, it);
        return found;
    }
    if (strcmp(type, "TemplateProcessing")) return 0;
    const cJSON *single = jget(pp, "single");
    const cJSON *first = cJSON_IsArray(single) ? single->child : NULL;
    const char *name = jstr(jget(first, "SpecialToken"), "id");
    if (!name) return 0;
    int32_t id = jid(cJSON_GetArrayItem(jget(jget(jget(pp, "special_tokens"), name), "ids"), 0));
    if (id < 0 || id >= tok->n_vocab) return 0;
    tok->bos = id;
    return 1;
}

/* BOS is added when the post-processor adds it; a post-processor that adds none (ByteLevel:
 * GPT-2, Qwen2, SmolLM2) means no BOS. Files without one (older smelt saves) keep adding BOS. */
static void apply_post_processor(tokenizer *tok, const cJSON *pp) {
    if (!pp || cJSON_IsNull(pp)) return;
    tok->add_bos = post_processor_bos(tok, pp);
}

int tok_load_hf_json(tokenizer **out, const char *path, const char *text, size_t len) {
    cJSON *root, *cfg = NULL;
    char *cfg_path = NULL;
    if (parse_json(path, text, len, &root)) return -1;
    tokenizer *tok = tok_new(TOKENIZER_HF_JSON, path);
    strbuf sb = STRBUF_INIT;
    if (!tok) goto fail;
    const cJSON *model = jget(root, "model");
    if (!cJSON_IsObject(model)) {
        err_set(ERR_CORRUPT, "%s has no \"model\" object; is it a Hugging Face tokenizer.json?", path);
        goto fail;
    }
    const char *type = jstr(model, "type");
    if (type && strcmp(type, "BPE")) {
        err_set(ERR_INPUT, "%s: model type '%s' is not supported; smelt reads byte-level BPE tokenizers", path, type);
        goto fail;
    }
    const char *cont = jstr(model, "continuing_subword_prefix"), *eow = jstr(model, "end_of_word_suffix");
    if (jbool(model, "byte_fallback", 0) || (cont && *cont) || (eow && *eow)) {
        err_set(ERR_INPUT, "%s: this BPE uses byte_fallback or subword prefixes/suffixes (a SentencePiece-style "
                           "BPE); smelt reads byte-level BPE tokenizers only", path);
        goto fail;
    }
    tok->ignore_merges = jbool(model, "ignore_merges", 0);
    if (define_vocab(tok, jget(model, "vocab"), "model.vocab")) goto fail;
    const cJSON *added = jget(root, "added_tokens");
    for (const cJSON *it = cJSON_IsArray(added) ? added->child : NULL; it; it = it->next)
        if (define_added(tok, jid(jget(it, "id")), it)) goto fail;
    if (tok_build_index(tok)) goto fail;
    const cJSON *merges = jget(model, "merges");
    if (merges && !cJSON_IsArray(merges)) {
        err_set(ERR_CORRUPT, "%s: model.merges is not a list", path);
        goto fail;
    }
    int32_t rank = 0;
    for (const cJSON *it = merges ? merges->child : NULL; it; it = it->next, rank++) {
        char *a, *b;
        if (cJSON_IsString(it)) {
            char *line = xstrdup(it->valuestring);
            if (!line) goto fail;
            int bad = tok_split_merge_line(line, &a, &b);
            if (bad) err_set(ERR_CORRUPT, "%s: merge %ld '%.64s' is not two tokens separated by one space", path,
                             (long)rank, it->valuestring);
            int rc = bad ? -1 : tok_add_merge_strings(tok, a, b, rank, "model.merges", &sb);
            free(line);
            if (rc) goto fail;
        } else if (cJSON_GetArraySize(it) == 2 && cJSON_IsString(it->child) && cJSON_IsString(it->child->next)) {
            if (tok_add_merge_strings(tok, it->child->valuestring, it->child->next->valuestring, rank, "model.merges", &sb))
                goto fail;
        } else {
            err_set(ERR_CORRUPT, "%s: merge %ld is neither \"a b\" nor a list of two strings", path, (long)rank);
            goto fail;
        }
    }
    if (tok_build_merge_index(tok)) goto fail;
    int bytelevel = 0;
    if (parse_normalizer(tok, jget(root, "normalizer"))) goto fail;
    if (parse_pretokenizer(tok, jget(root, "pre_tokenizer"), 0, &bytelevel)) goto fail;
    if (!bytelevel && !has_bytelevel_decoder(jget(root, "decoder"))) {
        err_set(ERR_INPUT, "%s has no ByteLevel pre-tokenizer or decoder: it is not a byte-level BPE, the only kind "
                           "of tokenizer.json smelt reads", path);
        goto fail;
    }
    apply_post_processor(tok, jget(root, "post_processor"));
    if (tok_finish(tok, 1)) goto fail;
    if (read_config(path, &cfg, &cfg_path)) goto fail;
    if (cfg && apply_config(tok, cfg, cfg_path, 0)) goto fail;
    cJSON_Delete(cfg);
    free(cfg_path);
    cJSON_Delete(root);
    sb_free(&sb);
    *out = tok;
    return 0;
fail:
    cJSON_Delete(cfg);
    free(cfg_path);
    cJSON_Delete(root);
    sb_free(&sb);
    tokenizer_free(tok);
    return -1;
}

/* ---- vocab.json + merges.txt ---- */

static int read_merges_txt(tokenizer *tok, const char *path) {
    char *text;
    size_t len;
    if (fs_read_file(path, TOK_MAX_FILE, &text, &len)) return -1;
    strbuf sb = STRBUF_INIT;
    int rc = 0;
    long line_no = 0;
    int32_t rank = 0;
    for (char *p = text; !rc && p < text + len;) {
        char *nl = memchr(p, '\n', (size_t)(text + len - p));
        char *end = nl ? nl : text + len;
        line_no++;
        if (end > p && end[-1] == '\r') end[-1] = 0;
        *end = 0;
        char *a, *b;
        if ((line_no == 1 && !strncmp(p, "#version", 8)) || !*p) {
            /* header or blank line */
        } else if (tok_split_merge_line(p, &a, &b)) {
            rc = err_set(ERR_CORRUPT, "%s:%ld: '%.64s' is not two tokens separated by one space", path, line_no, p);
        } else {
            char where[64];
            snprintf(where, sizeof where, "merges.txt line %ld", line_no);
            rc = tok_add_merge_strings(tok, a, b, rank++, where, &sb);
        }
        p = end + 1;
    }
    sb_free(&sb);
    free(text);
    return rc;
}

int tok_load_hf_vocab(tokenizer **out, const char *path, const char *text, size_t len) {
    cJSON *root = NULL, *cfg = NULL;
    char *cfg_path = NULL, *merges_path = NULL;
    if (parse_json(path, text, len, &root)) return -1;
    tokenizer *tok = tok_new(TOKENIZER_HF_VOCAB, path);
    if (!tok) goto fail;
    if (define_vocab(tok, root, "vocab.json")) goto fail;
    if (read_config(path, &cfg, &cfg_path)) goto fail;
    if (tok_build_index(tok)) goto fail;
    char *dir = fs_dir_of(path);
    if (!dir) goto fail;
    merges_path = fs_join(dir, "merges.txt");
    free(dir);
    if (!merges_path) goto fail;
    if (!fs_exists(merges_path)) {
        err_set(ERR_INPUT, "%s needs merges.txt beside it, and %s does not exist; copy the model's merges.txt there "
                           "or use its tokenizer.json", path, merges_path);
        goto fail;
    }
    if (read_merges_txt(tok, merges_path) || tok_build_merge_index(tok)) goto fail;
    /* vocab.json carries no pattern: GPT-2's for GPT-2/RoBERTa classes, Qwen2's otherwise. */
    const char *cls = cfg ? jstr(cfg, "tokenizer_class") : NULL;
    int gpt2 = cls && (!strncmp(cls, "GPT2", 4) || !strncmp(cls, "Roberta", 7) || !strncmp(cls, "CodeGen", 7));
    if (gpt2) {
        if (tok_add_step_bytelevel(tok, cfg ? jbool(cfg, "add_prefix_space", 0) : 0, 1, 1)) goto fail;
    } else {
        strcpy(tok->normalizer, "NFC");
        if (tok_add_step_split(tok, TOK_PATTERN_QWEN2, 0, TOKSPLIT_ISOLATED, 0) ||
            tok_add_step_bytelevel(tok, 0, 0, 0))
            goto fail;
    }
    if (cfg && apply_config(tok, cfg, cfg_path, 1)) goto fail;
    if (tok_finish(tok, 1)) goto fail;
    cJSON_Delete(cfg);
    cJSON_Delete(root);
    free(cfg_path);
    free(merges_path);
    *out = tok;
    return 0;
fail:
    cJSON_Delete(cfg);
    cJSON_Delete(root);
    free(cfg_path);
    free(merges_path);
    tokenizer_free(tok);
    return -1;
}
