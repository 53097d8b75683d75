/* evaluate.c: the `evaluate` stage kind: a model (a stage's model artifact, an external Hugging
 * Face folder or a llama2.c file) and a data artifact in; per-task AUC, mean AUC, log loss and
 * response loss / perplexity out as metrics, metrics.json and predictions.tsv; deltas against a
 * `reference:` evaluate stage. With ranks: N, whole groups of examples are sharded over the MPI
 * ranks, scored independently and gathered on rank 0, so the result equals one rank's. */
#include <math.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "common/fsutil.h"
#include "common/log.h"
#include "common/strbuf.h"
#include "model/model_load.h"
#include "model/qmodel.h"
#include "stages/evaluate/auc.h"
#include "stages/evaluate/evaluate.h"
#include "stages/evaluate/score.h"
#include "stages/stage.h"

static const param_spec model_alts[] = {
    {.name = "stage", .type = P_REF, .help = "a stage whose main output is a model"},
    {.name = "path", .type = P_PATH, .help = "a Hugging Face folder, .safetensors or llama2.c .bin (write ./x for a path)"},
    {.name = NULL},
};
static const param_spec data_alts[] = {
    {.name = "stage", .type = P_REF, .help = "a data stage (or stage.calibration)"},
    {.name = "path", .type = P_PATH, .help = "a data artifact folder (smelt checkout)"},
    {.name = NULL},
};

static const char *const precision_choices[] = {"fp32", "bf16", NULL};

static const param_spec evaluate_params[] = {
    {.name = "model", .type = P_UNION, .required = 1, .alts = model_alts, .help = "the model evaluated"},
    {.name = "data", .type = P_UNION, .required = 1, .alts = data_alts, .help = "the data set"},
    {.name = "split", .type = P_STRING, .def = "test", .help = "the split scored (test, valid, train, calibration)"},
    {.name = "reference", .type = P_REF, .help = "an evaluate stage to report deltas against"},
    {.name = "prefix_cache", .type = P_BOOL, .def = "true",
     .help = "prefill each member's shared prefix once and reuse it for its candidates"},
    {.name = "max_examples", .type = P_INT, .def = "0", .has_min = 1, .min = 0,
     .help = "score only the first N examples (0: all)"},
    {.name = "precision", .type = P_STRING, .def = "fp32", .choices = precision_choices,
     .help = "fp32, or bf16 weights and products with fp32 sums"},
    {.name = NULL},
};

static const stage_output_spec evaluate_outputs[] = {
    {.name = "output", .kind = "evaluation"},
    {.name = NULL},
};

/* The directory or path a union parameter names: a materialized input, or the external path. */
static int resolve_input(stage_ctx *ctx, const char *name, const char **path, char digest[SHA256_HEX_LEN + 1]) {
    stage_input *in = stage_input_get(ctx, name);
    if (in) {
        if (digest) memcpy(digest, in->digest, SHA256_HEX_LEN + 1);
        return stage_input_dir(ctx, in, path);
    }
    if (param_string(ctx->params, name, path)) return -1;
    if (digest && store_content_digest(*path, digest)) return -1;
    return 0;
}

/* Group-aligned shard boundaries: rank r scores [b[r], b[r+1]). */
static void shard_bounds(const ds_split *s, int64_t n, int world, int64_t *b) {
    b[0] = 0;
    for (int r = 1; r < world; r++) {
        int64_t t = n * r / world, g = b[r - 1];
        while (g < t) g = ds_group_end(s, g);
        b[r] = g < n ? g : n;
    }
    b[world] = n;
}

