/* train.c: the `train` stage kind: teacher fine-tuning (SFT), distillation (forward/reverse KL,
 * JSD, on-policy or sequence-level) and re-distillation after pruning, one kind with different
 * losses and teachers. Its parameter schema, the checks made before any work (teacher and student
 * vocabularies, loss terms against the teacher, selection against the validation split), the
 * training loop with in-stage checkpoints, metrics and progress, and the output model. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "common/fsutil.h"
#include "common/log.h"
#include "kernels/threads.h"
#include "stages/train/dp.h"
#include "stages/train/train.h"

static const char *const arch_choices[] = {"llama", "qwen2", NULL};
static const char *const schedule_choices[] = {"cosine", "linear", "constant", NULL};
static const char *const select_choices[] = {"last", "best_valid_loss", NULL};
static const char *const sampler_choices[] = {"student", "teacher", NULL};
static const char *const dtype_choices[] = {"float32", "bfloat16", "float16", NULL};
static const char *const precision_choices[] = {"fp32", "bf16", NULL};
static const char *const long_choices[] = {"refuse", "cut", NULL};
static const char *const norm_choices[] = {"batch", "sequence", NULL};
static const char *const policy_ce_choices[] = {"data", "sampled", NULL};

static const param_spec arch_fields[] = {
    {.name = "arch", .type = P_STRING, .required = 1, .choices = arch_choices, .help = "llama or qwen2 (qkv bias)"},
    {.name = "hidden", .type = P_INT, .required = 1, .has_min = 1, .min = 1, .has_max = 1, .max = 65536, .help = "hidden size"},
    {.name = "layers", .type = P_INT, .required = 1, .has_min = 1, .min = 1, .has_max = 1, .max = MODEL_MAX_LAYERS,
     .help = "decoder layers"},
    {.name = "heads", .type = P_INT, .required = 1, .has_min = 1, .min = 1, .has_max = 1, .max = 1024, .help = "attention heads"},
    {.name = "kv_heads", .type = P_INT, .def = "0", .has_min = 1, .min = 0, .has_max = 1, .max = 1024,
     .help = "key/value heads (0: heads)"},
    {.name = "intermediate", .type = P_INT, .required = 1, .has_min = 1, .min = 1, .has_max = 1, .max = 1 << 20,
     .help = "MLP width"},
    {.name = "head_dim", .type = P_INT, .def = "0", .has_min = 1, .min = 0, .has_max = 1, .max = 1024,
     .help = "head dimension (0: hidden / heads)"},
    {.name = "rope_theta", .type = P_FLOAT, .def = "10000", .has_min = 1, .min = 1, .help = "RoPE base"},
    {.name = "rms_eps", .type = P_FLOAT, .def = "1.0e-5", .has_min = 1, .min = 1e-12, .has_max = 1, .max = 1,
     .help = "RMSNorm epsilon"},
    {.name = "tie_embeddings", .type = P_BOOL, .def = "true", .help = "the LM head is the embedding"},
    {.name = "max_positions", .type = P_INT, .def = "0", .has_min = 1, .min = 0,
     .help = "max_position_embeddings (0: max(seq_len, 2048))"},
    {.name = "init_std", .type = P_FLOAT, .def = "0", .has_min = 1, .min = 0, .has_max = 1, .max = 10,
     .help = "standard deviation of the random matrices (0: 1/sqrt(fan-in))"},
    {.name = NULL},
};
static const param_spec model_alts[] = {
    {.name = "stage", .type = P_REF, .help = "a stage's model output"},
    {.name = "path", .type = P_PATH, .help = "a Hugging Face folder, a GGUF file or a llama2.c .bin"},
    {.name = NULL},
};
static const param_spec layer_index = {.name = "layer", .type = P_INT, .has_min = 1, .min = 0, .has_max = 1,
                                       .max = MODEL_MAX_LAYERS - 1};
static const param_spec from_fields[] = {
    {.name = "from", .type = P_UNION, .required = 1, .alts = model_alts,
     .help = "the model whose layers the student keeps: a stage's model or a checkpoint path"},
    {.name = "layers", .type = P_LIST, .required = 1, .elem = &layer_index, .min_items = 1, .increasing = 1,
     .help = "the layers kept, strictly increasing ([0, 2, 4, ...]); embeddings, final norm and head are copied"},
    {.name = NULL},
};
static const param_spec init_alts[] = {
    {.name = "stage", .type = P_REF, .help = "a stage's model output"},
    {.name = "path", .type = P_PATH, .help = "a Hugging Face folder, a GGUF file or a llama2.c .bin"},
    {.name = "arch", .type = P_MAP, .fields = arch_fields, .help = "{arch, hidden, layers, heads, ...}: a seeded random model"},
    {.name = "from", .type = P_MAP, .fields = from_fields, .help = "{from: MODEL, layers: [...]}: a student of some layers"},
    {.name = NULL},
};
static const param_spec loss_fields[] = {
    {.name = "ce", .type = P_FLOAT, .def = "0", .has_min = 1, .min = 0, .help = "cross-entropy against the data"},
    {.name = "fkl", .type = P_FLOAT, .def = "0", .has_min = 1, .min = 0, .help = "forward KL(teacher || student)"},
    {.name = "rkl", .type = P_FLOAT, .def = "0", .has_min = 1, .min = 0, .help = "reverse KL(student || teacher)"},
    {.name = "jsd", .type = P_FLOAT, .def = "0", .has_min = 1, .min = 0, .help = "generalized Jensen-Shannon"},
    {.name = "jsd_beta", .type = P_FLOAT, .def = "0.5", .has_min = 1, .min = 0, .has_max = 1, .max = 1,
     .help = "JSD mixture weight in [0, 1]: 0 is forward KL and 1 reverse KL, exactly"},
    {.name = "tvd", .type = P_FLOAT, .def = "0", .has_min = 1, .min = 0, .help = "total variation distance"},
    {.name = "skl", .type = P_FLOAT, .def = "0", .has_min = 1, .min = 0,
     .help = "skew KL(teacher || a teacher + (1-a) student)"},
    {.name = "srkl", .type = P_FLOAT, .def = "0", .has_min = 1, .min = 0,
     .help = "skew reverse KL(student || a student + (1-a) teacher)"},
    {.name = "skew_alpha", .type = P_FLOAT, .def = "0.1", .has_min = 1, .min = 0, .has_max = 1, .max = 0.99,
     .help = "a of skl and srkl"},
    {.name = "prompt_weight", .type = P_FLOAT, .def = "0", .has_min = 1, .min = 0, .has_max = 1, .max = 0.999,
     .help = "share of the loss on prompt tokens"},
    {.name = "prompt_norm", .type = P_STRING, .def = "batch", .choices = norm_choices,
     .help = "batch: mean over the batch's prompt tokens; sequence: each sequence's prompt mean, then their mean"},
    {.name = "temperature", .type = P_FLOAT, .def = "1", .has_min = 1, .min = 0.01, .has_max = 1, .max = 100,
     .help = "temperature of the divergences (x T^2)"},
    {.name = NULL},
};
static const param_spec optim_fields[] = {
    {.name = "lr", .type = P_FLOAT, .def = "1.0e-3", .has_min = 1, .min = 0, .help = "peak learning rate"},
    {.name = "warmup", .type = P_INT, .def = "0", .has_min = 1, .min = 0, .help = "linear warmup steps"},
    {.name = "schedule", .type = P_STRING, .def = "cosine", .choices = schedule_choices, .help = "decay after warmup"},
    {.name = "min_lr_ratio", .type = P_FLOAT, .def = "0", .has_min = 1, .min = 0, .has_max = 1, .max = 1,
     .help = "floor of the decay, as a fraction of lr"},
    {.name = "weight_decay", .type = P_FLOAT, .def = "0", .has_min = 1, .min = 0, .help = "decoupled weight decay"},
    {.name = "beta1", .type = P_FLOAT, .def = "0.9", .has_min = 1, .min = 0, .has_max = 1, .max = 0.999999},
    {.name = "beta2", .type = P_FLOAT, .def = "0.999", .has_min = 1, .min = 0, .has_max = 1, .max = 0.999999999},
    {.name = "eps", .type = P_FLOAT, .def = "1.0e-8", .has_min = 1, .min = 0},
    {.name = "clip", .type = P_FLOAT, .def = "1.0", .has_min = 1, .min = 0, .help = "max gradient norm (0: none)"},
    {.name = "decay_all", .type = P_BOOL, .def = "false", .help = "decay norms and biases too"},
    {.name = NULL},
};
static const param_spec policy_fields[] = {
    {.name = "fraction", .type = P_FLOAT, .def = "0", .has_min = 1, .min = 0, .has_max = 1, .max = 1,
     .help = "share of steps trained on sampled continuations"},
    {.name = "max_new_tokens", .type = P_INT, .def = "64", .has_min = 1, .min = 1, .has_max = 1, .max = 1 << 20},
    {.name = "temperature", .type = P_FLOAT, .def = "0.9", .has_min = 1, .min = 0, .has_max = 1, .max = 100},
    {.name = "top_p", .type = P_FLOAT, .def = "1.0", .has_min = 1, .min = 0.001, .has_max = 1, .max = 1},
    {.name = "sampled_by", .type = P_STRING, .def = "student", .choices = sampler_choices,
     .help = "student: on-policy distillation; teacher: sequence-level distillation"},
    {.name = "ce", .type = P_STRING, .def = "data", .choices = policy_ce_choices,
     .help = "data: CE on the data batch's answers (FMCHISEL); sampled: CE on the sampled tokens"},
    {.name = NULL},
};

static const param_spec train_params[] = {
    {.name = "data", .type = P_REF, .required = 1, .help = "a data stage"},
    {.name = "init", .type = P_UNION, .required = 1, .alts = init_alts,
     .help = "a stage's model, a checkpoint path, {arch: ...} for a random model, or {from: MODEL, layers: [...]}"},
    {.name = "teacher", .type = P_UNION, .alts = model_alts, .help = "a stage's model or a checkpoint path"},
    {.name = "loss", .type = P_MAP, .def = "{ce: 1.0}", .fields = loss_fields, .help = "weights of the loss terms"},
    {.name = "optim", .type = P_MAP, .def = "{}", .fields = optim_fields, .help = "AdamW and its schedule"},
    {.name = "steps", .type = P_INT, .def = "0", .has_min = 1, .min = 0, .help = "optimizer steps (or epochs)"},
    {.name = "epochs", .type = P_INT, .def = "0", .has_min = 1, .min = 0, .help = "passes over the split (or steps)"},
    {.name = "batch_tokens", .type = P_INT, .def = "0", .has_min = 1, .min = 0,
     .help = "tokens per step (0 with batch_size 0: 8192)"},
    {.name = "batch_size", .type = P_INT, .def = "0", .has_min = 1, .min = 0, .help = "examples per step"},
    {.name = "seq_len", .type = P_INT, .def = "0", .has_min = 1, .min = 0, .has_max = 1, .max = 1 << 20,
     .help = "longest sequence (0: the data's longest example); longer ranking examples drop old history lines"},
    {.name = "long_examples", .type = P_STRING, .def = "refuse", .choices = long_choices,
     .help = "generative examples longer than seq_len: refuse (an error counting them) or cut into pieces"},
    {.name = "micro_batch_tokens", .type = P_INT, .def = "0", .has_min = 1, .min = 0,
     .help = "tokens per forward/backward (0: min(batch, 4096), at least seq_len)"},
    {.name = "split", .type = P_STRING, .def = "train", .help = "the split trained on"},
    {.name = "shuffle", .type = P_BOOL, .def = "true", .help = "a new seeded order every epoch"},
    {.name = "select", .type = P_STRING, .def = "last", .choices = select_choices, .help = "which weights are the output"},
    {.name = "valid_split", .type = P_STRING, .def = "valid", .help = "the split of the validation loss"},
    {.name = "valid_examples", .type = P_INT, .def = "256", .has_min = 1, .min = 0,
     .help = "validation examples (0: no validation)"},
    {.name = "valid_every", .type = P_INT, .def = "0", .has_min = 1, .min = 0, .help = "steps between validations (0: steps/10)"},
    {.name = "checkpoint_every", .type = P_INT, .def = "100", .has_min = 1, .min = 0,
     .help = "steps between in-stage checkpoints (0: none)"},
    {.name = "on_policy", .type = P_MAP, .def = "{}", .fields = policy_fields, .help = "sampled continuations"},
    {.name = "save_dtype", .type = P_STRING, .def = "float32", .choices = dtype_choices, .help = "dtype of the output"},
    {.name = "precision", .type = P_STRING, .def = "fp32", .choices = precision_choices,
     .help = "products in fp32, or bf16 with fp32 sums (mixed precision: fp32 weights, optimizer and losses)"},
    {.name = NULL},
};

static const stage_output_spec train_outputs[] = {
    {.name = "model", .kind = "model"},
    {.name = NULL},
};

int train_opts_parse(train_opts *o, const cJSON *p) {
    memset(o, 0, sizeof *o);
    const char *sched, *sel, *by, *dt, *lg, *pn, *pce, *prec;
    int64_t warmup, max_new, seq_len;
    int decay_all;
    if (param_string(p, "split", &o->split) || param_string(p, "valid_split", &o->valid_split) ||
        param_int(p, "seq_len", &seq_len) || param_int(p, "steps", &o->steps) || param_int(p, "epochs", &o->epochs) ||
        param_int(p, "batch_tokens", &o->batch_tokens) || param_int(p, "batch_size", &o->batch_size) ||
        param_int(p, "micro_batch_tokens", &o->micro_tokens) || param_bool(p, "shuffle", &o->shuffle) ||
        param_string(p, "select", &sel) || param_int(p, "valid_examples", &o->valid_examples) ||
        param_int(p, "valid_every", &o->valid_every) || param_int(p, "checkpoint_every", &o->checkpoint_every) ||
        param_string(p, "save_dtype", &dt) || param_string(p, "long_examples", &lg) || param_float(p, "loss.ce", &o->loss.ce) ||
        param_float(p, "loss.fkl", &o->loss.fkl) || param_float(p, "loss.rkl", &o->loss.rkl) ||
        param_float(p, "loss.jsd", &o->loss.jsd) || param_float(p, "loss.jsd_beta", &o->loss.beta) ||
        param_float(p, "loss.tvd", &o->loss.tvd) || param_float(p, "loss.skl", &o->loss.skl) ||
        param_float(p, "loss.srkl", &o->loss.srkl) || param_float(p, "loss.skew_alpha", &o->loss.alpha) ||
        param_float(p, "loss.prompt_weight", &o->loss.prompt_weight) || param_string(p, "loss.prompt_norm", &pn) ||
        param_string(p, "on_policy.ce", &pce) ||
        param_float(p, "loss.temperature", &o->loss.temperature) || param_float(p, "optim.lr", &o->optim.schedule.lr) ||
        param_int(p, "optim.warmup", &warmup) || param_string(p, "optim.schedule", &sched) ||
        param_float(p, "optim.min_lr_ratio", &o->optim.schedule.min_lr_ratio) ||
        param_float(p, "optim.weight_decay", &o->optim.weight_decay) || param_float(p, "optim.beta1", &o->optim.beta1) ||
        param_float(p, "optim.beta2", &o->optim.beta2) || param_float(p, "optim.eps", &o->optim.eps) ||
        param_float(p, "optim.clip", &o->optim.clip) || param_bool(p, "optim.decay_all", &decay_all) ||
        param_float(p, "on_policy.fraction", &o->policy.fraction) ||
        param_int(p, "on_policy.max_new_tokens", &max_new) ||
        param_float(p, "on_policy.temperature", &o->policy.temperature) ||
        param_float(p, "on_policy.top_p", &o->policy.top_p) || param_string(p, "on_policy.sampled_by", &by) ||
        param_string(p, "precision", &prec) || model_precision_parse(prec, &o->precision))
        return -1;
    o->seq_len = (int)seq_len; /* 0: resolved from the data (fit_data) */
    o->long_examples = !strcmp(lg, "cut") ? LONG_CUT : LONG_REFUSE;
    o->loss.prompt_norm = !strcmp(pn, "sequence") ? PROMPT_NORM_SEQUENCE : PROMPT_NORM_BATCH;
    o->policy.ce_sampled = !strcmp(pce, "sampled");
    o->optim.decay_all = decay_all;
    o->optim.schedule.warmup = (long)warmup;
    o->optim.schedule.kind = !strcmp(sched, "cosine") ? LR_COSINE : !strcmp(sched, "linear") ? LR_LINEAR : LR_CONSTANT;
    o->select_best = !strcmp(sel, "best_valid_loss");
    o->policy.max_new_tokens = (int)max_new;
    o->policy.by_teacher = !strcmp(by, "teacher");
    o->save_dtype = !strcmp(dt, "bfloat16") ? ST_BF16 : !strcmp(dt, "float16") ? ST_F16 : ST_F32;
    if ((o->steps > 0) == (o->epochs > 0))
        return err_set(ERR_INPUT, "set exactly one of steps and epochs (found steps %lld, epochs %lld)",
                       (long long)o->steps, (long long)o->epochs);
    if (o->batch_tokens > 0 && o->batch_size > 0)
        return err_set(ERR_INPUT, "set batch_tokens or batch_size, not both (found %lld and %lld)",
                       (long long)o->batch_tokens, (long long)o->batch_size);
    if (o->batch_tokens == 0 && o->batch_size == 0) o->batch_tokens = 8192;
    if (!(o->loss.ce > 0) && !loss_has_divergence(&o->loss))
        return err_set(ERR_INPUT, "the loss has no term: give loss.ce or a divergence (fkl, rkl, jsd, tvd, skl, srkl) a "
                       "positive weight");
    if (o->seq_len > 0 && o->policy.fraction > 0 && o->policy.max_new_tokens >= o->seq_len)
        return err_set(ERR_INPUT, "on_policy.max_new_tokens %d leaves no room for a prompt in seq_len %d; lower it",
                       o->policy.max_new_tokens, o->seq_len);
    return 0;
}

