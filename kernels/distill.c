/* distill.c: forward KL, reverse KL, generalized JSD, total variation, skew KL and skew reverse KL
 * between teacher and student rows of logits at a temperature, with the gradient w.r.t. the
 * student's logits (see distill.h). Two passes over each row after the two log-sum-exps: sums
 * first (RKL, KL(q||m), sum q sign(q - p), ... enter every element's gradient), then the gradient,
 * recomputing q and p instead of storing them. */
#include "kernels/distill.h"

#include <math.h>
#include <stddef.h>
#include <stdlib.h>

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

/* log(e^x + e^y), finite whenever one of them is */
static float log_add_exp(float x, float y) {
    float mx = x > y ? x : y, mn = x > y ? y : x;
    return mx == -INFINITY ? mx : mx + log1pf(expf(mn - mx));
}

/* The effective weights of one row: JSD at b = 0 or 1 is FKL or RKL and joins their weights. */
typedef struct {
    float f, r, j, t, k, sr; /* FKL, RKL, JSD (0 < b < 1 only), TVD, SKL, SRKL */
} eff_weights;

static eff_weights effective(const distill_mix *mx) {
    const float b = mx->beta, wj = mx->w_jsd > 0 ? mx->w_jsd : 0;
    eff_weights e = {.f = (mx->w_fkl > 0 ? mx->w_fkl : 0) + (b <= 0 ? wj : 0),
                     .r = (mx->w_rkl > 0 ? mx->w_rkl : 0) + (b >= 1 ? wj : 0),
                     .j = b > 0 && b < 1 ? wj : 0,
                     .t = mx->w_tvd > 0 ? mx->w_tvd : 0,
                     .k = mx->w_skl > 0 ? mx->w_skl : 0,
                     .sr = mx->w_srkl > 0 ? mx->w_srkl : 0};
    return e;
}

/* The unweighted terms of a row from its sums (T^2 x each divergence; 0 where the weight is 0). */
static void put_terms(double *terms, const distill_mix *mx, double t2, double fkl, double rkl, double jsd, double tvd,
                      double skl, double srkl) {
    const float b = mx->beta;
    terms[DISTILL_FKL] = mx->w_fkl > 0 ? t2 * fkl : 0;
    terms[DISTILL_RKL] = mx->w_rkl > 0 ? t2 * rkl : 0;
    terms[DISTILL_JSD] = mx->w_jsd > 0 ? t2 * (b <= 0 ? fkl : b >= 1 ? rkl : jsd) : 0;
    terms[DISTILL_TVD] = mx->w_tvd > 0 ? t2 * tvd : 0;
    terms[DISTILL_SKL] = mx->w_skl > 0 ? t2 * skl : 0;
    terms[DISTILL_SRKL] = mx->w_srkl > 0 ? t2 * srkl : 0;
}

