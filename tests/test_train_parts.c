/* test_train_parts.c: the pieces of the `train` stage below the CLI: fitting examples to seq_len
 * (oldest history lines left out, never the instruction or the answer; refusals; generative
 * examples cut into pieces; prompts for sampling), the stream of sequences (same seed, same
 * batches; every sequence once per epoch; budgets; steps per epoch), rank shares (contiguous, disjoint, covering, balanced), in-stage checkpoints (bitwise
 * round trip, corruption and foreign checkpoints refused, old ones removed), the teacher's logits
 * through its KV cache against a full forward, the LM head over selected rows against all rows,
 * sampling that does not depend on how sequences are split among ranks, and position weights;
 * a student of some of a model's layers (init: {from, layers}) against the model with the other
 * layers made the identity, and its bad layer lists. */
#include <sys/stat.h>
#include <unistd.h>

#include "common/fsutil.h"
#include "doc_params.h"
#include "engine_testmodel.h"
#include "model/checkpoint.h"
#include "stages/stage.h"
#include "stages/train/train.h"

static char tmpdir[256];

/* A split of n examples with lengths 3 + (i * 7) % 40, a prompt then one ACTION token. */
static int make_split(ds_split *s, const char *path, int n, int vocab) {
    ds_writer *w;
    if (ds_writer_new(&w, vocab, 1)) return -1;
    int tok[64];
    uint8_t mask[64];
    for (int i = 0; i < n; i++) {
        int len = 3 + (i * 7) % 40;
        for (int k = 0; k < len; k++) {
            tok[k] = (i * 31 + k * 7) % (vocab - 3) + 3;
            mask[k] = k + 1 == len ? DS_TOK_ACTION : DS_TOK_PROMPT;
        }
        ds_example_in e = {.new_group = 1, .member = (uint32_t)i, .item = DS_NO_ITEM, .label = i % 2};
        if (ds_writer_add(w, &e, tok, mask, (size_t)len)) return -1;
    }
    int rc = ds_writer_finish(w, path);
    ds_writer_free(w);
    return rc ? -1 : ds_split_open(s, path);
}

/* Units of every example of s at seq_len (all must fit). */
static seq_unit *whole_units(const ds_split *s, int seq_len, int64_t *n) {
    seq_unit *u;
    fit_stats st;
    tu_expect(fit_units(&u, n, &st, s, s->n_examples, seq_len, LONG_REFUSE, -1) == 0 && st.whole == s->n_examples,
              "every example fits seq_len %d", seq_len);
    return u;
}

static int same_units(const seq_unit *a, const seq_unit *b, int64_t n) {
    for (int64_t i = 0; i < n; i++)
        if (a[i].example != b[i].example || a[i].head != b[i].head || a[i].start != b[i].start || a[i].end != b[i].end)
            return 0;
    return 1;
}

/* Fitting to seq_len. Five examples (BOS = 1): a ranking one of 30 tokens with 4 history lines of
 * 5 ([3, 8) .. [18, 23), tail [23, 30)); a ranking one of 10 without lines; a generative one of 25
 * (prompt [0, 6), response after); a ranking one of 40 with lines [3, 30) and [30, 35); a ranking
 * one of 20 with one line [3, 5). */
