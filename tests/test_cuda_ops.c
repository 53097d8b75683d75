/* test_cuda_ops.c: every CUDA op against the CPU reference on the same inputs (the ggml
 * test-backend-ops pattern: one table of ops x shapes x dtypes; attention in test_cuda_attn.c).
 * Inputs are rounded to the op's dtype first, so both sides read the same values; the reference is
 * the *_ref function of kernels/ (plain loops in double) or, where the CUDA op promises bits, the CPU
 * kernel itself (AdamW, conversions, embedding gathers). Each element is held to a bound derived from
 * the op's roundings (cuda_twin.h: EPS32 per fp32 rounding, u(dt) per store in dt, with the
 * reduction lengths); the derivation is written beside each case. Every case prints its worst
 * error/bound; any ratio above 1 fails the test.
 *
 * Built twice: test_cuda (nvcc build, a GPU) and test_cuda_emu (the host emulation of
 * kernels/cuda/emu, always in ctest). Without a CUDA device the real one prints one line
 * "skipped: no CUDA device" and exits 77 (ctest's skip), or fails when SMELT_REQUIRE_GPU=1.
 * On a GPU it also runs larger shapes (head_dim 128, long reductions). */
#include "cuda_twin.h"
#include "kernels/adamw.h"
#include "kernels/embedding.h"
#include "kernels/linear.h"
#include "kernels/rmsnorm.h"
#include "kernels/rope.h"
#include "kernels/softmax.h"
#include "kernels/swiglu.h"

TW_GLOBALS;

static char shp[96];
#define SHAPE(...) snprintf(shp, sizeof shp, __VA_ARGS__)
#define TRY TW_TRY

/* ---- GEMM ---- */

/* C = alpha op(A) op(B) + beta C0, reference in double. Per element (Higham, fp32 sums over k, each
 * product exact for bf16/fp16 operands and one rounding for fp32): (k+3) EPS32 (|alpha| sum|a||b| +
 * |beta||c0|), plus u(ct) |C| for the store in ct. */
static void case_gemm(int m, int n, int k, int ta, int tb, int pad, float alpha, float beta, cu_dtype ab, cu_dtype ct) {
    const int lda = (ta ? m : k) + pad, ldb = (tb ? k : n) + pad, ldc = n + pad;
    const size_t na = (size_t)(ta ? k : m) * lda, nb = (size_t)(tb ? n : k) * ldb, nc = (size_t)m * ldc;
    float *a = tw_randn(na, 1, ab), *b = tw_randn(nb, 1, ab), *c0 = tw_randn(nc, 1, ct), *got = tw_falloc(nc);
    double *ref = tw_dalloc(nc), *bound = tw_dalloc(nc);
    void *da = tw_put(a, na, ab), *db = tw_put(b, nb, ab), *dc = tw_put(c0, nc, ct);
    TRY(cu_gemm(tw_ctx, dc, ct, ldc, da, lda, ta, db, ldb, tb, ab, m, n, k, alpha, beta));
    tw_get(got, dc, nc, ct);
    for (size_t x = 0; x < nc; x++) ref[x] = c0[x]; /* padding columns: untouched, bound 0 */
    for (int i = 0; i < m; i++)
        for (int j = 0; j < n; j++) {
            double s = 0, sa = 0;
            for (int l = 0; l < k; l++) {
                const double x = a[ta ? (size_t)l * lda + i : (size_t)i * lda + l];
                const double y = b[tb ? (size_t)j * ldb + l : (size_t)l * ldb + j];
                s += x * y, sa += fabs(x * y);
            }
            const size_t o = (size_t)i * ldc + j;
            ref[o] = alpha * s + (beta != 0 ? beta * (double)c0[o] : 0);
            bound[o] = (k + 3) * EPS32 * (fabs(alpha) * sa + fabs(beta * c0[o])) + tw_st(ct, ref[o]) + 1e-30;
        }
    SHAPE("m%d n%d k%d t%d%d pad%d a%g b%g", m, n, k, ta, tb, pad, alpha, beta);
    char what[16];
    snprintf(what, sizeof what, "C %s", cu_dtype_name(ct));
    tw_report("gemm", shp, ab, what, tw_worst(got, ref, bound, nc));
    free(a), free(b), free(c0), free(got), free(ref), free(bound);
    tw_free_all();
}

/* db += column sums of dy in row order: (n+2) EPS32 (sum|dy| + |db0|). */
static void case_bias_grad(int n, int m, int pad, cu_dtype dt) {
    const int ld = m + pad;
    float *dy = tw_randn((size_t)n * ld, 1, dt), *db0 = tw_randn(m, 1, CU_F32), *got = tw_falloc(m), *rf = tw_falloc(m);
    double *ref = tw_dalloc(m), *bound = tw_dalloc(m);
    void *ddy = tw_put(dy, (size_t)n * ld, dt), *ddb = tw_put(db0, m, CU_F32);
    TRY(cu_bias_grad(tw_ctx, ddb, ddy, ld, n, m, dt));
    tw_get(got, ddb, m, CU_F32);
    memcpy(rf, db0, sizeof(float) * m);
    bias_grad_ref(rf, dy, ld, n, m);
    for (int j = 0; j < m; j++) {
        double sa = fabs(db0[j]);
        for (int i = 0; i < n; i++) sa += fabs(dy[(size_t)i * ld + j]);
        ref[j] = rf[j], bound[j] = (n + 2) * EPS32 * sa + 1e-30;
    }
    SHAPE("n%d m%d pad%d", n, m, pad);
    tw_report("bias_grad", shp, dt, "db", tw_worst(got, ref, bound, m));
    free(dy), free(db0), free(got), free(rf), free(ref), free(bound);
    tw_free_all();
}

