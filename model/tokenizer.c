/* tokenizer.c: the tokenizer object: vocabulary and merge tables (open-addressing hashes over
 * one piece arena), the byte-level alphabet, spec dispatch (file sniffing), accessors, decode.
 * Encoding lives in tokenizer_encode.c; the file formats in tokenizer_hf.c/_formats.c. */
#include "model/tokenizer_internal.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/error.h"
#include "common/fsutil.h"
#include "model/gguf.h"

/* ---- hashing ---- */

static uint64_t tok_hash_bytes(const void *p, size_t n) {
    const uint8_t *s = p;
    uint64_t h = 0x9E3779B97F4A7C15ull ^ (n * 0xff51afd7ed558ccdull);
    while (n >= 8) {
        uint64_t k;
        memcpy(&k, s, 8);
        h = (h ^ k) * 0xff51afd7ed558ccdull;
        h ^= h >> 32;
        s += 8;
        n -= 8;
    }
    uint64_t k = 0;
    memcpy(&k, s, n);
    h = (h ^ k) * 0xc4ceb9fe1a85ec53ull;
    h ^= h >> 29;
    return h;
}

static uint64_t tok_hash_pair(int32_t a, int32_t b) {
    uint64_t x = ((uint64_t)(uint32_t)a << 32) | (uint32_t)b;
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ull;
    x ^= x >> 33;
    return x;
}

/* Slots for n keys: a power of two at least 2n (load factor <= 1/2 keeps probes short). */
static size_t tok_hash_slots(size_t n) {
    size_t s = 16;
    while (s < 2 * n) s <<= 1;
    return s;
}

/* ---- vocabulary ---- */

tokenizer *tok_new(tokenizer_format_t format, const char *source) {
    tokenizer *tok = xcalloc(1, sizeof *tok);
    if (!tok) return NULL;
    tok->format = format;
    tok->source = xstrdup(source);
    if (!tok->source || sb_grow(&tok->arena, 256)) { /* the arena is never NULL: pieces may be empty */
        free(tok->source);
        free(tok);
        return NULL;
    }
    tok->bos = tok->eos = tok->unk = tok->pad = -1;
    tok->add_bos = 1;
    tok->spm_space_id = -1;
    for (int b = 0; b < 256; b++) tok->byte_id[b] = -1;
    return tok;
}

static int tok_reserve(tokenizer *tok, int32_t id) {
    if (id < 0 || id >= TOK_MAX_VOCAB)
        return err_set(ERR_CORRUPT, "token id %ld is outside 0..%d", (long)id, TOK_MAX_VOCAB - 1);
    if (id < tok->cap_vocab) return 0;
    int32_t cap = tok->cap_vocab ? tok->cap_vocab : 1024;
    while (cap <= id) cap *= 2;
    tok_entry *e = xrealloc(tok->entries, (size_t)cap * sizeof *e);
    if (!e) return -1;
    memset(e + tok->cap_vocab, 0, (size_t)(cap - tok->cap_vocab) * sizeof *e);
    tok->entries = e;
    tok->cap_vocab = cap;
    return 0;
}

int tok_define(tokenizer *tok, int32_t id, const void *piece, size_t len, unsigned flags) {
    if (tok_reserve(tok, id)) return -1;
    if (len > TOK_MAX_PIECE)
        return err_set(ERR_CORRUPT, "token %ld is %zu bytes long, more than the limit of %d", (long)id, len,
                       TOK_MAX_PIECE);
    tok_entry *e = &tok->entries[id];
    if (e->flags & TOKF_PRESENT) return err_set(ERR_CORRUPT, "token id %ld is defined twice", (long)id);
    if (tok->arena.len + len >= UINT32_MAX)
        return err_set(ERR_CORRUPT, "the vocabulary holds more than 4 GiB of token text");
    e->off = (uint32_t)tok->arena.len;
    e->len = (uint32_t)len;
    e->flags = (uint16_t)(flags | TOKF_PRESENT);
    if (len && sb_append(&tok->arena, piece, len)) return -1;
    if (id >= tok->n_vocab) tok->n_vocab = id + 1;
    return 0;
}