static void test_fit(void) {
    char *path = fs_join(tmpdir, "fit.bin");
    ds_writer *w;
    ds_writer_new(&w, 50, 1);
    const int lens[5] = {30, 10, 25, 40, 20};
    const uint32_t c0[5] = {3, 8, 13, 18, 23}, c3[3] = {3, 30, 35}, c4[2] = {3, 5};
    const uint32_t *cuts[5] = {c0, NULL, NULL, c3, c4};
    const int n_cuts[5] = {5, 0, 0, 3, 2};
    for (int i = 0; i < 5; i++) {
        int tok[64];
        uint8_t mask[64];
        for (int k = 0; k < lens[i]; k++) {
            tok[k] = k == 0 ? 1 : 2 + (k + i) % 40;
            mask[k] = i == 2 ? (k < 6 ? DS_TOK_PROMPT : DS_TOK_RESPONSE) : k + 1 == lens[i] ? DS_TOK_ACTION : DS_TOK_PROMPT;
        }
        ds_example_in e = {.new_group = 1, .item = DS_NO_ITEM, .label = i == 2 ? DS_LABEL_NONE : 1, .cuts = cuts[i],
                           .n_cuts = n_cuts[i]};
        tu_expect(ds_writer_add(w, &e, tok, mask, (size_t)lens[i]) == 0, "writer: %s", err_msg());
    }
    ds_writer_finish(w, path);
    ds_writer_free(w);
    ds_split s;
    tu_expect(ds_split_open(&s, path) == 0, "open: %s", err_msg());
    seq_unit *u;
    int64_t n;
    fit_stats st;
    /* seq_len 20: ex0 leaves out 2 lines (3 + 10 + 7 = 20), ex3 one (3 + 5 + 5), ex2 is refused */
    tu_expect(fit_units(&u, &n, &st, &s, 5, 20, LONG_REFUSE, 1) == 0, "fit_units: %s", err_msg());
    tu_expect(n == 4 && st.whole == 2 && st.fitted == 2 && st.lines_dropped == 3 && st.refused == 1 &&
                  st.refused_ranking == 0 && st.first_refused == 2 && st.longest == 40,
              "seq_len 20: %lld units, %lld whole, %lld fitted (%lld lines), %lld refused", (long long)n,
              (long long)st.whole, (long long)st.fitted, (long long)st.lines_dropped, (long long)st.refused);
    const seq_unit want20[4] = {{0, 3, 13, 30}, {1, 0, 0, 10}, {3, 3, 30, 40}, {4, 0, 0, 20}};
    tu_expect(n == 4 && same_units(u, want20, 4), "seq_len 20: the units keep the head and the newest lines");
    /* the sequences: the head (BOS, instruction) first, the answer last */
    batch_plan p = {0};
    seq_set q = {0};
    batch_plan_units(&p, u, n);
    seq_set_from_plan(&q, &s, &p, 0, p.n);
    const int *t0 = q.tokens + q.off[0];
    tu_expect(q.len[0] == 20 && !memcmp(t0, ds_example_tokens(&s, 0), 3 * sizeof(int)) &&
                  !memcmp(t0 + 3, ds_example_tokens(&s, 0) + 13, 17 * sizeof(int)) && q.mask[q.off[0] + 19] == DS_TOK_ACTION,
              "a fitted sequence is the head then the newest lines, the candidate and the answer");
    free(u);
    /* seq_len 12, long_examples cut: ex0 drops all 4 lines, ex2 becomes 3 pieces (BOS repeated), ex4 is refused */
    tu_expect(fit_units(&u, &n, &st, &s, 5, 12, LONG_CUT, 1) == 0, "fit_units cut: %s", err_msg());
    const seq_unit want12[6] = {{0, 3, 23, 30}, {1, 0, 0, 10}, {2, 0, 0, 12}, {2, 1, 12, 23}, {2, 1, 23, 25}, {3, 3, 35, 40}};
    tu_expect(n == 6 && same_units(u, want12, 6) && st.cut == 1 && st.pieces == 3 && st.refused == 1 &&
                  st.refused_ranking == 1 && st.first_refused == 4,
              "seq_len 12 with cut: %lld units, %lld cut into %lld pieces, %lld refused (%lld ranking)", (long long)n,
              (long long)st.cut, (long long)st.pieces, (long long)st.refused, (long long)st.refused_ranking);
    free(u);
    /* prompts for sampling: ex0's prompt [0, 29) in 15 tokens leaves out 3 lines: 3 + 5 + 6 */
    seq_unit pu;
    tu_expect(fit_prompt(&pu, &s, 0, 15) == 1 && pu.head == 3 && pu.start == 18 && pu.end == 29, "prompt fitted to 15");
    tu_expect(fit_prompt(&pu, &s, 0, 29) == 1 && pu.head == 0 && pu.start == 0 && pu.end == 29, "whole prompt");
    tu_expect(fit_prompt(&pu, &s, 1, 5) == 0, "a prompt without lines that does not fit");
    seq_set_free(&q);
    batch_plan_free(&p);
    ds_split_close(&s);
    free(path);
}

