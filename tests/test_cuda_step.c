/* test_cuda_step.c: a whole training step and a whole prefill of the GPU decoder (bench/cuda_llama,
 * composed from kernels/cuda) against the CPU engine (model/) on the same weights and tokens: the
 * loss, every parameter's gradient, the loss after an AdamW step, and the logits of a prefill and
 * of decode steps over the KV cache.
 *
 * Tolerance from the run itself (a first-order model of bf16 noise, not a worst case, which would
 * be too loose to catch a wrong composition): the GPU rounds both operands of every product to bf16
 * (6 products per layer on the chain to a logit: q|k|v, Q K^T, P V, o, gate|up, down; and the LM
 * head: 6 L + 1), the CPU runs in fp32. The CPU engine with only its WEIGHTS rounded to bf16 (one
 * operand of the 4 L + 1 linear products) measures this model's response to such rounding: its
 * change `noise` in the loss, the logits and each gradient tensor. Independent roundings add in
 * quadrature, so the GPU's difference is expected near sqrt(2 (6 L + 1) / (4 L + 1)) x noise; the
 * bound is 2 x that (a maximum over many elements against another). A composition error (a wrong
 * position, head, mask, residual or gradient path) moves these by far more than bf16 noise. The
 * GPU must also differ from fp32 (bf16 really ran).
 *
 * Built twice like test_cuda_ops: on the host emulation (always) and on a GPU (SMELT_CUDA=ON; skips
 * with 77 without a device, fails with SMELT_REQUIRE_GPU=1). */
#include "bench/cuda_llama.h"
#include "cuda_twin.h"
#include "engine_testmodel.h"

static model_config step_config(int tied) {
    model_config c = tm_config(1);
    c.hidden = 64, c.n_layers = 1, c.n_heads = 4, c.n_kv_heads = 2, c.head_dim = 32, c.intermediate = 96, c.vocab = 97;
    c.tie_embeddings = tied, c.max_pos = 512;
    for (int l = 0; l < c.n_layers; l++) c.layers[l] = (layer_config){4, 2, 96};
    return c;
}

/* One CPU step: loss, logits of every position, gradients (into m->grad). */
static double cpu_step(model *m, const model_batch *b, lm_ce_ctx *ce, float *logits, float *dh) {
    const float *hid;
    double loss = 0;
    model_zero_grad(m);
    tu_expect(model_forward(m, b, &hid) == 0 && model_logits(m, logits, hid, b->n_tokens) == 0 &&
                  model_lm_loss(m, hid, dh, b->n_tokens, lm_loss_ce, ce, &loss) == 0 && model_backward(m, dh) == 0,
              "CPU step: %s", err_msg());
    return loss;
}

/* logits of a 40-token prefill and 3 decode steps, [4, vocab] */
static void cpu_infer(model *m, const int *tok, float *out) {
    kv_cache kv;
    tu_expect(kv_cache_init(&kv, &m->cfg, 64) == 0, "kv cache");
    for (int s = 0; s < 4; s++)
        tu_expect(model_extend(m, &kv, tok + (s ? 39 + s : 0), s ? 1 : 40, NULL, 1, out + (size_t)s * m->cfg.vocab) == 0,
                  "extend: %s", err_msg());
    kv_cache_free(&kv);
}

static double max_diff(const float *a, const float *b, size_t n) {
    double m = 0;
    for (size_t i = 0; i < n; i++) m = fmax(m, fabs((double)a[i] - b[i]));
    return m;
}

