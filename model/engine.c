/* engine.c: the serving engine's requests and scheduler (see engine.h). A step:
 *   1. every running sequence that decodes gets its one token, then sequences whose prompt is
 *      still being prefilled get their next chunk, as the token budget allows;
 *   2. waiting requests are admitted in arrival order while the budget, the sequence slots and the
 *      KV pool allow: each takes the longest cached prefix of its prompt from the radix tree and
 *      prefills the rest (in chunks when it exceeds the budget). A request whose prompt shares
 *      more whole blocks with a prompt being prefilled in this step than with the cache waits one
 *      step, so that it finds that prompt cached instead of computing it again (k candidates of
 *      one member arriving together: one cold prefill, then k - 1 hot ones);
 *   3. blocks are allocated (evicting cached prefixes when the pool is empty), one batched forward
 *      runs, logits are computed for the rows that need them, tokens are sampled, events go out;
 *      a completed prompt enters the prefix cache; finished requests release their blocks.
 * Admission reserves blocks for the whole request (prompt + new tokens), so nothing runs out of
 * memory mid-request and no preemption is needed. */
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "common/log.h"
#include "model/engine_internal.h"

engine_opts engine_opts_default(void) {
    return (engine_opts){.block_size = 16, .kv_budget_mb = 256, .max_batch_tokens = 1024, .max_seqs = 64,
                         .prefix_cache = 1};
}

static int check_opts(const engine_opts *o) {
    if (o->block_size < 1 || o->block_size > 1024)
        return err_set(ERR_INPUT, "block_size %d: expected 1 to 1024 positions per KV block", o->block_size);
    if (!(o->kv_budget_mb > 0) || o->kv_budget_mb > 1048576)
        return err_set(ERR_INPUT, "kv_budget_mb %g: expected a positive number of MiB", o->kv_budget_mb);
    if (o->max_batch_tokens < 1 || o->max_batch_tokens > (1 << 20))
        return err_set(ERR_INPUT, "max_batch_tokens %d: expected 1 to 1048576", o->max_batch_tokens);
    if (o->max_seqs < 1 || o->max_seqs > 65536) return err_set(ERR_INPUT, "max_seqs %d: expected 1 to 65536", o->max_seqs);
    if (o->max_context < 0) return err_set(ERR_INPUT, "max_context %d: expected >= 0", o->max_context);
    return 0;
}

int engine_create(engine **out, model *m, const engine_opts *o) {
    *out = NULL;
    if (check_opts(o)) return -1;
    engine *e = xcalloc(1, sizeof *e);
    if (!e) return -1;
    e->m = m;
    e->o = *o;
    e->next_id = 1;
    e->max_context = o->max_context > 0 ? o->max_context : m->cfg.max_pos > 0 ? m->cfg.max_pos : 4096;
    if (m->cfg.max_pos > 0 && e->max_context > m->cfg.max_pos) {
        err_set(ERR_INPUT, "a context of %d positions exceeds the model's max_position_embeddings (%d)", e->max_context,
                m->cfg.max_pos);
        free(e);
        return -1;
    }
    if (kv_pool_init(&e->pool, &m->cfg, o->block_size, (size_t)(o->kv_budget_mb * 1048576.0), o->kv_f16)) {
        free(e);
        return -1;
    }
    radix_init(&e->tree, &e->pool);
    e->running = xcalloc((size_t)o->max_seqs, sizeof *e->running);
    e->segs = xcalloc((size_t)o->max_seqs, sizeof *e->segs);
    e->pseqs = xcalloc((size_t)o->max_seqs, sizeof *e->pseqs);
    e->tmp_blocks = xmalloc(sizeof(int) * (size_t)(e->max_context / o->block_size + 1));
    e->out_rows = xmalloc(sizeof(int) * (size_t)o->max_batch_tokens);
    e->head_rows = o->max_batch_tokens; /* a dry run computes no logits: one chunk (engine_buffers_init sets it) */
    e->st.layer_attn_s = xcalloc((size_t)m->cfg.n_layers + 1, sizeof(double));
    e->st.layer_mlp_s = xcalloc((size_t)m->cfg.n_layers + 1, sizeof(double));
    if (!e->running || !e->segs || !e->pseqs || !e->tmp_blocks || !e->out_rows || !e->st.layer_attn_s || !e->st.layer_mlp_s ||
        (!o->dry_run && engine_buffers_init(e))) {
        engine_free(e);
        return -1;
    }
    *out = e;
    return 0;
}