int tok_define_added(tokenizer *tok, int32_t id, const char *content, unsigned flags) {
    size_t len = strlen(content);
    if (!len) return err_set(ERR_CORRUPT, "added token %ld has empty content", (long)id);
    if (id >= 0 && id < tok->n_vocab && (tok->entries[id].flags & TOKF_PRESENT)) {
        tok_entry *e = &tok->entries[id];
        /* The same text already in the model vocabulary (GPT-2's <|endoftext|>): mark it. */
        if (e->len == len && !memcmp(tok->arena.buf + e->off, content, len)) {
            e->flags |= (uint16_t)(flags | TOKF_ADDED);
            return 0;
        }
        /* A different text: the added token wins, as in Hugging Face tokenizers. */
        e->flags = 0;
    }
    return tok_define(tok, id, content, len, flags | TOKF_ADDED | TOKF_RAW);
}

int32_t tok_lookup(const tokenizer *tok, const void *piece, size_t len) {
    if (!tok->hash) return -1;
    uint64_t h = tok_hash_bytes(piece, len);
    uint32_t tag = (uint32_t)(h >> 32);
    for (size_t i = h & tok->hash_mask;; i = (i + 1) & tok->hash_mask) {
        const tok_slot *s = &tok->hash[i];
        if (s->id < 0) return -1;
        if (s->tag != tag) continue;
        const tok_entry *e = &tok->entries[s->id];
        if (e->len == len && !memcmp(tok->arena.buf + e->off, piece, len)) return s->id;
    }
}

int tok_build_index(tokenizer *tok) {
    size_t slots = tok_hash_slots((size_t)tok->n_vocab);
    free(tok->hash);
    tok->hash = xmalloc(slots * sizeof *tok->hash);
    if (!tok->hash) return -1;
    memset(tok->hash, 0xff, slots * sizeof *tok->hash);
    tok->hash_mask = slots - 1;
    for (int32_t id = 0; id < tok->n_vocab; id++) {
        const tok_entry *e = &tok->entries[id];
        if (!(e->flags & TOKF_PRESENT)) continue;
        const char *p = tok->arena.buf + e->off;
        uint64_t h = tok_hash_bytes(p, e->len);
        size_t i = h & tok->hash_mask;
        int dup = 0;
        while (tok->hash[i].id >= 0) {
            const tok_entry *o = &tok->entries[tok->hash[i].id];
            if (o->len == e->len && !memcmp(tok->arena.buf + o->off, p, e->len)) {
                dup = 1; /* the same text twice: the lower id wins lookups */
                break;
            }
            i = (i + 1) & tok->hash_mask;
        }
        if (!dup) tok->hash[i] = (tok_slot){(uint32_t)(h >> 32), id};
    }
    return 0;
}

/* ---- merges ---- */

int tok_add_merge(tokenizer *tok, int32_t left, int32_t right, int32_t prio, const char *what) {
    const tok_entry *a = &tok->entries[left], *b = &tok->entries[right];
    size_t n = (size_t)a->len + b->len;
    char small[256];
    char *cat = n <= sizeof small ? small : xmalloc(n);
    if (!cat) return -1;
    memcpy(cat, tok->arena.buf + a->off, a->len);
    memcpy(cat + a->len, tok->arena.buf + b->off, b->len);
    int32_t result = tok_lookup(tok, cat, n);
    if (cat != small) free(cat);
    if (result < 0)
        return err_set(ERR_CORRUPT, "%s: the merge of tokens %ld and %ld gives a token that is not in the vocabulary",
                       what, (long)left, (long)right);
    if (tok->n_merges == tok->cap_merges) {
        int32_t cap = tok->cap_merges ? tok->cap_merges * 2 : 1024;
        if (cap > TOK_MAX_VOCAB * 4) return err_set(ERR_CORRUPT, "%s: more than %d merges", what, TOK_MAX_VOCAB * 4);
        tok_merge *m = xrealloc(tok->merges, (size_t)cap * sizeof *m);
        if (!m) return -1;
        tok->merges = m;
        tok->cap_merges = cap;
    }
    tok->merges[tok->n_merges++] = (tok_merge){left, right, result, prio};
    return 0;
}

