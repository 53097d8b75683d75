/* cuda_twin_attn.c: the attention cases of test_cuda_ops: flash forward and backward over packed
 * sequences (the model's fused q|k|v rows), the split-key decode path, and paged KV caches, against
 * attention_forward_ref / attention_backward_ref (double) on the same inputs.
 *
 * Bounds, per element, from a first-order error analysis written out below: with s_j the scaled
 * score of key j, pi_j = softmax(s)_j, and D the head dimension, the fp32 score carries
 *   ds_j = scale (D + 2) EPS32 sum_e |q_e k_je| + EPS32 |s_j|,
 * each probability a relative error rho_j = ds_j + (3 + 1.2 |s_j - max|) EPS32 (the score, the
 * subtraction, and __expf's documented 2 + 1.17|x| ulp), and an output o_e = sum_j pi_j v_je
 *   |d o_e| <= sum_j pi_j rho_j |v_je - o_e|                (perturbed weights, renormalized)
 *            + (u_P + (L + 2 + 2 T) EPS32) sum_j pi_j |v_je|  (P rounded to bf16 before P V on the
 *              flash path, u_P = 2^-8, else 0; L fp32 additions; T tiles of online rescaling)
 *            + (L + 2) EPS32 |o_e| + u(dt) |o_e|              (the sum l, the store)
 * and the backward likewise (attention_bwd_bounds). The flash path multiplies bf16 operands: its
 * inputs are rounded to bf16 here first (for every dtype), and a separate check shows that fp32
 * inputs give exactly the result of their bf16 roundings. */
#include "cuda_twin.h"

#include "kernels/attention.h"

typedef struct {
    int H, KV, D;
} att_heads;

/* Scaled scores of query row qi (head h) of a sequence against its visible keys, in double;
 * returns the count L of visible keys; p = softmax, and the error terms rho (see above). */
static int att_row(double *sc, double *pi, double *rho, const float *q, const float *k, const attn_shape *s,
                   const attn_seq *sq, int i, int h, double *lse_out) {
    const int D = s->head_dim, g = h / (s->n_heads / s->n_kv_heads), L = sq->nkv - sq->nq + i + 1;
    const double scale = 1.0 / sqrt((double)D);
    const float *qi = q + (size_t)(sq->q0 + i) * s->ldq + (size_t)h * D;
    double mx = -INFINITY, sum = 0;
    for (int j = 0; j < L; j++) {
        const float *kj = k + (size_t)(sq->k0 + j) * s->ldk + (size_t)g * D;
        double d = 0, a = 0;
        for (int e = 0; e < D; e++) d += (double)qi[e] * kj[e], a += fabs((double)qi[e] * kj[e]);
        sc[j] = d * scale;
        rho[j] = scale * (D + 2) * EPS32 * a + EPS32 * fabs(sc[j]);
        mx = fmax(mx, sc[j]);
    }
    for (int j = 0; j < L; j++) sum += (pi[j] = exp(sc[j] - mx));
    for (int j = 0; j < L; j++) pi[j] /= sum, rho[j] += (3 + 1.2 * fabs(sc[j] - mx)) * EPS32;
    *lse_out = mx + log(sum);
    return L;
}

/* Bounds of out [*, ldo] and lse [*, H] for the rows of the sequences (other entries keep 0). */
static void att_fwd_bounds(double *ob, double *lb, const float *q, const float *k, const float *v, const attn_shape *s,
                           const attn_seq *seqs, int n_seqs, const float *out_ref, double u_p, cu_dtype dt) {
    const int D = s->head_dim, rep = s->n_heads / s->n_kv_heads;
    int max_nkv = 1;
    for (int n = 0; n < n_seqs; n++) max_nkv = seqs[n].nkv > max_nkv ? seqs[n].nkv : max_nkv;
    double *sc = tw_dalloc(max_nkv), *pi = tw_dalloc(max_nkv), *rho = tw_dalloc(max_nkv);
    for (int n = 0; n < n_seqs; n++)
        for (int i = 0; i < seqs[n].nq; i++)
            for (int h = 0; h < s->n_heads; h++) {
                double lse;
                const int L = att_row(sc, pi, rho, q, k, s, &seqs[n], i, h, &lse), tiles = L / 64 + 2;
                const size_t row = (size_t)(seqs[n].q0 + i);
                double lrho = 0;
                for (int j = 0; j < L; j++) lrho += pi[j] * rho[j];
                lb[row * s->n_heads + h] = lrho + (L + 4) * EPS32 + 2 * EPS32 * fabs(lse) + 1e-30;
                for (int e = 0; e < D; e++) {
                    const double o = out_ref[row * s->ldo + (size_t)h * D + e];
                    double a = 0, b = 0;
                    for (int j = 0; j < L; j++) {
                        const double vj = v[(size_t)(seqs[n].k0 + j) * s->ldv + (size_t)(h / rep) * D + e];
                        a += pi[j] * rho[j] * fabs(vj - o), b += pi[j] * fabs(vj);
                    }
                    ob[row * s->ldo + (size_t)h * D + e] =
                        a + (u_p + (L + 2 + 2 * tiles) * EPS32) * b + ((L + 2) * EPS32 + tw_u(dt)) * fabs(o) + tw_eta(dt);
                }
            }
    free(sc), free(pi), free(rho);
}

