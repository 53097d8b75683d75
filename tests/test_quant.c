/* test_quant.c: the quantization algorithms of stages/quantize/ against identities and brute-force
 * references written here from ALGORITHMS.md section 4 (unblocked, scalar, no shared code):
 *   - the grid: every code is the nearest grid point (|w - w^| <= s/2 inside the range, clamped
 *     outside), scales fp16-representable, symmetric and asymmetric formulas;
 *   - H = I: GPTQ (with and without act order, static or dynamic groups) and QuantEase (from RTN and
 *     from GPTQ) give exactly RTN's codes;
 *   - GPTQ (blocks of 128, lazy batch updates, chunks of rows) gives the codes of a plain column-by-
 *     column GPTQ over a Gauss-Jordan inverse and a scalar Cholesky; QuantEase gives the codes of
 *     coordinate descent computed from the definition of u_j; both on correlated inputs with 260
 *     columns (three blocks, a partial one) and 150 rows (three chunks, a partial one);
 *   - QuantEase's objective never increases across sweeps and equals tr((W^-W) H (W^-W)^T) computed
 *     directly; on realistic inputs (correlated, heavy-tailed channels) QuantEase <= GPTQ <= RTN in
 *     layer-wise error, for 4-bit groups, 3-bit per channel and 8-bit per channel;
 *   - dead columns (H_jj = 0): weights 0, nothing NaN; a Cholesky failure raises the damping and retries;
 *   - the result does not depend on the thread count;
 *   - FP8 E4M3 weights per tensor and per channel; SmoothQuant's folding and its W8A8 benefit on a
 *     layer with outlier channels. */
#include "engine_testutil.h"
#include "kernels/gram.h"
#include "model/safetensors.h"
#include "kernels/threads.h"
#include "stages/quantize/quant.h"

/* ---- brute-force references ---- */

/* Nearest grid point of x for a scale s and zero z (round half to even), clamped. */
static int ref_code(double x, double s, int z, int bits) {
    double v = nearbyint(x / s) + z, maxq = (1 << bits) - 1;
    return (int)(v < 0 ? 0 : v > maxq ? maxq : v);
}

/* inv = a^-1 (Gauss-Jordan with partial pivoting, n x n). */
static void ref_inverse(double *inv, const double *a, int n) {
    double *m = malloc(sizeof(double) * (size_t)n * 2 * n);
    for (int i = 0; i < n; i++)
        for (int j = 0; j < 2 * n; j++) m[(size_t)i * 2 * n + j] = j < n ? a[(size_t)i * n + j] : (j - n == i);
    for (int c = 0; c < n; c++) {
        int p = c;
        for (int i = c + 1; i < n; i++)
            if (fabs(m[(size_t)i * 2 * n + c]) > fabs(m[(size_t)p * 2 * n + c])) p = i;
        for (int j = 0; j < 2 * n; j++) {
            double t = m[(size_t)c * 2 * n + j];
            m[(size_t)c * 2 * n + j] = m[(size_t)p * 2 * n + j], m[(size_t)p * 2 * n + j] = t;
        }
        double piv = m[(size_t)c * 2 * n + c];
        for (int j = 0; j < 2 * n; j++) m[(size_t)c * 2 * n + j] /= piv;
        for (int i = 0; i < n; i++) {
            if (i == c) continue;
            double f = m[(size_t)i * 2 * n + c];
            for (int j = 0; j < 2 * n; j++) m[(size_t)i * 2 * n + j] -= f * m[(size_t)c * 2 * n + j];
        }
    }
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++) inv[(size_t)i * n + j] = m[(size_t)i * 2 * n + n + j];
    free(m);
}

/* The damped, ordered Hessian of ALGORITHMS.md, built independently: dead columns get 1, lambda =
 * damp mean(diag), columns sorted by decreasing diagonal (stable) when act_order. */
static double *ref_hessian(int *perm, uint8_t *dead, const double *h, int n, double damp, int act_order) {
    double *d = malloc(sizeof(double) * n), mean = 0;
    for (int j = 0; j < n; j++) {
        d[j] = h[(size_t)j * n + j];
        dead[j] = d[j] == 0;
        if (dead[j]) d[j] = 1;
        mean += d[j] / n;
        perm[j] = j;
    }
    if (act_order) /* insertion sort: stable */
        for (int i = 1; i < n; i++)
            for (int k = i; k > 0 && d[perm[k]] > d[perm[k - 1]]; k--) {
                int t = perm[k];
                perm[k] = perm[k - 1], perm[k - 1] = t;
            }
    double *hp = malloc(sizeof(double) * (size_t)n * n);
    for (int a = 0; a < n; a++)
        for (int b = 0; b < n; b++)
            hp[(size_t)a * n + b] = a == b ? d[perm[a]] + damp * mean : h[(size_t)perm[a] * n + perm[b]];
    free(d);
    return hp;
}

