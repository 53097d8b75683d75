/* batch.c: the stream of sequence units, global batches, rank shares and packed sequence sets
 * (batch.h). Every decision is a function of (seed, epoch, position), so a cursor of two integers
 * restores the stream exactly, whatever the number of ranks. */
#include "stages/train/batch.h"

#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "stages/data/rng.h"

int stream_init(data_stream *s, const seq_unit *units, int64_t n_units, int64_t batch_tokens, int64_t batch_size,
                uint64_t seed, int shuffle) {
    memset(s, 0, sizeof *s);
    if (n_units < 1) return err_set(ERR_INPUT, "no training sequences (an empty split, or every example refused)");
    if (batch_tokens <= 0 && batch_size <= 0) return err_set(ERR_INPUT, "set batch_tokens or batch_size");
    s->units = units;
    s->n_units = n_units;
    s->batch_tokens = batch_tokens;
    s->batch_size = batch_tokens > 0 ? 0 : batch_size;
    s->seed = seed;
    s->shuffle = shuffle;
    s->order_epoch = -1;
    if (!(s->order = xmalloc(sizeof(int64_t) * (size_t)n_units))) return -1;
    return 0;
}

void stream_free(data_stream *s) {
    free(s->order);
    s->order = NULL;
}

static void make_order(data_stream *s, int64_t epoch) {
    if (s->order_epoch == epoch) return;
    const int64_t n = s->n_units;
    for (int64_t i = 0; i < n; i++) s->order[i] = i;
    if (s->shuffle) {
        drng r;
        drng_seed(&r, drng_hash(s->seed ^ 0x747261696eull, (uint64_t)epoch));
        for (int64_t i = n - 1; i > 0; i--) {
            int64_t j = (int64_t)drng_below(&r, (uint64_t)i + 1), t = s->order[i];
            s->order[i] = s->order[j];
            s->order[j] = t;
        }
    }
    s->order_epoch = epoch;
}

static int unit_len(const seq_unit *u) { return u->head + u->end - u->start; }

static int plan_push(batch_plan *b, const seq_unit *u) {
    if (b->n == b->cap) {
        int cap = b->cap ? 2 * b->cap : 64;
        seq_unit *nu = xrealloc(b->unit, sizeof *nu * (size_t)cap);
        if (!nu) return -1;
        b->unit = nu;
        int *l = xrealloc(b->len, sizeof *l * (size_t)cap);
        if (!l) return -1;
        b->len = l;
        b->cap = cap;
    }
    b->unit[b->n] = *u;
    b->len[b->n] = unit_len(u);
    b->tokens += b->len[b->n];
    b->n++;
    return 0;
}

int stream_next(data_stream *s, data_cursor *cur, batch_plan *b) {
    b->n = 0;
    b->tokens = 0;
    for (;;) {
        make_order(s, cur->epoch);
        const seq_unit *u = &s->units[s->order[cur->index]];
        int len = unit_len(u);
        if (s->batch_tokens > 0 ? (b->n > 0 && b->tokens + len > s->batch_tokens) : b->n == s->batch_size) break;
        if (plan_push(b, u)) return -1;
        if (++cur->index == s->n_units) {
            cur->index = 0;
            cur->epoch++;
        }
    }
    return 0;
}

int stream_steps_for_epochs(data_stream *s, int64_t epochs, int64_t *steps) {
    data_cursor c = {0, 0};
    batch_plan b = {0};
    int64_t n = 0;
    while (c.epoch < epochs) {
        if (stream_next(s, &c, &b)) {
            batch_plan_free(&b);
            return -1;
        }
        n++;
    }
    batch_plan_free(&b);
    *steps = n;
    return 0;
}

void batch_plan_free(batch_plan *b) {
    free(b->unit), free(b->len);
    memset(b, 0, sizeof *b);
}

int batch_plan_units(batch_plan *b, const seq_unit *units, int64_t n) {
    b->n = 0;
    b->tokens = 0;
    for (int64_t i = 0; i < n; i++)
        if (plan_push(b, &units[i])) return -1;
    return 0;
}