/* Conversions round to nearest even: the same bits as the host's conversion (bound 0). */
static void case_convert(size_t n, cu_dtype from, cu_dtype to) {
    float *x = tw_randn(n, 3, from), *got = tw_falloc(n);
    double *ref = tw_dalloc(n), *bound = tw_dalloc(n);
    x[0] = 1e-41f, x[n - 1] = 65504.0f * 2; /* a denormal, and beyond fp16's range (to infinity) */
    tw_round_n(x, n, from);
    void *dx = tw_put(x, n, from), *dy = tw_dev(n * 4 + 16);
    TRY(cu_convert(tw_ctx, dy, to, dx, from, n));
    tw_get(got, dy, n, to);
    for (size_t i = 0; i < n; i++) ref[i] = tw_round(x[i], to);
    char what[16];
    snprintf(what, sizeof what, "to %s", cu_dtype_name(to));
    SHAPE("n%zu", n);
    tw_report("convert", shp, from, what, tw_worst(got, ref, bound, n));
    free(x), free(got), free(ref), free(bound);
    tw_free_all();
}

/* fp16 conversions at their edges, bitwise against the project's own conversions (model/safetensors.c,
 * written independently of the device's): every non-NaN half to fp32; and fp32 to half at every
 * rounding position from below fp16's subnormals (2^-26) to beyond its range (2^17), the exact tie,
 * one unit either side of it, with an even and an odd kept part, both signs. NaNs are left out (their
 * payload is the hardware's choice). Bound 0: a differing bit pattern fails. */
static void case_convert_f16_edges(void) {
    enum { NH = 65536, NF = (144 - 101 + 1) * 24 * 3 * 2 * 2 };
    uint16_t *h = malloc(NH * 2), *hb = malloc(NF * 2);
    float *hf = tw_falloc(NH), *f = tw_falloc(NF);
    double *ref = tw_dalloc(NF > NH ? NF : NH), *bound = tw_dalloc(NF > NH ? NF : NH);
    int nh = 0, nf = 0;
    for (uint32_t b = 0; b < NH; b++)
        if (((b >> 10) & 0x1f) != 0x1f || !(b & 0x3ff)) h[nh] = (uint16_t)b, ref[nh] = st_f16_to_f32((uint16_t)b), nh++;
    void *dh = tw_put_raw(h, (size_t)nh * 2), *dhf = tw_dev((size_t)nh * 4);
    TRY(cu_convert(tw_ctx, dhf, CU_F32, dh, CU_F16, (size_t)nh));
    tw_get(hf, dhf, (size_t)nh, CU_F32);
    tw_report("convert", "every half", CU_F16, "to f32", tw_worst(hf, ref, bound, (size_t)nh));
    for (uint32_t e = 101; e <= 144; e++)      /* fp32 biased exponents: 2^-26 .. 2^17 */
        for (uint32_t j = 0; j < 24; j++)       /* the tie at mantissa bit j (bits below it dropped) */
            for (int d = -1; d <= 1; d++)       /* below the tie, the tie, above it */
                for (uint32_t odd = 0; odd < 2; odd++)
                    for (uint32_t sg = 0; sg < 2; sg++) {
                        uint32_t m = (1u << j) + (uint32_t)d; /* 0 < m < 2^24 except j = 0, d = -1: 0 */
                        if (j + 1 < 23) m |= odd << (j + 1);
                        const uint32_t u = sg << 31 | e << 23 | (m & 0x7fffffu);
                        memcpy(&f[nf++], &u, 4);
                    }
    void *df = tw_put(f, (size_t)nf, CU_F32), *dhb = tw_dev((size_t)nf * 2);
    TRY(cu_convert(tw_ctx, dhb, CU_F16, df, CU_F32, (size_t)nf));
    if (cu_download(tw_ctx, hb, dhb, (size_t)nf * 2)) tw_die("download");
    float *got = tw_falloc(nf);
    for (int i = 0; i < nf; i++) {
        /* compare the bits as numbers: the same bits give ratio 0, any other pattern is infinite */
        const uint16_t want = st_f32_to_f16(f[i]);
        got[i] = (float)hb[i], ref[i] = want, bound[i] = 0;
    }
    tw_report("convert", "f16 rounding edges", CU_F32, "to f16", tw_worst(got, ref, bound, (size_t)nf));
    free(h), free(hb), free(hf), free(f), free(got), free(ref), free(bound);
    tw_free_all();
}

/* ---- RMSNorm ---- */

