/* policy.c: the teacher and sampling inside training. The teacher runs forward only (no
 * gradients, no activations kept): one packed forward per micro-batch gives its final hidden
 * states, and its logits are produced only when the loss asks for a chunk of positions, so it
 * never holds more than one chunk of logits. On-policy and sequence-level sampling generate
 * continuations of the data's prompts with the student's or the teacher's KV cache. */
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "stages/data/rng.h"
#include "stages/train/train.h"

int teacher_open(teacher_state *t, const char *path, int capacity) {
    memset(t, 0, sizeof *t);
    if (train_load_model(&t->m, path)) return err_prefix("teacher: ");
    t->loaded = 1;
    if (kv_cache_init(&t->kv, &t->m.cfg, capacity)) {
        teacher_close(t);
        return err_prefix("teacher: ");
    }
    return 0;
}

void teacher_close(teacher_state *t) {
    kv_cache_free(&t->kv);
    if (t->loaded) model_free(&t->m);
    free(t->hidden), free(t->rows_hidden);
    memset(t, 0, sizeof *t);
}

/* Grows a float buffer to n floats. */
static int grow(float **buf, size_t *cap, size_t n, const char *what) {
    if (n <= *cap) return 0;
    float *p = xrealloc(*buf, sizeof(float) * n);
    if (!p) return err_prefix("teacher %s (%zu floats): ", what, n);
    *buf = p;
    *cap = n;
    return 0;
}

int teacher_begin(teacher_state *t, const model_batch *b) {
    const size_t H = (size_t)t->m.cfg.hidden;
    if (grow(&t->hidden, &t->hidden_cap, (size_t)b->n_tokens * H, "hidden states")) return -1;
    t->n_tokens = b->n_tokens;
    if (model_forward_hidden(&t->m, b, t->hidden)) return err_prefix("teacher forward: ");
    return 0;
}

int teacher_logits(void *tctx, float *logits, const int *rows, int n) {
    teacher_state *t = tctx;
    const size_t H = (size_t)t->m.cfg.hidden;
    if (grow(&t->rows_hidden, &t->rows_cap, (size_t)n * H, "hidden rows")) return -1;
    for (int i = 0; i < n; i++) {
        if (rows[i] < 0 || rows[i] >= t->n_tokens)
            return err_set(ERR_INTERNAL, "teacher asked for position %d of a batch of %d", rows[i], t->n_tokens);
        memcpy(t->rows_hidden + (size_t)i * H, t->hidden + (size_t)rows[i] * H, sizeof(float) * H);
    }
    return model_logits(&t->m, logits, t->rows_hidden, n);
}

/* Samples one continuation of prompt[0..np) into toks (after the prompt); returns its length. */
static int sample_one(model *gen, kv_cache *kv, sampler *smp, float *logits, int *toks, int np, int max_new, int eos) {
    if (kv_cache_truncate(kv, 0) || model_extend(gen, kv, toks, np, NULL, 1, logits)) return -1;
    int k = 0;
    while (k < max_new) {
        int next = sampler_sample(smp, logits);
        toks[np + k++] = next;
        if (next == eos || k == max_new) break;
        if (model_decode(gen, kv, next, logits)) return -1;
    }
    return k;
}

int policy_generate(seq_set *out, const seq_set *in, const ds_split *split, model *gen, kv_cache *kv,
                    const policy_config *pc, int seq_len, int eos_id, uint64_t seed, int64_t step, int by_student) {
    const int V = gen->cfg.vocab;
    /* the sampler draws among the tokenizer's ids only: a padded row of the head is never a token */
    const int V_draw = pc->vocab > 0 && pc->vocab < V ? pc->vocab : V;
    int max_new = pc->max_new_tokens;
    if (max_new > seq_len - 1) max_new = seq_len - 1;
    sampler smp = {0};
    float *logits = xmalloc(sizeof(float) * (size_t)V);
    int *toks = xmalloc(sizeof(int) * (size_t)seq_len);
    uint8_t *mask = xmalloc((size_t)seq_len);
    int rc = (!logits || !toks || !mask) ? -1 : sampler_init(&smp, V_draw, (float)pc->temperature, (float)pc->top_p, 1);
    seq_set_clear(out);
    for (int s = 0; s < in->n && !rc; s++) {
        /* the example's prompt, fitted to the room sampling leaves (oldest history lines out first) */
        seq_unit u;
        if (!fit_prompt(&u, split, in->example[s], seq_len - max_new)) {
            rc = err_set(ERR_INPUT, "the prompt of example %lld does not fit seq_len - max_new_tokens = %d tokens even "
                         "without history; raise seq_len or lower on_policy.max_new_tokens", (long long)in->example[s],
                         seq_len - max_new);
            break;
        }
        const int32_t *t = ds_example_tokens(split, u.example);
        int np = 0;
        for (int j = 0; j < u.head; j++) toks[np++] = t[j];
        for (int j = u.start; j < u.end; j++) toks[np++] = t[j];
        smp.rng = rng_seed(drng_hash(drng_hash(seed ^ 0x9011c7ull, (uint64_t)step), (uint64_t)in->example[s]));
        int k = sample_one(gen, kv, &smp, logits, toks, np, max_new, eos_id);
        if (k < 0) {
            rc = err_prefix("sampling a continuation of example %lld: ", (long long)in->example[s]);
            break;
        }
        memset(mask, DS_TOK_PROMPT, (size_t)np);
        memset(mask + np, DS_TOK_RESPONSE, (size_t)k);
        rc = seq_set_add(out, toks, mask, np + k, by_student ? SEQ_NO_CE : 0, in->example[s]);
    }
    sampler_free(&smp);
    free(logits), free(toks), free(mask);
    return rc;
}
