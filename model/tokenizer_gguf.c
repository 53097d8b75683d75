/* tokenizer_gguf.c: tokenizers from GGUF metadata (tokenizer.ggml.*), as llama.cpp reads them.
 * - model "gpt2": byte-level BPE. Tokens are byte-level strings except control (3) and
 *   user-defined (4) tokens, which are text matched whole (special and plain added tokens);
 *   merges are "a b" lines; the pre-tokenizer comes from tokenizer.ggml.pre (the regexes of
 *   llama.cpp's llama-vocab.cpp for the names below).
 * - model "llama": SentencePiece pieces ("\u2581" for a space) merged by score, with <0xXX> byte
 *   fallback, exactly what the llama2.c tokenizer does (tokenizer_formats.c).
 * BOS/EOS ids, tokenizer.ggml.add_bos_token and tokenizer.chat_template are kept. The GGUF writer
 * of tokenizers (gguf_export.c) writes the same keys back. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "model/gguf.h"
#include "model/gguf_write.h"
#include "model/tokenizer_internal.h"

enum { TT_NORMAL = 1, TT_UNKNOWN = 2, TT_CONTROL = 3, TT_USER = 4, TT_UNUSED = 5, TT_BYTE = 6 };

#define PATTERN_DIGITS "\\p{N}"

/* llama.cpp's pre-tokenizer names and the steps smelt runs for them. */
typedef enum { PRE_GPT2, PRE_LLAMA3, PRE_QWEN2, PRE_DIGITS_GPT2 } pre_kind;
static const struct {
    const char *name;
    pre_kind kind;
} pre_names[] = {
    {"default", PRE_GPT2},      {"gpt-2", PRE_GPT2},          {"gpt2", PRE_GPT2},           {"mpt", PRE_GPT2},
    {"olmo", PRE_GPT2},         {"jais", PRE_GPT2},           {"llama-bpe", PRE_LLAMA3},   {"llama3", PRE_LLAMA3},
    {"llama-v3", PRE_LLAMA3},   {"falcon3", PRE_LLAMA3},      {"dbrx", PRE_LLAMA3},        {"smaug-bpe", PRE_LLAMA3},
    {"pixtral", PRE_LLAMA3},    {"qwen2", PRE_QWEN2},         {"deepseek-r1-qwen", PRE_QWEN2}, {"stablelm2", PRE_QWEN2},
    {"smollm", PRE_DIGITS_GPT2}, {"starcoder", PRE_DIGITS_GPT2}, {"refact", PRE_DIGITS_GPT2},
    {"command-r", PRE_DIGITS_GPT2}, {"codeshell", PRE_DIGITS_GPT2}, {"exaone", PRE_DIGITS_GPT2},
    {"minerva-7b", PRE_DIGITS_GPT2},
};

static int set_pre(tokenizer *tok, const char *pre) {
    int k = -1;
    for (size_t i = 0; i < sizeof pre_names / sizeof *pre_names; i++)
        if (!strcmp(pre, pre_names[i].name)) k = (int)i;
    if (k < 0)
        return err_set(ERR_INPUT, "%s: tokenizer.ggml.pre '%s' is not a pre-tokenizer smelt knows (it reads gpt-2, "
                       "llama-bpe, qwen2, smollm and their aliases)", tok->source, pre);
    snprintf(tok->pre, sizeof tok->pre, "%s", pre);
    switch (pre_names[k].kind) {
    case PRE_GPT2: return tok_add_step_bytelevel(tok, 0, 1, 1);
    case PRE_LLAMA3:
        tok->ignore_merges = 1; /* llama.cpp and Llama 3's tokenizer.json emit whole-vocabulary words as is */
        return tok_add_step_split(tok, TOK_PATTERN_LLAMA3, 0, TOKSPLIT_ISOLATED, 0) || tok_add_step_bytelevel(tok, 0, 1, 0);
    case PRE_QWEN2:
        strcpy(tok->normalizer, "NFC");
        return tok_add_step_split(tok, TOK_PATTERN_QWEN2, 0, TOKSPLIT_ISOLATED, 0) || tok_add_step_bytelevel(tok, 0, 1, 0);
    case PRE_DIGITS_GPT2:
        return tok_add_step_split(tok, PATTERN_DIGITS, 0, TOKSPLIT_ISOLATED, 0) || tok_add_step_bytelevel(tok, 0, 1, 1);
    }
    return 0;
}

