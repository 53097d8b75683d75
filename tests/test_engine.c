/* test_engine.c: the serving engine (model/engine.h) and its parts.
 * - attention over paged blocks against the double reference (random block tables, GQA, prefill
 *   chunks and decode steps in one call), bitwise equal on 1 and 2 threads;
 * - the radix prefix cache: longest whole-block prefix against a brute-force search, splits,
 *   locks, LRU eviction, reference counts (every block back in the pool at the end);
 * - the engine: last-position logits with the prefix cache on and off against the plain KV-cache
 *   forward (model_extend), batched prefill of several requests, continuous batching (requests
 *   arriving between decode steps), chunked prefill, echo logits of every prompt position, greedy
 *   decoding against the plain forward, cancellation, and limits refused at submission; the
 *   acceptance's ranking shape (k = 8, 90% of 512 tokens shared): one cold prefill, seven of 64;
 * - evaluate's scores through the engine equal score_split's.
 * Tolerance of logits (test_kvcache's derivation): both paths compute the same fp32 sums in other
 * orders (batched GEMM rows, paged attention tiles), each reduction of length L may differ by
 * L eps |terms|; a layer chains reductions of lengths 2H + Q + I + D + T and the head one of H:
 * tol = 2 eps (n_layers (2H + Q + I + D + T) + H), normalized by max |logit|. */
#include <unistd.h>

#include "common/fsutil.h"
#include "common/log.h"
#include "engine_testmodel.h"
#include "kernels/attn_paged.h"
#include "kernels/threads.h"
#include "model/engine.h"
#include "model/radix.h"
#include "model/safetensors.h"
#include "stages/data/data.h"
#include "stages/evaluate/score.h"
#include "tests/qtestutil.h"

static double logit_tol(const model_config *c, int T) {
    const int Q = c->n_heads * c->head_dim;
    return 2 * TU_EPS * (c->n_layers * (2.0 * c->hidden + Q + c->intermediate + c->head_dim + T) + c->hidden);
}

/* ---- paged attention ---- */

