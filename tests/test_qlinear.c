/* test_qlinear.c: the quantized linear kernels (kernels/qlinear.h) against qlinear_forward_ref, for
 * every kernel family this CPU has (portable, AVX2, AVX-512 VNNI), on stacks of parts (fused
 * projections), odd sizes, groups that are not multiples of 4, 16 or 32, zero points, padded leading
 * dimensions, bias and accumulation, and 1 to 19 tokens: up to QLINEAR_GEMV_ROWS tokens the float
 * kinds run the fused GEMV, beyond it dequantized panels and sgemm. Row ranges
 * (qlinear_forward_cols, what a decode team runs) must give the whole call's bits.
 *
 * Integer kinds (int8 activations) must equal the reference BIT FOR BIT: the int32 group sums are
 * exact and every kernel combines them with the same float operations in the same order.
 * Float kinds (W4A16-style integer weights, FP8): the kernels multiply exactly the dequantized
 * weights the reference uses (scale * value, one float each) by the activations (FP8 activations:
 * s_t * e4m3 value, rounded once to float where the reference keeps it in double) in fp32; a sum of
 * K products in any order is within gamma_K * sum|x||w| of the exact sum (Higham), and the bias and
 * the accumulated output add two roundings; the reference rounds once from double. So element-wise
 * |got - ref| <= (K + 4) * FLT_EPSILON * (sum_j |x_j||w_j| + |b| + |out_before|), FLT_EPSILON being
 * twice the unit roundoff (a factor 2 of margin, no more). The GEMV's sums run in 8 or 16 lanes
 * then a tree (at most K roundings on any path), within the same bound.
 *
 * The AVX-512 BF16 family's decode GEMV (qlinear_bf16_acts: symmetric codes of <= 4 bits, groups of
 * whole 32-column chunks, up to QLINEAR_GEMV_ROWS tokens) rounds the activations to bf16 first:
 * x~ = bf16(x), |x~ - x| <= 2^-8 |x| (8 significant bits, round to nearest even). The values
 * q - 2^(b-1) are integers in [-8, 7], exact in bf16, their products with x~ exact in fp32, and the
 * rest is the fp32 arithmetic above applied to x~ (|x~| <= (1 + 2^-8) |x|). vdpbf16ps flushes
 * subnormal inputs and partial sums to zero: at most 2 flushes per product, each off by less than
 * 2^-126 * 8 before the group scale, so an absolute 16 K 2^-126 max|scale| more. Element-wise:
 * |got - ref| <= 2^-8 S + (K + 4) FLT_EPSILON (1 + 2^-8) S + 16 K 2^-126 max|s| with S the sum
 * above (bf16_bound). */
#include "engine_testutil.h"
#include "kernels/linear.h"
#include "kernels/qlinear.h"
#include "kernels/qweight.h"

enum { ACT_ORDER = 1, HALF = 2 };

typedef struct {
    const char *name;
    qw_type type;
    int bits;
    qa_type act;
    int n_in, group; /* group 0: per output channel */
    int asym;        /* 1: zero points; 2: only the second part has them; 3: float minimums (GGUF Q4_1) */
    int per_tensor;  /* FP8: one scale per part */
    int n_parts, rows[3];
    int flags;       /* ACT_ORDER: groups of columns taken in a permuted order (GPTQ act order, g_idx);
                      * HALF: scales (and minimums) that are fp16 numbers (GPTQ, GGUF: the payload keeps
                      * them in fp16) */
} qcase;

