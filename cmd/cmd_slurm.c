/* cmd_slurm.c: `smelt submit --slurm` (a run whose stages are Slurm jobs), `smelt cancel`
 * (one scancel for a run's jobs), the internal `smelt slurm-stage` (the body of each job), and
 * the Slurm view of `smelt status` and the Slurm options that submit, plan and resume share. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd/commands.h"
#include "cmd/slurm_cli.h"
#include "cmd/util.h"
#include "common/error.h"
#include "common/log.h"
#include "pipeline/recipe.h"
#include "pipeline/runner.h"
#include "pipeline/slurm.h"
#include "store/slurm_jobs.h"

static int set_string(char **dst, const char *v) {
    char *c = xstrdup(v);
    if (!c) return -1;
    free(*dst);
    *dst = c;
    return 0;
}

static int positive(const char *cmd, const char *flag, const char *arg, int *out) {
    char *end;
    long v = strtol(arg, &end, 10);
    if (*end || end == arg || v < 1 || v > 100000) {
        cli_usage_error(cmd, "%s expects a whole number from 1 to 100000, got '%s'", flag, arg);
        return -1;
    }
    *out = (int)v;
    return 1;
}

int cli_slurm_option(const char *cmd, int c, const char *arg, slurm_opts *o, int *slurm) {
    switch (c) {
    case OPT_SLURM: *slurm = 1; return 1;
    case OPT_PARTITION: return set_string(&o->partition, arg) ? -1 : 1;
    case OPT_ACCOUNT: return set_string(&o->account, arg) ? -1 : 1;
    case OPT_TIME: return set_string(&o->time, arg) ? -1 : 1;
    case OPT_MEM: return set_string(&o->mem, arg) ? -1 : 1;
    case OPT_LAUNCHER:
        if (!arg[0] || strchr(arg, '\'')) {
            cli_usage_error(cmd, "--launcher expects 'mpirun' or a command line without single quotes, got '%s'", arg);
            return -1;
        }
        return set_string(&o->launcher, arg) ? -1 : 1;
    case OPT_NODES: return positive(cmd, "--nodes", arg, &o->nodes);
    case OPT_GPUS_PER_NODE: return positive(cmd, "--gpus-per-node", arg, &o->gpus_per_node);
    case OPT_CPUS_PER_TASK: return positive(cmd, "--cpus-per-task", arg, &o->cpus_per_task);
    default: return 0;
    }
}

int cli_slurm_opts_set(const slurm_opts *o) {
    return o->partition || o->account || o->time || o->mem || o->launcher || o->nodes || o->gpus_per_node ||
           o->cpus_per_task;
}

/* `submit --dry-run`: what `plan --slurm` prints (the stages to run, every sbatch script, the
 * dependency chain), with the same options; nothing is created or submitted. --name only names
 * the run, so it is dropped. */
static int submit_dry_run(int argc, char **argv) {
    int slurm = 0;
    for (int i = 1; i < argc; i++) slurm |= !strcmp(argv[i], "--slurm");
    if (!slurm) return cli_usage_error("submit", "name the scheduler: --slurm (the only one so far; 'smelt run' runs here)");
    char **av = xcalloc((size_t)argc + 1, sizeof *av);
    if (!av) return cli_fail("submit");
    int n = 0;
    av[n++] = "plan";
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--dry-run") || !strncmp(argv[i], "--name=", 7)) continue;
        if ((!strcmp(argv[i], "--name") || !strcmp(argv[i], "-n")) && i + 1 < argc) {
            i++;
            continue;
        }
        av[n++] = argv[i];
    }
    int rc = cmd_plan(n, av);
    free(av);
    return rc;
}

