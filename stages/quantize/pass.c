/* pass.c: the layer-by-layer pass of the `quantize` stage. For each decoder layer: one calibration
 * forward through the layer (model/layerwise.h) accumulates the float64 Gram matrix of the input of
 * each linear site (q/k/v share one, gate/up share one; kernels/gram.h) and, for SmoothQuant, the
 * per-channel maxima of |x|; ranks add their Gram matrices on rank 0 in rank order; rank 0 smooths,
 * quantizes the layer's linears, records the metrics and sends the new weights to every rank; the
 * layer's weights become the values of their codes, so later layers see quantized outputs; the stream
 * moves on and an in-stage checkpoint is written. As llmcompressor's sequential pipeline does, all the
 * linears of a layer are calibrated on the same forward. */
#include <math.h>
#include <mpi.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "common/log.h"
#include "kernels/gram.h"
#include "stages/quantize/qstage.h"

int qagree(stage_ctx *ctx, int rc) {
    if (ctx->world <= 1) return rc;
    int mine = rc ? 1 : 0, any = 0;
    if (MPI_Allreduce(&mine, &any, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD) != MPI_SUCCESS)
        return err_set(ERR_IO, "MPI_Allreduce of the stage status failed");
    if (any && !rc) return err_set(ERR_STAGE, "another rank failed (see its log)");
    return rc;
}

/* The site whose input a linear reads. */
static const model_site lin_site[QLIN_N] = {MODEL_SITE_QKV,     MODEL_SITE_QKV,     MODEL_SITE_QKV, MODEL_SITE_O,
                                           MODEL_SITE_GATE_UP, MODEL_SITE_GATE_UP, MODEL_SITE_DOWN};

typedef struct {
    double *h[MODEL_SITE_N];   /* [in, in] upper triangle accumulated, then symmetric */
    float *amax[MODEL_SITE_N]; /* [in] max |x_j| (QKV and GATE_UP sites) */
    int in[MODEL_SITE_N];
    int want_amax;             /* SmoothQuant needs the maxima */
    double gram_s;             /* seconds spent accumulating the Gram matrices */
} layer_stats;

static void stats_free(layer_stats *s) {
    for (int k = 0; k < MODEL_SITE_N; k++) free(s->h[k]), free(s->amax[k]);
    memset(s, 0, sizeof *s);
}

static int stats_alloc(layer_stats *s, model *m, int l) {
    memset(s, 0, sizeof *s);
    int no;
    lin_weights(m, l, QLIN_Q, &no, &s->in[MODEL_SITE_QKV]);
    lin_weights(m, l, QLIN_O, &no, &s->in[MODEL_SITE_O]);
    s->in[MODEL_SITE_GATE_UP] = s->in[MODEL_SITE_QKV];
    lin_weights(m, l, QLIN_DOWN, &no, &s->in[MODEL_SITE_DOWN]);
    for (int k = 0; k < MODEL_SITE_N; k++) {
        s->h[k] = xcalloc((size_t)s->in[k] * s->in[k], sizeof(double));
        s->amax[k] = xcalloc((size_t)s->in[k], sizeof(float));
        if (!s->h[k] || !s->amax[k]) {
            stats_free(s);
            return -1;
        }
    }
    return 0;
}

static int stats_tap(void *ctx, model_site site, const float *x, int n, int in) {
    layer_stats *s = ctx;
    if (in != s->in[site]) return err_set(ERR_INTERNAL, "site %d has %d inputs, expected %d", site, in, s->in[site]);
    const double t0 = time_monotonic();
    if (gram_accumulate(s->h[site], x, in, n, in)) return -1;
    s->gram_s += time_monotonic() - t0;
    for (int t = 0; t < n && s->want_amax; t++)
        for (int j = 0; j < in; j++) s->amax[site][j] = fmaxf(s->amax[site][j], fabsf(x[(size_t)t * in + j]));
    return 0;
}