static void distill_row(double *terms, float *d, const float *zs, const float *zt, float w, const distill_mix *mx,
                        int v) {
    const float inv_t = 1.0f / mx->temperature, b = mx->beta, b1 = 1.0f - b, a = mx->alpha, a1 = 1.0f - a;
    const eff_weights e = effective(mx);
    const int logs = e.j > 0 || e.k > 0 || e.sr > 0; /* terms that need the log of a mixture */
    const float lb = logf(b), lb1 = logf(b1), la = logf(a), la1 = logf(a1); /* logf(0) = -inf is fine */
    float ms, ls, mt, lt;
    row_lse(zs, v, inv_t, &ms, &ls);
    row_lse(zt, v, inv_t, &mt, &lt);
    double fkl = 0, rkl = 0, tvd = 0, tvd_s = 0, kpm = 0, kqm = 0, skl = 0, sk_r = 0, srkl = 0, sr_h = 0;
    /* pass 1: the divergences and the sums their gradients need */
#pragma omp simd reduction(+ : fkl, rkl)
    for (int j = 0; j < v; j++) {
        float lq = (zs[j] - ms) * inv_t - ls, lp = (zt[j] - mt) * inv_t - lt;
        float q = fm_expf(lq), p = fm_expf(lp);
        fkl += p * (lp - lq);
        rkl += q * (lq - lp);
    }
    if (e.t > 0) {
#pragma omp simd reduction(+ : tvd, tvd_s)
        for (int j = 0; j < v; j++) {
            float q = fm_expf((zs[j] - ms) * inv_t - ls), p = fm_expf((zt[j] - mt) * inv_t - lt);
            tvd += fabsf(p - q);
            tvd_s += q > p ? q : q < p ? -q : 0.0f; /* q sign(q - p) */
        }
        tvd *= 0.5;
    }
    if (logs)
        for (int j = 0; j < v; j++) { /* logf and log1pf do not vectorize; only these terms pay them */
            float lq = (zs[j] - ms) * inv_t - ls, lp = (zt[j] - mt) * inv_t - lt;
            float q = fm_expf(lq), p = fm_expf(lp);
            if (e.j > 0) {
                float lm = log_add_exp(lb + lp, lb1 + lq);
                kpm += p * (lp - lm);
                kqm += q * (lq - lm);
            }
            if (e.k > 0) {
                float lm = log_add_exp(la + lp, la1 + lq);
                skl += p * (lp - lm);
                sk_r += q * expf(lp - lm);
            }
            if (e.sr > 0) {
                float lm = log_add_exp(la + lq, la1 + lp);
                srkl += q * (lq - lm);
                sr_h += q * ((lq - lm) - a * expf(lq - lm));
            }
        }
    const double t2 = (double)mx->temperature * mx->temperature;
    put_terms(terms, mx, t2, fkl, rkl, b * kpm + b1 * kqm, tvd, skl, srkl);
    if (!d) return;
    /* pass 2: d/dz = (1/T) [w_f (q - p) + q (g - G)], G = sum q g, with
     * g = w_r log(q/p) + w_j (1-b) log(q/m) + w_t s/2 - w_k (1-a) p/m_k + w_sr (log(q/m_r) - a q/m_r);
     * scaled by the row weight and T^2: factor w * T */
    const float G = (float)(e.r * rkl + e.j * b1 * kqm + e.t * 0.5 * tvd_s - e.k * a1 * sk_r + e.sr * sr_h);
    const float scale = w * mx->temperature, wf = e.f, wr = e.r, wt = 0.5f * e.t;
    if (!logs) {
#pragma omp simd
        for (int j = 0; j < v; j++) {
            float lq = (zs[j] - ms) * inv_t - ls, lp = (zt[j] - mt) * inv_t - lt;
            float q = fm_expf(lq), p = fm_expf(lp), s = q > p ? 1.0f : q < p ? -1.0f : 0.0f;
            d[j] += scale * (wf * (q - p) + q * (wr * (lq - lp) + wt * s - G));
        }
    } else {
        for (int j = 0; j < v; j++) {
            float lq = (zs[j] - ms) * inv_t - ls, lp = (zt[j] - mt) * inv_t - lt;
            float q = fm_expf(lq), p = fm_expf(lp), s = q > p ? 1.0f : q < p ? -1.0f : 0.0f;
            float g = wr * (lq - lp) + wt * s;
            if (e.j > 0) g += e.j * b1 * (lq - log_add_exp(lb + lp, lb1 + lq));
            if (e.k > 0) g -= e.k * a1 * expf(lp - log_add_exp(la + lp, la1 + lq));
            if (e.sr > 0) {
                float lm = log_add_exp(la + lq, la1 + lp);
                g += e.sr * ((lq - lm) - a * expf(lq - lm));
            }
            d[j] += scale * (wf * (q - p) + q * (g - G));
        }
    }
}

void distill_rows(double *terms, float *dlogits, const float *zs, int ld_s, const float *zt, int ld_t,
                  const float *row_w, const distill_mix *mix, int n, int vocab) {
    const int nt = kernels_threads_for(4.0 * n * vocab, THR_EXP_FLOATS); /* two passes of two exps per element */
#pragma omp parallel for schedule(static) num_threads(nt) if (nt > 1)
    for (int i = 0; i < n; i++) {
        double *t = terms + (size_t)DISTILL_TERMS * i;
        if (row_w[i] == 0) {
            for (int k = 0; k < DISTILL_TERMS; k++) t[k] = 0;
            continue;
        }
        distill_row(t, dlogits ? dlogits + (size_t)i * ld_s : NULL, zs + (size_t)i * ld_s, zt + (size_t)i * ld_t,
                    row_w[i], mix, vocab);
    }
}