static const qcase cases[] = {
    {"w8a8 per channel", QW_INT, 8, QA_INT8, 64, 0, 0, 0, 1, {48}, 0},
    {"w8a8 odd sizes", QW_INT, 8, QA_INT8, 37, 0, 0, 0, 1, {23}, 0},
    {"w8a8 qkv stack", QW_INT, 8, QA_INT8, 96, 0, 0, 0, 3, {32, 16, 16}, 0},
    {"w8a8 groups of 6 (padded to 8)", QW_INT, 8, QA_INT8, 30, 6, 0, 0, 2, {20, 13}, 0},
    {"w8a8 asymmetric groups", QW_INT, 8, QA_INT8, 64, 16, 1, 0, 1, {33}, 0},
    {"w8a8 zero points in one part", QW_INT, 8, QA_INT8, 48, 0, 2, 0, 2, {17, 18}, 0},
    {"w4a8 groups of 32", QW_INT, 4, QA_INT8, 128, 32, 0, 0, 2, {40, 40}, 0},
    {"w4a16 group 32", QW_INT, 4, QA_NONE, 128, 32, 0, 0, 1, {50}, 0},
    {"w4a16 asymmetric per channel", QW_INT, 4, QA_NONE, 72, 0, 1, 0, 2, {30, 31}, 0},
    {"w4a16 odd group of 9", QW_INT, 4, QA_NONE, 45, 9, 1, 0, 1, {70}, 0},
    {"w3a16 group 16", QW_INT, 3, QA_NONE, 64, 16, 0, 0, 1, {19}, 0},
    {"w2a16 asymmetric", QW_INT, 2, QA_NONE, 64, 64, 1, 0, 1, {17}, 0},
    {"w8a16 group 64", QW_INT, 8, QA_NONE, 192, 64, 1, 0, 3, {16, 8, 8}, 0},
    {"fp8 per channel", QW_FP8, 8, QA_NONE, 80, 0, 0, 0, 1, {40}, 0},
    {"fp8 per tensor stack", QW_FP8, 8, QA_NONE, 64, 0, 0, 1, 3, {24, 8, 8}, 0},
    {"fp8 w8a8 per channel", QW_FP8, 8, QA_FP8, 96, 0, 0, 0, 2, {33, 33}, 0},
    {"fp8 w8a8 per tensor", QW_FP8, 8, QA_FP8, 50, 0, 0, 1, 1, {70}, 0},
    {"fp8 groups of 16", QW_FP8, 8, QA_FP8, 64, 16, 0, 0, 1, {20}, 0},
    /* the SIMD layouts' corners: groups of 16 (a 32-column chunk in two groups) and padding past
     * the last group, 4-bit asymmetric groups of 32, 5..8-bit codes with groups, FP8 groups not a
     * multiple of 16 (the portable kernels), per-tensor FP8 activations */
    {"w4a16 groups of 16, padded", QW_INT, 4, QA_NONE, 48, 16, 1, 0, 2, {21, 11}, 0},
    {"w4a16 asymmetric groups of 32", QW_INT, 4, QA_NONE, 160, 32, 1, 0, 1, {37}, 0},
    {"w5a16 groups of 16", QW_INT, 5, QA_NONE, 80, 16, 1, 0, 1, {26}, 0},
    {"w8a16 per channel, padded", QW_INT, 8, QA_NONE, 40, 0, 0, 0, 1, {18}, 0},
    {"fp8 groups of 8", QW_FP8, 8, QA_NONE, 40, 8, 0, 0, 1, {19}, 0},
    {"fp8 per-tensor activations", QW_FP8, 8, QA_FP8_TENSOR, 72, 0, 0, 0, 2, {20, 21}, 0},
    {"fp8 per-tensor weights and activations", QW_FP8, 8, QA_FP8_TENSOR, 64, 0, 0, 1, 1, {33}, 0},
    /* act order: the kernels permute the input to the payload's column order */
    {"w4a16 act order, groups of 32", QW_INT, 4, QA_NONE, 128, 32, 1, 0, 2, {24, 17}, 1},
    {"w8a8 act order, groups of 16", QW_INT, 8, QA_INT8, 64, 16, 2, 0, 2, {20, 13}, 1},
    {"w3a16 act order, odd groups of 9", QW_INT, 3, QA_NONE, 45, 9, 0, 0, 1, {22}, 1},
    /* float minimums: w = scale * q + min */
    {"w4a16 minimums, groups of 32", QW_INT, 4, QA_NONE, 96, 32, 3, 0, 2, {21, 20}, 0},
    {"w4a16 minimums, odd groups of 9", QW_INT, 4, QA_NONE, 45, 9, 3, 0, 1, {18}, 0},
    {"w6a16 minimums, groups of 16", QW_INT, 6, QA_NONE, 80, 16, 3, 0, 1, {19}, 0},
    /* fp16 scales and minimums (kept as fp16 in the payload) */
    {"w4a16 fp16 scales, groups of 32", QW_INT, 4, QA_NONE, 128, 32, 0, 0, 2, {18, 19}, HALF},
    {"w4a16 fp16 minimums, groups of 32 (Q4_1)", QW_INT, 4, QA_NONE, 96, 32, 3, 0, 1, {23}, HALF},
    {"w8a16 fp16 scales, odd groups of 9", QW_INT, 8, QA_NONE, 45, 9, 1, 0, 1, {17}, HALF},
    {"fp8 fp16 scales per channel", QW_FP8, 8, QA_NONE, 64, 0, 0, 0, 1, {21}, HALF},
};

