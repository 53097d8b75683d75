/* test_auc.c: AUC (Mann-Whitney with ties) and log loss against sklearn.metrics (roc_auc_score,
 * log_loss of sigmoid(margin)) and numpy (logaddexp, for margins where sigmoid rounds to 1) on the
 * fixtures tools/make_auc_fixtures.py wrote (tests/data/auc/fixtures.json), among them margins in
 * [15, 40] whose float sigmoids mostly tie at 1.0f; against an O(n^2) brute-force count on random
 * data; and the documented edge cases: one class -> NaN, unlabelled examples skipped, a NaN score
 * -> an error, the mean over tasks skipping NaN, a confident wrong answer costing its margin. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "common/error.h"
#include "common/fsutil.h"
#include "stages/data/rng.h"
#include "stages/evaluate/auc.h"
#include "stages/evaluate/score.h"
#include "tests/check.h"

/* Tolerances: the rank sum is a sum of half-integers, exact in double below 2^52, so our AUC has
 * one rounding (the final division); sklearn integrates the ROC curve with float64 cumulative sums
 * of n terms: |difference| <= n * 2^-52 with room, and we use 1e-12 for n <= 3000. The log loss is a
 * mean of n softplus terms each within a few ulps: 1e-12 relative. */
#define AUC_TOL 1e-12

static void test_fixtures(void) {
    const char *src = getenv("SMELT_SOURCE_DIR");
    char *path = fs_join(src ? src : ".", "tests/data/auc/fixtures.json"), *text;
    CHECK_OK(fs_read_file(path, 0, &text, NULL));
    cJSON *j = cJSON_Parse(text);
    const cJSON *cases = cJSON_GetObjectItem(j, "cases"), *c;
    int n_cases = 0, n_tied = 0, n_saturated = 0;
    cJSON_ArrayForEach(c, cases) {
        const cJSON *ys = cJSON_GetObjectItem(c, "labels"), *ss = cJSON_GetObjectItem(c, "scores");
        int n = cJSON_GetArraySize(ys);
        double *s = malloc((size_t)n * sizeof *s);
        int8_t *y = malloc((size_t)n);
        for (int i = 0; i < n; i++) {
            y[i] = (int8_t)cJSON_GetArrayItem(ys, i)->valueint;
            s[i] = cJSON_GetArrayItem(ss, i)->valuedouble;
        }
        int tied = 0;
        for (int i = 1; i < n && !tied; i++)
            for (int k = 0; k < i && !tied; k++) tied = s[i] == s[k];
        n_tied += tied;
        double auc, want = cJSON_GetObjectItem(c, "auc")->valuedouble, ll = cJSON_GetObjectItem(c, "log_loss")->valuedouble;
        int64_t np, nn;
        CHECK_OK(auc_compute(&auc, s, y, (size_t)n, &np, &nn));
        if (!(fabs(auc - want) <= AUC_TOL)) {
            fprintf(stderr, "fixture %s: AUC %.17g, sklearn %.17g\n", cJSON_GetObjectItem(c, "name")->valuestring, auc, want);
            check_failed_count++;
        }
        double got_ll = log_loss_margin(s, y, (size_t)n);
        int ones = 0; /* a float P(yes) is exactly 1.0f from a margin of 17.33 (1 - e^-m rounds up) */
        for (int i = 0; i < n; i++) ones += (float)score_p_yes(s[i]) == 1.0f;
        n_saturated += ones >= 0.8 * n;
        if (!(fabs(got_ll - ll) <= 1e-12 * fabs(ll))) {
            fprintf(stderr, "fixture %s: log loss %.17g, sklearn %.17g\n", cJSON_GetObjectItem(c, "name")->valuestring,
                    got_ll, ll);
            check_failed_count++;
        }
        CHECK(np + nn == n);
        n_cases++;
        free(s);
        free(y);
    }
    CHECK(n_cases >= 10);
    CHECK(n_tied >= 10);     /* at least 10 fixtures have tied scores */
    CHECK(n_saturated >= 2); /* and two have margins in [15, 40], where most float scores tie */
    printf("%d sklearn fixtures (%d with ties, %d where 80%% of the float P(yes) are 1.0f)\n", n_cases, n_tied,
           n_saturated);
    cJSON_Delete(j);
    free(text);
    free(path);
}

/* P(score_pos > score_neg) + P(equal) / 2 over all pairs, counted directly. */
static double brute_auc(const double *s, const int8_t *y, int n) {
    double num = 0, den = 0;
    for (int i = 0; i < n; i++)
        for (int k = 0; k < n; k++)
            if (y[i] == 1 && y[k] == 0) {
                num += s[i] > s[k] ? 1 : s[i] == s[k] ? 0.5 : 0;
                den += 1;
            }
    return num / den;
}

