/* test_lm_loss.c: the chunked LM head and its loss callbacks.
 *   - chunks of 4 rows give the loss and gradients of one chunk (the head gradient sums chunk by
 *     chunk: within 4 N eps of the one-chunk result, N = 15 positions);
 *   - model_forward_hidden (no gradients, no stored activations) gives bitwise the hidden states of
 *     model_forward;
 *   - a distillation loss written as a callback (forward KL against a teacher of another
 *     architecture, whose logits the callback computes per chunk with model_logits) has the
 *     gradient of finite differences, checked as in test_model_grad (step 2^-6 on weights that are
 *     multiples of 2^-16: |fd - g| <= 1.5 * 2 eps L / h + 4e-4 |g|). */
#include "engine_testmodel.h"
#include "kernels/threads.h"

enum { N = 15 };
static const int lens[3] = {5, 3, 7};

typedef struct {
    model *teacher;
    const float *t_hidden; /* [N, teacher hidden] */
    const float *w;        /* [N] */
    float *t_logits;       /* [N, vocab] scratch */
} fkl_ctx;

/* sum_i w_i KL(p_i || q_i), p = softmax(teacher logits), q = softmax(student logits); d/dz = w (q - p) */
static int loss_fkl(void *ctx, const lm_chunk *c, double *loss) {
    fkl_ctx *x = ctx;
    const int V = c->vocab, Ht = x->teacher->cfg.hidden;
    if (model_logits(x->teacher, x->t_logits, x->t_hidden + (size_t)c->row0 * Ht, c->n_rows)) return -1;
    for (int i = 0; i < c->n_rows; i++) {
        const float *z = c->logits + (size_t)i * V, *t = x->t_logits + (size_t)i * V;
        double mz = -INFINITY, mt = -INFINITY, sz = 0, st = 0, kl = 0;
        for (int j = 0; j < V; j++) mz = fmax(mz, z[j]), mt = fmax(mt, t[j]);
        for (int j = 0; j < V; j++) sz += exp(z[j] - mz), st += exp(t[j] - mt);
        const double w = x->w[c->row0 + i];
        for (int j = 0; j < V; j++) {
            double lp = t[j] - mt - log(st), lq = z[j] - mz - log(sz), p = exp(lp), q = exp(lq);
            kl += p * (lp - lq);
            if (c->dlogits) c->dlogits[(size_t)i * V + j] = (float)(w * (q - p));
        }
        *loss += w * kl;
    }
    return 0;
}

static double student_loss(model *s, const model_batch *b, fkl_ctx *x, float *dh) {
    const float *hid;
    double loss = 0;
    if (model_forward(s, b, &hid) || model_lm_loss(s, hid, dh, N, loss_fkl, x, &loss))
        printf("FAIL %s\n", err_msg()), exit(1);
    return loss;
}

int main(void) {
    kernels_set_threads(0);
    model_config sc = tm_config(0), tc = tm_config(2);
    model st, te;
    if (model_init(&st, &sc, NULL) || model_reserve_train(&st, N) || model_init(&te, &tc, NULL)) exit(1);
    tm_randomize(&st, 21);
    tm_randomize(&te, 22);
    int tok[N], targets[N];
    float w[N];
    for (int i = 0; i < N; i++) tok[i] = (int)(tu_next() % sc.vocab), w[i] = (float)((0.5 + tu_uniform()) / N);
    model_batch b = {.tokens = tok, .seq_lens = lens, .n_tokens = N, .n_seqs = 3};
    model_batch_targets(&b, targets);

    /* forward_hidden == forward */
    float *h1 = tu_alloc((size_t)N * sc.hidden), dh[N * 24], dh4[N * 24];
    const float *h0;
    tu_expect(model_forward(&st, &b, &h0) == 0 && model_forward_hidden(&st, &b, h1) == 0, "forwards: %s", err_msg());
    tu_expect(!memcmp(h0, h1, sizeof(float) * N * sc.hidden), "model_forward_hidden equals model_forward's hidden");

    /* chunks of 4 rows vs one chunk (cross-entropy) */
    lm_ce_ctx ce = {.targets = targets, .weights = w};
    double l1, l4;
    model_zero_grad(&st);
    tu_expect(model_lm_loss(&st, h0, dh, N, lm_loss_ce, &ce, &l1) == 0, "lm_loss");
    float *g1 = tu_copy(st.grad.lm_head, (size_t)sc.vocab * sc.hidden);
    model_zero_grad(&st);
    st.lm_chunk_rows = 4;
    tu_expect(model_lm_loss(&st, h0, dh4, N, lm_loss_ce, &ce, &l4) == 0, "lm_loss in chunks");
    tu_expect(fabs(l1 - l4) <= 4 * TU_EPS * l1, "loss in 4 chunks %.9f vs one chunk %.9f", l4, l1);
    tu_expect_close("d hidden in chunks of 4 rows vs one chunk (rows are independent: tol 0)", dh4, dh, N * 24, 0);
    tu_expect_close("d lm_head in chunks of 4 rows vs one chunk (tol 4 N eps)", st.grad.lm_head, g1,
                    (size_t)sc.vocab * sc.hidden, 4 * N * TU_EPS);

    /* distillation: forward KL against the teacher, gradients vs finite differences */
    float *th = tu_alloc((size_t)N * tc.hidden), *tl = tu_alloc((size_t)N * tc.vocab);
    tu_expect(model_forward_hidden(&te, &b, th) == 0, "teacher forward: %s", err_msg());
    fkl_ctx x = {.teacher = &te, .t_hidden = th, .w = w, .t_logits = tl};
    model_zero_grad(&st);
    double loss = student_loss(&st, &b, &x, dh);
    tu_expect(model_backward(&st, dh) == 0, "backward: %s", err_msg());
    weights_tensor tw[64], tg[64];
    int nt = weights_tensors(&st.w, &sc, tw, 64);
    weights_tensors(&st.grad, &sc, tg, 64);
    const double h = 1.0 / 64, noise = 1.5 * 2 * TU_EPS * loss / h;
    int bad = 0, checked = 0;
    for (int t = 0; t < nt; t += 3) { /* every third tensor, 3 entries each */
        size_t cnt = (size_t)tw[t].shape[0] * (tw[t].ndim == 2 ? (size_t)tw[t].shape[1] : 1);
        for (int e = 0; e < 3; e++) {
            size_t j = (size_t)(tu_next() % cnt);
            float *p = &tw[t].data[j], p0 = *p;
            double L[4];
            static const int ks[4] = {2, 1, -1, -2};
            for (int k = 0; k < 4; k++) {
                *p = (float)(p0 + ks[k] * h);
                L[k] = student_loss(&st, &b, &x, NULL);
            }
            *p = p0;
            double fd = (-L[0] + 8 * L[1] - 8 * L[2] + L[3]) / (12 * h), g = tg[t].data[j];
            checked++;
            if (!(fabs(fd - g) <= noise + 4e-4 * fabs(g))) {
                bad++;
                printf("FAIL forward-KL gradient of %s[%zu]: %.8e vs finite difference %.8e\n", tw[t].name, j, g, fd);
            }
        }
    }
    tu_expect(!bad, "forward-KL distillation through the callback: %d of %d entries off", bad, checked);
    free(h1), free(g1), free(th), free(tl);
    model_free(&st);
    model_free(&te);
    return tu_finish("test_lm_loss");
}
