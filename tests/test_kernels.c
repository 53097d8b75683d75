/* test_kernels.c: every CPU kernel against its scalar reference (double sums), table-driven, with
 * tolerances derived from fp32 epsilon and the reduction length of the op:
 *   a sum of L fp32 terms in any order is within L*eps*sum|terms| of the exact sum (Higham's
 *   gamma_L), so normalized errors (max|fast - ref| / max|ref|) are held to c * L * eps, where c
 *   covers the few extra roundings of the op (stated per check). exp (fastmath.h) adds 2 ulp. */
#include <omp.h>

#include "engine_testutil.h"
#include "kernels/adamw.h"
#include "kernels/attention.h"
#include "kernels/embedding.h"
#include "kernels/fastmath.h"
#include "kernels/linear.h"
#include "kernels/matmul.h"
#include "kernels/rmsnorm.h"
#include "kernels/rope.h"
#include "kernels/schedule.h"
#include "kernels/softmax.h"
#include "kernels/swiglu.h"
#include "kernels/threads.h"

/* exp: the scalar and 16-lane forms agree bitwise, and both are within 3 ulp of exp in double
 * over [-87, 88] (the header promises about 2). */
static void test_fastmath(void) {
    double worst = 0;
    int same = 1;
    for (int i = 0; i < 200000; i += FM_W) {
        float x[FM_W], y[FM_W];
        for (int l = 0; l < FM_W; l++) x[l] = -87.0f + 175.0f * (float)(i + l) / 200000.0f;
        fm_st(y, fm_exp16(fm_ld(x)));
        for (int l = 0; l < FM_W; l++) {
            float s = fm_expf(x[l]);
            same &= !memcmp(&s, &y[l], sizeof s);
            double e = exp((double)x[l]), ulp = e * TU_EPS;
            worst = fmax(worst, fabs(s - e) / ulp);
        }
    }
    tu_expect(same, "fm_expf and fm_exp16 differ");
    tu_expect(worst <= 3, "fm_expf: %.2f ulp from exp (tol 3)", worst);
    tu_expect(fm_expf(-200.0f) < 1e-37f && fm_expf(-200.0f) >= 0 && fm_expf(0) == 1.0f, "fm_expf(-200), fm_expf(0)");
}

static void test_matmul(void) {
    /* m, n, k, ta, tb, pad (extra leading-dimension columns), alpha, beta */
    static const struct { int m, n, k, ta, tb, pad; float alpha, beta; } cases[] = {
        {1, 1, 1, 0, 0, 0, 1, 0},      {7, 5, 3, 0, 1, 2, 1, 0},       {64, 48, 96, 0, 1, 0, 1, 0},
        {33, 17, 129, 1, 0, 3, 0.5f, 1}, {128, 64, 300, 0, 0, 1, 1, 1}, {20, 200, 64, 1, 1, 5, -2, 0.25f},
        {257, 130, 512, 0, 1, 0, 1, 0}, {1, 3000, 512, 0, 1, 2, 1, 0}, {1, 2000, 700, 1, 0, 1, 0.5f, 1},
        {1, 7, 5, 1, 1, 0, 1, 0.5f},    /* single rows: matrix-vector products */
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        int m = cases[c].m, n = cases[c].n, k = cases[c].k, ta = cases[c].ta, tb = cases[c].tb, pad = cases[c].pad;
        int lda = (ta ? m : k) + pad, ldb = (tb ? k : n) + pad, ldc = n + pad;
        size_t na = (size_t)(ta ? k : m) * lda, nb = (size_t)(tb ? n : k) * ldb, nc = (size_t)m * ldc;
        float *a = tu_randn(na, 1), *b = tu_randn(nb, 1), *c0 = tu_randn(nc, 1);
        float *got = tu_copy(c0, nc), *ref = tu_copy(c0, nc);
        matmul(got, ldc, a, lda, ta, b, ldb, tb, m, n, k, cases[c].alpha, cases[c].beta);
        matmul_ref(ref, ldc, a, lda, ta, b, ldb, tb, m, n, k, cases[c].alpha, cases[c].beta);
        /* Element-wise Higham bound: |C - C_exact| <= gamma_{k+2} (|alpha| sum|a||b| + |beta||C0|). */
        float *aa = tu_alloc(na), *ab = tu_alloc(nb), *bound = tu_alloc(nc);
        for (size_t i = 0; i < na; i++) aa[i] = fabsf(a[i]);
        for (size_t i = 0; i < nb; i++) ab[i] = fabsf(b[i]);
        matmul_ref(bound, ldc, aa, lda, ta, ab, ldb, tb, m, n, k, fabsf(cases[c].alpha), 0);
        int bad = 0;
        double worst = 0;
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++) {
                size_t x = (size_t)i * ldc + j;
                double tol = (k + 3) * TU_EPS * (bound[x] + fabs(cases[c].beta * c0[x])) + 1e-30;
                double r = fabs((double)got[x] - ref[x]) / tol;
                if (!(r <= 1)) bad++;
                if (r > worst) worst = r;
            }
        for (int i = 0; i < m; i++) /* padding columns are untouched */
            for (int j = n; j < ldc; j++) bad += got[(size_t)i * ldc + j] != c0[(size_t)i * ldc + j];
        tu_expect(!bad, "matmul m=%d n=%d k=%d ta=%d tb=%d: %d elements outside gamma_(k+3) bound (worst %.2f)", m,
                  n, k, ta, tb, bad, worst);
        free(a), free(b), free(c0), free(got), free(ref), free(aa), free(ab), free(bound);
    }
}

