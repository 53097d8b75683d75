/* cuda_twin_distill.c: the distillation case of test_cuda_ops: cu_distill_rows against
 * distill_rows_ref (double) on the same logits, with per-row bounds on the three divergences and
 * per-element bounds on the gradient.
 *
 * Beside the CPU's: rows padded beyond vocab (strides), beta at 0 and 1 (JSD is FKL or RKL there),
 * and the refusal of TVD, SKL and SRKL (not written for CUDA yet).
 *
 * Derivation. For one side (student s or teacher t) with row max m, range R = max|z - m| and
 * lse = log sum exp((z - m)/T), the device's log-probabilities (z - m)/T - lse are off by at most
 *   eps = (V + 8) EPS32 + 2 EPS32 (R/T + lse)
 * (V exponentials summed, the log, and three operations on numbers of size R/T and lse), each
 * probability by a relative eps + 2 EPS32 (its __expf-free expf). Then, term by term,
 *   FKL = sum p (lp - lq):  sum [dp |lp - lq| + p (eps_s + eps_t) + 2 EPS32 p |lp - lq|],
 * RKL likewise with q, and the JSD's KL(p||m), KL(q||m) with lm = log(b p + (1-b) q), off by
 * (b dp + (1-b) dq) / m + (3 + |lm|) EPS32; the terms carry T^2. The gradient
 *   d += w T [wf (q - p) + q (wr (lq - lp) + wj (1-b)(lq - lm) - H)],  H = wr RKL + wj (1-b) KL(q||m)
 * propagates those errors through its few operations (written out below), plus the store in dt. */
#include "cuda_twin.h"

#include "kernels/distill.h"

/* max, range and lse of a row at temperature T (double) */
static void side_stats(const float *z, int v, double T, double *mx, double *R, double *lse) {
    double m = -INFINITY, lo = INFINITY, s = 0;
    for (int j = 0; j < v; j++) m = fmax(m, z[j]), lo = fmin(lo, z[j]);
    for (int j = 0; j < v; j++) s += exp((z[j] - m) / T);
    *mx = m, *R = m - lo, *lse = log(s);
}

