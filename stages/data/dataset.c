/* dataset.c: reader (mmap + one validation pass) and writer of split files (dataset.h). The
 * reader trusts nothing: every offset, count and id is checked before a caller may index with it,
 * so a damaged or hostile file is an error naming the example and field, never a crash. */
#include "stages/data/dataset.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/error.h"
#include "common/fsutil.h"

_Static_assert(sizeof(ds_header) == 80, "ds_header is 80 bytes on disk");
#define DS_HEADER_V1_BYTES 64 /* version 1: no n_cuts / cuts_offset */
_Static_assert(sizeof(ds_example) == 48, "ds_example is 48 bytes on disk");
_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "split files are little-endian; this host is not");

/* ---- reader ---- */

/* The cuts of example i: [ex[i].cut_first, next) with next the following example's cut_first. */
static uint64_t cuts_end(const ds_split *s, int64_t i) {
    return i + 1 < s->n_examples ? s->ex[i + 1].cut_first : (uint64_t)s->n_cuts;
}

static int check_cuts(const ds_split *s, int64_t i, int version) {
    const ds_example *e = &s->ex[i];
    if (version == 1) {
        if (e->cut_first) return err_set(ERR_CORRUPT, "%s: example %lld has reserved %u", s->path, (long long)i, e->cut_first);
        return 0;
    }
    uint64_t a = e->cut_first, b = cuts_end(s, i);
    if ((i == 0 && a != 0) || b < a || b > (uint64_t)s->n_cuts || b - a == 1)
        return err_set(ERR_CORRUPT, "%s: example %lld owns cuts [%u, %llu) of %lld; expected none or two or more, in "
                       "order", s->path, (long long)i, e->cut_first, (unsigned long long)b, (long long)s->n_cuts);
    for (uint64_t k = a; k < b; k++)
        if ((k == a ? s->cuts[k] < 1 : s->cuts[k] <= s->cuts[k - 1]) || s->cuts[k] > e->answer_pos)
            return err_set(ERR_CORRUPT, "%s: example %lld has history cut %u at position %llu; cuts increase from 1 up "
                           "to the answer position %u", s->path, (long long)i, s->cuts[k], (unsigned long long)(k - a),
                           e->answer_pos);
    return 0;
}

