/* osscar.c: one layer's structured pruning (osscar.h): dead groups, G = (H_λ)⁻¹ on the live
 * columns, the greedy elimination with lazily downdated columns of G, the exact re-fit, the
 * baselines' selections, and the write-back into the fp32 weights.
 *
 * The greedy keeps the downdates of G as a growing factor V [m, r] (G_current = G − V Vᵀ): a step
 * needs only the columns of the groups it removes (G[:, P] − V V[P, :]ᵀ) and the diagonal blocks,
 * so its cost is O(m · k · r) instead of a pass over the whole m × m matrix. */
#include <float.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "common/log.h"
#include "kernels/dense64.h"
#include "kernels/threads.h"
#include "stages/prune/osscar.h"
#include "stages/prune/osscar_internal.h"

const char *prune_method_name(prune_method m) {
    switch (m) {
    case PRUNE_OSSCAR: return "osscar";
    case PRUNE_MAGNITUDE: return "magnitude";
    case PRUNE_ACTIVATION: return "activation";
    }
    return "?";
}

int osscar_block_cost(double *cost, const double *k, const double *b, int gs, int out, double *work) {
    if (gs == 1) {
        if (!(k[0] > 0)) return -1;
        double s = 0;
        for (int o = 0; o < out; o++) s += b[o] * b[o];
        *cost = 0.5 * s / k[0];
        return 0;
    }
    double *l = work, *y = work + (size_t)gs * gs;
    memcpy(l, k, sizeof(double) * (size_t)gs * gs);
    if (d_cholesky(l, gs, gs)) return -1;
    memcpy(y, b, sizeof(double) * (size_t)gs * out);
    d_trsm_left(y, out, l, gs, gs, out, 0); /* y = L⁻¹ b: bᵀ K⁻¹ b = yᵀ y */
    double s = 0;
    for (size_t i = 0; i < (size_t)gs * out; i++) s += y[i] * y[i];
    *cost = 0.5 * s;
    return 0;
}

/* Gathers rows `rows` [nr] and columns `cols` [nc] of a [.., lda] into dst [nr, nc]. */
static void gather(double *dst, const double *a, int lda, const int *rows, int nr, const int *cols, int nc) {
    for (int i = 0; i < nr; i++) {
        const double *src = a + (size_t)rows[i] * lda;
        double *d = dst + (size_t)i * nc;
        for (int j = 0; j < nc; j++) d[j] = src[cols[j]];
    }
}

/* Column positions of the live groups with removed[i] == want, in order; returns how many. */
static int positions(int *pos, const unsigned char *removed, int n_live, int gs, int want) {
    int n = 0;
    for (int i = 0; i < n_live; i++)
        if (!!removed[i] == want)
            for (int c = 0; c < gs; c++) pos[n++] = i * gs + c;
    return n;
}

int osscar_refit(double *bhat, double *objective, const osscar_prob *p, const unsigned char *removed) {
    const int m = p->m, out = p->out;
    int *rp = xmalloc(sizeof(int) * (size_t)(m ? m : 1)), *sp = xmalloc(sizeof(int) * (size_t)(m ? m : 1));
    if (!rp || !sp) return free(rp), free(sp), -1;
    const int q = positions(rp, removed, p->n_live, p->gs, 1), ns = positions(sp, removed, p->n_live, p->gs, 0);
    double *grr = NULL, *z = NULL, *gsr = NULL;
    int rc = -1;
    *objective = 0;
    if (bhat) memcpy(bhat, p->B, sizeof(double) * (size_t)m * out);
    if (q == 0) {
        rc = 0;
        goto done;
    }
    grr = xmalloc(sizeof(double) * (size_t)q * q);
    z = xmalloc(sizeof(double) * (size_t)q * out);
    if (!grr || !z) goto done;
    gather(grr, p->G, m, rp, q, rp, q);
    if (d_cholesky(grr, q, q)) goto done;
    for (int i = 0; i < q; i++) memcpy(z + (size_t)i * out, p->B + (size_t)rp[i] * out, sizeof(double) * out);
    d_chol_solve(z, out, grr, q, q, out); /* Z = (G_RR)⁻¹ B_R */
    double e = 0;
    for (int i = 0; i < q; i++)
        for (int o = 0; o < out; o++) e += p->B[(size_t)rp[i] * out + o] * z[(size_t)i * out + o];
    *objective = 0.5 * e;
    if (bhat) {
        if (ns > 0) {
            gsr = xmalloc(sizeof(double) * (size_t)ns * q);
            double *bs = xmalloc(sizeof(double) * (size_t)ns * out);
            if (!gsr || !bs) {
                free(bs);
                goto done;
            }
            gather(gsr, p->G, m, sp, ns, rp, q);
            for (int i = 0; i < ns; i++) memcpy(bs + (size_t)i * out, p->B + (size_t)sp[i] * out, sizeof(double) * out);
            d_gemm(bs, out, gsr, q, 0, z, out, 0, ns, out, q, -1.0, 1.0); /* B_S − G_SR Z */
            for (int i = 0; i < ns; i++) memcpy(bhat + (size_t)sp[i] * out, bs + (size_t)i * out, sizeof(double) * out);
            free(bs);
        }
        for (int i = 0; i < q; i++) memset(bhat + (size_t)rp[i] * out, 0, sizeof(double) * out);
    }
    rc = 0;
done:
    free(rp), free(sp), free(grr), free(z), free(gsr);
    return rc;
}