/* seq_len (0: the longest example of the training split and of the validation examples used; with
 * on-policy steps at least the longest prompt + max_new_tokens), then every example fitted to it
 * (fit_units): refusals are errors before any weight is read, and the log always says how many
 * training examples were truncated. */
static int fit_data(trainer *t, int64_t n_valid) {
    train_opts *o = &t->o;
    stage_ctx *ctx = t->ctx;
    const int sampled = o->policy.fraction > 0;
    if (t->train.n_examples < 1)
        return err_set(ERR_INPUT, "split %s has no examples; the data stage produced an empty split (more members or "
                       "a smaller validation/test fraction)", t->train.name);
    if (o->seq_len == 0) {
        int64_t longest = 2;
        for (int64_t i = 0; i < t->train.n_examples; i++) {
            const ds_example *e = &t->train.ex[i];
            if (e->n_tokens > longest) longest = e->n_tokens;
            if (sampled && e->answer_pos + o->policy.max_new_tokens > longest)
                longest = e->answer_pos + o->policy.max_new_tokens;
        }
        for (int64_t i = 0; i < n_valid; i++)
            if (t->valid.ex[i].n_tokens > longest) longest = t->valid.ex[i].n_tokens;
        o->seq_len = (int)longest;
        log_info("seq_len %d: the longest training or validation example%s", o->seq_len,
                 sampled ? " (or prompt + on_policy.max_new_tokens)" : "");
    }
    if (sampled && o->policy.max_new_tokens >= o->seq_len)
        return err_set(ERR_INPUT, "on_policy.max_new_tokens %d leaves no room for a prompt in seq_len %d; lower it",
                       o->policy.max_new_tokens, o->seq_len);
    if (o->batch_tokens > 0 && o->batch_tokens < o->seq_len)
        log_warn("batch_tokens %lld is below seq_len %d: batches hold one example", (long long)o->batch_tokens, o->seq_len);
    fit_stats vs, *st = &t->fit;
    if (fit_units(&t->units, &t->n_units, st, &t->train, t->train.n_examples, o->seq_len, o->long_examples,
                  t->ds.bos_id) ||
        fit_units(&t->valid_units, &t->n_valid_units, &vs, &t->valid, n_valid, o->seq_len, o->long_examples, t->ds.bos_id))
        return -1;
    if (st->refused || vs.refused) {
        const fit_stats *f = st->refused ? st : &vs;
        const ds_split *sp = st->refused ? &t->train : &t->valid;
        return err_set(ERR_INPUT, "%lld training and %lld validation examples are longer than seq_len %d and cannot be "
                       "shortened by leaving out history lines (the first: example %lld of split %s, %u tokens); %s",
                       (long long)st->refused, (long long)vs.refused, o->seq_len, (long long)f->first_refused, sp->name,
                       sp->ex[f->first_refused].n_tokens,
                       f->refused_ranking ? "raise seq_len (0: the longest example) or lower the data stage's max_tokens"
                                          : "raise seq_len (0: the longest example), or set long_examples: cut to cut "
                                            "them into pieces");
    }
    if (sampled)
        for (int64_t i = 0; i < t->train.n_examples; i++) {
            seq_unit u;
            if (!fit_prompt(&u, &t->train, i, o->seq_len - o->policy.max_new_tokens))
                return err_set(ERR_INPUT, "the prompt of training example %lld (%u tokens) does not fit seq_len - "
                               "on_policy.max_new_tokens = %d tokens even without history; raise seq_len or lower "
                               "max_new_tokens", (long long)i, t->train.ex[i].answer_pos,
                               o->seq_len - o->policy.max_new_tokens);
        }
    if (sampled && st->cut)
        return err_set(ERR_INPUT, "on_policy samples from each example's prompt, but %lld examples were cut into pieces "
                       "(long_examples: cut); raise seq_len or set long_examples: refuse", (long long)st->cut);
    const int64_t truncated = st->fitted + st->cut;
    char line[256];
    snprintf(line, sizeof line, "training examples: %lld (longest %d tokens), seq_len %d: %lld truncated (%lld left out "
             "%lld of their oldest history lines, %lld cut into %lld pieces)", (long long)st->examples, st->longest,
             o->seq_len, (long long)truncated, (long long)st->fitted, (long long)st->lines_dropped, (long long)st->cut,
             (long long)st->pieces);
    if (ctx->rank == 0 && truncated) log_warn("%s", line);
    else if (ctx->rank == 0) log_info("%s", line);
    return stage_metric(ctx, "seq_len", 0, o->seq_len) || stage_metric(ctx, "truncated_examples", 0, (double)truncated) ||
                   stage_metric(ctx, "history_lines_dropped", 0, (double)st->lines_dropped) ||
                   stage_metric(ctx, "cut_examples", 0, (double)st->cut)
               ? -1
               : 0;
}

