/* distill.h: divergences between a teacher's and a student's next-token distributions over rows of
 * logits (ALGORITHMS.md section 1, and the losses of FMCHISEL, LinkedIn's distillation code), and
 * their gradient with respect to the student's logits. At temperature T: p = softmax(z_teacher / T),
 * q = softmax(z_student / T), over the first `vocab` columns of each row (the tokenizer's ids: a
 * head padded beyond them is never compared):
 *   FKL = sum p log(p/q)                      d/dz = (q - p) / T
 *   RKL = sum q log(q/p)                      d/dz = q (log(q/p) - RKL) / T
 *   JSD(b) = b KL(p||m) + (1-b) KL(q||m),     d/dz = q (g - sum q g) / T, g = (1-b) log(q/m)
 *            m = b p + (1-b) q, 0 < b < 1; b = 0 is FKL and b = 1 is RKL exactly (FMCHISEL's and
 *            the paper's convention, not the limits of the formula, which vanish)
 *   TVD = 1/2 sum |p - q|                     d/dz = q (s - sum q s) / (2T), s = sign(q - p)
 *   SKL(a) = KL(p || a p + (1-a) q)           d/dz = (1-a) q (R - r) / T, r = p/m, R = sum q r
 *   SRKL(a) = KL(q || a q + (1-a) p)          d/dz = q (h - sum q h) / T, h = log(q/m) - a q/m
 * Every divergence is multiplied by T^2 (so the gradient scale does not depend on T). The log of a
 * mixture is computed from the log-probabilities (log-add-exp), so it stays finite when both
 * probabilities underflow. */
#ifndef SMELT_KERNELS_DISTILL_H
#define SMELT_KERNELS_DISTILL_H

typedef struct {
    float temperature; /* T > 0 */
    float beta;        /* JSD mixture weight in [0, 1] (unused when w_jsd == 0) */
    float alpha;       /* SKL/SRKL skew in [0, 1) (unused when both weights are 0) */
    float w_fkl, w_rkl, w_jsd, w_tvd, w_skl, w_srkl; /* weights (>= 0); a term is computed only when
                                                      * its weight is > 0 */
} distill_mix;

enum { DISTILL_FKL = 0, DISTILL_RKL, DISTILL_JSD, DISTILL_TVD, DISTILL_SKL, DISTILL_SRKL, DISTILL_TERMS };

/* For each row i with row_w[i] != 0:
 *   terms[DISTILL_TERMS i + k] ASSIGNED: T^2 * divergence k of the row (unweighted; 0 for terms
 *     whose weight is 0),
 *   dlogits[i, 0..vocab) ACCUMULATED (+=): row_w[i] * d(T^2 sum_k w_k D_k) / d zs; columns from
 *     vocab on are untouched.
 * Rows with row_w[i] == 0 get terms 0 and their dlogits row is untouched.
 * zs: [n, ld_s] student logits (dlogits has the same layout; NULL for no gradient); zt: [n, ld_t]
 * teacher logits; only columns [0, vocab) are read (vocab <= ld_s, ld_t); row_w: [n].
 * Rows run in parallel; per-row sums are in double in a fixed order (deterministic). */
void distill_rows(double *terms, float *dlogits, const float *zs, int ld_s, const float *zt, int ld_t,
                  const float *row_w, const distill_mix *mix, int n, int vocab);
/* The same in double precision, term by term from the definitions (the test reference). */
void distill_rows_ref(double *terms, float *dlogits, const float *zs, int ld_s, const float *zt, int ld_t,
                      const float *row_w, const distill_mix *mix, int n, int vocab);

#endif