static void test_linear(void) {
    static const struct { int n, in, out, bias, acc; } cases[] = {
        {1, 8, 4, 0, 0}, {17, 64, 96, 1, 0}, {100, 128, 48, 1, 1}, {300, 96, 200, 0, 1},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        int n = cases[c].n, in = cases[c].in, out = cases[c].out, ldx = in + 3, ldo = out + 2;
        float *x = tu_randn((size_t)n * ldx, 1), *w = tu_randn((size_t)out * in, 1), *b = tu_randn(out, 1);
        float *y0 = tu_randn((size_t)n * ldo, 1), *y = tu_copy(y0, (size_t)n * ldo), *yr = tu_copy(y0, (size_t)n * ldo);
        linear l = linear_f32(w, cases[c].bias ? b : NULL, out, in);
        tu_expect(linear_forward(y, ldo, x, ldx, &l, n, cases[c].acc) == 0, "linear_forward failed");
        matmul_ref(yr, ldo, x, ldx, 0, w, in, 1, n, out, in, 1, cases[c].acc ? 1.0f : 0.0f);
        if (cases[c].bias)
            for (int i = 0; i < n; i++)
                for (int j = 0; j < out; j++) yr[(size_t)i * ldo + j] += b[j];
        char what[128];
        snprintf(what, sizeof what, "linear_forward n=%d in=%d out=%d bias=%d acc=%d (tol 4*in*eps)", n, in, out,
                 cases[c].bias, cases[c].acc);
        tu_expect_close(what, y, yr, (size_t)n * ldo, 4 * in * TU_EPS);
        /* backward: dx = dy W, dW += dy^T x, db += colsum(dy) */
        float *dy = tu_randn((size_t)n * ldo, 1), *dx = tu_randn((size_t)n * ldx, 1), *dxr = tu_copy(dx, (size_t)n * ldx);
        float *dw = tu_randn((size_t)out * in, 1), *dwr = tu_copy(dw, (size_t)out * in);
        float *db = tu_randn(out, 1), *dbr = tu_copy(db, out);
        tu_expect(linear_backward_input(dx, ldx, dy, ldo, &l, n, cases[c].acc) == 0, "linear_backward_input failed");
        matmul_ref(dxr, ldx, dy, ldo, 0, w, in, 0, n, in, out, 1, cases[c].acc ? 1.0f : 0.0f);
        linear_backward_params(dw, db, dy, ldo, x, ldx, n, out, in, 0);
        matmul_ref(dwr, in, dy, ldo, 1, x, ldx, 0, out, in, n, 1, 1);
        bias_grad_ref(dbr, dy, ldo, n, out);
        snprintf(what, sizeof what, "linear dx n=%d in=%d out=%d (tol 4*out*eps)", n, in, out);
        tu_expect_close(what, dx, dxr, (size_t)n * ldx, 4 * out * TU_EPS);
        snprintf(what, sizeof what, "linear dW n=%d in=%d out=%d (tol 4*n*eps)", n, in, out);
        tu_expect_close(what, dw, dwr, (size_t)out * in, 4 * n * TU_EPS);
        snprintf(what, sizeof what, "bias_grad n=%d out=%d (tol 4*n*eps)", n, out);
        tu_expect_close(what, db, dbr, out, 4 * n * TU_EPS);
        free(x), free(w), free(b), free(y0), free(y), free(yr), free(dy), free(dx), free(dxr), free(dw), free(dwr),
            free(db), free(dbr);
    }
}