int32_t tok_merge_find(const tokenizer *tok, int32_t left, int32_t right) {
    for (size_t i = tok_hash_pair(left, right) & tok->merge_mask;; i = (i + 1) & tok->merge_mask) {
        const tok_merge_slot *s = &tok->merge_hash[i];
        if (s->m < 0) return -1;
        if (s->left == left && s->right == right) return s->m;
    }
}

int tok_build_merge_index(tokenizer *tok) {
    size_t slots = tok_hash_slots((size_t)tok->n_merges);
    free(tok->merge_hash);
    tok->merge_hash = xmalloc(slots * sizeof *tok->merge_hash);
    if (!tok->merge_hash) return -1;
    memset(tok->merge_hash, 0xff, slots * sizeof *tok->merge_hash);
    tok->merge_mask = slots - 1;
    for (int32_t m = 0; m < tok->n_merges; m++) {
        const tok_merge *g = &tok->merges[m];
        size_t i = tok_hash_pair(g->left, g->right) & tok->merge_mask;
        int dup = 0;
        while (tok->merge_hash[i].m >= 0) {
            if (tok->merge_hash[i].left == g->left && tok->merge_hash[i].right == g->right) {
                dup = 1; /* a repeated merge line: the first (best) rank wins, as in HF */
                break;
            }
            i = (i + 1) & tok->merge_mask;
        }
        if (!dup) tok->merge_hash[i] = (tok_merge_slot){g->left, g->right, m};
    }
    return 0;
}

static int cmp_merge_rank(const void *pa, const void *pb) {
    const tok_merge *a = pa, *b = pb;
    if (a->prio != b->prio) return a->prio < b->prio ? -1 : 1;
    if (a->result != b->result) return a->result < b->result ? -1 : 1;
    if (a->left != b->left) return a->left < b->left ? -1 : 1;
    return (a->right > b->right) - (a->right < b->right);
}

static int cmp_float_desc(const void *pa, const void *pb) {
    float a = *(const float *)pa, b = *(const float *)pb;
    return (a < b) - (a > b);
}

int tok_derive_merges(tokenizer *tok, int by_score) {
    /* by_score (llama2.c): prio = rank of the result's score among the distinct scores, best
     * first; equal scores tie and the leftmost pair merges first, as in llama2.c's encode.
     * Otherwise (tiktoken): prio = the result id, ties broken by (left, right) as
     * transformers' TikTokenConverter orders its merges. NaN scores never merge. */
    float *scores = NULL;
    int32_t n_scores = 0;
    if (by_score) {
        scores = xmalloc((size_t)(tok->n_vocab ? tok->n_vocab : 1) * sizeof *scores);
        if (!scores) return -1;
        for (int32_t id = 0; id < tok->n_vocab; id++) {
            float s = tok->entries[id].score;
            if ((tok->entries[id].flags & TOKF_PRESENT) && s == s) scores[n_scores++] = s;
        }
        if (n_scores) qsort(scores, (size_t)n_scores, sizeof *scores, cmp_float_desc);
        int32_t u = 0;
        for (int32_t i = 0; i < n_scores; i++)
            if (!u || scores[u - 1] != scores[i]) scores[u++] = scores[i];
        n_scores = u;
    }
    for (int32_t id = 0; id < tok->n_vocab; id++) {
        const tok_entry *e = &tok->entries[id];
        if (!(e->flags & TOKF_PRESENT) || (e->flags & (TOKF_ADDED | TOKF_BYTE | TOKF_SPECIAL)) || e->len < 2) continue;
        int32_t prio = id;
        if (by_score) {
            float s = e->score;
            if (s != s) continue;
            int32_t lo = 0, hi = n_scores - 1; /* scores[] is descending and holds s */
            while (lo < hi) {
                int32_t mid = (lo + hi) / 2;
                if (scores[mid] > s) lo = mid + 1;
                else hi = mid;
            }
            prio = lo;
        }
        const char *p = tok->arena.buf + e->off;
        if (tok_lookup(tok, p, e->len) != id) continue; /* a duplicate text: the lower id merges */
        for (uint32_t k = 1; k < e->len; k++) {
            int32_t a = tok_lookup(tok, p, k), b = tok_lookup(tok, p + k, e->len - k);
            if (a < 0 || b < 0) continue;
            if ((tok->entries[a].flags | tok->entries[b].flags) & TOKF_ADDED) continue;
            if (tok_add_merge(tok, a, b, prio, tok->source)) {
                free(scores);
                return -1;
            }
        }
    }
    free(scores);
    if (!by_score && tok->n_merges) qsort(tok->merges, (size_t)tok->n_merges, sizeof *tok->merges, cmp_merge_rank);
    if (!by_score)
        for (int32_t m = 0; m < tok->n_merges; m++) tok->merges[m].prio = m;
    return tok_build_merge_index(tok);
}