/* The type of token i (normal when the file has no token_type array). */
static int token_type(const gguf_kv *types, uint64_t i) { return types ? (int)gguf_arr_num(types, i) : TT_NORMAL; }

static int load_bpe(tokenizer *tok, const gguf_file *f, const gguf_kv *tokens, const gguf_kv *types) {
    strbuf sb = STRBUF_INIT, line = STRBUF_INIT;
    int rc = -1;
    for (uint64_t i = 0; i < tokens->n; i++) {
        uint64_t len;
        const char *s = gguf_arr_str(tokens, i, &len);
        int tt = token_type(types, i);
        if (tt == TT_CONTROL || tt == TT_USER) {
            sb_reset(&line);
            if (len == 0 || memchr(s, 0, len) || sb_append(&line, s, (size_t)len)) {
                if (len == 0 || memchr(s, 0, len))
                    err_set(ERR_CORRUPT, "%s: token %llu is an empty or NUL-holding %s token", tok->source,
                            (unsigned long long)i, tt == TT_CONTROL ? "control" : "user-defined");
                goto out;
            }
            if (tok_define_added(tok, (int32_t)i, line.buf, tt == TT_CONTROL ? TOKF_SPECIAL : TOKF_NORMALIZED)) goto out;
            continue;
        }
        unsigned flags = 0;
        sb_reset(&sb);
        int r = tok_bytelevel_decode(s, (size_t)len, &sb);
        if (r < 0) goto out;
        if (r == 1) flags |= TOKF_RAW;
        if (tok_define(tok, (int32_t)i, sb.buf ? sb.buf : "", sb.len, flags)) goto out;
    }
    if (tok_build_index(tok)) goto out;
    const gguf_kv *merges;
    int m = gguf_get_array(f, "tokenizer.ggml.merges", 1, 0, &merges);
    if (m < 0) goto out;
    if (m > 0) {
        err_set(ERR_CORRUPT, "%s: a gpt2 tokenizer without tokenizer.ggml.merges", tok->source);
        goto out;
    }
    for (uint64_t i = 0; i < merges->n; i++) {
        uint64_t len;
        const char *s = gguf_arr_str(merges, i, &len);
        char *a, *b, where[64];
        sb_reset(&line);
        if (sb_append(&line, s, (size_t)len)) goto out;
        if (memchr(s, 0, len) || tok_split_merge_line(line.buf, &a, &b)) {
            err_set(ERR_CORRUPT, "%s: merge %llu '%.64s' is not two tokens separated by one space", tok->source,
                    (unsigned long long)i, line.buf);
            goto out;
        }
        snprintf(where, sizeof where, "tokenizer.ggml.merges[%llu]", (unsigned long long)i);
        if (tok_add_merge_strings(tok, a, b, (int32_t)i, where, &sb)) goto out;
    }
    if (tok_build_merge_index(tok)) goto out;
    char *pre = NULL;
    int r = gguf_get_string(f, "tokenizer.ggml.pre", &pre);
    if (r < 0) goto out;
    r = set_pre(tok, pre ? pre : "default");
    free(pre);
    if (r || tok_finish(tok, 1)) goto out;
    rc = 0;
out:
    sb_free(&sb);
    sb_free(&line);
    return rc;
}

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* SentencePiece: "\u2581" (E2 96 81) stands for a space. */
static int load_spm(tokenizer *tok, const gguf_file *f, const gguf_kv *tokens, const gguf_kv *types) {
    const gguf_kv *scores;
    int r = gguf_get_array(f, "tokenizer.ggml.scores", 0, tokens->n, &scores);
    if (r) return r < 0 ? -1 : err_set(ERR_CORRUPT, "%s: a llama (SentencePiece) tokenizer without tokenizer.ggml.scores",
                                      tok->source);
    tok->spm = 1;
    strbuf sb = STRBUF_INIT;
    for (uint64_t i = 0; i < tokens->n; i++) {
        uint64_t len;
        const char *s = gguf_arr_str(tokens, i, &len);
        int tt = token_type(types, i);
        sb_reset(&sb);
        for (uint64_t k = 0; k < len; k++) {
            if (k + 2 < len && (unsigned char)s[k] == 0xE2 && (unsigned char)s[k + 1] == 0x96 && (unsigned char)s[k + 2] == 0x81) {
                if (sb_putc(&sb, ' ')) goto fail;
                k += 2;
            } else if (sb_putc(&sb, s[k])) {
                goto fail;
            }
        }
        unsigned flags = 0;
        const char *p = sb.buf ? sb.buf : "";
        if (tt == TT_CONTROL) flags |= TOKF_SPECIAL | TOKF_CONTROL;
        if (tt == TT_UNKNOWN) flags |= TOKF_SPECIAL;
        int hi = sb.len == 6 ? hexval(p[3]) : -1, lo = sb.len == 6 ? hexval(p[4]) : -1;
        int is_byte = tt == TT_BYTE && sb.len == 6 && !memcmp(p, "<0x", 3) && p[5] == '>' && hi >= 0 && lo >= 0;
        if (tt == TT_BYTE && !is_byte) {
            err_set(ERR_CORRUPT, "%s: token %llu is marked as a byte but is not <0xXX>", tok->source, (unsigned long long)i);
            goto fail;
        }
        if (is_byte) flags |= TOKF_BYTE;
        if (tt == TT_USER) {
            if (!sb.len || memchr(p, 0, sb.len) || tok_define_added(tok, (int32_t)i, p, TOKF_NORMALIZED)) {
                if (!err_msg()[0]) err_set(ERR_CORRUPT, "%s: user-defined token %llu is empty", tok->source, (unsigned long long)i);
                goto fail;
            }
        } else if (tok_define(tok, (int32_t)i, p, sb.len, flags)) {
            goto fail;
        }
        float sc = (float)gguf_arr_num(scores, i);
        tok->entries[i].score = sc;
        if (is_byte) tok->entries[i].byte = (uint8_t)(hi * 16 + lo);
    }
    sb_free(&sb);
    if (tok_build_index(tok)) return -1;
    for (int32_t i = tok->n_vocab - 1; i >= 0; i--) /* the lowest id wins when a byte piece repeats */
        if (tok->entries[i].flags & TOKF_BYTE) tok->byte_id[tok->entries[i].byte] = i;
    int prefix = 1;
    if (gguf_get_bool(f, "tokenizer.ggml.add_space_prefix", &prefix) < 0) return -1;
    tok->spm_space_id = prefix ? tok_lookup(tok, " ", 1) : -1;
    snprintf(tok->pre, sizeof tok->pre, "llama");
    return tok_derive_merges(tok, 1) || tok_finish(tok, 0) ? -1 : 0;
fail:
    sb_free(&sb);
    return -1;
}

