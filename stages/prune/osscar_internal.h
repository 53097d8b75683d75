/* osscar_internal.h: what osscar.c (greedy elimination, re-fit, baselines) and local_search.c
 * share: one layer's problem restricted to its live groups. Live group i owns the live columns
 * i·gs .. i·gs + gs - 1 (positions into G and B below). */
#ifndef SMELT_STAGES_PRUNE_OSSCAR_INTERNAL_H
#define SMELT_STAGES_PRUNE_OSSCAR_INTERNAL_H

typedef struct {
    int gs, out;
    int n_live;       /* live groups */
    int m;            /* live columns: n_live · gs */
    const double *G;  /* [m, m] (H_λ)⁻¹ over the live columns */
    const double *B;  /* [m, out] the dense weights of the live columns (B = Wᵀ) */
} osscar_prob;

/* The exact re-fit for the removed set (removed[i] != 0 for removed live group i):
 * bhat [m, out] = B_S − G_SR (G_RR)⁻¹ B_R on the kept rows, 0 on the removed rows; *objective =
 * E(R) = ½ tr(B_Rᵀ (G_RR)⁻¹ B_R). bhat may be NULL (objective only). 0 or -1. */
int osscar_refit(double *bhat, double *objective, const osscar_prob *p, const unsigned char *removed);

/* Greedy backward elimination of n_remove live groups, update_every per step: sets removed[]. */
int osscar_greedy(unsigned char *removed, const osscar_prob *p, int n_remove, int update_every);

/* Local search from the removed set in removed[]: each iteration tries the removed groups of
 * largest gain (the objective's fall when one is added back) against the kept group whose
 * removal costs least afterwards, and keeps the best swap when it lowers E(R) by more than a
 * rounding margin; it stops when no swap does or after `iterations` swaps. *swaps counts them. */
int osscar_local_search(unsigned char *removed, int *swaps, const osscar_prob *p, int iterations);

/* ½ tr(bᵀ K⁻¹ b) for a symmetric positive definite block k [gs, gs] and b [gs, out]; work holds
 * gs·gs + gs·out doubles. For gs == 1: ½ ‖b‖² / k. -1 when k is not positive definite. */
int osscar_block_cost(double *cost, const double *k, const double *b, int gs, int out, double *work);

#endif