static void test_paged_attention(void) {
    static const struct { int h, hkv, d, B, n_seqs, nq[4], nkv[4]; } cases[] = {
        {1, 1, 4, 1, 1, {1}, {1}},
        {4, 2, 16, 4, 1, {7}, {7}},
        {9, 3, 64, 16, 1, {1}, {300}},                  /* a decode step over 19 blocks (SmolLM2's heads) */
        {8, 2, 32, 16, 1, {200}, {200}},                /* a prefill: several tiles, matmul per block */
        {6, 3, 16, 5, 3, {1, 40, 2}, {33, 97, 2}},      /* decode, hot prefill, a new prompt at once */
        {4, 4, 8, 3, 4, {3, 1, 70, 9}, {10, 1, 70, 64}},
        {6, 3, 16, 5, 2, {2, 1}, {130, 65}},            /* decode key ranges that end inside blocks */
        {4, 2, 8, 7, 1, {2}, {129}},                    /* a row with no key in the last range */
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        attn_shape s = {.n_heads = cases[c].h, .n_kv_heads = cases[c].hkv, .head_dim = cases[c].d};
        const int D = s.head_dim, qw = s.n_heads * D, kw = s.n_kv_heads * D, ns = cases[c].n_seqs, B = cases[c].B;
        s.ldq = qw + 2 * kw, s.ldo = qw + 1;
        int nq_all = 0, max_nkv = 0, n_blocks = 0;
        for (int i = 0; i < ns; i++) {
            nq_all += cases[c].nq[i];
            n_blocks += (cases[c].nkv[i] + B - 1) / B;
            if (cases[c].nkv[i] > max_nkv) max_nkv = cases[c].nkv[i];
        }
        n_blocks += 3; /* unused blocks in the pool */
        int *perm = malloc(sizeof(int) * n_blocks);
        for (int i = 0; i < n_blocks; i++) perm[i] = i;
        for (int i = n_blocks - 1; i > 0; i--) { /* block tables: a random permutation of the pool */
            int j = (int)(tu_next() % (uint64_t)(i + 1)), t = perm[i];
            perm[i] = perm[j], perm[j] = t;
        }
        float *pool_k = tu_randn((size_t)n_blocks * B * kw, 1), *pool_v = tu_randn((size_t)n_blocks * B * kw, 1);
        attn_paged_kv kv = {.block_size = B, .n_blocks = n_blocks, .ldkv = kw, .k = pool_k, .v = pool_v};
        attn_paged_seq seqs[4];
        for (int i = 0, q0 = 0, b0 = 0; i < ns; i++) {
            seqs[i] = (attn_paged_seq){.q0 = q0, .nq = cases[c].nq[i], .nkv = cases[c].nkv[i], .blocks = perm + b0};
            q0 += cases[c].nq[i];
            b0 += (cases[c].nkv[i] + B - 1) / B;
        }
        float *q = tu_randn((size_t)nq_all * s.ldq, 1);
        const size_t no = (size_t)nq_all * s.ldo;
        float *out = tu_alloc(no), *out1 = tu_alloc(no), *ref = tu_alloc(no);
        size_t nw = attention_paged_work_floats(&s, seqs, ns);
        float *work = tu_alloc(nw);
        int threads = kernels_threads();
        kernels_set_threads(1);
        tu_expect(attention_paged_forward(out1, q, &kv, &s, seqs, ns, work, attention_paged_work_floats(&s, seqs, ns)) == 0,
                  "paged attention (1 thread): %s", err_msg());
        kernels_set_threads(threads);
        tu_expect(attention_paged_forward(out, q, &kv, &s, seqs, ns, work, nw) == 0, "paged attention: %s", err_msg());
        tu_expect(attention_paged_forward_ref(ref, q, &kv, &s, seqs, ns) == 0, "paged reference: %s", err_msg());
        /* scores: dots of length D; softmax and output: sums of length nkv; 2-ulp exp (as test_kernels);
         * a decode sequence's key ranges merged: one more exp (2 ulp) and product per range, and a
         * sum over the ranges (fewer than nkv terms, within the nkv term) */
        char what[160];
        snprintf(what, sizeof what, "paged attention case %zu: %d seq(s), B %d, max nkv %d (tol 4 (D + nkv + 8) eps)", c,
                 ns, B, max_nkv);
        tu_expect_close(what, out, ref, no, 4 * (D + max_nkv + 8) * TU_EPS);
        tu_expect(!memcmp(out, out1, sizeof(float) * no), "paged attention case %zu: 1 thread and %d differ", c, threads);
        for (int nt = 2; nt <= 3; nt++) { /* a decode team's calls, one thread after another: the same bits */
            float *team = tu_alloc(no), *tw = tu_alloc(nw * nt);
            for (size_t i = 0; i < no; i++) team[i] = -1;
            const size_t ntw = nw * nt; /* nw >= partials + one thread's tiles: room for nt threads */
            for (int t = 0; t < nt; t++)
                tu_expect(attention_paged_part(team, q, &kv, &s, seqs, ns, tw, ntw, t, nt) == 0, "paged part: %s",
                          err_msg());
            for (int t = 0; attention_paged_needs_merge(&s, seqs, ns) && t < nt; t++)
                attention_paged_merge_part(team, &s, seqs, ns, tw, t, nt);
            for (size_t i = 0; i < no; i++)
                if ((i % (size_t)s.ldo) == (size_t)qw) team[i] = out[i]; /* the column past the heads is not written */
            tu_expect(!memcmp(out, team, sizeof(float) * no), "paged attention case %zu: a team of %d differs", c, nt);
            free(team), free(tw);
        }
        /* an fp16 cache: the kernel equals the reference over the rounded keys and values within the
         * fp32 tolerance, and differs from the fp32 cache's result by at most the rounding's effect:
         * |k~ - k| <= 2^-11 |k| + 2^-25 (11 significant bits; subnormal unit 2^-24), so a score moves by
         * at most E = scale sum_e |q_e| (2^-11 |k_e| + 2^-25), each probability by a factor within
         * e^(+-2E): the output by (e^(2E) - 1) max|v~| through them and 2^-11 max|v| + 2^-25 through
         * the values; plus the fp32 tolerance of both results */
        {
            const size_t np = (size_t)n_blocks * B * kw;
            uint16_t *k16 = malloc(np * 2), *v16 = malloc(np * 2);
            attn_f32_to_f16(k16, pool_k, (int)np);
            attn_f32_to_f16(v16, pool_v, (int)np);
            attn_paged_kv kv16 = kv;
            kv16.k = kv16.v = NULL, kv16.k16 = k16, kv16.v16 = v16;
            float *o16 = tu_alloc(no), *r16 = tu_alloc(no);
            tu_expect(attention_paged_forward(o16, q, &kv16, &s, seqs, ns, work, nw) == 0 &&
                          attention_paged_forward_ref(r16, q, &kv16, &s, seqs, ns) == 0,
                      "paged attention, fp16 cache: %s", err_msg());
            snprintf(what, sizeof what, "paged attention case %zu, fp16 cache, against its reference", c);
            tu_expect_close(what, o16, r16, no, 4 * (D + max_nkv + 8) * TU_EPS);
            double kmax = 0, vmax = 0, qs = 0, rmax = 0, dmax = 0;
            for (size_t i = 0; i < np; i++) kmax = fmax(kmax, fabs(pool_k[i])), vmax = fmax(vmax, fabs(pool_v[i]));
            for (int i = 0; i < nq_all; i++)
                for (int h = 0; h < s.n_heads; h++) {
                    double a = 0;
                    for (int e = 0; e < D; e++) a += fabs(q[(size_t)i * s.ldq + (size_t)h * D + e]);
                    qs = fmax(qs, a);
                }
            for (size_t i = 0; i < no; i++) rmax = fmax(rmax, fabs(ref[i])), dmax = fmax(dmax, fabs((double)o16[i] - ref[i]));
            const double E = qs * (0x1p-11 * kmax + 0x1p-25) / sqrt((double)D);
            const double bound = expm1(2 * E) * vmax * (1 + 0x1p-11) + 0x1p-11 * vmax + 0x1p-25 +
                                 2 * 4 * (D + max_nkv + 8) * TU_EPS * rmax;
            tu_expect(dmax <= bound, "paged attention case %zu: the fp16 cache is %.3g off the fp32 result (bound %.3g)", c,
                      dmax, bound);
            tu_expect(dmax > 0 || max_nkv == 1, "paged attention case %zu: the fp16 cache changed nothing (not read?)", c);
            free(k16), free(v16), free(o16), free(r16);
        }
        perm[0] = n_blocks; /* a block outside the pool */
        tu_expect(attention_paged_forward(out, q, &kv, &s, seqs, ns, work, nw) != 0 && err_kind_get() == ERR_INTERNAL,
                  "a block id outside the pool is refused");
        tu_expect(attention_paged_forward(out, q, &kv, &s, seqs, ns, work, 4) != 0, "a tiny work buffer is refused");
        free(perm), free(pool_k), free(pool_v), free(q), free(out), free(out1), free(ref), free(work);
    }
}

