/* test_bf16.c: the bf16 and weight-streaming paths against references, with bounds derived from
 * the formats:
 *   - bf16 rounding (to nearest even, u = 2^-8): every conversion equals the scalar definition
 *     bitwise, on random values, every exponent, ties, NaN, infinities and denormals.
 *   - gemm_bf16: products of bf16 numbers are exact in fp32, so against the double sum of the
 *     same rounded products (gemm_bf16_ref) only fp32 summation remains: per element
 *     |C - C_ref| <= (k + 2) eps (|alpha| sum |a_r b_r| + |beta C0|) (Higham's gamma, eps = 2^-23),
 *     and against the unrounded fp32 product the rounding of both operands adds
 *     (2u + u^2) |alpha| sum |a b|. Bitwise the same on 1 and 2 threads.
 *   - gemv (fp32 and bf16 weights): (k + 1) eps sum |x w| against double; bitwise the same for any
 *     split of the outputs, and (fp32) for any number of input rows beside a row.
 *   - linear layers with bf16 weights and mixed precision; the decode team (one region per step)
 *     bitwise the same on 1 and 2 threads and within the fp32 bound of the chunked prefill.
 *   - a whole model in bf16 against fp32 (first-order bound, see test_model_bf16) and 200 training
 *     steps in bf16 against fp32 (see test_loss_curves). */
#include "engine_testmodel.h"
#include "engine_testutil.h"
#include "kernels/bf16.h"
#include "kernels/gemv.h"
#include "kernels/linear.h"
#include "kernels/matmul.h"
#include "kernels/threads.h"
#include "model/model.h"
#include "model/optim.h"

#define U_BF16 (1.0 / 256.0)