int cmd_submit(int argc, char **argv) {
    for (int i = 1; i < argc && strcmp(argv[i], "--"); i++)
        if (!strcmp(argv[i], "--dry-run")) return submit_dry_run(argc, argv);
    static const struct option opts[] = {{"store", required_argument, 0, 's'}, {"set", required_argument, 0, 'S'},
                                         {"name", required_argument, 0, 'n'},  SLURM_LONG_OPTIONS,
                                         {0, 0, 0, 0}};
    const char *store_flag = NULL, *name = NULL;
    char **sets = NULL;
    int n_sets = 0, slurm = 0, c, status = EXIT_OK;
    slurm_opts so = {0};
    optind = 1;
    while ((c = getopt_long(argc, argv, "s:S:n:", opts, NULL)) != -1) {
        int h = cli_slurm_option("submit", c, optarg, &so, &slurm);
        if (h < 0) {
            status = EXIT_USAGE;
            goto out;
        }
        if (h) continue;
        if (c == 's') store_flag = optarg;
        else if (c == 'n') name = optarg;
        else if (c == 'S') {
            char **ns = xrealloc(sets, (size_t)(n_sets + 1) * sizeof *ns);
            if (!ns) {
                status = cli_fail("submit");
                goto out;
            }
            sets = ns;
            sets[n_sets++] = optarg;
        } else {
            status = cli_usage_error("submit", "unknown option");
            goto out;
        }
    }
    if (!slurm) {
        status = cli_usage_error("submit", "name the scheduler: --slurm (the only one so far; 'smelt run' runs here)");
        goto out;
    }
    if (optind != argc - 1) {
        status = cli_usage_error("submit", "expected one recipe file");
        goto out;
    }
    recipe *r = NULL;
    store *s = NULL;
    char *self = NULL, run_id[RUN_ID_MAX];
    if (recipe_load(&r, argv[optind], sets, n_sets) || recipe_check_devices(r)) {
        status = cli_fail("submit");
    } else if (!(self = cli_self_exe()) || cli_open_store(&s, store_flag, STORE_CREATE) ||
               runner_create(s, r, argv[optind], sets, n_sets, name, 1, run_id)) {
        status = cli_fail("submit");
    } else {
        const store_fs_info *fs = store_fs(s);
        printf("run %s (%s): %d stages, store %s (%s file system %s: %s journal), submitting to Slurm\n", run_id,
               name ? name : r->name, r->n_stages, store_dir(s), store_fs_class_name(fs->cls), fs->type,
               fs->cls == FS_SHARED ? "rollback" : "WAL");
        if (fs->cls == FS_LOCAL)
            fprintf(stderr, "smelt submit: note: the store is on a local file system (%s): every job must run on this "
                            "host; on a cluster with several nodes put the store on a shared file system\n", fs->type);
        fflush(stdout);
        int n_jobs = 0;
        if (slurm_submit_run(s, r, run_id, &so, self, 0, stdout, &n_jobs)) status = cli_fail("submit");
        else if (n_jobs == 0)
            printf("run %s is complete: every stage was already computed, nothing was submitted (see 'smelt report "
                   "%s')\n", run_id, run_id);
        else printf("follow it with 'smelt status %s'; stop it with 'smelt cancel %s'\n", run_id, run_id);
    }
    recipe_free(r);
    store_close(s);
    free(self);
out:
    slurm_opts_free(&so);
    free(sets);
    return status;
}

int cmd_cancel(int argc, char **argv) {
    const char *store_flag;
    if (cli_args("cancel", argc, argv, NULL, 1, 1, "expected one run id (see 'smelt runs')", &store_flag))
        return EXIT_USAGE;
    store *s = NULL;
    char run[RUN_ID_MAX];
    slurm_run_row sr = {0};
    int status = cli_open_run("cancel", store_flag, 0, argv[optind], &s, run, NULL), found = 0;
    if (status) return status;
    if ((found = store_slurm_run_get(s, run, &sr)) < 0) {
        status = cli_fail("cancel");
    } else if (!found) {
        err_set(ERR_INPUT, "run %s was not submitted to Slurm; stop a local run with Ctrl-C (or kill the smelt process "
                "that drives it), then 'smelt resume %s' continues it", run, run);
        status = cli_fail("cancel");
    } else if (slurm_cancel_run(s, run, stdout)) {
        status = cli_fail("cancel");
    }
    slurm_run_row_free(&sr);
    store_close(s);
    return status;
}

int cmd_slurm_stage(int argc, char **argv) {
    static const struct option opts[] = {{"store", required_argument, 0, 's'}, {"run", required_argument, 0, 'r'},
                                         {"stage", required_argument, 0, 'g'}, {0, 0, 0, 0}};
    const char *dir = NULL, *run = NULL, *stage = NULL;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "s:r:g:", opts, NULL)) != -1) {
        switch (c) {
        case 's': dir = optarg; break;
        case 'r': run = optarg; break;
        case 'g': stage = optarg; break;
        default: return cli_usage_error("slurm-stage", "unknown option");
        }
    }
    if (!dir || !run || !stage) return cli_usage_error("slurm-stage", "--store, --run and --stage are required");
    char *self = cli_self_exe();
    int sig = 0;
    if (!self || slurm_stage_run(dir, run, stage, self, &sig)) {
        int st = cli_fail("slurm-stage");
        free(self);
        return sig ? 128 + sig : st;
    }
    free(self);
    return EXIT_OK;
}

