/* tokenizer_encode.c: text -> ids. Added tokens are cut out first (leftmost, longest), each
 * remaining segment is pre-tokenized by the regex steps (PCRE2, UTF + UCP, JIT when present)
 * and each pre-token is merged by BPE: a min-heap of (rank, position) over a linked list of
 * symbols, O(n log n) per pre-token. llama2.c tokenizers merge the whole segment by score.
 * All state lives in a per-call scratch, so one tokenizer serves many threads. */
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "model/tokenizer_internal.h"

typedef struct {
    int32_t prio, pos; /* merge rank (lower first), then the left symbol's position */
    int32_t m;         /* the merge (index into tok->merges) */
} heap_item;

typedef struct {
    const tokenizer *tok;
    int32_t *out;
    size_t n_out, cap_out;
    int32_t *sym, *prev, *next; /* the symbols of the word being merged */
    size_t cap_sym;
    heap_item *heap;
    size_t n_heap, cap_heap;
    pcre2_match_data *md;
    pcre2_match_context *mctx;
    pcre2_jit_stack *jit;
} tok_enc;

static int enc_emit(tok_enc *e, int32_t id) {
    if (e->n_out == e->cap_out) {
        size_t cap = e->cap_out ? e->cap_out * 2 : 64;
        int32_t *p = xrealloc(e->out, cap * sizeof *p);
        if (!p) return -1;
        e->out = p;
        e->cap_out = cap;
    }
    e->out[e->n_out++] = id;
    return 0;
}

static int enc_reserve_syms(tok_enc *e, size_t n) {
    if (n <= e->cap_sym) return 0;
    if (n > INT32_MAX / 4) /* symbol positions are int32 */
        return err_set(ERR_INPUT, "a %zu-byte run of text without a pre-token boundary is too long to encode (the "
                                  "limit is %d bytes); split the text", n, INT32_MAX / 4);
    size_t cap = e->cap_sym ? e->cap_sym : 64;
    while (cap < n) cap *= 2;
    int32_t *a = xrealloc(e->sym, cap * sizeof *a);
    if (!a) return -1;
    e->sym = a;
    int32_t *b = xrealloc(e->prev, cap * sizeof *b);
    if (!b) return -1;
    e->prev = b;
    int32_t *c = xrealloc(e->next, cap * sizeof *c);
    if (!c) return -1;
    e->next = c;
    heap_item *h = xrealloc(e->heap, 3 * cap * sizeof *h); /* n-1 initial pairs + 2 per merge */
    if (!h) return -1;
    e->heap = h;
    e->cap_heap = 3 * cap;
    e->cap_sym = cap;
    return 0;
}

static inline int heap_less(heap_item a, heap_item b) { return a.prio < b.prio || (a.prio == b.prio && a.pos < b.pos); }

static void heap_push(tok_enc *e, heap_item it) {
    size_t i = e->n_heap++;
    while (i) {
        size_t p = (i - 1) / 2;
        if (!heap_less(it, e->heap[p])) break;
        e->heap[i] = e->heap[p];
        i = p;
    }
    e->heap[i] = it;
}

static heap_item heap_pop(tok_enc *e) {
    heap_item top = e->heap[0], last = e->heap[--e->n_heap];
    size_t i = 0, n = e->n_heap;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && heap_less(e->heap[c + 1], e->heap[c])) c++;
        if (!heap_less(e->heap[c], last)) break;
        e->heap[i] = e->heap[c];
        i = c;
    }
    if (n) e->heap[i] = last;
    return top;
}

static void push_pair(tok_enc *e, int32_t left) {
    int32_t right = e->next[left];
    if (right < 0) return;
    int32_t m = tok_merge_find(e->tok, e->sym[left], e->sym[right]);
    if (m >= 0) heap_push(e, (heap_item){e->tok->merges[m].prio, left, m});
}

/* Merges e->sym[0..n) in place and emits the result. A heap entry is stale when its left
 * symbol has been absorbed or its pair changed (symbols only grow, so unchanged ids mean an
 * unchanged pair); stale entries are dropped, and every live pair has its own entry, so
 * merges happen in (rank, position) order. */