static void seq_free(eseq *s) {
    if (!s) return;
    free(s->tokens);
    free(s->blocks);
    free(s->stop);
    sampler_free(&s->smp);
    free(s);
}

/* Gives back everything a sequence holds: its lock, its blocks, its reserve. */
static void seq_release(engine *e, eseq *s) {
    if (s->lock) radix_unlock(&e->tree, s->lock);
    s->lock = NULL;
    for (int i = 0; i < s->n_blocks; i++) kv_pool_release(&e->pool, s->blocks[i]);
    s->n_blocks = 0;
    e->reserved -= s->reserved;
    s->reserved = 0;
}

void engine_free(engine *e) {
    if (!e) return;
    for (int i = 0; i < e->n_running; i++) {
        seq_release(e, e->running[i]);
        seq_free(e->running[i]);
    }
    for (int i = 0; i < e->n_waiting; i++) seq_free(e->waiting[i]);
    radix_free(&e->tree);
    kv_pool_free(&e->pool);
    if (!e->o.dry_run) engine_buffers_free(e);
    free(e->waiting), free(e->running), free(e->segs), free(e->pseqs), free(e->tmp_blocks), free(e->out_rows);
    free(e->st.layer_attn_s), free(e->st.layer_mlp_s);
    free(e);
}

int engine_check_fits(const engine *e, int n_prompt, int max_new_tokens) {
    const long total = (long)n_prompt + max_new_tokens;
    if (total > e->max_context)
        return err_set(ERR_INPUT, "a request of %d prompt tokens and %d new tokens needs %ld positions but the context "
                       "holds %d; shorten the prompt or ask for fewer tokens", n_prompt, max_new_tokens, total,
                       e->max_context);
    const int need = engine_blocks_for(e, (int)total - 1);
    if (need > e->pool.n_blocks)
        return err_set(ERR_INPUT, "a request of %ld positions needs %d KV blocks (%.2f MiB) but the KV budget of %g MiB "
                       "holds %d; raise kv_budget_mb or shorten the request", total - 1, need,
                       need * (double)kv_pool_block_bytes(&e->m->cfg, e->o.block_size, e->o.kv_f16) / 1048576.0, e->o.kv_budget_mb,
                       e->pool.n_blocks);
    return 0;
}

