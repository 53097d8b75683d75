/* test_optim.c: the optimizer around the AdamW kernel, and determinism of a whole training step.
 *   - weight decay reaches matrices only with decay_all = 0, every tensor with decay_all = 1;
 *   - global-norm clipping is AdamW on the gradients scaled by max_norm / (norm + 1e-6), reports
 *     the norm before clipping, and leaves the gradients unchanged;
 *   - a NaN gradient stops the step (ERR_STAGE) before any parameter changes;
 *   - the schedule's learning rate is the one used at each step;
 *   - two training steps give bitwise the same parameters on 1 thread and on the machine's thread
 *     count (products are split by output blocks, never along the reduction; attention items and
 *     every reduction have a fixed order). */
#include "engine_testmodel.h"
#include "eval_testmodel.h"
#include "kernels/threads.h"
#include "model/model_internal.h"
#include "model/optim.h"

static void test_decay_and_clip(void) {
    model_config cfg = tm_config(0);
    model m;
    if (model_init(&m, &cfg, NULL) || model_reserve_train(&m, 16)) exit(1);
    tm_randomize(&m, 3);
    float *w0 = tu_copy(m.w.mem, m.w.n_floats);
    for (int all = 0; all <= 1; all++) {
        memcpy(m.w.mem, w0, m.w.n_floats * sizeof(float));
        optim_config oc = {.beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8, .weight_decay = 0.5, .decay_all = all,
                           .schedule = {.kind = LR_CONSTANT, .lr = 0.1}};
        optimizer o;
        tu_expect(optim_init(&o, &m, &oc) == 0, "optim_init: %s", err_msg());
        model_zero_grad(&m); /* zero gradients: AdamW moves nothing, only the decay acts */
        tu_expect(optim_step(&o, &m) == 0, "step: %s", err_msg());
        weights_tensor t[64];
        int nt = weights_tensors(&m.w, &cfg, t, 64), ok = 1;
        for (int i = 0; i < nt; i++) {
            size_t cnt = (size_t)t[i].shape[0] * (t[i].ndim == 2 ? (size_t)t[i].shape[1] : 1);
            const float *before = w0 + (t[i].data - m.w.mem);
            const int decays = all || t[i].ndim == 2;
            for (size_t j = 0; j < cnt; j++) {
                float want = decays ? before[j] * (float)(1.0 - 0.1 * 0.5) : before[j];
                ok &= t[i].data[j] == want;
            }
            if (!ok) {
                tu_expect(0, "decay_all=%d: tensor %s decayed wrongly", all, t[i].name);
                break;
            }
        }
        tu_expect(ok, "decay_all=%d: matrices shrink by 1 - lr*wd, %s", all, all ? "and so do norms and biases" : "norms and biases stay");
        optim_free(&o);
    }
    /* clipping: the step equals an unclipped step on gradients scaled (in fp32) by
     * clip / (norm + 1e-6), as torch's clip_grad_norm_ then AdamW; the gradients stay as they were */
    optim_config oc = {.beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8, .clip = 0.5, .schedule = {.kind = LR_CONSTANT, .lr = 1e-2}};
    optimizer o, o2;
    tu_expect(optim_init(&o, &m, &oc) == 0, "optim_init");
    for (size_t i = 0; i < m.grad.n_floats; i++) m.grad.mem[i] = (float)tu_normal();
    float *g0 = tu_copy(m.grad.mem, m.grad.n_floats), *p0 = tu_copy(m.w.mem, m.w.n_floats);
    double before = sqrt(sum_squares(m.grad.mem, m.grad.n_floats));
    tu_expect(optim_step(&o, &m) == 0, "step");
    tu_expect(fabs(o.last_grad_norm - before) <= 1e-12 * before, "the reported norm is the norm before clipping");
    tu_expect(!memcmp(g0, m.grad.mem, m.grad.n_floats * sizeof(float)), "the gradients are left unchanged");
    float *p_clip = tu_copy(m.w.mem, m.w.n_floats);
    memcpy(m.w.mem, p0, m.w.n_floats * sizeof(float));
    const float coef = (float)(0.5 / (before + 1e-6));
    for (size_t i = 0; i < m.grad.n_floats; i++) m.grad.mem[i] = g0[i] * coef;
    optim_config oc2 = oc;
    oc2.clip = 0;
    tu_expect(optim_init(&o2, &m, &oc2) == 0 && optim_step(&o2, &m) == 0, "unclipped step");
    tu_expect(!memcmp(p_clip, m.w.mem, m.w.n_floats * sizeof(float)) &&
                  !memcmp(o.m.mem, o2.m.mem, m.w.n_floats * sizeof(float)),
              "a clipped step equals a step on gradients scaled by clip / (norm + 1e-6)");
    optim_free(&o2);
    free(g0), free(p0), free(p_clip);
    /* NaN guard */
    float *w1 = tu_copy(m.w.mem, m.w.n_floats);
    m.grad.mem[7] = NAN;
    long step = o.step;
    tu_expect(optim_step(&o, &m) != 0 && err_kind_get() == ERR_STAGE && strstr(err_msg(), "NaN"),
              "a NaN gradient stops the step with ERR_STAGE: %s", err_msg());
    tu_expect(!memcmp(w1, m.w.mem, m.w.n_floats * sizeof(float)) && o.step == step,
              "parameters and the step count are unchanged after a refused step");
    optim_free(&o);
    /* schedule */
    optim_config os = {.beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8,
                       .schedule = {.kind = LR_COSINE, .lr = 1e-3, .warmup = 2, .total = 6}};
    tu_expect(optim_init(&o, &m, &os) == 0, "optim_init");
    int sched_ok = 1;
    for (long s = 0; s < 8; s++) {
        model_zero_grad(&m);
        sched_ok &= optim_step(&o, &m) == 0 && o.last_lr == lr_schedule_at(&os.schedule, s);
    }
    tu_expect(sched_ok, "each step uses the schedule's learning rate for that step");
    optim_free(&o);
    free(w0), free(w1);
    model_free(&m);
}