static void test_rmsnorm(void) {
    static const struct { int n, d; } cases[] = {{1, 8}, {5, 64}, {300, 512}, {64, 1000}};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        int n = cases[c].n, d = cases[c].d;
        float *x = tu_randn((size_t)n * d, 2), *w = tu_randn(d, 1), *y = tu_alloc((size_t)n * d), *yr = tu_alloc((size_t)n * d);
        float *r = tu_alloc(n), *rr = tu_alloc(n);
        rmsnorm_forward(y, r, x, w, n, d, 1e-5f);
        rmsnorm_forward_ref(yr, rr, x, w, n, d, 1e-5f);
        char what[128];
        snprintf(what, sizeof what, "rmsnorm_forward n=%d d=%d (tol 4*d*eps)", n, d);
        tu_expect_close(what, y, yr, (size_t)n * d, 4 * d * TU_EPS);
        float *dy = tu_randn((size_t)n * d, 1), *dx = tu_randn((size_t)n * d, 1), *dxr = tu_copy(dx, (size_t)n * d);
        float *dw = tu_randn(d, 1), *dwr = tu_copy(dw, d);
        rmsnorm_backward(dx, dw, dy, x, w, r, n, d);
        rmsnorm_backward_ref(dxr, dwr, dy, x, w, rr, n, d);
        snprintf(what, sizeof what, "rmsnorm dx n=%d d=%d (tol 8*d*eps)", n, d);
        tu_expect_close(what, dx, dxr, (size_t)n * d, 8 * d * TU_EPS);
        snprintf(what, sizeof what, "rmsnorm dw n=%d d=%d (tol 8*(n+d)*eps)", n, d);
        tu_expect_close(what, dw, dwr, d, 8 * (n + d) * TU_EPS);
        free(x), free(w), free(y), free(yr), free(r), free(rr), free(dy), free(dx), free(dxr), free(dw), free(dwr);
    }
}

static void test_rope(void) {
    /* Frequencies: plain and Llama 3 scaling, against the published formulas in double. */
    static const struct { int head_dim; float theta; int llama3; } fcases[] = {
        {64, 10000.0f, 0}, {128, 500000.0f, 1}, {16, 1e6f, 0}};
    for (size_t c = 0; c < sizeof fcases / sizeof fcases[0]; c++) {
        int D = fcases[c].head_dim, half = D / 2;
        rope_scaling sc = {1, 8.0f, 1.0f, 4.0f, 8192};
        float *f = tu_alloc(half), *fr = tu_alloc(half);
        rope_inv_freq(f, D, fcases[c].theta, fcases[c].llama3 ? &sc : NULL);
        for (int i = 0; i < half; i++) {
            double inv = 1.0 / pow(fcases[c].theta, 2.0 * i / D);
            if (fcases[c].llama3) {
                double wl = 2 * M_PI / inv, lo = 8192.0 / 1.0, hi = 8192.0 / 4.0;
                if (wl > lo) inv = inv / 8;
                else if (wl >= hi) {
                    double sm = (8192.0 / wl - 1.0) / (4.0 - 1.0);
                    inv = (1 - sm) * inv / 8 + sm * inv;
                }
            }
            fr[i] = (float)inv;
        }
        char what[128];
        snprintf(what, sizeof what, "rope_inv_freq D=%d llama3=%d (tol 16 eps: powf and the smoothing)", D,
                 fcases[c].llama3);
        /* element-wise relative check: frequencies span many orders of magnitude */
        double worst = 0;
        for (int i = 0; i < half; i++) worst = fmax(worst, fabs(f[i] - fr[i]) / fr[i]);
        tu_expect(worst <= 16 * TU_EPS, "%s: relative error %.3e", what, worst);
        /* Tables at positions up to 4096: the angle is rounded once to fp32, so cos/sin may differ from
         * the exact ones by |angle| * eps/2 plus the rounding of the result. */
        int npos = 4096;
        float *ct = tu_alloc((size_t)npos * half), *st = tu_alloc((size_t)npos * half);
        rope_tables(ct, st, f, 0, npos, half);
        worst = 0;
        for (int p = 0; p < npos; p++)
            for (int i = 0; i < half; i++) {
                double a = (double)p * f[i], tol = (fabs(a) * 0.5 + 1) * TU_EPS;
                worst = fmax(worst, fabs(ct[(size_t)p * half + i] - cos(a)) / tol);
                worst = fmax(worst, fabs(st[(size_t)p * half + i] - sin(a)) / tol);
            }
        tu_expect(worst <= 1, "rope_tables D=%d: error %.2f x (|angle|/2+1) eps", D, worst);
        /* Rotation: fast vs reference, and backward(forward(x)) == x (a rotation is orthogonal). */
        int n = 77, heads = 3, ld = heads * D + 5;
        int *pos = malloc(sizeof(int) * n);
        for (int t = 0; t < n; t++) pos[t] = (int)(tu_next() % npos);
        float *x = tu_randn((size_t)n * ld, 1), *y = tu_copy(x, (size_t)n * ld), *yr = tu_copy(x, (size_t)n * ld);
        rope_forward(y, ld, pos, ct, st, n, heads, D);
        rope_forward_ref(yr, ld, pos, ct, st, n, heads, D);
        snprintf(what, sizeof what, "rope_forward D=%d (tol 4 eps)", D);
        tu_expect_close(what, y, yr, (size_t)n * ld, 4 * TU_EPS);
        float *z = tu_copy(y, (size_t)n * ld), *zr = tu_copy(y, (size_t)n * ld);
        rope_backward(z, ld, pos, ct, st, n, heads, D);
        rope_backward_ref(zr, ld, pos, ct, st, n, heads, D);
        snprintf(what, sizeof what, "rope_backward D=%d (tol 4 eps)", D);
        tu_expect_close(what, z, zr, (size_t)n * ld, 4 * TU_EPS);
        snprintf(what, sizeof what, "rope_backward(rope_forward(x)) == x D=%d (tol 8 eps)", D);
        tu_expect_close(what, z, x, (size_t)n * ld, 8 * TU_EPS);
        free(f), free(fr), free(ct), free(st), free(pos), free(x), free(y), free(yr), free(z), free(zr);
    }
}