int engine_submit(engine *e, const engine_request *r, int64_t *id) {
    if (r->n_prompt < 1 || !r->prompt) return err_set(ERR_INPUT, "a request needs at least one prompt token");
    if (r->max_new_tokens < 1) return err_set(ERR_INPUT, "max_new_tokens %d: expected at least 1", r->max_new_tokens);
    if (r->n_stop < 0 || (r->n_stop > 0 && !r->stop_ids)) return err_set(ERR_INPUT, "bad stop token list");
    if (engine_check_fits(e, r->n_prompt, r->max_new_tokens)) return -1;
    for (int i = 0; i < r->n_prompt; i++)
        if (r->prompt[i] < 0 || r->prompt[i] >= e->m->cfg.vocab)
            return err_set(ERR_INPUT, "prompt token %d is %d, outside the vocabulary [0, %d)", i, r->prompt[i],
                           e->m->cfg.vocab);
    eseq *s = xcalloc(1, sizeof *s);
    if (!s) return -1;
    s->cap = r->n_prompt + r->max_new_tokens;
    s->cap_blocks = engine_blocks_for(e, s->cap);
    s->tokens = xmalloc(sizeof(int) * (size_t)s->cap);
    s->blocks = xmalloc(sizeof(int) * (size_t)s->cap_blocks);
    s->stop = xmalloc(sizeof(int) * (size_t)(r->n_stop + 1));
    if (!s->tokens || !s->blocks || !s->stop ||
        sampler_init(&s->smp, e->m->cfg.vocab, r->temperature, r->top_p, r->seed)) {
        seq_free(s);
        return -1;
    }
    memcpy(s->tokens, r->prompt, sizeof(int) * (size_t)r->n_prompt);
    if (r->n_stop) memcpy(s->stop, r->stop_ids, sizeof(int) * (size_t)r->n_stop);
    s->n_tokens = s->n_prompt = r->n_prompt;
    s->n_stop = r->n_stop;
    s->max_new = r->max_new_tokens;
    s->ignore_eos = r->ignore_eos;
    s->prompt_logits = r->prompt_logits;
    s->user = r->user;
    if (e->n_waiting == e->cap_waiting) {
        int cap = e->cap_waiting ? 2 * e->cap_waiting : 64;
        eseq **w = xrealloc(e->waiting, sizeof *w * (size_t)cap);
        if (!w) {
            seq_free(s);
            return -1;
        }
        e->waiting = w, e->cap_waiting = cap;
    }
    s->id = e->next_id++;
    e->waiting[e->n_waiting++] = s;
    if (id) *id = s->id;
    return 0;
}

static void running_remove(engine *e, eseq *s) {
    for (int i = 0; i < e->n_running; i++)
        if (e->running[i] == s) {
            memmove(e->running + i, e->running + i + 1, sizeof *e->running * (size_t)(e->n_running - i - 1));
            e->n_running--;
            return;
        }
}

int engine_cancel(engine *e, int64_t id) {
    for (int i = 0; i < e->n_waiting; i++)
        if (e->waiting[i]->id == id) {
            seq_free(e->waiting[i]);
            memmove(e->waiting + i, e->waiting + i + 1, sizeof *e->waiting * (size_t)(e->n_waiting - i - 1));
            e->n_waiting--;
            return 1;
        }
    for (int i = 0; i < e->n_running; i++)
        if (e->running[i]->id == id) {
            eseq *s = e->running[i];
            running_remove(e, s);
            seq_release(e, s);
            seq_free(s);
            return 1;
        }
    return 0;
}

/* Puts the first n_blocks whole blocks of s into the prefix cache and moves its lock there. */
static void cache_prefix(engine *e, eseq *s, int n_blocks) {
    if (!e->o.prefix_cache || n_blocks < 1) return;
    radix_node *node;
    if (radix_insert(&e->tree, s->tokens, s->blocks, n_blocks, &node)) {
        log_warn("prefix cache: %s (the prompt is not cached)", err_msg());
        err_clear();
        return;
    }
    radix_lock(&e->tree, node);
    if (s->lock) radix_unlock(&e->tree, s->lock);
    s->lock = node;
}

static void seq_finish(engine *e, eseq *s) {
    cache_prefix(e, s, s->n_computed / e->o.block_size);
    running_remove(e, s);
    seq_release(e, s);
    e->st.requests_done++;
    seq_free(s);
}

static int common_prefix(const int *a, const int *b, int n) {
    int i = 0;
    while (i < n && a[i] == b[i]) i++;
    return i;
}

/* 1 when s should wait for a prompt being prefilled in this step that shares more whole blocks
 * with it than the cache does (m blocks). */
