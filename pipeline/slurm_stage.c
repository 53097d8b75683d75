/* slurm_stage.c: the body of one Slurm job (`smelt slurm-stage`). It parses the run's stored
 * recipe, computes the stage's cache key from the upstream outputs now in the store, links a
 * completed key, or runs attempts of the stage as `smelt exec` (under mpirun or the configured
 * launcher inside the allocation when ranks > 1), retrying up to `retries` times. SIGTERM from
 * scancel, the time limit or pre-emption stops the attempt; the stage is left pending with its
 * in-stage checkpoint, for `smelt resume`. It writes how the job ended into the store. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/error.h"
#include "common/log.h"
#include "pipeline/runner.h"
#include "pipeline/slurm.h"
#include "store/runs.h"

/* 20 steps of 50 ms: how long a failed attempt waits for the job's stop signal. */
#define SIGNAL_GRACE_STEPS 20

static volatile sig_atomic_t stop_signal;
static volatile sig_atomic_t child_pgid;

static void on_stop(int sig) {
    stop_signal = sig;
    if (child_pgid > 0) kill(-child_pgid, sig);
}

/* Starts one attempt in its own process group; its output goes to the job's log (stdout). */
static pid_t launch_attempt(const char *self_exe, const char *store_dir, const char *run, const char *stage,
                            int attempt, int ranks, const char *launcher) {
    char att[16], np[16];
    snprintf(att, sizeof att, "%d", attempt);
    snprintf(np, sizeof np, "%d", ranks);
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        err_errno("cannot fork a process for stage %s", stage);
        return -1;
    }
    if (pid > 0) {
        setpgid(pid, pid);
        return pid;
    }
    setpgid(0, 0);
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    signal(SIGTERM, SIG_DFL);
    signal(SIGINT, SIG_DFL);
    if (ranks > 1) {
        if (geteuid() == 0) {
            setenv("OMPI_ALLOW_RUN_AS_ROOT", "1", 1);
            setenv("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1", 1);
        }
        if (launcher && launcher[0] && strcmp(launcher, "mpirun")) {
            /* "srun --mpi=pmix": inside the allocation srun starts one task per allocated rank. */
            char *cmd = xasprintf("exec %s '%s' exec --store '%s' --run '%s' --stage '%s' --attempt %s", launcher,
                                  self_exe, store_dir, run, stage, att);
            if (cmd) execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        } else {
            /* OpenMPI's mpirun reads the allocation from Slurm's environment (and starts its
             * daemons on the other nodes with srun). */
            execlp("mpirun", "mpirun", "-np", np, "--bind-to", "none", self_exe, "exec", "--store", store_dir, "--run",
                   run, "--stage", stage, "--attempt", att, (char *)NULL);
        }
        fprintf(stderr, "smelt: cannot start the MPI launcher for stage %s (%s); install OpenMPI on the nodes or "
                        "submit with --launcher\n", stage, strerror(errno));
        _exit(127);
    }
    execl(self_exe, self_exe, "exec", "--store", store_dir, "--run", run, "--stage", stage, "--attempt", att,
          (char *)NULL);
    fprintf(stderr, "smelt: cannot run %s: %s\n", self_exe, strerror(errno));
    _exit(127);
}

/* The run's recipe as it was submitted (text and --set overrides stored in the run). */
static int load_recipe(store *s, const char *run, recipe **r) {
    run_row row;
    if (store_run_load(s, run, &row)) return -1;
    cJSON *ov = cJSON_Parse(row.overrides);
    int n_sets = cJSON_GetArraySize(ov), rc = 0;
    char **sets = xcalloc((size_t)n_sets + 1, sizeof *sets);
    for (int i = 0; sets && i < n_sets; i++) {
        const cJSON *v = cJSON_GetArrayItem(ov, i);
        sets[i] = cJSON_IsString(v) ? v->valuestring : "";
    }
    if (!sets || recipe_parse(r, row.recipe_path ? row.recipe_path : row.name, row.recipe_text,
                              strlen(row.recipe_text), sets, n_sets)) {
        err_prefix("the stored recipe of run %s does not validate with this smelt: ", run);
        rc = -1;
    }
    free(sets);
    cJSON_Delete(ov);
    run_row_free(&row);
    return rc;
}

typedef enum { OUT_DONE, OUT_FAILED, OUT_STOPPED } outcome;

