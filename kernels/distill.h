/* distill.h: divergences between a teacher's and a student's next-token distributions over rows of
 * logits (ALGORITHMS.md section 1), and their gradient with respect to the student's logits. At
 * temperature T: p = softmax(z_teacher / T), q = softmax(z_student / T);
 *   FKL = sum p log(p/q)             d/dz = (q - p) / T
 *   RKL = sum q log(q/p)             d/dz = q (log(q/p) - RKL) / T
 *   JSD(b) = b KL(p||m) + (1-b) KL(q||m), m = b p + (1-b) q
 *                                    d/dz = q (g - sum q g) / T with g = (1-b) log(q/m)
 * Every divergence is multiplied by T^2 (so the gradient scale does not depend on T). */
#ifndef SMELT_KERNELS_DISTILL_H
#define SMELT_KERNELS_DISTILL_H

typedef struct {
    float temperature;           /* T > 0 */
    float beta;                  /* JSD mixture weight in (0, 1) (unused when w_jsd == 0) */
    float w_fkl, w_rkl, w_jsd;   /* weights of the three divergences (>= 0); a term is computed
                                  * only when its weight is > 0 */
} distill_mix;

enum { DISTILL_FKL = 0, DISTILL_RKL = 1, DISTILL_JSD = 2, DISTILL_TERMS = 3 };

/* For each row i with row_w[i] != 0:
 *   terms[3 i + k] ASSIGNED: T^2 * divergence k of the row (unweighted; 0 for terms whose weight is 0),
 *   dlogits[i, :] ACCUMULATED (+=): row_w[i] * d(T^2 (w_fkl FKL + w_rkl RKL + w_jsd JSD)) / d zs.
 * Rows with row_w[i] == 0 get terms 0 and their dlogits row is untouched.
 * zs, zt: [n, vocab] student and teacher logits; row_w: [n]; dlogits: [n, vocab] or NULL.
 * Rows run in parallel; per-row sums are in double in a fixed order (deterministic). */
void distill_rows(double *terms, float *dlogits, const float *zs, const float *zt, const float *row_w,
                  const distill_mix *mix, int n, int vocab);
/* The same in double precision, term by term from the definitions (the test reference). */
void distill_rows_ref(double *terms, float *dlogits, const float *zs, const float *zt, const float *row_w,
                      const distill_mix *mix, int n, int vocab);

#endif