/* Backward bounds (q, k, v, dout as the GPU reads them; out_dt: the forward output given to the
 * GPU, in dt; lse_f: the fp32 lse given to it). With dP_ij = dout_i . v_j, Dr_i = dout_i . o_i and
 * dS_ij = p_ij (dP_ij - Dr_i), the device's dS is off by
 *   E_ij = p_ij (rho'_ij |dP_ij - Dr_i| + (D+2) EPS32 sum|dout v| + dDr_i) + (u_P + 2 EPS32) |dS_ij|
 * (rho' adds EPS32 |lse| for the fp32 lse, dDr_i = sum_e |dout_e| (u(dt) + (D+2) EPS32) |o_e|), and
 *   dq_i = scale sum_j dS_ij k_j:  scale (sum_j E_ij |k_j| + (L+2) EPS32 sum_j |dS_ij k_j|)
 *   dk_j = scale sum_i dS_ij q_i:  the same over the (query, head) pairs that see key j
 *   dv_j = sum_i p_ij dout_i:      sum_i p_ij (rho' + u_P + (n_ij + 4) EPS32) |dout_i|
 * plus u(dt) + EPS32 of each result for its store. */
static void att_bwd_bounds(double *bq, double *bk, double *bv, const float *q, const float *k, const float *v,
                           const float *dout, const float *out_dt, const float *lse_f, const attn_shape *s,
                           const attn_seq *seqs, int n_seqs, double u_p, cu_dtype dt, size_t n_rows) {
    const int D = s->head_dim, rep = s->n_heads / s->n_kv_heads, W = s->ldq;
    int max_nkv = 1;
    for (int n = 0; n < n_seqs; n++) max_nkv = seqs[n].nkv > max_nkv ? seqs[n].nkv : max_nkv;
    double *sc = tw_dalloc(max_nkv), *pi = tw_dalloc(max_nkv), *rho = tw_dalloc(max_nkv), *ds = tw_dalloc(max_nkv);
    double *E = tw_dalloc(max_nkv), *acc_b = tw_dalloc(n_rows * W); /* the sum|dS x| parts */
    int *cnt = calloc(n_rows, sizeof(int));
    const double scale = 1.0 / sqrt((double)D);
    for (int n = 0; n < n_seqs; n++) {
        const attn_seq *sq = &seqs[n];
        for (int i = 0; i < sq->nq; i++)
            for (int h = 0; h < s->n_heads; h++) {
                double lse;
                const int L = att_row(sc, pi, rho, q, k, s, sq, i, h, &lse), g = h / rep;
                const size_t row = (size_t)(sq->q0 + i);
                const float *gi = dout + row * s->ldo + (size_t)h * D, *oi = out_dt + row * s->ldo + (size_t)h * D;
                double Dr = 0, dDr = 0;
                for (int e = 0; e < D; e++) {
                    double o = 0;
                    for (int j = 0; j < L; j++) o += pi[j] * v[(size_t)(sq->k0 + j) * s->ldv + (size_t)g * D + e];
                    Dr += gi[e] * o;
                    dDr += fabs((double)gi[e] * oi[e]) * (tw_u(dt) + (D + 2) * EPS32) + fabs(gi[e] * (oi[e] - o));
                }
                for (int j = 0; j < L; j++) {
                    const float *vj = v + (size_t)(sq->k0 + j) * s->ldv + (size_t)g * D;
                    double dp = 0, adp = 0;
                    for (int e = 0; e < D; e++) dp += (double)gi[e] * vj[e], adp += fabs((double)gi[e] * vj[e]);
                    const double rp = rho[j] + EPS32 * fabs(lse_f[row * s->n_heads + h]);
                    ds[j] = pi[j] * (dp - Dr);
                    E[j] = pi[j] * (rp * fabs(dp - Dr) + (D + 2) * EPS32 * adp + dDr) + (u_p + 2 * EPS32) * fabs(ds[j]);
                    const size_t kr = (size_t)(sq->k0 + j);
                    cnt[kr]++;
                    for (int e = 0; e < D; e++) {
                        const size_t qo = row * W + (size_t)h * D + e, ko = kr * W + (size_t)(s->n_heads + g) * D + e;
                        const size_t vo = kr * W + (size_t)(s->n_heads + s->n_kv_heads) * D + (size_t)g * D + e;
                        const double kv = k[kr * s->ldk + (size_t)g * D + e], qv = q[row * s->ldq + (size_t)h * D + e];
                        bq[qo] += scale * E[j] * fabs(kv), acc_b[qo] += scale * fabs(ds[j] * kv);
                        bk[ko] += scale * E[j] * fabs(qv), acc_b[ko] += scale * fabs(ds[j] * qv);
                        bv[vo] += pi[j] * (rp + u_p) * fabs(gi[e]), acc_b[vo] += pi[j] * fabs(gi[e]);
                    }
                }
                for (int e = 0; e < D; e++) /* the dq sum has L terms */
                    bq[row * W + (size_t)h * D + e] += (L + 2) * EPS32 * acc_b[row * W + (size_t)h * D + e],
                        acc_b[row * W + (size_t)h * D + e] = 0;
            }
        for (int j = 0; j < sq->nkv; j++) { /* the dk, dv sums have cnt terms */
            const size_t kr = (size_t)(sq->k0 + j);
            for (size_t c = (size_t)s->n_heads * D; c < (size_t)W; c++) {
                const double t = (cnt[kr] + 4) * EPS32 * acc_b[kr * W + c];
                if (c < (size_t)(s->n_heads + s->n_kv_heads) * D) bk[kr * W + c] += t;
                else bv[kr * W + c] += t;
            }
        }
    }
    free(sc), free(pi), free(rho), free(ds), free(E), free(acc_b), free(cnt);
}