static void test_stream(const ds_split *s) {
    data_stream a, b;
    int64_t nu;
    seq_unit *units = whole_units(s, 64, &nu);
    tu_expect(stream_init(&a, units, nu, 200, 0, 5, 1) == 0 && stream_init(&b, units, nu, 200, 0, 5, 1) == 0,
              "stream_init");
    data_cursor ca = {0, 0}, cb = {0, 0};
    batch_plan pa = {0}, pb = {0};
    int *seen = calloc((size_t)s->n_examples, sizeof(int)), same = 1, budget = 1, trunc = 1;
    int64_t steps = 0;
    while (ca.epoch < 1) {
        stream_next(&a, &ca, &pa);
        stream_next(&b, &cb, &pb);
        steps++;
        same &= pa.n == pb.n && same_units(pa.unit, pb.unit, pa.n);
        budget &= pa.n == 1 || pa.tokens <= 200;
        for (int i = 0; i < pa.n; i++) {
            int n = (int)s->ex[pa.unit[i].example].n_tokens;
            trunc &= pa.len[i] == n && pa.unit[i].end == n;
            /* examples taken in epoch 0 (the last batch may reach into epoch 1) */
            if (!(ca.epoch == 1 && i >= pa.n - ca.index)) seen[pa.unit[i].example]++;
        }
    }
    int once = 1;
    for (int64_t i = 0; i < s->n_examples; i++) once &= seen[i] == 1;
    tu_expect(same, "two streams with one seed give the same batches");
    tu_expect(budget, "batches stay within batch_tokens");
    tu_expect(trunc, "whole examples");
    tu_expect(once, "every example once in an epoch");
    int64_t counted;
    tu_expect(stream_steps_for_epochs(&a, 1, &counted) == 0 && counted == steps,
              "steps of one epoch: %lld counted, %lld walked", (long long)counted, (long long)steps);
    /* another seed, another order; batch_size mode takes exactly that many */
    data_stream c;
    stream_init(&c, units, nu, 0, 7, 6, 1);
    data_cursor cc = {0, 0};
    batch_plan pc = {0};
    stream_next(&c, &cc, &pc);
    stream_next(&b, &cb, &pb);
    tu_expect(pc.n == 7, "batch_size 7 gives %d examples", pc.n);
    data_cursor c0 = {0, 0};
    stream_next(&a, &c0, &pa);
    int differs = 0;
    for (int i = 0; i < 7 && i < pa.n; i++) differs |= pa.unit[i].example != pc.unit[i].example;
    tu_expect(differs, "another seed shuffles differently");
    free(seen), free(units);
    batch_plan_free(&pa), batch_plan_free(&pb), batch_plan_free(&pc);
    stream_free(&a), stream_free(&b), stream_free(&c);
}

static void test_rank_ranges(const ds_split *s) {
    data_stream st;
    int64_t nu;
    seq_unit *units = whole_units(s, 64, &nu);
    stream_init(&st, units, nu, 1500, 0, 9, 1);
    data_cursor cur = {0, 0};
    batch_plan p = {0};
    for (int trial = 0; trial < 5; trial++) {
        stream_next(&st, &cur, &p);
        for (int world = 1; world <= 4; world++) {
            int prev_end = 0, ok = 1;
            int64_t worst = 0;
            for (int r = 0; r < world; r++) {
                int s0, s1;
                batch_rank_range(&p, r, world, &s0, &s1);
                if (s1 > s0) {
                    ok &= s0 == prev_end;
                    prev_end = s1;
                }
                int64_t tok = 0;
                for (int i = s0; i < s1; i++) tok += p.len[i];
                int64_t dev = tok - p.tokens / world;
                if (dev < 0) dev = -dev;
                if (dev > worst) worst = dev;
            }
            tu_expect(ok && prev_end == p.n, "world %d: rank shares are contiguous and cover the batch", world);
            /* each boundary moves by at most one sequence (< seq_len tokens) from the ideal split */
            tu_expect(worst <= 2 * 64, "world %d: a rank is %lld tokens off its share", world, (long long)worst);
        }
    }
    batch_plan_free(&p);
    stream_free(&st);
    free(units);
}