static void case_rmsnorm(int n, int d, cu_dtype dt) {
    const size_t nd = (size_t)n * d;
    float *x = tw_randn(nd, 2, dt), *w = tw_randn(d, 0.2, CU_F32), *got = tw_falloc(nd), *rf = tw_falloc(nd);
    float *rstd = tw_falloc(n), *grstd = tw_falloc(n);
    for (int j = 0; j < d; j++) w[j] += 1;
    double *ref = tw_dalloc(nd), *bound = tw_dalloc(nd), *rr = tw_dalloc(n), *rb = tw_dalloc(n);
    void *dx = tw_put(x, nd, dt), *dw = tw_put(w, d, CU_F32), *dout = tw_dev(nd * 4), *drstd = tw_dev((size_t)n * 4);
    TRY(cu_rmsnorm_forward(tw_ctx, dout, drstd, dx, dw, n, d, 1e-5f, dt));
    tw_get(got, dout, nd, dt);
    tw_get(grstd, drstd, n, CU_F32);
    rmsnorm_forward_ref(rf, rstd, x, w, n, d, 1e-5f);
    /* ss: d fp32 additions; then /d, +eps, sqrt, 1/x, and two products: (d + 6) roundings, plus the
     * store in dt (the sqrt halves the error of ss: a margin) */
    for (size_t i = 0; i < nd; i++) ref[i] = rf[i], bound[i] = ((d + 6) * EPS32 + tw_u(dt)) * fabs(rf[i]) + tw_eta(dt);
    for (int i = 0; i < n; i++) rr[i] = rstd[i], rb[i] = (d + 6) * EPS32 * rstd[i];
    SHAPE("n%d d%d", n, d);
    tw_report("rmsnorm_forward", shp, dt, "out", tw_worst(got, ref, bound, nd));
    tw_report("rmsnorm_forward", shp, dt, "rstd", tw_worst(grstd, rr, rb, n));

    /* backward from the reference's rstd: dx += r w g - c x, c = r^3 dot / d, dot = sum_k w g x over
     * d terms; dw += sum_i g x r over n rows (chunk partials, then chunks) */
    float *g = tw_randn(nd, 1, dt), *dx0 = tw_randn(nd, 1, dt), *dw0 = tw_randn(d, 1, CU_F32);
    float *rdx = tw_falloc(nd), *rdw = tw_falloc(d), *gdw = tw_falloc(d);
    double *dwb = tw_dalloc(d), *dwr = tw_dalloc(d);
    memcpy(rdx, dx0, sizeof(float) * nd), memcpy(rdw, dw0, sizeof(float) * d);
    void *dg = tw_put(g, nd, dt), *ddx = tw_put(dx0, nd, dt), *ddw = tw_put(dw0, d, CU_F32);
    TRY(cu_upload(tw_ctx, drstd, rstd, sizeof(float) * n));
    TRY(cu_rmsnorm_backward(tw_ctx, ddx, ddw, dg, dx, dw, drstd, n, d, dt));
    tw_get(got, ddx, nd, dt);
    tw_get(gdw, ddw, d, CU_F32);
    rmsnorm_backward_ref(rdx, rdw, g, x, w, rstd, n, d);
    for (int j = 0; j < d; j++) dwb[j] = fabs(dw0[j]);
    for (int i = 0; i < n; i++) {
        const double r = rstd[i];
        double dot = 0, adot = 0;
        for (int k = 0; k < d; k++) {
            const double t = (double)w[k] * g[(size_t)i * d + k] * x[(size_t)i * d + k];
            dot += t, adot += fabs(t);
        }
        const double cc = r * r * r * dot / d, dcc = r * r * r / d * (d + 2) * EPS32 * adot + 5 * EPS32 * fabs(cc);
        for (int j = 0; j < d; j++) {
            const size_t o = (size_t)i * d + j;
            ref[o] = rdx[o];
            bound[o] = fabs(x[o]) * dcc + 3 * EPS32 * (fabs(r * w[j] * g[o]) + fabs(cc * x[o])) +
                       (EPS32 + tw_u(dt)) * fabs(rdx[o]) + EPS32 * fabs(dx0[o]) + tw_eta(dt);
            dwb[j] += fabs(g[o] * (double)x[o] * r);
        }
    }
    for (int j = 0; j < d; j++) dwr[j] = rdw[j], dwb[j] *= (n + 4) * EPS32;
    tw_report("rmsnorm_backward", shp, dt, "dx", tw_worst(got, ref, bound, nd));
    tw_report("rmsnorm_backward", shp, dt, "dw", tw_worst(gdw, dwr, dwb, d));
    free(x), free(w), free(got), free(rf), free(rstd), free(grstd), free(ref), free(bound), free(rr), free(rb);
    free(g), free(dx0), free(dw0), free(rdx), free(rdw), free(gdw), free(dwb), free(dwr);
    tw_free_all();
}

/* ---- RoPE ---- */

