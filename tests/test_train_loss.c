/* test_train_loss.c: the training objective against PyTorch (tests/fixtures/train_losses, written by
 * tools/make_loss_fixtures.py): FKL, RKL, JSD for beta 0.1/0.5/0.9, CE, temperatures 0.5, 1.5, 2,
 * answer/prompt weighting, on-policy sequences without CE; loss, its parts and the gradient w.r.t.
 * the student's logits, through the same path the stage uses (loss_fill_rows, loss_select, the
 * chunk callback with a teacher callback, in chunks smaller than the batch). Also the fast
 * divergence kernel against its double-precision reference on a large vocabulary. */
#include <cjson/cJSON.h>

#include "common/fsutil.h"
#include "engine_testutil.h"
#include "kernels/distill.h"
#include "model/safetensors.h"
#include "stages/train/loss.h"

/* Tolerances. The reference is float64 from fp32-exact logits. Here log-probabilities are fp32:
 * with |z / T| <= 20 (logits up to ~10 at T = 0.5) each carries <= ~20 eps absolute error, and a
 * loss term or gradient element is a probability times a difference of two of them, summed over
 * the vocabulary in double: ~2 x 20 eps relative to the largest element; x4 margin -> 160 eps. */
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

static void run_case(const cJSON *c, const st_file *f, const float *zs, const float *zt, const int *tokens,
                     const int *seq_lens, int n_seqs, int n, int V) {
    const char *name = cJSON_GetObjectItem(c, "name")->valuestring;
    const cJSON *cfg = cJSON_GetObjectItem(c, "config");
    loss_config lc = {.ce = num(cfg, "ce"), .fkl = num(cfg, "fkl"), .rkl = num(cfg, "rkl"), .jsd = num(cfg, "jsd"),
                      .prompt_weight = num(cfg, "prompt_weight"), .temperature = num(cfg, "temperature"),
                      .beta = num(cfg, "beta")};
    const int has_teacher = cJSON_IsTrue(cJSON_GetObjectItem(c, "teacher"));
    uint8_t mask[64], flags[8];
    const cJSON *e;
    int k = 0;
    cJSON_ArrayForEach(e, cJSON_GetObjectItem(c, "mask")) mask[k++] = (uint8_t)e->valueint;
    k = 0;
    cJSON_ArrayForEach(e, cJSON_GetObjectItem(c, "flags")) flags[k++] = (uint8_t)e->valueint;

    int64_t na = 0, np = 0;
    loss_count_positions(&na, &np, mask, seq_lens, n_seqs);
    tu_expect(na == (int64_t)num(c, "answer_positions") && np == (int64_t)num(c, "prompt_positions"),
              "%s: positions %lld answer %lld prompt", name, (long long)na, (long long)np);
    int targets[64], sel[64];
    uint8_t kind[64];
    float wce[64], wdiv[64];
    loss_rows rows = {.targets = targets, .kind = kind, .w_ce = wce, .w_div = wdiv};
    loss_fill_rows(&rows, tokens, mask, flags, seq_lens, n_seqs, &lc, has_teacher, na, np);
    int n_sel = loss_select(sel, &rows);

    /* the LM head's view: the selected rows, compacted, handed over in chunks of 4 rows */
    float *zsel = tu_alloc((size_t)n_sel * V), *dsel = tu_alloc((size_t)n_sel * V);
    for (int i = 0; i < n_sel; i++) memcpy(zsel + (size_t)i * V, zs + (size_t)sel[i] * V, sizeof(float) * V);
    fixture_teacher ft = {.zt = zt, .vocab = V, .last_row = -1};
    loss_ctx lx = {.rows = &rows, .sel = sel, .cfg = lc, .teacher = has_teacher ? teacher_from_fixture : NULL, .tctx = &ft};
    double loss = 0;
    for (int r0 = 0; r0 < n_sel; r0 += 4) {
        int nr = n_sel - r0 < 4 ? n_sel - r0 : 4;
        lm_chunk ch = {.row0 = r0, .n_rows = nr, .vocab = V, .logits = zsel + (size_t)r0 * V,
                       .dlogits = dsel + (size_t)r0 * V};
        if (loss_chunk(&lx, &ch, &loss)) {
            tu_expect(0, "%s: loss_chunk: %s", name, err_msg());
            break;
        }
    }
    double want = num(c, "loss");
    tu_expect(fabs(loss - want) <= TOL_FIXTURE * fabs(want), "%s: loss %.9g, PyTorch %.9g (tol %.2g relative)", name,
              loss, want, TOL_FIXTURE);
    /* the gradient: selected rows from the callback, every other row must be exactly zero in the reference */
    char gname[96];
    snprintf(gname, sizeof gname, "grad.%s", name);
    float *ref = tensor_f32(f, gname, (size_t)n * V), *got = tu_alloc((size_t)n * V);
    for (int i = 0; i < n_sel; i++) memcpy(got + (size_t)sel[i] * V, dsel + (size_t)i * V, sizeof(float) * V);
    char what[128];
    snprintf(what, sizeof what, "%s: d loss / d student logits", name);
    tu_expect_close(what, got, ref, (size_t)n * V, TOL_FIXTURE);
    /* the parts (metrics): means over answer positions */
    const cJSON *parts = cJSON_GetObjectItem(c, "parts");
    static const char *const keys[TERM_COUNT] = {"ce", "fkl", "rkl", "jsd"};
    for (int t = 0; t < TERM_COUNT; t++) {
        const cJSON *p = cJSON_GetObjectItem(parts, keys[t]);
        if (!p) continue;
        double got_part = lx.sums.answer[t] / (double)(t == TERM_CE ? lx.sums.n_answer_ce : lx.sums.n_answer);
        tu_expect(fabs(got_part - p->valuedouble) <= TOL_FIXTURE * fabs(p->valuedouble),
                  "%s: mean %s over answer positions %.9g, PyTorch %.9g", name, keys[t], got_part, p->valuedouble);
    }
    tu_expect(lx.sums.n_answer == na, "%s: answer positions summed %lld of %lld", name, (long long)lx.sums.n_answer,
              (long long)na);
    if (has_teacher && loss_has_divergence(&lc)) tu_expect(ft.calls > 1, "%s: the teacher is asked per chunk", name);
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
    float *zs = tensor_f32(&f, "student", (size_t)n * V), *zt = tensor_f32(&f, "teacher", (size_t)n * V);
    int cases = 0;
    cJSON_ArrayForEach(e, cJSON_GetObjectItem(j, "cases")) {
        run_case(e, &f, zs, zt, tokens, seq_lens, n_seqs, n, V);
        cases++;
    }
    tu_expect(cases >= 10, "fixture cases: %d", cases);
    free(zs), free(zt);
    cJSON_Delete(j);
    st_close(&f);
    free(text), free(dir), free(jp), free(sp);
}

