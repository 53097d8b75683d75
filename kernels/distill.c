/* distill.c: forward KL, reverse KL and generalized JSD between teacher and student rows of
 * logits at a temperature, with the gradient w.r.t. the student's logits (see distill.h).
 * Two passes over each row after the two log-sum-exps: sums first (RKL and KL(q||m) enter every
 * element's gradient), then the gradient, recomputing q and p instead of storing them. */
#include "kernels/distill.h"

#include <math.h>
#include <stddef.h>

#include "kernels/fastmath.h"
#include "kernels/threads.h"

/* max over the row and log sum exp((x - max) / T); the row's log-probabilities are
 * (x - max) * invT - lse. */
static void row_lse(const float *x, int v, float inv_t, float *mx_out, float *lse_out) {
    float mx = -INFINITY;
    double sum = 0;
#pragma omp simd reduction(max : mx)
    for (int j = 0; j < v; j++) mx = x[j] > mx ? x[j] : mx;
#pragma omp simd reduction(+ : sum)
    for (int j = 0; j < v; j++) sum += fm_expf((x[j] - mx) * inv_t);
    *mx_out = mx;
    *lse_out = (float)log(sum);
}

static void distill_row(double *terms, float *d, const float *zs, const float *zt, float w, const distill_mix *mx,
                        int v) {
    const float inv_t = 1.0f / mx->temperature, b = mx->beta, b1 = 1.0f - mx->beta;
    const int do_f = mx->w_fkl > 0, do_r = mx->w_rkl > 0, do_j = mx->w_jsd > 0;
    float ms, ls, mt, lt;
    row_lse(zs, v, inv_t, &ms, &ls);
    row_lse(zt, v, inv_t, &mt, &lt);
    double fkl = 0, rkl = 0, kpm = 0, kqm = 0;
    /* pass 1: the divergences */
#pragma omp simd reduction(+ : fkl, rkl)
    for (int j = 0; j < v; j++) {
        float lq = (zs[j] - ms) * inv_t - ls, lp = (zt[j] - mt) * inv_t - lt;
        float q = fm_expf(lq), p = fm_expf(lp);
        fkl += p * (lp - lq);
        rkl += q * (lq - lp);
    }
    if (do_j)
        for (int j = 0; j < v; j++) { /* logf does not vectorize; JSD only pays it */
            float lq = (zs[j] - ms) * inv_t - ls, lp = (zt[j] - mt) * inv_t - lt;
            float q = fm_expf(lq), p = fm_expf(lp);
            float lm = logf(b * p + b1 * q);
            kpm += p * (lp - lm);
            kqm += q * (lq - lm);
        }
    const double t2 = (double)mx->temperature * mx->temperature;
    terms[DISTILL_FKL] = do_f ? t2 * fkl : 0;
    terms[DISTILL_RKL] = do_r ? t2 * rkl : 0;
    terms[DISTILL_JSD] = do_j ? t2 * (b * kpm + b1 * kqm) : 0;
    if (!d) return;
    /* pass 2: d/dz = (1/T) [w_f (q - p) + q (h - H)], h = w_r log(q/p) + w_j (1-b) log(q/m), H = sum q h;
     * scaled by the row weight and T^2: factor w * T */
    const float wf = do_f ? mx->w_fkl : 0, wr = do_r ? mx->w_rkl : 0, wj = do_j ? mx->w_jsd : 0;
    const float hh = (float)(wr * rkl + wj * b1 * kqm), scale = w * mx->temperature;
    if (!do_j) {
#pragma omp simd
        for (int j = 0; j < v; j++) {
            float lq = (zs[j] - ms) * inv_t - ls, lp = (zt[j] - mt) * inv_t - lt;
            float q = fm_expf(lq), p = fm_expf(lp);
            d[j] += scale * (wf * (q - p) + q * (wr * (lq - lp) - hh));
        }
    } else {
        for (int j = 0; j < v; j++) {
            float lq = (zs[j] - ms) * inv_t - ls, lp = (zt[j] - mt) * inv_t - lt;
            float q = fm_expf(lq), p = fm_expf(lp);
            float lm = logf(b * p + b1 * q);
            d[j] += scale * (wf * (q - p) + q * (wr * (lq - lp) + wj * b1 * (lq - lm) - hh));
        }
    }
}

void distill_rows(double *terms, float *dlogits, const float *zs, const float *zt, const float *row_w,
                  const distill_mix *mix, int n, int vocab) {
    const int nt = kernels_threads_for(4.0 * n * vocab, THR_EXP_FLOATS); /* two passes of two exps per element */
#pragma omp parallel for schedule(static) num_threads(nt) if (nt > 1)
    for (int i = 0; i < n; i++) {
        double *t = terms + (size_t)DISTILL_TERMS * i;
        if (row_w[i] == 0) {
            t[0] = t[1] = t[2] = 0;
            continue;
        }
        size_t o = (size_t)i * vocab;
        distill_row(t, dlogits ? dlogits + o : NULL, zs + o, zt + o, row_w[i], mix, vocab);
    }
}

void distill_rows_ref(double *terms, float *dlogits, const float *zs, const float *zt, const float *row_w,
                      const distill_mix *mix, int n, int vocab) {
    const double T = mix->temperature, b = mix->beta;
    for (int i = 0; i < n; i++) {
        double *t = terms + (size_t)DISTILL_TERMS * i;
        t[0] = t[1] = t[2] = 0;
        if (row_w[i] == 0) continue;
        const float *s = zs + (size_t)i * vocab, *u = zt + (size_t)i * vocab;
        double ms = -INFINITY, mt = -INFINITY, ss = 0, st = 0;
        for (int j = 0; j < vocab; j++) {
            ms = fmax(ms, s[j] / T);
            mt = fmax(mt, u[j] / T);
        }
        for (int j = 0; j < vocab; j++) {
            ss += exp(s[j] / T - ms);
            st += exp(u[j] / T - mt);
        }
        double fkl = 0, rkl = 0, kpm = 0, kqm = 0;
        for (int j = 0; j < vocab; j++) {
            double lq = s[j] / T - ms - log(ss), lp = u[j] / T - mt - log(st), q = exp(lq), p = exp(lp);
            double lm = log(b * p + (1 - b) * q);
            fkl += p * (lp - lq);
            rkl += q * (lq - lp);
            kpm += p * (lp - lm);
            kqm += q * (lq - lm);
        }
        double jsd = b * kpm + (1 - b) * kqm;
        if (mix->w_fkl > 0) t[DISTILL_FKL] = T * T * fkl;
        if (mix->w_rkl > 0) t[DISTILL_RKL] = T * T * rkl;
        if (mix->w_jsd > 0) t[DISTILL_JSD] = T * T * jsd;
        if (!dlogits) continue;
        const double wf = mix->w_fkl > 0 ? mix->w_fkl : 0, wr = mix->w_rkl > 0 ? mix->w_rkl : 0,
                     wj = mix->w_jsd > 0 ? mix->w_jsd : 0;
        for (int j = 0; j < vocab; j++) {
            double lq = s[j] / T - ms - log(ss), lp = u[j] / T - mt - log(st), q = exp(lq), p = exp(lp);
            double lm = log(b * p + (1 - b) * q);
            double g = wf * (q - p) / T + wr * q * (lq - lp - rkl) / T + wj * q * (1 - b) * (lq - lm - kqm) / T;
            dlogits[(size_t)i * vocab + j] += (float)(row_w[i] * T * T * g);
        }
    }
}
