/* test_train_loss.c: the training objective against PyTorch (tests/fixtures/train_losses, written by
 * tools/make_loss_fixtures.py): FKL, RKL, JSD for beta 0 (= FKL), 0.1, 0.5, 0.9 and 1 (= RKL), TVD,
 * skew KL and skew reverse KL at alpha 0.1 and 0.5, CE, temperatures 0.5 to 2, answer/prompt
 * weighting with the prompt part over the batch or per sequence, on-policy sequences without CE,
 * the two parts of a sampled step (CE of the data, divergences of the samples), and heads padded
 * beyond the tokenizer's ids (teacher and student); loss, its parts and the gradient w.r.t. the
 * student's logits, through the same path the stage uses (loss_fill_rows, loss_select, the chunk
 * callback with a teacher callback, in chunks smaller than the batch). Also the fast divergence
 * kernel against its double-precision reference on a large vocabulary, with row strides. */
#include <cjson/cJSON.h>

#include "common/fsutil.h"
#include "engine_testutil.h"
#include "kernels/distill.h"
#include "model/safetensors.h"
#include "stages/train/loss.h"

/* Tolerances. The reference is float64 from fp32-exact logits. Here log-probabilities are fp32:
 * with |z / T| <= 20 (logits up to ~10 at T = 0.5) each carries <= ~20 eps absolute error, and a
 * loss term or gradient element is a probability times a difference of two of them, summed over
 * the vocabulary in double: ~2 x 20 eps relative to the largest element; x4 margin -> 160 eps.
 * The skew divergences also use ratios p/m of a probability to its mixture m >= a p (<= 1/a),
 * from an exp of a difference of two such logs (~40 eps relative): their gradient elements
 * (1-a) q (R - p/m) carry up to 40 eps / a relative to a term of size ~1: 10x for a = 0.1, so
 * cases with a skew term get TOL_FIXTURE / a. */
#define TOL_FIXTURE (160 * TU_EPS)

typedef struct {
    const float *zt;
    int vocab, calls, last_row;
} fixture_teacher;

/* The "teacher model" of the fixture: its logits at the asked positions. Checks the callback's
 * contract (ascending rows, never revisiting). */
static int teacher_from_fixture(void *ctx, float *out, const int *rows, int n) {
    fixture_teacher *t = ctx;
    for (int i = 0; i < n; i++) {
        if (rows[i] <= t->last_row) return err_set(ERR_INTERNAL, "teacher rows not ascending (%d after %d)", rows[i], t->last_row);
        t->last_row = rows[i];
        memcpy(out + (size_t)i * t->vocab, t->zt + (size_t)rows[i] * t->vocab, sizeof(float) * (size_t)t->vocab);
    }
    t->calls++;
    return 0;
}

static float *tensor_f32(const st_file *f, const char *name, size_t n) {
    const st_tensor *t = st_find(f, name);
    if (!t || t->dtype != ST_F64 || t->n_elems != n) {
        printf("FAIL fixture tensor %s missing or of the wrong shape\n", name);
        exit(1);
    }
    float *out = tu_alloc(n);
    for (size_t i = 0; i < n; i++) {
        double v;
        memcpy(&v, (const uint8_t *)t->data + 8 * i, 8);
        out[i] = (float)v;
    }
    return out;
}

static double num(const cJSON *o, const char *k) { return cJSON_GetObjectItem(o, k)->valuedouble; }

/* The logits of the fixture: the student and the teacher, each also padded beyond the vocabulary. */
typedef struct {
    float *zs, *zt, *zs_pad, *zt_pad;
    int vs_pad, vt_pad;
} fixture_logits;

