/* test_ops_table.c: the op table (kernels/ops.h). The CPU backend's entries give bitwise what the
 * kernels give when called directly (argument order, strides, aliasing through the table), and the
 * CUDA backend's entries (its host emulation in test_ops_table, a GPU in test_ops_table_gpu) run the
 * same calls in device memory and agree with the CPU's: fp32 linears within twice the fp32 GEMM
 * bound (both sides' sums: 2 (k+3) EPS32 sum |x w|, normalized by max |y| as (k+3) 2^-22 x 4 for
 * these inputs of |x w| sums within 4 |y|... taken per element below), RMSNorm within 2 (d + 6) EPS32,
 * the embedding and AdamW bitwise, the sum of squares within 2 (n+2) 2^-52, attention (bf16 tensor
 * cores on CUDA) within 8 u_bf16 of max |out| (q and k rounded: 2u of scaled scores below 4 here;
 * v and P rounded: 2u more). The numerics of every CUDA op are test_cuda's; this test checks the
 * table: that each entry reaches the right kernel with the right arguments. The linears run twice:
 * fp32, and with bf16_compute (bf16-rounded operands, fp32 sums: the fp32 bound holds between the
 * backends, and both must differ from the fp32 products). */
#include "cuda_twin.h"
#include "engine_testutil.h"
#include "kernels/embedding.h"
#include "kernels/ops.h"
#include "kernels/rmsnorm.h"
#include "kernels/rope.h"
#include "kernels/softmax.h"
#include "kernels/swiglu.h"

TW_GLOBALS;

enum { N = 40, H = 48, O = 72, V = 60, NH = 2, NKV = 1, HD = 32, W = (NH + 2 * NKV) * HD };

/* Inputs of every call, on the host. */
typedef struct {
    float x[N * H], w[O * H], b[O], dy[N * O], g[H], xo[N * O];
    float qkv[N * W], dout[N * NH * HD], table[V * H], logits[N * V];
    float p[500], m[500], v[500], grad[500];
    int tokens[N], targets[N], pos[N];
    float cos_t[N * HD / 2], sin_t[N * HD / 2];
} inputs;

/* Outputs of the calls, on the host. */
typedef struct {
    float y[N * O], dx[N * H], dw[O * H], db[O], yb[N * O], dxb[N * H], dwb[O * H]; /* b: bf16 products */
    float xn[N * H], rstd[N], gx[N * H], gw[H];
    float rot[N * W], h[N * HD], att[N * NH * HD], lse[N * NH], emb[N * H];
    float losses[N], dlogits[N * V], p[500], m[500], v[500];
    double ss;
    float scale;
    int bad;
} outputs;

/* A buffer of o's memory holding a copy of src (kept in bufs for freeing). */
static void *put(const smelt_ops *o, void **bufs, int *nb, const void *src, size_t bytes) {
    void *p = NULL;
    if (o->alloc(o, &p, bytes, "test") || o->upload(o, p, src, bytes)) tw_die("table memory");
    return bufs[(*nb)++] = p;
}
static void get(const smelt_ops *o, void *dst, const void *src, size_t bytes) {
    if (o->download(o, dst, src, bytes)) tw_die("table download");
}

