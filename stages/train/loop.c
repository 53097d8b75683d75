/* loop.c: one optimizer step and one validation pass of the `train` stage, on every MPI rank.
 * Per step the ranks meet at fixed collectives: position counts (for the global normalization),
 * the step's losses (a NaN anywhere stops everyone at the same step), the gradient sum. A rank
 * that fails between them brings its status to the next meeting, so no rank is left waiting. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "stages/data/rng.h"
#include "stages/train/dp.h"
#include "stages/train/train.h"

int train_agree(trainer *t, int rc) {
    int status = rc ? 1 : 0;
    if (dp_exchange(NULL, 0, &status, t->ctx->world)) return -1;
    if (status && !rc)
        return err_set(ERR_STAGE, "another rank of stage %s failed (see its lines in the log)", t->ctx->stage);
    return rc;
}

/* Forward (and backward) of the sequences of S in micro-batches, for one part of the objective
 * (loss.h); loss and sums of this rank. The teacher runs only for parts with divergences. */
static int run_sequences(trainer *t, const seq_set *S, const loss_counts *counts, int backward, loss_part part,
                         pass_result *res) {
    const int use_teacher = t->has_teacher && part != LOSS_PART_CE;
    const int H = t->m.cfg.hidden;
    int next = 0, ns;
    while ((ns = seq_set_next_micro(S, &next, t->micro_tokens)) > 0) {
        const int s0 = next - ns;
        const int64_t off = S->off[s0];
        int n = 0;
        for (int s = s0; s < next; s++) n += S->len[s];
        if (n > t->micro_tokens)
            return err_set(ERR_INTERNAL, "a micro-batch of %d tokens exceeds the %d reserved", n, t->micro_tokens);
        const model_batch b = {.tokens = S->tokens + off, .seq_lens = S->len + s0, .n_tokens = n, .n_seqs = ns};
        loss_fill_rows(&t->rows, b.tokens, S->mask + off, S->flags + s0, b.seq_lens, ns, &t->o.loss, t->has_teacher,
                       counts, part);
        const int n_sel = loss_select(t->sel, &t->rows);
        if (n_sel == 0) continue; /* nothing to learn from (its gradient would be zero) */
        const float *hidden;
        if (use_teacher && teacher_begin(&t->teacher, &b)) return -1;
        if (model_forward(&t->m, &b, &hidden)) return -1;
        for (int i = 0; i < n_sel; i++)
            memcpy(t->hsel + (size_t)i * H, hidden + (size_t)t->sel[i] * H, sizeof(float) * (size_t)H);
        loss_ctx lx = {.rows = &t->rows, .sel = t->sel, .cfg = t->o.loss, .teacher = use_teacher ? teacher_logits : NULL,
                       .tctx = &t->teacher, .teacher_vocab = use_teacher ? t->teacher.m.cfg.vocab : 0,
                       .vocab_used = t->ds.vocab};
        double l = 0;
        int rc = model_lm_loss(&t->m, t->hsel, backward ? t->dsel : NULL, n_sel, loss_chunk, &lx, &l);
        loss_ctx_free(&lx);
        if (rc) return -1;
        res->loss += l;
        for (int k = 0; k < TERM_COUNT; k++) {
            res->sums.answer[k] += lx.sums.answer[k];
            res->sums.prompt[k] += lx.sums.prompt[k];
        }
        res->sums.n_answer += lx.sums.n_answer;
        res->sums.n_prompt += lx.sums.n_prompt;
        res->sums.n_answer_ce += lx.sums.n_answer_ce;
        res->sums.n_prompt_ce += lx.sums.n_prompt_ce;
        if (backward) {
            memset(t->dhid, 0, sizeof(float) * (size_t)n * (size_t)H);
            for (int i = 0; i < n_sel; i++)
                memcpy(t->dhid + (size_t)t->sel[i] * H, t->dsel + (size_t)i * H, sizeof(float) * (size_t)H);
            if (model_backward(&t->m, t->dhid)) return -1;
        }
    }
    res->tokens += S->n_tokens;
    return 0;
}

/* The values a pass exchanges among ranks (pass_result flattened). */
enum { X_LOSS = 0, X_ANSWER = 1, X_PROMPT = X_ANSWER + TERM_COUNT, X_NA = X_PROMPT + TERM_COUNT, X_NP, X_NA_CE, X_NP_CE,
       X_TOKENS, X_N };

static void pack(double *v, const pass_result *r) {
    v[X_LOSS] = r->loss;
    for (int k = 0; k < TERM_COUNT; k++) {
        v[X_ANSWER + k] = r->sums.answer[k];
        v[X_PROMPT + k] = r->sums.prompt[k];
    }
    v[X_NA] = (double)r->sums.n_answer;
    v[X_NP] = (double)r->sums.n_prompt;
    v[X_NA_CE] = (double)r->sums.n_answer_ce;
    v[X_NP_CE] = (double)r->sums.n_prompt_ce;
    v[X_TOKENS] = (double)r->tokens;
}

static void unpack(pass_result *r, const double *v) {
    r->loss = v[X_LOSS];
    for (int k = 0; k < TERM_COUNT; k++) {
        r->sums.answer[k] = v[X_ANSWER + k];
        r->sums.prompt[k] = v[X_PROMPT + k];
    }
    r->sums.n_answer = (int64_t)v[X_NA];
    r->sums.n_prompt = (int64_t)v[X_NP];
    r->sums.n_answer_ce = (int64_t)v[X_NA_CE];
    r->sums.n_prompt_ce = (int64_t)v[X_NP_CE];
    r->tokens = (int64_t)v[X_TOKENS];
}

