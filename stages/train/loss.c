/* loss.c: position weights from token masks and the chunked loss callback of the `train` stage
 * (see loss.h for the objective and its parts). The teacher's logits come per chunk from a callback, so the
 * peak memory of the loss is a few chunks of [rows x vocab] whatever the batch. */
#include "stages/train/loss.h"

#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "kernels/softmax.h"
#include "stages/data/dataset.h"

_Static_assert(TERM_FKL - 1 == DISTILL_FKL && TERM_JSD - 1 == DISTILL_JSD && TERM_SRKL - 1 == DISTILL_SRKL &&
                   TERM_COUNT - 1 == DISTILL_TERMS,
               "the divergence terms of loss.h follow the kernel's order");

static const char *const term_names[TERM_COUNT] = {"ce", "fkl", "rkl", "jsd", "tvd", "skl", "srkl"};

const char *loss_term_name(int term) { return term >= 0 && term < TERM_COUNT ? term_names[term] : "?"; }

double loss_term_weight(const loss_config *lc, int term) {
    switch (term) {
    case TERM_CE: return lc->ce;
    case TERM_FKL: return lc->fkl;
    case TERM_RKL: return lc->rkl;
    case TERM_JSD: return lc->jsd;
    case TERM_TVD: return lc->tvd;
    case TERM_SKL: return lc->skl;
    case TERM_SRKL: return lc->srkl;
    }
    return 0;
}

int loss_has_divergence(const loss_config *lc) {
    for (int k = TERM_FKL; k < TERM_COUNT; k++)
        if (loss_term_weight(lc, k) > 0) return 1;
    return 0;
}

void loss_count_positions(loss_counts *c, const uint8_t *mask, const int *seq_lens, int n_seqs) {
    size_t off = 0;
    for (int s = 0; s < n_seqs; s++) {
        int64_t np = 0;
        for (int t = 0; t + 1 < seq_lens[s]; t++) {
            if (mask[off + t + 1] != DS_TOK_PROMPT) c->answer++;
            else np++;
        }
        c->prompt += np;
        c->prompt_seqs += np > 0;
        off += (size_t)seq_lens[s];
    }
}

void loss_fill_rows(loss_rows *r, const int *tokens, const uint8_t *mask, const uint8_t *seq_flags, const int *seq_lens,
                    int n_seqs, const loss_config *lc, int has_teacher, const loss_counts *g, loss_part part) {
    /* the shares of the two kinds of positions; pa and pp are their totals */
    double pa = 0, pp = 0;
    if (g->answer > 0 && g->prompt > 0 && lc->prompt_weight > 0) {
        pa = 1 - lc->prompt_weight;
        pp = lc->prompt_weight;
    } else if (g->answer > 0) {
        pa = 1;
    } else if (g->prompt > 0) {
        pp = 1;
    }
    const double wa = g->answer > 0 ? pa / (double)g->answer : 0;
    const int div = has_teacher && loss_has_divergence(lc) && part != LOSS_PART_CE;
    const int ce_on = part != LOSS_PART_DIV;
    int i = 0;
    for (int s = 0; s < n_seqs; s++) {
        const int no_ce = seq_flags && (seq_flags[s] & SEQ_NO_CE);
        /* this sequence's prompt weight: a share of the batch's prompt positions, or of its sequences */
        int np = 0;
        for (int t = 0; t + 1 < seq_lens[s]; t++) np += mask[i + t + 1] == DS_TOK_PROMPT;
        const double wp = !np ? 0
                          : lc->prompt_norm == PROMPT_NORM_SEQUENCE ? pp / ((double)g->prompt_seqs * (double)np)
                                                                    : pp / (double)g->prompt;
        for (int t = 0; t < seq_lens[s]; t++, i++) {
            r->targets[i] = -1;
            r->w_ce[i] = r->w_div[i] = 0;
            r->kind[i] = POS_NONE;
            if (t + 1 == seq_lens[s]) continue;
            if (mask[i + 1] != DS_TOK_PROMPT) {
                r->kind[i] = POS_ANSWER;
                /* CE is computed as a metric even where it has no weight (not in a divergence-only part) */
                if (ce_on) r->targets[i] = tokens[i + 1];
                r->w_ce[i] = no_ce || !ce_on ? 0.0f : (float)(lc->ce * wa);
                r->w_div[i] = div ? (float)wa : 0.0f;
            } else {
                r->kind[i] = POS_PROMPT;
                if (div) {
                    r->w_div[i] = (float)wp;
                } else if (wp > 0 && lc->ce > 0 && part == LOSS_PART_ALL) {
                    r->targets[i] = tokens[i + 1];
                    r->w_ce[i] = (float)(lc->ce * wp);
                }
            }
        }
    }
    r->n = i;
}

int loss_select(int *sel, const loss_rows *r) {
    int k = 0;
    for (int i = 0; i < r->n; i++)
        if (r->kind[i] == POS_ANSWER || r->w_ce[i] != 0 || r->w_div[i] != 0) sel[k++] = i;
    return k;
}