/* Every call through the table o: inputs uploaded into o's memory, outputs downloaded. */
static void run_table(const smelt_ops *o, const inputs *in, outputs *r) {
    void *bufs[48];
    int nb = 0;
#define PUT(src, bytes) put(o, bufs, &nb, (src), (bytes))
#define GET(dst, src, bytes) get(o, (dst), (src), (bytes))
    float *x = PUT(in->x, sizeof in->x), *w = PUT(in->w, sizeof in->w), *b = PUT(in->b, sizeof in->b);
    float *y = PUT(in->xo, sizeof in->xo), *dy = PUT(in->dy, sizeof in->dy), *dx = PUT(in->x, sizeof in->x);
    float *dw = PUT(in->w, sizeof in->w), *db = PUT(in->b, sizeof in->b), *g = PUT(in->g, sizeof in->g);
    const linear l = linear_f32(w, b, O, H);
    TW_TRY(o->linear_forward(o, y, O, x, H, &l, N, 1)); /* y = xo + x W^T + b */
    TW_TRY(o->linear_backward_input(o, dx, H, dy, O, &l, N, 0));
    TW_TRY(o->linear_backward_params(o, dw, db, dy, O, x, H, N, O, H, 0));
    GET(r->y, y, sizeof r->y), GET(r->dx, dx, sizeof r->dx), GET(r->dw, dw, sizeof r->dw), GET(r->db, db, sizeof r->db);
    linear lb = l; /* the same layer with bf16 products (mixed-precision training) */
    lb.bf16_compute = 1;
    float *yb = PUT(in->xo, sizeof in->xo), *dxb = PUT(in->x, sizeof in->x), *dwb = PUT(in->w, sizeof in->w);
    TW_TRY(o->linear_forward(o, yb, O, x, H, &lb, N, 1));
    TW_TRY(o->linear_backward_input(o, dxb, H, dy, O, &lb, N, 0));
    TW_TRY(o->linear_backward_params(o, dwb, NULL, dy, O, x, H, N, O, H, 1));
    GET(r->yb, yb, sizeof r->yb), GET(r->dxb, dxb, sizeof r->dxb), GET(r->dwb, dwb, sizeof r->dwb);

    float *xn = PUT(in->x, sizeof in->x), *rstd = PUT(in->x, sizeof(float) * N), *gx = PUT(in->x, sizeof in->x);
    float *gw = PUT(in->g, sizeof in->g);
    TW_TRY(o->rmsnorm_forward(o, xn, rstd, x, g, N, H, 1e-5f));
    TW_TRY(o->rmsnorm_backward(o, gx, gw, xn, x, g, rstd, N, H));
    GET(r->xn, xn, sizeof r->xn), GET(r->rstd, rstd, sizeof r->rstd), GET(r->gx, gx, sizeof r->gx);
    GET(r->gw, gw, sizeof r->gw);

    float *qkv = PUT(in->qkv, sizeof in->qkv), *ct = PUT(in->cos_t, sizeof in->cos_t), *st = PUT(in->sin_t, sizeof in->sin_t);
    int *pos = PUT(in->pos, sizeof in->pos), *tok = PUT(in->tokens, sizeof in->tokens), *tg = PUT(in->targets, sizeof in->targets);
    TW_TRY(o->rope_forward(o, qkv, W, pos, ct, st, N, NH + NKV, HD)); /* q and k heads, adjacent */
    float *h = PUT(in->dout, sizeof in->dout);
    TW_TRY(o->swiglu_forward(o, h, qkv + NH * HD, qkv + (NH + NKV) * HD, W, N, HD));
    GET(r->rot, qkv, sizeof r->rot), GET(r->h, h, sizeof r->h);

    const attn_seq hs[2] = {{0, 25, 0, 25}, {25, 15, 25, 15}};
    attn_seq *seqs = PUT(hs, sizeof hs);
    const attn_shape sh = {.n_heads = NH, .n_kv_heads = NKV, .head_dim = HD, .ldq = W, .ldk = W, .ldv = W, .ldo = NH * HD};
    smelt_attn_call call = {.seqs = seqs, .n_seqs = 2, .max_nq = 25, .max_nkv = 25, .n_rows = N};
    float *work = NULL;
    if (o->device == SMELT_DEV_CPU) {
        call.work_floats = attention_work_floats(&sh, 25);
        work = calloc(call.work_floats, sizeof(float));
        call.work = work;
    }
    float *att = PUT(in->dout, sizeof in->dout), *lse = PUT(in->x, sizeof(float) * N * NH);
    TW_TRY(o->attention_forward(o, att, lse, qkv, qkv + NH * HD, qkv + (NH + NKV) * HD, &sh, &call));
    GET(r->att, att, sizeof r->att), GET(r->lse, lse, sizeof r->lse);
    free(work);

    float *tab = PUT(in->table, sizeof in->table), *emb = PUT(in->x, sizeof in->x);
    TW_TRY(o->embedding_forward(o, emb, tab, tok, N, H));
    GET(r->emb, emb, sizeof r->emb);
    float *lg = PUT(in->logits, sizeof in->logits), *ls = PUT(in->x, sizeof(float) * N);
    TW_TRY(o->cross_entropy(o, ls, lg, lg, tg, NULL, N, V)); /* in place */
    GET(r->losses, ls, sizeof r->losses), GET(r->dlogits, lg, sizeof r->dlogits);

    float *p = PUT(in->p, sizeof in->p), *m = PUT(in->m, sizeof in->m), *v = PUT(in->v, sizeof in->v);
    float *gr = PUT(in->grad, sizeof in->grad), *sc = PUT(in->x, 4);
    double *ss = PUT(&r->ss, 8), *nrm = PUT(&r->ss, 8);
    int *bad = PUT(in->tokens, 4);
    adamw_hparams hp = {.lr = 1e-3, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8, .weight_decay = 0.1};
    TW_TRY(o->sum_squares(o, ss, gr, 500));
    TW_TRY(o->clip_factor(o, nrm, sc, bad, ss, 1.0));
    TW_TRY(o->adamw(o, p, m, v, gr, sc, bad, 500, &hp, 3, 1));
    GET(r->p, p, sizeof r->p), GET(r->m, m, sizeof r->m), GET(r->v, v, sizeof r->v), GET(&r->ss, ss, 8);
    GET(&r->scale, sc, 4), GET(&r->bad, bad, 4);
    for (int i = 0; i < nb; i++) o->free(o, bufs[i]);
#undef PUT
#undef GET
}

