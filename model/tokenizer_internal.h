/* tokenizer_internal.h: the tokenizer struct and the helpers shared by model/tokenizer*.c
 * (vocabulary building, hashing, the byte-level alphabet, regex pre-tokenizer steps).
 * Not for use outside model/tokenizer*.c: the public API is model/tokenizer.h. */
#ifndef SMELT_MODEL_TOKENIZER_INTERNAL_H
#define SMELT_MODEL_TOKENIZER_INTERNAL_H

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <stddef.h>
#include <stdint.h>

#include "common/strbuf.h"
#include "model/tokenizer.h"

/* Bounds on what a file may declare; larger values are rejected as corrupt input. */
#define TOK_MAX_VOCAB (1 << 22)      /* ids */
#define TOK_MAX_PIECE 65536          /* bytes in one token */
#define TOK_MAX_FILE (1u << 30)      /* bytes in one tokenizer file */
#define TOK_MAX_STEPS 8              /* pre-tokenizer steps */
#define TOK_MAX_MISSING_BYTES 32     /* byte tokens a byte-level vocabulary may lack */

/* The regex patterns smelt knows by name (tiktoken and vocab.json files carry none). */
#define TOK_PATTERN_LLAMA3                                                                          \
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[" \
    "\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
#define TOK_PATTERN_QWEN2                                                                       \
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[" \
    "\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
#define TOK_PATTERN_GPT2 "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+"

enum {
    TOKF_SPECIAL = 1 << 0,     /* a special token (never split, skipped by nothing here) */
    TOKF_ADDED = 1 << 1,       /* an added token: matched in the text before pre-tokenization */
    TOKF_RAW = 1 << 2,         /* its vocabulary string was not byte-level: piece is that UTF-8 text */
    TOKF_CONTROL = 1 << 3,     /* decodes to nothing (llama2.c BOS/EOS) */
    TOKF_BYTE = 1 << 4,        /* llama2.c "<0xXX>" byte-fallback piece; `byte` holds the byte */
    TOKF_LSTRIP = 1 << 5,      /* added token swallows the whitespace on its left */
    TOKF_RSTRIP = 1 << 6,      /* ... and on its right */
    TOKF_SINGLE_WORD = 1 << 7, /* added token matches only between word boundaries */
    TOKF_NORMALIZED = 1 << 8,  /* HF "normalized" flag (kept for saving) */
    TOKF_PRESENT = 1 << 9,     /* the id is defined (ids may have holes) */
};

typedef struct {
    uint32_t off, len; /* the piece in tok->arena: decoded bytes (llama2.c: the literal piece text) */
    uint16_t flags;
    uint8_t byte;      /* TOKF_BYTE only */
    float score;       /* llama2.c merge score */
} tok_entry;

/* One merge rule: left + right -> result, applied in increasing prio, leftmost first. */
typedef struct {
    int32_t left, right, result, prio;
} tok_merge;

/* Hash slots keep a fragment of the key so that most probes touch one cache line. */
typedef struct {
    uint32_t tag; /* high bits of the piece's hash */
    int32_t id;
} tok_slot;

typedef struct {
    int32_t left, right, m;
} tok_merge_slot;

typedef enum { TOKSTEP_SPLIT = 1, TOKSTEP_BYTELEVEL } tok_step_kind;
enum { TOKSPLIT_ISOLATED = 0, TOKSPLIT_REMOVED = 1 };

/* One pre-tokenizer step: a Split(regex) or a ByteLevel (whose regex is GPT-2's when use_regex). */
typedef struct {
    tok_step_kind kind;
    pcre2_code *re;     /* NULL: the step does not split */
    char *pattern;      /* the source text of the pattern, for saving */
    int literal;        /* Split with {"String": ...} */
    int behavior;       /* TOKSPLIT_* */
    int invert;
    int add_prefix_space, trim_offsets, use_regex; /* ByteLevel */
} tok_step;

struct tokenizer {
    tokenizer_format_t format;
    char *source;
    int32_t n_vocab;     /* ids 0..n_vocab-1 (holes have no TOKF_PRESENT) */
    int32_t cap_vocab;
    tok_entry *entries;
    strbuf arena;        /* all pieces, back to back */
    tok_slot *hash;      /* piece -> id, open addressing (id -1: empty); hash_mask + 1 slots */
    size_t hash_mask;
    tok_merge *merges;   /* in rank order */
    int32_t n_merges, cap_merges;
    tok_merge_slot *merge_hash; /* (left, right) -> index into merges (m -1: empty) */
    size_t merge_mask;
    int32_t byte_id[256]; /* the token of each single byte (-1: none) */
    int32_t *added;      /* added-token ids grouped by first byte, longest first */
    int32_t n_added;
    int32_t added_start[257]; /* added[added_start[b] .. added_start[b+1]) begin with byte b */
    tok_step steps[TOK_MAX_STEPS];
    int n_steps;
    int ignore_merges;   /* emit a pre-token that is a whole vocabulary entry as is */
    int spm;             /* llama2.c semantics: codepoint symbols, score merges, dummy prefix */
    int spm_space_id;    /* the " " piece of the dummy prefix (-1: none) */
    int32_t bos, eos;
    int32_t unk, pad;    /* GGUF's unknown and padding ids (-1: none), written back to GGUF */
    int add_bos;         /* callers prepend BOS (when there is one); GGUF and tokenizer.json can say no */
    char normalizer[16]; /* "" or "NFC" (recorded for saving; text is assumed already NFC) */
    char pre[32];        /* the GGUF pre-tokenizer name it was loaded with ("smollm"), or "" */
    char *chat_template; /* the Jinja chat template of the model (GGUF, tokenizer_config.json), or NULL */
};

/* Vocabulary building (tokenizer.c). */
tokenizer *tok_new(tokenizer_format_t format, const char *source);
/* Defines id (must not be defined yet) with its piece bytes and flags. */
int tok_define(tokenizer *tok, int32_t id, const void *piece, size_t len, unsigned flags);
/* Adds (or redefines) an added token: its id may already hold the same text. */
int tok_define_added(tokenizer *tok, int32_t id, const char *content, unsigned flags);
int32_t tok_lookup(const tokenizer *tok, const void *piece, size_t len);
int tok_build_index(tokenizer *tok); /* the piece hash; call after all tok_define */
/* Appends merge left+right; result is the id of the concatenation (error when absent). */
int tok_add_merge(tokenizer *tok, int32_t left, int32_t right, int32_t prio, const char *what);
int tok_build_merge_index(tokenizer *tok);
int32_t tok_merge_find(const tokenizer *tok, int32_t left, int32_t right); /* index or -1 */
/* Merges for every vocabulary entry that is the concatenation of two entries (tiktoken,
 * llama2.c): ordered by result rank (prio = result for tiktoken) like transformers does. */
int tok_derive_merges(tokenizer *tok, int by_score);
/* Byte ids, added-token index, BOS/EOS fallbacks by name; with need_all_bytes, checks that at most
 * TOK_MAX_MISSING_BYTES byte tokens are missing (a byte-level vocabulary). */
int tok_finish(tokenizer *tok, int need_all_bytes);
int tok_add_step_split(tokenizer *tok, const char *pattern, int literal, int behavior, int invert);
int tok_add_step_bytelevel(tokenizer *tok, int add_prefix_space, int trim_offsets, int use_regex);

/* The GPT-2 byte-level alphabet: byte -> code point, and a byte-level string -> bytes.
 * tok_bytelevel_decode returns 1 when s is not a byte-level string (then out holds s as is). */
uint32_t tok_byte_to_cp(uint8_t b);
int tok_bytelevel_decode(const char *s, size_t n, strbuf *out);
int tok_bytelevel_encode(strbuf *out, const void *bytes, size_t n);

/* Helpers of tokenizer_hf.c shared with the GGUF loader. */
/* A vocabulary string (byte-level, NUL-terminated) to its bytes in sb; TOKF_RAW when it is not byte-level. */
int tok_vocab_bytes(const char *s, strbuf *sb, unsigned *flags);
/* Merge `rank` given as its two halves (vocabulary strings); `where` names it in messages. */
int tok_add_merge_strings(tokenizer *tok, const char *a, const char *b, int32_t rank, const char *where, strbuf *sb);
/* Splits "a b" at its one space in place; -1 unless exactly two non-empty parts. */
int tok_split_merge_line(char *line, char **a, char **b);

/* Loaders (tokenizer_hf.c, tokenizer_formats.c, tokenizer_gguf.c). */
int tok_load_gguf(tokenizer **out, const char *path);
int tok_load_hf_json(tokenizer **out, const char *path, const char *text, size_t len);
int tok_load_hf_vocab(tokenizer **out, const char *path, const char *text, size_t len);
int tok_load_tiktoken(tokenizer **out, const char *path, const char *text, size_t len);
int tok_load_llama2c(tokenizer **out, const char *path, const char *data, size_t len);
int tok_load_builtin_bytes(tokenizer **out);

/* UTF-8 helper: length of the valid sequence at s (1..4), or 0 when invalid/truncated. */
int tok_utf8_len(const unsigned char *s, size_t n);

#endif