static uint32_t f2u(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}
static float u2f(uint32_t u) {
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* The definition, written independently of bf16.h: round the 32-bit pattern to its upper half. */
static uint16_t round_def(float f) {
    if (isnan(f)) return (uint16_t)((f2u(f) >> 16) | 0x40);
    if (f != 0 && fabsf(f) < FLT_MIN) f = copysignf(0.0f, f); /* denormals flush, sign kept */
    if (isinf(f) || f == 0) return (uint16_t)(f2u(f) >> 16);
    double d = f, best = 0;
    uint16_t pick = 0;
    uint32_t hi = f2u(f) >> 16;
    for (uint32_t c = hi; c <= hi + 1; c++) { /* the two neighbours; ties to the even pattern */
        double v = (double)u2f(c << 16);
        if (isinf(v)) v = copysign(ldexp(1.0, 128), v); /* overflow: infinity stands where 2^128 would */
        const double e = fabs(v - d);
        if (c == hi || e < best || (e == best && !(c & 1))) best = e, pick = (uint16_t)c;
    }
    return pick;
}

static void test_conversion(void) {
    enum { N = 70000 };
    float *x = tu_alloc(N);
    bf16 *h = malloc(sizeof(bf16) * N);
    int n = 0;
    static const uint32_t mant[] = {0, 1, 0x7fff, 0x8000, 0x8001, 0x18000, 0x7fffff};
    for (int e = 0; e < 256; e++) /* every exponent, with mantissas at and around the tie */
        for (size_t q = 0; q < sizeof mant / sizeof mant[0]; q++) {
            x[n++] = u2f(((uint32_t)e << 23) | mant[q]);
            x[n++] = -u2f(((uint32_t)e << 23) | mant[q]);
        }
    while (n < N) x[n++] = (float)(tu_normal() * pow(2.0, (double)(tu_next() % 60) - 30));
    bf16_from_f32_n(h, x, N);
    int bad = 0, bad_def = 0;
    for (int i = 0; i < N; i++) {
        bad += h[i] != bf16_from_f32(x[i]);
        bad_def += bf16_from_f32(x[i]) != round_def(x[i]);
    }
    tu_expect(!bad, "bf16_from_f32_n differs from bf16_from_f32 on %d of %d values", bad, N);
    tu_expect(!bad_def, "bf16_from_f32 differs from round-to-nearest-even on %d of %d values", bad_def, N);
    float back[4];
    bf16 hs[4] = {0x3f80, 0xc000, 0x7f80, 0x0001};
    bf16_to_f32_n(back, hs, 4);
    tu_expect(back[0] == 1.0f && back[1] == -2.0f && isinf(back[2]) && back[3] > 0, "bf16_to_f32_n");
    free(x), free(h);
}

/* gemm_bf16 against its reference and the fp32 product, on the current thread settings. */
static void check_gemm(int m, int n, int k, int ta, int tb, int pad, float alpha, float beta, const char *mode) {
    const int lda = (ta ? m : k) + pad, ldb = (tb ? k : n) + pad, ldc = n + pad;
    const size_t na = (size_t)(ta ? k : m) * lda, nb = (size_t)(tb ? n : k) * ldb, nc = (size_t)m * ldc;
    float *a = tu_randn(na, 1), *b = tu_randn(nb, 1), *c0 = tu_randn(nc, 1);
    float *got = tu_copy(c0, nc), *ref = tu_copy(c0, nc), *f32 = tu_copy(c0, nc);
    float *aa = tu_alloc(na), *ab = tu_alloc(nb), *bound = tu_alloc(nc);
    tu_expect(gemm_bf16(got, ldc, a, lda, ta, b, ldb, tb, m, n, k, alpha, beta) == 0, "gemm_bf16: %s", err_msg());
    gemm_bf16_ref(ref, ldc, a, lda, ta, b, ldb, tb, m, n, k, alpha, beta);
    matmul_ref(f32, ldc, a, lda, ta, b, ldb, tb, m, n, k, alpha, beta);
    for (size_t i = 0; i < na; i++) aa[i] = fabsf(a[i]);
    for (size_t i = 0; i < nb; i++) ab[i] = fabsf(b[i]);
    matmul_ref(bound, ldc, aa, lda, ta, ab, ldb, tb, m, n, k, fabsf(alpha), 0); /* |alpha| sum |a||b| */
    int bad = 0, bad32 = 0, pads = 0;
    for (int i = 0; i < m; i++) {
        for (int j = 0; j < n; j++) {
            const size_t x = (size_t)i * ldc + j;
            /* |a_r b_r| <= (1 + u)^2 |a b| */
            const double s = bound[x] * (1 + U_BF16) * (1 + U_BF16), c = fabs(beta * c0[x]);
            bad += !(fabs((double)got[x] - ref[x]) <= (k + 2) * TU_EPS * (s + c) + 1e-30);
            bad32 += !(fabs((double)got[x] - f32[x]) <= (2 * U_BF16 + U_BF16 * U_BF16) * bound[x] + (k + 3) * TU_EPS * (s + c) + 1e-30);
        }
        for (int j = n; j < ldc; j++) pads += got[(size_t)i * ldc + j] != c0[(size_t)i * ldc + j];
    }
    tu_expect(!bad && !bad32 && !pads,
              "gemm_bf16 %s m=%d n=%d k=%d ta=%d tb=%d: %d outside the fp32-sum bound, %d outside the bf16 bound of the "
              "fp32 product, %d padding columns written", mode, m, n, k, ta, tb, bad, bad32, pads);
    free(a), free(b), free(c0), free(got), free(ref), free(f32), free(aa), free(ab), free(bound);
}

static void test_gemm(void) {
    static const struct { int m, n, k, ta, tb, pad; float alpha, beta; } cases[] = {
        {1, 1, 1, 0, 1, 0, 1, 0},     {7, 5, 3, 0, 1, 2, 1, 0},       {64, 48, 96, 0, 1, 0, 1, 0},
        {33, 17, 129, 1, 0, 3, 0.5f, 1}, {128, 64, 300, 0, 0, 1, 1, 1}, {20, 200, 63, 1, 1, 5, -2, 0.25f},
        {257, 130, 512, 0, 1, 0, 1, 0}, {9, 97, 33, 1, 0, 0, 1, 0.5f},  {100, 49, 64, 0, 0, 0, 1, 0},
    };
    const char *modes[3] = {"1 thread", "threads (every call split)", "portable"};
    const int T = kernels_set_threads(0);
    for (int md = 0; md < 3; md++) {
        kernels_set_threads(md == 1 ? (T > 1 ? T : 2) : 1);
        kernels_split_always(md == 1);
        bf16_force_portable(md == 2);
        if (md < 2 && !bf16_available()) {
            printf("skip gemm_bf16 %s: this CPU has no AVX512_BF16\n", modes[md]);
            continue;
        }
        for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++)
            check_gemm(cases[c].m, cases[c].n, cases[c].k, cases[c].ta, cases[c].tb, cases[c].pad, cases[c].alpha,
                       cases[c].beta, modes[md]);
    }
    bf16_force_portable(0);
    /* thread independence: every element is one fixed-order sum */
    if (bf16_available()) {
        const int m = 203, n = 157, k = 301;
        float *a = tu_randn((size_t)m * k, 1), *b = tu_randn((size_t)n * k, 1);
        float *c1 = tu_alloc((size_t)m * n), *c2 = tu_alloc((size_t)m * n);
        kernels_set_threads(1);
        kernels_split_always(0);
        gemm_bf16(c1, n, a, k, 0, b, k, 1, m, n, k, 1, 0);
        kernels_set_threads(T > 1 ? T : 2);
        kernels_split_always(1);
        gemm_bf16(c2, n, a, k, 0, b, k, 1, m, n, k, 1, 0);
        tu_expect(!memcmp(c1, c2, sizeof(float) * m * n), "gemm_bf16 is bitwise the same on 1 and %d threads",
                  T > 1 ? T : 2);
        /* a B packed once: the same panels, so the same sums, for both layouts of B */
        for (int tb = 0; tb < 2; tb++) {
            gemm_bf16_b pb = {0};
            tu_expect(gemm_bf16_pack_b(&pb, b, tb ? k : n, tb, n, k) == 0, "gemm_bf16_pack_b: %s", err_msg());
            gemm_bf16(c1, n, a, k, 0, b, tb ? k : n, tb, m, n, k, 0.5f, 0);
            gemm_bf16_packed(c2, n, a, k, 0, &pb, m, 0.5f, 0);
            tu_expect(!memcmp(c1, c2, sizeof(float) * m * n), "gemm_bf16_packed equals gemm_bf16 (trans_b %d)", tb);
            gemm_bf16_b_free(&pb);
        }
        /* the vector packings (k-major: in-register transposes; index-major: row pairs) write the
         * same words as the portable one, edges included (n and k not multiples of 8, 48 or 32) */
        for (int tb = 0; tb < 2; tb++) {
            gemm_bf16_b pf = {0}, pp = {0};
            tu_expect(gemm_bf16_pack_b(&pf, b, tb ? k : n, tb, n, k) == 0, "gemm_bf16_pack_b: %s", err_msg());
            bf16_force_portable(1);
            tu_expect(gemm_bf16_pack_b(&pp, b, tb ? k : n, tb, n, k) == 0, "gemm_bf16_pack_b: %s", err_msg());
            bf16_force_portable(0);
            const size_t words = (size_t)((n + GEMM_BF16_NR - 1) / GEMM_BF16_NR) * GEMM_BF16_NR * ((k + 1) / 2);
            tu_expect(!memcmp(pf.panels, pp.panels, sizeof(uint32_t) * words),
                      "the vector packing equals the portable one (trans_b %d)", tb);
            gemm_bf16_b_free(&pf), gemm_bf16_b_free(&pp);
        }
        free(a), free(b), free(c1), free(c2);
    }
    kernels_split_always(0);
    kernels_set_threads(0);
}

