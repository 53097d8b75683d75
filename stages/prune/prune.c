/* prune.c: the `prune` stage kind: its parameter schema, the checks made before any work (the
 * model's architecture, the sizes asked against every layer, the calibration set's role, tokenizer
 * and lengths), and the run: the layer-by-layer pass with a checkpoint after each layer, the
 * metrics, and the physically smaller model written as a Hugging Face folder. */
#include <math.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "common/error.h"
#include "common/fsutil.h"
#include "common/log.h"
#include "common/strbuf.h"
#include "kernels/threads.h"
#include "stages/data/dataset.h"
#include "stages/prune/prune.h"
#include "stages/stage.h"
#include "stages/train/train.h"

static const char *const method_choices[] = {"osscar", "magnitude", "activation", NULL};
static const char *const order_choices[] = {"together", "attention_first", NULL};
static const char *const inputs_choices[] = {"pruned", "dense", NULL};
static const char *const dtype_choices[] = {"float32", "bfloat16", "float16", NULL};

static const param_spec model_alts[] = {
    {.name = "stage", .type = P_REF, .help = "a stage whose main output is a model"},
    {.name = "path", .type = P_PATH, .help = "a Hugging Face folder or a llama2.c .bin (write ./x for a path)"},
    {.name = NULL},
};
static const param_spec mlp_fields[] = {
    {.name = "remove", .type = P_INT, .def = "0", .has_min = 1, .min = 0, .help = "MLP neurons to remove in every layer"},
    {.name = "keep_ratio", .type = P_FLOAT, .has_min = 1, .min = 0, .has_max = 1, .max = 1,
     .help = "or: the fraction of each layer's neurons to keep, in (0, 1)"},
    {.name = NULL},
};
static const param_spec attention_fields[] = {
    {.name = "remove_kv_groups", .type = P_INT, .def = "0", .has_min = 1, .min = 0,
     .help = "KV groups (a kv head with its query heads) to remove in every layer"},
    {.name = NULL},
};
static const param_spec ls_fields[] = {
    {.name = "iterations", .type = P_INT, .def = "0", .has_min = 1, .min = 0,
     .help = "at most this many improving swaps per layer and projection (0: no local search)"},
    {.name = NULL},
};
static const param_spec layer_fields[] = {
    {.name = "mlp", .type = P_INT, .def = "-1", .has_min = 1, .min = -1, .help = "neurons to remove (-1: mlp.*)"},
    {.name = "kv_groups", .type = P_INT, .def = "-1", .has_min = 1, .min = -1,
     .help = "KV groups to remove (-1: attention.remove_kv_groups)"},
    {.name = NULL},
};
static const param_spec layer_elem = {.name = "layer", .type = P_MAP, .fields = layer_fields};

static const param_spec prune_params[] = {
    {.name = "model", .type = P_UNION, .required = 1, .alts = model_alts, .help = "the model pruned"},
    {.name = "calibration", .type = P_REF, .required = 1, .help = "a data stage's calibration output (data.calibration)"},
    {.name = "method", .type = P_STRING, .def = "osscar", .choices = method_choices,
     .help = "osscar, or a baseline: magnitude (smallest weight norms), activation (smallest activation-weighted norms)"},
    {.name = "mlp", .type = P_MAP, .def = "{}", .fields = mlp_fields, .help = "{remove: N} or {keep_ratio: r}"},
    {.name = "attention", .type = P_MAP, .def = "{}", .fields = attention_fields, .help = "{remove_kv_groups: N}"},
    {.name = "damp", .type = P_FLOAT, .def = "0.01", .has_min = 1, .min = 0, .help = "λ = damp · mean(diag H)"},
    {.name = "update_every", .type = P_INT, .def = "1", .has_min = 1, .min = 1,
     .help = "groups removed per greedy step (1: most accurate)"},
    {.name = "local_search", .type = P_MAP, .def = "{}", .fields = ls_fields, .help = "{iterations: N}"},
    {.name = "per_layer", .type = P_LIST, .def = "[]", .elem = &layer_elem,
     .help = "one {mlp, kv_groups} per layer: how many to remove there"},
    {.name = "order", .type = P_STRING, .def = "together", .choices = order_choices,
     .help = "together: down_proj's H with the layer's attention unpruned (FMCHISEL); attention_first: through the "
             "pruned attention"},
    {.name = "inputs", .type = P_STRING, .def = "pruned", .choices = inputs_choices,
     .help = "pruned: each layer's calibration inputs pass through the layers already pruned; dense: through the "
             "unpruned ones (every method then solves the same per-layer problems)"},
    {.name = "refit", .type = P_BOOL, .def = "true", .help = "baselines: re-fit the kept weights (OSSCAR always does)"},
    {.name = "chunk_tokens", .type = P_INT, .def = "4096", .has_min = 1, .min = 1,
     .help = "calibration tokens per forward chunk"},
    {.name = "save_dtype", .type = P_STRING, .def = "float32", .choices = dtype_choices, .help = "dtype of the output"},
    {.name = NULL},
};