/* The vectorized kernel against the double reference: vocabulary 4099 (not a multiple of the
 * SIMD width), logits of scale 6, T in {0.7, 1, 3}, every term, one row skipped (weight 0).
 * Tolerance: fp32 log-probabilities with |z/T| <= ~40 (40 eps each), summed over 4099 terms in
 * double (no growth), a probability times their difference: 2 x 40 eps, x4 margin -> 320 eps. */
static void test_kernel_vs_ref(void) {
    enum { N = 9, V = 4099 };
    tu_seed(77);
    float *zs = tu_randn((size_t)N * V, 6.0), *zt = tu_randn((size_t)N * V, 6.0);
    float w[N];
    for (int i = 0; i < N; i++) w[i] = (float)(0.1 * (i + 1));
    w[4] = 0;
    const float temps[3] = {0.7f, 1.0f, 3.0f};
    for (int ti = 0; ti < 3; ti++) {
        distill_mix mix = {.temperature = temps[ti], .beta = 0.3f, .w_fkl = 0.5f, .w_rkl = 0.3f, .w_jsd = 0.2f};
        double t_fast[N * 3], t_ref[N * 3];
        float *d_fast = tu_randn((size_t)N * V, 1e-3), *d_ref = tu_copy(d_fast, (size_t)N * V);
        distill_rows(t_fast, d_fast, zs, zt, w, &mix, N, V);
        distill_rows_ref(t_ref, d_ref, zs, zt, w, &mix, N, V);
        double worst = 0;
        for (int i = 0; i < N * 3; i++) {
            double e = fabs(t_fast[i] - t_ref[i]) / (fabs(t_ref[i]) + 1e-30);
            if (t_ref[i] != 0 && e > worst) worst = e;
            if (t_ref[i] == 0 && t_fast[i] != 0) worst = INFINITY;
        }
        tu_expect(worst <= 320 * TU_EPS, "kernel terms at T %.1f: relative error %.3e (tol %.3e)", temps[ti], worst,
                  320 * TU_EPS);
        char what[96];
        snprintf(what, sizeof what, "kernel gradient (accumulated) at T %.1f", temps[ti]);
        tu_expect_close(what, d_fast, d_ref, (size_t)N * V, 320 * TU_EPS);
        free(d_fast), free(d_ref);
    }
    /* identities: equal distributions have zero divergences and zero gradient */
    distill_mix mix = {.temperature = 2.0f, .beta = 0.5f, .w_fkl = 1, .w_rkl = 1, .w_jsd = 1};
    double t[N * 3];
    float *d = tu_alloc((size_t)N * V);
    distill_rows(t, d, zs, zs, w, &mix, N, V);
    double mt = 0, md = 0;
    for (int i = 0; i < N * 3; i++) mt = fmax(mt, fabs(t[i]));
    for (size_t i = 0; i < (size_t)N * V; i++) md = fmax(md, fabs(d[i]));
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
