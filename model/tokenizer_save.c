/* tokenizer_save.c: writes a byte-level tokenizer as a Hugging Face tokenizer.json (model BPE,
 * merges in the [a, b] list form) plus tokenizer_config.json, so that transformers'
 * AutoTokenizer loads it and encodes like smelt, BOS included: smelt puts the BOS before every
 * prompt when tokenizer_add_bos(), so the files say the same with a TemplateProcessing
 * post-processor and add_bos_token (without them AutoTokenizer(prompt) would lack the BOS smelt
 * trained and scored with). Output is deterministic (ids in order). */
#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "common/fsutil.h"
#include "model/tokenizer_internal.h"

/* The vocabulary string of a token: its byte-level form, or its text for raw/added tokens. */
static int put_token_string(strbuf *out, const tokenizer *tok, int32_t id, strbuf *tmp) {
    const tok_entry *e = &tok->entries[id];
    sb_reset(tmp);
    int rc = (e->flags & (TOKF_RAW | TOKF_ADDED)) ? sb_append(tmp, tok->arena.buf + e->off, e->len)
                                                   : tok_bytelevel_encode(tmp, tok->arena.buf + e->off, e->len);
    if (rc) return -1;
    return sb_json_string(out, tmp->buf ? tmp->buf : "");
}

static const char *tf(int b) { return b ? "true" : "false"; }

static int put_added_fields(strbuf *j, const tokenizer *tok, int32_t id, strbuf *tmp) {
    unsigned f = tok->entries[id].flags;
    if (sb_puts(j, "\"content\": ") || put_token_string(j, tok, id, tmp)) return -1;
    return sb_printf(j, ", \"single_word\": %s, \"lstrip\": %s, \"rstrip\": %s, \"normalized\": %s, \"special\": %s",
                     tf(f & TOKF_SINGLE_WORD), tf(f & TOKF_LSTRIP), tf(f & TOKF_RSTRIP), tf(f & TOKF_NORMALIZED),
                     tf(f & TOKF_SPECIAL));
}

static int put_step(strbuf *j, const tok_step *s) {
    if (s->kind == TOKSTEP_BYTELEVEL)
        return sb_printf(j, "{\"type\": \"ByteLevel\", \"add_prefix_space\": %s, \"trim_offsets\": %s, \"use_regex\": %s}",
                         tf(s->add_prefix_space), tf(s->trim_offsets), tf(s->use_regex));
    if (sb_printf(j, "{\"type\": \"Split\", \"pattern\": {\"%s\": ", s->literal ? "String" : "Regex") ||
        sb_json_string(j, s->pattern ? s->pattern : "") ||
        sb_printf(j, "}, \"behavior\": \"%s\", \"invert\": %s}",
                  s->behavior == TOKSPLIT_REMOVED ? "Removed" : "Isolated", tf(s->invert)))
        return -1;
    return 0;
}

static int put_pretokenizer(strbuf *j, const tokenizer *tok) {
    static const tok_step plain_bytelevel = {.kind = TOKSTEP_BYTELEVEL, .trim_offsets = 1};
    const tok_step *steps[TOK_MAX_STEPS + 1];
    int n = 0, has_bl = 0;
    for (int i = 0; i < tok->n_steps; i++) {
        steps[n++] = &tok->steps[i];
        if (tok->steps[i].kind == TOKSTEP_BYTELEVEL) has_bl = 1;
    }
    if (!has_bl) steps[n++] = &plain_bytelevel; /* HF maps bytes to the alphabet in this step */
    if (n == 1) return put_step(j, steps[0]);
    if (sb_puts(j, "{\"type\": \"Sequence\", \"pretokenizers\": [")) return -1;
    for (int i = 0; i < n; i++)
        if ((i && sb_puts(j, ", ")) || put_step(j, steps[i])) return -1;
    return sb_puts(j, "]}");
}

/* The post-processor: "BOS $A" (and "BOS $A BOS $B" for pairs, as Llama 3's) when smelt adds BOS;
 * otherwise a ByteLevel one, which adds nothing in transformers and tells smelt's loader that the
 * tokenizer adds no BOS (as GPT-2's, Qwen2's or SmolLM2's files say it). */