static void run(int tied, cu_ctx *cx) {
    const model_config c = step_config(tied);
    const double K = 2 * sqrt(2.0 * (6 * c.n_layers + 1) / (4 * c.n_layers + 1));
    model m, mr; /* fp32, and the same weights rounded to bf16 */
    if (model_init(&m, &c, NULL) || model_reserve_train(&m, 200) || model_init(&mr, &c, NULL) ||
        model_reserve_train(&mr, 200)) {
        fprintf(stderr, "model: %s\n", err_msg());
        exit(1);
    }
    tm_randomize(&m, 77 + tied);
    const size_t np = weights_count(&c);
    for (size_t i = 0; i < np; i++) {
        uint32_t x;
        memcpy(&x, &m.w.mem[i], 4);
        x = (x + 0x7fffu + ((x >> 16) & 1u)) & 0xffff0000u; /* to nearest even bf16 */
        memcpy(&mr.w.mem[i], &x, 4);
    }
    enum { N = 130 };
    int tok[N], lens[3] = {70, 45, 15}, targets[N];
    float w[N];
    for (int i = 0; i < N; i++) tok[i] = (int)(tu_next() % c.vocab);
    const model_batch b = {.tokens = tok, .seq_lens = lens, .n_tokens = N, .n_seqs = 3};
    const int nt = model_batch_targets(&b, targets);
    for (int i = 0; i < N; i++) w[i] = 1.0f / nt;
    lm_ce_ctx ce = {.targets = targets, .weights = w};
    const size_t nl = (size_t)N * c.vocab;
    float *dh = tu_alloc((size_t)N * c.hidden), *lg = tu_alloc(nl), *lgr = tu_alloc(nl), *g = tu_alloc(np);
    float *ic = tu_alloc(4 * (size_t)c.vocab), *icr = tu_alloc(4 * (size_t)c.vocab), *ig = tu_alloc(4 * (size_t)c.vocab);

    cuda_llama L;
    if (cl_init(&L, cx, &c, m.w.mem, 0, N, 4, 64, 16)) {
        fprintf(stderr, "cl_init: %s\n", err_msg());
        exit(1);
    }
    /* the noise: the CPU with bf16 weights against fp32 */
    const double loss = cpu_step(&m, &b, &ce, lg, dh), loss_r = cpu_step(&mr, &b, &ce, lgr, dh);
    const double n_loss = fabs(loss_r - loss);
    cpu_infer(&m, tok, ic), cpu_infer(&mr, tok, icr);
    const double n_inf = max_diff(ic, icr, 4 * (size_t)c.vocab);

    /* GPU: the step, then inference (on the same initial weights) */
    double loss_g = 0, gnorm = NAN;
    tu_expect(cl_forward_backward(&L, &b, targets, w) == 0 && cl_loss(&L, &loss_g, NULL) == 0, "GPU step: %s", err_msg());
    const double dl = fabs(loss_g - loss);
    printf("tied=%d loss: CPU %.6f GPU %.6f |diff| %.3g; bf16-weight noise %.3g: ratio %.2f (bound %.2f)\n", tied, loss,
           loss_g, dl, n_loss, dl / n_loss, K);
    tu_expect(dl <= K * n_loss && dl > 0, "loss: |diff| %.3g, bound %.3g x noise %.3g (and nonzero)", dl, K, n_loss);

    tu_expect(cl_download(&L, g, L.g.mem, np) == 0, "download: %s", err_msg());
    weights_tensor t[64], tr[64];
    const int n_t = weights_tensors(&m.grad, &c, t, 64);
    weights_tensors(&mr.grad, &c, tr, 64);
    double worst = 0;
    for (int i = 0; i < n_t; i++) {
        const size_t off = (size_t)(t[i].data - m.grad.mem), n = (size_t)t[i].shape[0] * (t[i].ndim == 2 ? (size_t)t[i].shape[1] : 1);
        const double d = max_diff(g + off, t[i].data, n), noise = max_diff(tr[i].data, t[i].data, n), r = d / (K * noise);
        worst = fmax(worst, r);
        if (!(r <= 1)) printf("  %s: max|diff| %.3g, noise %.3g, ratio %.2f of the bound\n", t[i].name, d, noise, r);
    }
    printf("tied=%d gradients (%d tensors): worst |diff| / bound %.3f\n", tied, n_t, worst);
    tu_expect(worst <= 1, "gradients: worst ratio %.3f", worst);

    for (int s = 0; s < 4; s++)
        tu_expect(cl_extend(&L, tok + (s ? 39 + s : 0), s ? 1 : 40, ig + (size_t)s * c.vocab) == 0, "GPU extend: %s", err_msg());
    const double di = max_diff(ig, ic, 4 * (size_t)c.vocab);
    printf("tied=%d prefill 40 + decode 3 logits: max|diff| %.3g; noise %.3g: ratio %.2f (bound %.2f)\n", tied, di, n_inf,
           di / n_inf, K);
    tu_expect(di <= K * n_inf && di > 0, "prefill/decode logits: %.3g, bound %.3g", di, K * n_inf);

    /* one AdamW step on each side (clipping active): the norms agree as the gradients do, and the
     * loss of the same batch drops on both, by amounts within the noise bound of each other */
    optim_config oc = {.beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8, .weight_decay = 0.1, .clip = 0.5, .decay_all = 0,
                       .schedule = {.kind = LR_CONSTANT, .lr = 2e-3}};
    optimizer o;
    tu_expect(optim_init(&o, &m, &oc) == 0 && optim_step(&o, &m) == 0, "CPU optimizer: %s", err_msg());
    tu_expect(cl_optim_step(&L, &oc, 0) == 0 && cl_loss(&L, NULL, &gnorm) == 0, "GPU optimizer: %s", err_msg());
    printf("tied=%d gradient norm: CPU %.6f GPU %.6f\n", tied, o.last_grad_norm, gnorm);
    double l2g = 0;
    const double l2c = cpu_step(&m, &b, &ce, lg, dh);
    tu_expect(cl_forward_backward(&L, &b, targets, w) == 0 && cl_loss(&L, &l2g, NULL) == 0, "GPU step 2: %s", err_msg());
    printf("tied=%d after AdamW: CPU %.6f (drop %.4f) GPU %.6f (drop %.4f)\n", tied, l2c, loss - l2c, l2g, loss_g - l2g);
    tu_expect(l2c < loss && l2g < loss_g && fabs((loss_g - l2g) - (loss - l2c)) <= 0.05 * (loss - l2c),
              "the drop of the loss after one step: GPU %.5f, CPU %.5f (within 5%%)", loss_g - l2g, loss - l2c);
    optim_free(&o);
    cl_free(&L);
    model_free(&m), model_free(&mr);
    free(dh), free(lg), free(lgr), free(g), free(ic), free(icr), free(ig);
}

int main(void) {
    if (cu_device_count() < 1) return tw_no_device();
    cu_ctx *cx;
    if (cu_open(&cx, 0, (size_t)64 << 20)) {
        fprintf(stderr, "cu_open: %s\n", err_msg());
        return 1;
    }
    printf("device: %s\n", cu_describe(cx));
    for (int tied = 0; tied < 2; tied++) run(tied, cx);
    cu_close(cx);
    return tu_failures ? 1 : 0;
}
