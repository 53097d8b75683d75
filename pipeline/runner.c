/* runner.c: the scheduler loop. One process drives a run; stage work happens in child
 * processes that commit their own outputs, so a killed runner loses nothing: `smelt resume`
 * re-enters this loop and only incomplete stages run again. */
#include "pipeline/runner.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/error.h"
#include "common/fsutil.h"
#include "common/log.h"
#include "common/strbuf.h"
#include "pipeline/key.h"

typedef enum { S_PENDING, S_RUNNING, S_DONE, S_FAILED, S_SKIPPED } sstate;

typedef struct {
    sstate state;
    pid_t pid;
    int attempt;          /* attempt number in the store */
    int session_attempts; /* attempts made by this runner */
    double started;
    char *log_path;
    output_row *outputs;
    int n_outputs;
} slot;

static volatile sig_atomic_t runner_stop;

static void on_signal(int sig) { runner_stop = sig; }

int runner_create(store *s, const recipe *r, const char *recipe_path, char *const *overrides, int n_overrides,
                  const char *name, int jobs, char run_id[RUN_ID_MAX]) {
    if (recipe_check_devices(r)) return -1;
    cJSON *ov = cJSON_CreateArray();
    for (int i = 0; ov && i < n_overrides; i++) cJSON_AddItemToArray(ov, cJSON_CreateString(overrides[i]));
    char *ov_json = ov ? cJSON_PrintUnformatted(ov) : NULL;
    cJSON_Delete(ov);
    if (!ov_json) return err_set(ERR_NOMEM, "out of memory");
    char *abs = recipe_path ? realpath(recipe_path, NULL) : NULL;
    run_id_new(run_id);
    int rc = store_run_create(s, run_id, name ? name : r->name, abs ? abs : recipe_path, r->text, ov_json, jobs);
    free(abs);
    cJSON_free(ov_json);
    if (rc) return -1;
    if (store_begin(s)) return -1;
    for (int i = 0; i < r->n_stages && !rc; i++) {
        const recipe_stage *st = &r->stages[i];
        rc = store_stage_create(s, run_id, st->name, st->kind->name, st->kind->version, i, st->ranks, st->retries);
        for (int k = 0; k < st->n_refs && !rc; k++)
            rc = store_edge_add(s, run_id, st->name, r->stages[st->refs[k].dep].name, st->refs[k].path,
                                st->refs[k].output);
        for (int k = 0; k < st->n_needs && !rc; k++) rc = store_edge_add(s, run_id, st->name, st->needs[k], "", "");
    }
    if (rc) {
        store_rollback(s);
        return -1;
    }
    return store_commit(s);
}

int runner_alive(const run_row *r) {
    char host[128] = "";
    gethostname(host, sizeof host - 1);
    if (strcmp(r->host, host)) return -1;
    if (r->pid <= 0 || kill((pid_t)r->pid, 0) != 0) return 0;
    /* The pid may have been reused: it must still be a smelt process. */
    char path[64], cmd[256] = "";
    snprintf(path, sizeof path, "/proc/%lld/cmdline", (long long)r->pid);
    FILE *f = fopen(path, "rb");
    size_t n = f ? fread(cmd, 1, sizeof cmd - 1, f) : 0;
    if (f) fclose(f);
    cmd[n] = 0;
    return strstr(cmd, "smelt") != NULL;
}

int runner_check_not_active(store *s, const char *run_id) {
    run_row r;
    if (store_run_load(s, run_id, &r)) return -1;
    int rc = 0;
    if (!strcmp(r.status, "running") && r.pid != getpid() && runner_alive(&r) == 1)
        rc = err_set(ERR_INPUT, "run %s is still being driven by process %lld on this host; wait for it to end or "
                     "stop it (kill %lld), then resume", run_id, (long long)r.pid, (long long)r.pid);
    run_row_free(&r);
    return rc;
}

/* The digest of output `output` of stage index d (a runner_digest_fn over the slots). */
static const char *output_digest(void *ctx, int d, const char *output) {
    const slot *sl = ctx;
    for (int i = 0; i < sl[d].n_outputs; i++)
        if (!strcmp(sl[d].outputs[i].name, output)) return sl[d].outputs[i].digest;
    return NULL;
}