static void case_rope(int n, int n_heads, int hd, int pad, int llama3, cu_dtype dt) {
    const int half = hd / 2, n_pos = n + 37, ldx = n_heads * hd + pad;
    const size_t nx = (size_t)n * ldx, nt = (size_t)n_pos * half;
    rope_scaling sc = {.llama3 = llama3, .factor = 8, .low_freq_factor = 1, .high_freq_factor = 4, .original_max_pos = 64};
    float *inv = tw_falloc(half), *ct = tw_falloc(nt), *st = tw_falloc(nt), *gc = tw_falloc(nt), *gs = tw_falloc(nt);
    rope_inv_freq(inv, hd, 10000.0f, &sc);
    rope_tables(ct, st, inv, 5, n_pos, half);
    double *ref = tw_dalloc(nx > nt ? nx : nt), *bound = tw_dalloc(nx > nt ? nx : nt);
    void *dinv = tw_put(inv, half, CU_F32), *dct = tw_dev(nt * 4), *dst = tw_dev(nt * 4);
    TRY(cu_rope_tables(tw_ctx, dct, dst, dinv, 5, n_pos, half));
    tw_get(gc, dct, nt, CU_F32), tw_get(gs, dst, nt, CU_F32);
    SHAPE("pos 5..%d half%d llama3=%d", 5 + n_pos - 1, half, llama3);
    /* the same fp32 angle, cos and sin in double on both sides, rounded to fp32: within 1 ulp */
    for (size_t i = 0; i < nt; i++) ref[i] = ct[i], bound[i] = EPS32 * fabs(ct[i]) + 1e-38;
    tw_report("rope_tables", shp, CU_F32, "cos", tw_worst(gc, ref, bound, nt));
    for (size_t i = 0; i < nt; i++) ref[i] = st[i], bound[i] = EPS32 * fabs(st[i]) + 1e-38;
    tw_report("rope_tables", shp, CU_F32, "sin", tw_worst(gs, ref, bound, nt));

    /* rotation: two products and a sum per output, from the CPU's tables on both sides:
     * 2 EPS32 (|a c| + |b s|) + u(dt) |out|; padding columns untouched (bound 0) */
    int *pos = malloc(sizeof(int) * n);
    for (int i = 0; i < n; i++) pos[i] = (int)(tw_uniform() * n_pos);
    float *x = tw_randn(nx, 2, dt), *got = tw_falloc(nx), *rf = tw_falloc(nx);
    void *dpos = tw_put_raw(pos, sizeof(int) * n), *dc = tw_put(ct, nt, CU_F32), *ds = tw_put(st, nt, CU_F32);
    for (int dir = 0; dir < 2; dir++) {
        void *dx = tw_put(x, nx, dt);
        memcpy(rf, x, sizeof(float) * nx);
        if (!dir) {
            TRY(cu_rope_forward(tw_ctx, dx, ldx, dpos, dc, ds, n, n_heads, hd, dt));
            rope_forward_ref(rf, ldx, pos, ct, st, n, n_heads, hd);
        } else {
            TRY(cu_rope_backward(tw_ctx, dx, ldx, dpos, dc, ds, n, n_heads, hd, dt));
            rope_backward_ref(rf, ldx, pos, ct, st, n, n_heads, hd);
        }
        tw_get(got, dx, nx, dt);
        for (int t = 0; t < n; t++)
            for (int c = 0; c < ldx; c++) {
                const size_t o = (size_t)t * ldx + c;
                ref[o] = rf[o], bound[o] = 0;
                if (c >= n_heads * hd) continue;
                const int h = c / hd, i = c % hd % half, lo = c % hd < half;
                const size_t a = (size_t)t * ldx + (size_t)h * hd + i, tb = (size_t)pos[t] * half + i;
                /* x1' = a c - b s (first half), x2' = b c + a s (second half), a = x1, b = x2 */
                const double aa = x[a], bb = x[a + half], c_ = ct[tb], s_ = st[tb];
                bound[o] = 2 * EPS32 * (lo ? fabs(aa * c_) + fabs(bb * s_) : fabs(bb * c_) + fabs(aa * s_)) +
                           tw_st(dt, rf[o]) + 1e-30;
            }
        SHAPE("n%d heads%d hd%d pad%d", n, n_heads, hd, pad);
        tw_report(dir ? "rope_backward" : "rope_forward", shp, dt, "x", tw_worst(got, ref, bound, nx));
    }
    free(inv), free(ct), free(st), free(gc), free(gs), free(ref), free(bound), free(pos), free(x), free(got), free(rf);
    tw_free_all();
}

/* ---- SwiGLU ---- */