/* The fp16 cache's conversions against safetensors.c's scalar ones (round to nearest even): every
 * half widened, and floats around every rounding boundary, subnormals, overflow, NaN narrowed. */
static void test_f16_conversions(void) {
    static uint16_t h[65536];
    static float f[65536], g[65536];
    for (int i = 0; i < 65536; i++) h[i] = (uint16_t)i;
    attn_f16_to_f32(f, h, 65536);
    int bad = 0;
    for (int i = 0; i < 65536; i++) {
        const float r = st_f16_to_f32((uint16_t)i);
        bad += memcmp(&f[i], &r, 4) != 0 && !(f[i] != f[i] && r != r);
    }
    tu_expect(bad == 0, "fp16 -> fp32: %d of 65536 halves differ from st_f16_to_f32", bad);
    for (int i = 0; i < 65536; i++) { /* each finite half, and the floats half an ulp either side */
        const float x = st_f16_to_f32((uint16_t)i);
        g[i] = x != x ? x : (i % 3 == 0 ? x : nextafterf(x, i % 3 == 1 ? INFINITY : -INFINITY));
        if (i % 7 == 0) g[i] = x * (1.0f + 0x1p-11f); /* a tie (or past it) */
    }
    g[1] = 70000.0f, g[2] = -65520.0f, g[3] = 65519.99f, g[4] = 0x1p-26f, g[5] = 0x1.8p-25f, g[6] = -0x1p-25f;
    uint16_t *o = malloc(sizeof(uint16_t) * 65536);
    attn_f32_to_f16(o, g, 65536);
    bad = 0;
    for (int i = 0; i < 65536; i++) {
        const uint16_t r = st_f32_to_f16(g[i]);
        const int nan = (r & 0x7C00) == 0x7C00 && (r & 0x3FF);
        bad += nan ? !((o[i] & 0x7C00) == 0x7C00 && (o[i] & 0x3FF)) : o[i] != r;
    }
    tu_expect(bad == 0, "fp32 -> fp16: %d of 65536 floats round differently from st_f32_to_f16", bad);
    free(o);
}

/* ---- radix tree ---- */

/* A pool whose blocks hold B floats of keys: a block "computed" for tokens t holds t as floats,
 * so a match can be checked against the tokens it claims to cover. */
static model_config tiny_pool_config(void) {
    model_config c;
    memset(&c, 0, sizeof c);
    c.n_layers = 1, c.head_dim = 1, c.layers[0].n_heads = c.layers[0].n_kv_heads = 1;
    return c;
}

static void fill_block(kv_pool *p, int b, const int *tokens) {
    for (int i = 0; i < p->block_size; i++) p->k[0][(size_t)b * p->block_size + i] = (float)tokens[i];
}

static void test_radix(void) {
    enum { B = 4, NSEQ = 40, LEN = 24 };
    model_config c = tiny_pool_config();
    kv_pool pool;
    tu_expect(kv_pool_init(&pool, &c, B, kv_pool_block_bytes(&c, B, 0) * 400, 0) == 0 && pool.n_blocks == 400, "pool");
    radix_tree t;
    radix_init(&t, &pool);
    /* prompts over a 3-letter alphabet with shared starts, so that edges split at many depths */
    int seqs[NSEQ][LEN], blocks[LEN / B], got[LEN / B];
    for (int s = 0; s < NSEQ; s++) {
        int base = s > 0 ? (int)(tu_next() % (uint64_t)s) : 0, keep = (int)(tu_next() % (LEN + 1));
        for (int i = 0; i < LEN; i++) seqs[s][i] = s > 0 && i < keep ? seqs[base][i] : (int)(tu_next() % 3);
    }
    int bad_match = 0, bad_content = 0;
    for (int s = 0; s < NSEQ; s++) {
        int n = 1 + (int)(tu_next() % LEN);
        /* brute force: the longest whole-block prefix shared with an earlier inserted prompt */
        int expect = 0;
        for (int o = 0; o < s; o++) {
            int k = 0;
            while (k < LEN && seqs[o][k] == seqs[s][k]) k++;
            if (k / B > expect) expect = k / B;
        }
        if (expect > n / B) expect = n / B;
        radix_node *node;
        int m = radix_match(&t, seqs[s], n, got, &node);
        bad_match += m != expect;
        for (int j = 0; j < m; j++)
            for (int i = 0; i < B; i++) bad_content += pool.k[0][(size_t)got[j] * B + i] != (float)seqs[s][j * B + i];
        /* "compute" the whole prompt (LEN tokens) into fresh blocks after the matched ones, then cache it */
        for (int j = 0; j < LEN / B; j++) {
            if (j < m) {
                blocks[j] = got[j];
                kv_pool_retain(&pool, got[j]);
            } else {
                blocks[j] = kv_pool_alloc(&pool);
                fill_block(&pool, blocks[j], seqs[s] + j * B);
            }
        }
        tu_expect(radix_insert(&t, seqs[s], blocks, LEN / B, &node) == 0, "insert");
        for (int j = 0; j < LEN / B; j++) kv_pool_release(&pool, blocks[j]); /* the sequence ends */
    }
    tu_expect(!bad_match && !bad_content, "radix: %d matches differ from brute force, %d cached values wrong", bad_match,
              bad_content);
    tu_expect(t.n_blocks == pool.n_blocks - pool.n_free && t.n_evictable == t.n_blocks,
              "radix: the tree holds every used block (%d, %d used, %d evictable)", t.n_blocks,
              pool.n_blocks - pool.n_free, t.n_evictable);
    /* LRU: lock one path, touch another; eviction takes the oldest unlocked leaves first */
    radix_node *locked, *touched;
    int ml = radix_match(&t, seqs[0], LEN, got, &locked);
    radix_lock(&t, locked);
    radix_match(&t, seqs[NSEQ - 1], LEN, got, &touched);
    tu_expect(radix_evict(&t, 1) >= 1, "evicts at least one block");
    tu_expect(radix_match(&t, seqs[NSEQ - 1], LEN, got, &touched) == LEN / B, "the most recently used prompt survives");
    tu_expect(radix_evict(&t, 1 << 30) > 0 && t.n_evictable == 0, "everything unlocked can be evicted");
    tu_expect(radix_match(&t, seqs[0], LEN, got, &touched) == ml && t.n_blocks == ml, "the locked path survives whole");
    for (int j = 0; j < ml; j++)
        for (int i = 0; i < B; i++) bad_content += pool.k[0][(size_t)got[j] * B + i] != (float)seqs[0][j * B + i];
    tu_expect(!bad_content, "the locked path keeps its values");
    radix_unlock(&t, locked);
    tu_expect(t.n_evictable == t.n_blocks, "unlocked again");
    radix_free(&t);
    tu_expect(pool.n_free == pool.n_blocks, "radix: every block back in the pool (%d of %d)", pool.n_free, pool.n_blocks);
    kv_pool_free(&pool);
}

