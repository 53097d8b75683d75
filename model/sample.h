/* sample.h: choosing the next token from logits: greedy at temperature 0, otherwise softmax at a
 * temperature, optionally restricted to the top-p nucleus, drawn with a seeded RNG whose whole
 * state is one uint64 (save it with a checkpoint to resume the same sequence of draws). */
#ifndef SMELT_MODEL_SAMPLE_H
#define SMELT_MODEL_SAMPLE_H

#include <stdint.h>

typedef struct {
    float temperature; /* <= 0: greedy (argmax, the lowest id among equal maxima) */
    float top_p;       /* in (0, 1): nucleus sampling; <= 0 or >= 1: the whole distribution */
    uint64_t rng;      /* xorshift64* state, never 0 */
    int vocab;
    void *work;        /* [vocab] candidates for top-p (owned) */
} sampler;

/* 0 or -1 (ERR_INPUT for a bad vocab or a NaN parameter, ERR_NOMEM). */
int sampler_init(sampler *s, int vocab, float temperature, float top_p, uint64_t seed);
void sampler_free(sampler *s);
/* The next token. logits: [vocab], overwritten (with probabilities when temperature > 0). */
int sampler_sample(sampler *s, float *logits);

/* The RNG: a state seeded by splitmix64(seed) (never 0), 64-bit draws, and floats in [0, 1). */
uint64_t rng_seed(uint64_t seed);
uint64_t rng_u64(uint64_t *state);
float rng_f32(uint64_t *state);

#endif
