/* test_bf16_attention.c: the fused attention kernels with bf16 products (attn_shape.bf16, the
 * training step in mixed precision) against the double reference, element by element, with bounds
 * derived from bf16's rounding; and the fallback (no AVX512_BF16, forced with
 * bf16_force_portable) bitwise equal to the fp32 kernels.
 *
 * The derivation (u = 2^-8 the unit roundoff of bf16, eps = 2^-23 of fp32; a product of two bf16
 * is exact in fp32, so each bf16 product differs from the exact one by the rounding of both
 * operands, (2u + u^2) relative, plus fp32 summation, gamma = (n + 2) eps over n terms):
 *   - a score s_ij = scale q_i . k_j (length D): |s' - s| <= delta_ij =
 *     (2u + u^2 + (D + 2) eps (1 + u)^2) a_ij, a_ij = scale sum_e |q_ie k_je|.
 *   - forward: the weights w_ij = exp(s_ij) / sum_j exp(s_ij) move by at most a factor
 *     e^(+-2 Delta_i) (Delta_i = max_j delta_ij): |w' - w| <= (e^(2 Delta) - 1) w; P is rounded to
 *     bf16 for P V and V too (2u + u^2), the sum l stays fp32 from the unrounded P. So
 *     |O'_ie - O_ie| <= [(e^(2 Delta_i) - 1) + (2u + u^2) e^(2 Delta_i)] M_ie, M_ie = sum_j w_ij |v_je|,
 *     and |lse' - lse| <= Delta_i; plus the fp32 kernel's own slack, 4 (D + nkv + 4) eps relative
 *     (test_kernels' bound), on M_ie and on |lse| + 1.
 *   - backward (given the reference out and lse): p' = exp(s' - lse) = p e^(+-delta):
 *     |p' - p| <= (e^delta - 1) p =: ep; dP = dO_i . v_j in bf16: |dP' - dP| <= gamma_b A_ij,
 *     A_ij = sum_e |dO_ie v_je|, gamma_b = 2u + u^2 + (D + 2) eps (1 + u)^2; D_i = dO_i . O_i is fp32
 *     in both ((D + 2) eps sum |dO O|). dS = scale p (dP - D_i):
 *     |dS' - dS| <= E_ij = scale [ep (|dP - D_i| + gamma_b A_ij + eD_i) + p (gamma_b A_ij + eD_i)] + 3 eps |dS|.
 *     dV_je = sum_i p_ij dO_ie (bf16 P and dO): <= sum_i [ep + (2u + u^2) (p + ep)] |dO_ie|;
 *     dK_je = sum_i dS_ij q_ie: <= sum_i [E_ij + (2u + u^2) (|dS_ij| + E_ij)] |q_ie|;
 *     dQ_ie = sum_j dS_ij k_je: <= sum_j [E_ij + (2u + u^2) (|dS_ij| + E_ij)] |k_je|;
 *     plus the fp32 sums' slack 8 (D + nkv + nq rep + 4) eps (test_kernels' bound) on the sums of
 *     absolute values, and eps |ref| for the reference's own rounding to float. */
#include "engine_testutil.h"
#include "kernels/attention.h"
#include "kernels/bf16.h"
#include "kernels/threads.h"

#define U_BF16 (1.0 / 256.0)

typedef struct {
    double *fo, *fl, *bq, *bk, *bv; /* bounds of out, lse, dq, dk, dv (the layouts of the buffers) */
} bounds;