static const stage_output_spec prune_outputs[] = {
    {.name = "model", .kind = "model"},
    {.name = NULL},
};

typedef struct {
    stage_ctx *ctx;
    prune_opts o;
    st_dtype save_dtype;
    const char *model_path;
    model_config cfg;
    dataset ds;
    ds_split cal;
    int have_ds, have_cal, have_model;
    model m;
    layerwise *lw;
    prune_masks mk;
    prune_layer_stats stats[MODEL_MAX_LAYERS];
    int *tokens, *lens, n_seqs; /* this rank's calibration shard */
    size_t params_before;
    char *fingerprint;
} pruner;

static void pruner_free(pruner *p) {
    layerwise_close(p->lw);
    prune_masks_free(&p->mk);
    if (p->have_model) model_free(&p->m);
    if (p->have_cal) ds_split_close(&p->cal);
    if (p->have_ds) dataset_close(&p->ds);
    free(p->tokens), free(p->lens), free(p->fingerprint);
}

/* The counts to remove per layer, checked against the model's sizes. */
static int parse_plan(pruner *p) {
    const cJSON *prm = p->ctx->params;
    const model_config *c = &p->cfg;
    int64_t mlp_remove, kv_remove;
    if (param_int(prm, "mlp.remove", &mlp_remove) || param_int(prm, "attention.remove_kv_groups", &kv_remove)) return -1;
    const cJSON *kr = param_get(prm, "mlp.keep_ratio");
    double keep_ratio = cJSON_IsNumber(kr) ? kr->valuedouble : -1;
    if (kr && !(keep_ratio > 0 && keep_ratio < 1))
        return err_set(ERR_INPUT, "mlp.keep_ratio is %g; it must be strictly between 0 and 1 (the fraction of each "
                       "layer's neurons kept)", keep_ratio);
    if (kr && mlp_remove > 0)
        return err_set(ERR_INPUT, "set mlp.remove or mlp.keep_ratio, not both (found %lld and %g)", (long long)mlp_remove,
                       keep_ratio);
    const cJSON *pl = param_get(prm, "per_layer");
    const int n_pl = cJSON_IsArray(pl) ? cJSON_GetArraySize(pl) : 0;
    if (n_pl && n_pl != c->n_layers)
        return err_set(ERR_INPUT, "per_layer has %d entries but the model has %d layers; give one {mlp, kv_groups} per "
                       "layer (-1 keeps the global value)", n_pl, c->n_layers);
    int any = 0;
    for (int l = 0; l < c->n_layers; l++) {
        const layer_config *lc = &c->layers[l];
        int64_t mr = kr ? lc->intermediate - (int64_t)llround(keep_ratio * lc->intermediate) : mlp_remove, kv = kv_remove;
        if (n_pl) {
            const cJSON *e = cJSON_GetArrayItem(pl, l);
            const cJSON *a = cJSON_GetObjectItemCaseSensitive(e, "mlp"), *b = cJSON_GetObjectItemCaseSensitive(e, "kv_groups");
            if (cJSON_IsNumber(a) && a->valuedouble >= 0) mr = (int64_t)a->valuedouble;
            if (cJSON_IsNumber(b) && b->valuedouble >= 0) kv = (int64_t)b->valuedouble;
        }
        if (mr >= lc->intermediate)
            return err_set(ERR_INPUT, "removing %lld MLP neurons from layer %d, which has %d, would leave none; remove at "
                           "most %d (mlp.remove, mlp.keep_ratio or per_layer)", (long long)mr, l, lc->intermediate,
                           lc->intermediate - 1);
        if (kv >= lc->n_kv_heads)
            return err_set(ERR_INPUT, "removing %lld KV groups from layer %d, which has %d (%d kv heads, %d query heads), "
                           "would leave none; remove at most %d (attention.remove_kv_groups or per_layer)", (long long)kv,
                           l, lc->n_kv_heads, lc->n_kv_heads, lc->n_heads, lc->n_kv_heads - 1);
        p->o.plan[l] = (prune_plan_layer){(int)mr, (int)kv};
        any |= mr > 0 || kv > 0;
    }
    if (!any)
        return err_set(ERR_INPUT, "nothing to prune: set mlp.remove, mlp.keep_ratio, attention.remove_kv_groups or "
                       "per_layer");
    return 0;
}