static int merge_and_emit(tok_enc *e, size_t n) {
    const tokenizer *tok = e->tok;
    for (size_t i = 0; i < n; i++) {
        e->prev[i] = (int32_t)i - 1;
        e->next[i] = i + 1 < n ? (int32_t)i + 1 : -1;
    }
    e->n_heap = 0;
    if (tok->n_merges)
        for (size_t i = 0; i + 1 < n; i++) push_pair(e, (int32_t)i);
    while (e->n_heap) {
        heap_item it = heap_pop(e);
        int32_t l = it.pos, r = e->next[l];
        const tok_merge *g = &tok->merges[it.m];
        if (r < 0 || e->sym[l] != g->left || e->sym[r] != g->right) continue;
        e->sym[l] = g->result;
        e->sym[r] = -1;
        e->next[l] = e->next[r];
        if (e->next[r] >= 0) e->prev[e->next[r]] = l;
        if (e->prev[l] >= 0) push_pair(e, e->prev[l]);
        push_pair(e, l);
    }
    for (int32_t i = n ? 0 : -1; i >= 0; i = e->next[i])
        if (enc_emit(e, e->sym[i])) return -1;
    return 0;
}

/* One pre-token of a byte-level BPE. */
static int bpe_word(tok_enc *e, const unsigned char *p, size_t n) {
    const tokenizer *tok = e->tok;
    if (n == 0) return 0;
    if (tok->ignore_merges || n == 1) {
        int32_t id = tok_lookup(tok, p, n);
        if (id >= 0 && !(tok->entries[id].flags & TOKF_ADDED)) return enc_emit(e, id);
    }
    if (enc_reserve_syms(e, n)) return -1;
    for (size_t i = 0; i < n; i++) {
        int32_t id = tok->byte_id[p[i]];
        if (id < 0)
            return err_set(ERR_INPUT, "the text holds the byte 0x%02X, which %s has no token for", p[i], tok->source);
        e->sym[i] = id;
    }
    return merge_and_emit(e, n);
}

/* llama2.c's encode: a dummy-prefix " ", then one symbol per UTF-8 character (bytes that are
 * not a vocabulary piece fall back to <0xXX> pieces), then merges by score. Characters are
 * grouped exactly as run.c does (a lead byte and up to 3 continuation bytes). */
static int spm_encode(tok_enc *e, const unsigned char *p, size_t n) {
    const tokenizer *tok = e->tok;
    if (n == 0) return 0;
    if (enc_reserve_syms(e, n + 1)) return -1;
    size_t k = 0;
    if (tok->spm_space_id >= 0) e->sym[k++] = tok->spm_space_id;
    size_t start = 0, glen = 0;
    for (size_t i = 0; i < n; i++) {
        if ((p[i] & 0xC0) != 0x80) {
            start = i;
            glen = 0;
        }
        glen++;
        if (i + 1 < n && (p[i + 1] & 0xC0) == 0x80 && glen < 4) continue;
        int32_t id = tok_lookup(tok, p + start, glen);
        if (id >= 0) {
            e->sym[k++] = id;
        } else {
            for (size_t j = 0; j < glen; j++) {
                int32_t b = tok->byte_id[p[start + j]];
                if (b < 0)
                    return err_set(ERR_INPUT, "the text holds the byte 0x%02X, which %s has no piece or <0x%02X> "
                                              "byte-fallback piece for", p[start + j], tok->source, p[start + j]);
                e->sym[k++] = b;
            }
        }
        glen = 0;
        start = i + 1;
    }
    return merge_and_emit(e, k);
}

static int pretok_step(tok_enc *e, int step, const unsigned char *p, size_t n);

static size_t utf8_step(const unsigned char *p, size_t n) {
    int l = tok_utf8_len(p, n);
    return l ? (size_t)l : 1;
}