static void run_case(const cJSON *c, const st_file *f, const fixture_logits *fl, const int *tokens, const int *seq_lens,
                     int n_seqs, int n, int V) {
    const char *name = cJSON_GetObjectItem(c, "name")->valuestring;
    const cJSON *cfg = cJSON_GetObjectItem(c, "config");
    const char *pn = cJSON_GetObjectItem(cfg, "prompt_norm")->valuestring, *part = cJSON_GetObjectItem(c, "part")->valuestring;
    loss_config lc = {.ce = num(cfg, "ce"), .fkl = num(cfg, "fkl"), .rkl = num(cfg, "rkl"), .jsd = num(cfg, "jsd"),
                      .tvd = num(cfg, "tvd"), .skl = num(cfg, "skl"), .srkl = num(cfg, "srkl"),
                      .prompt_weight = num(cfg, "prompt_weight"), .temperature = num(cfg, "temperature"),
                      .beta = num(cfg, "beta"), .alpha = num(cfg, "alpha"),
                      .prompt_norm = !strcmp(pn, "sequence") ? PROMPT_NORM_SEQUENCE : PROMPT_NORM_BATCH};
    const loss_part lp = !strcmp(part, "ce") ? LOSS_PART_CE : !strcmp(part, "div") ? LOSS_PART_DIV : LOSS_PART_ALL;
    const int spad = cJSON_IsTrue(cJSON_GetObjectItem(c, "student_pad")), tpad = cJSON_IsTrue(cJSON_GetObjectItem(c, "teacher_pad"));
    const float *zs = spad ? fl->zs_pad : fl->zs, *zt = tpad ? fl->zt_pad : fl->zt;
    const int Vs = spad ? fl->vs_pad : V, Vt = tpad ? fl->vt_pad : V;
    const double tol = (lc.skl > 0 || lc.srkl > 0) ? TOL_FIXTURE / lc.alpha : TOL_FIXTURE;
    const int has_teacher = cJSON_IsTrue(cJSON_GetObjectItem(c, "teacher"));
    uint8_t mask[64], flags[8];
    const cJSON *e;
    int k = 0;
    cJSON_ArrayForEach(e, cJSON_GetObjectItem(c, "mask")) mask[k++] = (uint8_t)e->valueint;
    k = 0;
    cJSON_ArrayForEach(e, cJSON_GetObjectItem(c, "flags")) flags[k++] = (uint8_t)e->valueint;

    loss_counts cnt = {0};
    loss_count_positions(&cnt, mask, seq_lens, n_seqs);
    tu_expect(cnt.answer == (int64_t)num(c, "answer_positions") && cnt.prompt == (int64_t)num(c, "prompt_positions") &&
                  cnt.prompt_seqs == (int64_t)num(c, "prompt_seqs"),
              "%s: positions %lld answer %lld prompt (%lld sequences)", name, (long long)cnt.answer,
              (long long)cnt.prompt, (long long)cnt.prompt_seqs);
    int targets[64], sel[64];
    uint8_t kind[64];
    float wce[64], wdiv[64];
    loss_rows rows = {.targets = targets, .kind = kind, .w_ce = wce, .w_div = wdiv};
    loss_fill_rows(&rows, tokens, mask, flags, seq_lens, n_seqs, &lc, has_teacher, &cnt, lp);
    int n_sel = loss_select(sel, &rows);

    /* the LM head's view: the selected rows, compacted, handed over in chunks of 4 rows */
    float *zsel = tu_alloc((size_t)n_sel * Vs), *dsel = tu_alloc((size_t)n_sel * Vs);
    for (int i = 0; i < n_sel; i++) memcpy(zsel + (size_t)i * Vs, zs + (size_t)sel[i] * Vs, sizeof(float) * Vs);
    fixture_teacher ft = {.zt = zt, .vocab = Vt, .last_row = -1};
    loss_ctx lx = {.rows = &rows, .sel = sel, .cfg = lc, .teacher = has_teacher ? teacher_from_fixture : NULL, .tctx = &ft,
                   .teacher_vocab = Vt, .vocab_used = V};
    double loss = 0;
    for (int r0 = 0; r0 < n_sel; r0 += 4) {
        int nr = n_sel - r0 < 4 ? n_sel - r0 : 4;
        lm_chunk ch = {.row0 = r0, .n_rows = nr, .vocab = Vs, .logits = zsel + (size_t)r0 * Vs,
                       .dlogits = dsel + (size_t)r0 * Vs};
        if (loss_chunk(&lx, &ch, &loss)) {
            tu_expect(0, "%s: loss_chunk: %s", name, err_msg());
            break;
        }
    }
    double want = num(c, "loss");
    tu_expect(fabs(loss - want) <= tol * fabs(want), "%s: loss %.9g, PyTorch %.9g (tol %.2g relative)", name, loss,
              want, tol);
    /* the gradient: selected rows from the callback, every other row must be exactly zero in the reference */
    char gname[96];
    snprintf(gname, sizeof gname, "grad.%s", name);
    float *ref = tensor_f32(f, gname, (size_t)n * Vs), *got = tu_alloc((size_t)n * Vs);
    for (int i = 0; i < n_sel; i++) memcpy(got + (size_t)sel[i] * Vs, dsel + (size_t)i * Vs, sizeof(float) * Vs);
    char what[128];
    snprintf(what, sizeof what, "%s: d loss / d student logits", name);
    tu_expect_close(what, got, ref, (size_t)n * Vs, tol);
    /* the parts (metrics): means over answer positions */
    const cJSON *parts = cJSON_GetObjectItem(c, "parts");
    int n_parts = 0;
    for (int t = 0; t < TERM_COUNT; t++) {
        const cJSON *p = cJSON_GetObjectItem(parts, loss_term_name(t));
        const int64_t cnt_t = t == TERM_CE ? lx.sums.n_answer_ce : lx.sums.n_answer;
        if (!p) {
            tu_expect(t == TERM_CE ? cnt_t == 0 : lx.sums.answer[t] == 0, "%s: %s computed without a weight", name,
                      loss_term_name(t));
            continue;
        }
        n_parts++;
        double got_part = lx.sums.answer[t] / (double)cnt_t;
        tu_expect(fabs(got_part - p->valuedouble) <= tol * fabs(p->valuedouble),
                  "%s: mean %s over answer positions %.9g, PyTorch %.9g", name, loss_term_name(t), got_part,
                  p->valuedouble);
    }
    tu_expect(n_parts == cJSON_GetArraySize(parts), "%s: every part of the fixture is a term", name);
    tu_expect(lx.sums.n_answer == cnt.answer, "%s: answer positions summed %lld of %lld", name,
              (long long)lx.sums.n_answer, (long long)cnt.answer);
    if (has_teacher && loss_has_divergence(&lc) && lp != LOSS_PART_CE)
        tu_expect(ft.calls > 1, "%s: the teacher is asked per chunk", name);
    if (lp == LOSS_PART_CE) tu_expect(ft.calls == 0, "%s: the CE part never asks the teacher", name);
    loss_ctx_free(&lx);
    free(zsel), free(dsel), free(ref), free(got);
}