static int wait_for_sibling(const engine *e, const eseq *s, int m, int n_seg) {
    if (!e->o.prefix_cache || s->prompt_logits) return 0;
    for (int i = 0; i < n_seg; i++) {
        const eseq *o = e->segs[i].s;
        if (o->n_computed >= o->n_prompt) continue; /* decoding: its prompt is cached already */
        int n = s->n_prompt < o->n_prompt ? s->n_prompt : o->n_prompt;
        if (common_prefix(s->tokens, o->tokens, n - 1) / e->o.block_size > m) return 1;
    }
    return 0;
}

/* Admits waiting requests into free slots while budget and memory allow; adds their segments. */
static int admit(engine *e, int *budget, int *n_seg, int *n_rows, engine_step_info *info) {
    const int B = e->o.block_size;
    for (int w = 0; w < e->n_waiting && *budget > 0 && e->n_running < e->o.max_seqs;) {
        eseq *s = e->waiting[w];
        radix_node *node = NULL;
        int m = 0;
        if (e->o.prefix_cache && !s->prompt_logits) {
            m = radix_match(&e->tree, s->tokens, s->n_prompt, e->tmp_blocks, &node);
            if (m < 0) return -1;
            if (m * B >= s->n_prompt) m = (s->n_prompt - 1) / B; /* the last prompt position is always computed */
        }
        if (wait_for_sibling(e, s, m, *n_seg)) {
            w++;
            continue;
        }
        const int need = engine_blocks_for(e, s->cap - 1) - m;
        if (node) radix_lock(&e->tree, node);
        if (need > e->pool.n_free + e->tree.n_evictable - e->reserved) {
            if (node) radix_unlock(&e->tree, node);
            break; /* in order: later requests wait behind this one */
        }
        s->lock = node;
        for (int i = 0; i < m; i++) {
            s->blocks[i] = e->tmp_blocks[i];
            kv_pool_retain(&e->pool, s->blocks[i]);
        }
        s->n_blocks = m;
        s->n_computed = s->cached = m * B;
        s->reserved = need;
        e->reserved += need;
        memmove(e->waiting + w, e->waiting + w + 1, sizeof *e->waiting * (size_t)(e->n_waiting - w - 1));
        e->n_waiting--;
        e->running[e->n_running++] = s;
        e->st.cached_tokens += s->cached;
        e->st.prompt_tokens += s->n_prompt;
        info->admitted++;
        int chunk = s->n_prompt - s->n_computed < *budget ? s->n_prompt - s->n_computed : *budget;
        e->segs[(*n_seg)++] = (eseg){.s = s, .p0 = s->n_computed, .n = chunk, .row0 = *n_rows};
        *n_rows += chunk;
        *budget -= chunk;
    }
    return 0;
}

/* Blocks for every position the step writes. Admission reserved them, so a free or evictable
 * block always exists; running out is a bug in the accounting. */
static int alloc_blocks(engine *e, int n_seg) {
    for (int i = 0; i < n_seg; i++) {
        eseq *s = e->segs[i].s;
        const int need = engine_blocks_for(e, e->segs[i].p0 + e->segs[i].n);
        while (s->n_blocks < need) {
            int b = kv_pool_alloc(&e->pool);
            if (b < 0 && radix_evict(&e->tree, 1) > 0) b = kv_pool_alloc(&e->pool);
            if (b < 0 || s->reserved < 1)
                return err_set(ERR_INTERNAL, "KV pool: no block left for request %lld (reserve %d, %d free, %d "
                               "evictable)", (long long)s->id, s->reserved, e->pool.n_free, e->tree.n_evictable);
            s->blocks[s->n_blocks++] = b;
            s->reserved--;
            e->reserved--;
        }
    }
    return 0;
}

static int is_stop(const engine *e, const eseq *s, int tok) {
    if (s->ignore_eos) return 0;
    const model_config *c = &e->m->cfg;
    if (tok == c->eos_id) return 1;
    for (int i = 0; i < c->n_eos; i++)
        if (tok == c->eos_ids[i]) return 1;
    for (int i = 0; i < s->n_stop; i++)
        if (tok == s->stop[i]) return 1;
    return 0;
}