/* ---- engine ---- */

typedef struct {
    int n_req, V;
    float *last;      /* [n_req, V] logits of the first generated token of each request */
    float *echo;      /* [n_req, maxlen, V] prompt logits (echo requests) */
    int maxlen;
    int *gen;         /* [n_req, 64] generated tokens */
    int n_gen[64], finish[64], cached[64], events;
} collect;

static int on_event(void *ctx, const engine_event *ev) {
    collect *c = ctx;
    int r = (int)(intptr_t)ev->user;
    c->events++;
    if (ev->kind == ENGINE_EV_PROMPT) {
        memcpy(c->echo + ((size_t)r * c->maxlen + ev->pos) * c->V, ev->logits, sizeof(float) * c->V);
        return 0;
    }
    if (ev->n_generated == 1) memcpy(c->last + (size_t)r * c->V, ev->logits, sizeof(float) * c->V);
    c->gen[r * 64 + c->n_gen[r]++] = ev->token;
    c->finish[r] = ev->finish;
    c->cached[r] = ev->cached_tokens;
    return 0;
}

static int run_all(engine *e, collect *c) {
    for (int guard = 0; engine_n_waiting(e) + engine_n_running(e) > 0; guard++)
        if (guard > 100000 || engine_step(e, on_event, c, NULL)) return -1;
    return 0;
}

/* Logits of the plain KV-cache forward (model_extend) at every position of tokens[0..n). */
static float *plain_logits(model *m, const int *tokens, int n) {
    kv_cache kv;
    float *lg = tu_alloc((size_t)n * m->cfg.vocab);
    int *rows = malloc(sizeof(int) * n);
    for (int i = 0; i < n; i++) rows[i] = i;
    if (kv_cache_init(&kv, &m->cfg, n) || model_extend(m, &kv, tokens, n, rows, n, lg)) {
        printf("FAIL plain forward: %s\n", err_msg());
        exit(1);
    }
    kv_cache_free(&kv);
    free(rows);
    return lg;
}

/* Eight prompts: four share 20 tokens (a member's candidates), two share 3, two are unrelated;
 * some arrive after decoding has started. Checked with the cache on and off, several block sizes
 * and budgets (a budget of 7 tokens chunks every prompt). */
