/* attention_decode.c: attention of a few query rows of one head over a KV cache (see
 * attention.h), the single-token path of inference: one pass of dot products over the cached
 * keys, the softmax, one pass over the cached values. Memory-bound on the cache; the dot
 * products run 16 lanes at a time with a tree sum per key. */
#include <math.h>
#include <string.h>

#include "kernels/attention.h"
#include "kernels/fastmath.h"

/* sum of x[0..n) * y[0..n) in 16 lanes (then a tree), a scalar tail */
static inline float dot16(const float *x, const float *y, int n) {
    fm_f16 acc = fm_splat(0);
    int e = 0;
    for (; e + FM_W <= n; e += FM_W) acc += fm_ld(x + e) * fm_ld(y + e);
    float l[FM_W];
    fm_st(l, acc);
    for (int w = FM_W / 2; w >= 1; w /= 2)
        for (int i = 0; i < w; i++) l[i] += l[i + w];
    float s = l[0];
    for (; e < n; e++) s += x[e] * y[e];
    return s;
}

void attention_decode_head(float *out, int ldo, const float *q, int ldq, const float *k, int ldk, const float *v,
                           int ldv, int nq, int nkv, int head_dim, float *scores) {
    const int D = head_dim;
    const float scale = 1.0f / sqrtf((float)D);
    for (int i = 0; i < nq; i++) {
        const int lim = nkv - nq + i + 1;
        const float *qi = q + (size_t)i * ldq;
        for (int j = 0; j < lim; j++) scores[j] = scale * dot16(qi, k + (size_t)j * ldk, D);
        const float mx = fm_row_max(scores, lim);
        const double sum = fm_row_exp_sum(scores, scores, lim, mx);
        const float inv = (float)(1.0 / sum);
        float *o = out + (size_t)i * ldo;
        memset(o, 0, sizeof(float) * (size_t)D);
        for (int j = 0; j < lim; j++) {
            const float p = scores[j] * inv, *vj = v + (size_t)j * ldv;
            int e = 0;
            for (; e + FM_W <= D; e += FM_W) fm_st(o + e, fm_ld(o + e) + p * fm_ld(vj + e));
            for (; e < D; e++) o[e] += p * vj[e];
        }
    }
}