static void test_state(void) {
    model_config cfg = tm_config(0);
    model m;
    optimizer o;
    tu_expect(model_init(&m, &cfg, NULL) == 0 && model_reserve_train(&m, 16) == 0, "model");
    tm_randomize(&m, 3);
    optim_config oc = {.beta1 = 0.9, .beta2 = 0.99, .eps = 1e-8, .schedule = {.kind = LR_CONSTANT, .lr = 1e-2, .total = 10}};
    optim_init(&o, &m, &oc);
    for (size_t i = 0; i < m.grad.n_floats; i++) m.grad.mem[i] = (float)sin((double)i);
    optim_step(&o, &m);
    const size_t n = m.w.n_floats;
    float *w0 = tu_copy(m.w.mem, n), *m0 = tu_copy(o.m.mem, n), *v0 = tu_copy(o.v.mem, n), *best = tu_randn(n, 1);
    float *best0 = tu_copy(best, n);
    char *dir = fs_join(tmpdir, "ckpt");
    train_progress p = {.step = 7, .cursor = {2, 13}, .rng = 0xfeedfacecafebeefull, .have_best = 1,
                        .best_loss = 0.1 + 1e-17, .best_step = 5, .tokens_seen = 12345};
    tu_expect(state_save(dir, &p, &m, &o, best, "key/1") == 0, "state_save: %s", err_msg());
    p.step = 9;
    tu_expect(state_save(dir, &p, &m, &o, best, "key/1") == 0, "state_save again");
    tu_expect(state_newest(dir) == 9, "newest checkpoint is step 9");
    char *old = xasprintf("%s/step-000000007", dir);
    tu_expect(!fs_exists(old), "the older checkpoint was removed");
    for (size_t i = 0; i < n; i++) m.w.mem[i] = o.m.mem[i] = o.v.mem[i] = best[i] = 0;
    o.step = 0;
    train_progress q = {0};
    tu_expect(state_load(dir, &q, &m, &o, best, "key/1") == 1, "state_load: %s", err_msg());
    tu_expect(!memcmp(m.w.mem, w0, n * 4) && !memcmp(o.m.mem, m0, n * 4) && !memcmp(o.v.mem, v0, n * 4) &&
                  !memcmp(best, best0, n * 4),
              "weights, moments and best weights round-trip bitwise");
    tu_expect(q.step == 9 && q.cursor.epoch == 2 && q.cursor.index == 13 && q.rng == p.rng && o.step == 1 &&
                  q.have_best && q.best_loss == p.best_loss && q.best_step == 5 && q.tokens_seen == 12345,
              "progress round-trips exactly");
    tu_expect(state_load(dir, &q, &m, &o, best, "key/2") == -1 && err_kind_get() == ERR_CORRUPT,
              "a checkpoint of another configuration is refused");
    /* one flipped bit in the parameters */
    char *pp = xasprintf("%s/step-000000009/params.bin", dir);
    FILE *f = fopen(pp, "r+b");
    fseek(f, 40, SEEK_SET);
    int c = fgetc(f);
    fseek(f, 40, SEEK_SET);
    fputc(c ^ 1, f);
    fclose(f);
    tu_expect(state_load(dir, &q, &m, &o, best, "key/1") == -1 && strstr(err_msg(), "params.bin") &&
                  strstr(err_msg(), "delete that folder"),
              "a corrupted checkpoint is refused naming the file: %s", err_msg());
    char *empty = fs_join(tmpdir, "none");
    tu_expect(state_load(empty, &q, &m, &o, best, "key/1") == 0, "no checkpoint: 0");
    free(empty), free(pp), free(old), free(dir), free(w0), free(m0), free(v0), free(best), free(best0);
    optim_free(&o);
    model_free(&m);
}

/* The teacher's logits per chunk (its no-gradient forward, rows asked in chunks across sequence
 * boundaries) against model_logits over a training forward of the same packed batch, loaded from
 * a saved checkpoint. Tolerance: the same fp32 arithmetic, possibly in other blockings (GEMMs of
 * other row counts): a few eps per layer relative to the logits' scale; x16 margin -> 64 eps. */