void distill_rows_ref(double *terms, float *dlogits, const float *zs, int ld_s, const float *zt, int ld_t,
                      const float *row_w, const distill_mix *mix, int n, int vocab) {
    const double T = mix->temperature, b = mix->beta, a = mix->alpha;
    const eff_weights e = effective(mix);
    double *lq = malloc(sizeof(double) * (size_t)vocab), *lp = malloc(sizeof(double) * (size_t)vocab);
    if (!lq || !lp) {
        free(lq), free(lp);
        return;
    }
    for (int i = 0; i < n; i++) {
        double *t = terms + (size_t)DISTILL_TERMS * i;
        for (int k = 0; k < DISTILL_TERMS; k++) t[k] = 0;
        if (row_w[i] == 0) continue;
        const float *s = zs + (size_t)i * ld_s, *u = zt + (size_t)i * ld_t;
        double ms = -INFINITY, mt = -INFINITY, ss = 0, st = 0;
        for (int j = 0; j < vocab; j++) {
            ms = fmax(ms, s[j] / T);
            mt = fmax(mt, u[j] / T);
        }
        for (int j = 0; j < vocab; j++) {
            ss += exp(s[j] / T - ms);
            st += exp(u[j] / T - mt);
        }
        for (int j = 0; j < vocab; j++) {
            lq[j] = s[j] / T - ms - log(ss);
            lp[j] = u[j] / T - mt - log(st);
        }
        /* each divergence from its definition, with the mixtures formed as probabilities */
        double fkl = 0, rkl = 0, jsd = 0, tvd = 0, skl = 0, srkl = 0, kqm = 0, tvd_s = 0, sk_r = 0, sr_h = 0;
        for (int j = 0; j < vocab; j++) {
            double q = exp(lq[j]), p = exp(lp[j]);
            double mj = b * p + (1 - b) * q, mk = a * p + (1 - a) * q, mr = a * q + (1 - a) * p;
            fkl += p * (lp[j] - lq[j]);
            rkl += q * (lq[j] - lp[j]);
            if (mj > 0) {
                jsd += b * p * (lp[j] - log(mj)) + (1 - b) * q * (lq[j] - log(mj));
                kqm += q * (lq[j] - log(mj));
            }
            tvd += 0.5 * fabs(p - q);
            tvd_s += q * (q > p ? 1 : q < p ? -1 : 0);
            if (mk > 0) skl += p * (lp[j] - log(mk)), sk_r += q * p / mk;
            if (mr > 0) srkl += q * (lq[j] - log(mr)), sr_h += q * (lq[j] - log(mr) - a * q / mr);
        }
        put_terms(t, mix, T * T, fkl, rkl, jsd, tvd, skl, srkl);
        if (!dlogits) continue;
        for (int j = 0; j < vocab; j++) {
            double q = exp(lq[j]), p = exp(lp[j]);
            double mj = b * p + (1 - b) * q, mk = a * p + (1 - a) * q, mr = a * q + (1 - a) * p;
            double g = e.f * (q - p) + e.r * q * (lq[j] - lp[j] - rkl) +
                       0.5 * e.t * q * ((q > p ? 1 : q < p ? -1 : 0) - tvd_s);
            if (e.j > 0) g += e.j * q * (1 - b) * (lq[j] - log(mj) - kqm);
            if (e.k > 0) g += e.k * (1 - a) * q * (sk_r - p / mk);
            if (e.sr > 0) g += e.sr * q * (lq[j] - log(mr) - a * q / mr - sr_h);
            dlogits[(size_t)i * ld_s + j] += (float)(row_w[i] * T * T * g / T);
        }
    }
    free(lq), free(lp);
}