/* Plain GPTQ: one column at a time, the error of column i fed to every later column through the upper
 * Cholesky factor U of H^-1 (scalar Cholesky of a Gauss-Jordan inverse). codes [n_out, n] by original
 * column; the grid (scales, zeros) is taken from q. */
static void ref_gptq(uint8_t *codes, const qweight *q, const float *w, const double *h, int n_out, int n, double damp,
                     int act_order) {
    int *perm = malloc(sizeof(int) * n);
    uint8_t *dead = malloc(n);
    double *hp = ref_hessian(perm, dead, h, n, damp, act_order), *hi = malloc(sizeof(double) * n * n),
           *u = calloc((size_t)n * n, sizeof(double)), *x = malloc(sizeof(double) * n);
    ref_inverse(hi, hp, n);
    for (int i = 0; i < n; i++)
        for (int j = i; j < n; j++) {
            double s = hi[(size_t)i * n + j];
            for (int k = 0; k < i; k++) s -= u[(size_t)k * n + i] * u[(size_t)k * n + j];
            u[(size_t)i * n + j] = i == j ? sqrt(s) : s / u[(size_t)i * n + i];
        }
    const int G = q->group_size, ng = n / G;
    for (int r = 0; r < n_out; r++) {
        for (int k = 0; k < n; k++) x[k] = dead[perm[k]] ? 0 : w[(size_t)r * n + perm[k]];
        for (int i = 0; i < n; i++) {
            const int j = perm[i], g = j / G, z = q->zeros ? q->zeros[r * ng + g] : 1 << (q->bits - 1);
            const double s = q->scales[r * ng + g];
            int c = ref_code(x[i], s, z, q->bits);
            codes[(size_t)r * n + j] = (uint8_t)c;
            double e = (x[i] - (float)(s * (c - z))) / u[(size_t)i * n + i];
            for (int k = i + 1; k < n; k++) x[k] -= e * u[(size_t)i * n + k];
        }
    }
    free(perm), free(dead), free(hp), free(hi), free(u), free(x);
}

/* Plain QuantEase: from the codes in `codes`, each sweep sets column j (in processing order) to the grid
 * point nearest u_j = W_j + sum_{k != j} (W_k - W^_k) H_kj / H_jj, computed from scratch. */
static void ref_quantease(uint8_t *codes, const qweight *q, const float *w, const double *h, int n_out, int n,
                          double damp, int act_order, int sweeps) {
    int *perm = malloc(sizeof(int) * n);
    uint8_t *dead = malloc(n);
    double *hp = ref_hessian(perm, dead, h, n, damp, act_order), *wh = malloc(sizeof(double) * n),
           *wo = malloc(sizeof(double) * n);
    const int G = q->group_size, ng = n / G;
    for (int r = 0; r < n_out; r++) {
        for (int k = 0; k < n; k++) {
            const int j = perm[k], g = j / G, z = q->zeros ? q->zeros[r * ng + g] : 1 << (q->bits - 1);
            wo[k] = dead[j] ? 0 : w[(size_t)r * n + j];
            wh[k] = (float)(q->scales[r * ng + g] * (codes[(size_t)r * n + j] - z));
        }
        for (int t = 0; t < sweeps; t++)
            for (int a = 0; a < n; a++) {
                double u = wo[a];
                for (int k = 0; k < n; k++)
                    if (k != a) u += (wo[k] - wh[k]) * hp[(size_t)k * n + a] / hp[(size_t)a * n + a];
                const int j = perm[a], g = j / G, z = q->zeros ? q->zeros[r * ng + g] : 1 << (q->bits - 1);
                const double s = q->scales[r * ng + g];
                int c = ref_code(u, s, z, q->bits);
                codes[(size_t)r * n + j] = (uint8_t)c;
                wh[a] = (float)(s * (c - z));
            }
    }
    free(perm), free(dead), free(hp), free(wh), free(wo);
}

/* tr(D H D^T) for D = w_hat - w over the damped, ordered Hessian (the QuantEase objective). */
static double ref_objective(const float *w, const float *w_hat, const double *h, int n_out, int n, double damp) {
    int *perm = malloc(sizeof(int) * n);
    uint8_t *dead = malloc(n);
    double *hp = ref_hessian(perm, dead, h, n, damp, 0), f = 0;
    for (int r = 0; r < n_out; r++)
        for (int a = 0; a < n; a++)
            for (int b = 0; b < n; b++) {
                double da = (double)w_hat[r * n + a] - (dead[a] ? 0 : w[r * n + a]);
                double db = (double)w_hat[r * n + b] - (dead[b] ? 0 : w[r * n + b]);
                f += da * hp[(size_t)a * n + b] * db;
            }
    free(perm), free(dead), free(hp);
    return f;
}