static int pretok_split(tok_enc *e, int step, const unsigned char *p, size_t n) {
    const tok_step *s = &e->tok->steps[step];
    if (!s->re) return pretok_step(e, step + 1, p, n);
    if (!e->md && !(e->md = pcre2_match_data_create(1, NULL)))
        return err_set(ERR_NOMEM, "out of memory creating the regex matcher");
    int keep_match = !(s->behavior == TOKSPLIT_REMOVED && !s->invert);
    int keep_gap = !(s->behavior == TOKSPLIT_REMOVED && s->invert);
    size_t last = 0, off = 0;
    while (off < n) {
        int rc = pcre2_match(s->re, p, n, off, 0, e->md, e->mctx);
        if (rc == PCRE2_ERROR_JIT_STACKLIMIT && !e->jit) {
            /* The JIT's default 32 KiB stack ran out (long runs of one class): retry with a
             * larger one, made only now because creating it costs more than most encodes. */
            e->mctx = pcre2_match_context_create(NULL);
            e->jit = pcre2_jit_stack_create(32 * 1024, 64 * 1024 * 1024, NULL);
            if (!e->mctx || !e->jit) return err_set(ERR_NOMEM, "out of memory creating the regex matcher");
            pcre2_jit_stack_assign(e->mctx, NULL, e->jit);
            continue;
        }
        if (rc == PCRE2_ERROR_NOMATCH) break;
        if (rc < 0) {
            PCRE2_UCHAR msg[256];
            pcre2_get_error_message(rc, msg, sizeof msg);
            return err_set(ERR_INPUT, "the pre-tokenizer regex of %s failed on a %zu-byte text: %s", e->tok->source, n,
                           (const char *)msg);
        }
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(e->md);
        size_t ms = ov[0], me = ov[1];
        if (me <= ms) { /* an empty match splits nothing: move on by one character */
            off = ms + utf8_step(p + ms, n - ms);
            continue;
        }
        if (ms > last && keep_gap && pretok_step(e, step + 1, p + last, ms - last)) return -1;
        if (keep_match && pretok_step(e, step + 1, p + ms, me - ms)) return -1;
        last = off = me;
    }
    if (last < n && keep_gap && pretok_step(e, step + 1, p + last, n - last)) return -1;
    return 0;
}

static int pretok_step(tok_enc *e, int step, const unsigned char *p, size_t n) {
    if (n == 0) return 0;
    if (step == e->tok->n_steps) return bpe_word(e, p, n);
    const tok_step *s = &e->tok->steps[step];
    if (s->kind == TOKSTEP_BYTELEVEL && s->add_prefix_space && p[0] != ' ') {
        unsigned char *q = xmalloc(n + 1);
        if (!q) return -1;
        q[0] = ' ';
        memcpy(q + 1, p, n);
        int rc = pretok_split(e, step, q, n + 1);
        free(q);
        return rc;
    }
    return pretok_split(e, step, p, n);
}

static int encode_segment(tok_enc *e, const unsigned char *p, size_t n) {
    if (e->tok->spm) return spm_encode(e, p, n);
    return pretok_step(e, 0, p, n);
}

