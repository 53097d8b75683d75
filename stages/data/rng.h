/* rng.h: the data stage's deterministic random numbers (splitmix64 seeding, xoshiro256**), so that
 * a data artifact is a function of its parameters and seed on every machine. */
#ifndef SMELT_STAGES_DATA_RNG_H
#define SMELT_STAGES_DATA_RNG_H

#include <stdint.h>

typedef struct {
    uint64_t s[4];
} drng;

void drng_seed(drng *r, uint64_t seed);
uint64_t drng_next(drng *r);
/* Uniform in [0, n) without modulo bias; n >= 1. */
uint64_t drng_below(drng *r, uint64_t n);
/* Uniform in [0, 1) with 53 random bits. */
double drng_uniform(drng *r);
/* Standard normal (Box-Muller; one value per call, deterministic). */
double drng_normal(drng *r);
/* A 64-bit hash of (seed, x): for per-record decisions independent of iteration order. */
uint64_t drng_hash(uint64_t seed, uint64_t x);

#endif
