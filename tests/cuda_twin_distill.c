/* cuda_twin_distill.c: the distillation case of test_cuda_ops: cu_distill_rows against
 * distill_rows_ref (double) on the same logits, with per-row bounds on the three divergences and
 * per-element bounds on the gradient.
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

void tw_distill_case(int n, int vocab, float temp, float wf, float wr, float wj, cu_dtype dt) {
    const size_t nv = (size_t)n * vocab;
    const distill_mix mix = {.temperature = temp, .beta = 0.4f, .w_fkl = wf, .w_rkl = wr, .w_jsd = wj};
    float *zs = tw_randn(nv, 2, dt), *zt = tw_randn(nv, 2, dt), *d0 = tw_randn(nv, 0.01, dt), *rw = tw_falloc(n);
    for (int i = 0; i < n; i++) rw[i] = i == 1 ? 0.0f : (float)(0.25 + tw_uniform()); /* row 1: skipped */
    float *rd = tw_falloc(nv), *got = tw_falloc(nv), *gt = tw_falloc((size_t)n * 3);
    double *rt = tw_dalloc((size_t)n * 3), *bt = tw_dalloc((size_t)n * 3), *ref = tw_dalloc(nv), *bound = tw_dalloc(nv);
    memcpy(rd, d0, nv * 4);
    distill_rows_ref(rt, rd, zs, zt, rw, &mix, n, vocab);
    void *dzs = tw_put(zs, nv, dt), *dzt = tw_put(zt, nv, dt), *dd = tw_put(d0, nv, dt), *drw = tw_put(rw, n, CU_F32);
    double *dterms = tw_dev((size_t)n * 3 * 8), *hterms = tw_dalloc((size_t)n * 3);
    TW_TRY(cu_distill_rows(tw_ctx, dterms, dd, dzs, dzt, drw, &mix, n, vocab, dt));
    tw_get(got, dd, nv, dt);
    TW_TRY(cu_download(tw_ctx, hterms, dterms, (size_t)n * 3 * 8));
    for (size_t i = 0; i < (size_t)n * 3; i++) gt[i] = (float)hterms[i];

    const double T = temp, b = mix.beta, b1 = 1 - b;
    for (int i = 0; i < n; i++) {
        const float *s = zs + (size_t)i * vocab, *t = zt + (size_t)i * vocab;
        for (int j = 0; j < vocab; j++) ref[(size_t)i * vocab + j] = rd[(size_t)i * vocab + j];
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
        double *tb = bt + 3 * (size_t)i;
        tb[DISTILL_FKL] = T * T * bf + 1e-30;
        tb[DISTILL_RKL] = T * T * br + 1e-30;
        tb[DISTILL_JSD] = T * T * (b * bpm + b1 * bqm) + 1e-30;
        /* the gradient: H, the bracket ("inner"), G = wf (q - p) + q inner, and w T G */
        const double H = wr * rkl + wj * b1 * kqm, dH = wr * br + wj * b1 * bqm + EPS32 * fabs(H);
        for (int j = 0; j < vocab; j++) {
            const size_t o = (size_t)i * vocab + j;
            const double lq = (s[j] - ms) / T - ls, lp = (t[j] - mt) / T - lt, q = exp(lq), p = exp(lp);
            const double dq = q * (es + 2 * EPS32), dp = p * (et + 2 * EPS32), m = b * p + b1 * q, lm = log(m);
            const double dlm = (b * dp + b1 * dq) / m + (3 + fabs(lm)) * EPS32;
            const double inner = wr * (lq - lp) + wj * b1 * (lq - lm) - H;
            const double dinner = wr * (es + et) + wj * b1 * (es + dlm) + dH +
                                  4 * EPS32 * (wr * fabs(lq - lp) + wj * b1 * fabs(lq - lm) + fabs(H));
            const double G = wf * (q - p) + q * inner;
            const double dG = wf * (dq + dp) + dq * fabs(inner) + q * dinner + 3 * EPS32 * (wf * (q + p) + q * fabs(inner));
            bound[o] = rw[i] * T * (dG + 2 * EPS32 * fabs(G)) + (EPS32 + tw_u(dt)) * fabs(rd[o]) + tw_eta(dt);
        }
    }
    char shape[96], what[16];
    snprintf(shape, sizeof shape, "n%d V%d T%g w%g/%g/%g", n, vocab, (double)temp, (double)wf, (double)wr, (double)wj);
    snprintf(what, sizeof what, "terms");
    tw_report("distill_rows", shape, dt, what, tw_worst(gt, rt, bt, (size_t)n * 3));
    tw_report("distill_rows", shape, dt, "dlogits", tw_worst(got, ref, bound, nv));
    free(zs), free(zt), free(d0), free(rw), free(rd), free(got), free(gt), free(rt), free(bt), free(ref), free(bound);
    free(hterms);
    tw_free_all();
}