static void test_attention(void) {
    /* heads, kv heads, head_dim, packed (q|k|v in one row as the model stores them; needs nq == nkv),
     * and up to 4 sequences of (nq, nkv) */
    static const struct { int h, hkv, d, packed, n_seqs, nq[4], nkv[4]; } cases[] = {
        {1, 1, 4, 0, 1, {1}, {1}},
        {4, 2, 16, 1, 1, {7}, {7}},
        {8, 8, 8, 0, 1, {33}, {33}},
        {4, 2, 64, 1, 1, {300}, {300}},        /* several query tiles */
        {8, 2, 32, 0, 1, {5}, {40}},           /* a cache: 35 positions before these 5 queries */
        {6, 3, 16, 0, 1, {1}, {129}},          /* one decode step */
        {4, 1, 16, 1, 1, {260}, {260}},
        {2, 2, 64, 0, 1, {70}, {200}},
        {4, 2, 16, 1, 4, {9, 1, 130, 40}, {9, 1, 130, 40}}, /* a packed training batch */
        {8, 4, 8, 0, 3, {3, 17, 1}, {10, 17, 64}},           /* several caches at once */
        {9, 3, 64, 1, 1, {200}, {200}},                       /* SmolLM2's heads: 3 queries per kv head */
        {3, 1, 48, 0, 2, {70, 130}, {300, 130}},              /* head_dim 48; key blocks past a cache */
        {4, 2, 128, 1, 2, {65, 64}, {65, 64}},                /* head_dim 128; block edges */
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        attn_shape s = {.n_heads = cases[c].h, .n_kv_heads = cases[c].hkv, .head_dim = cases[c].d};
        const int D = s.head_dim, qw = s.n_heads * D, kw = s.n_kv_heads * D, ns = cases[c].n_seqs;
        attn_seq seqs[4];
        int nq_all = 0, nkv_all = 0, max_nkv = 0;
        for (int i = 0; i < ns; i++) {
            seqs[i] = (attn_seq){.q0 = nq_all, .nq = cases[c].nq[i], .k0 = nkv_all, .nkv = cases[c].nkv[i]};
            nq_all += cases[c].nq[i], nkv_all += cases[c].nkv[i];
            if (cases[c].nkv[i] > max_nkv) max_nkv = cases[c].nkv[i];
        }
        float *qkv, *kvbuf = NULL, *q, *k, *v;
        if (cases[c].packed && nq_all != nkv_all) {
            tu_expect(0, "attention case %zu: a packed q|k|v layout needs nq == nkv", c);
            continue;
        }
        if (cases[c].packed) { /* one buffer, rows of q|k|v */
            s.ldq = s.ldk = s.ldv = qw + 2 * kw;
            qkv = tu_randn((size_t)nq_all * s.ldq, 1);
            q = qkv, k = qkv + qw, v = qkv + qw + kw;
        } else {
            s.ldq = qw + 3, s.ldk = s.ldv = kw;
            qkv = tu_randn((size_t)nq_all * s.ldq, 1);
            kvbuf = tu_randn((size_t)nkv_all * kw * 2, 1);
            q = qkv, k = kvbuf, v = kvbuf + (size_t)nkv_all * kw;
        }
        s.ldo = qw + 1;
        size_t no = (size_t)nq_all * s.ldo, nl = (size_t)nq_all * s.n_heads;
        float *out = tu_alloc(no), *outr = tu_alloc(no), *lse = tu_alloc(nl), *lser = tu_alloc(nl);
        size_t nw = attention_work_floats(&s, max_nkv);
        float *work = tu_alloc(nw);
        tu_expect(attention_forward(out, lse, q, k, v, &s, seqs, ns, work, nw) == 0, "attention_forward: %s", err_msg());
        tu_expect(attention_forward_ref(outr, lser, q, k, v, &s, seqs, ns) == 0, "attention_forward_ref");
        /* scores: dots of length D; softmax and output: sums of length nkv; 2-ulp exp */
        double tol = 4 * (D + max_nkv + 4) * TU_EPS;
        char what[160];
        snprintf(what, sizeof what, "attention_forward %d seq(s) max nkv %d h=%d/%d D=%d (tol 4*(D+nkv+4)*eps)", ns,
                 max_nkv, s.n_heads, s.n_kv_heads, D);
        tu_expect_close(what, out, outr, no, tol);
        snprintf(what, sizeof what, "attention lse %d seq(s) max nkv %d (tol 4*(D+nkv+4)*eps)", ns, max_nkv);
        tu_expect_close(what, lse, lser, nl, tol);
        /* backward: dq, dk, dv from the fast forward's out/lse vs the double reference */
        float *dout = tu_randn(no, 1);
        size_t nqb = (size_t)nq_all * s.ldq, nkb = (size_t)nkv_all * s.ldk;
        float *dqkv = tu_alloc(nqb), *dqkvr = tu_alloc(nqb), *dkv = NULL, *dkvr = NULL;
        float *dq = dqkv, *dk, *dv, *dqr = dqkvr, *dkr, *dvr;
        if (cases[c].packed) {
            dk = dqkv + qw, dv = dqkv + qw + kw, dkr = dqkvr + qw, dvr = dqkvr + qw + kw;
        } else {
            dkv = tu_alloc(2 * nkb), dkvr = tu_alloc(2 * nkb);
            dk = dkv, dv = dkv + nkb, dkr = dkvr, dvr = dkvr + nkb;
        }
        tu_expect(attention_backward(dq, dk, dv, dout, out, lse, q, k, v, &s, seqs, ns, work, nw) == 0,
                  "attention_backward: %s", err_msg());
        tu_expect(attention_backward_ref(dqr, dkr, dvr, dout, q, k, v, &s, seqs, ns) == 0, "attention_backward_ref");
        /* each gradient is a sum over nkv (dq) or nq*rep (dk, dv) of products of D-long dots */
        int max_nq = 0;
        for (int i = 0; i < ns; i++) max_nq = cases[c].nq[i] > max_nq ? cases[c].nq[i] : max_nq;
        double tolb = 8 * (D + max_nkv + max_nq * (s.n_heads / s.n_kv_heads) + 4) * TU_EPS;
        snprintf(what, sizeof what, "attention_backward %d seq(s) h=%d/%d D=%d (tol 8*(D+nkv+nq*rep+4)*eps)", ns,
                 s.n_heads, s.n_kv_heads, D);
        tu_expect_close(what, dqkv, dqkvr, nqb, tolb);
        if (dkv) tu_expect_close(what, dkv, dkvr, 2 * nkb, tolb);
        /* a work buffer too small for one thread is an error, not an overflow */
        tu_expect(attention_forward(out, lse, q, k, v, &s, seqs, ns, work, 8) != 0, "a tiny work buffer is refused");
        err_clear();
        free(qkv), free(kvbuf), free(out), free(outr), free(lse), free(lser), free(work), free(dout), free(dqkv),
            free(dqkvr), free(dkv), free(dkvr);
    }
}