/* Rank 0 receives the sum over ranks of every Gram matrix, added in rank order, and the maxima. */
static int stats_reduce(layer_stats *s, stage_ctx *ctx) {
    if (ctx->world <= 1) return 0;
    for (int k = 0; k < MODEL_SITE_N; k++) {
        const size_t n = (size_t)s->in[k] * s->in[k];
        const size_t block = 1 << 20;
        double *all = ctx->rank == 0 ? xmalloc(sizeof(double) * block * (size_t)ctx->world) : NULL;
        if (ctx->rank == 0 && !all) return -1;
        for (size_t b0 = 0; b0 < n; b0 += block) {
            const int len = (int)(n - b0 < block ? n - b0 : block);
            if (MPI_Gather(s->h[k] + b0, len, MPI_DOUBLE, all, len, MPI_DOUBLE, 0, MPI_COMM_WORLD) != MPI_SUCCESS) {
                free(all);
                return err_set(ERR_IO, "MPI_Gather of the Gram matrices failed");
            }
            if (ctx->rank == 0)
                for (int i = 0; i < len; i++) {
                    double v = 0;
                    for (int r = 0; r < ctx->world; r++) v += all[(size_t)r * len + i];
                    s->h[k][b0 + i] = v;
                }
        }
        free(all);
        float *mx = ctx->rank == 0 ? xmalloc(sizeof(float) * (size_t)s->in[k]) : NULL;
        if (MPI_Reduce(s->amax[k], mx, s->in[k], MPI_FLOAT, MPI_MAX, 0, MPI_COMM_WORLD) != MPI_SUCCESS) {
            free(mx);
            return err_set(ERR_IO, "MPI_Reduce of the activation maxima failed");
        }
        if (mx) memcpy(s->amax[k], mx, sizeof(float) * (size_t)s->in[k]);
        free(mx);
    }
    return 0;
}

/* SmoothQuant on layer l: the norm before a site and the site's linears (and the site's Gram matrix). */
static void smooth_layer(qrun *qr, int l, layer_stats *st) {
    model *m = &qr->m;
    for (int part = 0; part < 2; part++) {
        if (part == 0 ? !qr->o.smooth_qkv : !qr->o.smooth_mlp) continue;
        const model_site site = part == 0 ? MODEL_SITE_QKV : MODEL_SITE_GATE_UP;
        const int first = part == 0 ? QLIN_Q : QLIN_GATE;
        const int nw = part == 0 ? 3 : 2, n_in = st->in[site];
        float *w[3];
        int no[3], ni;
        for (int k = 0; k < nw; k++) w[k] = lin_weights(m, l, first + k, &no[k], &ni);
        float *s = xmalloc(sizeof(float) * (size_t)n_in);
        if (!s) continue; /* only an allocation of a few KB can fail here: smoothing is then skipped */
        smooth_scales(s, st->amax[site], (const float *const *)w, no, nw, n_in, qr->o.alpha);
        smooth_apply(part == 0 ? m->w.layers[l].attn_norm : m->w.layers[l].mlp_norm, w, no, nw, n_in, st->h[site], s);
        for (int j = 0; j < n_in; j++) st->amax[site][j] /= s[j];
        free(s);
    }
}

typedef struct {
    double err[QLIN_N], ref[QLIN_N];
    double *obj;          /* [iterations + 1] summed over the layer's linears */
    int have[QLIN_N];
    double error_s;       /* seconds spent on the error metrics */
} layer_result;