/* One packed batch in the model's layout: rows [N, W], W = (H + 2 KV) D, q | k | v. Forward (flash
 * or decode path, by max nq) and, for training batches, backward. */
static void case_packed(const int *nq, const int *nkv, int n_seqs, att_heads hd, int backward, cu_dtype dt) {
    const int H = hd.H, KV = hd.KV, D = hd.D, W = (H + 2 * KV) * D, Q = H * D;
    attn_seq seqs[16];
    int rows = 0, max_nq = 0, max_nkv = 0;
    for (int n = 0; n < n_seqs; n++) {
        /* keys occupy rows k0 .. k0+nkv-1, queries the last nq of them (inference-style when nq < nkv) */
        seqs[n] = (attn_seq){.q0 = rows + nkv[n] - nq[n], .nq = nq[n], .k0 = rows, .nkv = nkv[n]};
        rows += nkv[n];
        max_nq = nq[n] > max_nq ? nq[n] : max_nq, max_nkv = nkv[n] > max_nkv ? nkv[n] : max_nkv;
    }
    const int flash = max_nq > CU_DECODE_MAX_NQ;
    const cu_dtype in_dt = flash ? CU_BF16 : dt; /* the values the kernel multiplies (in fp16 range: exact in dt) */
    const double u_p = flash ? 1.0 / 256 : 0;
    const size_t nx = (size_t)rows * W, no = (size_t)rows * Q, nl = (size_t)rows * H;
    attn_shape s = {.n_heads = H, .n_kv_heads = KV, .head_dim = D, .ldq = W, .ldk = W, .ldv = W, .ldo = Q};
    float *x = tw_randn(nx, 1, in_dt), *ref = tw_falloc(no), *lref = tw_falloc(nl), *got = tw_falloc(nx > no ? nx : no);
    float *lgot = tw_falloc(nl);
    double *rd = tw_dalloc(nx > no ? nx : no), *ob = tw_dalloc(nx > no ? nx : no), *lb = tw_dalloc(nl), *lr = tw_dalloc(nl);
    const float *q = x, *k = x + Q, *v = x + Q + KV * D;
    if (attention_forward_ref(ref, lref, q, k, v, &s, seqs, n_seqs)) tw_die("attention_forward_ref");
    att_fwd_bounds(ob, lb, q, k, v, &s, seqs, n_seqs, ref, u_p, dt);
    void *dx = tw_put(x, nx, dt), *dout = tw_dev(no * 4), *dl = tw_dev(nl * 4), *dseq = tw_put_raw(seqs, sizeof seqs);
    cu_attn_batch b = {.seqs = dseq, .n_seqs = n_seqs, .max_nq = max_nq, .max_nkv = max_nkv, .n_rows = rows};
    const size_t qb = (size_t)Q * cu_dtype_size(dt), kb = (size_t)KV * D * cu_dtype_size(dt);
    TW_TRY(cu_attention_forward(tw_ctx, dout, dl, dx, (char *)dx + qb, (char *)dx + qb + kb, &s, &b, dt));
    tw_get(got, dout, no, dt), tw_get(lgot, dl, nl, CU_F32);
    /* only the query rows are compared: rows that hold no query are never written */
    int *is_q = calloc(rows, sizeof(int));
    for (int n = 0; n < n_seqs; n++)
        for (int i = 0; i < seqs[n].nq; i++) is_q[seqs[n].q0 + i] = 1;
    for (size_t r = 0; r < (size_t)rows; r++)
        for (int c = 0; c < Q; c++) rd[r * Q + c] = is_q[r] ? ref[r * Q + c] : (got[r * Q + c] = 0);
    for (size_t r = 0; r < nl; r++) lr[r] = is_q[r / H] ? lref[r] : (lgot[r] = 0);
    char shape[96];
    int len = snprintf(shape, sizeof shape, "H%d KV%d D%d nq/nkv", H, KV, D);
    for (int n = 0; n < n_seqs && len < 80; n++) len += snprintf(shape + len, sizeof shape - len, " %d/%d", nq[n], nkv[n]);
    const char *op = flash ? "attention_fwd(flash)" : "attention_fwd(decode)";
    tw_report(op, shape, dt, "out", tw_worst(got, rd, ob, no));
    tw_report(op, shape, dt, "lse", tw_worst(lgot, lr, lb, nl));

    if (flash && dt == CU_F32) { /* fp32 inputs are rounded to bf16 on load: the same bits as rounded ones */
        float *raw = tw_falloc(nx), *got2 = tw_falloc(no);
        for (size_t i = 0; i < nx; i++) raw[i] = x[i] * (float)(1 + 0.003 * tw_normal()); /* off the bf16 grid */
        tw_round_n(raw, nx, CU_F32);
        void *draw = tw_put(raw, nx, CU_F32);
        TW_TRY(cu_attention_forward(tw_ctx, dout, NULL, draw, (char *)draw + qb, (char *)draw + qb + kb, &s, &b, dt));
        tw_get(got2, dout, no, dt);
        double *zero = tw_dalloc(no), *rg = tw_dalloc(no), worst = 0;
        float *rx = tw_falloc(nx);
        memcpy(rx, raw, nx * 4);
        tw_round_n(rx, nx, CU_BF16);
        void *drx = tw_put(rx, nx, CU_F32);
        TW_TRY(cu_attention_forward(tw_ctx, dout, NULL, drx, (char *)drx + qb, (char *)drx + qb + kb, &s, &b, dt));
        tw_get(got, dout, no, dt);
        /* query rows only: the others are never written and hold the buffer's first contents (a NaN
         * there would compare unequal to itself: the test failed now and then under clang) */
        for (size_t i = 0; i < no; i++) rg[i] = is_q[i / Q] ? got[i] : (got2[i] = 0);
        worst = tw_worst(got2, rg, zero, no);
        tw_report(op, shape, dt, "bf16 load", worst);
        free(raw), free(got2), free(zero), free(rg), free(rx);
    }
    if (backward) {
        float *dO = tw_randn(no, 1, in_dt), *odt = tw_falloc(no), *gq = tw_falloc(nx);
        memcpy(odt, ref, no * 4);
        tw_round_n(odt, no, dt);
        double *bq = tw_dalloc(nx), *bk = tw_dalloc(nx), *bv = tw_dalloc(nx), *bb = tw_dalloc(nx), *rg = tw_dalloc(nx);
        float *rq = tw_falloc(nx);
        if (attention_backward_ref(rq, rq + Q, rq + Q + KV * D, dO, q, k, v, &s, seqs, n_seqs))
            tw_die("attention_backward_ref");
        att_bwd_bounds(bq, bk, bv, q, k, v, dO, odt, lref, &s, seqs, n_seqs, u_p, dt, rows);
        void *ddo = tw_put(dO, no, dt), *dod = tw_put(odt, no, dt), *dlr = tw_put(lref, nl, CU_F32);
        float *init = tw_falloc(nx);
        for (size_t i = 0; i < nx; i++) init[i] = NAN; /* every entry is assigned */
        void *dg = tw_put(init, nx, dt);
        TW_TRY(cu_attention_backward(tw_ctx, dg, (char *)dg + qb, (char *)dg + qb + kb, ddo, dod, dlr, dx,
                                      (char *)dx + qb, (char *)dx + qb + kb, &s, &b, dt));
        tw_get(gq, dg, nx, dt);
        for (size_t i = 0; i < nx; i++) {
            /* dq exists in query rows only; dk, dv in every key row (all rows here) */
            rg[i] = (int)(i % W) < Q && !is_q[i / W] ? (gq[i] = 0) : rq[i];
            bb[i] = bq[i] + bk[i] + bv[i] + (tw_u(dt) + EPS32) * fabs(rq[i]) + tw_eta(dt);
        }
        /* dq, dk, dv reported apart: the columns of each in the fused rows */
        static const char *names[3] = {"dq", "dk", "dv"};
        const int c0[4] = {0, Q, Q + KV * D, W};
        for (int part = 0; part < 3; part++) {
            float *gp = tw_falloc((size_t)rows * (c0[part + 1] - c0[part]));
            double *rp = tw_dalloc((size_t)rows * (c0[part + 1] - c0[part])), *bp = tw_dalloc((size_t)rows * (c0[part + 1] - c0[part]));
            size_t m = 0;
            for (size_t r = 0; r < (size_t)rows; r++)
                for (int c = c0[part]; c < c0[part + 1]; c++, m++) gp[m] = gq[r * W + c], rp[m] = rg[r * W + c], bp[m] = bb[r * W + c];
            tw_report("attention_bwd(flash)", shape, dt, names[part], tw_worst(gp, rp, bp, m));
            free(gp), free(rp), free(bp);
        }
        free(dO), free(odt), free(gq), free(bq), free(bk), free(bv), free(bb), free(rg), free(rq), free(init);
    }
    free(x), free(ref), free(lref), free(got), free(lgot), free(rd), free(ob), free(lb), free(lr), free(is_q);
    tw_free_all();
}