static void make_part(qweight *p, const qcase *c, int part, int rows) {
    *p = (qweight){.type = c->type, .bits = c->bits, .act = c->act, .n_out = rows, .n_in = c->n_in,
                   .group_size = c->group ? c->group : c->n_in};
    const int asym = c->asym == 1 || (c->asym == 2 && part == 1);
    if (qweight_alloc(p, asym, c->per_tensor) || (c->asym == 3 && qweight_alloc_mins(p))) {
        printf("alloc: %s\n", err_msg());
        exit(1);
    }
    const size_t n = (size_t)rows * c->n_in;
    for (size_t i = 0; i < n; i++) {
        if (c->type == QW_FP8) {
            uint8_t code;
            do code = (uint8_t)tu_next();
            while ((code & 0x7F) == 0x7F);
            p->codes[i] = code;
        } else {
            p->codes[i] = (uint8_t)(tu_next() % (1u << c->bits));
        }
    }
    /* the extreme codes on purpose: int8 -128 and 127 (saturation of a careless kernel) */
    p->codes[0] = 0;
    p->codes[n - 1] = c->type == QW_FP8 ? 0x7E : (uint8_t)((1 << c->bits) - 1);
    for (int i = 0; i < p->n_scales; i++) p->scales[i] = (float)(0.002 + 0.02 * tu_uniform());
    if (c->flags & ACT_ORDER) { /* column perm[i] in group i / G, perm a stride permutation (the same for every part) */
        const int G = p->group_size, stride = 7; /* coprime with every n_in of the table */
        int32_t *g = malloc(sizeof(int32_t) * (size_t)c->n_in);
        for (int i = 0; i < c->n_in; i++) g[(size_t)i * stride % c->n_in] = i / G;
        if (qweight_set_g_idx(p, g) || !p->g_idx) {
            printf("g_idx: %s\n", err_msg());
            exit(1);
        }
        free(g);
    }
    if (p->zeros)
        for (int i = 0; i < rows * (c->n_in / p->group_size); i++) p->zeros[i] = (uint8_t)(tu_next() % (1u << c->bits));
    if (p->mins)
        for (int i = 0; i < rows * (c->n_in / p->group_size); i++) p->mins[i] = (float)(-0.01 - 0.1 * tu_uniform());
    if (c->flags & HALF) { /* round to fp16 by dropping mantissa bits: exact fp16 numbers of the scales' range */
        for (int i = 0; i < p->n_scales; i++) {
            uint32_t b;
            memcpy(&b, &p->scales[i], 4);
            b &= ~0x1FFFu;
            memcpy(&p->scales[i], &b, 4);
        }
        for (int i = 0; p->mins && i < rows * (c->n_in / p->group_size); i++) {
            uint32_t b;
            memcpy(&b, &p->mins[i], 4);
            b &= ~0x1FFFu;
            memcpy(&p->mins[i], &b, 4);
        }
    }
}

/* The bound of the top of the file for a sum S = sum |x||w| (+ |b| + |out before|) of K products,
 * with bf16 activations (bf) or fp32 ones; smax the largest |group scale|. */
static double bf16_bound(double S, int K, int bf, double smax) {
    const double fp32 = (K + 4) * TU_EPS * S;
    return bf ? 0x1p-8 * S + fp32 * (1 + 0x1p-8) + 16.0 * K * 0x1p-126 * smax : fp32;
}

/* Element-wise float bound (see the top of the file) from the dequantized weights; bf: the call
 * rounds the activations to bf16. */