static int parse_opts(pruner *p) {
    const cJSON *prm = p->ctx->params;
    const char *method, *order, *dt, *inputs;
    int64_t upd, ls, chunk;
    int refit;
    if (param_string(prm, "method", &method) || param_string(prm, "order", &order) || param_string(prm, "inputs", &inputs) ||
        param_string(prm, "save_dtype", &dt) || param_float(prm, "damp", &p->o.solver.damp) ||
        param_int(prm, "update_every", &upd) || param_int(prm, "local_search.iterations", &ls) ||
        param_int(prm, "chunk_tokens", &chunk) || param_bool(prm, "refit", &refit))
        return -1;
    p->o.solver.method = !strcmp(method, "magnitude") ? PRUNE_MAGNITUDE
                         : !strcmp(method, "activation") ? PRUNE_ACTIVATION : PRUNE_OSSCAR;
    p->o.solver.update_every = (int)upd;
    p->o.solver.ls_iterations = (int)ls;
    p->o.solver.refit = refit;
    p->o.solver.want_error = 1;
    p->o.order = !strcmp(order, "attention_first") ? PRUNE_ORDER_ATTENTION_FIRST : PRUNE_ORDER_TOGETHER;
    p->o.dense_inputs = !strcmp(inputs, "dense");
    p->o.chunk_tokens = (int)chunk;
    p->save_dtype = !strcmp(dt, "bfloat16") ? ST_BF16 : !strcmp(dt, "float16") ? ST_F16 : ST_F32;
    if (ls > 0 && p->o.solver.method != PRUNE_OSSCAR)
        return err_set(ERR_INPUT, "local_search applies to method osscar only (method is %s)", method);
    return 0;
}

