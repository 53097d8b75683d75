/* rng.c: xoshiro256** seeded by splitmix64 (Blackman and Vigna), plus helpers (rng.h). */
#include "stages/data/rng.h"

#include <math.h>

static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

void drng_seed(drng *r, uint64_t seed) {
    for (int i = 0; i < 4; i++) r->s[i] = splitmix64(&seed);
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t drng_next(drng *r) {
    uint64_t *s = r->s, out = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return out;
}

uint64_t drng_below(drng *r, uint64_t n) {
    /* rejection of the top partial range keeps every value equally likely */
    uint64_t limit = UINT64_MAX - UINT64_MAX % n, x;
    do x = drng_next(r);
    while (x >= limit);
    return x % n;
}

double drng_uniform(drng *r) { return (double)(drng_next(r) >> 11) * 0x1.0p-53; }

double drng_normal(drng *r) {
    double u1 = drng_uniform(r), u2 = drng_uniform(r);
    if (u1 < 1e-300) u1 = 1e-300;
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

uint64_t drng_hash(uint64_t seed, uint64_t x) {
    uint64_t s = seed ^ (x * 0xd6e8feb86659fd93ull);
    return splitmix64(&s);
}