static void test_swiglu(void) {
    static const struct { int n, dim, ld; } cases[] = {{1, 3, 3}, {10, 100, 200}, {300, 1408, 2816}};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        int n = cases[c].n, dim = cases[c].dim, ld = cases[c].ld;
        float *gu = tu_randn((size_t)n * ld + dim, 3), *h = tu_alloc((size_t)n * dim), *hr = tu_alloc((size_t)n * dim);
        float *g = gu, *u = ld == dim ? gu + (size_t)n * ld : gu + dim; /* gate|up side by side as in the model */
        if (ld == dim) { /* separate buffers */
            free(gu);
            gu = tu_randn((size_t)2 * n * dim, 3), g = gu, u = gu + (size_t)n * dim;
        }
        swiglu_forward(h, g, u, ld, n, dim);
        swiglu_forward_ref(hr, g, u, ld, n, dim);
        char what[128];
        snprintf(what, sizeof what, "swiglu_forward n=%d dim=%d (tol 8 eps: exp, divide, multiply)", n, dim);
        tu_expect_close(what, h, hr, (size_t)n * dim, 8 * TU_EPS);
        size_t tot = ld == dim ? (size_t)2 * n * dim : (size_t)n * ld + dim;
        float *dh = tu_randn((size_t)n * dim, 1), *d = tu_alloc(tot), *dr = tu_alloc(tot);
        float *dg = d + (g - gu), *du = d + (u - gu), *dgr = dr + (g - gu), *dur = dr + (u - gu);
        swiglu_backward(dg, du, dh, g, u, ld, n, dim);
        swiglu_backward_ref(dgr, dur, dh, g, u, ld, n, dim);
        snprintf(what, sizeof what, "swiglu_backward n=%d dim=%d (tol 16 eps)", n, dim);
        tu_expect_close(what, d, dr, tot, 16 * TU_EPS);
        /* in place (the model overwrites gate|up with their gradients) */
        float *ip = tu_copy(gu, tot);
        swiglu_backward(ip + (g - gu), ip + (u - gu), dh, ip + (g - gu), ip + (u - gu), ld, n, dim);
        int same = 1;
        for (int i = 0; i < n; i++)
            for (int j = 0; j < dim; j++) {
                size_t a = (size_t)i * ld + j;
                same &= ip[(g - gu) + a] == dg[a] && ip[(u - gu) + a] == du[a];
            }
        tu_expect(same, "swiglu_backward in place differs from out of place (n=%d dim=%d)", n, dim);
        free(gu), free(h), free(hr), free(dh), free(d), free(dr), free(ip);
    }
}