static void test_teacher_chunks(void) {
    model_config cfg = tm_config(0);
    model full;
    model_init(&full, &cfg, NULL);
    tm_randomize(&full, 11);
    char *dir = fs_join(tmpdir, "teacher");
    tu_expect(checkpoint_save(dir, &full.cfg, &full.w, ST_F32) == 0, "save teacher: %s", err_msg());
    teacher_state ts;
    tu_expect(teacher_open(&ts, dir, 32) == 0, "teacher_open: %s", err_msg());
    const int lens[3] = {9, 14, 6}, N = 29, V = cfg.vocab;
    int tokens[29];
    for (int i = 0; i < N; i++) tokens[i] = (i * 13 + 5) % V;
    model_reserve_train(&full, N);
    model_batch b = {.tokens = tokens, .seq_lens = lens, .n_tokens = N, .n_seqs = 3};
    const float *hidden;
    float *ref = tu_alloc((size_t)N * V), *got = tu_alloc((size_t)N * V), *chunk = tu_alloc((size_t)N * V);
    model_forward(&full, &b, &hidden);
    model_logits(&full, ref, hidden, N);
    /* ask rows {1, 2, 7} {8, 9, 15} {16, 22, 23} {28}: chunks spanning sequence ends, rows skipped */
    const int ask[] = {1, 2, 7, 8, 9, 15, 16, 22, 23, 28}, groups[] = {0, 3, 6, 9, 10};
    int ok = teacher_begin(&ts, &b) == 0;
    for (int g = 0; g < 4; g++) {
        int r0 = groups[g], nr = groups[g + 1] - r0;
        ok &= teacher_logits(&ts, chunk, ask + r0, nr) == 0;
        for (int i = 0; i < nr; i++) memcpy(got + (size_t)ask[r0 + i] * V, chunk + (size_t)i * V, sizeof(float) * V);
    }
    tu_expect(ok, "teacher_logits: %s", err_msg());
    float *r1 = tu_alloc(10 * (size_t)V), *g1 = tu_alloc(10 * (size_t)V);
    for (int i = 0; i < 10; i++) {
        memcpy(r1 + (size_t)i * V, ref + (size_t)ask[i] * V, sizeof(float) * V);
        memcpy(g1 + (size_t)i * V, got + (size_t)ask[i] * V, sizeof(float) * V);
    }
    tu_expect_close("teacher logits per chunk vs a full forward", g1, r1, 10 * (size_t)V, 64 * TU_EPS);
    int outside[1] = {29};
    tu_expect(teacher_logits(&ts, chunk, outside, 1) == -1, "a position outside the batch is refused");
    teacher_close(&ts);
    model_free(&full);
    free(ref), free(got), free(chunk), free(r1), free(g1), free(dir);
}

/* model_lm_loss over the selected rows only equals the same loss over every row (where the other
 * rows have zero weight): d_hidden of the selected rows and the LM-head gradient. Same arithmetic
 * per row; the LM-head gradient sums rows in another blocking: 16 eps relative. */