static void test_gemv(void) {
    static const struct { int rows, n_out, k; } cases[] = {{1, 1, 1}, {1, 37, 15}, {2, 100, 64}, {3, 33, 129},
                                                          {4, 64, 512}, {5, 17, 100}, {8, 70, 31}};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        const int R = cases[c].rows, N = cases[c].n_out, K = cases[c].k, ldx = K + 3, ldw = K + 1, ldy = N + 2;
        float *x = tu_randn((size_t)R * ldx, 1), *w = tu_randn((size_t)N * ldw, 1);
        bf16 *wb = malloc(sizeof(bf16) * (size_t)N * ldw);
        bf16_from_f32_n(wb, w, (size_t)N * ldw);
        gemm_bf16_b pb = {0}; /* bf16 weights live packed: B = W^T */
        if (gemm_bf16_pack_b(&pb, w, ldw, 1, N, K)) exit(1);
        for (int fmt = 0; fmt < 2; fmt++) {
            float *y0 = tu_randn((size_t)R * ldy, 1), *y = tu_copy(y0, (size_t)R * ldy), *yr = tu_copy(y0, (size_t)R * ldy);
            float *ys = tu_copy(y0, (size_t)R * ldy);
            const int acc = c % 2;
            if (fmt) gemv_bf16_packed(y, ldy, x, ldx, &pb, R, 0, N, acc);
            else gemv_f32(y, ldy, x, ldx, w, ldw, R, 0, N, K, acc);
            gemv_ref(yr, ldy, x, ldx, fmt ? NULL : w, fmt ? wb : NULL, ldw, R, 0, N, K, acc);
            for (int lo = 0; lo < N; lo += 7) { /* outputs in ragged pieces, as threads split them */
                const int hi = lo + 7 < N ? lo + 7 : N;
                if (fmt) gemv_bf16_packed(ys, ldy, x, ldx, &pb, R, lo, hi, acc);
                else gemv_f32(ys, ldy, x, ldx, w, ldw, R, lo, hi, K, acc);
            }
            int bad = 0;
            for (int r = 0; r < R; r++)
                for (int j = 0; j < N; j++) {
                    double s = 0;
                    for (int kk = 0; kk < K; kk++)
                        s += fabs((double)x[(size_t)r * ldx + kk]) *
                             fabs(fmt ? bf16_to_f32(wb[(size_t)j * ldw + kk]) : w[(size_t)j * ldw + kk]);
                    const size_t o = (size_t)r * ldy + j;
                    bad += !(fabs((double)y[o] - yr[o]) <= (K + 2) * TU_EPS * (s + (acc ? fabs(y0[o]) : 0)) + 1e-30);
                }
            tu_expect(!bad, "gemv %s rows=%d n=%d k=%d: %d outside (k+2) eps sum|x w|", fmt ? "bf16" : "fp32", R, N, K, bad);
            tu_expect(!memcmp(y, ys, sizeof(float) * (size_t)R * ldy), "gemv %s rows=%d: the same for any split of the outputs",
                      fmt ? "bf16" : "fp32", R);
            if (!fmt) { /* each input row alone gives its row of the product bitwise (R is a register block) */
                float *y1 = tu_copy(y0, (size_t)R * ldy);
                for (int r = 0; r < R; r++)
                    gemv_f32(y1 + (size_t)r * ldy, ldy, x + (size_t)r * ldx, ldx, w, ldw, 1, 0, N, K, acc);
                tu_expect(!memcmp(y, y1, sizeof(float) * (size_t)R * ldy), "gemv fp32 rows=%d: the same row by row", R);
                free(y1);
            }
            free(y0), free(y), free(yr), free(ys);
        }
        free(x), free(w), free(wb);
        gemm_bf16_b_free(&pb);
    }
}