typedef struct {
    double score;
    int group, slot; /* slot: the greedy's row block of the group (osscar_greedy) */
} scored;

static int cmp_scored(const void *a, const void *b) {
    const scored *x = a, *y = b;
    if (x->score < y->score) return -1;
    if (x->score > y->score) return 1;
    return (x->group > y->group) - (x->group < y->group);
}

/* The greedy's per-row state, by slots: slot i holds live group ord[i] (its gs rows of B_current, of
 * V and its diagonal block of G_current; col[] maps row slots to columns of G). Removing a group
 * moves the last live slot into its place, so the live rows stay the first live·gs rows and every
 * product of a step runs over them alone (rows of removed groups are never read again). */
typedef struct {
    double *bc, *v, *blk;
    int *ord, *col;
    int live, gs, out, cap;
} greedy_rows;

static void drop_slot(greedy_rows *g, int sl, int r) {
    const int last = --g->live, gs = g->gs;
    if (sl == last) return;
    g->ord[sl] = g->ord[last];
    memcpy(g->col + (size_t)sl * gs, g->col + (size_t)last * gs, sizeof(int) * gs);
    memcpy(g->bc + (size_t)sl * gs * g->out, g->bc + (size_t)last * gs * g->out, sizeof(double) * gs * g->out);
    memcpy(g->blk + (size_t)sl * gs * gs, g->blk + (size_t)last * gs * gs, sizeof(double) * gs * gs);
    for (int a = 0; a < gs; a++)
        memcpy(g->v + ((size_t)sl * gs + a) * g->cap, g->v + ((size_t)last * gs + a) * g->cap, sizeof(double) * r);
}

static int cmp_slot_desc(const void *a, const void *b) {
    const int x = ((const scored *)a)->slot, y = ((const scored *)b)->slot;
    return (x < y) - (x > y);
}