/* Paged KV cache: the keys of each sequence scattered over a pool of blocks by a random block
 * table; the reference gathers them into contiguous rows. */
static void case_paged(const int *nq, const int *nkv, int n_seqs, att_heads hd, int block_size, cu_dtype dt) {
    const int H = hd.H, KV = hd.KV, D = hd.D, Q = H * D, ldkv = KV * D + 8;
    int n_blocks = 3, total_q = 0, total_k = 0, max_nq = 0, max_nkv = 0, n_ids = 0;
    for (int n = 0; n < n_seqs; n++) {
        n_blocks += (nkv[n] + block_size - 1) / block_size;
        total_q += nq[n], total_k += nkv[n];
        max_nq = nq[n] > max_nq ? nq[n] : max_nq, max_nkv = nkv[n] > max_nkv ? nkv[n] : max_nkv;
    }
    const int flash = max_nq > CU_DECODE_MAX_NQ;
    const cu_dtype in_dt = flash ? CU_BF16 : dt;
    const size_t npool = (size_t)n_blocks * block_size * ldkv;
    float *kp = tw_randn(npool, 1, in_dt), *vp = tw_randn(npool, 1, in_dt), *q = tw_randn((size_t)total_q * Q, 1, in_dt);
    int *perm = malloc(sizeof(int) * n_blocks), *ids = malloc(sizeof(int) * n_blocks);
    for (int i = 0; i < n_blocks; i++) perm[i] = i;
    for (int i = n_blocks - 1; i > 0; i--) {
        int j = (int)(tw_uniform() * (i + 1)), t = perm[i];
        perm[i] = perm[j], perm[j] = t;
    }
    /* gathered copies for the reference: k, v [total_k, KV D] */
    float *kg = tw_falloc((size_t)total_k * KV * D), *vg = tw_falloc((size_t)total_k * KV * D);
    cu_paged_seq ps[16];
    attn_seq rs[16];
    for (int n = 0, q0 = 0, k0 = 0; n < n_seqs; n++) {
        ps[n] = (cu_paged_seq){.q0 = q0, .nq = nq[n], .nkv = nkv[n], .blocks_off = n_ids};
        rs[n] = (attn_seq){.q0 = q0, .nq = nq[n], .k0 = k0, .nkv = nkv[n]};
        for (int bi = 0; bi < (nkv[n] + block_size - 1) / block_size; bi++, n_ids++) ids[n_ids] = perm[n_ids];
        for (int j = 0; j < nkv[n]; j++) {
            const size_t prow = (size_t)ids[ps[n].blocks_off + j / block_size] * block_size + j % block_size;
            memcpy(kg + (size_t)(k0 + j) * KV * D, kp + prow * ldkv, sizeof(float) * KV * D);
            memcpy(vg + (size_t)(k0 + j) * KV * D, vp + prow * ldkv, sizeof(float) * KV * D);
        }
        q0 += nq[n], k0 += nkv[n];
    }
    attn_shape s = {.n_heads = H, .n_kv_heads = KV, .head_dim = D, .ldq = Q, .ldk = KV * D, .ldv = KV * D, .ldo = Q};
    const size_t no = (size_t)total_q * Q;
    float *ref = tw_falloc(no), *got = tw_falloc(no);
    double *rd = tw_dalloc(no), *ob = tw_dalloc(no), *lb = tw_dalloc((size_t)total_q * H);
    if (attention_forward_ref(ref, NULL, q, kg, vg, &s, rs, n_seqs)) tw_die("attention_forward_ref");
    att_fwd_bounds(ob, lb, q, kg, vg, &s, rs, n_seqs, ref, flash ? 1.0 / 256 : 0, dt);
    for (size_t i = 0; i < no; i++) rd[i] = ref[i];
    cu_paged_kv pk = {.block_size = block_size, .n_blocks = n_blocks, .ldkv = ldkv, .k = tw_put(kp, npool, dt),
                      .v = tw_put(vp, npool, dt)};
    cu_paged_batch pb = {.seqs = tw_put_raw(ps, sizeof ps), .blocks = tw_put_raw(ids, sizeof(int) * n_ids),
                         .n_seqs = n_seqs, .max_nq = max_nq, .max_nkv = max_nkv};
    void *dq = tw_put(q, (size_t)total_q * Q, dt), *dout = tw_dev(no * 4);
    TW_TRY(cu_attention_paged(tw_ctx, dout, dq, &pk, &s, &pb, dt));
    tw_get(got, dout, no, dt);
    char shape[96];
    int len = snprintf(shape, sizeof shape, "H%d KV%d D%d bs%d nq/nkv", H, KV, D, block_size);
    for (int n = 0; n < n_seqs && len < 80; n++) len += snprintf(shape + len, sizeof shape - len, " %d/%d", nq[n], nkv[n]);
    tw_report(flash ? "attention_paged(flash)" : "attention_paged(decode)", shape, dt, "out", tw_worst(got, rd, ob, no));
    free(kp), free(vp), free(q), free(perm), free(ids), free(kg), free(vg), free(ref), free(got), free(rd), free(ob), free(lb);
    tw_free_all();
}