/* linear_forward with bf16 weights (streamed and GEMM rows) and mixed precision, against the
 * rounded-operand reference; the bias is added once. */
static void test_linear(void) {
    const int N_OUT = 70, N_IN = 90;
    float *w = tu_randn((size_t)N_OUT * N_IN, 1), *b = tu_randn(N_OUT, 1), *x = tu_randn(20 * N_IN, 1);
    bf16 *wb = malloc(sizeof(bf16) * N_OUT * N_IN);
    bf16_from_f32_n(wb, w, (size_t)N_OUT * N_IN);
    gemm_bf16_b pb = {0};
    if (gemm_bf16_pack_b(&pb, w, N_IN, 1, N_OUT, N_IN)) exit(1);
    for (int rows = 1; rows <= 20; rows += 3) {
        linear lb = linear_bf16(&pb, b), lm = linear_f32(w, b, N_OUT, N_IN);
        lm.bf16_compute = bf16_available();
        float *y = tu_alloc((size_t)rows * N_OUT), *ym = tu_alloc((size_t)rows * N_OUT), *yr = tu_alloc((size_t)rows * N_OUT);
        tu_expect(linear_forward(y, N_OUT, x, N_IN, &lb, rows, 0) == 0, "linear bf16 forward: %s", err_msg());
        tu_expect(linear_forward(ym, N_OUT, x, N_IN, &lm, rows, 0) == 0, "linear mixed forward: %s", err_msg());
        /* reference: the weights are bf16 values; rows streamed keep x in fp32, GEMM rows round it */
        double worst = 0, worst_m = 0;
        for (int i = 0; i < rows; i++)
            for (int j = 0; j < N_OUT; j++) {
                double s = 0, sr = 0, sa = 0;
                for (int k = 0; k < N_IN; k++) {
                    const double wv = bf16_to_f32(wb[(size_t)j * N_IN + k]), xv = x[(size_t)i * N_IN + k];
                    s += xv * wv, sr += bf16_round((float)xv) * wv, sa += fabs(xv * wv);
                }
                const double got = y[(size_t)i * N_OUT + j] - (double)b[j];
                const double ref = rows <= GEMV_MAX_ROWS ? s : sr;
                /* streamed rows multiply fp32 x, GEMM rows the rounded x (|x_r| <= (1 + u) |x|): only the
                 * fp32 sums (and the bias) differ from the reference */
                const double tol = (N_IN + 3) * TU_EPS * ((1 + U_BF16) * sa + fabs(b[j]));
                worst = fmax(worst, fabs(got - ref) / tol);
                const double tolm = (N_IN + 3) * TU_EPS * (sa + fabs(b[j])) + (2 * U_BF16 + U_BF16 * U_BF16) * sa;
                worst_m = fmax(worst_m, fabs(ym[(size_t)i * N_OUT + j] - (double)b[j] - s) / tolm);
            }
        tu_expect(worst <= 1, "linear with bf16 weights, %d rows: worst error %.2f of its bound", rows, worst);
        tu_expect(worst_m <= 1, "linear in mixed precision, %d rows: worst error %.2f of its bound", rows, worst_m);
        free(y), free(ym), free(yr);
    }
    linear lb = linear_bf16(&pb, NULL);
    float dx[N_IN];
    tu_expect(linear_backward_input(dx, N_IN, x, N_OUT, &lb, 1, 0) != 0, "backward through bf16 weights is refused");
    err_clear();
    gemm_bf16_b_free(&pb);
    free(w), free(b), free(x), free(wb);
}