static void case_swiglu(int n, int dim, cu_dtype dt) {
    const int ld = 2 * dim; /* gate | up, as the model's fused projection */
    const size_t ng = (size_t)n * ld, nh = (size_t)n * dim;
    float *gu = tw_randn(ng, 3, dt), *got = tw_falloc(ng), *rf = tw_falloc(ng), *rf2 = tw_falloc(ng);
    double *ref = tw_dalloc(ng), *bound = tw_dalloc(ng);
    void *dgu = tw_put(gu, ng, dt), *dh = tw_dev(nh * 4);
    TRY(cu_swiglu_forward(tw_ctx, dh, dgu, (char *)dgu + (size_t)dim * cu_dtype_size(dt), ld, n, dim, dt));
    tw_get(got, dh, nh, dt);
    swiglu_forward_ref(rf, gu, gu + dim, ld, n, dim);
    /* exp (2 ulp), 1 + e, g / (.), times u: 6 EPS32 relative, plus the store */
    for (size_t i = 0; i < nh; i++) ref[i] = rf[i], bound[i] = (6 * EPS32 + tw_u(dt)) * fabs(rf[i]) + tw_eta(dt);
    SHAPE("n%d dim%d", n, dim);
    tw_report("swiglu_forward", shp, dt, "h", tw_worst(got, ref, bound, nh));

    /* backward IN PLACE (dgate, dup over gate, up, as the model runs it). With s = sigmoid(g),
     * A = 1 + g (1 - s): dg = dh u s A, du = dh g s. s: 4 EPS32 relative; 1 - s: 4 EPS32 s + 2 EPS32 |1-s|
     * absolute, times |g|; A: + EPS32 |A|; s A: + 5 EPS32 s |A|; the products: + 2 EPS32. */
    float *dhv = tw_randn(nh, 1, dt);
    void *ddh = tw_put(dhv, nh, dt);
    TRY(cu_swiglu_backward(tw_ctx, dgu, (char *)dgu + (size_t)dim * cu_dtype_size(dt), ddh, dgu,
                           (char *)dgu + (size_t)dim * cu_dtype_size(dt), ld, n, dim, dt));
    tw_get(got, dgu, ng, dt);
    swiglu_backward_ref(rf2, rf2 + dim, dhv, gu, gu + dim, ld, n, dim);
    for (int i = 0; i < n; i++)
        for (int j = 0; j < dim; j++) {
            const size_t a = (size_t)i * ld + j, b = a + dim;
            const double g = gu[a], u = gu[b], d = dhv[(size_t)i * dim + j], s = 1 / (1 + exp(-g)), A = 1 + g * (1 - s);
            ref[a] = rf2[a], ref[b] = rf2[b];
            bound[a] = fabs(d * u) * s * (fabs(g) * (4 * s + 2 * fabs(1 - s)) + 8 * fabs(A)) * EPS32 +
                       tw_st(dt, rf2[a]) + 1e-30;
            bound[b] = (7 * EPS32 + tw_u(dt)) * fabs(rf2[b]) + tw_eta(dt);
        }
    tw_report("swiglu_backward", shp, dt, "dgate,dup", tw_worst(got, ref, bound, ng));
    free(gu), free(got), free(rf), free(rf2), free(ref), free(bound), free(dhv);
    tw_free_all();
}

/* ---- embedding ---- */

static void case_embedding(int n, int vocab, int dim, cu_dtype dt) {
    const size_t nt = (size_t)vocab * dim, no = (size_t)n * dim;
    int *tok = malloc(sizeof(int) * n);
    for (int i = 0; i < n; i++) tok[i] = (int)(tw_uniform() * vocab); /* vocab < n: tokens repeat */
    float *table = tw_randn(nt, 1, dt), *got = tw_falloc(nt > no ? nt : no), *rf = tw_falloc(nt > no ? nt : no);
    double *ref = tw_dalloc(nt > no ? nt : no), *bound = tw_dalloc(nt > no ? nt : no);
    void *dtab = tw_put(table, nt, dt), *dtok = tw_put_raw(tok, sizeof(int) * n), *dout = tw_dev(no * 4);
    TRY(cu_embedding_forward(tw_ctx, dout, dtab, dtok, n, dim, dt));
    tw_get(got, dout, no, dt);
    embedding_forward_ref(rf, table, tok, n, dim);
    for (size_t i = 0; i < no; i++) ref[i] = rf[i], bound[i] = 0; /* a copy: the same bits */
    SHAPE("n%d vocab%d dim%d", n, vocab, dim);
    tw_report("embedding_forward", shp, dt, "out", tw_worst(got, ref, bound, no));

    /* dtable += dout rows: a sum of the rows of each token, (count + 1) EPS32 sum|terms| */
    float *g = tw_randn(no, 1, dt), *dt0 = tw_randn(nt, 1, CU_F32);
    void *dg = tw_put(g, no, dt), *ddt = tw_put(dt0, nt, CU_F32);
    TRY(cu_embedding_backward(tw_ctx, ddt, dg, dtok, n, dim, dt));
    tw_get(got, ddt, nt, CU_F32);
    memcpy(rf, dt0, sizeof(float) * nt);
    embedding_backward_ref(rf, g, tok, n, dim);
    for (size_t i = 0; i < nt; i++) ref[i] = rf[i], bound[i] = fabs(dt0[i]);
    int *cnt = calloc(vocab, sizeof(int));
    for (int i = 0; i < n; i++) {
        cnt[tok[i]]++;
        for (int j = 0; j < dim; j++) bound[(size_t)tok[i] * dim + j] += fabs(g[(size_t)i * dim + j]);
    }
    for (int v = 0; v < vocab; v++)
        for (int j = 0; j < dim; j++) bound[(size_t)v * dim + j] *= (cnt[v] + 1) * EPS32;
    tw_report("embedding_backward", shp, dt, "dtable", tw_worst(got, ref, bound, nt));
    /* the grouped form (rows sorted by token on the host): the same sums in another order */
    int *order = malloc(sizeof(int) * n), *starts = malloc(sizeof(int) * (n + 1)), distinct = 0;
    const int ng = cu_embedding_groups(order, starts, tok, n);
    for (int v = 0; v < vocab; v++) distinct += cnt[v] > 0;
    void *dord = tw_put_raw(order, sizeof(int) * n), *dsts = tw_put_raw(starts, sizeof(int) * (ng + 1));
    void *ddt2 = tw_put(dt0, nt, CU_F32);
    TRY(cu_embedding_backward_grouped(tw_ctx, ddt2, dg, dtok, dord, dsts, ng, dim, dt));
    tw_get(got, ddt2, nt, CU_F32);
    tw_report("embedding_bwd_grouped", shp, dt, "dtable", ng == distinct ? tw_worst(got, ref, bound, nt) : INFINITY);
    free(order), free(starts);
    free(tok), free(table), free(got), free(rf), free(ref), free(bound), free(g), free(dt0), free(cnt);
    tw_free_all();
}