static int split_check(ds_split *s, const char *base, const ds_header *h, size_t size) {
    const char *p = s->path;
    if (size < DS_HEADER_V1_BYTES)
        return err_set(ERR_CORRUPT, "%s: %zu bytes, shorter than the header; the split file is truncated, re-run the "
                       "data stage", p, size);
    if (memcmp(h->magic, DS_MAGIC, 8))
        return err_set(ERR_CORRUPT, "%s is not a smelt split file (bad magic); it must be written by a data stage", p);
    if (h->version != 1 && h->version != DS_FORMAT_VERSION)
        return err_set(ERR_CORRUPT, "%s has format version %u, this smelt reads versions 1 and %d; re-run the data "
                       "stage with this smelt", p, h->version, DS_FORMAT_VERSION);
    const uint32_t hbytes = h->version == 1 ? DS_HEADER_V1_BYTES : (uint32_t)sizeof *h;
    if (h->header_bytes != hbytes || size < hbytes)
        return err_set(ERR_CORRUPT, "%s: header_bytes is %u, expected %u for version %u (file of %zu bytes)", p,
                       h->header_bytes, hbytes, h->version, size);
    /* Bounds before any multiplication can overflow: at most 2^40 examples and tokens, 2^32 cuts. */
    const uint64_t n_cuts = h->version == 1 ? 0 : h->n_cuts;
    if (h->n_examples > (1ull << 40) || h->n_tokens > (1ull << 40) || h->n_groups > h->n_examples ||
        n_cuts > UINT32_MAX)
        return err_set(ERR_CORRUPT, "%s: implausible counts (examples %llu, tokens %llu, groups %llu, cuts %llu)", p,
                       (unsigned long long)h->n_examples, (unsigned long long)h->n_tokens,
                       (unsigned long long)h->n_groups, (unsigned long long)n_cuts);
    uint64_t tok_off = hbytes + h->n_examples * sizeof(ds_example), mask_off = tok_off + 4 * h->n_tokens;
    uint64_t cuts_off = (mask_off + h->n_tokens + 3) & ~(uint64_t)3, end = cuts_off + 4 * n_cuts;
    if (h->version == 1) cuts_off = end = mask_off + h->n_tokens;
    if (h->tokens_offset != tok_off || h->mask_offset != mask_off || (h->version > 1 && h->cuts_offset != cuts_off))
        return err_set(ERR_CORRUPT, "%s: section offsets (%llu, %llu) do not follow from the counts (%llu, %llu)", p,
                       (unsigned long long)h->tokens_offset, (unsigned long long)h->mask_offset,
                       (unsigned long long)tok_off, (unsigned long long)mask_off);
    if (end != size)
        return err_set(ERR_CORRUPT, "%s is %zu bytes but its header implies %llu; the file is truncated or damaged, "
                       "re-run the data stage", p, size, (unsigned long long)end);
    if (h->vocab < 1 || h->vocab > (1u << 30) || h->n_tasks > DS_MAX_TASKS || (h->n_examples && h->n_tasks < 1))
        return err_set(ERR_CORRUPT, "%s: vocab %u or task count %u out of range", p, h->vocab, h->n_tasks);
    s->ex = (const ds_example *)(base + hbytes);
    s->tokens = (const int32_t *)(base + tok_off);
    s->mask = (const uint8_t *)(base + mask_off);
    s->cuts = (const uint32_t *)(base + cuts_off);
    s->n_cuts = (int64_t)n_cuts;
    s->n_examples = (int64_t)h->n_examples;
    s->n_tokens = (int64_t)h->n_tokens;
    s->n_groups = (int64_t)h->n_groups;
    s->vocab = (int32_t)h->vocab;
    s->n_tasks = (int)h->n_tasks;

    for (int64_t t = 0; t < s->n_tokens; t++) {
        if (s->tokens[t] < 0 || s->tokens[t] >= s->vocab)
            return err_set(ERR_CORRUPT, "%s: token %lld is id %d, outside the vocabulary of %d", p, (long long)t,
                           s->tokens[t], s->vocab);
        if (s->mask[t] > DS_TOK_RESPONSE)
            return err_set(ERR_CORRUPT, "%s: mask of token %lld is %u (0 prompt, 1 action, 2 response)", p,
                           (long long)t, s->mask[t]);
    }
    uint64_t next = 0;
    int64_t group_start = 0;
    for (int64_t i = 0; i < s->n_examples; i++) {
        const ds_example *e = &s->ex[i];
        if (e->offset != next || e->n_tokens < 1 || e->n_tokens > DS_MAX_EXAMPLE_TOKENS ||
            e->offset + e->n_tokens > h->n_tokens)
            return err_set(ERR_CORRUPT, "%s: example %lld has tokens [%llu, +%u) where [%llu, +1..%d) within %llu "
                           "tokens was expected", p, (long long)i, (unsigned long long)e->offset, e->n_tokens,
                           (unsigned long long)next, DS_MAX_EXAMPLE_TOKENS, (unsigned long long)h->n_tokens);
        next += e->n_tokens;
        if (e->task >= h->n_tasks)
            return err_set(ERR_CORRUPT, "%s: example %lld has task %u of %u", p, (long long)i, e->task, h->n_tasks);
        if (e->label < DS_LABEL_NONE || e->label > DS_LABEL_YES || e->flags)
            return err_set(ERR_CORRUPT, "%s: example %lld has label %d / flags %u", p, (long long)i, e->label, e->flags);
        const uint8_t *m = s->mask + e->offset;
        uint32_t ans = e->n_tokens;
        for (uint32_t t = 0; t < e->n_tokens; t++)
            if (m[t] != DS_TOK_PROMPT) {
                ans = t;
                break;
            }
        if (e->answer_pos != ans || ans == 0)
            return err_set(ERR_CORRUPT, "%s: example %lld has answer_pos %u but its first non-prompt token is %u "
                           "(and it may not be 0)", p, (long long)i, e->answer_pos, ans);
        if (e->label != DS_LABEL_NONE && (ans == e->n_tokens || m[ans] != DS_TOK_ACTION))
            return err_set(ERR_CORRUPT, "%s: example %lld is labelled but has no action token", p, (long long)i);
        if (e->prefix_len >= e->n_tokens || (ans < e->n_tokens && e->prefix_len >= ans))
            return err_set(ERR_CORRUPT, "%s: example %lld has prefix_len %u with %u tokens and answer at %u", p,
                           (long long)i, e->prefix_len, e->n_tokens, ans);
        if (check_cuts(s, i, (int)h->version)) return -1;
        if (i == 0 ? e->group != 0 : (e->group != s->ex[i - 1].group && e->group != s->ex[i - 1].group + 1))
            return err_set(ERR_CORRUPT, "%s: example %lld has group %u after group %u; groups are numbered 0, 1, 2, "
                           "... in order", p, (long long)i, e->group, i ? s->ex[i - 1].group : 0);
        if (i && e->group != s->ex[i - 1].group) group_start = i;
        const ds_example *g = &s->ex[group_start];
        if (e->prefix_len != g->prefix_len ||
            memcmp(s->tokens + e->offset, s->tokens + g->offset, sizeof(int32_t) * e->prefix_len))
            return err_set(ERR_CORRUPT, "%s: example %lld does not share the %u-token prefix of its group %u", p,
                           (long long)i, g->prefix_len, e->group);
    }
    if (next != h->n_tokens)
        return err_set(ERR_CORRUPT, "%s: the examples cover %llu of %llu tokens", p, (unsigned long long)next,
                       (unsigned long long)h->n_tokens);
    if ((uint64_t)(s->n_examples ? s->ex[s->n_examples - 1].group + 1 : 0) != h->n_groups)
        return err_set(ERR_CORRUPT, "%s: header says %llu groups, the examples have %llu", p,
                       (unsigned long long)h->n_groups,
                       (unsigned long long)(s->n_examples ? s->ex[s->n_examples - 1].group + 1 : 0));
    return 0;
}