static int load_outputs(store *s, const char *run, const recipe_stage *st, slot *sl) {
    free(sl->outputs);
    sl->outputs = NULL;
    return store_stage_outputs(s, run, st->name, &sl->outputs, &sl->n_outputs);
}

int runner_prepare_stage(store *s, const recipe *r, const char *run, int i, runner_digest_fn digest_of, void *ctx,
                         char key[65]) {
    const recipe_stage *st = &r->stages[i];
    ref_digest *dg = xcalloc((size_t)st->n_refs + 1, sizeof *dg);
    input_row *in = xcalloc((size_t)st->n_refs + 1, sizeof *in);
    char *key_json = NULL, *params_json = NULL;
    int rc = (!dg || !in) ? -1 : 0;
    for (int k = 0; k < st->n_refs && !rc; k++) {
        const recipe_ref *ref = &st->refs[k];
        const char *d = digest_of(ctx, ref->dep, ref->output);
        if (!d) {
            rc = err_set(ERR_INTERNAL, "stage %s: upstream %s has no output '%s' in the store", st->name, ref->target,
                         ref->output);
            break;
        }
        memcpy(dg[k].digest, d, 65);
        snprintf(in[k].name, sizeof in[k].name, "%s", ref->path);
        memcpy(in[k].digest, d, 65);
        snprintf(in[k].from_stage, sizeof in[k].from_stage, "%s", ref->target);
        snprintf(in[k].from_output, sizeof in[k].from_output, "%s", ref->output);
    }
    ref_digest *pd = NULL;
    if (!rc) rc = key_path_digests(st, &pd);
    if (!rc) rc = key_compute(st, dg, pd, &key_json, key);
    free(pd);
    if (!rc) rc = key_params_json(st, &params_json);
    if (!rc) rc = store_stage_prepare(s, run, st->name, key, key_json, params_json, in, st->n_refs);
    free(dg);
    free(in);
    free(key_json);
    free(params_json);
    return rc;
}

/* Upstream outputs read from the store, for runner_prepare_from_store. */
typedef struct {
    output_row **outs;
    int *n_outs;
} store_outputs;

static const char *stored_digest(void *ctx, int d, const char *output) {
    const store_outputs *so = ctx;
    for (int i = 0; i < so->n_outs[d]; i++)
        if (!strcmp(so->outs[d][i].name, output)) return so->outs[d][i].digest;
    return NULL;
}

int runner_prepare_from_store(store *s, const recipe *r, const char *run, int i, char key[65]) {
    const recipe_stage *st = &r->stages[i];
    store_outputs so = {xcalloc((size_t)r->n_stages + 1, sizeof *so.outs),
                        xcalloc((size_t)r->n_stages + 1, sizeof *so.n_outs)};
    int rc = so.outs && so.n_outs ? 0 : -1;
    for (int k = 0; k < st->n_deps && !rc; k++) {
        int d = st->deps[k];
        stage_row row;
        if (store_stage_load(s, run, r->stages[d].name, &row)) {
            rc = -1;
            break;
        }
        if (strcmp(row.status, "ok") && strcmp(row.status, "cached"))
            rc = err_set(ERR_INPUT, "stage %s needs stage %s, which is %s in run %s, not complete; it can only run "
                         "after its upstream stages succeeded", st->name, r->stages[d].name, row.status, run);
        stage_row_free(&row);
        if (!rc) rc = store_stage_outputs(s, run, r->stages[d].name, &so.outs[d], &so.n_outs[d]);
    }
    if (!rc) rc = runner_prepare_stage(s, r, run, i, stored_digest, &so, key);
    for (int d = 0; so.outs && d < r->n_stages; d++) free(so.outs[d]);
    free(so.outs);
    free(so.n_outs);
    return rc;
}

