/* quantize.c: the `quantize` stage kind: its parameter schema, the checks made before any work (method,
 * bits and groups against the output format and the model's sizes, an already quantized input, ignore
 * entries that name no linear), loading the model and the calibration set (sharded over ranks), and the
 * output. The layer-by-layer pass is pass.c; in-stage checkpoints are ckpt.c. */
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "common/fsutil.h"
#include "common/log.h"
#include "kernels/threads.h"
#include "model/checkpoint.h"
#include "model/model_load.h"
#include "stages/data/dataset.h"
#include "stages/quantize/qout.h"
#include "stages/quantize/qstage.h"
#include "stages/train/train.h"

static const char *const method_choices[] = {"rtn", "gptq", "quantease", "smoothquant+gptq", "smoothquant+quantease",
                                             "fp8", NULL};
static const char *const init_choices[] = {"rtn", "gptq", NULL};
static const char *const act_choices[] = {"none", "int8", "fp8", NULL};
static const char *const fp8w_choices[] = {"tensor", "channel", NULL};
static const char *const format_choices[] = {"compressed-tensors", "gptq", "gguf", NULL};
static const char *const mapping_choices[] = {"input_layernorm", "post_attention_layernorm", NULL};

static const param_spec model_alts[] = {
    {.name = "stage", .type = P_REF, .help = "a stage's model output"},
    {.name = "path", .type = P_PATH, .help = "a Hugging Face folder or a llama2.c .bin"},
    {.name = NULL},
};
static const param_spec mapping_elem = {.name = "mapping", .type = P_STRING, .choices = mapping_choices};
static const param_spec smooth_fields[] = {
    {.name = "alpha", .type = P_FLOAT, .def = "0.5", .has_min = 1, .min = 0, .has_max = 1, .max = 1,
     .help = "migration strength: s_j = max|X_j|^alpha / max|W_j|^(1-alpha)"},
    {.name = "mappings", .type = P_LIST, .def = "[input_layernorm, post_attention_layernorm]", .elem = &mapping_elem,
     .help = "norms smoothed: input_layernorm (-> q/k/v), post_attention_layernorm (-> gate/up)"},
    {.name = NULL},
};
static const param_spec ignore_elem = {.name = "ignore", .type = P_STRING,
                                       .help = "lm_head, a module (model.layers.3.mlp.down_proj), a projection "
                                               "(down_proj), a layer (model.layers.3) or re:REGEX"};

static const param_spec quantize_params[] = {
    {.name = "model", .type = P_UNION, .required = 1, .alts = model_alts, .help = "the model to quantize"},
    {.name = "calibration", .type = P_REF, .help = "a calibration set (data.calibration); needed by gptq, quantease, smoothquant"},
    {.name = "method", .type = P_STRING, .required = 1, .choices = method_choices, .help = "the algorithm"},
    {.name = "bits", .type = P_INT, .def = "4", .has_min = 1, .min = 2, .has_max = 1, .max = 8,
     .help = "integer weight bits (fp8: 8)"},
    {.name = "group_size", .type = P_INT, .def = "128", .has_min = 1, .min = -1, .has_max = 1, .max = 1 << 20,
     .help = "input columns per scale (-1: one scale per output channel)"},
    {.name = "sym", .type = P_BOOL, .def = "true", .help = "symmetric grid (no zero points)"},
    {.name = "act_order", .type = P_BOOL, .def = "false", .help = "GPTQ/QuantEase columns by decreasing diag(H)"},
    {.name = "damp", .type = P_FLOAT, .def = "0.01", .has_min = 1, .min = 0, .has_max = 1, .max = 1e3,
     .help = "damping lambda = damp * mean(diag H)"},
    {.name = "iterations", .type = P_INT, .def = "3", .has_min = 1, .min = 0, .has_max = 1, .max = 1000,
     .help = "QuantEase sweeps (0: its start, GPTQ)"},
    {.name = "init", .type = P_STRING, .def = "gptq", .choices = init_choices, .help = "QuantEase's start"},
    {.name = "smooth", .type = P_MAP, .def = "{}", .fields = smooth_fields, .help = "SmoothQuant: {alpha, mappings}"},
    {.name = "activations", .type = P_STRING, .def = "none", .choices = act_choices,
     .help = "activations quantized at run time, dynamically per token"},
    {.name = "weights_fp8", .type = P_STRING, .def = "channel", .choices = fp8w_choices,
     .help = "fp8: one weight scale per tensor or per output channel"},
    {.name = "ignore", .type = P_LIST, .def = "[lm_head]", .elem = &ignore_elem, .help = "linears kept in full precision"},
    {.name = "format", .type = P_STRING, .def = "compressed-tensors", .choices = format_choices, .help = "the output format"},
    {.name = NULL},
};