int ds_split_open(ds_split *s, const char *path) {
    memset(s, 0, sizeof *s);
    s->path = xstrdup(path);
    if (!s->path) return -1;
    const char *slash = strrchr(path, '/');
    snprintf(s->name, sizeof s->name, "%s", slash ? slash + 1 : path);
    char *dot = strrchr(s->name, '.');
    if (dot) *dot = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        err_errno("cannot open split file %s", path);
        goto fail;
    }
    struct stat st;
    if (fstat(fd, &st)) {
        err_errno("cannot stat %s", path);
        close(fd);
        goto fail;
    }
    s->map_bytes = (size_t)st.st_size;
    if (s->map_bytes) {
        s->map = mmap(NULL, s->map_bytes, PROT_READ, MAP_PRIVATE, fd, 0);
        if (s->map == MAP_FAILED) {
            s->map = NULL;
            err_errno("cannot map %s", path);
            close(fd);
            goto fail;
        }
    }
    close(fd);
    ds_header h = {0};
    memcpy(&h, s->map, s->map_bytes < sizeof h ? s->map_bytes : sizeof h); /* a version 1 header is shorter */
    if (split_check(s, s->map, &h, s->map_bytes)) goto fail;
    return 0;
fail:
    ds_split_close(s);
    return -1;
}

int ds_split_open_mem(ds_split *s, const void *data, size_t size, const char *name) {
    memset(s, 0, sizeof *s);
    if (!(s->path = xstrdup(name))) return -1;
    snprintf(s->name, sizeof s->name, "%s", name);
    ds_header h = {0};
    if (size) memcpy(&h, data, size < sizeof h ? size : sizeof h);
    /* the sections are read in place: the caller's buffer must be 8-byte aligned (malloc is) */
    if (((uintptr_t)data & 7) != 0) {
        ds_split_close(s);
        return err_set(ERR_INPUT, "%s: a split in memory must start at an 8-byte aligned address", name);
    }
    if (split_check(s, data, &h, size)) {
        ds_split_close(s);
        return -1;
    }
    return 0;
}

void ds_split_close(ds_split *s) {
    if (s->map) munmap(s->map, s->map_bytes);
    free(s->path);
    memset(s, 0, sizeof *s);
}

const int32_t *ds_example_tokens(const ds_split *s, int64_t i) { return s->tokens + s->ex[i].offset; }
const uint8_t *ds_example_mask(const ds_split *s, int64_t i) { return s->mask + s->ex[i].offset; }

int64_t ds_group_end(const ds_split *s, int64_t i) {
    uint32_t g = s->ex[i].group;
    while (i < s->n_examples && s->ex[i].group == g) i++;
    return i;
}

const uint32_t *ds_example_cuts(const ds_split *s, int64_t i, int *n) {
    uint64_t a = s->ex[i].cut_first, b = cuts_end(s, i);
    *n = (int)(b - a);
    return b > a ? s->cuts + a : NULL;
}

int ds_fit_cuts(const uint32_t *cuts, int n_cuts, int64_t end, int64_t budget) {
    if (end <= budget) return 0;
    if (n_cuts < 2) return -1;
    /* the head [0, cuts[0]) and the tail [cuts[L], end) always stay; drop the oldest lines until the
     * lines from cuts[k] on fit */
    const int64_t head = cuts[0], tail = end - cuts[n_cuts - 1];
    for (int k = 1; k < n_cuts; k++)
        if (head + ((int64_t)cuts[n_cuts - 1] - cuts[k]) + tail <= budget) return k;
    return -1;
}