static pid_t launch(store *s, const recipe_stage *st, const char *run, int attempt, const char *log_path,
                    const runner_opts *o) {
    char att[16];
    snprintf(att, sizeof att, "%d", attempt);
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        err_errno("cannot fork a process for stage %s", st->name);
        return -1;
    }
    if (pid > 0) return pid;
    /* Child: its own process group (so the runner can stop the whole tree), dies with the runner. */
    setpgid(0, 0);
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    int fd = open(log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd >= 0) {
        dup2(fd, STDOUT_FILENO);
        dup2(fd, STDERR_FILENO);
        close(fd);
    }
    int devnull = open("/dev/null", O_RDONLY);
    if (devnull >= 0) {
        dup2(devnull, STDIN_FILENO);
        close(devnull);
    }
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    const char *sd = store_dir(s);
    if (st->ranks > 1) {
        char np[16];
        snprintf(np, sizeof np, "%d", st->ranks);
        if (geteuid() == 0) {
            setenv("OMPI_ALLOW_RUN_AS_ROOT", "1", 1);
            setenv("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1", 1);
        }
        const char *launcher = getenv("SMELT_MPIRUN");
        if (launcher && launcher[0]) {
            /* A user launcher ("srun --mpi=pmix"): run through the shell with -np appended by the user. */
            char *cmd = xasprintf("exec %s '%s' exec --store '%s' --run '%s' --stage '%s' --attempt %s", launcher,
                                  o->self_exe, sd, run, st->name, att);
            if (cmd) execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        } else {
            execlp("mpirun", "mpirun", "-np", np, "--oversubscribe", "--bind-to", "none", o->self_exe, "exec", "--store",
                   sd, "--run", run, "--stage", st->name, "--attempt", att, (char *)NULL);
        }
        fprintf(stderr, "smelt: cannot start mpirun for stage %s (%s); install OpenMPI (openmpi-bin) or set "
                        "SMELT_MPIRUN\n", st->name, strerror(errno));
        _exit(127);
    }
    execl(o->self_exe, o->self_exe, "exec", "--store", sd, "--run", run, "--stage", st->name, "--attempt", att,
          (char *)NULL);
    fprintf(stderr, "smelt: cannot run %s: %s\n", o->self_exe, strerror(errno));
    _exit(127);
}

