/* bf16.c: bf16 detection and array conversions (see bf16.h). The AVX-512 code is compiled for
 * that target with a function attribute and only called after the run-time check, so the build
 * needs no -march flag (Debug and sanitizer builds run it too). */
#include "kernels/bf16.h"

#include <immintrin.h>
#include <stdlib.h>

#define BF16_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16")))

static int portable_forced = 0;

int bf16_available(void) {
    static int detected = -1;
    if (detected < 0) {
        const char *e = getenv("SMELT_NO_BF16");
        __builtin_cpu_init();
        detected = !(e && e[0] == '1') && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                   __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512bf16");
    }
    return detected && !portable_forced;
}

void bf16_force_portable(int on) { portable_forced = on; }

BF16_TARGET static void from_f32_avx512(bf16 *dst, const float *src, size_t n) {
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m256bh h = _mm512_cvtneps_pbh(_mm512_loadu_ps(src + i));
        _mm256_storeu_si256((__m256i *)(dst + i), (__m256i)h);
    }
    for (; i < n; i++) dst[i] = bf16_from_f32(src[i]);
}

void bf16_from_f32_n(bf16 *dst, const float *src, size_t n) {
    if (bf16_available()) {
        from_f32_avx512(dst, src, n);
        return;
    }
    for (size_t i = 0; i < n; i++) dst[i] = bf16_from_f32(src[i]);
}

void bf16_to_f32_n(float *dst, const bf16 *src, size_t n) {
    for (size_t i = 0; i < n; i++) dst[i] = bf16_to_f32(src[i]); /* a shift: GCC vectorizes it */
}