/* ---- softmax and cross-entropy ---- */

/* the row's max and range max_j |x_j - max| (exp(x - max) is off by EPS32/2 per unit of range) */
static double row_range(const float *x, int dim, double *mx) {
    double m = -INFINITY, lo = INFINITY;
    for (int j = 0; j < dim; j++) m = fmax(m, x[j]), lo = fmin(lo, x[j]);
    *mx = m;
    return m - lo;
}

static void case_softmax(int n, int dim, cu_dtype dt) {
    const size_t nd = (size_t)n * dim;
    float *x = tw_randn(nd, 3, dt), *got = tw_falloc(nd), *rf = tw_falloc(nd), *y, *dy;
    double *ref = tw_dalloc(nd), *bound = tw_dalloc(nd);
    void *dx = tw_put(x, nd, dt), *dyv = tw_dev(nd * 4);
    TRY(cu_softmax_forward(tw_ctx, dyv, dx, n, dim, dt));
    tw_get(got, dyv, nd, dt);
    softmax_forward_ref(rf, x, n, dim);
    /* each exp: 2 ulp + the range term; the sum: dim terms; 1/sum and the product: 2 more */
    for (int i = 0; i < n; i++) {
        double mx, R = row_range(x + (size_t)i * dim, dim, &mx);
        for (int j = 0; j < dim; j++) {
            const size_t o = (size_t)i * dim + j;
            ref[o] = rf[o], bound[o] = ((dim + 6 + R) * EPS32 + tw_u(dt)) * fabs(rf[o]) + tw_eta(dt);
        }
    }
    SHAPE("n%d dim%d", n, dim);
    tw_report("softmax_forward", shp, dt, "y", tw_worst(got, ref, bound, nd));
    /* backward: dx = y (dy - dot), dot over dim terms */
    y = rf, dy = tw_randn(nd, 1, dt);
    tw_round_n(y, nd, dt);
    void *dY = tw_put(y, nd, dt), *ddy = tw_put(dy, nd, dt);
    TRY(cu_softmax_backward(tw_ctx, ddy, dY, ddy, n, dim, dt)); /* in place over dy */
    tw_get(got, ddy, nd, dt);
    float *rdx = tw_falloc(nd);
    softmax_backward_ref(rdx, y, dy, n, dim);
    for (int i = 0; i < n; i++) {
        double dot = 0, adot = 0;
        for (int j = 0; j < dim; j++) dot += (double)y[(size_t)i * dim + j] * dy[(size_t)i * dim + j],
                                      adot += fabs((double)y[(size_t)i * dim + j] * dy[(size_t)i * dim + j]);
        for (int j = 0; j < dim; j++) {
            const size_t o = (size_t)i * dim + j;
            ref[o] = rdx[o];
            bound[o] = fabs(y[o]) * ((dim + 2) * EPS32 * adot + 2 * EPS32 * fabs(dy[o] - dot)) + tw_st(dt, rdx[o]) + 1e-38;
        }
    }
    tw_report("softmax_backward", shp, dt, "dx", tw_worst(got, ref, bound, nd));
    free(x), free(got), free(rf), free(dy), free(rdx), free(ref), free(bound);
    tw_free_all();
}

static void case_cross_entropy(int n, int vocab, int weighted, int in_place, cu_dtype dt) {
    const size_t nv = (size_t)n * vocab;
    float *z = tw_randn(nv, 3, dt), *w = weighted ? tw_falloc(n) : NULL, *got = tw_falloc(nv), *rd = tw_falloc(nv);
    float *loss = tw_falloc(n), *gl = tw_falloc(n);
    int *t = malloc(sizeof(int) * n);
    for (int i = 0; i < n; i++) {
        t[i] = i % 5 == 3 ? -1 : (int)(tw_uniform() * vocab);
        if (w) w[i] = (float)(0.5 + tw_uniform());
    }
    double *ref = tw_dalloc(nv), *bound = tw_dalloc(nv), *lr = tw_dalloc(n), *lb = tw_dalloc(n);
    void *dz = tw_put(z, nv, dt), *dd = in_place ? dz : tw_dev(nv * 4), *dl = tw_dev((size_t)n * 4);
    void *dtg = tw_put_raw(t, sizeof(int) * n), *dw = w ? tw_put(w, n, CU_F32) : NULL;
    TRY(cu_cross_entropy(tw_ctx, dl, dd, dz, dtg, dw, n, vocab, dt));
    tw_get(got, dd, nv, dt), tw_get(gl, dl, n, CU_F32);
    cross_entropy_ref(loss, rd, z, t, w, n, vocab);
    /* the sum of exps: vocab + range terms (as softmax); the loss w (max + log sum - z_t): that
     * relative error absolutely, plus EPS32 per operand of the sum; dlogits: w p relative as softmax */
    for (int i = 0; i < n; i++) {
        const double wi = w ? w[i] : 1;
        double mx, R = row_range(z + (size_t)i * vocab, vocab, &mx), sum = 0;
        for (int j = 0; j < vocab; j++) sum += exp(z[(size_t)i * vocab + j] - mx);
        const double e = (vocab + 6 + R) * EPS32;
        lr[i] = loss[i];
        lb[i] = t[i] < 0 ? 0 : fabs(wi) * (e + EPS32 * (fabs(mx) + fabs(log(sum)) + fabs(z[(size_t)i * vocab + t[i]]))) +
                                   2 * EPS32 * fabs(loss[i]) + 1e-30;
        for (int j = 0; j < vocab; j++) {
            const size_t o = (size_t)i * vocab + j;
            ref[o] = rd[o];
            bound[o] = t[i] < 0 ? 0 : fabs(wi) * e * exp(z[o] - mx) / sum + (EPS32 + tw_u(dt)) * fabs(rd[o]) + tw_eta(dt);
        }
    }
    SHAPE("n%d vocab%d w%d%s", n, vocab, weighted, in_place ? " in-place" : "");
    tw_report("cross_entropy", shp, dt, "loss", tw_worst(gl, lr, lb, n));
    tw_report("cross_entropy", shp, dt, "dlogits", tw_worst(got, ref, bound, nv));
    free(z), free(w), free(got), free(rd), free(loss), free(gl), free(t), free(ref), free(bound), free(lr), free(lb);
    tw_free_all();
}