static void print_stage(const char *name, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void print_stage(const char *name, const char *fmt, ...) {
    char ts[32];
    time_iso8601(ts, time_now());
    printf("%s  %-24s ", ts + 11, name);
    va_list ap;
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    putchar('\n');
    fflush(stdout);
}

/* One execution of a run: the recipe, the store, and the state of every stage in this process. */
typedef struct {
    store *s;
    const recipe *r;
    const char *run;
    const runner_opts *o;
    slot *sl;             /* one per stage, in recipe order */
    char *logdir;         /* logs/RUN */
    int jobs, running;    /* stages at a time; stages running now */
    int n_run, n_cached;  /* stages computed and reused by this execution */
    int failed_stage;     /* the first stage that failed for good, or -1 */
    double t0;
} runner;

/* Marks every pending stage that needs a failed or skipped stage as skipped (in order, so that
 * the marks travel down the DAG in one pass). */
static int skip_descendants(runner *rn) {
    for (int i = 0; i < rn->r->n_stages; i++) {
        if (rn->sl[i].state != S_PENDING) continue;
        const recipe_stage *st = &rn->r->stages[i];
        for (int k = 0; k < st->n_deps; k++) {
            int d = st->deps[k];
            if (rn->sl[d].state != S_FAILED && rn->sl[d].state != S_SKIPPED) continue;
            char *why = xasprintf("not run: it needs stage %s, which %s", rn->r->stages[d].name,
                                  rn->sl[d].state == S_FAILED ? "failed" : "was not run");
            int rc = !why || store_stage_set_status(rn->s, rn->run, st->name, "skipped", why) ? -1 : 0;
            free(why);
            if (rc) return -1;
            print_stage(st->name, "skipped (needs %s)", rn->r->stages[d].name);
            rn->sl[i].state = S_SKIPPED;
            break;
        }
    }
    return 0;
}

/* Resume: stages already complete in this run keep their outputs; the others become pending. */
static int load_resume(runner *rn) {
    for (int i = 0; i < rn->r->n_stages; i++) {
        const recipe_stage *st = &rn->r->stages[i];
        stage_row row;
        if (store_stage_load(rn->s, rn->run, st->name, &row)) return -1;
        int rc = 0;
        if (!strcmp(row.status, "ok") || !strcmp(row.status, "cached")) {
            rn->sl[i].state = S_DONE;
            rc = load_outputs(rn->s, rn->run, st, &rn->sl[i]);
        } else if (strcmp(row.status, "pending")) {
            rc = store_stage_set_status(rn->s, rn->run, st->name, "pending", NULL);
        }
        rn->sl[i].attempt = row.attempts;
        stage_row_free(&row);
        if (rc) return -1;
    }
    return 0;
}

/* Stage i is ready: links a completed key, or launches an attempt when a job slot is free.
 * *progressed is set when the stage changed state. */
static int start_stage(runner *rn, int i, int *progressed) {
    const recipe_stage *st = &rn->r->stages[i];
    slot *sl = &rn->sl[i];
    char key[65], from_run[RUN_ID_MAX], from_stage[STAGE_NAME_MAX];
    if (runner_prepare_stage(rn->s, rn->r, rn->run, i, output_digest, rn->sl, key)) return -1;
    int found = store_completion_find(rn->s, key, from_run, from_stage);
    if (found < 0) return -1;
    if (found && (strcmp(from_run, rn->run) || strcmp(from_stage, st->name))) {
        if (store_stage_link_cached(rn->s, rn->run, st->name, from_run, from_stage) ||
            load_outputs(rn->s, rn->run, st, sl))
            return -1;
        sl->state = S_DONE;
        rn->n_cached++;
        *progressed = 1;
        print_stage(st->name, "cached (from run %s)", from_run);
        return 0;
    }
    if (rn->running >= rn->jobs) return 0;
    int attempt = sl->attempt + 1;
    free(sl->log_path);
    sl->log_path = xasprintf("%s/%s.%d.log", rn->logdir, st->name, attempt);
    if (!sl->log_path || store_stage_start(rn->s, rn->run, st->name, sl->log_path, 0, &attempt)) return -1;
    sl->attempt = attempt;
    pid_t pid = launch(rn->s, st, rn->run, attempt, sl->log_path, rn->o);
    if (pid < 0) return -1;
    sl->pid = pid;
    sl->state = S_RUNNING;
    sl->session_attempts++;
    sl->started = time_monotonic();
    rn->running++;
    *progressed = 1;
    if (st->ranks > 1) print_stage(st->name, "running on %d ranks (attempt %d)", st->ranks, attempt);
    else print_stage(st->name, "running (attempt %d)", attempt);
    return store_stage_set_pid(rn->s, rn->run, st->name, pid);
}

/* Starts every pending stage whose dependencies are done (up to the job limit) and skips those
 * whose dependencies failed. */
static int launch_ready(runner *rn, int *progressed) {
    for (int i = 0; i < rn->r->n_stages && !runner_stop; i++) {
        if (rn->sl[i].state != S_PENDING) continue;
        const recipe_stage *st = &rn->r->stages[i];
        int ready = 1, blocked = 0;
        for (int k = 0; k < st->n_deps; k++) {
            sstate d = rn->sl[st->deps[k]].state;
            ready &= d == S_DONE;
            blocked |= d == S_FAILED || d == S_SKIPPED;
        }
        if (blocked) {
            if (skip_descendants(rn)) return -1;
            *progressed = 1;
        } else if (ready && start_stage(rn, i, progressed)) {
            return -1;
        }
    }
    return 0;
}

/* Waits for one stage process and records how its attempt ended: done, retried or failed. */
static int reap_one(runner *rn) {
    int status;
    pid_t pid = waitpid(-1, &status, 0);
    if (pid < 0) return errno == EINTR ? 0 : err_errno("waiting for stage processes");
    int i = 0, n = rn->r->n_stages;
    while (i < n && !(rn->sl[i].state == S_RUNNING && rn->sl[i].pid == pid)) i++;
    if (i == n) return 0;
    rn->running--;
    slot *sl = &rn->sl[i];
    const recipe_stage *st = &rn->r->stages[i];
    int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    /* The process is gone: whatever happens next, it is not running any more. */
    sl->state = S_PENDING;
    stage_row row;
    if (store_attempt_finish(rn->s, rn->run, st->name, sl->attempt, code) ||
        store_stage_load(rn->s, rn->run, st->name, &row))
        return -1;
    double secs = time_monotonic() - sl->started;
    int rc = 0;
    if (code == 0 && (!strcmp(row.status, "ok") || !strcmp(row.status, "cached"))) {
        sl->state = S_DONE;
        if (!strcmp(row.status, "ok")) {
            rn->n_run++;
            print_stage(st->name, "ok (%.2fs)", secs);
        } else {
            rn->n_cached++;
            print_stage(st->name, "cached (from run %s, computed meanwhile)", row.cached_from);
        }
        rc = load_outputs(rn->s, rn->run, st, sl);
    } else if (sl->session_attempts <= st->retries) {
        print_stage(st->name, "attempt %d failed (exit %d); retrying (%d of %d retries left); log: %s", sl->attempt, code,
                    st->retries - sl->session_attempts, st->retries, sl->log_path);
        rc = store_stage_set_status(rn->s, rn->run, st->name, "pending", row.error);
    } else {
        char *msg = xasprintf("exit status %d%s%s; log: %s", code, row.error ? ": " : "", row.error ? row.error : "",
                              sl->log_path);
        sl->state = S_FAILED;
        if (rn->failed_stage < 0) rn->failed_stage = i;
        rc = !msg || store_stage_set_status(rn->s, rn->run, st->name, "failed", msg) ? -1 : 0;
        print_stage(st->name, "FAILED (exit %d) after %.2fs; log: %s", code, secs, sl->log_path);
        if (row.error) printf("    %s\n", row.error);
        free(msg);
        if (!rc) rc = skip_descendants(rn);
    }
    stage_row_free(&row);
    return rc;
}

/* Ends the execution: stops the stages still running (interrupted, or the loop broke: they stay
 * pending for resume), then records how the run ended. rc is the loop's status (the error slot
 * holds its cause); returns the run's. A store write that fails here fails the run too: smelt
 * never reports an end that the store does not hold. */
static int finish_run(runner *rn, int rc) {
    char *cause = rc ? xstrdup(err_msg()) : NULL, *also = NULL;
    err_kind kind = rc ? err_kind_get() : ERR_NONE;
    for (int i = 0; i < rn->r->n_stages; i++) {
        if (rn->sl[i].state != S_RUNNING) continue;
        kill(-rn->sl[i].pid, SIGTERM);
        int status;
        waitpid(rn->sl[i].pid, &status, 0);
        rn->sl[i].state = S_PENDING;
        if (store_stage_set_status(rn->s, rn->run, rn->r->stages[i].name, "pending", "interrupted") && !also)
            also = xstrdup(err_msg());
        print_stage(rn->r->stages[i].name, "interrupted");
    }
    int done = 0;
    for (int i = 0; i < rn->r->n_stages; i++) done += rn->sl[i].state == S_DONE;
    const char *status = "failed";
    if (rc) {
        err_set(kind, "%s", cause ? cause : "run failed");
    } else if (runner_stop) {
        rc = err_set(ERR_STAGE, "interrupted by signal %d; continue with 'smelt resume %s'", (int)runner_stop, rn->run);
        status = "interrupted";
    } else if (rn->failed_stage >= 0)
        rc = err_set(ERR_STAGE, "run %s FAILED: stage %s failed; log: %s; fix the cause and continue with 'smelt "
                     "resume %s'", rn->run, rn->r->stages[rn->failed_stage].name, rn->sl[rn->failed_stage].log_path,
                     rn->run);
    else if (done != rn->r->n_stages)
        rc = err_set(ERR_INTERNAL, "run %s ended with %d of %d stages done", rn->run, done, rn->r->n_stages);
    else
        status = "ok";
    char *msg = rc ? xstrdup(err_msg()) : NULL;
    kind = rc ? err_kind_get() : ERR_NONE;
    if (store_run_set_status(rn->s, rn->run, status, msg) && !also) also = xstrdup(err_msg());
    if (also) {
        if (rc) err_set(kind, "%s (and the store did not record it: %s)", msg ? msg : "run failed", also);
        else err_set(ERR_IO, "run %s: every stage is done, but the store did not record the run as ok: %s", rn->run, also);
        rc = -1;
    } else if (!rc) {
        printf("run %s ok: %d stages (%d run, %d cached) in %.2fs\n", rn->run, rn->r->n_stages, rn->n_run, rn->n_cached,
               time_monotonic() - rn->t0);
    }
    free(also);
    free(msg);
    free(cause);
    return rc;
}

int runner_execute(store *s, const recipe *r, const char *run, const runner_opts *o) {
    if (recipe_check_devices(r)) return -1;
    runner rn = {.s = s, .r = r, .run = run, .o = o, .jobs = o->jobs > 0 ? o->jobs : 1, .failed_stage = -1};
    rn.sl = xcalloc((size_t)r->n_stages + 1, sizeof *rn.sl);
    if (!rn.sl) return -1;
    rn.logdir = xasprintf("%s/logs/%s", store_dir(s), run);
    if (!rn.logdir || store_run_claim(s, run) || fs_mkdir_p(rn.logdir, 0755)) {
        free(rn.logdir);
        free(rn.sl);
        return -1;
    }
    int rc = load_resume(&rn);
    struct sigaction sa = {0}, old_int, old_term;
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGTERM, &sa, &old_term);
    runner_stop = 0;
    rn.t0 = time_monotonic();
    while (!rc && !runner_stop) {
        int progressed = 0;
        rc = launch_ready(&rn, &progressed);
        if (rc || runner_stop) break;
        if (rn.running == 0) {
            if (!progressed) break;
            continue;
        }
        rc = reap_one(&rn);
    }
    rc = finish_run(&rn, rc);
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGTERM, &old_term, NULL);
    for (int i = 0; i < r->n_stages; i++) {
        free(rn.sl[i].log_path);
        free(rn.sl[i].outputs);
    }
    free(rn.sl);
    free(rn.logdir);
    fflush(stdout);
    return rc;
}