static void test_selected_rows(void) {
    model_config cfg = tm_config(2);
    model m;
    model_init(&m, &cfg, NULL);
    tm_randomize(&m, 21);
    model_reserve_train(&m, 64);
    const int lens[2] = {12, 10}, N = 22, H = cfg.hidden;
    int tokens[22];
    uint8_t mask[22];
    for (int i = 0; i < N; i++) {
        tokens[i] = (i * 7 + 3) % cfg.vocab;
        mask[i] = (i == 11 || i == 20 || i == 21) ? DS_TOK_ACTION : DS_TOK_PROMPT;
    }
    int targets[22], sel[22];
    uint8_t kind[22];
    float wce[22], wdiv[22];
    loss_rows rows = {.targets = targets, .kind = kind, .w_ce = wce, .w_div = wdiv};
    loss_config lc = {.ce = 1.0, .temperature = 1, .beta = 0.5};
    loss_counts cnt = {0};
    loss_count_positions(&cnt, mask, lens, 2);
    loss_fill_rows(&rows, tokens, mask, NULL, lens, 2, &lc, 0, &cnt, LOSS_PART_ALL);
    int n_sel = loss_select(sel, &rows);
    tu_expect(n_sel == 3, "selected rows: %d (the three answer positions)", n_sel);
    model_batch b = {.tokens = tokens, .seq_lens = lens, .n_tokens = N, .n_seqs = 2};
    const float *hidden;
    model_forward(&m, &b, &hidden);
    float *hs = tu_alloc((size_t)N * H), *d_all = tu_alloc((size_t)N * H), *d_sel = tu_alloc((size_t)N * H);
    for (int i = 0; i < n_sel; i++) memcpy(hs + (size_t)i * H, hidden + (size_t)sel[i] * H, sizeof(float) * H);
    const size_t nh = (size_t)cfg.vocab * H;
    loss_ctx all = {.rows = &rows, .cfg = lc}, some = {.rows = &rows, .sel = sel, .cfg = lc};
    double l_all = 0, l_sel = 0;
    model_zero_grad(&m);
    model_lm_loss(&m, hidden, d_all, N, loss_chunk, &all, &l_all);
    float *g_all = tu_copy(m.grad.lm_head, nh);
    model_zero_grad(&m);
    model_lm_loss(&m, hs, d_sel, n_sel, loss_chunk, &some, &l_sel);
    tu_expect(fabs(l_all - l_sel) <= 4 * TU_EPS * fabs(l_all), "loss over selected rows %.9g vs all rows %.9g", l_sel, l_all);
    float *da = tu_alloc((size_t)n_sel * H);
    for (int i = 0; i < n_sel; i++) memcpy(da + (size_t)i * H, d_all + (size_t)sel[i] * H, sizeof(float) * H);
    tu_expect_close("d_hidden of selected rows vs all rows", d_sel, da, (size_t)n_sel * H, 16 * TU_EPS);
    tu_expect_close("LM-head gradient from selected rows vs all rows", m.grad.lm_head, g_all, nh, 16 * TU_EPS);
    double other = 0;
    for (int i = 0; i < N; i++)
        if (kind[i] != POS_ANSWER)
            for (int k = 0; k < H; k++) other = fmax(other, fabs(d_all[(size_t)i * H + k]));
    tu_expect(other == 0, "rows without weight have zero gradient (%g)", other);
    /* weights: answer weights sum to 1 - prompt_weight, prompt weights to prompt_weight */
    lc.prompt_weight = 0.25;
    loss_fill_rows(&rows, tokens, mask, NULL, lens, 2, &lc, 0, &cnt, LOSS_PART_ALL);
    double sa = 0, sp = 0;
    for (int i = 0; i < N; i++) *(kind[i] == POS_ANSWER ? &sa : &sp) += wce[i];
    tu_expect(fabs(sa - 0.75) < 1e-6 && fabs(sp - 0.25) < 1e-6, "weights: answer %.7f prompt %.7f", sa, sp);
    loss_ctx_free(&all), loss_ctx_free(&some);
    free(hs), free(d_all), free(d_sel), free(g_all), free(da);
    model_free(&m);
}

/* Sampled continuations: deterministic, and the same whether the sequences are sampled together
 * or split between two "ranks"; prompts end where the data's answer starts; masks and flags. */