/* Logits of prefill + decode steps: the decode team on 1 thread and on 2 (every call split) agree
 * bitwise, in fp32 and with bf16 weights. */
static void test_decode_team(void) {
    model_config c = tm_config(0);
    const int T = kernels_set_threads(0) > 1 ? kernels_set_threads(0) : 2;
    int tok[12] = {3, 7, 1, 9, 22, 5, 17, 30, 2, 8, 41, 11};
    for (int prec = 0; prec < 2; prec++) {
        float *lg[2];
        for (int run = 0; run < 2; run++) {
            model m;
            if (model_init(&m, &c, NULL)) exit(1);
            tm_randomize(&m, 3);
            if (prec && model_set_precision(&m, MODEL_BF16, 1) < 0) exit(1);
            kernels_set_threads(run ? T : 1);
            kernels_split_always(run);
            kv_cache kv;
            if (kv_cache_init(&kv, &c, 16)) exit(1);
            lg[run] = tu_alloc((size_t)9 * c.vocab);
            int rows[3] = {0, 2, 4};
            tu_expect(model_extend(&m, &kv, tok, 5, rows, 3, lg[run]) == 0, "prefill: %s", err_msg());
            for (int i = 5; i < 11; i++)
                tu_expect(model_decode(&m, &kv, tok[i], lg[run] + (size_t)(i - 2) * c.vocab) == 0, "decode: %s", err_msg());
            kv_cache_free(&kv);
            model_free(&m);
        }
        tu_expect(!memcmp(lg[0], lg[1], sizeof(float) * 9 * c.vocab),
                  "decode team (%s): logits bitwise the same on 1 and %d threads", prec ? "bf16 weights" : "fp32", T);
        free(lg[0]), free(lg[1]);
    }
    kernels_split_always(0);
    kernels_set_threads(0);
}

/* A small Llama whose attention runs the fused kernel (head_dim 16) and whose every product is a
 * bf16 GEMM in mixed precision. */