/* ---- finishing ---- */

static int cmp_added(const void *pa, const void *pb, void *ctx) {
    const tokenizer *tok = ctx;
    const tok_entry *a = &tok->entries[*(const int32_t *)pa], *b = &tok->entries[*(const int32_t *)pb];
    uint8_t fa = (uint8_t)tok->arena.buf[a->off], fb = (uint8_t)tok->arena.buf[b->off];
    if (fa != fb) return fa < fb ? -1 : 1;
    if (a->len != b->len) return a->len > b->len ? -1 : 1; /* longest first */
    return *(const int32_t *)pa - *(const int32_t *)pb;
}

static int32_t tok_find_named(const tokenizer *tok, const char *const *names) {
    for (; *names; names++) {
        int32_t id = tok_lookup(tok, *names, strlen(*names));
        if (id >= 0 && (tok->entries[id].flags & (TOKF_SPECIAL | TOKF_ADDED))) return id;
    }
    return -1;
}

int tok_finish(tokenizer *tok, int need_all_bytes) {
    if (tok->n_vocab == 0) return err_set(ERR_CORRUPT, "%s: the vocabulary is empty", tok->source);
    if (tok_build_index(tok)) return -1;
    if (!tok->spm) {
        /* A byte-level vocabulary has a token for (nearly) every byte. Some leave out bytes that
         * valid UTF-8 never holds and a few control characters (SmolLM2 lacks 21): text holding
         * one of those is refused when encoded. More missing bytes mean another kind of vocabulary. */
        int missing = 0, first = -1;
        for (int b = 0; b < 256; b++) {
            char c = (char)b;
            int32_t id = tok_lookup(tok, &c, 1);
            tok->byte_id[b] = id;
            if (id < 0 && !missing++) first = b;
        }
        if (need_all_bytes && missing > TOK_MAX_MISSING_BYTES)
            return err_set(ERR_CORRUPT,
                           "%s: the vocabulary has no token for the byte 0x%02X (nor for %d other bytes); a byte-level "
                           "BPE vocabulary holds (nearly) all 256 byte tokens (is this a byte-level tokenizer?)",
                           tok->source, first, missing - 1);
    }
    free(tok->added);
    tok->added = NULL;
    tok->n_added = 0;
    for (int32_t id = 0; id < tok->n_vocab; id++)
        if ((tok->entries[id].flags & TOKF_ADDED) && tok->entries[id].len) tok->n_added++;
    if (tok->n_added) {
        tok->added = xmalloc((size_t)tok->n_added * sizeof *tok->added);
        if (!tok->added) return -1;
        int32_t k = 0;
        for (int32_t id = 0; id < tok->n_vocab; id++)
            if ((tok->entries[id].flags & TOKF_ADDED) && tok->entries[id].len) tok->added[k++] = id;
        qsort_r(tok->added, (size_t)k, sizeof *tok->added, cmp_added, tok);
    }
    int32_t k = 0;
    for (int b = 0; b <= 256; b++) {
        while (k < tok->n_added && (uint8_t)tok->arena.buf[tok->entries[tok->added[k]].off] < b) k++;
        tok->added_start[b] = k;
    }
    static const char *const bos_names[] = {"<|begin_of_text|>", "<s>", "<|startoftext|>", "<bos>", NULL};
    static const char *const eos_names[] = {"<|end_of_text|>", "</s>", "<|endoftext|>", "<eos>", NULL};
    if (tok->bos < 0) tok->bos = tok_find_named(tok, bos_names);
    if (tok->eos < 0) tok->eos = tok_find_named(tok, eos_names);
    return 0;
}

