/* sample.c: greedy, temperature and top-p sampling (see sample.h). */
#include "model/sample.h"

#include <math.h>
#include <stdlib.h>

#include "common/error.h"

typedef struct {
    float p;
    int id;
} cand;

uint64_t rng_seed(uint64_t seed) {
    uint64_t z = seed + 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    return z ? z : 0x2545F4914F6CDD1Dull;
}

uint64_t rng_u64(uint64_t *state) {
    uint64_t x = *state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    return x * 0x2545F4914F6CDD1Dull;
}

float rng_f32(uint64_t *state) { return (float)(rng_u64(state) >> 40) * (1.0f / 16777216.0f); }

int sampler_init(sampler *s, int vocab, float temperature, float top_p, uint64_t seed) {
    s->work = NULL;
    if (vocab < 1) return err_set(ERR_INPUT, "sampler: vocabulary size %d must be positive", vocab);
    if (temperature != temperature || top_p != top_p)
        return err_set(ERR_INPUT, "sampler: temperature and top-p must be numbers");
    s->vocab = vocab;
    s->temperature = temperature;
    s->top_p = top_p;
    s->rng = rng_seed(seed);
    if (temperature > 0 && top_p > 0 && top_p < 1) {
        s->work = xmalloc(sizeof(cand) * (size_t)vocab);
        if (!s->work) return -1;
    }
    return 0;
}

void sampler_free(sampler *s) {
    free(s->work);
    s->work = NULL;
}

static int argmax(const float *x, int n) {
    int best = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[best]) best = i;
    return best;
}

static int cand_cmp(const void *a, const void *b) {
    const cand *x = a, *y = b;
    if (x->p != y->p) return x->p > y->p ? -1 : 1;
    return x->id - y->id; /* deterministic order among ties */
}

int sampler_sample(sampler *s, float *logits) {
    const int V = s->vocab;
    if (!(s->temperature > 0)) return argmax(logits, V);
    /* softmax of logits / T, sum in double */
    float mx = logits[0];
    for (int i = 1; i < V; i++) mx = logits[i] > mx ? logits[i] : mx;
    double sum = 0;
    for (int i = 0; i < V; i++) sum += (logits[i] = expf((logits[i] - mx) / s->temperature));
    for (int i = 0; i < V; i++) logits[i] = (float)(logits[i] / sum);
    const float coin = rng_f32(&s->rng);
    if (!s->work) { /* the whole distribution */
        double cdf = 0;
        for (int i = 0; i < V; i++) {
            cdf += logits[i];
            if (coin < cdf) return i;
        }
        return argmax(logits, V); /* rounding left the cdf short of the coin */
    }
    /* top-p: tokens below (1 - p) / (V - 1) cannot be in the nucleus (llama2.c's bound) */
    cand *c = s->work;
    int n = 0;
    const float cutoff = V > 1 ? (1.0f - s->top_p) / (float)(V - 1) : 0;
    for (int i = 0; i < V; i++)
        if (logits[i] >= cutoff) c[n].p = logits[i], c[n].id = i, n++;
    if (n == 0) return argmax(logits, V); /* NaN probabilities (NaN logits): nothing passes the cutoff */
    qsort(c, (size_t)n, sizeof *c, cand_cmp);
    double cum = 0;
    int last = n - 1;
    for (int i = 0; i < n; i++) {
        cum += c[i].p;
        if (cum > s->top_p) {
            last = i;
            break;
        }
    }
    double r = coin * cum, cdf = 0;
    for (int i = 0; i <= last; i++) {
        cdf += c[i].p;
        if (r < cdf) return c[i].id;
    }
    return c[last].id;
}