/* The calibration set: a data stage's calibration output, tokenized for this model. */
static int check_calibration(pruner *p) {
    stage_ctx *ctx = p->ctx;
    stage_input *in = stage_input_get(ctx, "calibration");
    const char *dir;
    if (!in) return err_set(ERR_INPUT, "calibration must name a data stage's calibration output (data.calibration)");
    if (stage_input_dir(ctx, in, &dir) || dataset_open(&p->ds, dir)) return err_prefix("calibration: ");
    p->have_ds = 1;
    if (strcmp(p->ds.role, "calibration"))
        return err_set(ERR_INPUT, "calibration: '%s%s%s' is a data set (role %s), not a calibration set; name the data "
                       "stage's calibration output: calibration: %s.calibration", in->from_stage,
                       strcmp(in->from_output, "output") ? "." : "", strcmp(in->from_output, "output") ? in->from_output : "",
                       p->ds.role, in->from_stage);
    if (dataset_split_open(&p->ds, "calibration", &p->cal)) return err_prefix("calibration: ");
    p->have_cal = 1;
    if (p->cal.n_examples < 1)
        return err_set(ERR_INPUT, "the calibration set is empty; give the data stage calibration: {samples: N}");
    const model_config *c = &p->cfg;
    if (p->ds.vocab > c->vocab)
        return err_set(ERR_INPUT, "the calibration set was tokenized with a tokenizer of %d tokens but the model has a "
                       "vocabulary of %d: it was built with another tokenizer; build it with the model's tokenizer",
                       p->ds.vocab, c->vocab);
    /* the model's own tokenizer (beside it in a folder: a train stage's output carries its data set's;
     * inside a GGUF file) must be the one the calibration set was built with */
    tokenizer *mt = NULL, *dt = NULL;
    const size_t pl = strlen(p->model_path);
    const int may_have = fs_is_dir(p->model_path) || (pl > 5 && !strcmp(p->model_path + pl - 5, ".gguf"));
    if (may_have && tokenizer_load(&mt, p->model_path) == 0) {
        int rc = dataset_tokenizer_load(&p->ds, &dt);
        const int32_t n = rc ? 0 : tokenizer_vocab_size(mt);
        if (!rc && n != tokenizer_vocab_size(dt))
            rc = err_set(ERR_INPUT, "the calibration set was built with a tokenizer of %d tokens, the model's tokenizer "
                         "(%s) has %d; build the calibration set with the model's tokenizer", tokenizer_vocab_size(dt),
                         tokenizer_source(mt), n);
        for (int32_t id = 0; id < n && !rc; id++) {
            size_t la, lb;
            const char *a = tokenizer_piece(mt, id, &la), *b = tokenizer_piece(dt, id, &lb);
            if ((a == NULL) != (b == NULL) || la != lb || (a && memcmp(a, b, la)))
                rc = err_set(ERR_INPUT, "the calibration set was built with another tokenizer than the model's (%s): token "
                             "%d is '%.*s' there and '%.*s' for the model; build the calibration set with the model's "
                             "tokenizer", tokenizer_source(mt), id, (int)(lb < 40 ? lb : 40), b ? b : "",
                             (int)(la < 40 ? la : 40), a ? a : "");
        }
        tokenizer_free(mt), tokenizer_free(dt);
        if (rc) return -1;
    } else {
        err_clear();
        if (ctx->rank == 0)
            log_info("no tokenizer beside the model: checked only that the calibration tokens fit its vocabulary");
    }
    int64_t longest = 0;
    for (int64_t i = 0; i < p->cal.n_examples; i++)
        if (p->cal.ex[i].n_tokens > longest) longest = p->cal.ex[i].n_tokens;
    if (c->max_pos > 0 && longest > c->max_pos)
        return err_set(ERR_INPUT, "a calibration example has %lld tokens but the model allows %d positions; build the "
                       "calibration set with max_tokens <= %d", (long long)longest, c->max_pos, c->max_pos);
    return 0;
}

/* This rank's shard of the calibration examples: [rank n / world, (rank + 1) n / world). */
static int take_shard(pruner *p) {
    const stage_ctx *ctx = p->ctx;
    const int64_t n = p->cal.n_examples, e0 = n * ctx->rank / ctx->world, e1 = n * (ctx->rank + 1) / ctx->world;
    if (e1 <= e0)
        return err_set(ERR_INPUT, "%d ranks for %lld calibration examples: rank %d has none; use fewer ranks", ctx->world,
                       (long long)n, ctx->rank);
    int64_t nt = 0;
    for (int64_t i = e0; i < e1; i++) nt += p->cal.ex[i].n_tokens;
    p->n_seqs = (int)(e1 - e0);
    p->tokens = xmalloc(sizeof(int) * (size_t)nt);
    p->lens = xmalloc(sizeof(int) * (size_t)p->n_seqs);
    if (!p->tokens || !p->lens) return -1;
    int64_t o = 0;
    for (int64_t i = e0; i < e1; i++) {
        const int32_t *t = ds_example_tokens(&p->cal, i);
        for (uint32_t k = 0; k < p->cal.ex[i].n_tokens; k++) p->tokens[o++] = t[k];
        p->lens[i - e0] = (int)p->cal.ex[i].n_tokens;
    }
    return 0;
}

