/* test_sample.c: sampling. Greedy is the argmax; draws follow the softmax at the temperature
 * (frequencies within 5 standard deviations of a binomial over 40000 draws); top-p never draws
 * outside the nucleus and renormalizes inside it; the RNG state alone reproduces a sequence. */
#include "engine_testutil.h"
#include "model/sample.h"

static void test_greedy(void) {
    sampler s;
    tu_expect(sampler_init(&s, 6, 0.0f, 0.9f, 1) == 0, "init");
    float x[6] = {0.1f, 3.0f, -2.0f, 3.0f, 2.9f, 0.0f};
    tu_expect(sampler_sample(&s, x) == 1, "greedy picks the first of equal maxima");
    sampler_free(&s);
}

static void test_distribution(float temperature, float top_p) {
    enum { V = 5, DRAWS = 40000 };
    const float logits[V] = {1.0f, 0.5f, -0.3f, 2.0f, 0.0f};
    double p[V], sum = 0;
    for (int i = 0; i < V; i++) sum += p[i] = exp(logits[i] / temperature);
    for (int i = 0; i < V; i++) p[i] /= sum;
    /* nucleus: the smallest prefix of the sorted probabilities whose sum exceeds top_p */
    int order[V] = {3, 0, 1, 4, 2}, in[V] = {0};
    double cum = 0;
    for (int k = 0; k < V; k++) {
        in[order[k]] = 1;
        cum += p[order[k]];
        if (top_p > 0 && top_p < 1 && cum > top_p) break;
    }
    double nsum = 0;
    for (int i = 0; i < V; i++) nsum += in[i] ? p[i] : 0;
    sampler s;
    tu_expect(sampler_init(&s, V, temperature, top_p, 42) == 0, "init");
    int count[V] = {0};
    for (int d = 0; d < DRAWS; d++) {
        float x[V];
        memcpy(x, logits, sizeof x);
        count[sampler_sample(&s, x)]++;
    }
    for (int i = 0; i < V; i++) {
        double q = in[i] ? p[i] / nsum : 0, f = (double)count[i] / DRAWS, sd = sqrt(q * (1 - q) / DRAWS);
        tu_expect(in[i] ? fabs(f - q) <= 5 * sd + 1e-12 : count[i] == 0,
                  "T=%.2f top_p=%.2f token %d: frequency %.4f, expected %.4f (+- %.4f)", temperature, top_p, i, f, q,
                  5 * sd);
    }
    sampler_free(&s);
}

static void test_reproducible(void) {
    enum { V = 100 };
    sampler a, b;
    tu_expect(sampler_init(&a, V, 0.8f, 0.95f, 1234) == 0 && sampler_init(&b, V, 0.8f, 0.95f, 1234) == 0, "init");
    float x[V];
    int same = 1;
    uint64_t saved = 0;
    int after_save[10];
    for (int d = 0; d < 50; d++) {
        for (int i = 0; i < V; i++) x[i] = (float)sin(i * 0.37 + d);
        if (d == 40) saved = a.rng;
        int ta = sampler_sample(&a, x);
        if (d >= 40) after_save[d - 40] = ta;
        for (int i = 0; i < V; i++) x[i] = (float)sin(i * 0.37 + d);
        same &= ta == sampler_sample(&b, x);
    }
    tu_expect(same, "two samplers with one seed draw the same tokens");
    a.rng = saved; /* resume from the saved state */
    int again = 1;
    for (int d = 40; d < 50; d++) {
        for (int i = 0; i < V; i++) x[i] = (float)sin(i * 0.37 + d);
        again &= sampler_sample(&a, x) == after_save[d - 40];
    }
    tu_expect(again, "restoring the RNG state reproduces the draws that followed it");
    sampler_free(&a);
    sampler_free(&b);
    sampler bad;
    tu_expect(sampler_init(&bad, 0, 1, 1, 1) != 0, "a zero vocabulary is refused");
    /* NaN logits (a diverged model) still give a token id inside the vocabulary */
    for (int tp = 0; tp < 2; tp++) {
        sampler s;
        tu_expect(sampler_init(&s, 5, 1.0f, tp ? 0.9f : 1.0f, 3) == 0, "init");
        float nan5[5] = {NAN, NAN, NAN, NAN, NAN};
        int t = sampler_sample(&s, nan5);
        tu_expect(t >= 0 && t < 5, "NaN logits (top_p %s): token %d", tp ? "0.9" : "1", t);
        sampler_free(&s);
    }
}

int main(void) {
    test_greedy();
    test_distribution(1.0f, 1.0f);
    test_distribution(0.7f, 1.0f);
    test_distribution(1.0f, 0.8f);
    test_distribution(1.3f, 0.5f);
    test_reproducible();
    return tu_finish("test_sample");
}
