/* local_search.c: OSSCAR's local search after the greedy pass (ALGORITHMS.md §3, which FMCHISEL
 * lacks): swap one removed and one kept group while the objective E(R) = ½ tr(B_Rᵀ (G_RR)⁻¹ B_R)
 * strictly decreases.
 *
 * Everything is exact given G = (H_λ)⁻¹ (osscar_internal.h). With Q = (G_RR)⁻¹ and Z = Q B_R:
 *   - adding removed group r back lowers E by gain_r = ½ tr(Z_rᵀ (Q_rr)⁻¹ Z_r) (the Schur
 *     complement of H on the support S ∪ {r}, written through Q);
 *   - then removing kept group s raises it by Δ_s = ½ tr(b_sᵀ K_s⁻¹ b_s), the greedy's score on the
 *     support S ∪ {r}: b_s = B̂_s + P_s (Q_rr)⁻¹ Z_r and K_s = (G_ss − M_s G_Rsᵀ) + P_s (Q_rr)⁻¹ P_sᵀ,
 *     where B̂_S = B_S − G_SR Z is the current re-fit, M = G_SR Q and P_s = M[s, r].
 * So a swap (r, s) changes E by Δ_s − gain_r, computed in O(|S| · gs² · out) per candidate r once
 * Q, Z and M are known (O(|R|³ + |S| · |R|²) per iteration). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "kernels/dense64.h"
#include "stages/prune/osscar_internal.h"

enum { LS_CANDIDATES = 8 }; /* removed groups of largest gain tried per iteration */
/* A swap must lower E by more than this fraction of E: rounding in the gain and cost formulas is
 * about cond(H_λ) · 1e-16 relative, far below it. */
#define LS_MARGIN 1e-9

typedef struct {
    int q, ns, m, gs, out;
    int *rp, *sp;              /* column positions of removed [q] and kept [ns] groups */
    double *qm, *l, *z, *br;   /* Q [q, q], Cholesky scratch [q, q], Z [q, out], B_R [q, out] */
    double *gsr, *mm, *bh;     /* G_SR [ns, q], M [ns, q], B̂_S [ns, out] */
    double *schur;             /* [ns/gs, gs, gs] diagonal blocks of (H_SS)⁻¹ */
    double *gain;              /* [q/gs] */
    double *kb, *bb, *qinv, *y, *work; /* per-group scratch */
} ls_state;

static void ls_free(ls_state *s) {
    free(s->rp), free(s->sp), free(s->qm), free(s->l), free(s->z), free(s->br), free(s->gsr), free(s->mm);
    free(s->bh), free(s->schur), free(s->gain), free(s->kb), free(s->bb), free(s->qinv), free(s->y), free(s->work);
}

static int ls_alloc(ls_state *s, const osscar_prob *p, int q) {
    memset(s, 0, sizeof *s);
    s->q = q, s->ns = p->m - q, s->m = p->m, s->gs = p->gs, s->out = p->out;
    const size_t gs = (size_t)p->gs, out = (size_t)p->out, Q = (size_t)q, NS = (size_t)s->ns;
    s->rp = xmalloc(sizeof(int) * Q);
    s->sp = xmalloc(sizeof(int) * NS);
    s->qm = xmalloc(sizeof(double) * Q * Q);
    s->l = xmalloc(sizeof(double) * Q * Q);
    s->z = xmalloc(sizeof(double) * Q * out);
    s->br = xmalloc(sizeof(double) * Q * out);
    s->gsr = xmalloc(sizeof(double) * NS * Q);
    s->mm = xmalloc(sizeof(double) * NS * Q);
    s->bh = xmalloc(sizeof(double) * NS * out);
    s->schur = xmalloc(sizeof(double) * NS * gs);
    s->gain = xmalloc(sizeof(double) * (Q / gs));
    s->kb = xmalloc(sizeof(double) * gs * gs);
    s->bb = xmalloc(sizeof(double) * gs * out);
    s->qinv = xmalloc(sizeof(double) * gs * gs * 2);
    s->y = xmalloc(sizeof(double) * gs * out);
    s->work = xmalloc(sizeof(double) * (gs * gs + gs * out));
    if (!s->rp || !s->sp || !s->qm || !s->l || !s->z || !s->br || !s->gsr || !s->mm || !s->bh || !s->schur ||
        !s->gain || !s->kb || !s->bb || !s->qinv || !s->y || !s->work)
        return -1;
    return 0;
}