/* ---- data ---- */

/* Realistic calibration inputs: x [n_tok, n] = z A with a decaying spectrum (correlated columns), a few
 * outlier channels (x 20) and heavy tails (a Student-like factor per token). */
static float *make_inputs(int n_tok, int n, uint64_t seed) {
    tu_seed(seed);
    float *a = tu_alloc((size_t)n * n), *x = tu_alloc((size_t)n_tok * n);
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++) a[i * n + j] = (float)(tu_normal() / (1.0 + 0.2 * i));
    for (int t = 0; t < n_tok; t++) {
        double tail = 1.0 / (0.3 + tu_uniform());
        for (int j = 0; j < n; j++) {
            double s = 0;
            for (int i = 0; i < n; i++) s += tu_normal() * a[i * n + j];
            x[(size_t)t * n + j] = (float)(s * tail * (j % 37 == 5 ? 20.0 : 1.0));
        }
    }
    free(a);
    return x;
}

static double *gram_of(const float *x, int n_tok, int n) {
    double *h = calloc((size_t)n * n, sizeof(double));
    if (gram_accumulate(h, x, n, n_tok, n)) exit(1);
    gram_symmetrize(h, n);
    return h;
}

static double *identity(int n) {
    double *h = calloc((size_t)n * n, sizeof(double));
    for (int i = 0; i < n; i++) h[i * n + i] = 1;
    return h;
}

static int same_codes(const qweight *a, const qweight *b) {
    return !memcmp(a->codes, b->codes, (size_t)a->n_out * a->n_in);
}

/* w_hat is exactly what the codes stand for. */
static int matches_codes(const qweight *q, const float *w_hat) {
    float *d = tu_alloc((size_t)q->n_out * q->n_in);
    qweight_dequantize(d, q);
    int ok = !memcmp(d, w_hat, sizeof(float) * q->n_out * q->n_in);
    free(d);
    return ok;
}

/* ---- checks ---- */

static void check_grid(void) {
    enum { R = 5, C = 64 };
    tu_seed(3);
    float *w = tu_randn(R * C, 0.05), *wh = tu_alloc(R * C);
    w[7] = 0.9f; /* an outlier widens one group's range */
    for (int sym = 0; sym <= 1; sym++)
        for (int bits = 2; bits <= 8; bits += 3)
        for (int coarse = 0; coarse <= 1; coarse++) {
            /* coarse: scales of 11 - bits significant bits (GGUF Q4_1): scale * z is an fp16 number too */
            const int sig = coarse ? 11 - bits : 11;
            quant_grid g = {.bits = bits, .group_size = 16, .sym = sym, .scale_bits = coarse ? sig : 0};
            qweight q;
            if (!tu_expect(quant_rtn(&q, wh, w, R, C, &g) == 0, "rtn: %s", err_msg())) continue;
            const int maxq = (1 << bits) - 1;
            int bad = 0;
            for (int r = 0; r < R; r++)
                for (int gi = 0; gi < C / 16; gi++) {
                    float s = q.scales[r * 4 + gi];
                    int z = qweight_zero(&q, r, gi);
                    double lo = 0, hi = 0;
                    for (int j = gi * 16; j < gi * 16 + 16; j++) lo = fmin(lo, w[r * C + j]), hi = fmax(hi, w[r * C + j]);
                    double want = sym ? 2 * fmax(-lo, hi) / maxq : (hi - lo) / maxq;
                    /* rounding to sig significant bits: relative 2^-sig (fp16: 2^-11) */
                    bad += fabs(s - want) > want * ldexp(1.0, -sig) || st_f16_to_f32(st_f32_to_f16(s)) != s;
                    for (int k = 0; coarse && k <= maxq; k++) { /* every -s * zero GGUF could store */
                        const float m = -s * (float)k;
                        bad += st_f16_to_f32(st_f32_to_f16(m)) != m;
                    }
                    if (sym) bad += z != 1 << (bits - 1);
                    else bad += z != (int)fmin(fmax(nearbyint(-lo / s), 0), maxq);
                    for (int j = gi * 16; j < gi * 16 + 16; j++) {
                        int c = q.codes[r * C + j];
                        bad += c != ref_code(w[r * C + j], s, z, bits);
                        double v = s * (c - z), x = w[r * C + j];
                        /* inside the grid's range the error is at most half a step */
                        if (x >= s * (0 - z) && x <= s * (maxq - z)) bad += fabs(v - x) > s * 0.5 * (1 + 1e-6);
                    }
                }
            tu_expect(!bad && matches_codes(&q, wh), "grid %s %d bits%s: scales, zeros and nearest codes (%d bad)",
                      sym ? "sym" : "asym", bits, coarse ? " (scale * zero fp16)" : "", bad);
            qweight_free(&q);
        }
    free(w), free(wh);
}