/* Quantizes linear k of layer l from its weights w (in place: w becomes w_hat) with the site's Hessian. */
static int quantize_linear(qrun *qr, int l, int k, const quant_hessian *qh, const double *h, layer_result *res) {
    const qopts *o = &qr->o;
    int no, ni;
    float *w = lin_weights(&qr->m, l, k, &no, &ni);
    qweight *q = model_quant_at(qr->mq, l, k);
    qweight_free(q);
    const size_t n = (size_t)no * ni;
    float *wh = xmalloc(sizeof(float) * n), *orig = xmalloc(sizeof(float) * n);
    double *obj = o->method == QM_QUANTEASE ? xcalloc((size_t)o->iterations + 1, sizeof(double)) : NULL;
    int rc = (!wh || !orig || (o->method == QM_QUANTEASE && !obj)) ? -1 : 0;
    quant_grid g = o->grid;
    if (g.group_size < 0) g.group_size = ni;
    if (!rc) memcpy(orig, w, sizeof(float) * n);
    double f = 0; /* the damped objective GPTQ / QuantEase computed as they went */
    int have_f = 0;
    if (!rc && o->method == QM_FP8) rc = quant_fp8(q, wh, w, no, ni, o->fp8_per_channel, o->act);
    else if (!rc && o->method == QM_RTN) rc = quant_rtn(q, wh, w, no, ni, &g);
    else if (!rc) {
        rc = quant_grid_init(q, w, no, ni, &g, qh->dead);
        if (!rc && (o->method == QM_GPTQ || o->init_gptq)) rc = gptq_quantize(q, wh, &f, w, qh, 1), have_f = 1;
        else if (!rc) quant_grid_codes(q, wh, w, qh->dead);
        if (!rc && o->method == QM_QUANTEASE) rc = quantease_quantize(q, wh, w, qh, o->iterations, obj);
        if (!rc && o->method == QM_QUANTEASE) f = obj[o->iterations], have_f = 1;
    }
    if (!rc) q->act = o->act;
    if (!rc && h) {
        const double t0 = time_monotonic();
        /* tr(dW H dW^T) from the objective (O(out in)) and tr(W H W^T) from W^T W (half a product);
         * RTN and FP8 have no objective: two products with H */
        if (have_f) res->err[k] = quant_error_from_objective(f, orig, wh, qh, no), rc = quant_layer_ref(&res->ref[k], orig, h, no, ni);
        else rc = quant_layer_error(&res->err[k], &res->ref[k], orig, wh, h, no, ni);
        res->error_s += time_monotonic() - t0;
        res->have[k] = 1;
        for (int t = 0; obj && t <= o->iterations; t++) res->obj[t] += obj[t];
    }
    if (!rc) memcpy(w, wh, sizeof(float) * n); /* the fp32 copy holds the codes' values too (checkpoints) */
    if (rc) {
        qweight_free(q);
        err_prefix("layer %d %s: ", l, qlin_module[k]);
    }
    free(wh), free(orig), free(obj);
    return rc;
}