/* The event of one logits row; samples when the row ends the known tokens of s. */
static int emit(engine *e, eseq *s, int pos, const float *logits, engine_event_fn fn, void *ctx) {
    engine_event ev = {.id = s->id, .user = s->user, .pos = pos, .logits = logits, .cached_tokens = s->cached};
    if (pos < s->n_tokens - 1) { /* a prompt position (echo) */
        ev.kind = ENGINE_EV_PROMPT;
        if (fn && fn(ctx, &ev)) s->done = ENGINE_FINISH_ABORT;
        return 0;
    }
    int tok = 0;
    if (logits) {
        const double t0 = e->profile ? time_monotonic() : 0;
        memcpy(e->sample_buf, logits, sizeof(float) * (size_t)e->m->cfg.vocab);
        tok = sampler_sample(&s->smp, e->sample_buf);
        if (e->profile) e->st.team_s[ENGINE_TP_SAMPLE] += time_monotonic() - t0;
    }
    s->tokens[s->n_tokens++] = tok;
    s->n_generated++;
    e->st.generated_tokens++;
    int fin = ENGINE_RUNNING;
    if (!e->o.dry_run && is_stop(e, s, tok)) fin = ENGINE_FINISH_STOP;
    else if (s->n_generated >= s->max_new || s->n_tokens >= e->max_context) fin = ENGINE_FINISH_LENGTH;
    ev.kind = ENGINE_EV_TOKEN;
    ev.token = tok;
    ev.n_generated = s->n_generated;
    ev.finish = fin;
    if (fn && fn(ctx, &ev) && !fin) fin = ENGINE_FINISH_ABORT;
    if (fin) s->done = fin;
    return 0;
}

/* Logits rows of the step (prompt rows of echo requests, and the last row of every segment that
 * reaches the end of its sequence's known tokens), computed in chunks and handed to emit. */
static int outputs(engine *e, int n_seg, engine_event_fn fn, void *ctx) {
    int n_out = 0;
    for (int i = 0; i < n_seg; i++) {
        const eseg *g = &e->segs[i];
        eseq *s = g->s;
        s->n_computed = g->p0 + g->n;
        for (int t = 0; t < g->n; t++) {
            const int p = g->p0 + t;
            if ((s->prompt_logits && p < s->n_prompt - 1) || p == s->n_tokens - 1) e->out_rows[n_out++] = g->row0 + t;
        }
    }
    /* rows are ascending and segments are contiguous: walk both together */
    int seg = 0;
    for (int c0 = 0; c0 < n_out; c0 += e->head_rows) {
        const int nc = n_out - c0 < e->head_rows ? n_out - c0 : e->head_rows;
        if (!e->o.dry_run && engine_head(e, e->out_rows + c0, nc)) return -1;
        for (int j = 0; j < nc; j++) {
            const int row = e->out_rows[c0 + j];
            while (row >= e->segs[seg].row0 + e->segs[seg].n) seg++;
            eseq *s = e->segs[seg].s;
            if (s->done) continue;
            const float *lg = e->o.dry_run ? NULL : e->logits + (size_t)j * e->m->cfg.vocab;
            emit(e, s, e->segs[seg].p0 + (row - e->segs[seg].row0), lg, fn, ctx);
        }
    }
    return 0;
}

