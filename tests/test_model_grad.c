/* test_model_grad.c: the gradient of every parameter tensor of the whole model (embedding, both
 * norms, q/k/v weights and biases, o, gate, up, down, final norm, untied LM head, and a tied model)
 * against finite differences of the fp32 model's loss, differenced in float64.
 *
 * Step and tolerance: weights are multiples of 2^-16 and the step is h = 2^-6, so theta +- h and
 * theta +- 2h are exact in fp32 and the stencil uses the true steps. The fourth-order central
 * difference (-L(+2h) + 8 L(+h) - 8 L(-h) + L(-2h)) / 12h has
 *   - a noise error of at most 18 delta / 12h = 1.5 delta / h, delta being the fp32 rounding noise
 *     of one loss evaluation. Positions add up in double; each position's loss lse - z_t comes out
 *     of fp32 dot products and norms whose relative rounding is a few eps, so delta <= 2 eps L;
 *   - a truncation error h^4/30 |5th derivative|, which on these random models stays below
 *     1e-4 |grad| (halving h divides the largest differences by 16: the signature of truncation),
 *     bounded here by 4e-4 |grad|.
 * So each entry must satisfy |fd - grad| <= 1.5 * 2 eps L / h + 4e-4 |grad|. A wrong gradient
 * (a missing term, a transposed product) is off by O(|grad|), far outside. */
#include "engine_testmodel.h"
#include "kernels/threads.h"

#define FD_STEP (1.0 / 64)
#define FD_SAMPLES 6 /* entries checked per tensor (all of them when fewer) */

static double eval_loss(model *m, const model_batch *b, lm_ce_ctx *ce) {
    const float *hid;
    double loss = 0;
    if (model_forward(m, b, &hid) || model_lm_loss(m, hid, NULL, b->n_tokens, lm_loss_ce, ce, &loss)) {
        printf("FAIL forward: %s\n", err_msg());
        exit(1);
    }
    return loss;
}

static void check_model(int kind) {
    model_config cfg = tm_config(kind);
    model m;
    if (model_init(&m, &cfg, NULL) || model_reserve_train(&m, 64)) {
        printf("FAIL init: %s\n", err_msg());
        exit(1);
    }
    tm_randomize(&m, 100 + kind);
    static const int lens[] = {5, 3, 7};
    int tokens[15], targets[15];
    float weights[15];
    for (int i = 0; i < 15; i++) tokens[i] = (int)(tu_next() % cfg.vocab);
    model_batch b = {.tokens = tokens, .seq_lens = lens, .n_tokens = 15, .n_seqs = 3};
    int n_t = model_batch_targets(&b, targets);
    for (int i = 0; i < 15; i++) weights[i] = (float)((0.5 + tu_uniform()) / n_t); /* uneven weights */
    lm_ce_ctx ce = {.targets = targets, .weights = weights};

    /* analytic gradients */
    model_zero_grad(&m);
    const float *hid;
    float dh[15 * 24];
    double loss;
    tu_expect(model_forward(&m, &b, &hid) == 0, "forward: %s", err_msg());
    tu_expect(model_lm_loss(&m, hid, dh, 15, lm_loss_ce, &ce, &loss) == 0, "lm_loss: %s", err_msg());
    tu_expect(model_backward(&m, dh) == 0, "backward: %s", err_msg());
    const double l_abs = loss; /* cross-entropy terms are all positive: |L| is their sum */

    weights_tensor tw[64], tg[64];
    int nt = weights_tensors(&m.w, &cfg, tw, 64), ng = weights_tensors(&m.grad, &cfg, tg, 64);
    tu_expect(nt == ng && nt <= 64, "tensor lists differ (%d vs %d)", nt, ng);
    const double h = FD_STEP, noise = 1.5 * 2 * TU_EPS * l_abs / h;
    printf("model kind %d: %d tensors, loss %.6f, step %g, noise bound %.2e\n", kind, nt, loss, h, noise);
    int kinds_seen = 0;
    for (int t = 0; t < nt; t++) {
        size_t cnt = (size_t)tw[t].shape[0] * (tw[t].ndim == 2 ? (size_t)tw[t].shape[1] : 1);
        int ns = cnt <= FD_SAMPLES ? (int)cnt : FD_SAMPLES;
        double worst = 0, worst_g = 0, worst_fd = 0;
        int bad = 0;
        for (int s = 0; s < ns; s++) {
            size_t j = cnt <= FD_SAMPLES ? (size_t)s : (size_t)(tu_next() % cnt);
            float *p = &tw[t].data[j];
            const float p0 = *p;
            double L[4];
            static const int ks[4] = {2, 1, -1, -2};
            for (int k = 0; k < 4; k++) {
                *p = (float)(p0 + ks[k] * h); /* exact: p0 is a multiple of 2^-16 below 2^7 */
                L[k] = eval_loss(&m, &b, &ce);
            }
            *p = p0;
            double fd = (-L[0] + 8 * L[1] - 8 * L[2] + L[3]) / (12 * h), g = tg[t].data[j];
            double tol = noise + 4e-4 * fabs(g), r = fabs(fd - g) / tol;
            if (!(r <= 1)) bad++;
            if (r > worst) worst = r, worst_g = g, worst_fd = fd;
        }
        tu_checks++;
        if (bad) tu_failures++;
        if (bad || tu_verbose)
            printf("%s %-44s %d/%d entries, worst |fd-g|/tol %.3f (g %.6e fd %.6e)\n", bad ? "FAIL" : "ok  ",
                   tw[t].name, ns - bad, ns, worst, worst_g, worst_fd);
        kinds_seen++;
    }
    tu_expect(kinds_seen == nt, "every tensor checked");
    /* accumulation: a second forward/backward adds the same gradient again */
    float *g1 = tu_copy(m.grad.mem, m.grad.n_floats);
    tu_expect(model_forward(&m, &b, &hid) == 0 && model_lm_loss(&m, hid, dh, 15, lm_loss_ce, &ce, &loss) == 0 &&
                  model_backward(&m, dh) == 0,
              "second pass: %s", err_msg());
    for (size_t i = 0; i < m.grad.n_floats; i++) g1[i] *= 2;
    tu_expect_close("gradients accumulate (+=) over two backward passes (tol 2 eps)", m.grad.mem, g1,
                    m.grad.n_floats, 2 * TU_EPS);
    tu_expect(model_backward(&m, dh) != 0, "a second backward of one forward must be refused");
    free(g1);
    model_free(&m);
}

int main(int argc, char **argv) {
    tu_verbose = argc > 1 && !strcmp(argv[1], "-v");
    kernels_set_threads(0);
    for (int kind = 0; kind < 3; kind++) check_model(kind);
    return tu_finish("test_model_grad");
}