/* The same calls made directly on the CPU kernels (the bits the CPU table must give). */
static void run_direct(const inputs *in, outputs *r) {
    const linear l = linear_f32(in->w, in->b, O, H);
    memcpy(r->y, in->xo, sizeof r->y), memcpy(r->dw, in->w, sizeof r->dw), memcpy(r->db, in->b, sizeof r->db);
    TW_TRY(linear_forward(r->y, O, in->x, H, &l, N, 1));
    TW_TRY(linear_backward_input(r->dx, H, in->dy, O, &l, N, 0));
    TW_TRY(linear_backward_params(r->dw, r->db, in->dy, O, in->x, H, N, O, H, 0));
    linear lb = l;
    lb.bf16_compute = 1;
    memcpy(r->yb, in->xo, sizeof r->yb), memcpy(r->dwb, in->w, sizeof r->dwb);
    TW_TRY(linear_forward(r->yb, O, in->x, H, &lb, N, 1));
    TW_TRY(linear_backward_input(r->dxb, H, in->dy, O, &lb, N, 0));
    TW_TRY(linear_backward_params(r->dwb, NULL, in->dy, O, in->x, H, N, O, H, 1));
    memcpy(r->gx, in->x, sizeof r->gx), memcpy(r->gw, in->g, sizeof r->gw);
    rmsnorm_forward(r->xn, r->rstd, in->x, in->g, N, H, 1e-5f);
    rmsnorm_backward(r->gx, r->gw, r->xn, in->x, in->g, r->rstd, N, H);
    memcpy(r->rot, in->qkv, sizeof r->rot);
    rope_forward(r->rot, W, in->pos, in->cos_t, in->sin_t, N, NH + NKV, HD);
    swiglu_forward(r->h, r->rot + NH * HD, r->rot + (NH + NKV) * HD, W, N, HD);
    const attn_seq hs[2] = {{0, 25, 0, 25}, {25, 15, 25, 15}};
    const attn_shape sh = {.n_heads = NH, .n_kv_heads = NKV, .head_dim = HD, .ldq = W, .ldk = W, .ldv = W, .ldo = NH * HD};
    const size_t wf = attention_work_floats(&sh, 25);
    float *work = calloc(wf, sizeof(float));
    TW_TRY(attention_forward(r->att, r->lse, r->rot, r->rot + NH * HD, r->rot + (NH + NKV) * HD, &sh, hs, 2, work, wf));
    free(work);
    embedding_forward(r->emb, in->table, in->tokens, N, H);
    memcpy(r->dlogits, in->logits, sizeof r->dlogits);
    cross_entropy(r->losses, r->dlogits, r->dlogits, in->targets, NULL, N, V);
    memcpy(r->p, in->p, sizeof r->p), memcpy(r->m, in->m, sizeof r->m), memcpy(r->v, in->v, sizeof r->v);
    r->ss = sum_squares(in->grad, 500);
    const double nrm = sqrt(r->ss);
    r->bad = !isfinite(nrm);
    r->scale = nrm > 1.0 ? (float)(1.0 / (nrm + 1e-6)) : 1.0f;
    adamw_hparams hp = {.lr = 1e-3, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8, .weight_decay = 0.1};
    adamw_update(r->p, r->m, r->v, in->grad, r->scale, 500, &hp, 3, 1);
}