int osscar_greedy(unsigned char *removed, const osscar_prob *p, int n_remove, int update_every) {
    const int m = p->m, out = p->out, gs = p->gs, nl = p->n_live, u = update_every < 1 ? 1 : update_every;
    memset(removed, 0, (size_t)nl);
    if (n_remove <= 0) return 0;
    const int cap = n_remove * gs, kmax = (u < n_remove ? u : n_remove) * gs;
    greedy_rows gr = {.bc = xmalloc(sizeof(double) * (size_t)m * out),
                      .v = xmalloc(sizeof(double) * (size_t)m * cap), /* G_current = G − V Vᵀ */
                      .blk = xmalloc(sizeof(double) * (size_t)nl * gs * gs), /* diagonal blocks of G_current */
                      .ord = xmalloc(sizeof(int) * (size_t)nl),
                      .col = xmalloc(sizeof(int) * (size_t)m),
                      .live = nl, .gs = gs, .out = out, .cap = cap};
    double *hc = xmalloc(sizeof(double) * (size_t)m * kmax);
    double *vp = xmalloc(sizeof(double) * (size_t)kmax * cap);
    double *kk = xmalloc(sizeof(double) * (size_t)kmax * kmax);
    double *t1 = xmalloc(sizeof(double) * (size_t)kmax * out);
    double *work = xmalloc(sizeof(double) * ((size_t)gs * gs + (size_t)gs * out) * (size_t)kernels_threads());
    double *cost = xmalloc(sizeof(double) * (size_t)nl);
    scored *sc = xmalloc(sizeof(scored) * (size_t)nl);
    int *pos = xmalloc(sizeof(int) * (size_t)kmax);
    int rc = -1;
    if (!gr.bc || !gr.v || !gr.blk || !gr.ord || !gr.col || !hc || !vp || !kk || !t1 || !work || !cost || !sc || !pos)
        goto done;
    double *bc = gr.bc, *v = gr.v, *blk = gr.blk;
    memcpy(bc, p->B, sizeof(double) * (size_t)m * out);
    for (int g = 0; g < nl; g++) {
        gr.ord[g] = g;
        for (int a = 0; a < gs; a++)
            memcpy(blk + ((size_t)g * gs + a) * gs, p->G + (size_t)(g * gs + a) * m + g * gs, sizeof(double) * gs);
    }
    for (int i = 0; i < m; i++) gr.col[i] = i;
    const int steps = (n_remove + u - 1) / u;
    int r = 0; /* columns of V in use */
    for (int s = 0; s < steps; s++) {
        /* T spread evenly over the steps: step s removes floor((s+1)T/steps) - floor(sT/steps) */
        const int kg = (int)((long long)(s + 1) * n_remove / steps - (long long)s * n_remove / steps);
        const int nls = gr.live, ml = nls * gs; /* live slots, live rows */
        /* every live group's cost (a pass over B_current: split over the threads, each group's
         * cost computed alone, so the result does not depend on the split) */
        int bad = nls;
        const int T = kernels_threads_for((double)nls * gs * (gs + out), 1 << 18);
#pragma omp parallel for schedule(static) num_threads(T) if (T > 1) reduction(min : bad)
        for (int i = 0; i < nls; i++) {
            double *wk = work + (size_t)omp_get_thread_num() * ((size_t)gs * gs + (size_t)gs * out);
            if (osscar_block_cost(&cost[i], blk + (size_t)i * gs * gs, bc + (size_t)i * gs * out, gs, out, wk) &&
                i < bad)
                bad = i;
        }
        if (bad < nls) {
            rc = err_set(ERR_STAGE, "OSSCAR: the downdated inverse lost positive definiteness at group %d (step %d of "
                         "%d); raise damp", gr.ord[bad], s + 1, steps);
            goto done;
        }
        for (int i = 0; i < nls; i++) sc[i] = (scored){cost[i], gr.ord[i], i};
        if (kg == 1) { /* the minimum alone */
            int best = 0;
            for (int i = 1; i < nls; i++)
                if (cmp_scored(&sc[i], &sc[best]) < 0) best = i;
            sc[0] = sc[best];
        } else {
            qsort(sc, (size_t)nls, sizeof *sc, cmp_scored);
        }
        const int k = kg * gs;
        for (int i = 0; i < kg; i++)
            for (int c = 0; c < gs; c++) pos[i * gs + c] = sc[i].slot * gs + c;
        /* hc = G[:, P] − V V[P, :]ᵀ on the live rows: the current columns of the removed groups */
        /* G is exactly symmetric (d_chol_inverse mirrors it), so its columns P are its rows P: read
         * them by blocks of rows of hc that stay in cache */
        for (int i0 = 0; i0 < ml; i0 += 256) {
            const int ni = ml - i0 < 256 ? ml - i0 : 256;
            for (int c = 0; c < k; c++) {
                const double *grow = p->G + (size_t)gr.col[pos[c]] * m;
                for (int i = 0; i < ni; i++) hc[(size_t)(i0 + i) * k + c] = grow[gr.col[i0 + i]];
            }
        }
        if (r > 0) {
            for (int c = 0; c < k; c++) memcpy(vp + (size_t)c * r, v + (size_t)pos[c] * cap, sizeof(double) * r);
            d_gemm(hc, k, v, cap, 0, vp, r, 1, ml, k, r, -1.0, 1.0);
        }
        for (int a = 0; a < k; a++)
            for (int c = 0; c < k; c++) kk[(size_t)a * k + c] = hc[(size_t)pos[a] * k + c];
        if (d_cholesky(kk, k, k)) {
            rc = err_prefix("OSSCAR step %d of %d: ", s + 1, steps);
            goto done;
        }
        d_trsm_right_lt(hc, k, kk, k, ml, k); /* V_new = G_current[:, P] L⁻ᵀ */
        for (int a = 0; a < k; a++) memcpy(t1 + (size_t)a * out, bc + (size_t)pos[a] * out, sizeof(double) * out);
        d_trsm_left(t1, out, kk, k, k, out, 0);                     /* L⁻¹ B[P, :] */
        d_gemm(bc, out, hc, k, 0, t1, out, 0, ml, out, k, -1.0, 1.0); /* B −= G[:, P] G[P, P]⁻¹ B[P, :] */
        for (int i = 0; i < nls; i++) {
            const double *vg = hc + (size_t)i * gs * k;
            double *bl = blk + (size_t)i * gs * gs;
            for (int a = 0; a < gs; a++)
                for (int b2 = 0; b2 < gs; b2++) {
                    double t = 0;
                    for (int c = 0; c < k; c++) t += vg[(size_t)a * k + c] * vg[(size_t)b2 * k + c];
                    bl[a * gs + b2] -= t;
                }
        }
        for (int i = 0; i < ml; i++) memcpy(v + (size_t)i * cap + r, hc + (size_t)i * k, sizeof(double) * k);
        r += k;
        for (int i = 0; i < kg; i++) removed[sc[i].group] = 1;
        qsort(sc, (size_t)kg, sizeof *sc, cmp_slot_desc); /* from the last slot down: see drop_slot */
        for (int i = 0; i < kg; i++) drop_slot(&gr, sc[i].slot, r);
    }
    rc = 0;
done:
    free(gr.bc), free(gr.v), free(gr.blk), free(gr.ord), free(gr.col);
    free(hc), free(vp), free(kk), free(t1), free(work), free(cost), free(sc), free(pos);
    return rc;
}

