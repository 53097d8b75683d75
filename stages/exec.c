/* exec.c: one attempt of one stage, in its own process (`smelt exec`), possibly one of several
 * MPI ranks. Rank 0 serializes work on a cache key with a lock file, so two runs that need the
 * same stage compute it once; it commits outputs atomically (objects first, then one SQLite
 * transaction) and only then removes the in-stage checkpoint directory. */
#include <errno.h>
#include <fcntl.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#include "common/error.h"
#include "common/fsutil.h"
#include "common/log.h"
#include "stages/stage.h"

void stage_rank_from_env(int *rank, int *world) {
    static const char *const pairs[][2] = {
        {"OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE"},
        {"PMIX_RANK", "OMPI_COMM_WORLD_SIZE"},
        {"PMI_RANK", "PMI_SIZE"},
        {"SLURM_PROCID", "SLURM_NTASKS"},
    };
    *rank = 0;
    *world = 1;
    for (size_t i = 0; i < sizeof pairs / sizeof *pairs; i++) {
        const char *r = getenv(pairs[i][0]), *w = getenv(pairs[i][1]);
        if (r && w && atoi(w) > 0) {
            *rank = atoi(r);
            *world = atoi(w);
            return;
        }
    }
}

int stage_metric(stage_ctx *ctx, const char *key, int64_t step, double value) {
    if (ctx->rank != 0) return 0;
    if (ctx->n_pending == ctx->cap_pending) {
        int cap = ctx->cap_pending ? 2 * ctx->cap_pending : 64;
        metric_point *p = xrealloc(ctx->pending, (size_t)cap * sizeof *p);
        if (!p) return -1;
        ctx->pending = p;
        ctx->cap_pending = cap;
    }
    char *k = xstrdup(key);
    if (!k) return -1;
    ctx->pending[ctx->n_pending++] = (metric_point){k, step, value};
    if (ctx->n_pending >= 512 || time_monotonic() - ctx->last_flush > 5) return stage_metrics_flush(ctx);
    return 0;
}

int stage_metrics_flush(stage_ctx *ctx) {
    int rc = store_metrics_put(ctx->st, ctx->run_id, ctx->stage, ctx->pending, ctx->n_pending);
    for (int i = 0; i < ctx->n_pending; i++) free((char *)ctx->pending[i].key);
    ctx->n_pending = 0;
    ctx->last_flush = time_monotonic();
    return rc;
}

stage_input *stage_input_get(stage_ctx *ctx, const char *name) {
    for (int i = 0; i < ctx->n_inputs; i++)
        if (!strcmp(ctx->inputs[i].name, name)) return &ctx->inputs[i];
    return NULL;
}

int stage_input_dir(stage_ctx *ctx, stage_input *in, const char **dir) {
    if (!in->dir) {
        char *d = xasprintf("%s/in/%s", ctx->scratch_dir, in->name);
        if (!d) return -1;
        if (store_materialize(ctx->st, in->digest, d, !ctx->kind->copy_inputs)) {
            err_prefix("input '%s' (from stage %s): ", in->name, in->from_stage);
            fs_rm_rf(d);
            free(d);
            return -1;
        }
        in->dir = d;
    }
    *dir = in->dir;
    return 0;
}

/* Reads the metrics file user code may have written: "key value" or "key step value" lines. */
static int ingest_metrics_file(stage_ctx *ctx) {
    if (!ctx->metrics_path || !fs_exists(ctx->metrics_path)) return 0;
    char *text;
    size_t len;
    if (fs_read_file(ctx->metrics_path, 256u << 20, &text, &len)) return -1;
    int rc = 0, lineno = 0;
    for (char *line = text, *next; line && *line && !rc; line = next) {
        next = strchr(line, '\n');
        if (next) *next++ = 0;
        lineno++;
        char key[256];
        double a, b;
        int n = sscanf(line, "%255s %lf %lf", key, &a, &b);
        if (n <= 0 || line[0] == '#') continue;
        if (n == 2) rc = stage_metric(ctx, key, 0, a);
        else if (n == 3 && a == (double)(int64_t)a) rc = stage_metric(ctx, key, (int64_t)a, b);
        else
            rc = err_set(ERR_STAGE, "%s:%d: a metric line must be 'key value' or 'key step value' (integer step), "
                         "found '%s'", ctx->metrics_path, lineno, line);
    }
    free(text);
    return rc;
}

/* Stores every declared output directory and commits the stage. Holds the gc lock (shared)
 * so that `smelt gc` never sees objects written but not yet registered. */