void batch_rank_range(const batch_plan *b, int rank, int world, int *s0, int *s1) {
    *s0 = *s1 = 0;
    int64_t pre = 0;
    int first = -1, last = -1;
    for (int i = 0; i < b->n; i++) {
        /* owner of sequence i: floor((tokens before it + half of it) * world / total) */
        int64_t mid2 = 2 * pre + b->len[i]; /* twice the middle, in tokens */
        int owner = (int)((mid2 * world) / (2 * (b->tokens > 0 ? b->tokens : 1)));
        if (owner >= world) owner = world - 1;
        if (owner == rank) {
            if (first < 0) first = i;
            last = i;
        }
        pre += b->len[i];
    }
    if (first >= 0) {
        *s0 = first;
        *s1 = last + 1;
    }
}

static int set_reserve(seq_set *s, int n_seqs, int64_t n_tokens) {
    if (s->n + n_seqs > s->cap) {
        int cap = s->cap ? s->cap : 64;
        while (cap < s->n + n_seqs) cap *= 2;
        int *l = xrealloc(s->len, sizeof *l * (size_t)cap);
        if (!l) return -1;
        s->len = l;
        int64_t *o = xrealloc(s->off, sizeof *o * (size_t)cap);
        if (!o) return -1;
        s->off = o;
        uint8_t *f = xrealloc(s->flags, (size_t)cap);
        if (!f) return -1;
        s->flags = f;
        int64_t *e = xrealloc(s->example, sizeof *e * (size_t)cap);
        if (!e) return -1;
        s->example = e;
        s->cap = cap;
    }
    if (s->n_tokens + n_tokens > s->cap_tokens) {
        int64_t cap = s->cap_tokens ? s->cap_tokens : 4096;
        while (cap < s->n_tokens + n_tokens) cap *= 2;
        int *t = xrealloc(s->tokens, sizeof *t * (size_t)cap);
        if (!t) return -1;
        s->tokens = t;
        uint8_t *m = xrealloc(s->mask, (size_t)cap);
        if (!m) return -1;
        s->mask = m;
        s->cap_tokens = cap;
    }
    return 0;
}

int seq_set_add(seq_set *out, const int *tokens, const uint8_t *mask, int len, uint8_t flags, int64_t example) {
    if (set_reserve(out, 1, len)) return -1;
    memcpy(out->tokens + out->n_tokens, tokens, sizeof(int) * (size_t)len);
    memcpy(out->mask + out->n_tokens, mask, (size_t)len);
    out->len[out->n] = len;
    out->off[out->n] = out->n_tokens;
    out->flags[out->n] = flags;
    out->example[out->n] = example;
    out->n++;
    out->n_tokens += len;
    return 0;
}

int seq_set_from_plan(seq_set *out, const ds_split *split, const batch_plan *b, int s0, int s1) {
    int64_t tokens = 0;
    for (int i = s0; i < s1; i++) tokens += b->len[i];
    if (set_reserve(out, s1 - s0, tokens)) return -1;
    for (int i = s0; i < s1; i++) {
        const seq_unit *u = &b->unit[i];
        const int32_t *t = ds_example_tokens(split, u->example);
        const uint8_t *m = ds_example_mask(split, u->example);
        int *dst = out->tokens + out->n_tokens;
        uint8_t *dm = out->mask + out->n_tokens;
        int k = 0;
        for (int j = 0; j < u->head; j++, k++) dst[k] = t[j], dm[k] = m[j];
        for (int j = u->start; j < u->end; j++, k++) dst[k] = t[j], dm[k] = m[j];
        out->len[out->n] = b->len[i];
        out->off[out->n] = out->n_tokens;
        out->flags[out->n] = 0;
        out->example[out->n] = u->example;
        out->n++;
        out->n_tokens += b->len[i];
    }
    return 0;
}

void seq_set_clear(seq_set *s) {
    s->n = 0;
    s->n_tokens = 0;
}

void seq_set_free(seq_set *s) {
    free(s->len), free(s->off), free(s->flags), free(s->example), free(s->tokens), free(s->mask);
    memset(s, 0, sizeof *s);
}

int seq_set_next_micro(const seq_set *s, int *next, int max_tokens) {
    int i = *next;
    int64_t tokens = 0;
    while (i < s->n && (i == *next || tokens + s->len[i] <= max_tokens)) tokens += s->len[i++];
    int n = i - *next;
    *next = i;
    return n;
}