static void test_fixtures(const char *src) {
    char *dir = xasprintf("%s/tests/fixtures/train_losses", src), *jp = fs_join(dir, "cases.json"),
         *sp = fs_join(dir, "losses.safetensors");
    char *text;
    size_t len;
    st_file f = {0};
    if (fs_read_file(jp, 1 << 20, &text, &len) || st_open(&f, sp)) {
        tu_expect(0, "fixture: %s", err_msg());
        return;
    }
    cJSON *j = cJSON_Parse(text);
    const int V = (int)num(j, "vocab");
    int seq_lens[8], tokens[64], n_seqs = 0, n = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, cJSON_GetObjectItem(j, "seq_lens")) seq_lens[n_seqs++] = e->valueint;
    cJSON_ArrayForEach(e, cJSON_GetObjectItem(j, "tokens")) tokens[n++] = e->valueint;
    fixture_logits fl = {.zs = tensor_f32(&f, "student", (size_t)n * V), .zt = tensor_f32(&f, "teacher", (size_t)n * V),
                         .vs_pad = V + 3, .vt_pad = V + 4};
    fl.zs_pad = tensor_f32(&f, "student_pad", (size_t)n * fl.vs_pad);
    fl.zt_pad = tensor_f32(&f, "teacher_pad", (size_t)n * fl.vt_pad);
    int cases = 0;
    cJSON_ArrayForEach(e, cJSON_GetObjectItem(j, "cases")) {
        run_case(e, &f, &fl, tokens, seq_lens, n_seqs, n, V);
        cases++;
    }
    tu_expect(cases >= 24, "fixture cases: %d", cases);
    free(fl.zs), free(fl.zt), free(fl.zs_pad), free(fl.zt_pad);
    cJSON_Delete(j);
    st_close(&f);
    free(text), free(dir), free(jp), free(sp);
}