/* Rank 0: smoothing and the quantization of the layer's linears; metrics. */
static int quantize_layer(qrun *qr, int l, layer_stats *st, double secs0) {
    const double t_quant = time_monotonic();
    stage_ctx *ctx = qr->ctx;
    const qopts *o = &qr->o;
    if (o->smooth && st) smooth_layer(qr, l, st);
    layer_result res;
    memset(&res, 0, sizeof res);
    res.obj = xcalloc((size_t)o->iterations + 1, sizeof(double));
    if (!res.obj) return -1;
    int rc = 0;
    for (int site = 0; site < MODEL_SITE_N && !rc; site++) {
        quant_hessian qh;
        memset(&qh, 0, sizeof qh);
        int any = 0;
        for (int k = 0; k < QLIN_N; k++) any |= lin_site[k] == (model_site)site && !qr->skip[l][k];
        if (!any) continue;
        const int hessian = o->method == QM_GPTQ || o->method == QM_QUANTEASE;
        if (hessian) {
            char what[64];
            snprintf(what, sizeof what, "layer %d %s input", l, site == MODEL_SITE_QKV ? "q/k/v" : site == MODEL_SITE_O ?
                     "o_proj" : site == MODEL_SITE_GATE_UP ? "gate/up" : "down_proj");
            rc = quant_hessian_prepare(&qh, st->h[site], st->in[site], o->damp, o->act_order);
            if (!rc && (o->method == QM_GPTQ || o->init_gptq)) rc = quant_hessian_factor(&qh, what);
            if (!rc && qh.retries && stage_metric(ctx, "damp_retries", l, qh.retries)) rc = -1;
        }
        for (int k = 0; k < QLIN_N && !rc; k++)
            if (lin_site[k] == (model_site)site && !qr->skip[l][k])
                rc = quantize_linear(qr, l, k, &qh, st ? st->h[site] : NULL, &res);
        quant_hessian_free(&qh);
    }
    double err = 0, ref = 0;
    for (int k = 0; k < QLIN_N && !rc; k++) {
        if (!res.have[k]) continue;
        char key[32];
        snprintf(key, sizeof key, "rel_error_%s", qlin_short[k]);
        const double rel = res.ref[k] > 0 ? res.err[k] / res.ref[k] : 0;
        qr->sum_err_rel += rel, qr->n_err++;
        err += res.err[k], ref += res.ref[k];
        rc = stage_metric(ctx, key, l, rel);
    }
    if (!rc && o->method == QM_QUANTEASE && ref > 0) {
        char key[32];
        snprintf(key, sizeof key, "objective_%d", l);
        for (int t = 0; t <= o->iterations && !rc; t++) rc = stage_metric(ctx, key, t, res.obj[t] / ref);
    }
    if (!rc && ref > 0)
        log_info("layer %d: relative error %.3e (calibration %.2f s, of which Gram matrices %.2f s; quantization %.2f s, "
                 "of which error metrics %.2f s)", l, err / ref, t_quant - secs0, st ? st->gram_s : 0.0,
                 time_monotonic() - t_quant, res.error_s);
    free(res.obj);
    return rc;
}

/* Every rank gets rank 0's new layer l: norms, fp32 weights and the qweights (layout first). */
static int share_layer(qrun *qr, int l) {
    stage_ctx *ctx = qr->ctx;
    if (ctx->world <= 1) return 0;
    model *m = &qr->m;
    const int H = m->cfg.hidden;
    int ok = MPI_Bcast(m->w.layers[l].attn_norm, H, MPI_FLOAT, 0, MPI_COMM_WORLD) == MPI_SUCCESS &&
             MPI_Bcast(m->w.layers[l].mlp_norm, H, MPI_FLOAT, 0, MPI_COMM_WORLD) == MPI_SUCCESS;
    for (int k = 0; k < QLIN_N && ok; k++) {
        int no, ni;
        float *w = lin_weights(m, l, k, &no, &ni);
        qweight *q = model_quant_at(qr->mq, l, k);
        int head[7] = {qweight_is_set(q), q->type, q->bits, q->act, q->group_size, q->n_scales, q->zeros != NULL};
        ok = MPI_Bcast(w, no * ni, MPI_FLOAT, 0, MPI_COMM_WORLD) == MPI_SUCCESS &&
             MPI_Bcast(head, 7, MPI_INT, 0, MPI_COMM_WORLD) == MPI_SUCCESS;
        if (!ok || !head[0]) continue;
        if (ctx->rank != 0) {
            qweight_free(q);
            *q = (qweight){.type = (qw_type)head[1], .bits = head[2], .act = (qa_type)head[3], .n_out = no, .n_in = ni,
                           .group_size = head[4]};
            if (qweight_alloc(q, head[6], head[5] == 1 && head[1] == QW_FP8)) return -1;
        }
        ok = MPI_Bcast(q->codes, no * ni, MPI_UNSIGNED_CHAR, 0, MPI_COMM_WORLD) == MPI_SUCCESS &&
             MPI_Bcast(q->scales, q->n_scales, MPI_FLOAT, 0, MPI_COMM_WORLD) == MPI_SUCCESS &&
             (!q->zeros || MPI_Bcast(q->zeros, no * (ni / q->group_size), MPI_UNSIGNED_CHAR, 0, MPI_COMM_WORLD) == MPI_SUCCESS);
    }
    return ok ? 0 : err_set(ERR_IO, "MPI_Bcast of layer %d's quantized weights failed", l);
}