/* Gathers each rank's slice of the three arrays into rank 0's full arrays. */
static int gather(stage_ctx *ctx, const int64_t *b, double *margin, double *nll, int32_t *nt) {
    int W = ctx->world, *cnt = xmalloc((size_t)W * sizeof *cnt), *dsp = xmalloc((size_t)W * sizeof *dsp);
    int rc = -1;
    if (!cnt || !dsp) goto out;
    for (int r = 0; r < W; r++) {
        if (b[r + 1] - b[r] > INT32_MAX || b[r] > INT32_MAX) {
            err_set(ERR_INPUT, "evaluate: more than 2^31 examples per rank; use max_examples");
            goto out;
        }
        cnt[r] = (int)(b[r + 1] - b[r]);
        dsp[r] = (int)b[r];
    }
    int me = ctx->rank, n = cnt[me];
    void *sb0 = me == 0 ? MPI_IN_PLACE : margin + b[me], *sb1 = me == 0 ? MPI_IN_PLACE : nll + b[me],
         *sb2 = me == 0 ? MPI_IN_PLACE : nt + b[me];
    if (MPI_Gatherv(sb0, n, MPI_DOUBLE, margin, cnt, dsp, MPI_DOUBLE, 0, MPI_COMM_WORLD) != MPI_SUCCESS ||
        MPI_Gatherv(sb1, n, MPI_DOUBLE, nll, cnt, dsp, MPI_DOUBLE, 0, MPI_COMM_WORLD) != MPI_SUCCESS ||
        MPI_Gatherv(sb2, n, MPI_INT32_T, nt, cnt, dsp, MPI_INT32_T, 0, MPI_COMM_WORLD) != MPI_SUCCESS) {
        err_set(ERR_STAGE, "MPI_Gatherv of the scores failed on rank %d", me);
        goto out;
    }
    rc = 0;
out:
    free(cnt);
    free(dsp);
    return rc;
}

/* One line per example: the margin z_yes - z_no (what the AUC ranks, full precision), the score
 * sigmoid(margin) for reading, the summed NLL of its targets and their count. */
static int write_predictions(const char *dir, const ds_split *s, int64_t n, const double *margin, const double *nll,
                             const int32_t *nt) {
    strbuf sb = STRBUF_INIT;
    sb_puts(&sb, "index\tgroup\tmember\titem\ttask\tlabel\tmargin\tscore\tnll\ttargets\n");
    for (int64_t i = 0; i < n; i++) {
        const ds_example *e = &s->ex[i];
        char item[16] = "-";
        if (e->item != DS_NO_ITEM) snprintf(item, sizeof item, "%u", e->item);
        if (sb_printf(&sb, "%lld\t%u\t%u\t%s\t%u\t%d\t%.17g\t%.9g\t%.17g\t%d\n", (long long)i, e->group, e->member,
                      item, e->task, e->label, margin[i], score_p_yes(margin[i]), nll[i], nt[i])) {
            sb_free(&sb);
            return -1;
        }
    }
    char *path = fs_join(dir, "predictions.tsv");
    int rc = !path || fs_write_atomic(path, sb_str(&sb), sb.len);
    free(path);
    sb_free(&sb);
    return rc ? -1 : 0;
}

static int load_reference(stage_ctx *ctx, cJSON **ref) {
    *ref = NULL;
    stage_input *in = stage_input_get(ctx, "reference");
    if (!in) return 0;
    char *path = NULL, *text = NULL;
    int rc = store_artifact_file(ctx->st, in->digest, "metrics.json", &path);
    if (rc) return err_prefix("reference %s: is it an evaluate stage? ", in->from_stage);
    rc = fs_read_file(path, 64u << 20, &text, NULL);
    if (!rc && !(*ref = cJSON_Parse(text)))
        rc = err_set(ERR_CORRUPT, "reference %s: metrics.json is not JSON", in->from_stage);
    free(path);
    free(text);
    return rc;
}

typedef struct {
    dataset ds;
    ds_split s;
    model m;
    int have_ds, have_model;
    cJSON *ref;
    char data_digest[SHA256_HEX_LEN + 1];
    int64_t n, *b;
    double *margin, *nll, secs;
    int32_t *nt;
    int bf16; /* the precision in effect */
} eval_state;

static void state_free(eval_state *st) {
    cJSON_Delete(st->ref);
    free(st->b);
    free(st->margin);
    free(st->nll);
    free(st->nt);
    if (st->have_model) model_free(&st->m);
    ds_split_close(&st->s);
    if (st->have_ds) dataset_close(&st->ds);
}