static void test_engine_requests(int kind, int block_size, int budget, int prefix_cache, const qt_scheme *qs) {
    model_config cfg = tm_config(kind);
    model m;
    if (model_init(&m, &cfg, NULL)) exit(1);
    tm_randomize(&m, 11 + kind);
    if (qs) { /* quantized linears: the engine runs them through linear_forward like the plain path */
        qt_scheme sc = *qs;
        if (cfg.tie_embeddings) sc.head = 0; /* a tied head stays the fp32 embedding */
        model_quant *q = qt_quantize_model(&cfg, &m.w, &sc);
        tu_expect(q && model_attach_quant(&m, q) == 0 && model_is_quantized(&m), "quantize %s: %s", qs->name, err_msg());
    }
    enum { NR = 8, GEN = 5 };
    const int V = cfg.vocab, len[NR] = {26, 23, 29, 21, 9, 12, 17, 1};
    int prompts[NR][32];
    for (int r = 0; r < NR; r++)
        for (int i = 0; i < len[r]; i++)
            prompts[r][i] = r > 0 && r < 4 && i < 20 ? prompts[0][i] : r >= 4 && r < 6 && i < 3 ? 7 + i : (int)(tu_next() % V);
    engine_opts o = engine_opts_default();
    o.block_size = block_size, o.max_batch_tokens = budget, o.prefix_cache = prefix_cache, o.max_seqs = 5;
    o.kv_budget_mb = 1;
    engine *e;
    tu_expect(engine_create(&e, &m, &o) == 0, "engine_create: %s", err_msg());
    collect c = {.n_req = NR, .V = V, .maxlen = 32};
    c.last = tu_alloc((size_t)NR * V);
    c.echo = tu_alloc((size_t)NR * 32 * V);
    c.gen = calloc(NR * 64, sizeof(int));
    int blocks0;
    engine_kv_usage(e, &blocks0, NULL, NULL);
    for (int r = 0; r < NR; r++) {
        engine_request q = {.prompt = prompts[r], .n_prompt = len[r], .max_new_tokens = GEN, .ignore_eos = 1,
                            .temperature = 0, .prompt_logits = r == 6, .user = (void *)(intptr_t)r};
        tu_expect(engine_submit(e, &q, NULL) == 0, "submit %d: %s", r, err_msg());
        if (r == 4) /* the rest arrive while the first ones decode */
            for (int s = 0; s < 3; s++) tu_expect(engine_step(e, on_event, &c, NULL) == 0, "step: %s", err_msg());
    }
    tu_expect(run_all(e, &c) == 0, "engine run: %s", err_msg());
    double worst = 0, tol = logit_tol(&cfg, 32 + GEN);
    int hits = 0;
    for (int r = 0; r < NR; r++) {
        tu_expect(c.n_gen[r] == GEN && c.finish[r] == ENGINE_FINISH_LENGTH, "request %d: %d tokens, finish %d", r,
                  c.n_gen[r], c.finish[r]);
        /* the plain forward of prompt + generated tokens: first-token logits and greedy choices */
        int all[40];
        memcpy(all, prompts[r], sizeof(int) * len[r]);
        memcpy(all + len[r], c.gen + r * 64, sizeof(int) * GEN);
        float *ref = plain_logits(&m, all, len[r] + GEN - 1);
        worst = fmax(worst, tu_nerr(c.last + (size_t)r * V, ref + (size_t)(len[r] - 1) * V, V));
        for (int g = 1; g < GEN; g++) { /* greedy: each generated token is the argmax of the plain logits */
            /* the engine's logits differ from these by at most tol max|row| each, so its argmax t
             * satisfies row[best] - row[t] <= 2 tol max|row| */
            const float *row = ref + (size_t)(len[r] - 1 + g) * V;
            int best = 0;
            double mx = 0;
            for (int v = 0; v < V; v++) best = row[v] > row[best] ? v : best, mx = fmax(mx, fabs(row[v]));
            double gap = (double)row[best] - row[c.gen[r * 64 + g]];
            tu_expect(gap <= 2 * tol * mx, "request %d token %d: %d is not the argmax %d", r, g, c.gen[r * 64 + g], best);
        }
        if (r == 6) worst = fmax(worst, tu_nerr(c.echo + (size_t)r * 32 * V, ref, (size_t)(len[r] - 1) * V));
        hits += c.cached[r] > 0;
        free(ref);
    }
    char what[160];
    snprintf(what, sizeof what, "engine kind %d, B %d, budget %d, cache %s%s%s: first-token logits vs plain forward",
             kind, block_size, budget, prefix_cache ? "on" : "off", qs ? ", " : "", qs ? qs->name : "");
    tu_checks++;
    if (worst > tol || tu_verbose) printf("%s %s: err %.3e tol %.3e\n", worst > tol ? "FAIL" : "ok  ", what, worst, tol);
    if (worst > tol) tu_failures++;
    if (prefix_cache) /* candidates 1..3 of the member reuse its 20 shared tokens (whole blocks) */
        tu_expect(hits >= (20 / block_size > 0 ? 3 : 0), "%s: %d requests hit the prefix cache", what, hits);
    else tu_expect(hits == 0, "%s: no hit without a cache", what);
    int n_blocks, n_free, n_cached;
    engine_kv_usage(e, &n_blocks, &n_free, &n_cached);
    tu_expect(n_free + n_cached == n_blocks && (prefix_cache || n_cached == 0),
              "%s: no leaked block (%d free + %d cached of %d)", what, n_free, n_cached, n_blocks);
    engine_cache_clear(e);
    engine_kv_usage(e, &n_blocks, &n_free, &n_cached);
    tu_expect(n_free == n_blocks, "%s: an empty cache frees every block", what);
    engine_free(e);
    free(c.last), free(c.echo), free(c.gen);
    model_free(&m);
}

/* A decode past 64 positions (attention_paged.c splits its keys into ranges of 64 and merges their
 * partial softmaxes; the team merges between two barriers): a 90-token prompt and 8 greedy tokens,
 * each the argmax of the plain forward's logits within the engine tolerance, the first token's
 * logits within it. With an fp16 cache (kv_f16) the same run must also finish, its first logits
 * finite and different from the fp32 cache's (the cache is read) but close to them: within 2^-6
 * of max|logit|, a sanity bound for this 2-layer model (the derived bound of the rounding is
 * checked on the attention itself, test_paged_attention). */