void tw_distill_case(int n, int vocab, float temp, float wf, float wr, float wj, float beta, cu_dtype dt) {
    /* rows padded beyond vocab (a padded LM head): the padding holds large logits that would change
     * every probability if read, and its dlogits must stay untouched (bound 0) */
    const int ls_ = vocab + 3, lt_ = vocab + 1;
    const size_t ns = (size_t)n * ls_, nt = (size_t)n * lt_;
    const distill_mix mix = {.temperature = temp, .beta = beta, .w_fkl = wf, .w_rkl = wr, .w_jsd = wj};
    float *zs = tw_randn(ns, 2, dt), *zt = tw_randn(nt, 2, dt), *d0 = tw_randn(ns, 0.01, dt), *rw = tw_falloc(n);
    for (int i = 0; i < n; i++) {
        for (int j = vocab; j < ls_; j++) zs[(size_t)i * ls_ + j] = 30;
        for (int j = vocab; j < lt_; j++) zt[(size_t)i * lt_ + j] = 30;
    }
    for (int i = 0; i < n; i++) rw[i] = i == 1 ? 0.0f : (float)(0.25 + tw_uniform()); /* row 1: skipped */
    const size_t nterms = (size_t)n * DISTILL_TERMS;
    float *rd = tw_falloc(ns), *got = tw_falloc(ns), *gt = tw_falloc(nterms);
    double *rt = tw_dalloc(nterms), *bt = tw_dalloc(nterms), *ref = tw_dalloc(ns), *bound = tw_dalloc(ns);
    memcpy(rd, d0, ns * 4);
    distill_rows_ref(rt, rd, zs, ls_, zt, lt_, rw, &mix, n, vocab);
    void *dzs = tw_put(zs, ns, dt), *dzt = tw_put(zt, nt, dt), *dd = tw_put(d0, ns, dt), *drw = tw_put(rw, n, CU_F32);
    double *dterms = tw_dev(nterms * 8), *hterms = tw_dalloc(nterms);
    TW_TRY(cu_distill_rows(tw_ctx, dterms, dd, dzs, ls_, dzt, lt_, drw, &mix, n, vocab, dt));
    tw_get(got, dd, ns, dt);
    TW_TRY(cu_download(tw_ctx, hterms, dterms, nterms * 8));
    for (size_t i = 0; i < nterms; i++) gt[i] = (float)hterms[i];

    /* the effective weights (distill.h): JSD at b = 0 or 1 is FKL or RKL */
    const double T = temp, b = beta, b1 = 1 - b;
    const double ef = wf + (b <= 0 ? wj : 0), er = wr + (b >= 1 ? wj : 0), ej = b > 0 && b < 1 ? wj : 0;
    for (size_t o = 0; o < ns; o++) ref[o] = rd[o]; /* padding and skipped rows: bound 0 */
    for (int i = 0; i < n; i++) {
        const float *s = zs + (size_t)i * ls_, *t = zt + (size_t)i * lt_;
        if (rw[i] == 0) continue; /* terms 0 and the row untouched: bound 0 */
        double ms, Rs, ls, mt, Rt, lt;
        side_stats(s, vocab, T, &ms, &Rs, &ls);
        side_stats(t, vocab, T, &mt, &Rt, &lt);
        const double es = (vocab + 8) * EPS32 + 2 * EPS32 * (Rs / T + ls), et = (vocab + 8) * EPS32 + 2 * EPS32 * (Rt / T + lt);
        double bf = 0, br = 0, bpm = 0, bqm = 0, rkl = 0, kqm = 0;
        for (int j = 0; j < vocab; j++) {
            const double lq = (s[j] - ms) / T - ls, lp = (t[j] - mt) / T - lt, q = exp(lq), p = exp(lp);
            const double dq = q * (es + 2 * EPS32), dp = p * (et + 2 * EPS32), m = b * p + b1 * q, lm = log(m);
            const double dlm = (b * dp + b1 * dq) / m + (3 + fabs(lm)) * EPS32;
            bf += dp * fabs(lp - lq) + p * (es + et) + 2 * EPS32 * p * fabs(lp - lq);
            br += dq * fabs(lq - lp) + q * (es + et) + 2 * EPS32 * q * fabs(lq - lp);
            bpm += dp * fabs(lp - lm) + p * (et + dlm) + 2 * EPS32 * p * fabs(lp - lm);
            bqm += dq * fabs(lq - lm) + q * (es + dlm) + 2 * EPS32 * q * fabs(lq - lm);
            rkl += q * (lq - lp), kqm += q * (lq - lm);
        }
        double *tb = bt + DISTILL_TERMS * (size_t)i; /* TVD, SKL, SRKL: weight 0, term 0, bound 0 */
        tb[DISTILL_FKL] = T * T * bf + 1e-30;
        tb[DISTILL_RKL] = T * T * br + 1e-30;
        tb[DISTILL_JSD] = T * T * (b <= 0 ? bf : b >= 1 ? br : b * bpm + b1 * bqm) + 1e-30;
        /* the gradient: H, the bracket ("inner"), G = ef (q - p) + q inner, and w T G */
        const double H = er * rkl + ej * b1 * kqm, dH = er * br + ej * b1 * bqm + EPS32 * fabs(H);
        for (int j = 0; j < vocab; j++) {
            const size_t o = (size_t)i * ls_ + j;
            const double lq = (s[j] - ms) / T - ls, lp = (t[j] - mt) / T - lt, q = exp(lq), p = exp(lp);
            const double dq = q * (es + 2 * EPS32), dp = p * (et + 2 * EPS32), m = b * p + b1 * q, lm = log(m);
            const double dlm = (b * dp + b1 * dq) / m + (3 + fabs(lm)) * EPS32;
            const double lqm = ej > 0 ? lq - lm : 0, dlqm = ej > 0 ? es + dlm : 0;
            const double inner = er * (lq - lp) + ej * b1 * lqm - H;
            const double dinner = er * (es + et) + ej * b1 * dlqm + dH +
                                  4 * EPS32 * (er * fabs(lq - lp) + ej * b1 * fabs(lqm) + fabs(H));
            const double G = ef * (q - p) + q * inner;
            const double dG = ef * (dq + dp) + dq * fabs(inner) + q * dinner + 3 * EPS32 * (ef * (q + p) + q * fabs(inner));
            bound[o] = rw[i] * T * (dG + 2 * EPS32 * fabs(G)) + (EPS32 + tw_u(dt)) * fabs(rd[o]) + tw_eta(dt);
        }
    }
    char shape[96], what[16];
    snprintf(shape, sizeof shape, "n%d V%d T%g w%g/%g/%g b%g", n, vocab, (double)temp, (double)wf, (double)wr, (double)wj,
             (double)beta);
    snprintf(what, sizeof what, "terms");
    tw_report("distill_rows", shape, dt, what, tw_worst(gt, rt, bt, nterms));
    tw_report("distill_rows", shape, dt, "dlogits", tw_worst(got, ref, bound, ns));
    free(zs), free(zt), free(d0), free(rw), free(rd), free(got), free(gt), free(rt), free(bt), free(ref), free(bound);
    free(hterms);
    tw_free_all();
}

/* The losses the CUDA kernel does not have yet are refused with a message naming them. */
void tw_distill_refusals(void) {
    const distill_mix mix = {.temperature = 1, .beta = 0.5f, .w_fkl = 1, .w_tvd = 0.5f};
    const int ok = cu_distill_rows(tw_ctx, NULL, NULL, NULL, 8, NULL, 8, NULL, &mix, 2, 8, CU_F32) == -1 &&
                   strstr(err_msg(), "TVD") && strstr(err_msg(), "device: cpu");
    tw_report("distill_rows", "TVD refused", CU_F32, "message", ok ? 0 : INFINITY);
}