static int put_post_processor(strbuf *j, const tokenizer *tok, strbuf *tmp) {
    if (!tokenizer_add_bos(tok))
        return sb_puts(j, "{\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"trim_offsets\": false, "
                          "\"use_regex\": false}");
    const int32_t bos = tokenizer_bos_id(tok);
    strbuf name = STRBUF_INIT;
    int rc = -1;
    if (put_token_string(&name, tok, bos, tmp)) goto out; /* the token's string, JSON-quoted */
    const char *q = name.buf;
    rc = sb_printf(j, "{\"type\": \"TemplateProcessing\", \"single\": [{\"SpecialToken\": {\"id\": %s, \"type_id\": 0}}, "
                      "{\"Sequence\": {\"id\": \"A\", \"type_id\": 0}}], \"pair\": [{\"SpecialToken\": {\"id\": %s, "
                      "\"type_id\": 0}}, {\"Sequence\": {\"id\": \"A\", \"type_id\": 0}}, {\"SpecialToken\": {\"id\": %s, "
                      "\"type_id\": 1}}, {\"Sequence\": {\"id\": \"B\", \"type_id\": 1}}], \"special_tokens\": {%s: "
                      "{\"id\": %s, \"ids\": [%ld], \"tokens\": [%s]}}}",
                   q, q, q, q, q, (long)bos, q);
out:
    sb_free(&name);
    return rc;
}

static int build_tokenizer_json(strbuf *j, const tokenizer *tok) {
    strbuf tmp = STRBUF_INIT;
    int rc = -1;
    if (sb_puts(j, "{\n  \"version\": \"1.0\",\n  \"truncation\": null,\n  \"padding\": null,\n  \"added_tokens\": ["))
        goto out;
    int first = 1;
    for (int32_t id = 0; id < tok->n_vocab; id++) {
        if (!(tok->entries[id].flags & TOKF_ADDED)) continue;
        if (sb_printf(j, "%s\n    {\"id\": %ld, ", first ? "" : ",", (long)id) || put_added_fields(j, tok, id, &tmp) ||
            sb_putc(j, '}'))
            goto out;
        first = 0;
    }
    if (sb_printf(j, "\n  ],\n  \"normalizer\": %s,\n  \"pre_tokenizer\": ",
                  tok->normalizer[0] ? "{\"type\": \"NFC\"}" : "null") ||
        put_pretokenizer(j, tok) || sb_puts(j, ",\n  \"post_processor\": ") || put_post_processor(j, tok, &tmp) ||
        sb_puts(j, ",\n"
                   "  \"decoder\": {\"type\": \"ByteLevel\", \"add_prefix_space\": true, \"trim_offsets\": true, "
                   "\"use_regex\": true},\n") ||
        sb_printf(j, "  \"model\": {\n    \"type\": \"BPE\",\n    \"dropout\": null,\n    \"unk_token\": null,\n"
                     "    \"continuing_subword_prefix\": null,\n    \"end_of_word_suffix\": null,\n"
                     "    \"fuse_unk\": false,\n    \"byte_fallback\": false,\n    \"ignore_merges\": %s,\n"
                     "    \"vocab\": {",
                  tf(tok->ignore_merges)))
        goto out;
    first = 1;
    for (int32_t id = 0; id < tok->n_vocab; id++) {
        if (!(tok->entries[id].flags & TOKF_PRESENT)) continue;
        if (sb_puts(j, first ? "\n      " : ",\n      ") || put_token_string(j, tok, id, &tmp) ||
            sb_printf(j, ": %ld", (long)id))
            goto out;
        first = 0;
    }
    if (sb_puts(j, "\n    },\n    \"merges\": [")) goto out;
    for (int32_t m = 0; m < tok->n_merges; m++) {
        if (sb_puts(j, m ? ",\n      [" : "\n      [") || put_token_string(j, tok, tok->merges[m].left, &tmp) ||
            sb_puts(j, ", ") || put_token_string(j, tok, tok->merges[m].right, &tmp) || sb_putc(j, ']'))
            goto out;
    }
    rc = sb_puts(j, "\n    ]\n  }\n}\n");
out:
    sb_free(&tmp);
    return rc;
}

static int put_config_token(strbuf *j, const tokenizer *tok, const char *key, int32_t id, strbuf *tmp) {
    if (sb_printf(j, "  \"%s\": ", key)) return -1;
    if (id < 0) return sb_puts(j, "null,\n");
    if (put_token_string(j, tok, id, tmp)) return -1;
    return sb_puts(j, ",\n");
}