static void test_engine_long_decode(int kv_f16, const qt_scheme *qs) {
    model_config cfg = tm_config(0);
    cfg.max_pos = 256;
    if (qs) /* the team splits gate and up rows at the MLP width: the quantized layouts need 16 | I */
        for (int l = 0; l < cfg.n_layers; l++) cfg.layers[l].intermediate = cfg.intermediate = 48;
    model m;
    if (model_init(&m, &cfg, NULL)) exit(1);
    tm_randomize(&m, 31);
    if (qs) {
        model_quant *q = qt_quantize_model(&cfg, &m.w, qs);
        tu_expect(q && model_attach_quant(&m, q) == 0, "quantize %s: %s", qs->name, err_msg());
    }
    enum { L = 90, GEN = 8 };
    int all[L + GEN];
    for (int i = 0; i < L; i++) all[i] = (int)(tu_next() % cfg.vocab);
    const int V = cfg.vocab;
    float *first[2];
    for (int f16 = 0; f16 <= kv_f16; f16++) {
        engine_opts o = engine_opts_default();
        o.kv_budget_mb = 1, o.kv_f16 = f16;
        engine *e;
        tu_expect(engine_create(&e, &m, &o) == 0, "engine_create: %s", err_msg());
        collect c = {.n_req = 1, .V = V, .maxlen = 1};
        c.last = first[f16] = tu_alloc((size_t)V);
        c.gen = calloc(64, sizeof(int));
        engine_request q = {.prompt = all, .n_prompt = L, .max_new_tokens = GEN, .ignore_eos = 1, .temperature = 0};
        tu_expect(engine_submit(e, &q, NULL) == 0 && run_all(e, &c) == 0 && c.n_gen[0] == GEN, "long decode%s: %s",
                  f16 ? " (fp16 cache)" : "", err_msg());
        tu_expect(engine_get_stats(e)->team_steps >= GEN - 1, "long decode%s: the decode steps ran as a team (%lld)",
                  qs ? qs->name : "", (long long)engine_get_stats(e)->team_steps);
        if (!f16) {
            memcpy(all + L, c.gen, sizeof(int) * GEN);
            float *ref = plain_logits(&m, all, L + GEN - 1);
            const double tol = logit_tol(&cfg, L + GEN);
            tu_expect_close("long decode: first-token logits vs plain forward", first[0], ref + (size_t)(L - 1) * V, V, tol);
            for (int g = 1; g < GEN; g++) { /* as test_engine_requests */
                const float *row = ref + (size_t)(L - 1 + g) * V;
                int best = 0;
                double mx = 0;
                for (int v = 0; v < V; v++) best = row[v] > row[best] ? v : best, mx = fmax(mx, fabs(row[v]));
                tu_expect((double)row[best] - row[c.gen[g]] <= 2 * tol * mx, "long decode token %d: %d is not the argmax %d",
                          g, c.gen[g], best);
            }
            free(ref);
        }
        free(c.gen);
        engine_free(e);
    }
    if (kv_f16) {
        double d = tu_nerr(first[1], first[0], (size_t)V);
        tu_expect(d > 0 && d <= 0x1p-6, "long decode, fp16 cache: first logits %.3g of max|logit| off the fp32 cache's", d);
        free(first[1]);
    }
    free(first[0]);
    model_free(&m);
}

/* The ranking shape of the acceptance (k = 8 candidates of 512 tokens sharing 90%: 460 tokens),
 * submitted together: the scheduler prefills the first alone, then the other seven find its
 * whole blocks (448 positions of 16) in the cache and each computes 64 positions, 8x fewer than a
 * cold prefill (the work behind bench_serve's hot speedup, which times it). Without the cache every
 * candidate computes 512. The hot candidates' last logits equal the plain forward's. */
static void test_engine_ranking_work(int prefix_cache) {
    model_config cfg = tm_config(0);
    cfg.max_pos = 1024;
    model m;
    if (model_init(&m, &cfg, NULL)) exit(1);
    tm_randomize(&m, 21);
    enum { K = 8, L = 512, SHARED = L * 9 / 10 };
    static int prompts[K][L];
    for (int k = 0; k < K; k++)
        for (int i = 0; i < L; i++) prompts[k][i] = k > 0 && i < SHARED ? prompts[0][i] : (int)(tu_next() % cfg.vocab);
    engine_opts o = engine_opts_default();
    o.prefix_cache = prefix_cache, o.kv_budget_mb = 8; /* block_size 16, max_batch_tokens 1024 */
    engine *e;
    tu_expect(engine_create(&e, &m, &o) == 0, "engine_create: %s", err_msg());
    collect c = {.n_req = K, .V = cfg.vocab, .maxlen = 1};
    c.last = tu_alloc((size_t)K * cfg.vocab);
    c.gen = calloc(K * 64, sizeof(int));
    for (int k = 0; k < K; k++) {
        engine_request q = {.prompt = prompts[k], .n_prompt = L, .max_new_tokens = 1, .temperature = 0,
                            .user = (void *)(intptr_t)k};
        tu_expect(engine_submit(e, &q, NULL) == 0, "submit %d: %s", k, err_msg());
    }
    int prefill[8] = {0}, steps = 0;
    for (; engine_n_waiting(e) + engine_n_running(e) > 0 && steps < 8; steps++) {
        engine_step_info info;
        tu_expect(engine_step(e, on_event, &c, &info) == 0, "step: %s", err_msg());
        prefill[steps] = info.prefill_tokens;
    }
    const int hot = L - SHARED / 16 * 16; /* 64 */
    if (prefix_cache) {
        int cached_ok = c.cached[0] == 0;
        for (int k = 1; k < K; k++) cached_ok &= c.cached[k] == SHARED / 16 * 16;
        tu_expect(cached_ok && steps == 2 && prefill[0] == L && prefill[1] == (K - 1) * hot,
                  "k = 8, 90%% shared: one cold prefill of %d, then 7 hot ones of %d (steps %d: %d + %d tokens; cached "
                  "%d, %d)", L, hot, steps, prefill[0], prefill[1], c.cached[0], c.cached[1]);
    } else {
        int sum = 0;
        for (int i = 0; i < steps; i++) sum += prefill[i];
        tu_expect(sum == K * L && c.cached[K - 1] == 0, "cache off: every candidate computes %d (%d in all)", L, sum);
    }
    double worst = 0, tol = logit_tol(&cfg, L);
    for (int k = 0; k < K; k += K - 1) {
        float *ref = plain_logits(&m, prompts[k], L);
        worst = fmax(worst, tu_nerr(c.last + (size_t)k * cfg.vocab, ref + (size_t)(L - 1) * cfg.vocab, cfg.vocab));
        free(ref);
    }
    tu_expect(worst <= tol, "k = 8 at 512 tokens, cache %s: last logits vs plain forward err %.3e tol %.3e",
              prefix_cache ? "on" : "off", worst, tol);
    engine_free(e);
    free(c.last), free(c.gen);
    model_free(&m);
}