/* The baselines' choice: the n_remove live groups of smallest score. */
static void select_by_score(unsigned char *removed, const osscar_prob *p, const double *hdiag, int n_remove,
                            scored *sc) {
    const int gs = p->gs, out = p->out;
    for (int g = 0; g < p->n_live; g++) {
        double s = 0;
        for (int c = 0; c < gs; c++) {
            const double *b = p->B + (size_t)(g * gs + c) * out;
            double nb = 0;
            for (int o = 0; o < out; o++) nb += b[o] * b[o];
            s += hdiag ? hdiag[g * gs + c] * nb : nb;
        }
        sc[g] = (scored){s, g, g};
    }
    qsort(sc, (size_t)p->n_live, sizeof *sc, cmp_scored);
    memset(removed, 0, (size_t)p->n_live);
    for (int i = 0; i < n_remove; i++) removed[sc[i].group] = 1;
}

/* ‖X Dᵀ‖² / ‖X Wᵀ‖² = tr(Dᵀ H D) / tr(Bᵀ H B) over the live columns cols [m]. */
static int rel_error(double *err, const double *h, int in, const int *cols, const double *b, const double *bhat, int m,
                     int out) {
    double *hl = xmalloc(sizeof(double) * (size_t)m * m), *bd = xmalloc(sizeof(double) * (size_t)m * 2 * out),
           *hbd = xmalloc(sizeof(double) * (size_t)m * 2 * out);
    if (!hl || !bd || !hbd) return free(hl), free(bd), free(hbd), -1;
    gather(hl, h, in, cols, m, cols, m);
    for (int i = 0; i < m; i++)
        for (int o = 0; o < out; o++) {
            const size_t k = (size_t)i * out + o;
            bd[(size_t)i * 2 * out + o] = b[k];
            bd[(size_t)i * 2 * out + out + o] = bhat[k] - b[k];
        }
    d_gemm(hbd, 2 * out, hl, m, 0, bd, 2 * out, 0, m, 2 * out, m, 1.0, 0.0);
    double num = 0, den = 0;
    for (size_t i = 0; i < (size_t)m * 2 * out; i++) {
        const double t = bd[i] * hbd[i];
        if ((i % (2 * (size_t)out)) < (size_t)out) den += t;
        else num += t;
    }
    *err = den > 0 ? num / den : 0;
    free(hl), free(bd), free(hbd);
    return 0;
}