/* ---- writer ---- */

struct ds_writer {
    ds_example *ex;
    int64_t n_ex, cap_ex;
    int32_t *tokens;
    uint8_t *mask;
    int64_t n_tok, cap_tok;
    uint32_t *cuts;
    int64_t n_cuts, cap_cuts;
    int32_t vocab;
    int n_tasks;
};

int ds_writer_new(ds_writer **out, int32_t vocab, int n_tasks) {
    *out = NULL;
    if (vocab < 1 || n_tasks < 1 || n_tasks > DS_MAX_TASKS)
        return err_set(ERR_INPUT, "ds_writer_new: vocab %d and task count %d must be >= 1 (tasks <= %d)", vocab,
                       n_tasks, DS_MAX_TASKS);
    ds_writer *w = xcalloc(1, sizeof *w);
    if (!w) return -1;
    w->vocab = vocab;
    w->n_tasks = n_tasks;
    *out = w;
    return 0;
}

int ds_writer_add(ds_writer *w, const ds_example_in *e, const int32_t *tokens, const uint8_t *mask, size_t n) {
    if (n < 1 || n > DS_MAX_EXAMPLE_TOKENS)
        return err_set(ERR_INPUT, "an example has %zu tokens; it must have 1 to %d", n, DS_MAX_EXAMPLE_TOKENS);
    if (e->task >= w->n_tasks) return err_set(ERR_INPUT, "example task %u of %d tasks", e->task, w->n_tasks);
    if (e->label < DS_LABEL_NONE || e->label > DS_LABEL_YES) return err_set(ERR_INPUT, "example label %d", e->label);
    uint32_t ans = (uint32_t)n;
    for (size_t t = 0; t < n; t++) {
        if (tokens[t] < 0 || tokens[t] >= w->vocab)
            return err_set(ERR_INPUT, "token id %d outside the vocabulary of %d", tokens[t], w->vocab);
        if (mask[t] > DS_TOK_RESPONSE) return err_set(ERR_INPUT, "mask value %u (0, 1 or 2)", mask[t]);
        if (mask[t] != DS_TOK_PROMPT && ans == n) ans = (uint32_t)t;
    }
    if (ans == 0) return err_set(ERR_INPUT, "the first token of an example cannot be a target (it has no context)");
    if (e->label != DS_LABEL_NONE && (ans == n || mask[ans] != DS_TOK_ACTION))
        return err_set(ERR_INPUT, "a labelled example needs an action token (its answer)");
    if (e->n_cuts == 1 || e->n_cuts < 0 || (e->n_cuts && !e->cuts))
        return err_set(ERR_INPUT, "an example has %d history cuts; it needs none or two or more", e->n_cuts);
    for (int k = 0; k < e->n_cuts; k++)
        if ((k == 0 ? e->cuts[k] < 1 : e->cuts[k] <= e->cuts[k - 1]) || e->cuts[k] > ans)
            return err_set(ERR_INPUT, "history cut %u (number %d) of an example: cuts increase from 1 up to the "
                           "answer position %u", e->cuts[k], k, ans);
    if (w->n_cuts + e->n_cuts > UINT32_MAX) return err_set(ERR_INPUT, "a split holds at most 2^32 history cuts");
    if (w->n_cuts + e->n_cuts > w->cap_cuts) {
        int64_t cap = w->cap_cuts ? 2 * w->cap_cuts : 4096;
        while (cap < w->n_cuts + e->n_cuts) cap *= 2;
        uint32_t *c = xrealloc(w->cuts, (size_t)cap * sizeof *c);
        if (!c) return -1;
        w->cuts = c;
        w->cap_cuts = cap;
    }
    if (w->n_ex == w->cap_ex) {
        int64_t cap = w->cap_ex ? 2 * w->cap_ex : 1024;
        ds_example *p = xrealloc(w->ex, (size_t)cap * sizeof *p);
        if (!p) return -1;
        w->ex = p;
        w->cap_ex = cap;
    }
    if (w->n_tok + (int64_t)n > w->cap_tok) {
        int64_t cap = w->cap_tok ? 2 * w->cap_tok : 65536;
        while (cap < w->n_tok + (int64_t)n) cap *= 2;
        int32_t *t = xrealloc(w->tokens, (size_t)cap * sizeof *t);
        if (!t) return -1;
        w->tokens = t;
        uint8_t *m = xrealloc(w->mask, (size_t)cap);
        if (!m) return -1;
        w->mask = m;
        w->cap_tok = cap;
    }
    ds_example *x = &w->ex[w->n_ex];
    memset(x, 0, sizeof *x);
    x->offset = (uint64_t)w->n_tok;
    x->time = e->time;
    x->n_tokens = (uint32_t)n;
    x->answer_pos = ans;
    x->group = w->n_ex == 0 ? 0 : w->ex[w->n_ex - 1].group + (e->new_group ? 1 : 0);
    x->member = e->member;
    x->item = e->item;
    x->task = e->task;
    x->label = e->label;
    /* the shared prefix must leave at least one token to feed before the answer (or the end) */
    uint32_t cap = ans < n ? ans - 1 : (uint32_t)n - 1;
    x->prefix_len = e->prefix_len < cap ? e->prefix_len : cap;
    x->cut_first = (uint32_t)w->n_cuts;
    if (e->n_cuts) memcpy(w->cuts + w->n_cuts, e->cuts, (size_t)e->n_cuts * sizeof *e->cuts);
    w->n_cuts += e->n_cuts;
    memcpy(w->tokens + w->n_tok, tokens, n * sizeof *tokens);
    memcpy(w->mask + w->n_tok, mask, n);
    w->n_tok += (int64_t)n;
    w->n_ex++;
    return 0;
}