/* ---- byte-level alphabet (GPT-2's bytes_to_unicode) ---- */

static int byte_printable(int b) { return (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE); }

uint32_t tok_byte_to_cp(uint8_t b) {
    if (byte_printable(b)) return b;
    uint32_t n = 0; /* the rank of b among the non-printable bytes */
    for (int c = 0; c < b; c++)
        if (!byte_printable(c)) n++;
    return 256 + n;
}

/* cp -> byte for the 324 code points of the alphabet (-1: not in it), built on first use. */
static int16_t cp_to_byte_table[324];
static int cp_table_ready;

static void cp_table_init(void) {
    if (__atomic_load_n(&cp_table_ready, __ATOMIC_ACQUIRE)) return;
    int16_t t[324];
    for (int i = 0; i < 324; i++) t[i] = -1;
    for (int b = 0; b < 256; b++) t[tok_byte_to_cp((uint8_t)b)] = (int16_t)b;
    memcpy(cp_to_byte_table, t, sizeof t); /* idempotent: racing threads write the same bytes */
    __atomic_store_n(&cp_table_ready, 1, __ATOMIC_RELEASE);
}

int tok_utf8_len(const unsigned char *s, size_t n) {
    if (!n) return 0;
    unsigned c = s[0];
    if (c < 0x80) return 1;
    int len;
    uint32_t cp;
    if (c >= 0xC2 && c <= 0xDF) len = 2, cp = c & 0x1F;
    else if (c >= 0xE0 && c <= 0xEF) len = 3, cp = c & 0x0F;
    else if (c >= 0xF0 && c <= 0xF4) len = 4, cp = c & 0x07;
    else return 0;
    if ((size_t)len > n) return 0;
    for (int i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80) return 0;
        cp = (cp << 6) | (s[i] & 0x3F);
    }
    if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10FFFF)) || (cp >= 0xD800 && cp <= 0xDFFF))
        return 0;
    return len;
}

static uint32_t utf8_cp(const unsigned char *s, int len) {
    if (len == 1) return s[0];
    uint32_t cp = s[0] & (len == 2 ? 0x1F : len == 3 ? 0x0F : 0x07);
    for (int i = 1; i < len; i++) cp = (cp << 6) | (s[i] & 0x3F);
    return cp;
}

int tok_bytelevel_decode(const char *s, size_t n, strbuf *out) {
    cp_table_init();
    size_t start = out->len;
    const unsigned char *u = (const unsigned char *)s;
    for (size_t i = 0; i < n;) {
        int l = tok_utf8_len(u + i, n - i);
        uint32_t cp = l ? utf8_cp(u + i, l) : 0xFFFFFFFFu;
        if (!l || cp >= 324 || cp_to_byte_table[cp] < 0) {
            out->len = start; /* not byte-level: keep the text as it is */
            if (out->buf) out->buf[start] = 0;
            if (sb_append(out, s, n)) return -1;
            return 1;
        }
        if (sb_putc(out, (char)cp_to_byte_table[cp])) return -1;
        i += (size_t)l;
    }
    return 0;
}

int tok_bytelevel_encode(strbuf *out, const void *bytes, size_t n) {
    const uint8_t *b = bytes;
    for (size_t i = 0; i < n; i++) {
        uint32_t cp = tok_byte_to_cp(b[i]);
        char u[2];
        if (cp < 0x80) {
            if (sb_putc(out, (char)cp)) return -1;
        } else {
            u[0] = (char)(0xC0 | (cp >> 6));
            u[1] = (char)(0x80 | (cp & 0x3F));
            if (sb_append(out, u, 2)) return -1;
        }
    }
    return 0;
}