/* Everything before the first layer: options, checks, the model, the shard, the resume point. */
static int pruner_setup(pruner *p, int *first_layer) {
    stage_ctx *ctx = p->ctx;
    if (parse_opts(p)) return -1;
    stage_input *min = stage_input_get(ctx, "model");
    if (min ? stage_input_dir(ctx, min, &p->model_path) : param_string(ctx->params, "model", &p->model_path)) return -1;
    if (train_read_config(p->model_path, &p->cfg) || config_validate(&p->cfg))
        return err_prefix("model %s: prune needs a Llama-family model (self_attn.q/k/v/o_proj and mlp.gate/up/down_proj "
                          "in every layer): ", p->model_path);
    if (parse_plan(p) || check_calibration(p)) return -1;
    const char *local = getenv("OMPI_COMM_WORLD_LOCAL_SIZE");
    const int per_host = local && atoi(local) > 0 ? atoi(local) : 1;
    if (per_host > 1) {
        const int nt = kernels_set_threads(0) / per_host;
        kernels_set_threads(nt > 0 ? nt : 1);
    }
    if (train_load_model(&p->m, p->model_path)) return -1;
    p->have_model = 1;
    p->params_before = model_n_params(&p->m.cfg);
    if (prune_masks_init(&p->mk, &p->m.cfg) || take_shard(p)) return -1;
    if (layerwise_open(&p->lw, &p->m, p->tokens, p->lens, p->n_seqs, p->o.chunk_tokens)) return err_prefix("calibration: ");
    if (ctx->rank == 0)
        log_info("pruning %s (%zu parameters, %d layers) with %s on %lld calibration examples (%lld tokens on rank 0 of "
                 "%d); %d threads", p->model_path, p->params_before, p->m.cfg.n_layers,
                 prune_method_name(p->o.solver.method), (long long)p->cal.n_examples,
                 (long long)layerwise_tokens(p->lw), ctx->world, kernels_threads());
    /* resume: the layers with a checkpoint, then the stream (from its file, or recomputed through them) */
    p->fingerprint = xasprintf("%s", ctx->cache_key);
    if (!p->fingerprint) return -1;
    int done = ctx->rank == 0 ? prune_ckpt_layers(ctx->checkpoint_dir, p->fingerprint, &p->m) : 0;
    if (prune_agree(done < 0, ctx->world)) return -1;
    if (ctx->world > 1 && MPI_Bcast(&done, 1, MPI_INT, 0, MPI_COMM_WORLD) != MPI_SUCCESS)
        return err_set(ERR_IO, "MPI_Bcast of the resume layer failed");
    int s = done > 0 ? prune_ckpt_load_stream(ctx->checkpoint_dir, p->fingerprint, p->lw, &p->m, ctx->rank, ctx->world,
                                              done)
                     : 0;
    if (s < 0) return -1;
    /* the stream is recomputed through the layers the pass moved it through: the pruned ones, or with
     * inputs: dense the unpruned ones (before the checkpointed weights replace them) */
    for (int l = s; l < done && p->o.dense_inputs; l++)
        if (layerwise_advance(p->lw)) return -1;
    for (int l = 0; l < done; l++)
        if (prune_ckpt_load_layer(ctx->checkpoint_dir, p->fingerprint, &p->m, &p->mk, &p->stats[l], l)) return -1;
    for (int l = s; l < done && !p->o.dense_inputs; l++)
        if (layerwise_advance(p->lw)) return -1;
    if (done > 0 && ctx->rank == 0)
        log_info("resuming at layer %d of %d: layers 0..%d from the in-stage checkpoint (stream restored at layer %d)",
                 done, p->m.cfg.n_layers, done - 1, s);
    *first_layer = done;
    return 0;
}