static const stage_output_spec quantize_outputs[] = {
    {.name = "model", .kind = "model"},
    {.name = NULL},
};

static int has_string(const cJSON *list, const char *s) {
    const cJSON *e;
    cJSON_ArrayForEach(e, list) if (cJSON_IsString(e) && !strcmp(e->valuestring, s)) return 1;
    return 0;
}

int qopts_parse(qopts *o, const cJSON *p) {
    memset(o, 0, sizeof *o);
    const char *method, *init, *act, *fp8w, *format;
    int64_t bits, group, iters;
    int sym, ao;
    if (param_string(p, "method", &method) || param_int(p, "bits", &bits) || param_int(p, "group_size", &group) ||
        param_bool(p, "sym", &sym) || param_bool(p, "act_order", &ao) || param_float(p, "damp", &o->damp) ||
        param_int(p, "iterations", &iters) || param_string(p, "init", &init) || param_float(p, "smooth.alpha", &o->alpha) ||
        param_string(p, "activations", &act) || param_string(p, "weights_fp8", &fp8w) || param_string(p, "format", &format))
        return -1;
    if (qckpt_format_parse(format, &o->format)) return -1;
    o->ignore = param_get(p, "ignore");
    const cJSON *maps = param_get(p, "smooth.mappings");
    o->smooth_qkv = has_string(maps, "input_layernorm");
    o->smooth_mlp = has_string(maps, "post_attention_layernorm");
    o->smooth = !strncmp(method, "smoothquant+", 12);
    const char *base = o->smooth ? method + 12 : method;
    o->method = !strcmp(base, "rtn") ? QM_RTN : !strcmp(base, "gptq") ? QM_GPTQ : !strcmp(base, "quantease") ? QM_QUANTEASE : QM_FP8;
    /* GGUF's Q4_1 stores the minimum -scale * zero in fp16: scales of 11 - bits significant bits keep it one */
    o->grid = (quant_grid){.bits = (int)bits, .group_size = (int)group, .sym = sym,
                           .scale_bits = o->format == QCKPT_GGUF && !sym && bits >= 2 && bits <= 8 ? 11 - (int)bits : 0};
    o->act_order = ao;
    o->iterations = (int)iters;
    o->init_gptq = !strcmp(init, "gptq");
    o->act = !strcmp(act, "int8") ? QA_INT8 : !strcmp(act, "fp8") ? QA_FP8 : QA_NONE;
    o->fp8_per_channel = !strcmp(fp8w, "channel");
    if (group == 0) return err_set(ERR_INPUT, "group_size 0: give a positive number of input columns, or -1 for one "
                                   "scale per output channel");
    if (o->smooth && !o->smooth_qkv && !o->smooth_mlp)
        return err_set(ERR_INPUT, "smooth.mappings is empty: SmoothQuant needs input_layernorm and/or post_attention_layernorm");
    /* what the output format can hold (and the kernels run): the writer's own rules */
    const int fp8 = o->method == QM_FP8;
    if (qcheckpoint_check_scheme(o->format, fp8 ? QW_FP8 : QW_INT, fp8 ? 8 : (int)bits, o->act, fp8 ? -1 : (int)group,
                                 fp8 ? 0 : !sym, fp8 && !o->fp8_per_channel, 0))
        return err_prefix("method %s, format %s: ", method, format);
    if (o->smooth && o->act != QA_INT8)
        log_warn("SmoothQuant without activations: int8 moves outliers into the weights for nothing; it is meant for W8A8");
    return 0;
}