/* BOS, EOS, the add-BOS flag and the chat template. */
static int load_specials(tokenizer *tok, const gguf_file *f, int spm) {
    int64_t v;
    int r;
    if ((r = gguf_get_int(f, "tokenizer.ggml.bos_token_id", 0, tok->n_vocab - 1, &v)) < 0) return -1;
    if (!r) tok->bos = (int32_t)v;
    if ((r = gguf_get_int(f, "tokenizer.ggml.eos_token_id", 0, tok->n_vocab - 1, &v)) < 0) return -1;
    if (!r) tok->eos = (int32_t)v;
    if ((r = gguf_get_int(f, "tokenizer.ggml.unknown_token_id", 0, tok->n_vocab - 1, &v)) < 0) return -1;
    if (!r) tok->unk = (int32_t)v;
    if ((r = gguf_get_int(f, "tokenizer.ggml.padding_token_id", 0, tok->n_vocab - 1, &v)) < 0) return -1;
    if (!r) tok->pad = (int32_t)v;
    /* absent: SentencePiece vocabularies add BOS, byte-level ones do not (llama.cpp, transformers) */
    tok->add_bos = spm;
    if (gguf_get_bool(f, "tokenizer.ggml.add_bos_token", &tok->add_bos) < 0) return -1;
    if (gguf_get_string(f, "tokenizer.chat_template", &tok->chat_template) < 0) return -1;
    return 0;
}