/* Counts positions of this rank's sequences and agrees on the global counts. */
static int global_counts(trainer *t, const seq_set *S, int rc, loss_counts *g) {
    loss_counts c = {0};
    if (!rc) loss_count_positions(&c, S->mask, S->len, S->n);
    double v[3] = {(double)c.answer, (double)c.prompt, (double)c.prompt_seqs}; /* exact: far below 2^53 */
    int status = rc ? 1 : 0;
    if (dp_exchange(v, 3, &status, t->ctx->world)) return -1;
    if (rc) return -1;
    if (status) return err_set(ERR_STAGE, "another rank of stage %s failed (see its lines in the log)", t->ctx->stage);
    *g = (loss_counts){.answer = (int64_t)v[0], .prompt = (int64_t)v[1], .prompt_seqs = (int64_t)v[2]};
    return 0;
}

/* Runs one part of the objective over S (counts agreed), then agrees on the summed result; -1 if any
 * rank failed. */
static int pass_over(trainer *t, const seq_set *S, int rc, int backward, loss_part part, pass_result *res) {
    loss_counts g;
    memset(res, 0, sizeof *res);
    if (global_counts(t, S, rc, &g)) return -1;
    rc = run_sequences(t, S, &g, backward, part, res);
    double v[X_N];
    pack(v, res);
    int status = rc ? 1 : 0;
    if (dp_exchange(v, X_N, &status, t->ctx->world)) return -1;
    if (rc) return -1;
    if (status) return err_set(ERR_STAGE, "another rank of stage %s failed (see its lines in the log)", t->ctx->stage);
    if (t->ctx->world > 1) unpack(res, v);
    return 0;
}

int train_step(trainer *t, pass_result *res) {
    const int64_t step = t->prog.step + 1; /* the step being taken, counted from 1 */
    int rc = stream_next(&t->stream, &t->prog.cursor, &t->plan);
    int s0 = 0, s1 = 0;
    if (!rc) batch_rank_range(&t->plan, t->ctx->rank, t->ctx->world, &s0, &s1);
    seq_set_clear(&t->local);
    if (!rc) rc = seq_set_from_plan(&t->local, &t->train, &t->plan, s0, s1);
    const seq_set *S = &t->local;
    const policy_config *pc = &t->o.policy;
    int sampled = 0;
    if (!rc && pc->fraction > 0) {
        /* whether this step samples: a function of (seed, step) only */
        double u = (double)(drng_hash(t->seed ^ 0x0b011c7ull, (uint64_t)step) >> 11) * 0x1.0p-53;
        if (u < pc->fraction) {
            model *gen = pc->by_teacher ? &t->teacher.m : &t->m;
            kv_cache *kv = pc->by_teacher ? &t->teacher.kv : &t->gen_kv;
            rc = policy_generate(&t->sampled, &t->local, &t->train, gen, kv, pc, t->o.seq_len, t->ds.eos_id, t->seed,
                                 step, !pc->by_teacher);
            S = &t->sampled;
            sampled = 1;
        }
    }
    if (rc) err_prefix("step %lld: ", (long long)step);
    if (sampled && !pc->ce_sampled) {
        /* FMCHISEL's semantics: the divergences on the sampled sequences, CE on the data batch's answers
         * (the ground truth); two passes whose gradients add up before the one update */
        pass_result ce;
        if (pass_over(t, S, rc, 1, LOSS_PART_DIV, res) || pass_over(t, &t->local, 0, 1, LOSS_PART_CE, &ce)) return -1;
        res->loss += ce.loss;
        res->sums.answer[TERM_CE] = ce.sums.answer[TERM_CE];
        res->sums.n_answer_ce = ce.sums.n_answer_ce;
        res->tokens += ce.tokens;
    } else if (pass_over(t, S, rc, 1, LOSS_PART_ALL, res)) {
        return -1;
    }
    /* fault injection for the tests of the NaN path: SMELT_TRAIN_NAN_AT=STAGE:N poisons step N's loss */
    const char *nan_at = getenv("SMELT_TRAIN_NAN_AT"), *colon = nan_at ? strrchr(nan_at, ':') : NULL;
    if (colon && (size_t)(colon - nan_at) == strlen(t->ctx->stage) && !strncmp(nan_at, t->ctx->stage, strlen(t->ctx->stage)) &&
        atoll(colon + 1) == step)
        res->loss = NAN;
    if (!isfinite(res->loss)) {
        int64_t last = state_newest(t->ctx->checkpoint_dir);
        char kept[160];
        if (last >= 0) snprintf(kept, sizeof kept, "the last good in-stage checkpoint (step %lld) is kept", (long long)last);
        else snprintf(kept, sizeof kept, "no in-stage checkpoint was written before it");
        return err_set(ERR_STAGE, "the loss is %s at step %lld; stopped before the update (%s); lower optim.lr, raise "
                       "optim.warmup or check the data, then run the stage again", isnan(res->loss) ? "NaN" : "infinite",
                       (long long)step, kept);
    }
    if (dp_sum_floats(t->m.grad.mem, t->m.grad.n_floats, t->ctx->world)) return -1;
    /* every rank holds the same gradient: the same norm, the same update, weights stay equal */
    rc = optim_step(&t->opt, &t->m);
    model_zero_grad(&t->m);
    if (rc) return err_prefix("step %lld: ", (long long)step);
    t->prog.step = step;
    t->prog.tokens_seen += res->tokens;
    return 0;
}

int train_validate(trainer *t, pass_result *res) {
    int s0, s1;
    batch_rank_range(&t->valid_plan, t->ctx->rank, t->ctx->world, &s0, &s1);
    seq_set_clear(&t->local);
    int rc = seq_set_from_plan(&t->local, &t->valid, &t->valid_plan, s0, s1);
    if (pass_over(t, &t->local, rc, 0, LOSS_PART_ALL, res)) return err_prefix("validation: ");
    return 0;
}