typedef struct {
    int bits, group, sym;
} gcase;

static void check_identity(void) {
    enum { R = 150, C = 256 };
    tu_seed(11);
    float *w = tu_randn(R * C, 0.02), *rt = tu_alloc(R * C), *wh = tu_alloc(R * C);
    double *h = identity(C);
    const gcase cases[] = {{4, 64, 1}, {4, 128, 0}, {3, -1, 1}, {8, -1, 1}};
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
        quant_grid g = {cases[k].bits, cases[k].group, cases[k].sym, 0};
        qweight r;
        if (quant_rtn(&r, rt, w, R, C, &g)) continue;
        for (int mode = 0; mode < 5; mode++) {
            /* 0 GPTQ, 1 GPTQ act order, 2 GPTQ dynamic groups, 3 QuantEase from RTN, 4 QuantEase from GPTQ */
            quant_hessian qh;
            qweight q;
            int ok = quant_hessian_prepare(&qh, h, C, 0.01, mode == 1) == 0 && quant_grid_init(&q, w, R, C, &g, qh.dead) == 0;
            if (ok && mode != 3) ok = quant_hessian_factor(&qh, "test") == 0 && gptq_quantize(&q, wh, NULL, w, &qh, mode != 2) == 0;
            if (ok && mode == 3) memcpy(q.codes, r.codes, R * C);
            if (ok && mode >= 3) ok = quantease_quantize(&q, wh, w, &qh, 3, NULL) == 0;
            tu_expect(ok && same_codes(&q, &r) && !memcmp(wh, rt, sizeof(float) * R * C),
                      "H = I: mode %d equals RTN exactly (%d bits, group %d, sym %d) %s", mode, g.bits, g.group_size, g.sym,
                      ok ? "" : err_msg());
            quant_hessian_free(&qh);
            qweight_free(&q);
        }
        qweight_free(&r);
    }
    free(w), free(rt), free(wh), free(h);
}

/* GPTQ and QuantEase against the plain references; objective monotone and exact. */
static void check_references(void) {
    enum { R = 150, C = 260, NT = 600, SW = 4 };
    float *x = make_inputs(NT, C, 21);
    double *h = gram_of(x, NT, C);
    tu_seed(22);
    float *w = tu_randn(R * C, 0.03), *wh = tu_alloc(R * C);
    uint8_t *ref = malloc(R * C);
    for (int act = 0; act <= 1; act++) {
        quant_grid g = {4, act ? 20 : 130, act, 0};
        quant_hessian qh;
        qweight q;
        if (!tu_expect(quant_hessian_prepare(&qh, h, C, 0.01, act) == 0 && quant_grid_init(&q, w, R, C, &g, qh.dead) == 0 &&
                           quant_hessian_factor(&qh, "test") == 0 && gptq_quantize(&q, wh, NULL, w, &qh, 1) == 0,
                       "gptq: %s", err_msg()))
            continue;
        ref_gptq(ref, &q, w, h, R, C, 0.01, act);
        size_t diff = 0;
        for (size_t i = 0; i < (size_t)R * C; i++) diff += ref[i] != q.codes[i];
        tu_expect(diff == 0 && matches_codes(&q, wh), "GPTQ (act order %d) equals the plain column-by-column GPTQ: %zu of "
                  "%d codes differ", act, diff, R * C);
        double obj[SW + 1];
        memcpy(ref, q.codes, R * C);
        if (!tu_expect(quantease_quantize(&q, wh, w, &qh, SW, obj) == 0, "quantease: %s", err_msg())) continue;
        ref_quantease(ref, &q, w, h, R, C, 0.01, act, SW);
        diff = 0;
        for (size_t i = 0; i < (size_t)R * C; i++) diff += ref[i] != q.codes[i];
        tu_expect(diff == 0 && matches_codes(&q, wh), "QuantEase (act order %d, %d sweeps) equals plain coordinate "
                  "descent: %zu of %d codes differ", act, SW, diff, R * C);
        int mono = 1;
        for (int t = 1; t <= SW; t++) mono &= obj[t] <= obj[t - 1] * (1 + 1e-12);
        tu_expect(mono && obj[SW] < obj[0], "QuantEase objective never increases: %.6e -> %.6e -> ... -> %.6e", obj[0],
                  obj[1], obj[SW]);
        if (!act) {
            /* the objective from T and P equals the direct sum; the terms of T + W^ - P have the size of the
             * weights (0.03 * 16) and n = 260 of them accumulate: relative 1e-9 is 1e4 x that rounding */
            double direct = ref_objective(w, wh, h, R, C, 0.01);
            tu_expect(fabs(obj[SW] - direct) <= 1e-9 * direct, "objective %.12e equals tr(D H D^T) %.12e", obj[SW], direct);
        }
        quant_hessian_free(&qh);
        qweight_free(&q);
    }
    free(x), free(h), free(w), free(wh), free(ref);
}