static void fill(float *x, size_t n, double s) {
    for (size_t i = 0; i < n; i++) x[i] = (float)(s * tu_normal());
}

static double nerr(const float *a, const float *b, size_t n) { return tu_nerr(a, b, n); }

int main(void) {
    static inputs in;
    static outputs direct, cpu, gpu;
    fill(in.x, N * H, 1), fill(in.w, O * H, 0.3), fill(in.b, O, 0.1), fill(in.dy, N * O, 1), fill(in.xo, N * O, 1);
    fill(in.qkv, N * W, 1), fill(in.dout, N * NH * HD, 1), fill(in.table, V * H, 1), fill(in.logits, N * V, 2);
    fill(in.p, 500, 1), fill(in.m, 500, 0.01), fill(in.grad, 500, 0.2);
    for (int j = 0; j < H; j++) in.g[j] = (float)(1 + 0.1 * tu_normal());
    for (int i = 0; i < 500; i++) in.v[i] = (float)(1e-4 * (1 + tu_uniform()));
    for (int i = 0; i < N; i++) in.tokens[i] = (int)(tu_next() % V), in.targets[i] = i % 7 ? (int)(tu_next() % V) : -1;
    for (int i = 0; i < N; i++) in.pos[i] = i < 25 ? i : i - 25;
    float inv[HD / 2];
    rope_inv_freq(inv, HD, 10000.0f, NULL);
    rope_tables(in.cos_t, in.sin_t, inv, 0, N, HD / 2);

    /* the CPU table: the direct calls' bits */
    run_direct(&in, &direct);
    run_table(smelt_ops_cpu(), &in, &cpu);
    tu_expect(!memcmp(&direct, &cpu, sizeof direct), "the CPU table gives the bits of the direct kernel calls");
    smelt_device dv;
    tu_expect(smelt_device_parse("cuda", &dv) == 0 && dv == SMELT_DEV_CUDA && smelt_device_parse("tpu", &dv) == -1 &&
                  strstr(err_msg(), "cpu or cuda"),
              "device names");

    /* the CUDA table */
    if (cu_device_count() < 1) {
        const int rc = tw_no_device();
        return tu_failures ? 1 : rc;
    }
    smelt_ops g;
    TW_TRY(smelt_ops_cuda_open(&g, 0));
    printf("CUDA table on %s\n", cu_describe((cu_ctx *)g.ctx));
    run_table(&g, &in, &gpu);
    const double e32 = EPS32, u = 1.0 / 256;
    tu_expect(nerr(gpu.y, cpu.y, N * O) <= 2 * (H + 3) * e32 * 4, "linear forward: %.3g", nerr(gpu.y, cpu.y, N * O));
    tu_expect(nerr(gpu.dx, cpu.dx, N * H) <= 2 * (O + 3) * e32 * 4, "linear backward input: %.3g", nerr(gpu.dx, cpu.dx, N * H));
    tu_expect(nerr(gpu.dw, cpu.dw, O * H) <= 2 * (N + 3) * e32 * 4, "linear backward params: %.3g", nerr(gpu.dw, cpu.dw, O * H));
    tu_expect(nerr(gpu.db, cpu.db, O) <= 2 * (N + 3) * e32 * 4, "bias gradient: %.3g", nerr(gpu.db, cpu.db, O));
    /* bf16 products: both sides multiply the same bf16-rounded operands exactly and sum in fp32, so
     * the fp32 bound holds; and they must differ from the fp32 products (by ~2^-9 relative, far above it) */
    tu_expect(nerr(gpu.yb, cpu.yb, N * O) <= 2 * (H + 3) * e32 * 4, "bf16 linear forward: %.3g", nerr(gpu.yb, cpu.yb, N * O));
    tu_expect(nerr(gpu.dxb, cpu.dxb, N * H) <= 2 * (O + 3) * e32 * 4, "bf16 linear backward input: %.3g",
              nerr(gpu.dxb, cpu.dxb, N * H));
    tu_expect(nerr(gpu.dwb, cpu.dwb, O * H) <= 2 * (N + 3) * e32 * 4, "bf16 linear backward params: %.3g",
              nerr(gpu.dwb, cpu.dwb, O * H));
    tu_expect(nerr(gpu.yb, gpu.y, N * O) > 16 * (H + 3) * e32 && nerr(cpu.yb, cpu.y, N * O) > 16 * (H + 3) * e32,
              "bf16 products differ from fp32 ones: GPU %.3g, CPU %.3g", nerr(gpu.yb, gpu.y, N * O), nerr(cpu.yb, cpu.y, N * O));
    tu_expect(nerr(gpu.xn, cpu.xn, N * H) <= 2 * (H + 6) * e32, "rmsnorm: %.3g", nerr(gpu.xn, cpu.xn, N * H));
    tu_expect(nerr(gpu.gx, cpu.gx, N * H) <= 2 * (H + 8) * e32 * 4, "rmsnorm backward: %.3g", nerr(gpu.gx, cpu.gx, N * H));
    tu_expect(nerr(gpu.rot, cpu.rot, N * W) <= 4 * e32, "rope: %.3g", nerr(gpu.rot, cpu.rot, N * W));
    tu_expect(nerr(gpu.h, cpu.h, N * HD) <= 12 * e32, "swiglu: %.3g", nerr(gpu.h, cpu.h, N * HD));
    tu_expect(nerr(gpu.att, cpu.att, N * NH * HD) <= 8 * u, "attention: %.3g", nerr(gpu.att, cpu.att, N * NH * HD));
    tu_expect(!memcmp(gpu.emb, cpu.emb, sizeof gpu.emb), "embedding: the same bits");
    tu_expect(nerr(gpu.dlogits, cpu.dlogits, N * V) <= 2 * (V + 10) * e32, "cross-entropy: %.3g",
              nerr(gpu.dlogits, cpu.dlogits, N * V));
    tu_expect(fabs(gpu.ss - cpu.ss) <= 2 * 502 * EPS64 * cpu.ss, "sum of squares %.17g %.17g", gpu.ss, cpu.ss);
    tu_expect(gpu.bad == cpu.bad && fabs(gpu.scale - cpu.scale) <= e32 * cpu.scale, "clip factor %g %g", gpu.scale, cpu.scale);
    /* AdamW's bits need its inputs' bits: the scales may differ in the last place (the sums' order) */
    tu_expect(nerr(gpu.p, cpu.p, 500) <= 4 * e32, "adamw: %.3g", nerr(gpu.p, cpu.p, 500));
    smelt_ops_cuda_close(&g);
    printf("test_ops_table: %s\n", tu_failures ? "FAILED" : "all checks passed");
    return tu_failures ? 1 : 0;
}