void tw_attention_cases(int large) {
    static const cu_dtype dts[3] = {CU_F32, CU_BF16, CU_F16};
    for (int t = 0; t < 3; t++) {
        const cu_dtype dt = dts[t];
        /* training batches (nq == nkv), GQA and MHA, ragged lengths across tile edges */
        case_packed((int[]){70, 5, 130}, (int[]){70, 5, 130}, 3, (att_heads){4, 2, 32}, 1, dt);
        case_packed((int[]){64}, (int[]){64}, 1, (att_heads){2, 2, 64}, 1, dt);
        /* prefill against a cache (nq < nkv), and decode steps (nq <= 4: the split-key kernel) */
        case_packed((int[]){20, 9}, (int[]){100, 9}, 2, (att_heads){3, 1, 64}, 1, dt);
        case_packed((int[]){1, 3, 2}, (int[]){300, 77, 2}, 3, (att_heads){4, 2, 32}, 0, dt);
        case_paged((int[]){1, 2, 1}, (int[]){50, 33, 1}, 3, (att_heads){4, 2, 32}, 16, dt);
        case_paged((int[]){30, 7}, (int[]){90, 7}, 2, (att_heads){2, 1, 64}, 8, dt);
        if (large) {
            case_packed((int[]){1000, 300}, (int[]){1000, 300}, 2, (att_heads){8, 2, 128}, 1, dt);
            case_packed((int[]){1, 1}, (int[]){4000, 2500}, 2, (att_heads){8, 2, 128}, 0, dt);
            case_paged((int[]){300, 1}, (int[]){700, 3000}, 2, (att_heads){9, 3, 64}, 16, dt);
        }
    }
}