/* QuantEase <= GPTQ <= RTN in layer-wise error (undamped H) on realistic inputs. */
static void check_ordering(void) {
    enum { R = 128, C = 192, NT = 1024 };
    float *x = make_inputs(NT, C, 31);
    double *h = gram_of(x, NT, C);
    tu_seed(32);
    float *w = tu_randn(R * C, 0.03), *wh = tu_alloc(R * C);
    const gcase cases[] = {{4, 64, 1}, {4, 32, 0}, {3, -1, 1}, {8, -1, 1}};
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
        quant_grid g = {cases[k].bits, cases[k].group, cases[k].sym, 0};
        double e[3], ref;
        qweight q;
        quant_hessian qh;
        int ok = quant_rtn(&q, wh, w, R, C, &g) == 0 && quant_layer_error(&e[0], &ref, w, wh, h, R, C) == 0;
        qweight_free(&q);
        ok = ok && quant_hessian_prepare(&qh, h, C, 0.01, 0) == 0 && quant_grid_init(&q, w, R, C, &g, qh.dead) == 0 &&
             quant_hessian_factor(&qh, "t") == 0 && gptq_quantize(&q, wh, NULL, w, &qh, 1) == 0 &&
             quant_layer_error(&e[1], &ref, w, wh, h, R, C) == 0 && quantease_quantize(&q, wh, w, &qh, 5, NULL) == 0 &&
             quant_layer_error(&e[2], &ref, w, wh, h, R, C) == 0;
        if (tu_verbose) printf("%d bits group %d sym %d: QuantEase %.4e GPTQ %.4e RTN %.4e\n", g.bits, g.group_size, g.sym,
                               e[2] / ref, e[1] / ref, e[0] / ref);
        tu_expect(ok && e[2] <= e[1] && e[1] < e[0], "%d bits group %d sym %d: QuantEase %.4e <= GPTQ %.4e <= RTN %.4e %s",
                  g.bits, g.group_size, g.sym, e[2] / ref, e[1] / ref, e[0] / ref, ok ? "" : err_msg());
        quant_hessian_free(&qh);
        qweight_free(&q);
    }
    free(x), free(h), free(w), free(wh);
}

/* The layer error equals ||X W^T - X W^T||^2 / ||X W^T||^2 computed from the inputs. */
static void check_layer_error(void) {
    enum { R = 70, C = 40, NT = 90 };
    float *x = make_inputs(NT, C, 41), *w = tu_randn(R * C, 0.1), *wh = tu_copy(w, R * C);
    for (int i = 0; i < R * C; i += 3) wh[i] += 0.01f;
    double *h = gram_of(x, NT, C), err, ref, e2 = 0, r2 = 0;
    quant_layer_error(&err, &ref, w, wh, h, R, C);
    for (int t = 0; t < NT; t++)
        for (int r = 0; r < R; r++) {
            double y = 0, yh = 0;
            for (int j = 0; j < C; j++) y += (double)x[t * C + j] * w[r * C + j], yh += (double)x[t * C + j] * wh[r * C + j];
            e2 += (yh - y) * (yh - y), r2 += y * y;
        }
    /* H holds float64 sums of float products (exact to 2^-53 each): 1e-9 covers the orders of summation */
    tu_expect(fabs(err - e2) <= 1e-9 * e2 && fabs(ref - r2) <= 1e-9 * r2, "layer error %.10e / %.10e equals the direct "
              "%.10e / %.10e", err, ref, e2, r2);
    free(x), free(w), free(wh), free(h);
}

/* The stage's cheap metrics: GPTQ's objective sum e^2 and QuantEase's objective, less lambda ||dW||^2 over
 * the live columns, equal quant_layer_error's tr(dW H dW^T); quant_layer_ref (from W^T W) equals its
 * tr(W H W^T). With dead columns and act order. Tolerances: the identity holds for the computed U up
 * to the factorization's backward error, about n eps cond(H_lambda) <= 64 * 1.1e-16 * 6400 (the damping
 * bounds the condition by (trace + lambda) / lambda <= 100 n + 1) = 4.5e-11, so 1e-8 relative; the two
 * refs are float64 sums of the same n^2 products in two orders, n^2 eps = 4.5e-13 times the ratio of
 * sum |G_ij H_ij| to the sum (a few for these inputs), so 1e-10. */