static model_config small_config(void) {
    model_config c = tm_config(2);
    c.hidden = 64, c.n_layers = 2, c.n_heads = 4, c.n_kv_heads = 2, c.head_dim = 16, c.intermediate = 128, c.vocab = 64;
    for (int l = 0; l < c.n_layers; l++) c.layers[l] = (layer_config){4, 2, 128};
    return c;
}

/* Logits of the training forward in bf16 against fp32, same weights. First-order bound: a bf16
 * product rounds both operands, an error of at most 2u + u^2 relative to sum |x w| (products exact,
 * fp32 sums negligible beside it); the longest chain from the embedding to a logit crosses
 * 4 linear products per layer (q|k|v, o, gate|up, down) and the LM head, 4 L + 1 in all, and
 * RMSNorm, softmax and SiLU pass a relative error on with a gain of at most about 2 each in these
 * models (weights ~ N(0, 1/fan-in), so sum |x w| stays within a small factor of |y|: taken as 2).
 * Normalized by max |logit|: tol = (2u + u^2) (4L + 1) x 2 (gain) x 2 (sum |x w| / |y|). */
static void test_model_bf16(void) {
    if (!bf16_available()) {
        printf("skip model bf16 against fp32: this CPU has no AVX512_BF16\n");
        return;
    }
    model_config c = small_config();
    const int N = 40;
    int tok[40], lens[2] = {25, 15};
    for (int i = 0; i < N; i++) tok[i] = (int)(tu_next() % c.vocab);
    model_batch b = {.tokens = tok, .seq_lens = lens, .n_tokens = N, .n_seqs = 2};
    float *lg[2];
    for (int prec = 0; prec < 2; prec++) {
        model m;
        if (model_init(&m, &c, NULL) || model_reserve_train(&m, N)) exit(1);
        tm_randomize(&m, 9);
        tu_expect(model_set_precision(&m, prec ? MODEL_BF16 : MODEL_FP32, 0) == (prec ? MODEL_BF16 : MODEL_FP32),
                  "model_set_precision");
        const float *hid;
        lg[prec] = tu_alloc((size_t)N * c.vocab);
        tu_expect(model_forward(&m, &b, &hid) == 0 && model_logits(&m, lg[prec], hid, N) == 0, "forward: %s", err_msg());
        model_free(&m);
    }
    const double tol = (2 * U_BF16 + U_BF16 * U_BF16) * (4 * c.n_layers + 1) * 2 * 2;
    tu_expect_close("logits, mixed bf16 against fp32 (first-order bound (2u+u^2)(4L+1) x 4)", lg[1], lg[0],
                    (size_t)N * c.vocab, tol);
    tu_expect(tu_nerr(lg[1], lg[0], (size_t)N * c.vocab) > 0, "bf16 logits differ from fp32 (bf16 really ran)");
    free(lg[0]), free(lg[1]);
    /* inference with bf16 weights: a prefill of 25 rows (bf16 GEMMs over the packed weights) and
     * 4 decode steps (the packed weights streamed, x in fp32) against fp32, the same bound */
    float *li[2];
    int rows[25];
    for (int i = 0; i < 25; i++) rows[i] = i;
    for (int prec = 0; prec < 2; prec++) {
        model m;
        kv_cache kv;
        if (model_init(&m, &c, NULL) || kv_cache_init(&kv, &c, 32)) exit(1);
        tm_randomize(&m, 9);
        tu_expect(model_set_precision(&m, prec ? MODEL_BF16 : MODEL_FP32, 1) == (prec ? MODEL_BF16 : MODEL_FP32),
                  "model_set_precision with bf16 weights");
        li[prec] = tu_alloc((size_t)29 * c.vocab);
        tu_expect(model_extend(&m, &kv, tok, 25, rows, 25, li[prec]) == 0, "prefill: %s", err_msg());
        for (int i = 25; i < 29; i++)
            tu_expect(model_decode(&m, &kv, tok[i], li[prec] + (size_t)i * c.vocab) == 0, "decode: %s", err_msg());
        tu_expect(prec == 0 || m.lm_head.format == LINEAR_BF16, "the LM head runs on bf16 weights");
        kv_cache_free(&kv);
        model_free(&m);
    }
    tu_expect_close("logits of prefill + decode with bf16 weights against fp32 (the same bound)", li[1], li[0],
                    (size_t)29 * c.vocab, tol);
    free(li[0]), free(li[1]);
}