static int is_space(unsigned char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'; }
static int is_word(unsigned char c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c >= 0x80;
}

/* The longest added token at text[i] that may match there, or -1. */
static int32_t added_at(const tokenizer *tok, const unsigned char *t, size_t len, size_t i) {
    int32_t lo = tok->added_start[t[i]], hi = tok->added_start[t[i] + 1];
    for (int32_t k = lo; k < hi; k++) {
        const tok_entry *en = &tok->entries[tok->added[k]];
        if (en->len > len - i || memcmp(t + i, tok->arena.buf + en->off, en->len)) continue;
        if (en->flags & TOKF_SINGLE_WORD) {
            size_t end = i + en->len;
            if ((i > 0 && is_word(t[i - 1])) || (end < len && is_word(t[end]))) continue;
        }
        return tok->added[k];
    }
    return -1;
}

int tokenizer_encode(const tokenizer *tok, const char *text, size_t len, int32_t **ids, size_t *n) {
    *ids = NULL;
    *n = 0;
    tok_enc e = {.tok = tok};
    const unsigned char *t = (const unsigned char *)text;
    int rc = 0;
    size_t seg = 0;
    if (!text && len) rc = err_set(ERR_INTERNAL, "tokenizer_encode: NULL text of %zu bytes", len);
    for (size_t i = 0; !rc && tok->n_added && i < len;) {
        int32_t id = added_at(tok, t, len, i);
        if (id < 0) {
            i++;
            continue;
        }
        const tok_entry *en = &tok->entries[id];
        size_t ms = i, me = i + en->len;
        if (en->flags & TOKF_LSTRIP)
            while (ms > seg && is_space(t[ms - 1])) ms--;
        if (en->flags & TOKF_RSTRIP)
            while (me < len && is_space(t[me])) me++;
        rc = encode_segment(&e, t + seg, ms - seg);
        if (!rc) rc = enc_emit(&e, id);
        seg = i = me;
    }
    if (!rc) rc = encode_segment(&e, t + seg, len - seg);
    if (!rc && !e.out) { /* a non-NULL array even when empty */
        rc = enc_emit(&e, 0);
        e.n_out = 0;
    }
    free(e.sym);
    free(e.prev);
    free(e.next);
    free(e.heap);
    if (e.md) pcre2_match_data_free(e.md);
    if (e.mctx) pcre2_match_context_free(e.mctx);
    if (e.jit) pcre2_jit_stack_free(e.jit);
    if (rc) {
        free(e.out);
        return -1;
    }
    *ids = e.out;
    *n = e.n_out;
    return 0;
}

/* ---- pre-tokenizer steps ---- */

static int add_step(tokenizer *tok, tok_step_kind kind, const char *pattern, int literal, tok_step **out) {
    if (tok->n_steps == TOK_MAX_STEPS)
        return err_set(ERR_INPUT, "%s: more than %d pre-tokenizer steps", tok->source, TOK_MAX_STEPS);
    tok_step *s = &tok->steps[tok->n_steps];
    memset(s, 0, sizeof *s);
    s->kind = kind;
    if (pattern) {
        int ec;
        PCRE2_SIZE eo;
        uint32_t opts = PCRE2_UTF | PCRE2_MATCH_INVALID_UTF | (literal ? PCRE2_LITERAL : PCRE2_UCP);
        s->re = pcre2_compile((PCRE2_SPTR)pattern, PCRE2_ZERO_TERMINATED, opts, &ec, &eo, NULL);
        if (!s->re) {
            PCRE2_UCHAR msg[256];
            pcre2_get_error_message(ec, msg, sizeof msg);
            return err_set(ERR_INPUT, "%s: the pre-tokenizer pattern /%s/ does not compile at offset %zu: %s", tok->source,
                           pattern, (size_t)eo, (const char *)msg);
        }
        pcre2_jit_compile(s->re, PCRE2_JIT_COMPLETE); /* optional: the interpreter is the fallback */
        s->pattern = xstrdup(pattern);
        if (!s->pattern) {
            pcre2_code_free(s->re);
            s->re = NULL;
            return -1;
        }
    }
    s->literal = literal;
    tok->n_steps++;
    *out = s;
    return 0;
}

int tok_add_step_split(tokenizer *tok, const char *pattern, int literal, int behavior, int invert) {
    tok_step *s;
    if (add_step(tok, TOKSTEP_SPLIT, pattern, literal, &s)) return -1;
    s->behavior = behavior;
    s->invert = invert;
    return 0;
}

int tok_add_step_bytelevel(tokenizer *tok, int add_prefix_space, int trim_offsets, int use_regex) {
    tok_step *s;
    if (add_step(tok, TOKSTEP_BYTELEVEL, use_regex ? TOK_PATTERN_GPT2 : NULL, 0, &s)) return -1;
    s->add_prefix_space = add_prefix_space;
    s->trim_offsets = trim_offsets;
    s->use_regex = use_regex;
    return 0;
}