/* Where a model parameter (init or teacher) points: the stage input's folder or a path; NULL when
 * the parameter is absent or a map. */
static int resolve_model_path(stage_ctx *ctx, const char *name, const char **path) {
    *path = NULL;
    stage_input *in = stage_input_get(ctx, name);
    if (in) return stage_input_dir(ctx, in, path);
    const cJSON *v = param_get(ctx->params, name);
    if (cJSON_IsString(v)) *path = v->valuestring;
    return 0;
}

/* init.layers of the {from, layers} form into keep (at most MODEL_MAX_LAYERS entries). */
static int read_layer_list(const cJSON *params, int *keep, int *n) {
    const cJSON *l = param_get(params, "init.layers"), *e;
    *n = 0;
    if (!cJSON_IsArray(l)) return err_set(ERR_INPUT, "init.layers must list the layers kept, e.g. [0, 2, 4]");
    cJSON_ArrayForEach(e, l) {
        if (*n == MODEL_MAX_LAYERS)
            return err_set(ERR_INPUT, "init.layers lists more than %d layers; keep fewer", MODEL_MAX_LAYERS);
        keep[(*n)++] = (int)e->valuedouble;
    }
    return 0;
}

static void trainer_free(trainer *t) {
    teacher_close(&t->teacher);
    kv_cache_free(&t->gen_kv);
    if (t->have_opt) optim_free(&t->opt);
    if (t->have_model) model_free(&t->m);
    stream_free(&t->stream);
    free(t->units), free(t->valid_units);
    batch_plan_free(&t->plan);
    batch_plan_free(&t->valid_plan);
    seq_set_free(&t->local);
    seq_set_free(&t->sampled);
    free(t->rows.targets), free(t->rows.kind), free(t->rows.w_ce), free(t->rows.w_div);
    free(t->sel), free(t->hsel), free(t->dsel), free(t->dhid), free(t->best), free(t->fingerprint);
    if (t->have_valid) ds_split_close(&t->valid);
    if (t->have_train) ds_split_close(&t->train);
    if (t->have_ds) dataset_close(&t->ds);
}