/* ---- loading ---- */

static int tok_load_file(tokenizer **out, const char *path) {
    char *data = NULL;
    size_t len = 0;
    if (fs_read_file(path, TOK_MAX_FILE, &data, &len)) return err_prefix("loading tokenizer: ");
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    size_t bl = strlen(base);
    int rc;
    size_t i = 0;
    while (i < len && (data[i] == ' ' || data[i] == '\n' || data[i] == '\r' || data[i] == '\t')) i++;
    if (bl >= 4 && !strcmp(base + bl - 4, ".bin")) {
        rc = tok_load_llama2c(out, path, data, len);
    } else if ((i < len && data[i] == '{') || (bl >= 5 && !strcmp(base + bl - 5, ".json"))) {
        /* JSON: tokenizer.json has a "model"; vocab.json (or any other object) is token -> id. */
        if (!strcmp(base, "vocab.json") || (strcmp(base, "tokenizer.json") && !strstr(data, "\"model\"")))
            rc = tok_load_hf_vocab(out, path, data, len);
        else
            rc = tok_load_hf_json(out, path, data, len);
    } else if (len && (unsigned char)data[0] == 0x0A && bl >= 6 && !strcmp(base + bl - 6, ".model")) {
        rc = err_set(ERR_INPUT,
                     "%s looks like a SentencePiece protobuf model, which smelt does not read; use the "
                     "model's tokenizer.json (byte-level BPE) or a tiktoken .model file",
                     path);
    } else if (bl >= 6 && !strcmp(base + bl - 6, ".model")) {
        rc = tok_load_tiktoken(out, path, data, len);
    } else {
        /* Unknown name: a tiktoken text starts with base64 then a space; else try llama2.c. */
        size_t j = 0;
        while (j < len && j < 4096 && data[j] != ' ' && data[j] != '\n') j++;
        if (j < len && data[j] == ' ' && j > 0) rc = tok_load_tiktoken(out, path, data, len);
        else rc = tok_load_llama2c(out, path, data, len);
    }
    free(data);
    return rc;
}

int tokenizer_load(tokenizer **out, const char *spec) {
    *out = NULL;
    if (!spec || !*spec)
        return err_set(ERR_INPUT, "no tokenizer given; pass a tokenizer.json, vocab.json, tokenizer.model, "
                                  "tokenizer.bin, a directory holding one, or builtin:bytes");
    if (!strncmp(spec, "builtin:", 8)) {
        if (!strcmp(spec, "builtin:bytes")) return tok_load_builtin_bytes(out);
        return err_set(ERR_INPUT, "unknown built-in tokenizer '%s'; the only one is builtin:bytes", spec);
    }
    struct stat st;
    if (stat(spec, &st))
        return err_set(ERR_INPUT,
                       "tokenizer '%s' does not exist; pass a tokenizer.json, vocab.json, tokenizer.model, "
                       "tokenizer.bin, a directory holding one, or builtin:bytes",
                       spec);
    if (!S_ISDIR(st.st_mode)) return gguf_sniff(spec) ? tok_load_gguf(out, spec) : tok_load_file(out, spec);
    /* model.gguf last: the quantize stage's format gguf writes the tokenizer into the model file */
    static const char *const names[] = {"tokenizer.gguf", "tokenizer.json", "vocab.json", "tokenizer.model",
                                        "tokenizer.bin", "model.gguf", NULL};
    for (int i = 0; names[i]; i++) {
        char *p = fs_join(spec, names[i]);
        if (!p) return -1;
        if (fs_exists(p)) {
            int rc = i == 0 || i == 5 ? tok_load_gguf(out, p) : tok_load_file(out, p);
            free(p);
            return rc;
        }
        free(p);
    }
    return err_set(ERR_INPUT,
                   "directory %s holds no tokenizer (looked for tokenizer.gguf, tokenizer.json, vocab.json, "
                   "tokenizer.model, tokenizer.bin, model.gguf); pass the tokenizer file itself",
                   spec);
}