/* The LM head and loss in mixed precision over chunks of 16 rows (the head packed once per call)
 * against one chunk: loss and d hidden bitwise equal (rows are independent and the packed head
 * has the same panels), the head's gradient (a sum over rows split differently) within the fp32
 * bound of that sum, (n + 2) eps sum |dlogit x|, taken over the largest terms: 2 (n + 2) eps. */
static void test_lm_loss_chunks(void) {
    if (!bf16_available()) return;
    model_config c = small_config();
    const int N = 40;
    int tg[40];
    float *hid = tu_randn((size_t)N * c.hidden, 1), *dh[2], *gh[2];
    double loss[2];
    for (int i = 0; i < N; i++) tg[i] = (int)(tu_next() % c.vocab);
    for (int run = 0; run < 2; run++) {
        model m;
        if (model_init(&m, &c, NULL) || model_reserve_train(&m, N)) exit(1);
        tm_randomize(&m, 4);
        model_set_precision(&m, MODEL_BF16, 0);
        m.lm_chunk_rows = run ? 16 : 0;
        lm_ce_ctx ce = {.targets = tg, .weights = NULL};
        dh[run] = tu_alloc((size_t)N * c.hidden);
        tu_expect(model_lm_loss(&m, hid, dh[run], N, lm_loss_ce, &ce, &loss[run]) == 0, "lm loss: %s", err_msg());
        gh[run] = tu_copy(m.grad.lm_head, (size_t)c.vocab * c.hidden);
        model_free(&m);
    }
    tu_expect(loss[0] == loss[1] && !memcmp(dh[0], dh[1], sizeof(float) * N * c.hidden),
              "bf16 LM head: chunks of 16 rows (packed head) give the loss and d hidden of one chunk bitwise");
    tu_expect_close("bf16 LM head gradient, chunks of 16 against one chunk (2 (n+2) eps)", gh[1], gh[0],
                    (size_t)c.vocab * c.hidden, 2 * (N + 2) * TU_EPS);
    free(hid), free(dh[0]), free(dh[1]), free(gh[0]), free(gh[1]);
}

/* Losses of `steps` AdamW steps on a Markov-chain language (next = 3 t + 1 mod V with probability
 * 0.8, else uniform), batches drawn with seed `data_seed`. */
static double *train_curve(model_precision prec, uint64_t data_seed, int steps) {
    model_config c = small_config();
    const int S = 8, T = 32, N = S * T;
    model m;
    if (model_init(&m, &c, NULL) || model_reserve_train(&m, N)) exit(1);
    tm_randomize(&m, 21);
    model_set_precision(&m, prec, 0);
    optim_config oc = {.beta1 = 0.9, .beta2 = 0.99, .eps = 1e-8, .weight_decay = 0.01, .clip = 1.0,
                       .schedule = {.kind = LR_CONSTANT, .lr = 3e-3}};
    optimizer o;
    if (optim_init(&o, &m, &oc)) exit(1);
    int tok[256], lens[8], tg[256];
    float w[256], *dh = tu_alloc((size_t)N * c.hidden);
    double *loss = calloc((size_t)steps, sizeof(double));
    for (int s = 0; s < S; s++) lens[s] = T;
    tu_seed(data_seed);
    for (int step = 0; step < steps; step++) {
        for (int s = 0; s < S; s++) {
            int t = (int)(tu_next() % c.vocab);
            for (int i = 0; i < T; i++) {
                tok[s * T + i] = t;
                t = tu_uniform() < 0.8 ? (3 * t + 1) % c.vocab : (int)(tu_next() % c.vocab);
            }
        }
        model_batch b = {.tokens = tok, .seq_lens = lens, .n_tokens = N, .n_seqs = S};
        const int cnt = model_batch_targets(&b, tg);
        for (int i = 0; i < N; i++) w[i] = 1.0f / cnt;
        lm_ce_ctx ce = {.targets = tg, .weights = w};
        const float *hid;
        model_zero_grad(&m);
        if (model_forward(&m, &b, &hid) || model_lm_loss(&m, hid, dh, N, lm_loss_ce, &ce, &loss[step]) ||
            model_backward(&m, dh) || optim_step(&o, &m)) {
            printf("FAIL training step: %s\n", err_msg());
            exit(1);
        }
    }
    optim_free(&o);
    model_free(&m);
    free(dh);
    return loss;
}