/* Everything before the first step: data, configs and their checks, models, buffers, resume. */
static int trainer_setup(trainer *t) {
    stage_ctx *ctx = t->ctx;
    train_opts *o = &t->o;
    if (train_opts_parse(o, ctx->params)) return -1;
    t->seed = (uint64_t)ctx->seed;
    const char *data_dir, *init_path, *teacher_path;
    stage_input *din = stage_input_get(ctx, "data");
    if (!din) return err_set(ERR_INPUT, "parameter data must name a data stage");
    if (stage_input_dir(ctx, din, &data_dir) || dataset_open(&t->ds, data_dir)) return err_prefix("data: ");
    t->have_ds = 1;
    if (dataset_split_open(&t->ds, o->split, &t->train)) return err_prefix("data: ");
    t->have_train = 1;
    if (o->valid_examples > 0 && dataset_split_info(&t->ds, o->valid_split) &&
        dataset_split_info(&t->ds, o->valid_split)->examples > 0) {
        if (dataset_split_open(&t->ds, o->valid_split, &t->valid)) return err_prefix("data: ");
        t->have_valid = 1;
    }
    if (o->select_best && !t->have_valid)
        return err_set(ERR_INPUT, "select: best_valid_loss needs validation, but the data has no non-empty '%s' split "
                       "(or valid_examples is 0); use select: last or give the data stage a validation split",
                       o->valid_split);
    const int64_t n_valid = !t->have_valid ? 0 : o->valid_examples < t->valid.n_examples ? o->valid_examples
                                                                                          : t->valid.n_examples;
    if (fit_data(t, n_valid)) return -1;

    /* configs first: mismatches are errors before any weight is read */
    model_config scfg, tcfg;
    if (resolve_model_path(ctx, "init", &init_path) || resolve_model_path(ctx, "teacher", &teacher_path)) return -1;
    int keep[MODEL_MAX_LAYERS], n_keep = -1; /* init: {from, layers}: the layers kept (n_keep >= 0) */
    if (!init_path && param_get(ctx->params, "init.from")) {
        if (resolve_model_path(ctx, "init.from", &init_path) || read_layer_list(ctx->params, keep, &n_keep)) return -1;
        model_config full;
        if (train_read_config(init_path, &full)) return err_prefix("init.from %s: ", init_path);
        if (train_layers_config(&scfg, &full, keep, n_keep)) return err_prefix("init.from %s: ", init_path);
    } else if (init_path) {
        if (train_read_config(init_path, &scfg)) return err_prefix("init %s: ", init_path);
    } else if (train_config_from_arch(&scfg, param_get(ctx->params, "init"), &t->ds, o->seq_len)) {
        return -1;
    }
    if (scfg.vocab < t->ds.vocab)
        return err_set(ERR_INPUT, "the student has a vocabulary of %d but the data's tokenizer has %d tokens; train a "
                       "model made for this tokenizer", scfg.vocab, t->ds.vocab);
    t->has_teacher = teacher_path != NULL;
    if (t->has_teacher) {
        if (train_read_config(teacher_path, &tcfg)) return err_prefix("teacher %s: ", teacher_path);
        /* heads of different sizes that both cover the tokenizer (one padded, as Qwen2.5-7B's 152,064 rows
         * against 1.5B's 151,936) compare the tokenizer's ids only */
        if (tcfg.vocab < t->ds.vocab)
            return err_set(ERR_INPUT, "the teacher (%s) has a vocabulary of %d tokens but the data's tokenizer has %d: "
                           "distillation compares distributions over the tokenizer's ids; use a teacher made for this "
                           "tokenizer", teacher_path, tcfg.vocab, t->ds.vocab);
        if (tcfg.vocab != scfg.vocab && ctx->rank == 0)
            log_info("teacher head %d rows, student head %d: the divergences compare the tokenizer's %d ids, the rows "
                     "beyond them are padding and are left out", tcfg.vocab, scfg.vocab, t->ds.vocab);
        if (!loss_has_divergence(&o->loss))
            return err_set(ERR_INPUT, "a teacher is given but the loss has no divergence; set loss.fkl, loss.rkl, loss.jsd, "
                           "loss.tvd, loss.skl or loss.srkl (or remove teacher)");
    } else {
        if (loss_has_divergence(&o->loss))
            return err_set(ERR_INPUT, "loss.fkl/rkl/jsd/tvd/skl/srkl need a teacher; set teacher: to a stage or a "
                           "checkpoint path");
        if (o->policy.fraction > 0)
            return err_set(ERR_INPUT, "on_policy needs a teacher to score the sampled tokens; set teacher:");
    }

    /* threads: the cores of this host shared among its ranks */
    const char *local = getenv("OMPI_COMM_WORLD_LOCAL_SIZE");
    int per_host = local && atoi(local) > 0 ? atoi(local) : 1;
    if (per_host > 1) {
        int n = kernels_set_threads(0) / per_host;
        kernels_set_threads(n > 0 ? n : 1);
    }

    /* models */
    if (n_keep >= 0) {
        if (train_init_layers(&t->m, init_path, keep, n_keep)) return err_prefix("init.from: ");
    } else if (init_path) {
        if (train_load_model(&t->m, init_path)) return -1;
    } else {
        double std;
        if (param_float(ctx->params, "init.init_std", &std) || train_init_random(&t->m, &scfg, std, t->seed)) return -1;
    }
    t->have_model = 1;
    if (t->has_teacher && teacher_open(&t->teacher, teacher_path, o->seq_len)) return -1;
    /* mixed precision: bf16 products over the student's fp32 weights; the teacher only runs
     * forward, so it keeps bf16 copies of its weights (converted once) */
    const int prec = model_set_precision(&t->m, o->precision, 0);
    if (prec < 0 || (t->has_teacher && model_set_precision(&t->teacher.m, o->precision, 1) < 0)) return -1;
    if (o->precision == MODEL_BF16 && prec != MODEL_BF16 && ctx->rank == 0)
        log_warn("precision bf16: this CPU has no AVX512_BF16; training runs in fp32");
    if (stage_metric(ctx, "bf16", 0, prec == MODEL_BF16)) return -1;
    const int64_t batch_cap = o->batch_tokens > 0 ? o->batch_tokens : o->batch_size * o->seq_len;
    int64_t micro = o->micro_tokens > 0 ? o->micro_tokens : (batch_cap < 4096 ? batch_cap : 4096);
    if (micro < o->seq_len) micro = o->seq_len;
    t->micro_tokens = (int)micro;
    log_info("student: %zu parameters (%s, hidden %d, %d layers); %s; micro-batches of %d tokens (%.1f MB of "
             "activations); %d threads", model_n_params(&t->m.cfg), t->m.cfg.model_type, t->m.cfg.hidden,
             t->m.cfg.n_layers, t->has_teacher ? "teacher loaded (forward only)" : "no teacher", t->micro_tokens,
             model_train_act_bytes(&t->m.cfg, t->micro_tokens) / 1e6, kernels_threads());
    if (model_reserve_train(&t->m, t->micro_tokens)) return -1;
    if (o->policy.fraction > 0 && !o->policy.by_teacher && kv_cache_init(&t->gen_kv, &t->m.cfg, o->seq_len)) return -1;
    const size_t H = (size_t)t->m.cfg.hidden, M = (size_t)t->micro_tokens;
    t->rows.targets = xmalloc(sizeof(int) * M);
    t->rows.kind = xmalloc(M);
    t->rows.w_ce = xmalloc(sizeof(float) * M);
    t->rows.w_div = xmalloc(sizeof(float) * M);
    t->sel = xmalloc(sizeof(int) * M);
    t->hsel = xmalloc(sizeof(float) * M * H);
    t->dsel = xmalloc(sizeof(float) * M * H);
    t->dhid = xmalloc(sizeof(float) * M * H);
    if (!t->rows.targets || !t->rows.kind || !t->rows.w_ce || !t->rows.w_div || !t->sel || !t->hsel || !t->dsel || !t->dhid)
        return -1;
    if (o->select_best && !(t->best = xmalloc(sizeof(float) * t->m.w.n_floats))) return -1;

    /* the data stream and the schedule's length */
    if (stream_init(&t->stream, t->units, t->n_units, o->batch_tokens, o->batch_size, t->seed, o->shuffle)) return -1;
    t->total_steps = o->steps;
    if (o->epochs > 0 && stream_steps_for_epochs(&t->stream, o->epochs, &t->total_steps)) return -1;
    if (t->have_valid) {
        if (batch_plan_units(&t->valid_plan, t->valid_units, t->n_valid_units)) return -1;
        if (o->valid_every == 0) o->valid_every = t->total_steps / 10 > 0 ? t->total_steps / 10 : 1;
    }
    o->optim.schedule.total = (long)t->total_steps;
    o->policy.vocab = t->ds.vocab; /* sampling draws the tokenizer's ids only */
    if (optim_init(&t->opt, &t->m, &o->optim)) return -1;
    t->have_opt = 1;

    /* resume */
    t->prog.rng = t->seed;
    t->fingerprint = xasprintf("%s/%zu", ctx->cache_key, t->m.w.n_floats);
    if (!t->fingerprint) return -1;
    int loaded = state_load(ctx->checkpoint_dir, &t->prog, &t->m, &t->opt, t->best, t->fingerprint);
    if (loaded < 0) return -1;
    if (loaded) log_info("resuming from the in-stage checkpoint of step %lld of %lld", (long long)t->prog.step,
                         (long long)t->total_steps);
    return 0;
}