/* Q, Z, E, B̂_S, M, the kept groups' diagonal blocks and every removed group's gain. */
static int ls_prepare(ls_state *s, const osscar_prob *p, const unsigned char *removed, double *e) {
    const int q = s->q, ns = s->ns, m = s->m, gs = s->gs, out = s->out;
    int nr = 0, nk = 0;
    for (int i = 0; i < p->n_live; i++)
        for (int c = 0; c < gs; c++) {
            if (removed[i]) s->rp[nr++] = i * gs + c;
            else s->sp[nk++] = i * gs + c;
        }
    for (int i = 0; i < q; i++)
        for (int j = 0; j < q; j++) s->l[(size_t)i * q + j] = p->G[(size_t)s->rp[i] * m + s->rp[j]];
    if (d_cholesky(s->l, q, q) || d_chol_inverse(s->qm, q, s->l, q, q)) return err_prefix("local search: ");
    for (int i = 0; i < q; i++) memcpy(s->br + (size_t)i * out, p->B + (size_t)s->rp[i] * out, sizeof(double) * out);
    d_gemm(s->z, out, s->qm, q, 0, s->br, out, 0, q, out, q, 1.0, 0.0);
    double t = 0;
    for (size_t i = 0; i < (size_t)q * out; i++) t += s->br[i] * s->z[i];
    *e = 0.5 * t;
    for (int i = 0; i < ns; i++) {
        for (int j = 0; j < q; j++) s->gsr[(size_t)i * q + j] = p->G[(size_t)s->sp[i] * m + s->rp[j]];
        memcpy(s->bh + (size_t)i * out, p->B + (size_t)s->sp[i] * out, sizeof(double) * out);
    }
    d_gemm(s->mm, q, s->gsr, q, 0, s->qm, q, 0, ns, q, q, 1.0, 0.0);
    d_gemm(s->bh, out, s->gsr, q, 0, s->z, out, 0, ns, out, q, -1.0, 1.0);
    for (int g = 0; g < ns / gs; g++)
        for (int a = 0; a < gs; a++)
            for (int b = 0; b < gs; b++) {
                const int ia = g * gs + a, ib = g * gs + b;
                double v = p->G[(size_t)s->sp[ia] * m + s->sp[ib]];
                for (int c = 0; c < q; c++) v -= s->mm[(size_t)ia * q + c] * s->gsr[(size_t)ib * q + c];
                s->schur[((size_t)g * gs + a) * gs + b] = v;
            }
    for (int r = 0; r < q / gs; r++) {
        for (int a = 0; a < gs; a++)
            memcpy(s->kb + (size_t)a * gs, s->qm + (size_t)(r * gs + a) * q + r * gs, sizeof(double) * gs);
        if (osscar_block_cost(&s->gain[r], s->kb, s->z + (size_t)r * gs * out, gs, out, s->work))
            return err_set(ERR_STAGE, "local search: a diagonal block of (G_RR)⁻¹ is not positive definite; raise damp");
    }
    return 0;
}

/* For removed group r (index among the removed): the kept group whose removal after adding r back
 * costs least (*best_s, an index among the kept) and that cost. */