static void test_softmax_ce(void) {
    static const struct { int n, vocab; } cases[] = {{1, 2}, {9, 512}, {70, 8192}, {3, 151936}};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        int n = cases[c].n, V = cases[c].vocab;
        size_t nv = (size_t)n * V;
        float *z = tu_randn(nv, 4), *p = tu_alloc(nv), *pr = tu_alloc(nv);
        softmax_forward(p, z, n, V);
        softmax_forward_ref(pr, z, n, V);
        char what[128];
        snprintf(what, sizeof what, "softmax n=%d V=%d (tol 16 eps: 16-term float sums, double across, 2-ulp exp)", n, V);
        tu_expect_close(what, p, pr, nv, 16 * TU_EPS);
        /* backward through the softmax: the dot of length V in short float sums, then y * (dy - dot) */
        float *dyv = tu_randn(nv, 1), *dxs = tu_alloc(nv), *dxr = tu_alloc(nv);
        softmax_backward(dxs, pr, dyv, n, V);
        softmax_backward_ref(dxr, pr, dyv, n, V);
        /* element-wise bound: dx_j = y_j (g_j - dot) loses to cancellation when g_j ~ dot, so the
         * error is measured against the size of the terms, y_j (|g_j| + sum_k y_k |g_k|) */
        double worst = 0;
        for (int i = 0; i < n; i++) {
            double ag = 0;
            for (int j = 0; j < V; j++) ag += pr[(size_t)i * V + j] * fabs(dyv[(size_t)i * V + j]);
            for (int j = 0; j < V; j++) {
                size_t x = (size_t)i * V + j;
                double scale = pr[x] * (fabs(dyv[x]) + ag) + 1e-30;
                worst = fmax(worst, fabs(dxs[x] - dxr[x]) / scale);
            }
        }
        tu_expect(worst <= 16 * TU_EPS, "softmax_backward n=%d V=%d: error %.3e of the terms' size (tol 16 eps)", n, V,
                  worst);
        free(dyv), free(dxs), free(dxr);
        int *t = malloc(sizeof(int) * n);
        float *w = tu_alloc(n);
        for (int i = 0; i < n; i++) {
            t[i] = i % 5 == 3 ? -1 : (int)(tu_next() % V);
            w[i] = (float)tu_uniform();
        }
        float *l = tu_alloc(n), *lr = tu_alloc(n), *d = tu_alloc(nv), *dr = tu_alloc(nv), *l2 = tu_alloc(n);
        cross_entropy(l, d, z, t, w, n, V);
        cross_entropy_ref(lr, dr, z, t, w, n, V);
        /* the loss is lse - z_t with |lse| ~ |z|: absolute error ~ V*eps relative to max|z| */
        snprintf(what, sizeof what, "cross_entropy loss n=%d V=%d (tol 16 eps)", n, V);
        tu_expect_close(what, l, lr, n, 16 * TU_EPS);
        snprintf(what, sizeof what, "cross_entropy dlogits n=%d V=%d (tol 16 eps)", n, V);
        tu_expect_close(what, d, dr, nv, 16 * TU_EPS);
        cross_entropy(l2, NULL, z, t, w, n, V); /* loss only */
        snprintf(what, sizeof what, "cross_entropy loss-only n=%d V=%d (tol 16 eps)", n, V);
        tu_expect_close(what, l2, lr, n, 16 * TU_EPS);
        float *zi = tu_copy(z, nv); /* in place */
        cross_entropy(l2, zi, zi, t, w, n, V);
        tu_expect(!memcmp(zi, d, nv * sizeof(float)), "cross_entropy in place differs (n=%d V=%d)", n, V);
        free(z), free(p), free(pr), free(t), free(w), free(l), free(lr), free(d), free(dr), free(l2), free(zi);
    }
}