static int commit_outputs(stage_ctx *ctx) {
    output_row outs[STAGE_MAX_OUTPUTS];
    int n = 0;
    int lfd = store_gc_lock(ctx->st, 0);
    if (lfd < 0) return -1;
    int rc = 0;
    for (int i = 0; ctx->kind->outputs[i].name && !rc; i++) {
        uint64_t bytes;
        snprintf(outs[n].name, sizeof outs[n].name, "%s", ctx->kind->outputs[i].name);
        snprintf(outs[n].kind, sizeof outs[n].kind, "%s", ctx->kind->outputs[i].kind);
        rc = store_put_dir(ctx->st, ctx->output_dirs[i], 1, outs[n].digest, &bytes);
        if (rc) err_prefix("storing output '%s': ", outs[n].name);
        n++;
    }
    if (!rc) rc = stage_metrics_flush(ctx);
    if (!rc) rc = store_stage_commit(ctx->st, ctx->run_id, ctx->stage, outs, n);
    store_gc_unlock(lfd);
    if (!rc)
        for (int i = 0; i < n; i++) log_info("output %s: artifact %.12s", outs[i].name, outs[i].digest);
    return rc;
}

static int ctx_prepare(stage_ctx *ctx, const stage_row *row) {
    const char *sd = store_dir(ctx->st);
    ctx->scratch_dir = ctx->rank == 0 ? xasprintf("%s/tmp/attempts/%s/%s.%d", sd, ctx->run_id, ctx->stage, ctx->attempt)
                                      : xasprintf("%s/tmp/attempts/%s/%s.%d.rank%d", sd, ctx->run_id, ctx->stage,
                                                  ctx->attempt, ctx->rank);
    ctx->checkpoint_dir = xasprintf("%s/checkpoints/%s", sd, row->cache_key);
    if (!ctx->scratch_dir || !ctx->checkpoint_dir) return -1;
    if (fs_rm_rf(ctx->scratch_dir) || fs_mkdir_p(ctx->scratch_dir, 0755) || fs_mkdir_p(ctx->checkpoint_dir, 0755))
        return -1;
    ctx->metrics_path = fs_join(ctx->scratch_dir, "metrics.txt");
    if (!ctx->metrics_path) return -1;
    for (int i = 0; ctx->kind->outputs[i].name; i++) {
        if (i >= STAGE_MAX_OUTPUTS) return err_set(ERR_INTERNAL, "stage kind %s declares too many outputs", ctx->kind->name);
        ctx->output_dirs[i] = xasprintf("%s/out/%s", ctx->scratch_dir, ctx->kind->outputs[i].name);
        if (!ctx->output_dirs[i] || fs_mkdir_p(ctx->output_dirs[i], 0755)) return -1;
    }
    input_row *rows;
    int n;
    if (store_stage_inputs(ctx->st, ctx->run_id, ctx->stage, &rows, &n)) return -1;
    ctx->inputs = xcalloc((size_t)n + 1, sizeof *ctx->inputs);
    if (!ctx->inputs) {
        free(rows);
        return -1;
    }
    for (int i = 0; i < n; i++) {
        stage_input *in = &ctx->inputs[i];
        memcpy(in->name, rows[i].name, sizeof in->name);
        memcpy(in->digest, rows[i].digest, sizeof in->digest);
        memcpy(in->from_stage, rows[i].from_stage, sizeof in->from_stage);
        memcpy(in->from_output, rows[i].from_output, sizeof in->from_output);
    }
    ctx->n_inputs = n;
    free(rows);
    ctx->last_flush = time_monotonic();
    return 0;
}

static void ctx_free(stage_ctx *ctx) {
    for (int i = 0; i < ctx->n_pending; i++) free((char *)ctx->pending[i].key);
    free(ctx->pending);
    for (int i = 0; i < ctx->n_inputs; i++) free(ctx->inputs[i].dir);
    free(ctx->inputs);
    for (int i = 0; i < STAGE_MAX_OUTPUTS; i++) free(ctx->output_dirs[i]);
    free(ctx->scratch_dir);
    free(ctx->checkpoint_dir);
    free(ctx->metrics_path);
    cJSON_Delete(ctx->params);
}

/* Outcome codes shared between ranks. */
enum { OUT_RUN = 0, OUT_CACHED = 1, OUT_ERROR = 2 };