static int record_metrics(trainer *t, const char *prefix, int64_t step, const pass_result *r) {
    stage_ctx *ctx = t->ctx;
    const loss_config *lc = &t->o.loss;
    char k[64];
    snprintf(k, sizeof k, "%sloss", prefix);
    if (stage_metric(ctx, k, step, r->loss)) return -1;
    for (int i = 0; i < TERM_COUNT; i++) {
        int64_t n = i == TERM_CE ? r->sums.n_answer_ce : r->sums.n_answer;
        if (n == 0 || (i != TERM_CE && !(loss_term_weight(lc, i) > 0 && t->has_teacher))) continue;
        snprintf(k, sizeof k, "%s%s", prefix, loss_term_name(i));
        if (stage_metric(ctx, k, step, r->sums.answer[i] / (double)n)) return -1;
    }
    if (lc->prompt_weight > 0 && r->sums.n_prompt > 0) {
        const double *s = r->sums.prompt;
        double div = 0;
        for (int i = TERM_FKL; i < TERM_COUNT; i++) div += loss_term_weight(lc, i) * s[i];
        double v = t->has_teacher ? div / (double)r->sums.n_prompt
                                  : lc->ce * s[TERM_CE] / (double)(r->sums.n_prompt_ce ? r->sums.n_prompt_ce : 1);
        snprintf(k, sizeof k, "%sprompt_loss", prefix);
        if (stage_metric(ctx, k, step, v)) return -1;
    }
    return 0;
}