int tokenizer_load_gguf_file(tokenizer **out, const gguf_file *f) {
    *out = NULL;
    const char *path = f->path;
    tokenizer *tok = tok_new(TOKENIZER_GGUF, path);
    char *model = NULL;
    int rc = -1;
    if (!tok) goto out;
    int r = gguf_get_string(f, "tokenizer.ggml.model", &model);
    if (r) {
        if (r > 0) err_set(ERR_INPUT, "%s has no tokenizer (no tokenizer.ggml.model in its metadata)", path);
        goto out;
    }
    const gguf_kv *tokens, *types = NULL;
    if ((r = gguf_get_array(f, "tokenizer.ggml.tokens", 1, 0, &tokens))) {
        if (r > 0) err_set(ERR_CORRUPT, "%s: tokenizer.ggml.tokens is missing", path);
        goto out;
    }
    if (tokens->n == 0 || tokens->n > TOK_MAX_VOCAB) {
        err_set(ERR_CORRUPT, "%s: tokenizer.ggml.tokens holds %llu tokens, expected 1 to %d", path,
                (unsigned long long)tokens->n, TOK_MAX_VOCAB);
        goto out;
    }
    if (gguf_get_array(f, "tokenizer.ggml.token_type", 0, tokens->n, &types) < 0) goto out;
    int spm = !strcmp(model, "llama");
    if (!strcmp(model, "gpt2")) r = load_bpe(tok, f, tokens, types);
    else if (spm) r = load_spm(tok, f, tokens, types);
    else r = err_set(ERR_INPUT, "%s: tokenizer.ggml.model '%s' is not supported; smelt reads gpt2 (byte-level BPE) and "
                     "llama (SentencePiece) tokenizers", path, model);
    if (r || load_specials(tok, f, spm)) goto out;
    rc = 0;
out:
    free(model);
    if (rc) {
        tokenizer_free(tok);
        return err_prefix("loading tokenizer: ");
    }
    *out = tok;
    return 0;
}

int tok_load_gguf(tokenizer **out, const char *path) {
    *out = NULL;
    gguf_file f;
    if (gguf_open(&f, path)) return err_prefix("loading tokenizer: ");
    int rc = tokenizer_load_gguf_file(out, &f);
    gguf_close(&f);
    return rc;
}

/* ---- writing: the tokenizer.ggml.* keys of a tokenizer ---- */

/* The llama.cpp name of the pre-tokenizer steps (the one it was loaded with, when from GGUF). */
static const char *pre_name(const tokenizer *tok) {
    if (tok->pre[0]) return tok->pre;
    const tok_step *s = tok->steps;
    if (tok->n_steps == 0 && tok->n_merges == 0) return "gpt-2"; /* bytes only: any split gives the same ids */
    if (tok->n_steps == 1 && s[0].kind == TOKSTEP_BYTELEVEL && s[0].use_regex && !s[0].add_prefix_space) return "gpt-2";
    if (tok->n_steps != 2 || s[0].kind != TOKSTEP_SPLIT || s[0].literal || s[0].invert ||
        s[0].behavior != TOKSPLIT_ISOLATED || s[1].kind != TOKSTEP_BYTELEVEL || s[1].add_prefix_space || !s[0].pattern)
        return NULL;
    if (!strcmp(s[0].pattern, TOK_PATTERN_LLAMA3) && !s[1].use_regex) return "llama-bpe";
    if (!strcmp(s[0].pattern, TOK_PATTERN_QWEN2) && !s[1].use_regex) return "qwen2";
    if (!strcmp(s[0].pattern, PATTERN_DIGITS) && s[1].use_regex) return "smollm";
    return NULL;
}

/* The GGUF spelling of token id: byte-level for BPE pieces, "\u2581" for spaces in SentencePiece,
 * the text itself for added tokens; holes become "[PAD<id>]" (what llama.cpp's converter writes). */
static int token_string(strbuf *out, const tokenizer *tok, int32_t id, int *type) {
    const tok_entry *e = &tok->entries[id];
    sb_reset(out);
    if (!(e->flags & TOKF_PRESENT)) {
        *type = TT_UNUSED;
        return sb_printf(out, "[PAD%ld]", (long)id);
    }
    const char *p = tok->arena.buf + e->off;
    *type = (e->flags & TOKF_ADDED) ? ((e->flags & TOKF_SPECIAL) ? TT_CONTROL : TT_USER) : TT_NORMAL;
    if (tok->spm) {
        if (e->flags & TOKF_BYTE) *type = TT_BYTE;
        else if (e->flags & TOKF_CONTROL) *type = TT_CONTROL;
        else if (e->flags & TOKF_SPECIAL) *type = TT_UNKNOWN;
        for (uint32_t k = 0; k < e->len; k++)
            if (p[k] == ' ' ? sb_append(out, "\xe2\x96\x81", 3) : sb_putc(out, p[k])) return -1;
        return 0;
    }
    if (e->flags & (TOKF_ADDED | TOKF_RAW)) return sb_append(out, p, e->len);
    return tok_bytelevel_encode(out, p, e->len);
}