/* Parameters after two training steps on `threads` threads. */
static float *train_two_steps(int threads, size_t *n) {
    kernels_set_threads(threads);
    model_config c = tm_config(2);
    c.hidden = 128, c.head_dim = 32, c.intermediate = 384, c.vocab = 512;
    for (int l = 0; l < c.n_layers; l++) c.layers[l] = (layer_config){4, 2, 384};
    c.n_kv_heads = 2;
    model m;
    if (model_init(&m, &c, NULL) || model_reserve_train(&m, 200)) exit(1);
    tm_randomize(&m, 11);
    int tok[200], lens[3] = {100, 37, 63}, targets[200];
    tu_seed(5);
    for (int i = 0; i < 200; i++) tok[i] = (int)(tu_next() % c.vocab);
    model_batch b = {.tokens = tok, .seq_lens = lens, .n_tokens = 200, .n_seqs = 3};
    int cnt = model_batch_targets(&b, targets);
    float w[200], *dh = tu_alloc(200 * (size_t)c.hidden);
    for (int i = 0; i < 200; i++) w[i] = 1.0f / cnt;
    lm_ce_ctx ce = {.targets = targets, .weights = w};
    optim_config oc = {.beta1 = 0.9, .beta2 = 0.95, .eps = 1e-8, .weight_decay = 0.1, .clip = 1.0,
                       .schedule = {.kind = LR_CONSTANT, .lr = 1e-2}};
    optimizer o;
    if (optim_init(&o, &m, &oc)) exit(1);
    for (int s = 0; s < 2; s++) {
        const float *hid;
        double loss;
        model_zero_grad(&m);
        if (model_forward(&m, &b, &hid) || model_lm_loss(&m, hid, dh, 200, lm_loss_ce, &ce, &loss) ||
            model_backward(&m, dh) || optim_step(&o, &m))
            printf("FAIL step: %s\n", err_msg()), exit(1);
    }
    float *p = tu_copy(m.w.mem, m.w.n_floats);
    *n = m.w.n_floats;
    optim_free(&o);
    model_free(&m);
    free(dh);
    return p;
}