float *lin_weights(model *m, int l, int id, int *n_out, int *n_in) {
    const model_config *c = &m->cfg;
    layer_weights *w = &m->w.layers[l];
    const int H = c->hidden, Q = c->layers[l].n_heads * c->head_dim, KV = c->layers[l].n_kv_heads * c->head_dim,
              I = c->layers[l].intermediate;
    switch (id) {
    case QLIN_Q: *n_out = Q, *n_in = H; return w->wq;
    case QLIN_K: *n_out = KV, *n_in = H; return w->wk;
    case QLIN_V: *n_out = KV, *n_in = H; return w->wv;
    case QLIN_O: *n_out = H, *n_in = Q; return w->wo;
    case QLIN_GATE: *n_out = I, *n_in = H; return w->w_gate;
    case QLIN_UP: *n_out = I, *n_in = H; return w->w_up;
    default: *n_out = H, *n_in = I; return w->w_down;
    }
}

/* Input sizes of every linear against group_size; -1 becomes each linear's own width at use. */
static int check_sizes(const model_config *c, const quant_grid *g) {
    if (g->group_size < 0) return 0;
    for (int l = 0; l < c->n_layers; l++) {
        const int ins[3] = {c->hidden, c->layers[l].n_heads * c->head_dim, c->layers[l].intermediate};
        const char *what[3] = {"hidden size (input of q/k/v/gate/up)", "attention width (input of o_proj)",
                               "MLP width (input of down_proj)"};
        for (int k = 0; k < 3; k++)
            if (ins[k] % g->group_size)
                return err_set(ERR_INPUT, "group_size %d does not divide the %s %d of layer %d; choose a divisor of %d "
                               "(or -1 for one scale per output channel)", g->group_size, what[k], ins[k], l, ins[k]);
    }
    return 0;
}

/* Marks the linears named by `ignore`; an entry that names none is an error. */
static int apply_ignore(uint8_t (*skip)[QLIN_N], const model_config *c, const cJSON *ignore) {
    const cJSON *e;
    cJSON_ArrayForEach(e, ignore) {
        const char *s = e->valuestring;
        if (!strcmp(s, "lm_head")) continue; /* never quantized: the head (often tied to the embedding) stays */
        regex_t re;
        int is_re = !strncmp(s, "re:", 3);
        if (is_re && regcomp(&re, s + 3, REG_EXTENDED | REG_NOSUB))
            return err_set(ERR_INPUT, "ignore entry '%s': not a valid extended regular expression", s);
        int hits = 0;
        for (int l = 0; l < c->n_layers; l++)
            for (int k = 0; k < QLIN_N; k++) {
                char name[96], layer[48];
                qlin_module_name(name, sizeof name, l, k);
                snprintf(layer, sizeof layer, "model.layers.%d", l);
                const char *proj = strchr(qlin_module[k], '.') + 1;
                int hit = is_re ? regexec(&re, name, 0, NULL, 0) == 0
                                : !strcmp(s, name) || !strcmp(s, layer) || !strcmp(s, proj) || !strcmp(s, qlin_module[k]);
                if (hit) skip[l][k] = 1, hits++;
            }
        if (is_re) regfree(&re);
        if (!hits)
            return err_set(ERR_INPUT, "ignore entry '%s' names no linear of this %d-layer model; use lm_head, a module "
                           "name (model.layers.0.mlp.down_proj), a projection (down_proj), a layer (model.layers.0) or "
                           "re:REGEX", s, c->n_layers);
    }
    /* q/k/v and gate/up run as one fused projection each: quantized alike or kept alike */
    for (int l = 0; l < c->n_layers; l++)
        if (skip[l][QLIN_Q] != skip[l][QLIN_K] || skip[l][QLIN_K] != skip[l][QLIN_V] ||
            skip[l][QLIN_GATE] != skip[l][QLIN_UP])
            return err_set(ERR_INPUT, "ignore keeps part of a fused projection of layer %d in full precision: q_proj, "
                           "k_proj and v_proj (and gate_proj and up_proj) run as one product each; ignore them together",
                           l);
    return 0;
}