static void test_sampling(const ds_split *s) {
    model_config cfg = tm_config(1);
    cfg.vocab = s->vocab;
    model m;
    model_init(&m, &cfg, NULL);
    tm_randomize(&m, 5);
    kv_cache kv;
    kv_cache_init(&kv, &cfg, 48);
    batch_plan p = {0};
    int64_t nu;
    seq_unit *units = whole_units(s, 64, &nu);
    batch_plan_units(&p, units, 6);
    seq_set in = {0}, in_a = {0}, in_b = {0}, out = {0}, out_a = {0}, out_b = {0};
    seq_set_from_plan(&in, s, &p, 0, 6);
    seq_set_from_plan(&in_a, s, &p, 0, 2);
    seq_set_from_plan(&in_b, s, &p, 2, 6);
    policy_config pc = {.fraction = 1, .max_new_tokens = 5, .temperature = 1.0, .top_p = 0.9};
    int ok = policy_generate(&out, &in, s, &m, &kv, &pc, 45, -1, 77, 3, 1) == 0 &&
             policy_generate(&out_a, &in_a, s, &m, &kv, &pc, 45, -1, 77, 3, 1) == 0 &&
             policy_generate(&out_b, &in_b, s, &m, &kv, &pc, 45, -1, 77, 3, 1) == 0;
    tu_expect(ok, "policy_generate: %s", err_msg());
    int same = out.n == 6 && out_a.n == 2 && out_b.n == 4, shape = 1;
    for (int i = 0; i < out.n && same; i++) {
        const seq_set *o = i < 2 ? &out_a : &out_b;
        int j = i < 2 ? i : i - 2;
        same &= out.len[i] == o->len[j] &&
                !memcmp(out.tokens + out.off[i], o->tokens + o->off[j], sizeof(int) * (size_t)out.len[i]);
        /* prompt: the example's tokens before its ACTION (at most 45 - 5 = 40: all), then 5 sampled */
        int n_ex = p.len[i], keep = n_ex - 1;
        const int *src = in.tokens + in.off[i];
        shape &= out.len[i] == keep + 5 && !memcmp(out.tokens + out.off[i], src, sizeof(int) * (size_t)keep) &&
                 out.mask[out.off[i] + keep - 1] == DS_TOK_PROMPT && out.mask[out.off[i] + keep] == DS_TOK_RESPONSE &&
                 out.flags[i] == SEQ_NO_CE;
    }
    tu_expect(same, "sampling does not depend on how sequences are split among ranks");
    tu_expect(shape, "sampled sequences: the prompt before the answer, then max_new_tokens sampled tokens");
    /* a prompt that cannot fit seq_len - max_new_tokens is an error */
    tu_expect(policy_generate(&out, &in, s, &m, &kv, &pc, 30, -1, 77, 3, 1) == -1 && strstr(err_msg(), "does not fit"),
              "a prompt longer than seq_len - max_new_tokens is refused");
    free(units);
    seq_set_free(&in), seq_set_free(&in_a), seq_set_free(&in_b), seq_set_free(&out), seq_set_free(&out_a);
    seq_set_free(&out_b);
    batch_plan_free(&p);
    kv_cache_free(&kv);
    model_free(&m);
}

/* init: {from, layers}: the student of layers keep[] of a saved model against an independent
 * reference, the full model whose other layers are made the identity by zeroing their output
 * projections (o_proj and down_proj: each of their residual branches then adds exactly +0). The
 * kept layers then see the same inputs through the same operations of the same shapes, so the
 * logits must be bitwise equal (tolerance 0); the full model's own logits must differ (the dropped
 * layers mattered). Two configs: qwen2 (biases, untied head, pruned layers of other widths) and
 * llama (tied head, llama3 RoPE scaling). */