/* Keeps the first failure of a store write that does not change the stage's outcome (the attempt
 * finished, its end could not be recorded): the job still exits with an error. */
static void keep_store_error(char **store_error) {
    if (!*store_error) *store_error = xstrdup(err_msg());
}

/* Runs attempts until one commits the stage, the retries are spent, or a signal stops it. */
static outcome run_attempts(store *s, const recipe_stage *st, const char *run, const char *self_exe,
                            const char *launcher, const char *log_path, char **why, char **store_error) {
    for (int a = 0; a <= st->retries; a++) {
        if (stop_signal) return OUT_STOPPED;
        int attempt = 0;
        if (store_stage_start(s, run, st->name, log_path, (int64_t)getpid(), &attempt)) {
            *why = xstrdup(err_msg());
            return OUT_FAILED;
        }
        log_info("stage %s: attempt %d%s%s", st->name, attempt, st->ranks > 1 ? " on ranks: " : "",
                 st->ranks > 1 ? (launcher ? launcher : "mpirun") : "");
        pid_t pid = launch_attempt(self_exe, store_dir(s), run, st->name, attempt, st->ranks, launcher);
        if (pid < 0) {
            *why = xstrdup(err_msg());
            return OUT_FAILED;
        }
        child_pgid = pid;
        if (stop_signal) kill(-pid, (int)stop_signal);
        int status = 0;
        while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
        child_pgid = 0;
        int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        if (store_attempt_finish(s, run, st->name, attempt, code)) keep_store_error(store_error);
        stage_row row;
        if (store_stage_load(s, run, st->name, &row)) {
            *why = xstrdup(err_msg());
            return OUT_FAILED;
        }
        int ok = code == 0 && (!strcmp(row.status, "ok") || !strcmp(row.status, "cached"));
        /* slurmstepd signals a cancelled job's processes one after the other: the attempt may
         * die of its SIGTERM before this process receives its own. Give that signal a moment
         * to arrive before calling the attempt a failure (or retrying it). */
        for (int k = 0; !ok && !stop_signal && k < SIGNAL_GRACE_STEPS; k++) nanosleep(&(struct timespec){0, 50000000}, NULL);
        free(*why);
        *why = xasprintf("attempt %d exited with status %d%s%s; log: %s", attempt, code, row.error ? ": " : "",
                         row.error ? row.error : "", log_path);
        stage_row_free(&row);
        if (ok) return OUT_DONE;
        if (stop_signal) return OUT_STOPPED;
        if (a < st->retries) {
            log_warn("stage %s: %s; retrying (%d of %d retries left)", st->name, *why ? *why : "failed",
                     st->retries - a - 1, st->retries);
            if (store_stage_set_status(s, run, st->name, "pending", *why)) {
                free(*why);
                *why = xstrdup(err_msg());
                return OUT_FAILED;
            }
        }
    }
    return OUT_FAILED;
}

/* Records in the store how the job ended and sets the error slot when it did not succeed. A
 * store write that fails here fails the job (its message is added). */
static int record_end(store *s, const char *run, const char *stage, const char *job, outcome out, int stage_known,
                      err_kind kind, const char *why, char *store_error) {
    int rc = 0;
    char *msg = NULL;
    if (out == OUT_DONE) {
        int completed = 0;
        if (store_run_complete_if_done(s, run, &completed)) keep_store_error(&store_error);
        else if (completed) log_info("run %s: every stage is done; the run is ok", run);
    } else if (out == OUT_STOPPED) {
        /* A user's own `smelt cancel` marks the run first: say that, not "stopped by signal 15". */
        int cancelled = 0;
        if (store_slurm_run_cancelled(s, run, &cancelled)) keep_store_error(&store_error);
        if (cancelled)
            msg = xasprintf("job %s was cancelled with 'smelt cancel'; 'smelt resume %s' continues the stage from its "
                            "in-stage checkpoint", job ? job : "-", run);
        else
            msg = xasprintf("job %s stopped by signal %d (scancel, time limit or pre-emption)%s%s; 'smelt resume %s' "
                            "continues it from its in-stage checkpoint", job ? job : "-", (int)stop_signal,
                            why ? ": " : "", why ? why : "", run);
        if (store_stage_set_status(s, run, stage, "pending", msg) ||
            store_run_set_status_if(s, run, "running", "interrupted", msg))
            keep_store_error(&store_error);
        kind = ERR_STAGE;
        rc = err_set(kind, "%s", msg ? msg : "stopped by a signal");
    } else {
        msg = xasprintf("stage %s failed in Slurm job %s: %s; fix the cause and 'smelt resume %s'", stage,
                        job ? job : "-", why ? why : "unknown error", run);
        if ((stage_known && store_stage_set_status(s, run, stage, "failed", why ? why : msg)) ||
            store_run_set_status_if(s, run, "running", "failed", msg))
            keep_store_error(&store_error);
        rc = err_set(kind, "%s", msg ? msg : "stage failed");
    }
    if (job && job[0] &&
        store_slurm_job_finish(s, run, stage, job, out == OUT_DONE ? "completed" : out == OUT_STOPPED ? "stopped" : "failed"))
        keep_store_error(&store_error);
    if (store_error) {
        if (rc) err_set(kind, "%s (and the store did not record it: %s)", msg ? msg : "failed", store_error);
        else err_set(ERR_IO, "stage %s is done, but the store did not record how job %s ended: %s", stage,
                     job ? job : "-", store_error);
        rc = -1;
    }
    free(msg);
    free(store_error);
    return rc;
}