static int validate_and_select(trainer *t, int64_t step) {
    pass_result vr;
    if (train_validate(t, &vr)) return -1;
    if (t->ctx->rank == 0) log_info("step %lld: valid loss %.5f", (long long)step, vr.loss);
    if (record_metrics(t, "valid_", step, &vr)) return -1;
    if (t->best && (!t->prog.have_best || vr.loss < t->prog.best_loss)) {
        t->prog.have_best = 1;
        t->prog.best_loss = vr.loss;
        t->prog.best_step = step;
        memcpy(t->best, t->m.w.mem, sizeof(float) * t->m.w.n_floats);
    }
    return 0;
}

static int write_output(trainer *t) {
    stage_ctx *ctx = t->ctx;
    if (t->best && t->prog.have_best) memcpy(t->m.w.mem, t->best, sizeof(float) * t->m.w.n_floats);
    if (train_save_model(ctx->output_dirs[0], &t->m, &t->ds, t->o.save_dtype)) return -1;
    /* a summary of how the weights were made (deterministic: no timings) */
    char *path = fs_join(ctx->output_dirs[0], "smelt_train.json");
    const int64_t sel_step = t->best && t->prog.have_best ? t->prog.best_step : t->prog.step;
    char *json = xasprintf("{\n  \"steps\": %lld,\n  \"selected_step\": %lld,\n  \"select\": \"%s\",\n  \"tokens\": %lld,\n"
                           "  \"teacher\": %s\n}\n", (long long)t->prog.step, (long long)sel_step,
                           t->o.select_best ? "best_valid_loss" : "last", (long long)t->prog.tokens_seen,
                           t->has_teacher ? "true" : "false");
    int rc = (!path || !json) ? -1 : fs_write_atomic(path, json, strlen(json));
    free(path), free(json);
    if (!rc) rc = stage_metric(ctx, "selected_step", 0, (double)sel_step);
    if (!rc) rc = stage_metric(ctx, "params", 0, (double)model_n_params(&t->m.cfg));
    return rc;
}