static void check_error_from_objective(void) {
    enum { R = 50, C = 64, NT = 300 };
    float *x = make_inputs(NT, C, 61), *w = tu_randn(R * C, 0.05), *wh = tu_alloc(R * C);
    for (int t = 0; t < NT; t++) x[t * C + 7] = 0; /* a dead input channel */
    double *h = gram_of(x, NT, C);
    const quant_grid grids[] = {{4, 16, 1, 0}, {8, -1, 1, 0}, {3, 32, 0, 0}};
    for (int k = 0; k < 3; k++)
        for (int act_order = 0; act_order < 2; act_order++) {
            quant_grid g = grids[k];
            if (g.group_size < 0) g.group_size = C;
            quant_hessian qh;
            qweight q;
            double f_gptq = 0, obj[3] = {0}, e_gptq = 0, e_qe = 0, ref = 0, ref2 = 0;
            int ok = quant_hessian_prepare(&qh, h, C, 0.01, act_order) == 0 && quant_grid_init(&q, w, R, C, &g, qh.dead) == 0 &&
                     quant_hessian_factor(&qh, "t") == 0 && gptq_quantize(&q, wh, &f_gptq, w, &qh, 1) == 0 &&
                     quant_layer_error(&e_gptq, &ref, w, wh, h, R, C) == 0 && quant_layer_ref(&ref2, w, h, R, C) == 0;
            const double d_gptq = ok ? quant_error_from_objective(f_gptq, w, wh, &qh, R) : 0;
            ok = ok && quantease_quantize(&q, wh, w, &qh, 2, obj) == 0 && quant_layer_error(&e_qe, &ref, w, wh, h, R, C) == 0;
            const double d_qe = ok ? quant_error_from_objective(obj[2], w, wh, &qh, R) : 0;
            tu_expect(ok && fabs(d_gptq - e_gptq) <= 1e-8 * e_gptq && fabs(d_qe - e_qe) <= 1e-8 * e_qe &&
                      fabs(ref2 - ref) <= 1e-10 * ref, "%d bits group %d act order %d: error from the objective GPTQ %.12e "
                      "QuantEase %.12e = from H %.12e %.12e; ref from W^T W %.15e = %.15e %s", g.bits, g.group_size,
                      act_order, d_gptq, d_qe, e_gptq, e_qe, ref2, ref, ok ? "" : err_msg());
            quant_hessian_free(&qh);
            qweight_free(&q);
        }
    free(x), free(w), free(wh), free(h);
}

static void check_dead_and_retry(void) {
    enum { R = 20, C = 48, NT = 200 };
    float *x = make_inputs(NT, C, 51), *w = tu_randn(R * C, 0.05), *wh = tu_alloc(R * C);
    for (int t = 0; t < NT; t++) x[t * C + 9] = 0, x[t * C + 30] = 0; /* two dead input channels */
    double *h = gram_of(x, NT, C);
    quant_grid g = {4, 16, 1, 0};
    quant_hessian qh;
    qweight q;
    int ok = quant_hessian_prepare(&qh, h, C, 0.01, 1) == 0 && quant_grid_init(&q, w, R, C, &g, qh.dead) == 0 &&
             quant_hessian_factor(&qh, "t") == 0 && gptq_quantize(&q, wh, NULL, w, &qh, 1) == 0;
    int zero = ok && qh.n_dead == 2, finite = 1;
    for (int r = 0; r < R && ok; r++) zero &= wh[r * C + 9] == 0 && wh[r * C + 30] == 0;
    ok = ok && quantease_quantize(&q, wh, w, &qh, 2, NULL) == 0;
    for (int r = 0; r < R && ok; r++) zero &= wh[r * C + 9] == 0 && wh[r * C + 30] == 0;
    for (int i = 0; i < R * C; i++) finite &= isfinite(wh[i]);
    tu_expect(ok && zero && finite, "dead columns: 2 found, their weights are 0 after GPTQ and QuantEase, all finite %s",
              ok ? "" : err_msg());
    quant_hessian_free(&qh);
    qweight_free(&q);

    /* an indefinite matrix with a positive diagonal: factorization fails until lambda exceeds |offdiag| */
    double *bad = calloc(C * C, sizeof(double));
    for (int i = 0; i < C; i++) bad[i * C + i] = 1, bad[i * C + (i ^ 1)] = 3;
    ok = quant_hessian_prepare(&qh, bad, C, 0.01, 0) == 0 && quant_hessian_factor(&qh, "retry test") == 0;
    tu_expect(ok && qh.retries == 3 && fabs(qh.damp - 10) < 1e-12 && fabs(qh.lambda - 10) < 1e-12,
              "Cholesky retries raise damping x10 until it succeeds: %d retries, damp %g %s", qh.retries, qh.damp,
              ok ? "" : err_msg());
    quant_hessian_free(&qh);
    for (int i = 0; i < C; i++) bad[i * C + (i ^ 1)] = 1e9;
    ok = quant_hessian_prepare(&qh, bad, C, 0.01, 0) == 0 && quant_hessian_factor(&qh, "layer 3 q_proj") == 0;
    tu_expect(!ok && err_kind_get() == ERR_STAGE && strstr(err_msg(), "layer 3 q_proj") && strstr(err_msg(), "damp"),
              "hopeless Hessian: an error naming the layer and the damping (%s)", err_msg());
    quant_hessian_free(&qh);
    bad[5 * C + 5] = NAN;
    ok = quant_hessian_prepare(&qh, bad, C, 0.01, 0) == 0;
    tu_expect(!ok && strstr(err_msg(), "NaN"), "a NaN in the Hessian's diagonal is an error naming it (%s)", err_msg());
    free(bad), free(x), free(w), free(wh), free(h);
}