int stage_exec(const char *store_dir_path, const char *run, const char *stage, int attempt) {
    int rank, world, mpi = 0;
    stage_rank_from_env(&rank, &world);
    if (world > 1) {
        int inited = 0;
        MPI_Initialized(&inited);
        if (!inited && MPI_Init(NULL, NULL) != MPI_SUCCESS)
            return err_set(ERR_IO, "MPI_Init failed on rank %d of %d", rank, world);
        mpi = 1;
        MPI_Comm_rank(MPI_COMM_WORLD, &rank);
        MPI_Comm_size(MPI_COMM_WORLD, &world);
    }
    stage_ctx ctx = {0};
    stage_row row = {0};
    int lock_fd = -1, outcome = OUT_RUN, rc = 0;
    ctx.rank = rank;
    ctx.world = world;
    ctx.run_id = run;
    ctx.stage = stage;
    ctx.attempt = attempt;

    if (store_open(&ctx.st, store_dir_path, 0) || store_stage_load(ctx.st, run, stage, &row)) {
        outcome = OUT_ERROR;
    } else if (!(ctx.kind = stage_kind_find(row.kind))) {
        err_set(ERR_INPUT, "stage %s has kind '%s', which this smelt does not know", stage, row.kind);
        outcome = OUT_ERROR;
    } else if (ctx.kind->version != row.kind_version) {
        err_set(ERR_INPUT, "stage %s was planned for %s version %d but this smelt has version %d; resume it with the "
                "smelt that started it, or start a new run", stage, row.kind, row.kind_version, ctx.kind->version);
        outcome = OUT_ERROR;
    } else if (!row.cache_key[0] || !row.params_json || !(ctx.params = cJSON_Parse(row.params_json))) {
        err_set(ERR_INTERNAL, "stage %s of run %s has no resolved parameters; the runner prepares them before "
                "launching (was it started by hand?)", stage, run);
        outcome = OUT_ERROR;
    }
    if (outcome == OUT_RUN) {
        ctx.cache_key = row.cache_key;
        const cJSON *seed = cJSON_GetObjectItemCaseSensitive(ctx.params, "seed");
        ctx.seed = cJSON_IsNumber(seed) ? (int64_t)seed->valuedouble : 0;
    }
    if (outcome == OUT_RUN && rank == 0) {
        char *lp = xasprintf("%s/locks/%s.lock", store_dir(ctx.st), row.cache_key);
        lock_fd = lp ? open(lp, O_RDWR | O_CREAT | O_CLOEXEC, 0644) : -1;
        free(lp);
        if (lock_fd < 0) {
            err_errno("cannot open the lock of cache key %.12s", row.cache_key);
            outcome = OUT_ERROR;
        } else if (flock(lock_fd, LOCK_EX | LOCK_NB)) {
            log_info("another process is computing the same stage (cache key %.12s); waiting for it", row.cache_key);
            if (flock(lock_fd, LOCK_EX)) {
                err_errno("cannot lock cache key %.12s", row.cache_key);
                outcome = OUT_ERROR;
            }
        }
        if (outcome == OUT_RUN) {
            char from_run[RUN_ID_MAX], from_stage[STAGE_NAME_MAX];
            int found = store_completion_find(ctx.st, row.cache_key, from_run, from_stage);
            if (found < 0) outcome = OUT_ERROR;
            else if (found && (strcmp(from_run, run) || strcmp(from_stage, stage))) {
                if (store_stage_link_cached(ctx.st, run, stage, from_run, from_stage)) outcome = OUT_ERROR;
                else {
                    log_info("stage %s: computed meanwhile by run %s; reusing it", stage, from_run);
                    outcome = OUT_CACHED;
                }
            }
        }
    }
    if (mpi) MPI_Bcast(&outcome, 1, MPI_INT, 0, MPI_COMM_WORLD);
    if (outcome == OUT_RUN) {
        if (world > 1 && !ctx.kind->supports_ranks) {
            rc = err_set(ERR_INPUT, "stage kind %s does not support ranks > 1; set ranks: 1 for stage %s", ctx.kind->name,
                         stage);
        } else {
            rc = ctx_prepare(&ctx, &row);
            if (!rc) {
                log_info("stage %s (%s v%d) attempt %d, rank %d of %d, key %.12s", stage, row.kind, row.kind_version,
                         attempt, rank, world, row.cache_key);
                rc = ctx.kind->run(&ctx);
            }
        }
        if (mpi) {
            int mine = rc ? 1 : 0, any = 0;
            MPI_Allreduce(&mine, &any, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
            if (any && !rc) rc = err_set(ERR_STAGE, "another rank of stage %s failed (see its lines in the log)", stage);
        }
        if (!rc && rank == 0) rc = ingest_metrics_file(&ctx);
        if (!rc && rank == 0) rc = commit_outputs(&ctx);
        if (!rc && rank == 0) {
            /* The outputs are registered: the scratch and the in-stage checkpoints have served. */
            fs_rm_rf(ctx.scratch_dir);
            fs_rm_rf(ctx.checkpoint_dir);
        }
        if (rank != 0 && ctx.scratch_dir) fs_rm_rf(ctx.scratch_dir);
    } else if (outcome == OUT_ERROR) {
        rc = -1;
    }
    if (rc && rank == 0 && ctx.st) {
        /* Record the failure (and the metrics so far); when the store refuses, say so too. */
        char *msg = xstrdup(err_msg());
        err_kind kind = err_kind_get();
        int lost = stage_metrics_flush(&ctx) || store_stage_set_status(ctx.st, run, stage, "failed", msg);
        char *why = lost ? xstrdup(err_msg()) : NULL;
        err_set(kind, "%s%s%s%s", msg ? msg : "stage failed", lost ? " (and the store did not record the failure: " : "",
                lost && why ? why : "", lost ? ")" : "");
        free(why);
        free(msg);
    }
    if (lock_fd >= 0) close(lock_fd);
    ctx_free(&ctx);
    stage_row_free(&row);
    store_close(ctx.st);
    if (mpi) MPI_Finalize();
    return rc;
}