/* The vectorized kernel against the double reference: vocabulary 4099 (not a multiple of the
 * SIMD width) inside rows padded to 4104 (student) and 4106 (teacher) columns, logits of scale 6,
 * T in {0.7, 1, 3}, every term, one row skipped (weight 0).
 * Tolerance: fp32 log-probabilities with |z/T| <= ~40 (40 eps each), summed over 4099 terms in
 * double (no growth), a probability times their difference: 2 x 40 eps, x4 margin -> 320 eps;
 * mixes with a skew term divide it by alpha (the ratio p/m <= 1/alpha, see TOL_FIXTURE). */
enum { KN = 9, KV = 4099, KLS = KV + 5, KLT = KV + 7 };

static void kernel_case(const char *name, const float *zs, const float *zt, const float *w, const distill_mix *mix) {
    double t_fast[KN * DISTILL_TERMS], t_ref[KN * DISTILL_TERMS];
    float *d_fast = tu_randn((size_t)KN * KLS, 1e-3), *d_ref = tu_copy(d_fast, (size_t)KN * KLS),
          *d0 = tu_copy(d_fast, (size_t)KN * KLS);
    distill_rows(t_fast, d_fast, zs, KLS, zt, KLT, w, mix, KN, KV);
    distill_rows_ref(t_ref, d_ref, zs, KLS, zt, KLT, w, mix, KN, KV);
    const double tol = 320 * TU_EPS / (mix->w_skl > 0 || mix->w_srkl > 0 ? mix->alpha : 1);
    double worst = 0;
    for (int i = 0; i < KN * DISTILL_TERMS; i++) {
        double e = fabs(t_fast[i] - t_ref[i]) / (fabs(t_ref[i]) + 1e-30);
        if (t_ref[i] != 0 && e > worst) worst = e;
        if (t_ref[i] == 0 && t_fast[i] != 0) worst = INFINITY;
    }
    tu_expect(worst <= tol, "kernel terms, %s: relative error %.3e (tol %.3e)", name, worst, tol);
    int pad_kept = 1;
    for (int i = 0; i < KN; i++)
        for (int j = KV; j < KLS; j++) pad_kept &= d_fast[(size_t)i * KLS + j] == d0[(size_t)i * KLS + j];
    tu_expect(pad_kept, "kernel, %s: columns beyond the vocabulary are untouched", name);
    char what[128];
    snprintf(what, sizeof what, "kernel gradient (accumulated), %s", name);
    tu_expect_close(what, d_fast, d_ref, (size_t)KN * KLS, tol);
    free(d_fast), free(d_ref), free(d0);
}