static void check_threads(void) {
    enum { R = 200, C = 136, NT = 300 };
    float *x = make_inputs(NT, C, 61), *w = tu_randn(R * C, 0.05), *wh = tu_alloc(R * C);
    double *h = gram_of(x, NT, C), obj[2][4];
    uint8_t *codes[2];
    for (int t = 0; t < 2; t++) {
        kernels_set_threads(t + 1);
        kernels_split_always(t == 1); /* 2 threads whatever the work size */
        quant_grid g = {4, 8, 0, 0};
        quant_hessian qh;
        qweight q;
        quant_hessian_prepare(&qh, h, C, 0.01, 1);
        quant_grid_init(&q, w, R, C, &g, qh.dead);
        quant_hessian_factor(&qh, "t");
        gptq_quantize(&q, wh, NULL, w, &qh, 1);
        quantease_quantize(&q, wh, w, &qh, 3, obj[t]);
        codes[t] = malloc(R * C);
        memcpy(codes[t], q.codes, R * C);
        quant_hessian_free(&qh);
        qweight_free(&q);
    }
    kernels_split_always(0);
    kernels_set_threads(0);
    tu_expect(!memcmp(codes[0], codes[1], R * C) && !memcmp(obj[0], obj[1], sizeof obj[0]),
              "1 and 2 threads: the same codes and objectives");
    free(codes[0]), free(codes[1]), free(x), free(w), free(wh), free(h);
}

static void check_fp8(void) {
    enum { R = 6, C = 50 };
    tu_seed(71);
    float *w = tu_randn(R * C, 0.1), *wh = tu_alloc(R * C);
    w[2 * C + 3] = -3.0f;
    for (int pc = 0; pc <= 1; pc++) {
        qweight q;
        if (!tu_expect(quant_fp8(&q, wh, w, R, C, pc, QA_FP8) == 0, "fp8: %s", err_msg())) continue;
        int bad = 0;
        for (int r = 0; r < R; r++) {
            float m = 0;
            for (int j = 0; j < C; j++) m = fmaxf(m, fabsf(w[(pc ? r : 0) * C + j]));
            if (!pc)
                for (int i = 0; i < R * C; i++) m = fmaxf(m, fabsf(w[i]));
            const float s = q.scales[pc ? r : 0];
            bad += s != m / 448.0f;
            for (int j = 0; j < C; j++) {
                float v = wh[r * C + j], x = w[r * C + j];
                /* E4M3 keeps 3 mantissa bits: relative error 2^-4 for normals, absolute 2^-10 s below 2^-6 s */
                bad += fabsf(v - x) > fmaxf(fabsf(x) * 0.0625f, s * 0x1p-10f);
                bad += fabsf(x) == m && fabsf(fabsf(v) - m) > m * 0x1p-23f; /* s * 448 is m within an ulp */
            }
        }
        tu_expect(!bad && matches_codes(&q, wh) && q.n_scales == (pc ? R : 1) && q.act == QA_FP8,
                  "FP8 E4M3 per %s: scale max|W|/448, the maximum exact, every value within half an E4M3 step (%d bad)",
                  pc ? "channel" : "tensor", bad);
        qweight_free(&q);
    }
    free(w), free(wh);
}

/* SmoothQuant on a layer whose inputs have outlier channels: the folding leaves X W^T unchanged, and the
 * W8A8 error (int8 per-channel weights, int8 per-token activations) is lower with smoothing. */