int runner_closest_key(store *s, const char *name, const char *key_json, const char *exclude_run, double before,
                       key_closest *out) {
    memset(out, 0, sizeof *out);
    out->n_diff = -1;
    sqlite3_stmt *st;
    if (store_prepare(s, &st, "SELECT st.run_id, st.key_json FROM stage st JOIN run r ON r.id = st.run_id "
                              "WHERE st.name = ? AND st.key_json IS NOT NULL AND st.run_id != ? "
                              "AND (? = 0 OR r.created_at < ?) ORDER BY r.created_at DESC LIMIT 200"))
        return -1;
    sqlite3_bind_text(st, 1, name, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 2, exclude_run ? exclude_run : "", -1, SQLITE_TRANSIENT);
    sqlite3_bind_double(st, 3, before);
    sqlite3_bind_double(st, 4, before);
    int rc;
    while ((rc = store_step_row(s, st, "searching earlier keys")) == 1) {
        strbuf sb = STRBUF_INIT;
        int k = key_diff(&sb, (const char *)sqlite3_column_text(st, 1), key_json);
        if (k < 0) {
            sb_free(&sb);
            sqlite3_finalize(st);
            return -1;
        }
        if (out->n_diff < 0 || k < out->n_diff) {
            free(out->diff);
            out->diff = sb_detach(&sb);
            out->n_diff = k;
            snprintf(out->run, sizeof out->run, "%s", (const char *)sqlite3_column_text(st, 0));
        }
        sb_free(&sb);
        if (k == 0) break;
    }
    sqlite3_finalize(st);
    return rc < 0 ? -1 : 0;
}