static int layer_metrics(pruner *p, int l) {
    stage_ctx *ctx = p->ctx;
    const prune_layer_stats *st = &p->stats[l];
    const int ls = p->o.solver.method == PRUNE_OSSCAR && p->o.solver.ls_iterations > 0;
    int rc = 0;
    if (p->o.plan[l].mlp > 0) {
        rc |= stage_metric(ctx, "rel_error_mlp", l, st->rel_error_mlp);
        rc |= stage_metric(ctx, "groups_removed_mlp", l, st->removed_mlp);
        if (ls) rc |= stage_metric(ctx, "rel_error_mlp_greedy", l, st->rel_error_mlp_greedy) ||
                      stage_metric(ctx, "ls_swaps_mlp", l, st->swaps_mlp);
    }
    if (p->o.plan[l].kv > 0) {
        rc |= stage_metric(ctx, "rel_error_attn", l, st->rel_error_attn);
        rc |= stage_metric(ctx, "groups_removed_attn", l, st->removed_attn);
        if (ls) rc |= stage_metric(ctx, "rel_error_attn_greedy", l, st->rel_error_attn_greedy) ||
                      stage_metric(ctx, "ls_swaps_attn", l, st->swaps_attn);
    }
    rc |= stage_metric(ctx, "seconds", l, st->seconds);
    return rc ? -1 : 0;
}

/* A test hook: SMELT_PRUNE_TEST_PAUSE=stage:layer makes rank 0 wait in the middle of that layer
 * (its Gram matrices gathered, its weights not yet changed), announcing it with a file, so that a
 * test can kill -9 the stage there. */
static void test_pause(void *hook_ctx, int l) {
    const stage_ctx *ctx = hook_ctx;
    const char *e = getenv("SMELT_PRUNE_TEST_PAUSE"), *colon = e ? strrchr(e, ':') : NULL;
    if (!colon || ctx->rank != 0 || (size_t)(colon - e) != strlen(ctx->stage) || strncmp(e, ctx->stage, colon - e) ||
        atoi(colon + 1) != l)
        return;
    char *f = xasprintf("%s/paused-at-%d", ctx->checkpoint_dir, l);
    if (f && !fs_write_atomic(f, "", 0)) {
        log_info("SMELT_PRUNE_TEST_PAUSE: waiting before layer %d", l);
        for (int i = 0; i < 600; i++) usleep(100000);
    }
    free(f);
}

/* The output: the shrunk model with the calibration set's tokenizer, smelt_prune.json, totals. */
static int write_output(pruner *p) {
    stage_ctx *ctx = p->ctx;
    model out;
    memset(&out, 0, sizeof out);
    if (prune_shrink(&out.cfg, &out.w, &p->m, &p->mk)) return -1;
    int rc = train_save_model(ctx->output_dirs[0], &out, &p->ds, p->save_dtype);
    cJSON *root = cJSON_CreateObject(), *layers = cJSON_AddArrayToObject(root, "layers");
    cJSON_AddStringToObject(root, "method", prune_method_name(p->o.solver.method));
    cJSON_AddStringToObject(root, "order", p->o.order == PRUNE_ORDER_TOGETHER ? "together" : "attention_first");
    for (int l = 0; l < p->m.cfg.n_layers; l++) {
        const layer_config *lc = &p->m.cfg.layers[l];
        cJSON *e = cJSON_CreateObject(), *neurons = cJSON_AddArrayToObject(e, "kept_neurons"),
              *groups = cJSON_AddArrayToObject(e, "kept_kv_groups");
        cJSON_AddNumberToObject(e, "intermediate", out.cfg.layers[l].intermediate);
        cJSON_AddNumberToObject(e, "kv_heads", out.cfg.layers[l].n_kv_heads);
        for (int j = 0; j < lc->intermediate; j++)
            if (p->mk.mlp[l][j]) cJSON_AddItemToArray(neurons, cJSON_CreateNumber(j));
        for (int g = 0; g < lc->n_kv_heads; g++)
            if (p->mk.kv[l][g]) cJSON_AddItemToArray(groups, cJSON_CreateNumber(g));
        cJSON_AddItemToArray(layers, e);
    }
    char *json = cJSON_PrintUnformatted(root), *path = fs_join(ctx->output_dirs[0], "smelt_prune.json");
    if (!rc) rc = json && path ? fs_write_atomic(path, json, strlen(json)) : -1;
    free(json), free(path);
    cJSON_Delete(root);
    /* totals: parameters, and the mean relative errors over the pruned layers */
    double sm = 0, sa = 0;
    int nm = 0, na = 0;
    for (int l = 0; l < p->m.cfg.n_layers; l++) {
        if (p->o.plan[l].mlp > 0) sm += p->stats[l].rel_error_mlp, nm++;
        if (p->o.plan[l].kv > 0) sa += p->stats[l].rel_error_attn, na++;
    }
    if (!rc) rc = stage_metric(ctx, "params", 0, (double)model_n_params(&out.cfg)) ||
                  stage_metric(ctx, "params_before", 0, (double)p->params_before);
    if (!rc && nm) rc = stage_metric(ctx, "rel_error_mlp_mean", 0, sm / nm);
    if (!rc && na) rc = stage_metric(ctx, "rel_error_attn_mean", 0, sa / na);
    if (!rc)
        log_info("pruned model: %zu parameters (%zu before, %.1f%%); mean relative error: MLP %.4g, attention %.4g",
                 model_n_params(&out.cfg), p->params_before, 100.0 * model_n_params(&out.cfg) / p->params_before,
                 nm ? sm / nm : 0.0, na ? sa / na : 0.0);
    weights_free(&out.w);
    return rc ? -1 : 0;
}