static void test_embedding(void) {
    int vocab = 50, dim = 130, n = 1000;
    int *tok = malloc(sizeof(int) * n);
    for (int i = 0; i < n; i++) tok[i] = (int)(tu_next() % 7) * 7; /* many repeats */
    float *tab = tu_randn((size_t)vocab * dim, 1), *o = tu_alloc((size_t)n * dim), *orf = tu_alloc((size_t)n * dim);
    embedding_forward(o, tab, tok, n, dim);
    embedding_forward_ref(orf, tab, tok, n, dim);
    tu_expect(!memcmp(o, orf, sizeof(float) * n * dim), "embedding_forward differs from the reference");
    float *g = tu_randn((size_t)n * dim, 1), *d = tu_randn((size_t)vocab * dim, 1), *dr = tu_copy(d, (size_t)vocab * dim);
    embedding_backward(d, g, tok, n, dim);
    embedding_backward_ref(dr, g, tok, n, dim);
    tu_expect(!memcmp(d, dr, sizeof(float) * vocab * dim),
              "embedding_backward differs from the in-order reference (both sum rows in order: must be bitwise)");
    free(tok), free(tab), free(o), free(orf), free(g), free(d), free(dr);
}

static void test_adamw(void) {
    size_t n = 100003;
    adamw_hparams h = {.lr = 1e-3, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8, .weight_decay = 0.1};
    float *p = tu_randn(n, 1), *m = tu_alloc(n), *v = tu_alloc(n);
    float *pr = tu_copy(p, n), *mr = tu_alloc(n), *vr = tu_alloc(n);
    for (long step = 1; step <= 10; step++) {
        float *g = tu_randn(n, 0.01 * step);
        const float gs = step % 4 == 1 ? 0.37f : 1.0f; /* a clipping factor on some steps */
        adamw_update(p, m, v, g, gs, n, &h, step, step % 3 != 0);
        adamw_update_ref(pr, mr, vr, g, gs, n, &h, step, step % 3 != 0);
        free(g);
    }
    /* each step moves p by at most ~lr; fp32 vs double arithmetic: a few ulp of p per step */
    tu_expect_close("adamw 10 steps: params (tol 64 eps)", p, pr, n, 64 * TU_EPS);
    tu_expect_close("adamw 10 steps: first moment (tol 64 eps)", m, mr, n, 64 * TU_EPS);
    tu_expect_close("adamw 10 steps: second moment (tol 64 eps)", v, vr, n, 64 * TU_EPS);
    double s = sum_squares(p, n), sr = sum_squares_ref(p, n);
    tu_expect(fabs(s - sr) <= 1e-12 * sr, "sum_squares %.17g vs %.17g", s, sr);
    float *g = tu_randn(n, 1), *g2 = tu_copy(g, n);
    double norm = clip_grad_norm(g, n, 1.0);
    tu_expect(fabs(norm - sqrt(sum_squares_ref(g2, n))) <= 1e-12 * norm, "clip_grad_norm returns the pre-clip norm");
    double after = sqrt(sum_squares_ref(g, n));
    tu_expect(fabs(after - 1.0 / (1 + 1e-6 / norm)) <= 8 * TU_EPS, "clipped norm %.9f, expected ~1", after);
    memcpy(g, g2, n * sizeof(float));
    clip_grad_norm(g, n, 1e9);
    tu_expect(!memcmp(g, g2, n * sizeof(float)), "clip_grad_norm changed gradients under the threshold");
    free(p), free(m), free(v), free(pr), free(mr), free(vr), free(g), free(g2);
    /* the vector loop (non-temporal stores when p, m, v share an alignment) is bitwise the
     * scalar formula in torch's order, for every alignment of the three (head and tail in scalar
     * code), scaled or not, with or without decay (main runs this on one thread and split over two) */
    const size_t nn = 1000;
    float *buf = tu_randn(4 * (nn + 16), 1), *ref = tu_alloc(3 * (nn + 16));
    for (int c = 0; c < 12; c++) {
        const int op = c % 5, om = c % 3 == 0 ? op : (c * 7) % 16, ov = c % 2 ? op : (c * 3) % 16;
        float *pp = buf + op, *mm = buf + (nn + 16) + om, *vv = buf + 2 * (nn + 16) + ov, *gg = buf + 3 * (nn + 16);
        for (size_t i = 0; i < nn; i++) vv[i] = fabsf(vv[i]);
        float *rp = ref, *rm = ref + nn, *rv = ref + 2 * nn;
        memcpy(rp, pp, sizeof(float) * nn), memcpy(rm, mm, sizeof(float) * nn), memcpy(rv, vv, sizeof(float) * nn);
        const float gs = c % 4 == 1 ? 0.37f : 1.0f;
        const int decay = c % 3 != 2;
        const long step = 1 + c;
        adamw_update(pp, mm, vv, gg, gs, nn, &h, step, decay);
        const double bc1 = 1.0 - pow(h.beta1, (double)step), bc2 = 1.0 - pow(h.beta2, (double)step);
        const float keep = (float)(1.0 - h.lr * h.weight_decay), w1 = (float)(1.0 - h.beta1), b2 = (float)h.beta2,
                    w2 = (float)(1.0 - h.beta2), ns = (float)(-(h.lr / bc1)), bcs = (float)sqrt(bc2), ep = (float)h.eps;
        int bad = 0;
        for (size_t i = 0; i < nn; i++) {
            float pi = rp[i], gi = gs == 1.0f ? gg[i] : gg[i] * gs;
            if (decay) pi = pi * keep;
            const float mi = fmaf(w1, gi - rm[i], rm[i]);
            float vi = rv[i] * b2;
            vi = vi + w2 * gi * gi;
            const float denom = sqrtf(vi) / bcs + ep;
            const float pn = pi + ns * mi / denom;
            bad += memcmp(&pn, pp + i, 4) || memcmp(&mi, mm + i, 4) || memcmp(&vi, vv + i, 4);
        }
        tu_expect(!bad, "adamw_update offsets p %d m %d v %d scale %g decay %d: %d elements differ from the scalar formula",
                  op, om, ov, gs, decay, bad);
    }
    free(buf), free(ref);
}