static int train_run(stage_ctx *ctx) {
    trainer t;
    memset(&t, 0, sizeof t);
    t.ctx = ctx;
    int rc = train_agree(&t, trainer_setup(&t));
    progress pg;
    if (!rc && ctx->rank == 0) progress_start(&pg, ctx->stage, t.total_steps);
    const int64_t every = t.o.checkpoint_every;
    while (!rc && t.prog.step < t.total_steps) {
        pass_result r;
        double t0 = time_monotonic();
        rc = train_step(&t, &r);
        if (rc) break;
        const int64_t step = t.prog.step;
        double dt = time_monotonic() - t0, tps = dt > 0 ? (double)r.tokens / dt : 0;
        if (ctx->rank == 0) {
            rc = record_metrics(&t, "", step, &r) || stage_metric(ctx, "lr", step, t.opt.last_lr) ||
                 stage_metric(ctx, "grad_norm", step, t.opt.last_grad_norm) ||
                 stage_metric(ctx, "tokens_per_s", step, tps) ||
                 stage_metric(ctx, "answer_tokens", step, (double)r.sums.n_answer) ||
                 stage_metric(ctx, "sequences", step, t.plan.n);
            char extra[128];
            snprintf(extra, sizeof extra, "loss %.4f  lr %.2e  %.0f tok/s", r.loss, t.opt.last_lr, tps);
            progress_update(&pg, step, extra);
        }
        rc = train_agree(&t, rc);
        if (!rc && t.have_valid && (step % t.o.valid_every == 0 || step == t.total_steps))
            rc = validate_and_select(&t, step);
        if (!rc && every > 0 && step % every == 0 && step < t.total_steps) {
            /* the metrics up to the checkpoint are stored BEFORE it: a resumed attempt recomputes only later
             * ones, so a kill between the two must not leave a checkpoint without its metrics (a kill before
             * the checkpoint recomputes those steps, and INSERT OR REPLACE stores the same values again) */
            int wrc = ctx->rank == 0 ? stage_metrics_flush(ctx) ||
                                           state_save(ctx->checkpoint_dir, &t.prog, &t.m, &t.opt, t.best, t.fingerprint)
                                     : 0;
            rc = train_agree(&t, wrc);
        }
    }
    if (!rc && ctx->rank == 0) {
        char extra[64];
        snprintf(extra, sizeof extra, "%lld steps", (long long)t.prog.step);
        progress_finish(&pg, extra);
        rc = write_output(&t);
    }
    trainer_free(&t);
    return rc;
}

const stage_kind stage_kind_train = {
    .name = "train",
    .version = 2,
    .summary = "fine-tune or distill a model (CE, forward/reverse KL, JSD; on-policy; MPI data parallel)",
    .params = train_params,
    .outputs = train_outputs,
    .supports_ranks = 1,
    .copy_inputs = 0,
    .run = train_run,
};