static void float_bound(float *bound, const float *x, int ldx, const qweight *const *parts, int n_parts,
                        const float *b, const float *out0, int ldo, int n, const qcase *c, int bf) {
    const int K = c->n_in;
    for (int i = 0, o = 0; i < n_parts; i++) {
        float *w = tu_alloc((size_t)parts[i]->n_out * K);
        qweight_dequantize(w, parts[i]);
        for (int r = 0; r < parts[i]->n_out; r++, o++)
            for (int t = 0; t < n; t++) {
                double s = 0, amax = 0;
                /* the activations' scale: this token's maximum, or every token's (per tensor) */
                for (int u = c->act == QA_FP8_TENSOR ? 0 : t; u < (c->act == QA_FP8_TENSOR ? n : t + 1); u++)
                    for (int j = 0; j < K; j++) amax = fmax(amax, fabs(x[(size_t)u * ldx + j]));
                for (int j = 0; j < K; j++) {
                    /* FP8 activations are at most max|x_t| * (1 + 2^-4) after quantization */
                    double xv = c->act != QA_NONE ? fmin(fabs(x[(size_t)t * ldx + j]) * 1.0625 + amax / 448.0 / 64, amax * 1.0625)
                                                  : fabs(x[(size_t)t * ldx + j]);
                    s += xv * fabs(w[(size_t)r * K + j]);
                }
                s += (b ? fabs(b[o]) : 0) + (out0 ? fabs(out0[(size_t)t * ldo + o]) : 0);
                double smax = 0;
                for (int g = 0; bf && g < K / (c->group ? c->group : K); g++)
                    smax = fmax(smax, fabs(parts[i]->scales[(size_t)r * (K / (c->group ? c->group : K)) + g]));
                bound[(size_t)t * ldo + o] = (float)bf16_bound(s, K, bf, smax);
            }
        free(w);
    }
}

/* Row ranges: the outputs split at random multiples of qlinear_col_align (what a decode team does)
 * must be the whole call's bits; a misaligned range is refused. */
static void check_cols(const linear *l, const float *whole, const float *out0, int ldo, const float *x, int ldx, int n,
                       int accumulate, const char *name) {
    float *got = tu_copy(out0, (size_t)n * ldo);
    const int A = qlinear_col_align(l);
    for (int j0 = 0, rc = 0; j0 < l->n_out && !rc; ) {
        int j1 = j0 + A * (1 + (int)(tu_next() % 3));
        if (j1 > l->n_out) j1 = l->n_out;
        rc = qlinear_forward_cols(got, ldo, x, ldx, l, n, j0, j1, accumulate);
        tu_expect(rc == 0, "%s: rows [%d, %d): %s", name, j0, j1, err_msg());
        j0 = j1;
    }
    tu_expect(!memcmp(got, whole, sizeof(float) * (size_t)n * ldo), "%s n=%d: row ranges give the whole call's bits",
              name, n);
    if (l->n_out > A)
        tu_expect(qlinear_forward_cols(got, ldo, x, ldx, l, n, 1, l->n_out, accumulate) == -1 &&
                  err_kind_get() == ERR_INTERNAL, "%s: a misaligned row range is refused", name);
    tu_expect(qlinear_forward_cols(got, ldo, x, ldx, l, n + QLINEAR_GEMV_ROWS, 0, l->n_out, accumulate) == -1,
              "%s: too many tokens for a row range are refused", name);
    free(got);
}