static void test_schedule(void) {
    lr_schedule c = {.kind = LR_COSINE, .lr = 1.0, .min_lr_ratio = 0.1, .warmup = 10, .total = 110};
    tu_expect(lr_schedule_at(&c, 0) == 0.0, "cosine: lr(0) with warmup must be 0");
    tu_expect(fabs(lr_schedule_at(&c, 5) - 0.5) < 1e-15, "cosine: lr(5) = 0.5 during warmup");
    tu_expect(fabs(lr_schedule_at(&c, 10) - 1.0) < 1e-15, "cosine: lr(warmup) = peak");
    tu_expect(fabs(lr_schedule_at(&c, 60) - 0.55) < 1e-12, "cosine: halfway = (peak + floor)/2");
    tu_expect(fabs(lr_schedule_at(&c, 110) - 0.1) < 1e-15, "cosine: lr(total) = floor");
    tu_expect(fabs(lr_schedule_at(&c, 500) - 0.1) < 1e-15, "cosine: stays at the floor");
    int mono = 1;
    for (long s = 10; s < 110; s++) mono &= lr_schedule_at(&c, s + 1) <= lr_schedule_at(&c, s);
    tu_expect(mono, "cosine: non-increasing after warmup");
    lr_schedule l = {.kind = LR_LINEAR, .lr = 2.0, .min_lr_ratio = 0, .warmup = 0, .total = 100};
    tu_expect(fabs(lr_schedule_at(&l, 0) - 2.0) < 1e-15 && fabs(lr_schedule_at(&l, 25) - 1.5) < 1e-15 &&
                  lr_schedule_at(&l, 100) == 0.0,
              "linear: 2.0 -> 1.5 at 25%% -> 0 at the end");
    lr_schedule k = {.kind = LR_CONSTANT, .lr = 3.0, .warmup = 4, .total = 10};
    tu_expect(lr_schedule_at(&k, 2) == 1.5 && lr_schedule_at(&k, 50) == 3.0, "constant with warmup");
}

int main(int argc, char **argv) {
    tu_verbose = argc > 1 && !strcmp(argv[1], "-v");
    tu_seed(1234);
    /* Every fast kernel on 1 thread and on the machine's count: results are compared to the
     * reference either way (and must not depend on the count where the header says so). */
    int threads[2] = {1, kernels_set_threads(0)};
    for (int t = 0; t < (threads[1] > 1 ? 2 : 1); t++) {
        kernels_set_threads(threads[t]);
        kernels_split_always(t == 1); /* small test sizes: split every kernel anyway */
        printf("-- %d thread(s)\n", threads[t]);
        test_matmul();
        test_fastmath();
        test_linear();
        test_rmsnorm();
        test_rope();
        test_attention();
        test_swiglu();
        test_softmax_ce();
        test_embedding();
        test_adamw();
    }
    test_schedule();
    return tu_finish("test_kernels");
}