/* ---- AdamW and reductions ---- */

/* AdamW promises the CPU's bits: p, m, v after one step equal adamw_update's (bound 0); the bf16
 * copy is the new p rounded to nearest even; with skip set nothing changes. */
static void case_adamw(size_t n, int decay, int scaled, int skip) {
    float *p = tw_randn(n, 1, CU_F32), *m = tw_randn(n, 0.01, CU_F32), *v = tw_randn(n, 0.01, CU_F32);
    float *g = tw_randn(n, 0.1, CU_F32), *got = tw_falloc(n);
    for (size_t i = 0; i < n; i++) v[i] = v[i] * v[i];
    const float gs = 0.37f;
    const int sk = skip;
    adamw_hparams h = {.lr = 3e-3, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8, .weight_decay = 0.1};
    void *dp = tw_put(p, n, CU_F32), *dm = tw_put(m, n, CU_F32), *dv = tw_put(v, n, CU_F32), *dg = tw_put(g, n, CU_F32);
    void *dgs = scaled ? tw_put(&gs, 1, CU_F32) : NULL, *dsk = tw_put_raw(&sk, sizeof sk);
    float *pc0 = tw_randn(n, 1, CU_BF16);
    void *dpc = tw_put(pc0, n, CU_BF16);
    TRY(cu_adamw(tw_ctx, dp, dm, dv, dg, dgs, dsk, n, &h, 7, decay, dpc, CU_BF16));
    float *pc = tw_falloc(n);
    if (!skip) adamw_update(p, m, v, g, scaled ? gs : 1.0f, n, &h, 7, decay);
    double *ref = tw_dalloc(n), *bound = tw_dalloc(n);
    SHAPE("n%zu decay%d scaled%d skip%d", n, decay, scaled, skip);
    const float *want[3] = {p, m, v};
    void *have[3] = {dp, dm, dv};
    const char *names[3] = {"p", "m", "v"};
    for (int t = 0; t < 3; t++) {
        tw_get(got, have[t], n, CU_F32);
        for (size_t i = 0; i < n; i++) ref[i] = want[t][i];
        tw_report("adamw", shp, CU_F32, names[t], tw_worst(got, ref, bound, n));
    }
    tw_get(pc, dpc, n, CU_BF16);
    for (size_t i = 0; i < n; i++) ref[i] = skip ? pc0[i] : tw_round(p[i], CU_BF16);
    tw_report("adamw", shp, CU_BF16, "p copy", tw_worst(pc, ref, bound, n));
    free(p), free(m), free(v), free(g), free(got), free(pc0), free(pc), free(ref), free(bound);
    tw_free_all();
}

/* fp64 sums over n terms: (n + 2) EPS64 sum|terms| (the reference's own error counted twice). */
static void case_reduce(size_t n) {
    float *x = tw_randn(n, 1, CU_F32);
    double *xd = tw_dalloc(n), s = 0, sa = 0, q = 0, got[4];
    for (size_t i = 0; i < n; i++) xd[i] = x[i] * 0.5, s += x[i], sa += fabs(x[i]), q += (double)x[i] * x[i];
    void *dx = tw_put(x, n, CU_F32), *dxd = tw_put_raw(xd, n * 8), *out = tw_dev(4 * 8);
    const double five = 5;
    TRY(cu_upload(tw_ctx, (double *)out + 3, &five, 8));
    TRY(cu_sum(tw_ctx, (double *)out, dx, n, 0));
    TRY(cu_sum_squares(tw_ctx, (double *)out + 1, dx, n, 0));
    TRY(cu_sum_f64(tw_ctx, (double *)out + 2, dxd, n, 0));
    TRY(cu_sum(tw_ctx, (double *)out + 3, dx, n, 1)); /* accumulates onto 5 */
    TRY(cu_download(tw_ctx, got, out, sizeof got));
    const double b = 2 * (n + 2) * EPS64;
    const double rf[4] = {s, q, s * 0.5, 5 + s}, bd[4] = {b * sa, b * q, b * sa * 0.5, b * (sa + 5)};
    double worst = 0;
    for (int i = 0; i < 4; i++) {
        const double e = fabs(got[i] - rf[i]) / bd[i];
        worst = e > worst || e != e ? e : worst;
    }
    SHAPE("n%zu", n);
    tw_report("sum/sum_squares/f64", shp, CU_F32, "fp64", worst);
    free(x), free(xd);
    tw_free_all();
}