static void check_smooth(void) {
    enum { R = 96, C = 128, NT = 256 };
    tu_seed(81);
    float *x = tu_alloc(NT * C), *w = tu_randn(R * C, 0.05), *norm = tu_alloc(C);
    for (int t = 0; t < NT; t++)
        for (int j = 0; j < C; j++) x[t * C + j] = (float)(tu_normal() * (j % 16 == 3 ? 60.0 : 1.0));
    for (int j = 0; j < C; j++) norm[j] = 1.0f;
    double errs[3];
    const double alphas[3] = {-1, 0.5, 0.8};
    for (int a = 0; a < 3; a++) {
        float *ws = tu_copy(w, R * C), *xs = tu_copy(x, NT * C), *ns = tu_copy(norm, C), *s = tu_alloc(C);
        if (alphas[a] > 0) {
            float amax[C] = {0};
            for (int t = 0; t < NT; t++)
                for (int j = 0; j < C; j++) amax[j] = fmaxf(amax[j], fabsf(x[t * C + j]));
            const float *wl[1] = {ws};
            int no[1] = {R};
            smooth_scales(s, amax, wl, no, 1, C, alphas[a]);
            float *wm[1] = {ws};
            smooth_apply(ns, wm, no, 1, C, NULL, s);
            for (int t = 0; t < NT; t++)
                for (int j = 0; j < C; j++) xs[t * C + j] = x[t * C + j] * ns[j]; /* the norm's output: x * (1/s) */
            /* folding is exact up to rounding: x (1/s) (s w) == x w within 4 eps per product, C terms */
            double md = 0, mr = 0;
            for (int t = 0; t < NT; t += 17)
                for (int r = 0; r < R; r++) {
                    double y = 0, ys = 0;
                    for (int j = 0; j < C; j++) y += (double)x[t * C + j] * w[r * C + j], ys += (double)xs[t * C + j] * ws[r * C + j];
                    md = fmax(md, fabs(y - ys)), mr = fmax(mr, fabs(y));
                }
            tu_expect(md <= 4 * TU_EPS * C * mr, "alpha %.1f: smoothing leaves X W^T unchanged (%.2e of %.2e)", alphas[a], md, mr);
        }
        quant_grid g = {8, -1, 1, 0};
        qweight q;
        float *wh = tu_alloc(R * C), *xq = tu_alloc(NT * C);
        quant_rtn(&q, wh, ws, R, C, &g);
        act_fake_quant(xq, xs, NT, C, QA_INT8);
        double e2 = 0, r2 = 0;
        for (int t = 0; t < NT; t++)
            for (int r = 0; r < R; r++) {
                double y = 0, yq = 0;
                for (int j = 0; j < C; j++) y += (double)x[t * C + j] * w[r * C + j], yq += (double)xq[t * C + j] * wh[r * C + j];
                e2 += (yq - y) * (yq - y), r2 += y * y;
            }
        errs[a] = e2 / r2;
        qweight_free(&q);
        free(ws), free(xs), free(ns), free(s), free(wh), free(xq);
    }
    tu_expect(errs[1] < errs[0] && errs[2] < errs[0], "W8A8 error with outlier channels: none %.3e > alpha 0.5 %.3e, "
              "alpha 0.8 %.3e", errs[0], errs[1], errs[2]);
    free(x), free(w), free(norm);
}

/* Dynamic activation quantization: int8 per token within half a step of max|x_t|/127; fp8 per token
 * within an E4M3 step (3 mantissa bits: 2^-4 relative, or 2^-9 of the scale below 2^-6). */
static void check_act(void) {
    enum { N = 4, D = 64 };
    tu_seed(91);
    float *x = tu_randn(N * D, 1.0), *xq = tu_alloc(N * D);
    for (int j = 0; j < D; j++) x[3 * D + j] *= 1e-3f; /* a quiet token keeps its own scale */
    const qa_type acts[2] = {QA_INT8, QA_FP8};
    for (int a = 0; a < 2; a++) {
        act_fake_quant(xq, x, N, D, acts[a]);
        int bad = 0;
        for (int t = 0; t < N; t++) {
            float m = 0;
            for (int j = 0; j < D; j++) m = fmaxf(m, fabsf(x[t * D + j]));
            const float s = acts[a] == QA_INT8 ? m / 127 : fmaxf(m / 448, 1.0f / (448 * 512));
            for (int j = 0; j < D; j++) {
                const float v = x[t * D + j], e = fabsf(xq[t * D + j] - v);
                bad += acts[a] == QA_INT8 ? e > 0.5f * s * 1.0001f : e > fmaxf(fabsf(v) * 0.0625f, s * 0x1p-9f);
            }
        }
        tu_expect(!bad, "activation fake quantization %s: every value within half a step (%d bad)", a ? "fp8" : "int8", bad);
    }
    free(x), free(xq);
}

int main(void) {
    tu_verbose = getenv("VERBOSE") != NULL;
    check_grid();
    check_identity();
    check_references();
    check_ordering();
    check_layer_error();
    check_error_from_objective();
    check_dead_and_retry();
    check_threads();
    check_fp8();
    check_smooth();
    check_act();
    return tu_finish("test_quant");
}