int engine_step(engine *e, engine_event_fn fn, void *ctx, engine_step_info *info_out) {
    engine_step_info info = {0};
    const double t0 = time_monotonic();
    int budget = e->o.max_batch_tokens, n_seg = 0, n_rows = 0;
    for (int pass = 0; pass < 2; pass++) /* decoding sequences first, then continuing prefills */
        for (int i = 0; i < e->n_running && budget > 0; i++) {
            eseq *s = e->running[i];
            const int decoding = s->n_computed >= s->n_prompt;
            if (decoding != (pass == 0)) continue;
            int n = decoding ? 1 : s->n_prompt - s->n_computed < budget ? s->n_prompt - s->n_computed : budget;
            e->segs[n_seg++] = (eseg){.s = s, .p0 = s->n_computed, .n = n, .row0 = n_rows};
            n_rows += n;
            budget -= n;
        }
    int rc = admit(e, &budget, &n_seg, &n_rows, &info);
    if (!rc && n_seg) rc = alloc_blocks(e, n_seg);
    if (!rc && n_seg && !e->o.dry_run) rc = engine_forward(e, e->segs, n_seg, n_rows);
    for (int i = 0; i < n_seg && !rc; i++) {
        const eseg *g = &e->segs[i];
        if (g->p0 < g->s->n_prompt) info.prefill_tokens += g->n;
        else info.decode_tokens += g->n;
        info.attn_pairs += (double)g->n * (g->p0 + g->n);
    }
    if (!rc && n_seg) rc = outputs(e, n_seg, fn, ctx);
    if (rc) { /* a failed forward leaves the blocks of this step undefined: drop every request */
        while (e->n_running) {
            eseq *s = e->running[e->n_running - 1];
            running_remove(e, s);
            seq_release(e, s);
            seq_free(s);
        }
        return -1;
    }
    for (int i = 0; i < n_seg; i++) {
        eseq *s = e->segs[i].s;
        const eseg *g = &e->segs[i];
        if (!s->done && g->p0 < s->n_prompt && g->p0 + g->n == s->n_prompt)
            cache_prefix(e, s, s->n_prompt / e->o.block_size); /* the whole prompt is computed */
        if (s->done) {
            seq_finish(e, s);
            info.finished++;
        }
    }
    info.n_seqs = n_seg;
    info.seconds = time_monotonic() - t0;
    if (n_seg) e->st.steps++;
    if (info_out) *info_out = info;
    return 0;
}

int engine_n_waiting(const engine *e) { return e->n_waiting; }
int engine_n_running(const engine *e) { return e->n_running; }

void engine_kv_usage(const engine *e, int *n_blocks, int *n_free, int *n_cached) {
    if (n_blocks) *n_blocks = e->pool.n_blocks;
    if (n_free) *n_free = e->pool.n_free;
    if (n_cached) *n_cached = e->tree.n_blocks;
}

void engine_cache_clear(engine *e) { radix_evict(&e->tree, INT_MAX); }

const engine_stats *engine_get_stats(const engine *e) { return &e->st; }

const char *const engine_tp_names[ENGINE_TP_N] = {
    [ENGINE_TP_NORM] = "rmsnorm",          [ENGINE_TP_GEMV] = "GEMV (q/k/v, o, gate/up, down)",
    [ENGINE_TP_ROPE_KV] = "RoPE + KV write", [ENGINE_TP_ATTN] = "attention (+ merge)",
    [ENGINE_TP_SWIGLU] = "SwiGLU",          [ENGINE_TP_BARRIER] = "barrier wait",
    [ENGINE_TP_HEAD] = "LM head (+ final norm)", [ENGINE_TP_SAMPLE] = "sampling (copy + argmax/softmax)",
};

void engine_set_profile(engine *e, int on) { e->profile = on; }

void engine_stats_reset(engine *e) {
    double *a = e->st.layer_attn_s, *m = e->st.layer_mlp_s;
    memset(a, 0, sizeof(double) * (size_t)e->m->cfg.n_layers);
    memset(m, 0, sizeof(double) * (size_t)e->m->cfg.n_layers);
    memset(&e->st, 0, sizeof e->st);
    e->st.layer_attn_s = a, e->st.layer_mlp_s = m;
}

const engine_opts *engine_get_opts(const engine *e) { return &e->o; }
const model_config *engine_config(const engine *e) { return &e->m->cfg; }