static void test_kernel_vs_ref(void) {
    tu_seed(77);
    float *zs = tu_randn((size_t)KN * KLS, 6.0), *zt = tu_randn((size_t)KN * KLT, 6.0);
    for (int i = 0; i < KN; i++) /* the teacher's padded columns: large logits no divergence may see */
        for (int j = KV; j < KLT; j++) zt[(size_t)i * KLT + j] = 40.0f;
    float w[KN];
    for (int i = 0; i < KN; i++) w[i] = (float)(0.1 * (i + 1));
    w[4] = 0;
    const float temps[3] = {0.7f, 1.0f, 3.0f};
    char name[96];
    for (int ti = 0; ti < 3; ti++) {
        distill_mix a = {.temperature = temps[ti], .beta = 0.3f, .w_fkl = 0.5f, .w_rkl = 0.3f, .w_jsd = 0.2f};
        snprintf(name, sizeof name, "FKL/RKL/JSD at T %.1f", temps[ti]);
        kernel_case(name, zs, zt, w, &a);
        for (int ai = 0; ai < 2; ai++) {
            distill_mix b = {.temperature = temps[ti], .alpha = ai ? 0.5f : 0.1f, .w_tvd = 0.4f, .w_skl = 0.3f,
                             .w_srkl = 0.3f};
            snprintf(name, sizeof name, "TVD/SKL/SRKL at T %.1f, alpha %.1f", temps[ti], b.alpha);
            kernel_case(name, zs, zt, w, &b);
        }
    }
    /* JSD at beta 0 and 1 is FKL and RKL exactly: the same terms and gradients, bitwise */
    for (int end = 0; end < 2; end++) {
        distill_mix j = {.temperature = 1.5f, .beta = (float)end, .w_jsd = 0.7f};
        distill_mix k = {.temperature = 1.5f, .w_fkl = end ? 0 : 0.7f, .w_rkl = end ? 0.7f : 0};
        double tj[KN * DISTILL_TERMS], tk[KN * DISTILL_TERMS];
        float *dj = tu_alloc((size_t)KN * KLS), *dk = tu_alloc((size_t)KN * KLS);
        distill_rows(tj, dj, zs, KLS, zt, KLT, w, &j, KN, KV);
        distill_rows(tk, dk, zs, KLS, zt, KLT, w, &k, KN, KV);
        int same = !memcmp(dj, dk, sizeof(float) * (size_t)KN * KLS);
        for (int i = 0; i < KN; i++) same &= tj[DISTILL_TERMS * i + DISTILL_JSD] == tk[DISTILL_TERMS * i + (end ? DISTILL_RKL : DISTILL_FKL)];
        tu_expect(same && tj[DISTILL_JSD] > 0.1, "JSD at beta %d is %s exactly (term %.4f)", end, end ? "RKL" : "FKL",
                  tj[DISTILL_JSD]);
        free(dj), free(dk);
    }
    /* identities: equal distributions have zero divergences and zero gradient */
    distill_mix mix = {.temperature = 2.0f, .beta = 0.5f, .alpha = 0.1f, .w_fkl = 1, .w_rkl = 1, .w_jsd = 1, .w_tvd = 1,
                       .w_skl = 1, .w_srkl = 1};
    double t[KN * DISTILL_TERMS];
    float *d = tu_alloc((size_t)KN * KLS);
    distill_rows(t, d, zs, KLS, zs, KLS, w, &mix, KN, KV);
    double mt = 0, md = 0;
    for (int i = 0; i < KN * DISTILL_TERMS; i++) mt = fmax(mt, fabs(t[i]));
    for (size_t i = 0; i < (size_t)KN * KLS; i++) md = fmax(md, fabs(d[i]));
    tu_expect(mt <= 1e-6 && md <= 1e-6, "p == q: divergences %.2e and gradient %.2e are not ~0", mt, md);
    free(d), free(zs), free(zt);
}

int main(void) {
    const char *src = getenv("SMELT_SOURCE_DIR");
    if (!src) src = ".";
    tu_verbose = getenv("SMELT_TEST_VERBOSE") != NULL;
    test_kernel_vs_ref();
    test_fixtures(src);
    return tu_finish("test_train_loss");
}
