/* policy.c: KV-cache inference inside training. The teacher runs forward only (no gradients, no
 * activations kept): its logits are produced when the loss asks for a chunk of positions, by
 * extending its cache through the micro-batch's sequences up to the last position asked, so it
 * never holds more than one chunk of logits. On-policy and sequence-level sampling generate
 * continuations of the data's prompts with the student's or the teacher's cache. */
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "stages/data/rng.h"
#include "stages/train/train.h"

int teacher_open(teacher_state *t, const char *path, int capacity) {
    memset(t, 0, sizeof *t);
    if (train_load_model(&t->m, path)) return err_prefix("teacher: ");
    t->loaded = 1;
    if (kv_cache_init(&t->kv, &t->m.cfg, capacity) || !(t->out_rows = xmalloc(sizeof(int) * (size_t)capacity))) {
        teacher_close(t);
        return err_prefix("teacher: ");
    }
    return 0;
}

void teacher_close(teacher_state *t) {
    kv_cache_free(&t->kv);
    if (t->loaded) model_free(&t->m);
    free(t->out_rows);
    memset(t, 0, sizeof *t);
}

void teacher_begin(teacher_state *t, const int *tokens, const int *seq_lens, int n_seqs) {
    t->tokens = tokens;
    t->seq_lens = seq_lens;
    t->n_seqs = n_seqs;
    t->seq = 0;
    t->seq_start = 0;
    t->done = 0;
    t->kv.len = 0;
}

int teacher_logits(void *tctx, float *logits, const int *rows, int n) {
    teacher_state *t = tctx;
    const int V = t->m.cfg.vocab;
    int i = 0;
    while (i < n) {
        const int r = rows[i];
        if (r < t->done)
            return err_set(ERR_INTERNAL, "teacher asked for position %d after running up to %d", r, t->done);
        /* move to the sequence holding r; a new sequence restarts the cache */
        while (t->seq < t->n_seqs && r >= t->seq_start + t->seq_lens[t->seq]) {
            t->seq_start += t->seq_lens[t->seq];
            t->seq++;
            t->done = t->seq_start;
            if (kv_cache_truncate(&t->kv, 0)) return -1;
        }
        if (t->seq >= t->n_seqs) return err_set(ERR_INTERNAL, "teacher asked for position %d past the batch", r);
        const int end = t->seq_start + t->seq_lens[t->seq];
        int j = i;
        while (j < n && rows[j] < end) {
            t->out_rows[j - i] = rows[j] - t->done;
            j++;
        }
        const int upto = rows[j - 1] + 1; /* run positions done .. upto-1 */
        if (model_extend(&t->m, &t->kv, t->tokens + t->done, upto - t->done, t->out_rows, j - i,
                         logits + (size_t)i * V))
            return -1;
        t->done = upto;
        i = j;
    }
    return 0;
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

int policy_generate(seq_set *out, const seq_set *in, model *gen, kv_cache *kv, const policy_config *pc, int seq_len,
                    int eos_id, uint64_t seed, int64_t step, int by_student) {
    const int V = gen->cfg.vocab;
    int max_new = pc->max_new_tokens;
    if (max_new > seq_len - 1) max_new = seq_len - 1;
    sampler smp = {0};
    float *logits = xmalloc(sizeof(float) * (size_t)V);
    int *toks = xmalloc(sizeof(int) * (size_t)seq_len);
    uint8_t *mask = xmalloc((size_t)seq_len);
    int rc = (!logits || !toks || !mask) ? -1 : sampler_init(&smp, V, (float)pc->temperature, (float)pc->top_p, 1);
    seq_set_clear(out);
    for (int s = 0; s < in->n && !rc; s++) {
        const int *t = in->tokens + in->off[s];
        const uint8_t *m = in->mask + in->off[s];
        int a = 0;
        while (a < in->len[s] && m[a] == DS_TOK_PROMPT) a++;
        if (a == 0) a = 1; /* no prompt: start from the first token */
        int first = a > seq_len - max_new ? a - (seq_len - max_new) : 0, np = a - first;
        memcpy(toks, t + first, sizeof(int) * (size_t)np);
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