/* The bounds of the header over every sequence, head, query and key, in double. */
static void derive(bounds *b, const float *q, const float *k, const float *v, const float *out, const float *lse,
                   const float *dout, const attn_shape *s, const attn_seq *seqs, int ns, int max_nkv, int max_nq) {
    const int D = s->head_dim, rep = s->n_heads / s->n_kv_heads;
    const double u2 = 2 * U_BF16 + U_BF16 * U_BF16, eps = TU_EPS, scale = 1.0 / sqrt((double)D);
    const double gam = u2 + (D + 2) * eps * (1 + U_BF16) * (1 + U_BF16);
    const double c32 = 4.0 * (D + max_nkv + 4) * eps, c32b = 8.0 * (D + max_nkv + max_nq * rep + 4) * eps;
    double *sc = malloc(sizeof(double) * max_nkv), *ab = malloc(sizeof(double) * max_nkv), *w = malloc(sizeof(double) * max_nkv);
    for (int si = 0; si < ns; si++) {
        const attn_seq *a = &seqs[si];
        for (int h = 0; h < s->n_heads; h++) {
            const int g = h / rep;
            for (int i = 0; i < a->nq; i++) {
                const float *qi = q + (size_t)(a->q0 + i) * s->ldq + (size_t)h * D;
                const float *oi = out + (size_t)(a->q0 + i) * s->ldo + (size_t)h * D;
                const float *di = dout + (size_t)(a->q0 + i) * s->ldo + (size_t)h * D;
                const int nvis = a->nkv - a->nq + i + 1;
                double mx = -INFINITY, Delta = 0, l = 0, Di = 0, eDi = 0;
                for (int j = 0; j < nvis; j++) {
                    const float *kj = k + (size_t)(a->k0 + j) * s->ldk + (size_t)g * D;
                    double d = 0, e = 0;
                    for (int x = 0; x < D; x++) d += (double)qi[x] * kj[x], e += fabs((double)qi[x] * kj[x]);
                    sc[j] = d * scale, ab[j] = gam * e * scale;
                    mx = sc[j] > mx ? sc[j] : mx;
                    Delta = ab[j] > Delta ? ab[j] : Delta;
                }
                for (int j = 0; j < nvis; j++) l += w[j] = exp(sc[j] - mx);
                for (int x = 0; x < D; x++) Di += (double)di[x] * oi[x], eDi += fabs((double)di[x] * oi[x]);
                eDi *= (D + 2) * eps;
                const double grow = exp(2 * Delta), lse_i = lse[(size_t)(a->q0 + i) * s->n_heads + h];
                b->fl[(size_t)(a->q0 + i) * s->n_heads + h] = Delta + c32 * (fabs(lse_i) + 1);
                for (int j = 0; j < nvis; j++) {
                    const float *kj = k + (size_t)(a->k0 + j) * s->ldk + (size_t)g * D;
                    const float *vj = v + (size_t)(a->k0 + j) * s->ldv + (size_t)g * D;
                    const double wij = w[j] / l, p = exp(sc[j] - lse_i), ep = (exp(ab[j]) - 1) * p;
                    double dp = 0, A = 0;
                    for (int x = 0; x < D; x++) dp += (double)di[x] * vj[x], A += fabs((double)di[x] * vj[x]);
                    const double ds = scale * p * (dp - Di);
                    const double E = scale * (ep * (fabs(dp - Di) + gam * A + eDi) + p * (gam * A + eDi)) + 3 * eps * fabs(ds);
                    const double fds = E + u2 * (fabs(ds) + E) + c32b * (fabs(ds) + E);
                    const double fp = ep + u2 * (p + ep) + c32b * (p + ep);
                    for (int x = 0; x < D; x++) {
                        b->fo[(size_t)(a->q0 + i) * s->ldo + (size_t)h * D + x] +=
                            ((grow - 1) + u2 * grow + c32) * wij * fabs(vj[x]);
                        b->bv[(size_t)(a->k0 + j) * s->ldv + (size_t)g * D + x] += fp * fabs(di[x]);
                        b->bk[(size_t)(a->k0 + j) * s->ldk + (size_t)g * D + x] += fds * fabs(qi[x]);
                        b->bq[(size_t)(a->q0 + i) * s->ldq + (size_t)h * D + x] += fds * fabs(kj[x]);
                    }
                }
            }
        }
    }
    free(sc), free(ab), free(w);
}