static void test_thread_independence(void) {
    int t = kernels_set_threads(0);
    if (t < 2) t = 2; /* on one core this still runs two OpenMP threads */
    size_t n1, n2, n3;
    float *a = train_two_steps(1, &n1), *b = train_two_steps(t, &n2);
    tu_expect(n1 == n2 && !memcmp(a, b, n1 * sizeof(float)),
              "two training steps on 1 and %d threads give bitwise equal parameters", t);
    /* kernels choose their threads by work size, so a model this small runs many on one thread:
     * once more with every kernel split whatever its size */
    kernels_split_always(1);
    float *c3 = train_two_steps(t, &n3);
    kernels_split_always(0);
    tu_expect(n1 == n3 && !memcmp(a, c3, n1 * sizeof(float)),
              "two training steps on 1 and %d threads (every kernel split) give bitwise equal parameters", t);
    free(a), free(b), free(c3);
    kernels_set_threads(0);
}

/* kernels_call_begin: a call below THR_CALL_MACS caps every kernel at one thread, a larger one
 * does not, the cap is restored after the call and nests; kernels_split_always overrides it (the
 * tests' forced splits). model_call_macs counts the products a forward makes. */
static void test_call_cap(void) {
    kernels_set_threads(2);
    const double big = 64.0 * THR_GEMM_MACS; /* a matmul that splits in two */
    tu_expect(kernels_threads_for(big, THR_GEMM_MACS) == 2, "2 threads for a large kernel");
    int cap = kernels_call_begin(THR_CALL_MACS / 2);
    tu_expect(kernels_threads_for(big, THR_GEMM_MACS) == 1, "a small call runs its kernels on one thread");
    const int inner = kernels_call_begin(THR_CALL_MACS * 2); /* a large call inside keeps the cap */
    tu_expect(kernels_threads_for(big, THR_GEMM_MACS) == 1, "the cap holds inside a nested call");
    kernels_cap_threads(inner);
    kernels_cap_threads(cap);
    tu_expect(kernels_threads_for(big, THR_GEMM_MACS) == 2, "the cap is lifted after the call");
    cap = kernels_call_begin(THR_CALL_MACS * 2);
    tu_expect(kernels_threads_for(big, THR_GEMM_MACS) == 2, "a large call keeps its threads");
    kernels_cap_threads(cap);
    kernels_split_always(1);
    cap = kernels_call_begin(1);
    tu_expect(kernels_threads_for(1, THR_GEMM_MACS) == 2, "forced splits ignore the call's size");
    kernels_cap_threads(cap);
    kernels_split_always(0);
    /* one layer of hidden 8, 2 heads of 4 (1 kv head), MLP 16, vocab 32: per token 8*(8+8)=128 (q|k|v)
     * + 64 (o) + 3*16*8=384 (MLP) = 576; attention 2 * 8 per pair; the head 32*8 per row */
    model_config c = em_config(8, 1, 2, 1, 16, 32);
    model m;
    if (em_random_model(&m, &c, 1)) exit(1);
    const double got = model_call_macs(&m, 10, 55, 3), want = 10 * 576.0 + 55 * 16.0 + 3 * 256.0;
    tu_expect(got == want, "model_call_macs %.0f, expected %.0f", got, want);
    model_free(&m);
    kernels_set_threads(0);
}

int main(void) {
    kernels_set_threads(0);
    test_call_cap();
    test_decay_and_clip();
    test_thread_independence();
    return tu_finish("test_optim");
}