void tokenizer_free(tokenizer *tok) {
    if (!tok) return;
    for (int i = 0; i < tok->n_steps; i++) {
        pcre2_code_free(tok->steps[i].re);
        free(tok->steps[i].pattern);
    }
    free(tok->source);
    free(tok->entries);
    sb_free(&tok->arena);
    free(tok->hash);
    free(tok->merges);
    free(tok->merge_hash);
    free(tok->added);
    free(tok->chat_template);
    free(tok);
}

/* ---- accessors and decode ---- */

static const char byte_chars[256] = {
#define B(i) (char)(i), (char)(i + 1), (char)(i + 2), (char)(i + 3), (char)(i + 4), (char)(i + 5), (char)(i + 6), (char)(i + 7)
    B(0),   B(8),   B(16),  B(24),  B(32),  B(40),  B(48),  B(56),  B(64),  B(72),  B(80),
    B(88),  B(96),  B(104), B(112), B(120), B(128), B(136), B(144), B(152), B(160), B(168),
    B(176), B(184), B(192), B(200), B(208), B(216), B(224), B(232), B(240), B(248),
#undef B
};

const char *tokenizer_piece(const tokenizer *tok, int32_t id, size_t *len) {
    if (id < 0 || id >= tok->n_vocab || !(tok->entries[id].flags & TOKF_PRESENT)) return NULL;
    const tok_entry *e = &tok->entries[id];
    if (e->flags & TOKF_BYTE) {
        *len = 1;
        return &byte_chars[e->byte];
    }
    if (e->flags & TOKF_CONTROL) {
        *len = 0;
        return "";
    }
    *len = e->len;
    return e->len ? tok->arena.buf + e->off : "";
}

int tokenizer_decode(const tokenizer *tok, const int32_t *ids, size_t n, char **text, size_t *len) {
    *text = NULL;
    *len = 0;
    strbuf sb = STRBUF_INIT;
    int first = 1; /* no piece other than BOS/EOS seen yet */
    for (size_t i = 0; i < n; i++) {
        size_t pl;
        const char *p = tokenizer_piece(tok, ids[i], &pl);
        if (!p) {
            sb_free(&sb);
            return err_set(ERR_INPUT, "cannot decode token id %ld (position %zu): the vocabulary of %s has ids 0..%ld",
                           (long)ids[i], i, tok->source, (long)tok->n_vocab - 1);
        }
        /* sentencepiece: the first piece loses the dummy-prefix space the encoder added */
        if (tok->spm && tok->spm_space_id >= 0 && first && pl && p[0] == ' ' &&
            !(tok->entries[ids[i]].flags & TOKF_BYTE)) {
            p++;
            pl--;
        }
        if (!(tok->entries[ids[i]].flags & TOKF_CONTROL)) first = 0;
        if (pl && sb_append(&sb, p, pl)) {
            sb_free(&sb);
            return -1;
        }
    }
    *len = sb.len;
    *text = sb_detach(&sb);
    return *text ? 0 : -1;
}

int32_t tokenizer_vocab_size(const tokenizer *tok) { return tok->n_vocab; }
int32_t tokenizer_bos_id(const tokenizer *tok) { return tok->bos; }
int32_t tokenizer_eos_id(const tokenizer *tok) { return tok->eos; }
int tokenizer_add_bos(const tokenizer *tok) { return tok->add_bos && tok->bos >= 0; }
const char *tokenizer_chat_template(const tokenizer *tok) { return tok->chat_template; }
tokenizer_format_t tokenizer_format(const tokenizer *tok) { return tok->format; }
const char *tokenizer_source(const tokenizer *tok) { return tok->source; }

int tokenizer_is_special(const tokenizer *tok, int32_t id) {
    return id >= 0 && id < tok->n_vocab && (tok->entries[id].flags & TOKF_SPECIAL) != 0;
}

int32_t tokenizer_token_id(const tokenizer *tok, const char *piece) {
    return piece ? tok_lookup(tok, piece, strlen(piece)) : -1;
}