/* A checkpoint that is already quantized is refused: quantize the full-precision model it came from. */
static int refuse_quantized(const char *path) {
    char desc[128] = "";
    int q = model_path_is_quantized(path, NULL, desc, sizeof desc);
    if (q < 0) return err_prefix("model %s: ", path);
    if (q > 0)
        return err_set(ERR_INPUT, "%s is already quantized (%s); quantize the full-precision model it came from", path,
                       desc);
    return 0;
}

/* This rank's share of the calibration sequences: sequence i goes to rank i mod world. */
static int load_calibration(qrun *qr, const char *dir) {
    dataset ds;
    ds_split sp;
    if (dataset_open(&ds, dir)) return err_prefix("calibration: ");
    if (dataset_split_open(&ds, "calibration", &sp)) {
        dataset_close(&ds);
        return err_prefix("calibration: ");
    }
    stage_ctx *ctx = qr->ctx;
    int rc = 0;
    if (sp.n_examples < ctx->world)
        rc = err_set(ERR_INPUT, "the calibration set has %lld sequences for %d ranks; give it at least one per rank",
                     (long long)sp.n_examples, ctx->world);
    if (!rc && sp.vocab > qr->m.cfg.vocab)
        rc = err_set(ERR_INPUT, "the calibration set's tokenizer has %d tokens but the model's vocabulary %d; calibrate "
                     "with the model's own tokenizer", sp.vocab, qr->m.cfg.vocab);
    int64_t mine = 0, toks = 0;
    for (int64_t i = ctx->rank; !rc && i < sp.n_examples; i += ctx->world) mine++, toks += sp.ex[i].n_tokens;
    if (!rc) {
        qr->tokens = xmalloc(sizeof(int32_t) * (size_t)(toks ? toks : 1));
        qr->seq_lens = xmalloc(sizeof(int32_t) * (size_t)mine);
        if (!qr->tokens || !qr->seq_lens) rc = -1;
    }
    int64_t at = 0;
    for (int64_t i = ctx->rank; !rc && i < sp.n_examples; i += ctx->world) {
        memcpy(qr->tokens + at, ds_example_tokens(&sp, i), sizeof(int32_t) * sp.ex[i].n_tokens);
        qr->seq_lens[qr->n_seqs++] = (int32_t)sp.ex[i].n_tokens;
        at += sp.ex[i].n_tokens;
    }
    qr->n_tokens_total = (int)sp.n_tokens;
    ds_split_close(&sp);
    dataset_close(&ds);
    return rc;
}

static void qrun_free(qrun *qr) {
    layerwise_close(qr->lw);
    free(qr->skip), free(qr->tokens), free(qr->seq_lens), free(qr->fingerprint);
    if (qr->have_model) model_free(&qr->m); /* and the attached model_quant */
}