static int ls_best_drop(ls_state *s, int r, int *best_s, double *best_cost) {
    const int q = s->q, gs = s->gs, out = s->out, nk = s->ns / gs;
    double *qrr = s->qinv, *qi = s->qinv + (size_t)gs * gs;
    for (int a = 0; a < gs; a++) memcpy(qrr + (size_t)a * gs, s->qm + (size_t)(r * gs + a) * q + r * gs, sizeof(double) * gs);
    if (d_cholesky(qrr, gs, gs) || d_chol_inverse(qi, gs, qrr, gs, gs)) return err_prefix("local search: ");
    d_gemm(s->y, out, qi, gs, 0, s->z + (size_t)r * gs * out, out, 0, gs, out, gs, 1.0, 0.0); /* (Q_rr)⁻¹ Z_r */
    *best_s = -1;
    *best_cost = INFINITY;
    for (int k = 0; k < nk; k++) {
        /* P_k = M[k, r] [gs, gs]; b = B̂_k + P_k y; K = schur_k + P_k (Q_rr)⁻¹ P_kᵀ */
        const double *pk = s->mm + (size_t)k * gs * q + r * gs;
        memcpy(s->bb, s->bh + (size_t)k * gs * out, sizeof(double) * (size_t)gs * out);
        d_gemm(s->bb, out, pk, q, 0, s->y, out, 0, gs, out, gs, 1.0, 1.0);
        memcpy(s->kb, s->schur + (size_t)k * gs * gs, sizeof(double) * (size_t)gs * gs);
        for (int a = 0; a < gs; a++)
            for (int b = 0; b < gs; b++) {
                double v = 0;
                for (int c = 0; c < gs; c++)
                    for (int d = 0; d < gs; d++) v += pk[(size_t)a * q + c] * qi[c * gs + d] * pk[(size_t)b * q + d];
                s->kb[a * gs + b] += v;
            }
        double cost;
        if (osscar_block_cost(&cost, s->kb, s->bb, gs, out, s->work)) continue; /* not a valid support */
        if (cost < *best_cost) *best_cost = cost, *best_s = k;
    }
    return 0;
}

int osscar_local_search(unsigned char *removed, int *swaps, const osscar_prob *p, int iterations) {
    *swaps = 0;
    int q = 0;
    for (int i = 0; i < p->n_live; i++) q += removed[i] ? p->gs : 0;
    if (q == 0 || q == p->m || iterations <= 0) return 0;
    ls_state s;
    int rc = -1;
    if (ls_alloc(&s, p, q)) goto done;
    const int n_rm = q / p->gs;
    int *order = xmalloc(sizeof(int) * (size_t)n_rm), *rm_group = xmalloc(sizeof(int) * (size_t)n_rm),
        *kept_group = xmalloc(sizeof(int) * (size_t)(p->n_live - n_rm));
    if (!order || !rm_group || !kept_group) {
        free(order), free(rm_group), free(kept_group);
        goto done;
    }
    for (int it = 0; it < iterations; it++) {
        double e = 0;
        if (ls_prepare(&s, p, removed, &e)) goto out;
        int nr = 0, nk = 0;
        for (int i = 0; i < p->n_live; i++) {
            if (removed[i]) rm_group[nr++] = i;
            else kept_group[nk++] = i;
        }
        /* the LS_CANDIDATES removed groups of largest gain (ties: the lower group) */
        for (int i = 0; i < n_rm; i++) order[i] = i;
        const int nc = n_rm < LS_CANDIDATES ? n_rm : LS_CANDIDATES;
        for (int i = 0; i < nc; i++) {
            int best = i;
            for (int j = i + 1; j < n_rm; j++)
                if (s.gain[order[j]] > s.gain[order[best]]) best = j;
            int t = order[i];
            order[i] = order[best], order[best] = t;
        }
        double best_impr = 0;
        int best_r = -1, best_k = -1;
        for (int c = 0; c < nc; c++) {
            int k = -1;
            double cost = INFINITY;
            if (ls_best_drop(&s, order[c], &k, &cost)) goto out;
            const double impr = s.gain[order[c]] - cost;
            if (k >= 0 && impr > best_impr) best_impr = impr, best_r = order[c], best_k = k;
        }
        if (best_r < 0 || !(best_impr > LS_MARGIN * e)) break;
        removed[rm_group[best_r]] = 0;
        removed[kept_group[best_k]] = 1;
        (*swaps)++;
    }
    rc = 0;
out:
    free(order), free(rm_group), free(kept_group);
done:
    ls_free(&s);
    return rc;
}