static void run_case(const qcase *c, int n, int accumulate, int with_bias, qlinear_isa_kind isa) {
    qweight parts[3];
    const qweight *pp[3];
    int n_out = 0;
    tu_seed((uint64_t)(c - cases) * 977 + (uint64_t)n * 31 + (uint64_t)accumulate * 7 + (uint64_t)with_bias);
    for (int i = 0; i < c->n_parts; i++) {
        make_part(&parts[i], c, i, c->rows[i]);
        pp[i] = &parts[i];
        n_out += c->rows[i];
    }
    const int ldx = c->n_in + 3, ldo = n_out + 5;
    float *x = tu_randn((size_t)n * ldx, 1.0);
    /* a token of zeros (scale 0) and a token with an outlier channel */
    if (n > 2) {
        memset(x + (size_t)1 * ldx, 0, sizeof(float) * c->n_in);
        x[(size_t)2 * ldx + c->n_in / 2] = 60.0f;
    }
    float *b = with_bias ? tu_randn((size_t)n_out, 0.5) : NULL;
    float *out0 = tu_randn((size_t)n * ldo, 1.0);
    float *got = tu_copy(out0, (size_t)n * ldo), *ref = tu_copy(out0, (size_t)n * ldo);
    qlinear *q;
    if (qlinear_build(&q, pp, c->n_parts)) {
        tu_expect(0, "%s: build: %s", c->name, err_msg());
        return;
    }
    linear l = linear_qlinear(q, b);
    tu_expect(l.n_out == n_out && l.n_in == c->n_in, "%s: descriptor shape", c->name);
    if ((c->flags & HALF) && n == 1 && !accumulate) { /* the fp16 path is taken: one scale off fp16 costs it */
        const float keep = parts[0].scales[0];
        parts[0].scales[0] = keep * (1.0f + 0x1p-20f);
        qlinear *q32;
        if (qlinear_build(&q32, pp, c->n_parts)) exit(1);
        const size_t ng = c->group ? (size_t)(c->n_in / c->group) : 1, ns = (size_t)n_out * ng;
        /* the bf16 GEMV's layout keeps its blocked copy of the scales (rows padded to 4) in fp16 too */
        const int bf_layout = c->type == QW_INT && c->act == QA_NONE && c->bits <= 4 && c->asym == 0 && c->group % 32 == 0;
        const size_t nb = bf_layout ? (size_t)(n_out + 3) / 4 * 4 * ng : 0;
        tu_expect(qlinear_bytes(q32) - qlinear_bytes(q) == ns * 2 * (c->asym == 3 ? 2 : 1) + nb * 2,
                  "%s: scales%s kept in fp16 (%zu vs %zu bytes)", c->name, c->asym == 3 ? " and minimums" : "",
                  qlinear_bytes(q), qlinear_bytes(q32));
        qlinear_free(q32);
        parts[0].scales[0] = keep;
    }
    /* the bf16 decode GEMV takes exactly its case (and the test cannot pass without it running) */
    const int bf = qlinear_bf16_acts(&l, n);
    const int bf_case = c->type == QW_INT && c->act == QA_NONE && c->bits <= 4 && c->asym == 0 && (c->group % 32 == 0);
    tu_expect(bf == (isa == QISA_AVX512BF16 && bf_case && n <= QLINEAR_GEMV_ROWS),
              "%s [%s] n=%d: bf16 activations %s", c->name, qlinear_isa_name(isa), n, bf ? "taken" : "not taken");
    int rc = linear_forward(got, ldo, x, ldx, &l, n, accumulate);
    tu_expect(rc == 0, "%s: forward: %s", c->name, err_msg());
    if (n <= QLINEAR_GEMV_ROWS) check_cols(&l, got, out0, ldo, x, ldx, n, accumulate, c->name);
    qlinear_forward_ref(ref, ldo, x, ldx, pp, c->n_parts, b, n, accumulate);
    char what[160];
    snprintf(what, sizeof what, "%s [%s] n=%d%s%s", c->name, qlinear_isa_name(isa), n, accumulate ? " acc" : "",
             with_bias ? " bias" : "");
    if (c->act == QA_INT8) {
        size_t bad = 0, first = 0;
        for (int t = 0; t < n; t++)
            for (int o = 0; o < ldo; o++) {
                size_t i = (size_t)t * ldo + o;
                if (memcmp(&got[i], &ref[i], sizeof(float)) && !bad++) first = i;
            }
        tu_expect(bad == 0, "%s: %zu outputs differ from the exact reference (first [%zu, %zu]: %.9g vs %.9g)", what,
                  bad, first / ldo, first % ldo, got[first], ref[first]);
    } else {
        float *bound = tu_alloc((size_t)n * ldo);
        float_bound(bound, x, ldx, pp, c->n_parts, b, accumulate ? out0 : NULL, ldo, n, c, bf);
        double worst = 0;
        int untouched = 1;
        for (int t = 0; t < n; t++)
            for (int o = 0; o < ldo; o++) {
                size_t i = (size_t)t * ldo + o;
                if (o >= n_out) {
                    untouched &= !memcmp(&got[i], &out0[i], sizeof(float));
                    continue;
                }
                double e = fabs((double)got[i] - ref[i]) / (bound[i] > 0 ? bound[i] : 1e-30);
                if (!(e <= worst)) worst = e;
            }
        tu_expect(worst <= 1.0 && untouched, "%s: error %.3f of the derived bound (padding kept: %d)", what, worst,
                  untouched);
        free(bound);
    }
    qlinear_free(q);
    for (int i = 0; i < c->n_parts; i++) qweight_free(&parts[i]);
    free(x), free(b), free(out0), free(got), free(ref);
}