static int prune_run(stage_ctx *ctx) {
    pruner p;
    memset(&p, 0, sizeof p);
    p.ctx = ctx;
    p.o.after_capture = test_pause;
    p.o.hook_ctx = ctx;
    const double t0 = time_monotonic();
    int first = 0;
    int rc = prune_agree(pruner_setup(&p, &first), ctx->world);
    const int n_layers = rc ? 0 : p.m.cfg.n_layers;
    progress pg;
    memset(&pg, 0, sizeof pg);
    if (!rc && ctx->rank == 0) {
        progress_start(&pg, ctx->stage, n_layers);
        for (int l = 0; l < first && !rc; l++) rc = layer_metrics(&p, l); /* idempotent: points are upserted */
    }
    for (int l = first; l < n_layers && !rc; l++) {
        rc = prune_layer(&p.m, p.lw, &p.mk, &p.stats[l], &p.o, ctx->rank, ctx->world);
        if (rc) break;
        if (ctx->rank == 0) {
            const prune_layer_stats *st = &p.stats[l];
            char extra[160], mlp[64] = "", attn[64] = ""; /* only the parts pruned (an unpruned one's error is NaN) */
            if (st->removed_mlp) snprintf(mlp, sizeof mlp, ", MLP -%d (err %.3g)", (int)st->removed_mlp, st->rel_error_mlp);
            if (st->removed_attn)
                snprintf(attn, sizeof attn, ", KV groups -%d (err %.3g)", (int)st->removed_attn, st->rel_error_attn);
            snprintf(extra, sizeof extra, "layer %d%s%s", l, mlp, attn);
            progress_update(&pg, l + 1, extra);
            rc = layer_metrics(&p, l);
            if (!rc) rc = prune_ckpt_save_layer(ctx->checkpoint_dir, p.fingerprint, &p.m, &p.mk, st, l);
        }
        rc = prune_agree(rc, ctx->world);
        if (!rc && l + 1 < n_layers)
            rc = prune_agree(prune_ckpt_save_stream(ctx->checkpoint_dir, p.fingerprint, p.lw, &p.m, ctx->rank, ctx->world),
                             ctx->world);
        if (!rc && ctx->rank == 0) rc = stage_metrics_flush(ctx);
    }
    if (!rc && ctx->rank == 0) {
        progress_finish(&pg, "done");
        rc = write_output(&p);
        struct rusage ru;
        getrusage(RUSAGE_SELF, &ru);
        if (!rc) rc = stage_metric(ctx, "seconds_total", 0, time_monotonic() - t0) ||
                      stage_metric(ctx, "peak_rss_mib", 0, ru.ru_maxrss / 1024.0);
    }
    pruner_free(&p);
    return rc;
}

const stage_kind stage_kind_prune = {
    .name = "prune",
    .version = 1,
    .summary = "structured pruning of MLP neurons and attention KV groups (OSSCAR; magnitude and activation baselines)",
    .params = prune_params,
    .outputs = prune_outputs,
    .supports_ranks = 1,
    .copy_inputs = 0,
    .run = prune_run,
};