static void layers_case(int kind, int n_layers, const int *keep, int n_keep) {
    model_config cfg = tm_config(kind);
    for (int l = 2; l < n_layers; l++) cfg.layers[l] = cfg.layers[l % 2];
    cfg.n_layers = n_layers;
    model full, stu;
    tu_expect(model_init(&full, &cfg, NULL) == 0, "model_init: %s", err_msg());
    tm_randomize(&full, 23 + (uint64_t)kind);
    char *dir = fs_join(tmpdir, kind ? "layers_llama" : "layers_qwen2");
    tu_expect(checkpoint_save(dir, &full.cfg, &full.w, ST_F32) == 0, "save: %s", err_msg());
    if (!tu_expect(train_init_layers(&stu, dir, keep, n_keep) == 0, "train_init_layers: %s", err_msg())) {
        model_free(&full), free(dir);
        return;
    }
    tu_expect(stu.cfg.n_layers == n_keep && stu.cfg.tie_embeddings == cfg.tie_embeddings, "student config");
    for (int j = 0; j < n_keep; j++)
        tu_expect(!memcmp(&stu.cfg.layers[j], &cfg.layers[keep[j]], sizeof cfg.layers[0]), "layer %d's config", j);
    const int lens[2] = {11, 7}, N = 18, V = cfg.vocab;
    int tokens[18];
    for (int i = 0; i < N; i++) tokens[i] = (i * 17 + 3) % V;
    model_batch b = {.tokens = tokens, .seq_lens = lens, .n_tokens = N, .n_seqs = 2};
    float *h = tu_alloc((size_t)N * cfg.hidden), *got = tu_alloc((size_t)N * V), *ref = tu_alloc((size_t)N * V),
          *orig = tu_alloc((size_t)N * V);
    int ok = model_forward_hidden(&stu, &b, h) == 0 && model_logits(&stu, got, h, N) == 0;
    ok &= model_forward_hidden(&full, &b, h) == 0 && model_logits(&full, orig, h, N) == 0;
    for (int l = 0, j = 0; l < n_layers; l++) {
        if (j < n_keep && keep[j] == l) {
            j++;
            continue;
        }
        layer_weights *lw = &full.w.layers[l];
        const layer_config *lc = &cfg.layers[l];
        memset(lw->wo, 0, sizeof(float) * (size_t)cfg.hidden * lc->n_heads * cfg.head_dim);
        memset(lw->w_down, 0, sizeof(float) * (size_t)cfg.hidden * lc->intermediate);
    }
    ok &= model_forward_hidden(&full, &b, h) == 0 && model_logits(&full, ref, h, N) == 0;
    tu_expect(ok, "forwards: %s", err_msg());
    char what[96];
    snprintf(what, sizeof what, "%s student of %d of %d layers vs identity layers", cfg.model_type, n_keep, n_layers);
    tu_expect_close(what, got, ref, (size_t)N * V, 0.0);
    tu_expect(tu_nerr(got, orig, (size_t)N * V) > 1e-3, "%s: the dropped layers changed nothing", what);
    model_free(&stu), model_free(&full);
    free(h), free(got), free(ref), free(orig), free(dir);
}

static void test_init_layers(void) {
    const int keep_q[3] = {1, 2, 4}, keep_l[2] = {0, 3};
    layers_case(0, 5, keep_q, 3);
    layers_case(1, 4, keep_l, 2);
    /* bad lists: each refused with ERR_INPUT naming init.layers, before any weight is read */
    model_config full = tm_config(2), out;
    const struct {
        int keep[3], n;
        const char *msg;
    } bad[] = {
        {{0}, 0, "init.layers is empty"},
        {{0, 3}, 2, "init.layers[1] is 3, but the model of init.from has 3 layers (0 to 2)"},
        {{-1}, 1, "init.layers[0] is -1"},
        {{0, 2, 2}, 3, "init.layers must be strictly increasing, but [2] is 2 after 2"},
        {{2, 0}, 2, "init.layers must be strictly increasing, but [1] is 0 after 2"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int rc = train_layers_config(&out, &full, bad[i].keep, bad[i].n);
        tu_expect(rc == -1 && err_kind_get() == ERR_INPUT && strstr(err_msg(), bad[i].msg), "bad list %zu: got '%s'",
                  i, rc ? err_msg() : "accepted");
        err_clear();
    }
    char *missing = fs_join(tmpdir, "no-such-model");
    model m;
    const int one[1] = {0};
    tu_expect(train_init_layers(&m, missing, one, 1) == -1, "a missing model is refused");
    err_clear();
    free(missing);
}

/* docs/train.md's parameter table lists every parameter of the schema (maps by their fields,
 * `init` and the fields of its map form) and nothing else. */
static void test_docs(void) {
    tu_checks++;
    if (doc_params_check("train", "docs/train.md")) tu_failures++;
}

int main(void) {
    tu_verbose = getenv("SMELT_TEST_VERBOSE") != NULL;
    snprintf(tmpdir, sizeof tmpdir, "/tmp/smelt_test_train_parts.%d", (int)getpid());
    fs_mkdir_p(tmpdir, 0755);
    char *sp = fs_join(tmpdir, "train.bin");
    ds_split s;
    if (make_split(&s, sp, 97, 50)) {
        printf("FAIL making a split: %s\n", err_msg());
        return 1;
    }
    test_fit();
    test_stream(&s);
    test_rank_ranges(&s);
    test_state();
    test_teacher_chunks();
    test_selected_rows();
    test_sampling(&s);
    test_init_layers();
    test_docs();
    ds_split_close(&s);
    fs_rm_rf(tmpdir);
    free(sp);
    return tu_finish("test_train_parts");
}