int cli_slurm_status(store *s, const run_row *rr, const slurm_run_row *sr) {
    slurm_job_row *jobs = NULL;
    slurm_view *views = NULL;
    int n_jobs = 0, calls = 0, status = EXIT_OK;
    if (store_slurm_jobs_current(s, rr->id, &jobs, &n_jobs)) return cli_fail("status");
    views = xcalloc((size_t)n_jobs + 1, sizeof *views);
    if (!views) {
        slurm_job_rows_free(jobs, n_jobs);
        return cli_fail("status");
    }
    if (slurm_run_view(sr->query, rr->id, jobs, n_jobs, views, &calls)) {
        fprintf(stderr, "smelt status: cannot read the job states from Slurm (%s); showing what the jobs recorded in "
                        "the store\n", err_msg());
        err_clear();
        status = EXIT_FAILED;
    }
    sqlite3_stmt *st;
    if (store_prepare(s, &st, "SELECT name, kind, status, cached_from, log_path, error, ranks FROM stage "
                              "WHERE run_id = ? ORDER BY ord")) {
        free(views);
        slurm_job_rows_free(jobs, n_jobs);
        return cli_fail("status");
    }
    sqlite3_bind_text(st, 1, rr->id, -1, SQLITE_TRANSIENT);
    table t;
    static const char *const hdr[] = {"STAGE", "KIND", "STATUS", "JOB", "STATE", "ELAPSED", "NODE", "DETAIL"};
    table_init(&t, 8, hdr);
    int forgotten = 0;
    int r;
    while ((r = store_step_row(s, st, "reading the stages of the run")) == 1) {
        const char *name = (const char *)sqlite3_column_text(st, 0);
        const char *stt = (const char *)sqlite3_column_text(st, 2);
        const char *from = (const char *)sqlite3_column_text(st, 3);
        const char *log = (const char *)sqlite3_column_text(st, 4);
        const char *err = (const char *)sqlite3_column_text(st, 5);
        int k = -1;
        for (int j = 0; j < n_jobs; j++)
            if (!strcmp(jobs[j].stage, name)) k = j;
        table_cell(&t, 0, "%s", name);
        table_cell(&t, 1, "%s%s", sqlite3_column_text(st, 1), sqlite3_column_int(st, 6) > 1 ? " (mpi)" : "");
        table_cell(&t, 2, "%s", stt);
        table_cell(&t, 3, "%s", k >= 0 ? jobs[k].job_id : "-");
        if (k >= 0 && !views[k].live) forgotten = 1;
        table_cell(&t, 4, "%s%s", k >= 0 ? views[k].state : "-", k >= 0 && !views[k].live ? "*" : "");
        table_cell(&t, 5, "%s", k >= 0 && views[k].elapsed[0] ? views[k].elapsed : "-");
        table_cell(&t, 6, "%s", k >= 0 && views[k].node[0] ? views[k].node : "-");
        if (!strcmp(stt, "cached") && from) table_cell(&t, 7, "from run %s", from);
        else if ((!strcmp(stt, "failed") || !strcmp(stt, "pending")) && err) table_cell(&t, 7, "%s", err);
        else if (k >= 0 && views[k].reason[0]) table_cell(&t, 7, "%s", views[k].reason);
        else if (log && strcmp(stt, "pending")) table_cell(&t, 7, "log %s", log);
        else table_cell(&t, 7, "%s", "");
    }
    sqlite3_finalize(st);
    if (r < 0) {
        table_free(&t);
        free(views);
        slurm_job_rows_free(jobs, n_jobs);
        return cli_fail("status");
    }
    table_print(&t, stdout);
    table_free(&t);
    printf("job states: %s (%d Slurm call%s)%s\n", sr->query, calls, calls == 1 ? "" : "s",
           forgotten ? "; * Slurm no longer knows the job: the state is what the job recorded in the store (LOST: it "
                       "started and never reported an end; VANISHED: it never started)"
                     : "");
    free(views);
    slurm_job_rows_free(jobs, n_jobs);
    return status;
}