int tokenizer_to_gguf(const tokenizer *tok, gguf_writer *w) {
    const char *pre = tok->spm ? NULL : pre_name(tok);
    if (!tok->spm && !pre)
        return err_set(ERR_INPUT, "%s: its pre-tokenizer is none of those GGUF names (gpt-2, llama-bpe, qwen2, smollm), "
                       "so llama.cpp could not split text as it does", tok->source);
    int32_t n = tok->n_vocab;
    char **strs = xcalloc((size_t)n, sizeof *strs);
    size_t *lens = xcalloc((size_t)n, sizeof *lens);
    int32_t *types = xcalloc((size_t)n, sizeof *types);
    float *scores = tok->spm ? xcalloc((size_t)n, sizeof *scores) : NULL;
    strbuf sb = STRBUF_INIT;
    int rc = -1;
    if (!strs || !lens || !types || (tok->spm && !scores)) goto out;
    for (int32_t i = 0; i < n; i++) {
        int t;
        if (token_string(&sb, tok, i, &t)) goto out;
        lens[i] = sb.len;
        strs[i] = sb_detach(&sb);
        types[i] = t;
        if (!strs[i]) goto out;
        if (scores) scores[i] = tok->entries[i].score;
    }
    if (gguf_set_str(w, "tokenizer.ggml.model", tok->spm ? "llama" : "gpt2", tok->spm ? 5 : 4) ||
        (pre && gguf_set_str(w, "tokenizer.ggml.pre", pre, strlen(pre))) ||
        gguf_set_arr_str(w, "tokenizer.ggml.tokens", (const char *const *)strs, lens, (uint64_t)n) ||
        (scores && gguf_set_arr_num(w, "tokenizer.ggml.scores", GGUF_F32, scores, (uint64_t)n)) ||
        gguf_set_arr_num(w, "tokenizer.ggml.token_type", GGUF_I32, types, (uint64_t)n))
        goto out;
    if (!tok->spm) {
        /* merges in rank order, "left right" in the vocabulary's spelling */
        char **ms = xcalloc((size_t)(tok->n_merges ? tok->n_merges : 1), sizeof *ms);
        int bad = !ms;
        for (int32_t m = 0; !bad && m < tok->n_merges; m++) {
            const tok_merge *g = &tok->merges[m];
            sb_reset(&sb);
            bad = sb_append(&sb, strs[g->left], lens[g->left]) || sb_putc(&sb, ' ') ||
                  sb_append(&sb, strs[g->right], lens[g->right]) || !(ms[m] = sb_detach(&sb));
        }
        bad = bad || gguf_set_arr_str(w, "tokenizer.ggml.merges", (const char *const *)ms, NULL, (uint64_t)tok->n_merges);
        for (int32_t m = 0; ms && m < tok->n_merges; m++) free(ms[m]);
        free(ms);
        if (bad) goto out;
    }
    if (gguf_set_bool(w, "tokenizer.ggml.add_space_prefix", tok->spm && tok->spm_space_id >= 0) ||
        (tok->bos >= 0 && gguf_set_u32(w, "tokenizer.ggml.bos_token_id", (uint32_t)tok->bos)) ||
        (tok->eos >= 0 && gguf_set_u32(w, "tokenizer.ggml.eos_token_id", (uint32_t)tok->eos)) ||
        (tok->unk >= 0 && gguf_set_u32(w, "tokenizer.ggml.unknown_token_id", (uint32_t)tok->unk)) ||
        (tok->pad >= 0 && gguf_set_u32(w, "tokenizer.ggml.padding_token_id", (uint32_t)tok->pad)) ||
        gguf_set_bool(w, "tokenizer.ggml.add_bos_token", tokenizer_add_bos(tok)) ||
        (tok->chat_template && gguf_set_str(w, "tokenizer.chat_template", tok->chat_template, strlen(tok->chat_template))))
        goto out;
    rc = 0;
out:
    for (int32_t i = 0; strs && i < n; i++) free(strs[i]);
    free(strs);
    free(lens);
    free(types);
    free(scores);
    sb_free(&sb);
    return rc ? err_prefix("writing the tokenizer as GGUF metadata: ") : 0;
}

int tokenizer_save_gguf(const tokenizer *tok, const char *path) {
    gguf_writer *w = gguf_writer_new();
    if (!w) return -1;
    /* a vocabulary-only file, as llama.cpp's ggml-vocab-*.gguf: the architecture names the model
     * family for readers that need one */
    int rc = gguf_set_str(w, "general.architecture", "llama", 5) || gguf_set_str(w, "general.type", "vocab", 5) ||
             tokenizer_to_gguf(tok, w) || gguf_writer_write(w, path);
    gguf_writer_free(w);
    return rc ? -1 : 0;
}