static void test_engine_limits(void) {
    model_config cfg = tm_config(1);
    model m;
    if (model_init(&m, &cfg, NULL)) exit(1);
    tm_randomize(&m, 3);
    engine_opts o = engine_opts_default();
    engine *e;
    o.kv_budget_mb = 1e-6;
    tu_expect(engine_create(&e, &m, &o) != 0 && err_kind_get() == ERR_INPUT && strstr(err_msg(), "kv_budget_mb"),
              "a budget that holds no block is refused at start: %s", err_msg());
    o.kv_budget_mb = (double)kv_pool_block_bytes(&cfg, o.block_size, 0) * 2.5 / 1048576.0; /* 2 blocks: 32 positions */
    tu_expect(engine_create(&e, &m, &o) == 0, "engine_create: %s", err_msg());
    int prompt[200] = {0};
    engine_request q = {.prompt = prompt, .n_prompt = 40, .max_new_tokens = 3, .user = NULL};
    tu_expect(engine_submit(e, &q, NULL) != 0 && strstr(err_msg(), "kv_budget_mb"),
              "a request larger than the KV pool is refused at submission: %s", err_msg());
    tu_expect(engine_check_fits(e, 40, 3) != 0 && engine_check_fits(e, 30, 3) == 0, "engine_check_fits says so too");
    q.n_prompt = 126;
    tu_expect(engine_submit(e, &q, NULL) != 0 && strstr(err_msg(), "context"),
              "a request beyond max_position_embeddings (128) is refused: %s", err_msg());
    prompt[0] = cfg.vocab;
    q.n_prompt = 4;
    tu_expect(engine_submit(e, &q, NULL) != 0 && strstr(err_msg(), "vocabulary"), "an out-of-vocabulary token is refused");
    /* cancellation frees the slot and the blocks at once */
    prompt[0] = 1;
    int64_t id;
    q.n_prompt = 20, q.max_new_tokens = 10, q.ignore_eos = 1;
    tu_expect(engine_submit(e, &q, &id) == 0 && engine_step(e, NULL, NULL, NULL) == 0 && engine_n_running(e) == 1,
              "one request running");
    tu_expect(engine_cancel(e, id) == 1 && engine_n_running(e) == 0 && engine_cancel(e, id) == 0, "cancel");
    engine_cache_clear(e);
    int nb, nf;
    engine_kv_usage(e, &nb, &nf, NULL);
    tu_expect(nf == nb, "a cancelled request leaves no block behind (%d of %d free)", nf, nb);
    engine_free(e);
    o = engine_opts_default();
    o.max_context = 1000;
    tu_expect(engine_create(&e, &m, &o) != 0 && strstr(err_msg(), "max_position_embeddings"),
              "a context beyond the model's is refused at start");
    model_free(&m);
}

/* evaluate's scores through the engine: every ranking example's prompt up to its answer, all
 * submitted at once (the candidates of a group share their prefix through the cache). */
typedef struct {
    int V, yes, no;
    double *margin;
    double max_logit;
} eval_ctx;

/* evaluate's score: the margin z_yes - z_no in double (stages/evaluate/score.h) */
static int on_score(void *ctx, const engine_event *ev) {
    eval_ctx *c = ctx;
    const float *lg = ev->logits;
    for (int v = 0; v < c->V; v++) c->max_logit = fmax(c->max_logit, fabs(lg[v]));
    c->margin[(intptr_t)ev->user] = (double)lg[c->yes] - (double)lg[c->no];
    return 0;
}

