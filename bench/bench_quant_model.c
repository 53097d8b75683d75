/* bench_quant_model.c: RTN, GPTQ and QuantEase on the SAME calibration inputs at every layer of a model
 * (the figure behind docs/quantize.md's per-layer table): layer by layer, the Gram matrices of the
 * calibration stream, then for each of the seven linears the three methods on that one Hessian, their
 * relative layer errors ||X W^T - X W^T||^2 / ||X W^T||^2 and QuantEase's objective per sweep; the layer
 * is then set to GPTQ's result (as a GPTQ pass would) and the stream moves on.
 *   bench_quant_model MODEL IDS.jsonl [--bits B] [--group G] [--sweeps S] [--layers N] [--damp D]
 * IDS.jsonl: one JSON array of token ids per line (smelt export-calibration). Prints one line per layer
 * and linear, then totals; "!" marks a linear where QuantEase <= GPTQ <= RTN fails. */
#include <cjson/cJSON.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "common/fsutil.h"
#include "common/log.h"
#include "kernels/gram.h"
#include "model/layerwise.h"
#include "model/model_load.h"
#include "model/qmodel.h"
#include "stages/quantize/quant.h"
#include "tests/site_grams.h"

static int read_ids(const char *path, int **tokens, int **lens, int *n_seqs) {
    char *text;
    size_t len;
    if (fs_read_file(path, (size_t)1 << 30, &text, &len)) return -1;
    int cap = 1 << 16, n = 0, ns = 0, cs = 64;
    *tokens = malloc(sizeof(int) * cap), *lens = malloc(sizeof(int) * cs);
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
        cJSON *a = cJSON_Parse(line);
        if (!cJSON_IsArray(a)) continue;
        if (ns == cs) *lens = realloc(*lens, sizeof(int) * (cs *= 2));
        (*lens)[ns] = 0;
        for (cJSON *e = a->child; e; e = e->next) {
            if (n == cap) *tokens = realloc(*tokens, sizeof(int) * (cap *= 2));
            (*tokens)[n++] = (int)e->valuedouble;
            (*lens)[ns]++;
        }
        ns += (*lens)[ns] > 0;
        cJSON_Delete(a);
    }
    free(text);
    *n_seqs = ns;
    return ns ? 0 : err_set(ERR_INPUT, "%s holds no sequence", path);
}