/* Elements of got outside |got - ref| <= bound + eps |ref| (NaN counts); only the n_rows x width
 * block at stride ld starting at col0 is compared. */
static int outside(const float *got, const float *ref, const double *bound, int n_rows, int ld, int col0, int width,
                   double *worst) {
    int bad = 0;
    for (int i = 0; i < n_rows; i++)
        for (int x = col0; x < col0 + width; x++) {
            const size_t e = (size_t)i * ld + x;
            const double d = fabs((double)got[e] - ref[e]), t = bound[e] + TU_EPS * fabs(ref[e]) + 1e-30;
            bad += !(d <= t);
            if (d / t > *worst) *worst = d / t;
        }
    return bad;
}

static void test_cases(void) {
    /* heads, kv heads, head_dim, sequences (nq, nkv): packed training batches (nq == nkv, q|k|v in
     * one row as the model stores them), a cache, odd sequence lengths (an odd last tile: its dV
     * and dK products stay fp32), GQA 2 and 3, head_dim 16 to 128 */
    static const struct { int h, hkv, d, n_seqs, nq[3], nkv[3]; } cases[] = {
        {4, 2, 64, 1, {256}, {256}},       /* the 32M Llama's heads */
        {4, 2, 16, 3, {9, 130, 41}, {9, 130, 41}},
        {9, 3, 64, 1, {77}, {77}},         /* SmolLM2's 3 queries per kv head */
        {2, 2, 32, 2, {5, 40}, {70, 40}},  /* 65 positions of a cache before 5 queries */
        {4, 2, 128, 2, {65, 64}, {65, 64}},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        attn_shape s = {.n_heads = cases[c].h, .n_kv_heads = cases[c].hkv, .head_dim = cases[c].d};
        const int D = s.head_dim, qw = s.n_heads * D, kw = s.n_kv_heads * D, ns = cases[c].n_seqs;
        attn_seq seqs[3];
        int nq_all = 0, nkv_all = 0, max_nkv = 0, max_nq = 0;
        for (int i = 0; i < ns; i++) {
            seqs[i] = (attn_seq){.q0 = nq_all, .nq = cases[c].nq[i], .k0 = nkv_all, .nkv = cases[c].nkv[i]};
            nq_all += cases[c].nq[i], nkv_all += cases[c].nkv[i];
            max_nkv = cases[c].nkv[i] > max_nkv ? cases[c].nkv[i] : max_nkv;
            max_nq = cases[c].nq[i] > max_nq ? cases[c].nq[i] : max_nq;
        }
        s.ldq = qw + 3, s.ldk = s.ldv = kw, s.ldo = qw + 1;
        float *q = tu_randn((size_t)nq_all * s.ldq, 1), *kv = tu_randn((size_t)nkv_all * kw * 2, 1);
        const float *k = kv, *v = kv + (size_t)nkv_all * kw;
        const size_t no = (size_t)nq_all * s.ldo, nl = (size_t)nq_all * s.n_heads, nqb = (size_t)nq_all * s.ldq,
                     nkb = (size_t)nkv_all * kw;
        float *outr = tu_alloc(no), *lser = tu_alloc(nl), *dout = tu_randn(no, 1);
        float *dqr = tu_alloc(nqb), *dkvr = tu_alloc(2 * nkb);
        tu_expect(attention_forward_ref(outr, lser, q, k, v, &s, seqs, ns) == 0, "attention_forward_ref");
        tu_expect(attention_backward_ref(dqr, dkvr, dkvr + nkb, dout, q, k, v, &s, seqs, ns) == 0, "attention_backward_ref");
        const size_t nw = attention_work_floats(&s, max_nkv);
        float *work = tu_alloc(nw);
        /* runs 0: fp32; 1: bf16; 2: bf16 asked on a CPU without it (forced) */
        float *out[3], *lse[3], *dq[3], *dkv[3];
        for (int r = 0; r < 3; r++) {
            out[r] = tu_alloc(no), lse[r] = tu_alloc(nl), dq[r] = tu_alloc(nqb), dkv[r] = tu_alloc(2 * nkb);
            s.bf16 = r > 0;
            bf16_force_portable(r == 2);
            tu_expect(attention_forward(out[r], lse[r], q, k, v, &s, seqs, ns, work, nw) == 0, "attention_forward: %s", err_msg());
            tu_expect(attention_backward(dq[r], dkv[r], dkv[r] + nkb, dout, outr, lser, q, k, v, &s, seqs, ns, work, nw) == 0,
                      "attention_backward: %s", err_msg());
            bf16_force_portable(0);
        }
        tu_expect(!memcmp(out[2], out[0], sizeof(float) * no) && !memcmp(lse[2], lse[0], sizeof(float) * nl) &&
                      !memcmp(dq[2], dq[0], sizeof(float) * nqb) && !memcmp(dkv[2], dkv[0], sizeof(float) * 2 * nkb),
                  "case %zu: bf16 without AVX512_BF16 is bitwise the fp32 attention", c);
        if (!bf16_available()) {
            printf("skip the bf16 attention bounds of case %zu: this CPU has no AVX512_BF16\n", c);
        } else {
            bounds b = {calloc(no, sizeof(double)), calloc(nl, sizeof(double)), calloc(nqb, sizeof(double)),
                        calloc(nkb, sizeof(double)), calloc(nkb, sizeof(double))};
            derive(&b, q, k, v, outr, lser, dout, &s, seqs, ns, max_nkv, max_nq);
            double worst = 0;
            const int bo = outside(out[1], outr, b.fo, nq_all, s.ldo, 0, qw, &worst);
            const int bl = outside(lse[1], lser, b.fl, nq_all, s.n_heads, 0, s.n_heads, &worst);
            const int bq = outside(dq[1], dqr, b.bq, nq_all, s.ldq, 0, qw, &worst);
            const int bk = outside(dkv[1], dkvr, b.bk, nkv_all, kw, 0, kw, &worst);
            const int bv = outside(dkv[1] + nkb, dkvr + nkb, b.bv, nkv_all, kw, 0, kw, &worst);
            tu_expect(!bo && !bl && !bq && !bk && !bv,
                      "case %zu (h=%d/%d D=%d): bf16 attention outside the derived bounds: out %d, lse %d, dq %d, dk %d, "
                      "dv %d (worst |err|/bound %.3f)", c, s.n_heads, s.n_kv_heads, D, bo, bl, bq, bk, bv, worst);
            if (tu_verbose) printf("case %zu: worst |err| / bound %.3f\n", c, worst);
            /* the bf16 products ran: the result is not the fp32 one */
            tu_expect(memcmp(out[1], out[0], sizeof(float) * no) != 0 && memcmp(dkv[1], dkv[0], sizeof(float) * 2 * nkb) != 0,
                      "case %zu: the bf16 attention differs from fp32 (the bf16 products ran)", c);
            free(b.fo), free(b.fl), free(b.bq), free(b.bk), free(b.bv);
        }
        for (int r = 0; r < 3; r++) free(out[r]), free(lse[r]), free(dq[r]), free(dkv[r]);
        free(q), free(kv), free(outr), free(lser), free(dout), free(dqr), free(dkvr), free(work);
    }
}

int main(int argc, char **argv) {
    tu_verbose = argc > 1 && !strcmp(argv[1], "-v");
    tu_seed(78);
    const int T = kernels_set_threads(0);
    for (int t = 1; t <= 2; t++) { /* one thread, then every call split over two */
        kernels_set_threads(t == 1 ? 1 : (T > 1 ? T : 2));
        kernels_split_always(t == 2);
        test_cases();
    }
    kernels_split_always(0);
    return tu_finish("test_bf16_attention");
}