static void test_engine_evaluate(void) {
    char tmp[128];
    snprintf(tmp, sizeof tmp, "/tmp/smelt-test-engine-%d", (int)getpid());
    char *out = fs_join(tmp, "data"), *cal = fs_join(tmp, "cal");
    tu_expect(fs_mkdir_p(out, 0755) == 0 && fs_mkdir_p(cal, 0755) == 0, "mkdir");
    cJSON *p = cJSON_Parse(
        "{\"source\": \"synthetic\", \"tokenizer\": \"builtin:bytes\", \"labels\": {\"yes\": \" yes\", \"no\": \" no\"},"
        " \"tasks\": [\"like\"], \"members\": 4, \"items\": 40, \"interactions\": 20, \"noise\": 0.1, \"history\": 6,"
        " \"history_tokens\": 160, \"max_tokens\": 256, \"candidates\": 4, \"min_history\": 3, \"train_groups\": 1,"
        " \"split\": {\"valid\": 0, \"test\": 0.3}, \"answers\": \"auto\", \"calibration\": {\"samples\": 0, \"from\":"
        " \"train\", \"seed\": 0}, \"allow_test_calibration\": false}");
    tu_expect(p && data_build(p, 5, out, cal, NULL, NULL) == 0, "data: %s", err_msg());
    cJSON_Delete(p);
    dataset ds;
    ds_split s;
    tu_expect(dataset_open(&ds, out) == 0 && dataset_split_open(&ds, "test", &s) == 0, "open: %s", err_msg());
    model_config cfg = tm_config(2);
    cfg.vocab = ds.vocab, cfg.max_pos = 512;
    model m;
    if (model_init(&m, &cfg, NULL)) exit(1);
    tm_randomize(&m, 9);
    const int64_t n = s.n_examples;
    double *ref = calloc((size_t)n, sizeof(double)), *got = calloc((size_t)n, sizeof(double));
    score_opts so = {.share_prefix = 1, .yes_id = ds.yes_id, .no_id = ds.no_id};
    tu_expect(score_split(&m, &s, 0, n, &so, &(score_out){ref, NULL, NULL}) == 0, "score_split: %s", err_msg());
    engine_opts o = engine_opts_default();
    o.max_batch_tokens = 256, o.kv_budget_mb = 4;
    engine *e;
    tu_expect(engine_create(&e, &m, &o) == 0, "engine: %s", err_msg());
    eval_ctx ec = {.V = cfg.vocab, .yes = ds.yes_id, .no = ds.no_id, .margin = got};
    int *tok = malloc(sizeof(int) * 4096);
    for (int64_t i = 0; i < n; i++) {
        const int32_t *t = ds_example_tokens(&s, i);
        int len = (int)s.ex[i].answer_pos;
        for (int k = 0; k < len; k++) tok[k] = t[k];
        engine_request q = {.prompt = tok, .n_prompt = len, .max_new_tokens = 1, .user = (void *)(intptr_t)i};
        tu_expect(engine_submit(e, &q, NULL) == 0, "submit: %s", err_msg());
    }
    for (int g = 0; engine_n_waiting(e) + engine_n_running(e) > 0 && g < 100000; g++)
        tu_expect(engine_step(e, on_score, &ec, NULL) == 0, "step: %s", err_msg());
    const engine_stats *st = engine_get_stats(e);
    /* the margin l_yes - l_no sees two logits, each within logit_tol (which covers both paths'
     * rounding) times the largest |logit| of its row */
    double worst = 0, tol = 2 * logit_tol(&cfg, 256) * fmax(1, ec.max_logit);
    int finite = 1;
    for (int64_t i = 0; i < n; i++) {
        finite &= isfinite(ref[i]) && isfinite(got[i]);
        worst = fmax(worst, fabs(got[i] - ref[i]));
    }
    tu_expect(finite, "every test example has an answer: a finite margin both ways");
    printf("evaluate through the engine: %lld examples, %lld of %lld prompt tokens from the prefix cache, largest "
           "|margin difference| %.2e (tol %.2e)\n", (long long)n, (long long)st->cached_tokens,
           (long long)st->prompt_tokens, worst, tol);
    tu_expect(worst <= tol, "evaluate's margins through the engine equal score_split's");
    tu_expect(st->cached_tokens > 0, "the candidates of a member share their prefix through the cache");
    engine_free(e);
    model_free(&m);
    free(tok), free(ref), free(got), free(out), free(cal);
    ds_split_close(&s);
    dataset_close(&ds);
    fs_rm_rf(tmp);
}

int main(int argc, char **argv) {
    tu_verbose = argc > 1 && !strcmp(argv[1], "-v");
    log_set_level(LOG_WARN);
    tu_seed(99);
    kernels_set_threads(0);
    test_f16_conversions();
    test_paged_attention();
    test_radix();
    for (int kind = 0; kind < 3; kind++) {
        test_engine_requests(kind, 4, 1024, 1, NULL);
        test_engine_requests(kind, 4, 1024, 0, NULL);
    }
    test_engine_requests(1, 1, 7, 1, NULL);   /* one position per block, prompts in chunks of 7 */
    test_engine_requests(0, 16, 64, 1, NULL); /* blocks longer than the shared part of some prompts */
    test_engine_requests(2, 3, 5, 1, NULL);
    /* quantized models (W8A8: int8 activations per token; W4A16 groups of 8; FP8), compared with the
     * plain forward of the same quantized model: the same kernels, rows in other batches */
    static const qt_scheme qs[] = {
        {"w8a8 per channel", QCKPT_COMPRESSED_TENSORS, QW_INT, 8, QA_INT8, -1, 0, 0, 0, 0},
        {"w4a16 g8", QCKPT_COMPRESSED_TENSORS, QW_INT, 4, QA_NONE, 8, 0, 0, 1, 0},
        {"fp8 per channel", QCKPT_COMPRESSED_TENSORS, QW_FP8, 8, QA_NONE, -1, 0, 0, 0, 0},
    };
    for (int i = 0; i < 3; i++) test_engine_requests(2 - i, 4, 64, 1, &qs[i]);
    /* every kernel split whatever its size: the decode team (engine_forward.c) on 2 threads, its
     * linears by rows and attention by items, against the plain forward within the same tolerance */
    test_engine_long_decode(1, NULL);
    kernels_split_always(1);
    test_engine_long_decode(0, NULL);
    for (int i = 0; i < 3; i++) test_engine_long_decode(0, &qs[i]); /* quantized linears in the team */
    test_engine_requests(0, 4, 64, 1, NULL);
    test_engine_requests(2, 4, 64, 1, &qs[1]);
    kernels_split_always(0);
    test_engine_ranking_work(1);
    test_engine_ranking_work(0);
    test_engine_limits();
    test_engine_evaluate();
    return tu_finish("test_engine");
}
