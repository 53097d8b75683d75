/* fit.c: examples made to fit the train stage's seq_len (batch.h). Train on what is evaluated: a
 * ranking prompt that is too long leaves out its OLDEST history lines, by the same budget rule
 * (ds_fit_cuts) that fitted it to the data stage's max_tokens, so the instruction, the member, the
 * candidate and the answer always stay; what cannot fit that way is refused, or, for generative and
 * text examples when asked, cut into pieces the way the data stage cuts text documents. */
#include <stdlib.h>

#include "common/error.h"
#include "stages/train/batch.h"

typedef struct {
    seq_unit *u;
    int64_t n, cap;
} unit_vec;

static int push(unit_vec *v, int64_t ex, int head, int start, int end) {
    if (v->n == v->cap) {
        int64_t cap = v->cap ? 2 * v->cap : 1024;
        seq_unit *p = xrealloc(v->u, sizeof *p * (size_t)cap);
        if (!p) return -1;
        v->u = p;
        v->cap = cap;
    }
    v->u[v->n++] = (seq_unit){.example = ex, .head = head, .start = start, .end = end};
    return 0;
}

/* Pieces of seq_len tokens: the first from token 0, the next ones after a repeated BOS (when the
 * example starts with one), as the data stage's text source cuts documents. */
static int push_pieces(unit_vec *v, fit_stats *st, const ds_split *s, int64_t i, int seq_len, int32_t bos) {
    const int n = (int)s->ex[i].n_tokens, h = bos >= 0 && ds_example_tokens(s, i)[0] == bos ? 1 : 0;
    if (seq_len - h < 1) return err_set(ERR_INPUT, "seq_len %d leaves no room for a piece after BOS", seq_len);
    if (push(v, i, 0, 0, seq_len)) return -1;
    st->pieces++;
    for (int a = seq_len; a < n; a += seq_len - h) {
        int e = a + seq_len - h < n ? a + seq_len - h : n;
        if (h + e - a < 2) continue; /* a lone token has no target */
        if (push(v, i, h, a, e)) return -1;
        st->pieces++;
    }
    return 0;
}

int fit_units(seq_unit **units, int64_t *n_units, fit_stats *st, const ds_split *s, int64_t n, int seq_len,
              long_policy policy, int32_t bos) {
    *units = NULL;
    *n_units = 0;
    *st = (fit_stats){.first_refused = -1};
    if (seq_len < 2) return err_set(ERR_INPUT, "seq_len %d: a sequence needs at least 2 tokens", seq_len);
    unit_vec v = {0};
    for (int64_t i = 0; i < n; i++) {
        const ds_example *e = &s->ex[i];
        const int len = (int)e->n_tokens;
        st->examples++;
        if (len > st->longest) st->longest = len;
        if (len <= seq_len) {
            st->whole++;
            if (push(&v, i, 0, 0, len)) goto fail;
            continue;
        }
        int nc;
        const uint32_t *c = ds_example_cuts(s, i, &nc);
        int drop = ds_fit_cuts(c, nc, len, seq_len);
        if (drop > 0) {
            st->fitted++;
            st->lines_dropped += drop;
            if (push(&v, i, (int)c[0], (int)c[drop], len)) goto fail;
        } else if (policy == LONG_CUT && e->label == DS_LABEL_NONE) {
            st->cut++;
            if (push_pieces(&v, st, s, i, seq_len, bos)) goto fail;
        } else {
            if (st->first_refused < 0) st->first_refused = i;
            st->refused++;
            st->refused_ranking += e->label != DS_LABEL_NONE;
        }
    }
    *units = v.u;
    *n_units = v.n;
    return 0;
fail:
    free(v.u);
    return -1;
}

int fit_prompt(seq_unit *u, const ds_split *s, int64_t i, int budget) {
    const int a = (int)s->ex[i].answer_pos;
    int nc;
    const uint32_t *c = ds_example_cuts(s, i, &nc);
    int drop = ds_fit_cuts(c, nc, a, budget);
    if (drop < 0) return 0;
    *u = drop ? (seq_unit){.example = i, .head = (int)c[0], .start = (int)c[drop], .end = a}
              : (seq_unit){.example = i, .head = 0, .start = 0, .end = a};
    return 1;
}