/* The local search from the greedy's removed set; its result (bhat, *obj, removed, the stats)
 * replaces the greedy's only if it really is better once re-fitted from scratch: in the damped
 * objective the search lowers, and in the undamped error when that is measured (the damping's pull
 * toward the dense weights can make the two disagree slightly). */
static int try_local_search(double *bhat, double *obj, unsigned char *removed, osscar_stats *st, const osscar_prob *p,
                            const osscar_opts *o, const double *h, int in, const int *cols) {
    const size_t nb = sizeof(double) * (size_t)p->m * p->out;
    unsigned char *start = xmalloc((size_t)p->n_live);
    double *ls_bhat = xmalloc(nb), obj_ls, err_ls = st->rel_error_greedy;
    int rc = -1;
    if (!start || !ls_bhat) goto done;
    memcpy(start, removed, (size_t)p->n_live);
    if (osscar_local_search(removed, &st->ls_swaps, p, o->ls_iterations)) goto done;
    int better = 0;
    if (st->ls_swaps > 0) {
        if (osscar_refit(ls_bhat, &obj_ls, p, removed) ||
            (o->want_error && rel_error(&err_ls, h, in, cols, p->B, ls_bhat, p->m, p->out)))
            goto done;
        better = obj_ls < *obj && (!o->want_error || err_ls <= st->rel_error_greedy);
    }
    if (better) {
        memcpy(bhat, ls_bhat, nb);
        *obj = obj_ls;
        st->rel_error = err_ls;
    } else {
        memcpy(removed, start, (size_t)p->n_live);
        st->ls_swaps = 0;
    }
    rc = 0;
done:
    free(start), free(ls_bhat);
    return rc;
}