/* The clipping factor from a sum of squares: the CPU's formula on the device's norm (bound 0). */
static void case_clip(void) {
    const double sums[4] = {4.0, 0.25, NAN, INFINITY}, max_norm[4] = {1.0, 1.0, 1.0, 0.0};
    double worst = 0;
    for (int c = 0; c < 4; c++) {
        void *ds = tw_put_raw(&sums[c], 8), *dn = tw_dev(8), *dsc = tw_dev(4), *db = tw_dev(4);
        TRY(cu_clip_factor(tw_ctx, dn, dsc, db, ds, max_norm[c]));
        double nrm;
        float sc;
        int bad;
        TRY(cu_download(tw_ctx, &nrm, dn, 8));
        TRY(cu_download(tw_ctx, &sc, dsc, 4));
        TRY(cu_download(tw_ctx, &bad, db, 4));
        const double want_n = sqrt(sums[c]);
        const float want_s = max_norm[c] > 0 && want_n > max_norm[c] ? (float)(max_norm[c] / (want_n + 1e-6)) : 1.0f;
        const int ok = (bad == !isfinite(want_n)) && (isfinite(want_n) ? nrm == want_n && sc == want_s : 1);
        if (!ok) worst = INFINITY;
    }
    tw_report("clip_factor", "norms 2, 0.5, NaN, inf", CU_F32, "exact", worst);
    tw_free_all();
}

int main(void) {
    if (cu_device_count() < 1) return tw_no_device();
    if (cu_open(&tw_ctx, 0, (size_t)256 << 20)) tw_die("cu_open");
    const int large = !cu_is_emulated();
    printf("device: %s\n", cu_describe(tw_ctx));
    tw_seed(42);

    static const cu_dtype ab[3] = {CU_BF16, CU_F16, CU_F32};
    for (int t = 0; t < 3; t++) {
        case_gemm(1, 1, 1, 0, 0, 0, 1, 0, ab[t], CU_F32);
        case_gemm(7, 5, 3, 0, 1, 2, 1, 0, ab[t], CU_F32);
        case_gemm(64, 48, 96, 0, 1, 0, 1, 0, ab[t], CU_F32);
        case_gemm(33, 17, 129, 1, 0, 3, 0.5f, 1, ab[t], CU_F32);
        case_gemm(20, 100, 64, 1, 1, 5, -2, 0.25f, ab[t], CU_F32);
        case_gemm(40, 72, 80, 0, 1, 0, 1, 0, ab[t], ab[t]);
        if (large) case_gemm(384, 1000, 1536, 0, 1, 0, 1, 1, ab[t], CU_F32);
    }
    case_bias_grad(37, 70, 3, CU_F32);
    case_bias_grad(100, 33, 0, CU_BF16);
    case_convert(1000, CU_F32, CU_BF16), case_convert(1000, CU_F32, CU_F16), case_convert(1000, CU_BF16, CU_F32);
    case_convert(1000, CU_F16, CU_BF16);
    case_convert_f16_edges();

    static const cu_dtype act[3] = {CU_F32, CU_BF16, CU_F16};
    for (int t = 0; t < 3; t++) {
        case_rmsnorm(5, 64, act[t]);
        case_rmsnorm(33, 300, act[t]);
        case_rope(13, 3, 16, 2, 0, act[t]);
        case_rope(40, 4, 64, 0, 1, act[t]);
        case_swiglu(9, 70, act[t]);
        case_embedding(60, 17, 40, act[t]);
        case_softmax(6, 300, act[t]);
        case_cross_entropy(12, 500, 1, 0, act[t]);
        case_cross_entropy(7, 257, 0, 1, act[t]);
        tw_distill_case(6, 300, 1.0f, 1, 0, 0, 0.4f, act[t]);
        tw_distill_case(6, 300, 2.0f, 0, 1, 0, 0.4f, act[t]);
        tw_distill_case(5, 200, 1.5f, 0, 0, 1, 0.4f, act[t]);
        tw_distill_case(5, 200, 1.0f, 0.5f, 0.3f, 0.2f, 0.4f, act[t]);
        tw_distill_case(5, 200, 1.0f, 0.2f, 0, 1, 0.0f, act[t]); /* JSD(0) is FKL */
        tw_distill_case(5, 200, 2.0f, 0, 0.3f, 1, 1.0f, act[t]); /* JSD(1) is RKL */
        if (large) {
            case_rmsnorm(2048, 2048, act[t]);
            case_cross_entropy(64, 49152, 1, 0, act[t]);
            tw_distill_case(16, 49152, 2.0f, 0.5f, 0.3f, 0.2f, 0.4f, act[t]);
        }
    }
    case_adamw(10007, 1, 0, 0), case_adamw(3000, 0, 1, 0), case_adamw(500, 1, 1, 1);
    case_reduce(1), case_reduce(1000), case_reduce(100003);
    if (large) case_reduce(50000017);
    case_clip();
    tw_distill_refusals();
    tw_attention_cases(large);

    cu_close(tw_ctx);
    printf("%d cases, %d failed\n", tw_cases, tw_failures);
    return tw_failures ? 1 : 0;
}
