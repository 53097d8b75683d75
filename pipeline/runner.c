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

/* Marks every pending descendant of stage i as skipped. */
static void skip_descendants(store *s, const recipe *r, const char *run, int failed, slot *sl) {
    for (int i = failed + 1; i < r->n_stages; i++) {
        if (sl[i].state != S_PENDING) continue;
        const recipe_stage *st = &r->stages[i];
        for (int k = 0; k < st->n_deps; k++) {
            int d = st->deps[k];
            if (sl[d].state == S_FAILED || sl[d].state == S_SKIPPED) {
                char *why = xasprintf("not run: it needs stage %s, which %s", r->stages[d].name,
                                      sl[d].state == S_FAILED ? "failed" : "was not run");
                store_stage_set_status(s, run, st->name, "skipped", why);
                print_stage(st->name, "skipped (needs %s)", r->stages[d].name);
                free(why);
                sl[i].state = S_SKIPPED;
                break;
            }
        }
    }
}

int runner_execute(store *s, const recipe *r, const char *run, const runner_opts *o) {
    int n = r->n_stages, jobs = o->jobs > 0 ? o->jobs : 1;
    slot *sl = xcalloc((size_t)n + 1, sizeof *sl);
    if (!sl) return -1;
    if (store_run_claim(s, run)) {
        free(sl);
        return -1;
    }
    char *logdir = xasprintf("%s/logs/%s", store_dir(s), run);
    if (!logdir || fs_mkdir_p(logdir, 0755)) {
        free(logdir);
        free(sl);
        return -1;
    }
    /* Stages already complete in this run (a resume) keep their outputs. */
    int rc = 0, n_run = 0, n_cached = 0;
    for (int i = 0; i < n && !rc; i++) {
        stage_row row;
        if (store_stage_load(s, run, r->stages[i].name, &row)) {
            rc = -1;
            break;
        }
        if (!strcmp(row.status, "ok") || !strcmp(row.status, "cached")) {
            sl[i].state = S_DONE;
            rc = load_outputs(s, run, &r->stages[i], &sl[i]);
        } else if (strcmp(row.status, "pending")) {
            rc = store_stage_set_status(s, run, r->stages[i].name, "pending", NULL);
        }
        sl[i].attempt = row.attempts;
        stage_row_free(&row);
    }
    struct sigaction sa = {0}, old_int, old_term;
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGTERM, &sa, &old_term);
    runner_stop = 0;
    double t0 = time_monotonic();
    int running = 0, failed_stage = -1;
    while (!rc && !runner_stop) {
        int progressed = 0;
        for (int i = 0; i < n && !rc && !runner_stop; i++) {
            if (sl[i].state != S_PENDING) continue;
            const recipe_stage *st = &r->stages[i];
            int ready = 1, blocked = 0;
            for (int k = 0; k < st->n_deps; k++) {
                sstate d = sl[st->deps[k]].state;
                ready &= d == S_DONE;
                blocked |= d == S_FAILED || d == S_SKIPPED;
            }
            if (blocked) {
                skip_descendants(s, r, run, -1, sl);
                progressed = 1;
                continue;
            }
            if (!ready) continue;
            char key[65];
            if (runner_prepare_stage(s, r, run, i, output_digest, sl, key)) {
                rc = -1;
                break;
            }
            char from_run[RUN_ID_MAX], from_stage[STAGE_NAME_MAX];
            int found = store_completion_find(s, key, from_run, from_stage);
            if (found < 0) {
                rc = -1;
                break;
            }
            if (found && (strcmp(from_run, run) || strcmp(from_stage, st->name))) {
                if (store_stage_link_cached(s, run, st->name, from_run, from_stage) || load_outputs(s, run, st, &sl[i])) {
                    rc = -1;
                    break;
                }
                sl[i].state = S_DONE;
                n_cached++;
                progressed = 1;
                print_stage(st->name, "cached (from run %s)", from_run);
                continue;
            }
            if (running >= jobs) continue;
            int attempt = sl[i].attempt + 1;
            free(sl[i].log_path);
            sl[i].log_path = xasprintf("%s/%s.%d.log", logdir, st->name, attempt);
            if (!sl[i].log_path || store_stage_start(s, run, st->name, sl[i].log_path, 0, &attempt)) {
                rc = -1;
                break;
            }
            sl[i].attempt = attempt;
            pid_t pid = launch(s, st, run, attempt, sl[i].log_path, o);
            if (pid < 0) {
                rc = -1;
                break;
            }
            store_stage_set_pid(s, run, st->name, pid);
            sl[i].pid = pid;
            sl[i].state = S_RUNNING;
            sl[i].session_attempts++;
            sl[i].started = time_monotonic();
            running++;
            progressed = 1;
            if (st->ranks > 1) print_stage(st->name, "running on %d ranks (attempt %d)", st->ranks, attempt);
            else print_stage(st->name, "running (attempt %d)", attempt);
        }
        if (rc || runner_stop) break;
        if (running == 0) {
            if (!progressed) break;
            continue;
        }
        int status;
        pid_t pid = waitpid(-1, &status, 0);
        if (pid < 0) {
            if (errno == EINTR) continue;
            rc = err_errno("waiting for stage processes");
            break;
        }
        int i = 0;
        while (i < n && !(sl[i].state == S_RUNNING && sl[i].pid == pid)) i++;
        if (i == n) continue;
        running--;
        const recipe_stage *st = &r->stages[i];
        int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        store_attempt_finish(s, run, st->name, sl[i].attempt, code);
        stage_row row;
        if (store_stage_load(s, run, st->name, &row)) {
            rc = -1;
            break;
        }
        double secs = time_monotonic() - sl[i].started;
        if (code == 0 && (!strcmp(row.status, "ok") || !strcmp(row.status, "cached"))) {
            sl[i].state = S_DONE;
            if (!strcmp(row.status, "ok")) {
                n_run++;
                print_stage(st->name, "ok (%.2fs)", secs);
            } else {
                n_cached++;
                print_stage(st->name, "cached (from run %s, computed meanwhile)", row.cached_from);
            }
            rc = load_outputs(s, run, st, &sl[i]);
        } else if (sl[i].session_attempts <= st->retries) {
            print_stage(st->name, "attempt %d failed (exit %d); retrying (%d of %d retries left); log: %s", sl[i].attempt,
                        code, st->retries - sl[i].session_attempts, st->retries, sl[i].log_path);
            store_stage_set_status(s, run, st->name, "pending", row.error);
            sl[i].state = S_PENDING;
        } else {
            char *msg = xasprintf("exit status %d%s%s; log: %s", code, row.error ? ": " : "", row.error ? row.error : "",
                                  sl[i].log_path);
            store_stage_set_status(s, run, st->name, "failed", msg ? msg : "failed");
            print_stage(st->name, "FAILED (exit %d) after %.2fs; log: %s", code, secs, sl[i].log_path);
            if (row.error) printf("    %s\n", row.error);
            free(msg);
            sl[i].state = S_FAILED;
            if (failed_stage < 0) failed_stage = i;
            skip_descendants(s, r, run, i, sl);
        }
        stage_row_free(&row);
    }
    /* Interrupted or broken: stop the stages still running, leave them pending for resume. */
    for (int i = 0; i < n; i++) {
        if (sl[i].state != S_RUNNING) continue;
        kill(-sl[i].pid, SIGTERM);
        int status;
        waitpid(sl[i].pid, &status, 0);
        store_stage_set_status(s, run, r->stages[i].name, "pending", "interrupted");
        print_stage(r->stages[i].name, "interrupted");
    }
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGTERM, &old_term, NULL);
    double secs = time_monotonic() - t0;
    if (!rc && runner_stop) {
        rc = err_set(ERR_STAGE, "interrupted by signal %d; continue with 'smelt resume %s'", (int)runner_stop, run);
        store_run_set_status(s, run, "interrupted", err_msg());
    } else if (!rc && failed_stage >= 0) {
        rc = err_set(ERR_STAGE, "run %s FAILED: stage %s failed; log: %s; fix the cause and continue with 'smelt resume "
                     "%s'", run, r->stages[failed_stage].name, sl[failed_stage].log_path, run);
        store_run_set_status(s, run, "failed", err_msg());
    } else if (!rc) {
        int done = 0;
        for (int i = 0; i < n; i++) done += sl[i].state == S_DONE;
        if (done != n) {
            rc = err_set(ERR_INTERNAL, "run %s ended with %d of %d stages done", run, done, n);
            store_run_set_status(s, run, "failed", err_msg());
        } else {
            store_run_set_status(s, run, "ok", NULL);
            printf("run %s ok: %d stages (%d run, %d cached) in %.2fs\n", run, n, n_run, n_cached, secs);
        }
    } else {
        char *msg = xstrdup(err_msg());
        err_kind k = err_kind_get();
        store_run_set_status(s, run, "failed", msg);
        err_set(k, "%s", msg ? msg : "run failed");
        free(msg);
    }
    for (int i = 0; i < n; i++) {
        free(sl[i].log_path);
        free(sl[i].outputs);
    }
    free(sl);
    free(logdir);
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
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
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
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) return store_err(s, "searching earlier keys");
    return 0;
}