static void test_build_errors(void) {
    qweight a = {.type = QW_INT, .bits = 4, .act = QA_NONE, .n_out = 8, .n_in = 16, .group_size = 8};
    qweight b = a;
    b.group_size = 16;
    if (qweight_alloc(&a, 0, 0) || qweight_alloc(&b, 0, 0)) exit(1);
    const qweight *pp[2] = {&a, &b};
    qlinear *q;
    tu_expect(qlinear_build(&q, pp, 2) == -1 && err_kind_get() == ERR_INPUT && strstr(err_msg(), "quantized alike"),
              "parts with different groups are refused: %s", err_msg());
    a.act = QA_FP8;
    tu_expect(qlinear_build(&q, pp, 1) == -1 && strstr(err_msg(), "not supported"), "int weights, fp8 activations: %s",
              err_msg());
    qweight_free(&a), qweight_free(&b);
    tu_expect(qlinear_build(&q, pp, 0) == -1, "an empty stack is refused");
    /* act order: fused parts must share their column order */
    qweight c0 = {.type = QW_INT, .bits = 4, .act = QA_NONE, .n_out = 4, .n_in = 8, .group_size = 4}, c1 = c0;
    if (qweight_alloc(&c0, 0, 0) || qweight_alloc(&c1, 0, 0)) exit(1);
    static const int32_t ga[8] = {1, 1, 1, 1, 0, 0, 0, 0}, gb[8] = {0, 1, 0, 1, 0, 1, 0, 1};
    if (qweight_set_g_idx(&c0, ga) || qweight_set_g_idx(&c1, gb)) exit(1);
    const qweight *cp[2] = {&c0, &c1};
    tu_expect(qlinear_build(&q, cp, 2) == -1 && err_kind_get() == ERR_INPUT && strstr(err_msg(), "one column order"),
              "parts with different act orders are refused: %s", err_msg());
    qweight_free(&c0), qweight_free(&c1);
    /* float minimums: fp32 activations only, and fused parts alike */
    qweight m0 = {.type = QW_INT, .bits = 4, .act = QA_INT8, .n_out = 4, .n_in = 32, .group_size = 32}, m1 = m0;
    if (qweight_alloc(&m0, 0, 0) || qweight_alloc_mins(&m0) || qweight_alloc(&m1, 0, 0)) exit(1);
    const qweight *mp[2] = {&m0, &m1};
    tu_expect(qlinear_build(&q, mp, 1) == -1 && strstr(err_msg(), "fp32 activations only"),
              "minimums with int8 activations are refused: %s", err_msg());
    m0.act = m1.act = QA_NONE;
    tu_expect(qlinear_build(&q, mp, 2) == -1 && strstr(err_msg(), "float minimums"),
              "fused parts with and without minimums are refused: %s", err_msg());
    qweight_free(&m1);
    if (qweight_alloc(&m1, 1, 0)) exit(1);
    tu_expect(qweight_alloc_mins(&m1) == -1 && qweight_alloc_mins(&c0) == -1,
              "minimums need an allocated integer weight without zero points");
    qweight_free(&m0), qweight_free(&m1);
    /* an FP8 NaN code cannot run: refused, with its place named */
    qweight f = {.type = QW_FP8, .bits = 8, .act = QA_NONE, .n_out = 4, .n_in = 16, .group_size = 16};
    if (qweight_alloc(&f, 0, 0)) exit(1);
    f.scales[0] = f.scales[1] = f.scales[2] = f.scales[3] = 1;
    f.codes[2 * 16 + 5] = 0xFF;
    const qweight *fp = &f;
    tu_expect(qlinear_build(&q, &fp, 1) == -1 && err_kind_get() == ERR_INPUT && strstr(err_msg(), "row 2, column 5"),
              "an FP8 NaN code is refused: %s", err_msg());
    qweight_free(&f);
}

/* FP8 scales too large for the SIMD decoding's scale * 256 (finite weights all the same): the
 * portable kernels run, and the result still matches the reference. */