int osscar_prune(float *w, unsigned char *keep, osscar_stats *st, const double *h, int out, int n_groups, int gs,
                 int n_remove, const osscar_opts *o) {
    osscar_stats local;
    if (!st) st = &local;
    memset(st, 0, sizeof *st);
    st->rel_error = st->rel_error_greedy = NAN;
    if (out < 1 || n_groups < 1 || gs < 1 || n_remove < 0 || n_remove >= n_groups)
        return err_set(ERR_INPUT, "OSSCAR: cannot remove %d of %d groups (of %d columns, %d outputs); at least one "
                       "group must stay", n_remove, n_groups, gs, out);
    const int in = n_groups * gs;
    /* dead groups: inputs all zero on the calibration data, or weights all zero */
    unsigned char *dead = xcalloc((size_t)n_groups, 1);
    int *cols = xmalloc(sizeof(int) * (size_t)in), *live_group = xmalloc(sizeof(int) * (size_t)n_groups);
    if (!dead || !cols || !live_group) return free(dead), free(cols), free(live_group), -1;
    double mean_diag = 0;
    for (int j = 0; j < in; j++) mean_diag += h[(size_t)j * in + j];
    mean_diag /= in;
    int n_dead = 0, n_live = 0, m = 0;
    for (int g = 0; g < n_groups; g++) {
        int hzero = 1, wzero = 1;
        for (int c = 0; c < gs; c++) {
            const int j = g * gs + c;
            if (h[(size_t)j * in + j] != 0) hzero = 0;
            for (int r = 0; r < out && wzero; r++) wzero = w[(size_t)r * in + j] == 0;
        }
        if (hzero || wzero) {
            dead[g] = 1;
            n_dead++;
        }
    }
    /* the lowest-numbered dead groups are removed, up to n_remove; the others stay as they are */
    int dead_removed = 0;
    for (int g = 0; g < n_groups; g++) {
        keep[g] = 1;
        if (dead[g] && dead_removed < n_remove) keep[g] = 0, dead_removed++;
        else if (!dead[g]) {
            live_group[n_live++] = g;
            for (int c = 0; c < gs; c++) cols[m++] = g * gs + c;
        }
    }
    const int n_rm_live = n_remove - dead_removed;
    st->dead = n_dead;
    st->lambda = o->damp * mean_diag;
    const double lambda = st->lambda;
    double *b = xmalloc(sizeof(double) * (size_t)(m ? m : 1) * out),
           *bhat = xmalloc(sizeof(double) * (size_t)(m ? m : 1) * out);
    double *g = NULL, *l = NULL;
    unsigned char *removed = xcalloc((size_t)(n_live ? n_live : 1), 1);
    scored *sc = xmalloc(sizeof(scored) * (size_t)(n_live ? n_live : 1));
    double *hdiag = xmalloc(sizeof(double) * (size_t)(m ? m : 1));
    int rc = -1;
    if (!b || !bhat || !removed || !sc || !hdiag) goto done;
    for (int i = 0; i < m; i++) {
        for (int r = 0; r < out; r++) b[(size_t)i * out + r] = w[(size_t)r * in + cols[i]];
        hdiag[i] = h[(size_t)cols[i] * in + cols[i]];
    }
    const int need_g = n_rm_live > 0 && (o->method == PRUNE_OSSCAR || o->refit);
    if (need_g) {
        g = xmalloc(sizeof(double) * (size_t)m * m);
        l = xmalloc(sizeof(double) * (size_t)m * m);
        if (!g || !l) goto done;
        double t0 = time_monotonic();
        gather(l, h, in, cols, m, cols, m);
        for (int i = 0; i < m; i++) l[(size_t)i * m + i] += lambda;
        if (d_cholesky(l, m, m)) {
            err_prefix("OSSCAR: H + λI (λ = %g, damp %g) over %d live columns: ", lambda, o->damp, m);
            goto done;
        }
        st->sec_factor = time_monotonic() - t0;
        t0 = time_monotonic();
        if (d_chol_inverse(g, m, l, m, m)) goto done;
        st->sec_inverse = time_monotonic() - t0;
        free(l);
        l = NULL;
    }
    osscar_prob p = {.gs = gs, .out = out, .n_live = n_live, .m = m, .G = g, .B = b};
    double obj = 0;
    if (o->method == PRUNE_OSSCAR) {
        double t0 = time_monotonic();
        if (osscar_greedy(removed, &p, n_rm_live, o->update_every)) goto done;
        st->sec_greedy = time_monotonic() - t0;
        t0 = time_monotonic();
        if (osscar_refit(bhat, &obj, &p, removed)) goto done;
        st->sec_refit = time_monotonic() - t0;
        st->objective_greedy = obj;
        if (o->want_error && rel_error(&st->rel_error_greedy, h, in, cols, b, bhat, m, out)) goto done;
        if (o->ls_iterations > 0 && n_rm_live > 0 && n_rm_live < n_live &&
            try_local_search(bhat, &obj, removed, st, &p, o, h, in, cols))
            goto done;
        if (st->ls_swaps == 0) st->rel_error = st->rel_error_greedy;
    } else {
        select_by_score(removed, &p, o->method == PRUNE_ACTIVATION ? hdiag : NULL, n_rm_live, sc);
        if (o->refit && n_rm_live > 0) {
            if (osscar_refit(bhat, &obj, &p, removed)) goto done;
        } else {
            memcpy(bhat, b, sizeof(double) * (size_t)m * out);
            for (int i = 0; i < n_live; i++)
                if (removed[i]) memset(bhat + (size_t)i * gs * out, 0, sizeof(double) * (size_t)gs * out);
            obj = NAN; /* E(R) assumes the re-fit */
        }
        st->objective_greedy = obj;
        if (o->want_error && rel_error(&st->rel_error, h, in, cols, b, bhat, m, out)) goto done;
        st->rel_error_greedy = st->rel_error;
    }
    st->objective = obj;
    /* write back: live columns from bhat, removed dead columns zeroed */
    for (int i = 0; i < n_live; i++)
        if (removed[i]) keep[live_group[i]] = 0;
    for (int i = 0; i < m; i++)
        for (int r = 0; r < out; r++) w[(size_t)r * in + cols[i]] = (float)bhat[(size_t)i * out + r];
    for (int gi = 0; gi < n_groups; gi++)
        if (!keep[gi])
            for (int c = 0; c < gs; c++)
                for (int r = 0; r < out; r++) w[(size_t)r * in + gi * gs + c] = 0;
    st->removed = 0;
    for (int gi = 0; gi < n_groups; gi++) st->removed += !keep[gi];
    rc = 0;
done:
    free(dead), free(cols), free(live_group), free(b), free(bhat), free(g), free(l), free(removed);
    free(sc), free(hdiag);
    return rc;
}