/* Every check that needs no weights, then the weights and the calibration stream. */
static int qrun_setup(qrun *qr, const char **model_path) {
    stage_ctx *ctx = qr->ctx;
    qopts *o = &qr->o;
    if (qopts_parse(o, ctx->params)) return -1;
    stage_input *min = stage_input_get(ctx, "model"), *cin = stage_input_get(ctx, "calibration");
    const char *cal_dir = NULL;
    if (min) {
        if (stage_input_dir(ctx, min, model_path)) return -1;
    } else if (param_string(ctx->params, "model", model_path)) {
        return -1;
    }
    if (!cin && o->method != QM_RTN && o->method != QM_FP8)
        return err_set(ERR_INPUT, "method %s needs calibration data: set calibration: to a data stage's calibration "
                       "output (data.calibration)", o->method == QM_GPTQ ? "gptq" : "quantease");
    if (!cin && o->smooth) return err_set(ERR_INPUT, "SmoothQuant needs calibration data: set calibration: data.calibration");
    if (refuse_quantized(*model_path)) return -1;
    model_config cfg;
    if (train_read_config(*model_path, &cfg)) return err_prefix("model %s: ", *model_path);
    if (o->method != QM_FP8 && check_sizes(&cfg, &o->grid)) return -1;
    qr->skip = xcalloc((size_t)cfg.n_layers, sizeof *qr->skip);
    if (!qr->skip) return -1;
    if (apply_ignore(qr->skip, &cfg, o->ignore)) return -1;
    if (cin && stage_input_dir(ctx, cin, &cal_dir)) return -1;

    /* the cores of this host are shared among its ranks */
    const char *local = getenv("OMPI_COMM_WORLD_LOCAL_SIZE");
    if (local && atoi(local) > 1) {
        int n = kernels_set_threads(0) / atoi(local);
        kernels_set_threads(n > 0 ? n : 1);
    }
    if (model_load(&qr->m, *model_path)) return -1;
    qr->have_model = 1;
    /* the quantized linears run the quantized kernels as soon as their layer is done (rebind) */
    if (!(qr->mq = model_quant_new(cfg.n_layers))) return -1;
    if (model_attach_quant(&qr->m, qr->mq)) {
        model_quant_free(qr->mq);
        qr->mq = NULL;
        return -1;
    }
    if (cfg.n_layers != qr->m.cfg.n_layers || cfg.hidden != qr->m.cfg.hidden)
        return err_set(ERR_INTERNAL, "the config of %s changed between reading and loading", *model_path);
    if (cal_dir) {
        if (load_calibration(qr, cal_dir)) return -1;
        log_info("rank %d of %d: %d calibration sequences (%d tokens in all)", ctx->rank, ctx->world, qr->n_seqs, qr->n_tokens_total);
        if (layerwise_open(&qr->lw, &qr->m, qr->tokens, qr->seq_lens, qr->n_seqs, 2048)) return err_prefix("calibration: ");
    }
    qr->fingerprint = xasprintf("%s/world%d", ctx->cache_key, ctx->world);
    if (!qr->fingerprint) return -1;
    int done = qckpt_load(qr);
    if (done < 0) return -1;
    qr->layer = done;
    if (done) log_info("resuming after layer %d of %d from the in-stage checkpoint", done - 1, cfg.n_layers);
    return 0;
}

static int quantize_run(stage_ctx *ctx) {
    qrun qr;
    memset(&qr, 0, sizeof qr);
    qr.ctx = ctx;
    const char *model_path = NULL;
    int rc = qagree(ctx, qrun_setup(&qr, &model_path));
    if (!rc) rc = qpass_run(&qr);
    if (!rc && ctx->rank == 0) rc = qout_write(ctx->output_dirs[0], &qr, model_path);
    qrun_free(&qr);
    return rc;
}

const stage_kind stage_kind_quantize = {
    .name = "quantize",
    .version = 1,
    .summary = "quantize a model's linears: RTN, GPTQ, QuantEase, SmoothQuant W8A8, FP8 (calibration sharded over ranks)",
    .params = quantize_params,
    .outputs = quantize_outputs,
    .supports_ranks = 1,
    .copy_inputs = 0,
    .run = quantize_run,
};