/* Everything a rank does on its own: load, shard, score its slice. */
static int prepare_and_score(stage_ctx *ctx, eval_state *st) {
    const char *model_path, *data_dir, *split_name, *prec_name;
    int64_t max_examples;
    int share;
    model_precision prec;
    if (param_string(ctx->params, "split", &split_name) || param_int(ctx->params, "max_examples", &max_examples) ||
        param_bool(ctx->params, "prefix_cache", &share) || param_string(ctx->params, "precision", &prec_name) ||
        model_precision_parse(prec_name, &prec))
        return -1;
    if (resolve_input(ctx, "model", &model_path, NULL) || resolve_input(ctx, "data", &data_dir, st->data_digest))
        return -1;
    if (dataset_open(&st->ds, data_dir)) return -1;
    st->have_ds = 1;
    if (dataset_split_open(&st->ds, split_name, &st->s) || load_reference(ctx, &st->ref)) return -1;
    if (model_load(&st->m, model_path)) return err_prefix("loading the model: ");
    st->have_model = 1;
    const int eff = model_set_precision(&st->m, prec, 1); /* bf16: weights stored as bf16 copies */
    if (eff < 0) return -1;
    if (prec == MODEL_BF16 && eff != MODEL_BF16 && ctx->rank == 0)
        log_warn("precision bf16: this CPU has no AVX512_BF16; scoring runs in fp32");
    st->bf16 = eff == MODEL_BF16;
    int64_t n = max_examples > 0 && max_examples < st->s.n_examples ? max_examples : st->s.n_examples;
    st->n = n;
    st->b = xmalloc((size_t)(ctx->world + 1) * sizeof *st->b);
    st->margin = xmalloc((size_t)(n ? n : 1) * sizeof *st->margin);
    st->nll = xmalloc((size_t)(n ? n : 1) * sizeof *st->nll);
    st->nt = xmalloc((size_t)(n ? n : 1) * sizeof *st->nt);
    if (!st->b || !st->margin || !st->nll || !st->nt) return -1;
    shard_bounds(&st->s, n, ctx->world, st->b);
    int64_t lo = st->b[ctx->rank], hi = st->b[ctx->rank + 1];
    score_opts so = {.share_prefix = share, .yes_id = st->ds.yes_id, .no_id = st->ds.no_id};
    score_out out = {st->margin + lo, st->nll + lo, st->nt + lo};
    log_info("rank %d: scoring examples %lld..%lld of %lld (split %s) with %s%s, prefix cache %s", ctx->rank,
             (long long)lo, (long long)hi, (long long)n, split_name, model_path,
             model_is_quantized(&st->m) ? " (quantized)" : "", share ? "on" : "off");
    double t0 = time_monotonic();
    int rc = score_split(&st->m, &st->s, lo, hi, &so, &out);
    st->secs = time_monotonic() - t0;
    return rc;
}

static int evaluate_run(stage_ctx *ctx) {
    eval_state st;
    memset(&st, 0, sizeof st);
    int rc = prepare_and_score(ctx, &st);
    if (ctx->world > 1) {
        /* every rank reaches this point, failed or not, so that the collectives below match */
        int mine = rc ? 1 : 0, any = 0;
        if (MPI_Allreduce(&mine, &any, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD) != MPI_SUCCESS) any = 1;
        if (any && !rc) rc = err_set(ERR_STAGE, "another rank of this evaluate stage failed (see its lines in the log)");
        if (!rc) rc = gather(ctx, st.b, st.margin, st.nll, st.nt);
        double slowest = st.secs; /* the stage's scoring time is its slowest rank's */
        if (!rc && MPI_Reduce(&st.secs, &slowest, 1, MPI_DOUBLE, MPI_MAX, 0, MPI_COMM_WORLD) != MPI_SUCCESS)
            rc = err_set(ERR_STAGE, "MPI_Reduce of the timings failed");
        st.secs = slowest;
    }
    if (!rc && ctx->rank == 0) {
        eval_result res;
        rc = eval_summarize(&res, &st.ds, &st.s, st.n, st.margin, st.nll, st.nt, st.ref, st.data_digest) ||
             eval_write(&res, ctx->output_dirs[0]) ||
             write_predictions(ctx->output_dirs[0], &st.s, st.n, st.margin, st.nll, st.nt) || eval_metrics(&res, ctx) ||
             stage_metric(ctx, "seconds", 0, st.secs) || stage_metric(ctx, "bf16", 0, st.bf16) ||
             stage_metric(ctx, "examples_per_s", 0, st.secs > 0 ? (double)st.n / st.secs : 0);
        eval_result_free(&res);
    }
    state_free(&st);
    return rc ? -1 : 0;
}

const stage_kind stage_kind_evaluate = {
    .name = "evaluate",
    .version = 2,
    .summary = "per-task AUC, log loss and response loss/perplexity of a model on a data split",
    .params = evaluate_params,
    .outputs = evaluate_outputs,
    .supports_ranks = 1,
    .copy_inputs = 0,
    .run = evaluate_run,
};