int64_t ds_writer_examples(const ds_writer *w) { return w->n_ex; }
int64_t ds_writer_tokens(const ds_writer *w) { return w->n_tok; }

/* Makes each group's prefix_len the minimum of its examples' and of the tokens they really share. */
static void fix_prefixes(ds_writer *w) {
    for (int64_t g0 = 0, g1; g0 < w->n_ex; g0 = g1) {
        uint32_t p = w->ex[g0].prefix_len;
        for (g1 = g0 + 1; g1 < w->n_ex && w->ex[g1].group == w->ex[g0].group; g1++) {
            if (w->ex[g1].prefix_len < p) p = w->ex[g1].prefix_len;
            const int32_t *a = w->tokens + w->ex[g0].offset, *b = w->tokens + w->ex[g1].offset;
            uint32_t k = 0;
            while (k < p && a[k] == b[k]) k++;
            p = k;
        }
        for (int64_t i = g0; i < g1; i++) w->ex[i].prefix_len = p;
    }
}

static int write_all(int fd, const void *p, size_t n, const char *path) {
    if (fs_write_all(fd, p, n)) return err_errno("cannot write %s", path);
    return 0;
}

int ds_writer_finish(ds_writer *w, const char *path) {
    fix_prefixes(w);
    ds_header h;
    memset(&h, 0, sizeof h);
    memcpy(h.magic, DS_MAGIC, 8);
    h.version = DS_FORMAT_VERSION;
    h.header_bytes = sizeof h;
    h.n_examples = (uint64_t)w->n_ex;
    h.n_tokens = (uint64_t)w->n_tok;
    h.n_groups = w->n_ex ? w->ex[w->n_ex - 1].group + 1ull : 0;
    h.vocab = (uint32_t)w->vocab;
    h.n_tasks = (uint32_t)w->n_tasks;
    h.tokens_offset = sizeof h + h.n_examples * sizeof(ds_example);
    h.mask_offset = h.tokens_offset + 4 * h.n_tokens;
    h.n_cuts = (uint64_t)w->n_cuts;
    h.cuts_offset = (h.mask_offset + h.n_tokens + 3) & ~(uint64_t)3;
    static const char zero[4] = {0};
    fs_atomic f;
    if (fs_atomic_open(&f, path)) return -1;
    int rc = write_all(f.fd, &h, sizeof h, f.tmp) || write_all(f.fd, w->ex, (size_t)w->n_ex * sizeof *w->ex, f.tmp) ||
             write_all(f.fd, w->tokens, (size_t)w->n_tok * sizeof *w->tokens, f.tmp) ||
             write_all(f.fd, w->mask, (size_t)w->n_tok, f.tmp) ||
             write_all(f.fd, zero, (size_t)(h.cuts_offset - h.mask_offset - h.n_tokens), f.tmp) ||
             write_all(f.fd, w->cuts, (size_t)w->n_cuts * sizeof *w->cuts, f.tmp);
    if (rc) {
        fs_atomic_abort(&f);
        return -1;
    }
    return fs_atomic_commit(&f);
}

void ds_writer_free(ds_writer *w) {
    if (!w) return;
    free(w->ex);
    free(w->tokens);
    free(w->mask);
    free(w->cuts);
    free(w);
}