static int grow(loss_ctx *x, int rows, int vocab) {
    if (rows <= x->cap_rows && vocab <= x->vocab_cap) return 0;
    int r = rows > x->cap_rows ? rows : x->cap_rows, v = vocab > x->vocab_cap ? vocab : x->vocab_cap;
    free(x->t_logits), free(x->ce), free(x->wce), free(x->wdiv), free(x->tgt), free(x->pos), free(x->terms);
    x->t_logits = x->teacher ? xmalloc(sizeof(float) * (size_t)r * (size_t)v) : NULL;
    x->ce = xmalloc(sizeof(float) * (size_t)r);
    x->wce = xmalloc(sizeof(float) * (size_t)r);
    x->wdiv = xmalloc(sizeof(float) * (size_t)r);
    x->tgt = xmalloc(sizeof(int) * (size_t)r);
    x->pos = xmalloc(sizeof(int) * (size_t)r);
    x->terms = xmalloc(sizeof(double) * DISTILL_TERMS * (size_t)r);
    if ((x->teacher && !x->t_logits) || !x->ce || !x->wce || !x->wdiv || !x->tgt || !x->pos || !x->terms) {
        x->cap_rows = x->vocab_cap = 0;
        return err_prefix("loss scratch for %d rows of %d logits: ", r, v);
    }
    x->cap_rows = r;
    x->vocab_cap = v;
    return 0;
}

void loss_ctx_free(loss_ctx *x) {
    free(x->t_logits), free(x->ce), free(x->wce), free(x->wdiv), free(x->tgt), free(x->pos), free(x->terms);
    x->t_logits = x->ce = x->wce = x->wdiv = NULL;
    x->tgt = x->pos = NULL;
    x->terms = NULL;
    x->cap_rows = x->vocab_cap = 0;
}

int loss_chunk(void *ctx, const lm_chunk *c, double *loss) {
    loss_ctx *x = ctx;
    const int n = c->n_rows, V = c->vocab, Vt = x->teacher_vocab > 0 ? x->teacher_vocab : V;
    /* the divergences compare the tokenizer's ids only: never a padded row of the larger head */
    int Vu = x->vocab_used > 0 ? x->vocab_used : V;
    if (Vu > V) Vu = V;
    if (Vu > Vt) Vu = Vt;
    const loss_rows *r = x->rows;
    if (grow(x, n, V > Vt ? V : Vt)) return -1;
    for (int i = 0; i < n; i++) {
        int p = x->sel ? x->sel[c->row0 + i] : c->row0 + i;
        if (p < 0 || p >= r->n) return err_set(ERR_INTERNAL, "loss row %d maps to position %d of %d", c->row0 + i, p, r->n);
        x->pos[i] = p;
        x->tgt[i] = r->targets[p];
        x->wce[i] = r->w_ce[p];
        x->wdiv[i] = r->w_div[p];
        if (x->tgt[i] >= V)
            return err_set(ERR_INPUT, "target token %d at position %d is outside the model's vocabulary of %d; the data "
                           "and the model do not share a tokenizer", x->tgt[i], p, V);
    }
    /* CE of every row with a target (rows without one get zero gradient), then each gradient row
     * scaled by its weight: the divergences are accumulated on top. */
    cross_entropy(x->ce, c->dlogits, c->logits, x->tgt, NULL, n, V);
    if (c->dlogits)
        for (int i = 0; i < n; i++) {
            if (x->tgt[i] < 0 || x->wce[i] == 1.0f) continue;
            float *d = c->dlogits + (size_t)i * V, w = x->wce[i];
            if (w == 0) memset(d, 0, sizeof(float) * (size_t)V);
            else
                for (int j = 0; j < V; j++) d[j] *= w;
        }
    double l = 0;
    for (int i = 0; i < n; i++) {
        if (x->tgt[i] < 0) continue;
        l += (double)x->wce[i] * x->ce[i];
        if (r->kind[x->pos[i]] == POS_ANSWER) {
            x->sums.answer[TERM_CE] += x->ce[i];
            x->sums.n_answer_ce++;
        } else {
            x->sums.prompt[TERM_CE] += x->ce[i];
            x->sums.n_prompt_ce++;
        }
    }
    int any_div = 0;
    for (int i = 0; i < n && !any_div; i++) any_div = x->wdiv[i] != 0;
    if (x->teacher && loss_has_divergence(&x->cfg) && any_div) {
        if (x->teacher(x->tctx, x->t_logits, x->pos, n)) return err_prefix("teacher: ");
        const loss_config *lc = &x->cfg;
        const distill_mix mix = {.temperature = (float)lc->temperature, .beta = (float)lc->beta, .alpha = (float)lc->alpha,
                                 .w_fkl = (float)lc->fkl, .w_rkl = (float)lc->rkl, .w_jsd = (float)lc->jsd,
                                 .w_tvd = (float)lc->tvd, .w_skl = (float)lc->skl, .w_srkl = (float)lc->srkl};
        distill_rows(x->terms, c->dlogits, c->logits, V, x->t_logits, Vt, x->wdiv, &mix, n, Vu);
        for (int i = 0; i < n; i++) {
            const double *t = x->terms + (size_t)DISTILL_TERMS * i;
            double *acc = r->kind[x->pos[i]] == POS_ANSWER ? x->sums.answer : x->sums.prompt;
            for (int k = TERM_FKL; k < TERM_COUNT; k++) { /* DISTILL_x is TERM_x - 1 */
                l += (double)x->wdiv[i] * loss_term_weight(lc, k) * t[k - 1];
                if (x->wdiv[i] != 0) acc[k] += t[k - 1];
            }
        }
    }
    for (int i = 0; i < n; i++) {
        if (r->kind[x->pos[i]] == POS_ANSWER) x->sums.n_answer++;
        else if (r->kind[x->pos[i]] == POS_PROMPT) x->sums.n_prompt++;
    }
    *loss += l;
    return 0;
}