int qpass_run(qrun *qr) {
    stage_ctx *ctx = qr->ctx;
    const int L = qr->m.cfg.n_layers;
    progress pg;
    if (ctx->rank == 0) progress_start(&pg, ctx->stage, L);
    int rc = 0;
    for (int l = qr->layer; l < L && !rc; l++) {
        const double t0 = time_monotonic();
        layer_stats st, *stp = NULL;
        if (qr->lw) {
            rc = stats_alloc(&st, &qr->m, l);
            if (!rc) stp = &st, st.want_amax = qr->o.smooth;
            /* partial: the capture's output is discarded, so down_proj itself need not run */
            model_tap tap = {.sites = 0xF, .fn = stats_tap, .ctx = &st, .partial = 1};
            if (!rc) rc = layerwise_capture(qr->lw, &tap);
            for (int k = 0; k < MODEL_SITE_N && !rc; k++) gram_symmetrize(st.h[k], st.in[k]);
            rc = qagree(ctx, rc);
            if (!rc) rc = stats_reduce(&st, ctx);
        }
        if (!rc && ctx->rank == 0) rc = quantize_layer(qr, l, stp, t0);
        rc = qagree(ctx, rc);
        if (!rc) rc = share_layer(qr, l);
        /* The next layers are calibrated on this layer's quantized function. With activation
         * quantization only the quantized kernels compute it; with weights alone the layer's fp32
         * weights already hold exactly the codes' values (quantize_linear), so the fp32 sgemm on them
         * computes the same products as the kernels (which dequantize panels into sgemm), faster;
         * the kernels are bound right after. */
        const int weight_only = qr->o.act == QA_NONE;
        if (!rc && !weight_only) rc = model_quant_rebind_layer(&qr->m, l);
        if (stp) stats_free(stp);
        const double t_adv = time_monotonic();
        if (!rc && qr->lw) rc = layerwise_advance(qr->lw);
        if (!rc && weight_only) rc = model_quant_rebind_layer(&qr->m, l);
        rc = qagree(ctx, rc);
        const double t_ckpt = time_monotonic();
        /* before the checkpoint, which flushes the metrics: a resumed attempt has every layer's */
        if (!rc) rc = stage_metric(ctx, "seconds", l, time_monotonic() - t0);
        if (!rc) rc = qagree(ctx, qckpt_save(qr, l));
        if (!rc && ctx->rank == 0)
            log_info("layer %d: %.2f s in all (next-layer forward %.2f s, checkpoint %.2f s)", l, time_monotonic() - t0,
                     t_ckpt - t_adv, time_monotonic() - t_ckpt);
        /* fault injection for the kill -9 test: SMELT_QUANTIZE_KILL_AT=STAGE:LAYER dies (SIGKILL, nothing
         * cleaned up) right after the checkpoint of that layer */
        const char *kill_at = getenv("SMELT_QUANTIZE_KILL_AT"), *colon = kill_at ? strrchr(kill_at, ':') : NULL;
        if (!rc && colon && (size_t)(colon - kill_at) == strlen(ctx->stage) && !strncmp(kill_at, ctx->stage, strlen(ctx->stage)) &&
            atoi(colon + 1) == l)
            raise(SIGKILL);
        if (!rc && ctx->rank == 0) {
            char extra[48];
            snprintf(extra, sizeof extra, "layer %d", l);
            progress_update(&pg, l + 1, extra);
        }
    }
    if (!rc && ctx->rank == 0) progress_finish(&pg, "quantized");
    return rc;
}
