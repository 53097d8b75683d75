/* osscar.h: structured pruning of one linear layer by groups of input columns (ALGORITHMS.md §3):
 * OSSCAR's greedy backward elimination (scores Δ_g = ½ tr(B_gᵀ [(Hinv)_gg]⁻¹ B_g), rank-|U|
 * downdates), the exact re-fit of the kept weights, an optional local search (swap a removed and a
 * kept group while the objective strictly decreases), and the two baselines (magnitude, activation).
 *
 * Notation: the layer computes y = x Wᵀ with W [out, in]; B = Wᵀ [in, out]; H = Σ x xᵀ [in, in] over
 * the calibration tokens (float64, undamped); H_λ = H + λI with λ = damp · mean(diag H); G = H_λ⁻¹
 * over the live columns. Group g is the columns g·gs .. g·gs + gs - 1. For a removed set R (support
 * S) the best weights are B̂_S = (H_λ)_SS⁻¹ (H_λ B)_S = B_S − G_SR (G_RR)⁻¹ B_R, and the objective
 * rises by E(R) = ½ tr(B_Rᵀ (G_RR)⁻¹ B_R) over the dense weights (the damped layer-wise error / 2).
 *
 * Work: O(in³) for G (Cholesky and inverse), O(in · out · T) for the downdates of B, O(in · T²) for
 * the lazily downdated columns of G (T = removed columns), O(|R|³ + |S| · |R| · out) for the re-fit;
 * each local-search iteration costs about one re-fit more. Memory: about 3 in² + in · (T + 2 out)
 * doubles at the peak. */
#ifndef SMELT_STAGES_PRUNE_OSSCAR_H
#define SMELT_STAGES_PRUNE_OSSCAR_H

typedef enum {
    PRUNE_OSSCAR = 0,  /* greedy backward elimination + exact re-fit (+ local search) */
    PRUNE_MAGNITUDE,   /* remove the groups of smallest Σ_j ‖W_{:,j}‖² (j in the group) */
    PRUNE_ACTIVATION,  /* remove the groups of smallest Σ_j H_jj ‖W_{:,j}‖² (activation-weighted norm) */
} prune_method;

typedef struct {
    prune_method method;
    double damp;         /* λ = damp · mean(diag H) (> 0 unless H is positive definite) */
    int update_every;    /* groups removed per greedy step (>= 1; 1 is the most accurate) */
    int ls_iterations;   /* local search: at most this many swaps (0: none; OSSCAR only) */
    int refit;           /* baselines: re-fit the kept weights exactly (OSSCAR always does) */
    int want_error;      /* compute rel_error (2 in² out more multiply-adds) */
} osscar_opts;

typedef struct {
    double rel_error;          /* ‖X(Ŵ − W)ᵀ‖² / ‖XWᵀ‖² on the calibration inputs (undamped H); NaN if not asked */
    double rel_error_greedy;   /* the same before the local search (equal to rel_error without one) */
    double objective;          /* E(R) of the result */
    double objective_greedy;   /* E(R) before the local search */
    double lambda;             /* the damping added to diag H */
    int removed;               /* groups removed, dead ones included */
    int dead;                  /* groups whose inputs are all zero (diag H) or whose weights are all zero */
    int ls_swaps;              /* swaps the local search kept */
    double sec_factor, sec_inverse, sec_greedy, sec_refit; /* seconds: Cholesky of H_λ, G from it, the greedy
                                                              elimination, its re-fit (for benchmarks) */
} osscar_stats;

/* Prunes n_remove of the n_groups groups of gs input columns of one linear layer.
 *   w     [out, in] fp32, in = n_groups · gs: updated in place, removed columns zeroed and the kept
 *         ones re-fitted (baselines without refit: kept columns unchanged);
 *   keep  [n_groups]: 1 for a kept group, 0 for a removed one;
 *   st    what happened (may be NULL);
 *   h     [in, in] symmetric Gram matrix of the layer's inputs (read only).
 * Dead groups count as removed first (when there are more of them than n_remove, the lowest-numbered
 * are removed and the others stay, contributing nothing on the calibration data). 0, or -1 (ERR_INPUT
 * for bad sizes, ERR_STAGE when H_λ is not positive definite: raise damp, ERR_NOMEM). */
int osscar_prune(float *w, unsigned char *keep, osscar_stats *st, const double *h, int out, int n_groups, int gs,
                 int n_remove, const osscar_opts *o);

const char *prune_method_name(prune_method m);

#endif