/* 200 steps in bf16 against fp32 from the same weights and batches. The tolerance comes from the
 * run itself: the curve of a third run in fp32 with another data order gives, per window of 20
 * steps, how much the mean loss moves for a reason that does not matter (which batches came);
 * bf16 must move it less than that in every window (and at most 1.5x its largest move anywhere),
 * learn as much (its last window at most 1.1 x fp32's), and start where fp32 starts (step 0: the
 * same weights, so the first-order bound of test_model_bf16 applies to the logits, and the loss,
 * a log-sum-exp with gain 1 in the logits, moves by at most tol x max |logit|: taken as 2 x 4 x tol). */
static void test_loss_curves(void) {
    if (!bf16_available()) {
        printf("skip bf16 loss curves: this CPU has no AVX512_BF16\n");
        return;
    }
    enum { STEPS = 200, WIN = 20 };
    double *a = train_curve(MODEL_FP32, 5, STEPS), *b = train_curve(MODEL_BF16, 5, STEPS), *c = train_curve(MODEL_FP32, 6, STEPS);
    double worst = 0, spread_max = 0, last_a = 0, last_b = 0;
    int bad = 0;
    for (int w0 = 0; w0 < STEPS; w0 += WIN) {
        double ma = 0, mb = 0, mc = 0;
        for (int i = w0; i < w0 + WIN; i++) ma += a[i] / WIN, mb += b[i] / WIN, mc += c[i] / WIN;
        const double spread = fabs(mc - ma), d = fabs(mb - ma);
        spread_max = fmax(spread_max, spread);
        worst = fmax(worst, d / fmax(spread, 1e-12));
        bad += d > fmax(spread, 0.0);
        if (tu_verbose) printf("   steps %3d-%3d: fp32 %.4f  bf16 %.4f  fp32 other order %.4f\n", w0, w0 + WIN - 1, ma, mb, mc);
        last_a = ma, last_b = mb;
    }
    /* a window may by chance have two orders agree closely; a bf16 move there within the
     * largest move anywhere still tells nothing wrong: count only moves beyond 1.5 x that */
    int beyond = 0;
    for (int w0 = 0; w0 < STEPS; w0 += WIN) {
        double ma = 0, mb = 0;
        for (int i = w0; i < w0 + WIN; i++) ma += a[i] / WIN, mb += b[i] / WIN;
        beyond += fabs(mb - ma) > 1.5 * spread_max;
    }
    const double tol0 = 2 * 4 * (2 * U_BF16 + U_BF16 * U_BF16) * (4 * 2 + 1) * 4;
    tu_expect(fabs(b[0] - a[0]) <= tol0, "bf16 step 0 loss %.5f vs fp32 %.5f (tol %.3f)", b[0], a[0], tol0);
    tu_expect(!beyond, "bf16 loss curve: %d windows of %d steps move more than 1.5 x the largest data-order move "
              "(%.4f); %d move more than that window's (worst ratio %.2f)", beyond, WIN, spread_max, bad, worst);
    tu_expect(last_a < a[0] - 1.0 && last_b <= 1.1 * last_a,
              "both learn: fp32 %.3f -> %.3f, bf16 %.3f -> %.3f over %d steps", a[0], last_a, b[0], last_b, STEPS);
    if (tu_verbose) printf("   data-order moves up to %.4f; bf16 moves within %.2f x that window's\n", spread_max, worst);
    free(a), free(b), free(c);
}

int main(int argc, char **argv) {
    tu_verbose = argc > 1 && !strcmp(argv[1], "-v");
    tu_seed(77);
    test_conversion();
    test_gemm();
    test_gemv();
    test_linear();
    test_decode_team();
    test_model_bf16();
    test_lm_loss_chunks();
    test_loss_curves();
    return tu_finish("test_bf16");
}