static void test_brute_force(void) {
    drng r;
    drng_seed(&r, 42);
    for (int trial = 0; trial < 50; trial++) {
        int n = 2 + (int)drng_below(&r, 300), levels = 1 + (int)drng_below(&r, 20);
        double *s = malloc((size_t)n * sizeof *s);
        int8_t *y = malloc((size_t)n);
        for (int i = 0; i < n; i++) {
            y[i] = (int8_t)drng_below(&r, 3) - 1; /* -1 (unlabelled, skipped), 0, 1 */
            s[i] = (double)drng_below(&r, (uint64_t)levels) + (y[i] == 1 ? 0.3 * drng_uniform(&r) : 0);
        }
        y[0] = 0, y[1] = 1;
        double auc, want = brute_auc(s, y, n);
        CHECK_OK(auc_compute(&auc, s, y, (size_t)n, NULL, NULL));
        if (!(fabs(auc - want) <= AUC_TOL)) {
            fprintf(stderr, "trial %d: AUC %.17g, brute force %.17g\n", trial, auc, want);
            check_failed_count++;
        }
        free(s);
        free(y);
    }
}

static void test_edges(void) {
    double s[6] = {0.1, 0.9, 0.5, 0.5, 0.2, NAN}, auc;
    int8_t all_yes[6] = {1, 1, 1, 1, 1, -1}, all_no[6] = {0, 0, 0, 0, 0, -1}, mixed[6] = {0, 1, 1, 0, -1, -1};
    int64_t np, nn;
    CHECK_OK(auc_compute(&auc, s, all_yes, 6, &np, &nn));
    CHECK(isnan(auc) && np == 5 && nn == 0); /* one class: NaN, never 0.5 */
    CHECK_OK(auc_compute(&auc, s, all_no, 6, &np, &nn));
    CHECK(isnan(auc) && np == 0 && nn == 5);
    CHECK_OK(auc_compute(&auc, s, mixed, 6, &np, &nn)); /* the NaN score is unlabelled: skipped */
    CHECK(np == 2 && nn == 2 && fabs(auc - 0.875) < 1e-15); /* pairs: (0.9>0.1) (0.9>0.5) (0.5>0.1) (0.5=0.5): 3.5/4 */
    int8_t nan_labelled[6] = {0, 1, 1, 0, 0, 1};
    CHECK(auc_compute(&auc, s, nan_labelled, 6, NULL, NULL) == -1 && err_kind_get() == ERR_INPUT);
    CHECK_OK(auc_compute(&auc, s, mixed, 0, &np, &nn));
    CHECK(isnan(auc) && np == 0 && nn == 0);
    /* per task: task 1 has one class */
    uint16_t task[6] = {0, 0, 1, 1, 0, 0};
    int8_t lab[6] = {0, 1, 1, 1, 1, -1};
    double a[2];
    int64_t p[2], q[2];
    CHECK_OK(auc_per_task(a, p, q, s, lab, task, 6, 2));
    CHECK(a[0] == 1.0 && p[0] == 2 && q[0] == 1); /* positives 0.9 and 0.2 both above the negative 0.1 */
    CHECK(isnan(a[1]) && p[1] == 2 && q[1] == 0);
    int used;
    CHECK(fabs(auc_mean(a, 2, &used) - a[0]) < 1e-15 && used == 1);
    double none[2] = {NAN, NAN};
    CHECK(isnan(auc_mean(none, 2, &used)) && used == 0);
    CHECK(isnan(log_loss_margin(s, all_yes + 5, 1)));
    /* confident and wrong: -log(1 - sigmoid(40)) = 40 + log1p(e^-40) = 40 + 4.25e-18, and
     * -log sigmoid(-40) the same; a probability clipped at 1 - 1e-15 would say 34.5 */
    double mz[2] = {-40, 40};
    int8_t yz[2] = {1, 0};
    CHECK(fabs(log_loss_margin(mz, yz, 2) - 40.0) < 1e-14 * 40);
    /* confident and right: log1p(e^-40) = 4.248354255291589e-18 */
    int8_t yr[2] = {0, 1};
    CHECK(fabs(log_loss_margin(mz, yr, 2) - 4.248354255291589e-18) < 1e-14 * 4.25e-18);
    CHECK((float)score_p_yes(17.2) < 1.0f && (float)score_p_yes(17.4) == 1.0f && score_p_yes(36) < 1.0 &&
          score_p_yes(38) == 1.0 && score_p_yes(-800) == 0.0 && isnan(score_p_yes(NAN)));
}

int main(void) {
    test_fixtures();
    test_brute_force();
    test_edges();
    return check_report("test_auc");
}