int main(int argc, char **argv) {
    quant_grid g = {4, 64, 1, 0};
    int sweeps = 5, layers = 0, c;
    double damp = 0.01;
    static const struct option opts[] = {{"bits", 1, 0, 'b'}, {"group", 1, 0, 'g'}, {"sweeps", 1, 0, 's'},
                                         {"layers", 1, 0, 'l'}, {"damp", 1, 0, 'd'}, {0, 0, 0, 0}};
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) switch (c) {
        case 'b': g.bits = atoi(optarg); break;
        case 'g': g.group_size = atoi(optarg); break;
        case 's': sweeps = atoi(optarg); break;
        case 'l': layers = atoi(optarg); break;
        case 'd': damp = atof(optarg); break;
        default: return 2;
        }
    if (optind != argc - 2) {
        fprintf(stderr, "usage: bench_quant_model MODEL IDS.jsonl [--bits B] [--group G] [--sweeps S] [--layers N] [--damp D]\n");
        return 2;
    }
    model m;
    int *tokens, *lens, n_seqs;
    layerwise *lw;
    if (model_load(&m, argv[optind]) || read_ids(argv[optind + 1], &tokens, &lens, &n_seqs) ||
        layerwise_open(&lw, &m, tokens, lens, n_seqs, 2048)) {
        fprintf(stderr, "bench_quant_model: %s\n", err_msg());
        return 1;
    }
    const int L = layers > 0 && layers < m.cfg.n_layers ? layers : m.cfg.n_layers;
    printf("%s: %d layers, %d sequences, %lld tokens; %d-bit %s group %d, damp %g, QuantEase %d sweeps from GPTQ\n",
           argv[optind], L, n_seqs, (long long)layerwise_tokens(lw), g.bits, g.sym ? "sym" : "asym", g.group_size, damp, sweeps);
    printf("layer linear        RTN       GPTQ  QuantEase   objective: start -> after each sweep\n");
    double sum[3] = {0}, t[3] = {0};
    int n_lin = 0, n_ok = 0, n_damped_ok = 0;
    for (int l = 0; l < L; l++) {
        site_grams gr = {{0}, {0}};
        model_tap tp = {.sites = 0xF, .fn = site_grams_tap, .ctx = &gr, .partial = 1};
        if (layerwise_capture(lw, &tp)) return fprintf(stderr, "%s\n", err_msg()), 1;
        for (int s = 0; s < MODEL_SITE_N; s++) gram_symmetrize(gr.h[s], gr.in[s]);
        layer_weights *w = &m.w.layers[l];
        float *ws[QLIN_N] = {w->wq, w->wk, w->wv, w->wo, w->w_gate, w->w_up, w->w_down};
        const model_site site[QLIN_N] = {MODEL_SITE_QKV, MODEL_SITE_QKV, MODEL_SITE_QKV, MODEL_SITE_O,
                                         MODEL_SITE_GATE_UP, MODEL_SITE_GATE_UP, MODEL_SITE_DOWN};
        for (int k = 0; k < QLIN_N; k++) {
            int no, ni;
            qlin_shape(&m.cfg, l, k, &no, &ni);
            const size_t n = (size_t)no * ni;
            float *wh = malloc(sizeof(float) * n), *wg = malloc(sizeof(float) * n);
            double e[3], ref, obj[64];
            const double *h = gr.h[site[k]];
            qweight q;
            quant_hessian qh;
            quant_grid gk = g;
            if (gk.group_size < 0) gk.group_size = ni;
            double t0 = time_monotonic();
            int ok = quant_rtn(&q, wh, ws[k], no, ni, &gk) == 0;
            t[0] += time_monotonic() - t0;
            ok = ok && quant_layer_error(&e[0], &ref, ws[k], wh, h, no, ni) == 0;
            qweight_free(&q);
            t0 = time_monotonic();
            ok = ok && quant_hessian_prepare(&qh, h, ni, damp, 0) == 0 && quant_grid_init(&q, ws[k], no, ni, &gk, qh.dead) == 0 &&
                 quant_hessian_factor(&qh, "bench") == 0 && gptq_quantize(&q, wg, NULL, ws[k], &qh, 1) == 0;
            t[1] += time_monotonic() - t0;
            t0 = time_monotonic();
            ok = ok && quant_layer_error(&e[1], &ref, ws[k], wg, h, no, ni) == 0 &&
                 quantease_quantize(&q, wh, ws[k], &qh, sweeps < 63 ? sweeps : 63, obj) == 0;
            t[2] += time_monotonic() - t0;
            ok = ok && quant_layer_error(&e[2], &ref, ws[k], wh, h, no, ni) == 0;
            if (!ok) return fprintf(stderr, "layer %d %s: %s\n", l, qlin_short[k], err_msg()), 1;
            const int order = e[2] <= e[1] && e[1] <= e[0];
            n_lin++, n_ok += order, n_damped_ok += obj[sweeps] <= obj[0];
            for (int i = 0; i < 3; i++) sum[i] += e[i] / ref;
            printf("%5d %-6s %10.4e %10.4e %10.4e%s  %.4e", l, qlin_short[k], e[0] / ref, e[1] / ref, e[2] / ref,
                   order ? " " : "!", obj[0] / ref);
            for (int s = 1; s <= sweeps; s++) printf(" %.4e", obj[s] / ref);
            printf("\n");
            memcpy(ws[k], wg, sizeof(float) * n); /* the next layers see GPTQ's outputs */
            qweight_free(&q);
            quant_hessian_free(&qh);
            free(wh), free(wg);
        }
        site_grams_free(&gr);
        if (layerwise_advance(lw)) return fprintf(stderr, "%s\n", err_msg()), 1;
        fflush(stdout);
    }
    printf("mean relative error over %d linears: RTN %.4e, GPTQ %.4e, QuantEase %.4e\n", n_lin, sum[0] / n_lin,
           sum[1] / n_lin, sum[2] / n_lin);
    printf("QuantEase <= GPTQ <= RTN on %d of %d linears; QuantEase's objective lower than its start on %d of %d\n", n_ok,
           n_lin, n_damped_ok, n_lin);
    printf("seconds (quantization only): RTN %.2f, GPTQ %.2f (incl. Cholesky), QuantEase %d sweeps %.2f\n", t[0], t[1],
           sweeps, t[2]);
    layerwise_close(lw);
    model_free(&m);
    free(tokens), free(lens);
    return 0;
}