static int build_config_json(strbuf *j, const tokenizer *tok) {
    strbuf tmp = STRBUF_INIT;
    int rc = -1;
    int32_t pad = tok->pad >= 0 ? tok->pad : tok_lookup(tok, "<|pad|>", 7);
    if (pad >= 0 && tok->pad < 0 && !(tok->entries[pad].flags & TOKF_SPECIAL)) pad = -1;
    if (sb_printf(j, "{\n  \"tokenizer_class\": \"PreTrainedTokenizerFast\",\n"
                     "  \"clean_up_tokenization_spaces\": false,\n  \"add_bos_token\": %s,\n"
                     "  \"add_eos_token\": false,\n", tf(tokenizer_add_bos(tok))) ||
        put_config_token(j, tok, "bos_token", tok->bos, &tmp) || put_config_token(j, tok, "eos_token", tok->eos, &tmp) ||
        put_config_token(j, tok, "pad_token", pad, &tmp) ||
        (tok->unk >= 0 && put_config_token(j, tok, "unk_token", tok->unk, &tmp)) ||
        (tok->chat_template &&
         (sb_puts(j, "  \"chat_template\": ") || sb_json_string(j, tok->chat_template) || sb_puts(j, ",\n"))) ||
        sb_puts(j, "  \"added_tokens_decoder\": {"))
        goto out;
    int first = 1;
    for (int32_t id = 0; id < tok->n_vocab; id++) {
        if (!(tok->entries[id].flags & TOKF_ADDED)) continue;
        if (sb_printf(j, "%s\n    \"%ld\": {", first ? "" : ",", (long)id) || put_added_fields(j, tok, id, &tmp) ||
            sb_putc(j, '}'))
            goto out;
        first = 0;
    }
    rc = sb_puts(j, "\n  }\n}\n");
out:
    sb_free(&tmp);
    return rc;
}

/* Appends to the config text j (a JSON object ending in "}\n") the members of the existing file at
 * path whose keys j lacks (chat_template, model_max_length, ...), in their order. A missing file
 * is nothing to keep; an unreadable one is an error (it would be silently replaced). */
static int keep_config_keys(strbuf *j, const char *path) {
    if (!fs_exists(path)) return 0;
    char *text = NULL;
    cJSON *old = NULL, *ours = NULL;
    strbuf add = STRBUF_INIT;
    int rc = -1;
    if (fs_read_file(path, 64u << 20, &text, NULL)) goto out;
    if (!(old = cJSON_Parse(text)) || !cJSON_IsObject(old)) {
        err_set(ERR_INPUT, "%s is not a JSON object; remove it or fix it", path);
        goto out;
    }
    if (!(ours = cJSON_Parse(j->buf))) {
        err_set(ERR_INTERNAL, "the tokenizer_config.json built for %s does not parse", path);
        goto out;
    }
    for (const cJSON *it = old->child; it; it = it->next) {
        if (!it->string || cJSON_GetObjectItemCaseSensitive(ours, it->string)) continue;
        char *v = cJSON_PrintUnformatted(it);
        int bad = !v || sb_puts(&add, ",\n  ") || sb_json_string(&add, it->string) || sb_puts(&add, ": ") || sb_puts(&add, v);
        cJSON_free(v);
        if (bad) goto out;
    }
    if (add.len) {
        j->len -= 2; /* "}\n" */
        j->buf[j->len] = 0;
        if (sb_append(j, add.buf, add.len) || sb_puts(j, "\n}\n")) goto out;
    }
    rc = 0;
out:
    cJSON_Delete(old);
    cJSON_Delete(ours);
    free(text);
    sb_free(&add);
    return rc;
}

int tokenizer_save_hf(const tokenizer *tok, const char *dir) {
    if (tok->spm)
        return err_set(ERR_INPUT, "%s is a llama2.c tokenizer (score-merged sentencepiece pieces), which has no "
                                  "byte-level BPE tokenizer.json form; only byte-level tokenizers can be saved",
                       tok->source);
    if (fs_mkdir_p(dir, 0755)) return err_prefix("saving tokenizer: ");
    strbuf j = STRBUF_INIT;
    char *path = NULL;
    int rc = -1;
    if (build_tokenizer_json(&j, tok)) goto out;
    if (!(path = fs_join(dir, "tokenizer.json")) || fs_write_atomic(path, j.buf, j.len)) goto out;
    free(path);
    path = NULL;
    sb_reset(&j);
    if (build_config_json(&j, tok) || !(path = fs_join(dir, "tokenizer_config.json")) || keep_config_keys(&j, path) ||
        fs_write_atomic(path, j.buf, j.len))
        goto out;
    rc = 0;
out:
    if (rc) err_prefix("saving tokenizer to %s: ", dir);
    free(path);
    sb_free(&j);
    return rc;
}
