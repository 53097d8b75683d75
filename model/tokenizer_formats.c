/* tokenizer_formats.c: the non-Hugging-Face formats: tiktoken .model files (Llama 3: the
 * Llama 3 pattern and its 256 special tokens), llama2.c tokenizer.bin (sentencepiece-style
 * pieces merged by score, as llama2.c's run.c does) and the built-in byte tokenizer. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "model/tokenizer_internal.h"

/* ---- tiktoken ---- */

static int b64_value(unsigned char c) {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
}

/* Decodes standard base64 (with '=' padding) into out (at least 3*n/4+3 bytes); -1 if invalid. */
static long b64_decode(const char *s, size_t n, unsigned char *out) {
    if (n % 4) return -1;
    long k = 0;
    for (size_t i = 0; i < n; i += 4) {
        int v[4], pad = 0;
        for (int j = 0; j < 4; j++) {
            unsigned char c = (unsigned char)s[i + j];
            if (c == '=' && i + 4 == n && j >= 2) {
                v[j] = 0;
                pad++;
            } else {
                if (pad) return -1;
                v[j] = b64_value(c);
                if (v[j] < 0) return -1;
            }
        }
        uint32_t x = (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 | (uint32_t)v[2] << 6 | (uint32_t)v[3];
        out[k++] = (unsigned char)(x >> 16);
        if (pad < 2) out[k++] = (unsigned char)(x >> 8);
        if (pad < 1) out[k++] = (unsigned char)x;
    }
    return k;
}

/* Meta's Llama 3 special tokens, ids 128000..128255 (llama3/tokenizer.py). */
static int add_llama3_specials(tokenizer *tok) {
    static const char *const first[] = {
        "<|begin_of_text|>",            "<|end_of_text|>",   "<|reserved_special_token_0|>",
        "<|reserved_special_token_1|>", "<|reserved_special_token_2|>", "<|reserved_special_token_3|>",
        "<|start_header_id|>",          "<|end_header_id|>", "<|reserved_special_token_4|>",
        "<|eot_id|>",
    };
    int32_t id = 128000;
    for (size_t i = 0; i < sizeof first / sizeof *first; i++)
        if (tok_define_added(tok, id++, first[i], TOKF_SPECIAL)) return -1;
    for (int r = 5; id < 128256; r++) {
        char name[64];
        snprintf(name, sizeof name, "<|reserved_special_token_%d|>", r);
        if (tok_define_added(tok, id++, name, TOKF_SPECIAL)) return -1;
    }
    tok->bos = 128000;
    tok->eos = 128001;
    return 0;
}

int tok_load_tiktoken(tokenizer **out, const char *path, const char *text, size_t len) {
    tokenizer *tok = tok_new(TOKENIZER_TIKTOKEN, path);
    unsigned char *buf = NULL;
    if (!tok) return -1;
    long line_no = 0;
    for (const char *p = text; p < text + len;) {
        const char *nl = memchr(p, '\n', (size_t)(text + len - p));
        const char *end = nl ? nl : text + len;
        line_no++;
        const char *e = end;
        if (e > p && e[-1] == '\r') e--;
        if (e > p) {
            const char *sp = memchr(p, ' ', (size_t)(e - p));
            char *rend;
            long rank = sp ? strtol(sp + 1, &rend, 10) : -1;
            if (!sp || sp == p || sp + 1 == e || rend != e || rank < 0 || rank >= TOK_MAX_VOCAB ||
                (size_t)(sp - p) > 4 * (TOK_MAX_PIECE / 3) + 4) {
                err_set(ERR_CORRUPT, "%s:%ld: expected '<base64 token> <rank>' with a rank in 0..%d; is this a "
                                     "tiktoken file?", path, line_no, TOK_MAX_VOCAB - 1);
                goto fail;
            }
            free(buf);
            buf = xmalloc((size_t)(sp - p) / 4 * 3 + 3);
            if (!buf) goto fail;
            long n = b64_decode(p, (size_t)(sp - p), buf);
            if (n <= 0) {
                err_set(ERR_CORRUPT, "%s:%ld: the token is not valid base64", path, line_no);
                goto fail;
            }
            if (tok_define(tok, (int32_t)rank, buf, (size_t)n, 0)) {
                err_prefix("%s:%ld: ", path, line_no);
                goto fail;
            }
        }
        p = end + 1;
    }
    if (tok_build_index(tok)) goto fail;
    if (tok_derive_merges(tok, 0)) goto fail;
    if (tok->n_vocab == 128000 && add_llama3_specials(tok)) goto fail;
    tok->ignore_merges = 1; /* tiktoken emits a pre-token that is itself a rank as is */
    if (tok_add_step_split(tok, TOK_PATTERN_LLAMA3, 0, TOKSPLIT_ISOLATED, 0) || tok_add_step_bytelevel(tok, 0, 1, 0))
        goto fail;
    if (tok_finish(tok, 1)) goto fail;
    free(buf);
    *out = tok;
    return 0;
fail:
    free(buf);
    tokenizer_free(tok);
    return -1;
}

/* ---- llama2.c tokenizer.bin ---- */

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

int tok_load_llama2c(tokenizer **out, const char *path, const char *data, size_t len) {
    /* Layout: int32 max_token_length, then per token: float32 score, int32 len, len bytes; the
     * vocabulary size is not stored (llama2.c takes it from the model), so records run to EOF. */
    int32_t max_len;
    if (len < 4) return err_set(ERR_CORRUPT, "%s is %zu bytes: too short for a llama2.c tokenizer.bin", path, len);
    memcpy(&max_len, data, 4);
    if (max_len <= 0 || max_len > TOK_MAX_PIECE)
        return err_set(ERR_CORRUPT, "%s: max_token_length is %ld, expected 1..%d; is this a llama2.c tokenizer.bin?",
                       path, (long)max_len, TOK_MAX_PIECE);
    tokenizer *tok = tok_new(TOKENIZER_LLAMA2C, path);
    if (!tok) return -1;
    tok->spm = 1;
    size_t p = 4;
    int32_t id = 0;
    while (p < len) {
        float score;
        int32_t n;
        if (len - p < 8) {
            err_set(ERR_CORRUPT, "%s is truncated: token %ld at byte %zu has %zu of its 8 header bytes", path, (long)id,
                    p, len - p);
            goto fail;
        }
        memcpy(&score, data + p, 4);
        memcpy(&n, data + p + 4, 4);
        if (n < 0 || n > max_len) {
            err_set(ERR_CORRUPT, "%s: token %ld at byte %zu has length %ld, outside 0..max_token_length=%ld", path,
                    (long)id, p, (long)n, (long)max_len);
            goto fail;
        }
        if (len - p - 8 < (size_t)n) {
            err_set(ERR_CORRUPT, "%s is truncated: token %ld at byte %zu needs %ld bytes, %zu remain", path, (long)id, p,
                    (long)n, len - p - 8);
            goto fail;
        }
        const char *s = data + p + 8;
        unsigned flags = 0;
        if (id == 1 || id == 2) flags |= TOKF_SPECIAL | TOKF_CONTROL; /* <s>, </s> in llama2.c */
        if (id == 0) flags |= TOKF_SPECIAL;                          /* <unk> */
        int hi = n == 6 ? hexval(s[3]) : -1, lo = n == 6 ? hexval(s[4]) : -1;
        if (n == 6 && !memcmp(s, "<0x", 3) && s[5] == '>' && hi >= 0 && lo >= 0) flags |= TOKF_BYTE;
        if (tok_define(tok, id, s, (size_t)n, flags)) goto fail;
        tok->entries[id].score = score;
        if (flags & TOKF_BYTE) tok->entries[id].byte = (uint8_t)(hi * 16 + lo);
        p += 8 + (size_t)n;
        if (++id >= TOK_MAX_VOCAB) {
            err_set(ERR_CORRUPT, "%s holds more than %d tokens", path, TOK_MAX_VOCAB);
            goto fail;
        }
    }
    if (id < 3) {
        err_set(ERR_CORRUPT, "%s holds %ld tokens; a llama2.c tokenizer has at least <unk>, <s>, </s>", path, (long)id);
        goto fail;
    }
    if (tok_build_index(tok)) goto fail;
    for (int32_t i = id - 1; i >= 0; i--) /* the lowest id wins when a byte piece repeats */
        if (tok->entries[i].flags & TOKF_BYTE) tok->byte_id[tok->entries[i].byte] = i;
    tok->spm_space_id = tok_lookup(tok, " ", 1);
    tok->bos = 1;
    tok->eos = 2;
    if (tok_derive_merges(tok, 1) || tok_finish(tok, 0)) goto fail;
    *out = tok;
    return 0;
fail:
    tokenizer_free(tok);
    return -1;
}

/* ---- builtin:bytes ---- */

int tok_load_builtin_bytes(tokenizer **out) {
    tokenizer *tok = tok_new(TOKENIZER_BUILTIN_BYTES, "builtin:bytes");
    if (!tok) return -1;
    for (int b = 0; b < 256; b++) {
        char c = (char)b;
        if (tok_define(tok, b, &c, 1, 0)) goto fail;
    }
    if (tok_define_added(tok, TOKENIZER_BYTES_BOS, "<|begin_of_text|>", TOKF_SPECIAL) ||
        tok_define_added(tok, TOKENIZER_BYTES_EOS, "<|end_of_text|>", TOKF_SPECIAL) ||
        tok_define_added(tok, TOKENIZER_BYTES_PAD, "<|pad|>", TOKF_SPECIAL) ||
        tok_define_added(tok, TOKENIZER_BYTES_YES, " yes", 0) || tok_define_added(tok, TOKENIZER_BYTES_NO, " no", 0))
        goto fail;
    tok->bos = TOKENIZER_BYTES_BOS;
    tok->eos = TOKENIZER_BYTES_EOS;
    if (tok_finish(tok, 1)) goto fail;
    *out = tok;
    return 0;
fail:
    tokenizer_free(tok);
    return -1;
}