static void test_fp8_huge_scale(void) {
    qweight f = {.type = QW_FP8, .bits = 8, .act = QA_NONE, .n_out = 3, .n_in = 32, .group_size = 32};
    if (qweight_alloc(&f, 0, 0)) exit(1);
    for (int i = 0; i < 96; i++) f.codes[i] = (uint8_t)(i % 2 ? 0x01 : 0x81); /* +-2^-9 */
    f.scales[0] = f.scales[1] = f.scales[2] = 1e37f;                         /* weights +-1.95e34 */
    const qweight *fp = &f;
    qlinear *q;
    float x[32], got[3], ref[3];
    for (int j = 0; j < 32; j++) x[j] = (float)(j % 3) * 1e-30f;
    if (qlinear_build(&q, &fp, 1)) exit(1);
    linear l = linear_qlinear(q, NULL);
    tu_expect(linear_forward(got, 3, x, 32, &l, 1, 0) == 0, "huge FP8 scales: forward");
    qlinear_forward_ref(ref, 3, x, 32, &fp, 1, NULL, 1, 0);
    tu_expect(isfinite(got[0]) && fabs(got[0] - ref[0]) <= 1e-6 * fabs(ref[0]) + 1e-30,
              "huge FP8 scales stay finite and right: %g vs %g", got[0], ref[0]);
    qlinear_free(q);
    qweight_free(&f);
}

/* fp16 scales at the ends of the half range (subnormal 2^-24 .. 65504) take the payload's fp16 path
 * and decode exactly: the outputs are the reference's within its bound. */
static void test_half_scales(void) {
    static const float sc[8] = {0x1p-24f, 0x3p-24f, 0x1p-20f, 0x1.8p-15f, 0x1p-14f, 1.5f, 1000.0f, 65504.0f};
    qweight w = {.type = QW_INT, .bits = 4, .act = QA_NONE, .n_out = 8, .n_in = 64, .group_size = 32};
    if (qweight_alloc(&w, 0, 0)) exit(1);
    for (int i = 0; i < 16; i++) w.scales[i] = sc[i % 8] * (i & 8 ? -1.0f : 1.0f);
    for (int i = 0; i < 8 * 64; i++) w.codes[i] = (uint8_t)(tu_next() % 16);
    const qweight *wp = &w;
    qlinear *q;
    float x[64], got[8], ref[8];
    for (int j = 0; j < 64; j++) x[j] = (float)tu_normal();
    if (qlinear_build(&q, &wp, 1)) exit(1);
    linear l = linear_qlinear(q, NULL);
    const float keep = w.scales[0];
    w.scales[0] = 1.0f + 0x1p-20f; /* not an fp16 number: the payload keeps fp32 scales */
    qlinear *q32;
    if (qlinear_build(&q32, &wp, 1)) exit(1);
    /* 16 scales, and the bf16 GEMV's blocked copy of them (2 blocks of 4 rows x 2 groups) */
    tu_expect(qlinear_bytes(q32) - qlinear_bytes(q) == 16 * 2 + 16 * 2, "fp16-exact scales are kept in fp16 (%zu vs %zu bytes)",
              qlinear_bytes(q), qlinear_bytes(q32));
    qlinear_free(q32);
    w.scales[0] = keep;
    tu_expect(linear_forward(got, 8, x, 64, &l, 1, 0) == 0, "half scales: forward");
    qlinear_forward_ref(ref, 8, x, 64, &wp, 1, NULL, 1, 0);
    int bad = 0;
    for (int o = 0; o < 8; o++) {
        double s = 0;
        for (int j = 0; j < 64; j++) s += fabs(x[j]) * 15 * fabs(w.scales[o * 2 + j / 32]);
        const double smax = fmax(fabs(w.scales[o * 2]), fabs(w.scales[o * 2 + 1]));
        bad += !(fabs((double)got[o] - ref[o]) <= bf16_bound(s, 64, qlinear_bf16_acts(&l, 1), smax));
    }
    tu_expect(bad == 0, "half scales from subnormal to 65504: %d outputs off the reference", bad);
    qlinear_free(q);
    qweight_free(&w);
}

int main(void) {
    test_build_errors();
    test_half_scales();
    test_fp8_huge_scale();
    const qlinear_isa_kind best = qlinear_isa();
    static const int tokens[] = {1, 2, 3, 5, QLINEAR_GEMV_ROWS, QLINEAR_GEMV_ROWS + 1, 19};
    for (int isa = QISA_PORTABLE; isa <= (int)best; isa++) {
        tu_expect(qlinear_set_isa((qlinear_isa_kind)isa) == (qlinear_isa_kind)isa, "family %d available", isa);
        for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++)
            for (size_t t = 0; t < sizeof tokens / sizeof tokens[0]; t++)
                for (int acc = 0; acc < 2; acc++) run_case(&cases[c], tokens[t], acc, (int)(t + c) % 2, (qlinear_isa_kind)isa);
    }
    printf("kernel families tested: portable .. %s\n", qlinear_isa_name(best));
    return tu_finish("test_qlinear");
}