int slurm_stage_run(const char *store_dir_path, const char *run, const char *stage_name, const char *self_exe,
                    int *signal_stop) {
    *signal_stop = 0;
    stop_signal = 0;
    struct sigaction sa = {0};
    sa.sa_handler = on_stop;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    store *s = NULL;
    recipe *r = NULL;
    slurm_run_row sr = {0};
    slurm_opts o = {0};
    char *log_path = NULL, *why = NULL, host[128] = "";
    const char *job = getenv("SLURM_JOB_ID");
    const char *nodename = getenv("SLURMD_NODENAME");
    if (nodename) snprintf(host, sizeof host, "%s", nodename);
    else gethostname(host, sizeof host - 1);
    if (store_open(&s, store_dir_path, 0)) return err_prefix("Slurm job %s on node %s: ", job ? job : "-", host);
    int rc = job && job[0] ? store_slurm_job_started(s, run, stage_name, job, host) : 0, found = 0;
    if (!rc) rc = load_recipe(s, run, &r);
    int i = rc ? -1 : recipe_stage_index(r, stage_name);
    if (!rc && i < 0) rc = err_set(ERR_INPUT, "run %s has no stage '%s'", run, stage_name);
    if (!rc && (found = store_slurm_run_get(s, run, &sr)) > 0) rc = slurm_opts_from_json(&o, sr.options);
    if (!rc && found < 0) rc = -1;
    char key[65], from_run[RUN_ID_MAX], from_stage[STAGE_NAME_MAX];
    if (!rc) rc = runner_prepare_from_store(s, r, run, i, key);
    int done = 0;
    if (!rc) {
        int f = store_completion_find(s, key, from_run, from_stage);
        if (f < 0) rc = -1;
        else if (f && (strcmp(from_run, run) || strcmp(from_stage, stage_name))) {
            rc = store_stage_link_cached(s, run, stage_name, from_run, from_stage);
            if (!rc) log_info("stage %s: cached (from run %s), nothing to compute", stage_name, from_run);
            done = !rc;
        } else if (f) {
            log_info("stage %s: already complete in this run", stage_name);
            done = 1;
        }
    }
    outcome out = OUT_FAILED;
    char *store_error = NULL;
    if (!rc && !done) {
        log_path = job && job[0] ? xasprintf("%s/logs/%s/%s.slurm-%s.log", store_dir(s), run, stage_name, job)
                                 : xasprintf("%s/logs/%s/%s.slurm-manual.log", store_dir(s), run, stage_name);
        if (!log_path) rc = -1;
        else out = run_attempts(s, &r->stages[i], run, self_exe, o.launcher, log_path, &why, &store_error);
    } else if (!rc) {
        out = OUT_DONE;
    } else {
        why = xstrdup(err_msg());
    }
    if (out == OUT_STOPPED) *signal_stop = (int)stop_signal;
    rc = record_end(s, run, stage_name, job, out, r && i >= 0, rc ? err_kind_get() : ERR_STAGE, why, store_error);
    free(log_path);
    free(why);
    slurm_opts_free(&o);
    slurm_run_row_free(&sr);
    recipe_free(r);
    store_close(s);
    return rc;
}
