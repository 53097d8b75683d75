/* slurm_script.c: the Slurm side of pipeline/slurm.h that needs no store: submit options and
 * their JSON form, a stage's resources, batch scripts, running Slurm commands, and reading job
 * states with one batched squeue or sacct call. */
#include <cjson/cJSON.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/error.h"
#include "pipeline/slurm.h"

/* ---- options ---- */

static const struct {
    const char *name;
    size_t off;
} opt_strings[] = {
    {"partition", offsetof(slurm_opts, partition)},
    {"account", offsetof(slurm_opts, account)},
    {"time", offsetof(slurm_opts, time)},
    {"mem", offsetof(slurm_opts, mem)},
    {"launcher", offsetof(slurm_opts, launcher)},
};
static const struct {
    const char *name;
    size_t off;
} opt_ints[] = {
    {"nodes", offsetof(slurm_opts, nodes)},
    {"gpus_per_node", offsetof(slurm_opts, gpus_per_node)},
    {"cpus_per_task", offsetof(slurm_opts, cpus_per_task)},
};
#define N_OPT_STRINGS (sizeof opt_strings / sizeof *opt_strings)
#define N_OPT_INTS (sizeof opt_ints / sizeof *opt_ints)

static char **opt_str(slurm_opts *o, size_t i) { return (char **)((char *)o + opt_strings[i].off); }
static int *opt_int(slurm_opts *o, size_t i) { return (int *)((char *)o + opt_ints[i].off); }

int slurm_opts_to_json(const slurm_opts *o, char **json) {
    cJSON *j = cJSON_CreateObject();
    int ok = j != NULL;
    for (size_t i = 0; ok && i < N_OPT_STRINGS; i++) {
        const char *v = *opt_str((slurm_opts *)o, i);
        if (v) ok = cJSON_AddStringToObject(j, opt_strings[i].name, v) != NULL;
    }
    for (size_t i = 0; ok && i < N_OPT_INTS; i++) {
        int v = *opt_int((slurm_opts *)o, i);
        if (v) ok = cJSON_AddNumberToObject(j, opt_ints[i].name, v) != NULL;
    }
    *json = ok ? cJSON_PrintUnformatted(j) : NULL;
    cJSON_Delete(j);
    return *json ? 0 : err_set(ERR_NOMEM, "out of memory");
}

int slurm_opts_from_json(slurm_opts *o, const char *json) {
    memset(o, 0, sizeof *o);
    cJSON *j = cJSON_Parse(json);
    if (!cJSON_IsObject(j)) {
        cJSON_Delete(j);
        return err_set(ERR_CORRUPT, "the Slurm options recorded for the run are not a JSON object: %.80s", json);
    }
    int rc = 0;
    for (size_t i = 0; !rc && i < N_OPT_STRINGS; i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, opt_strings[i].name);
        if (cJSON_IsString(v) && !(*opt_str(o, i) = xstrdup(v->valuestring))) rc = -1;
    }
    for (size_t i = 0; !rc && i < N_OPT_INTS; i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, opt_ints[i].name);
        if (cJSON_IsNumber(v)) *opt_int(o, i) = v->valueint;
    }
    cJSON_Delete(j);
    if (rc) slurm_opts_free(o);
    return rc;
}

int slurm_opts_merge(slurm_opts *o, const slurm_opts *over) {
    for (size_t i = 0; i < N_OPT_STRINGS; i++) {
        const char *v = *opt_str((slurm_opts *)over, i);
        if (!v) continue;
        char *c = xstrdup(v);
        if (!c) return -1;
        free(*opt_str(o, i));
        *opt_str(o, i) = c;
    }
    for (size_t i = 0; i < N_OPT_INTS; i++)
        if (*opt_int((slurm_opts *)over, i)) *opt_int(o, i) = *opt_int((slurm_opts *)over, i);
    return 0;
}

void slurm_opts_free(slurm_opts *o) {
    for (size_t i = 0; i < N_OPT_STRINGS; i++) free(*opt_str(o, i));
    memset(o, 0, sizeof *o);
}

/* ---- resources and scripts ---- */

int slurm_stage_resources(const recipe_stage *st, const slurm_opts *o, slurm_resources *out) {
    memset(out, 0, sizeof *out);
    out->ntasks = st->ranks > 0 ? st->ranks : 1;
    out->cpus_per_task = o->cpus_per_task;
    out->gpus_per_node = o->gpus_per_node;
    out->time = o->time;
    out->mem = o->mem;
    out->partition = o->partition;
    out->account = o->account;
    /* A default --nodes never asks for more nodes than the stage has ranks. */
    out->nodes = o->nodes > out->ntasks ? out->ntasks : o->nodes;
    const cJSON *r = st->resources, *v;
    if ((v = cJSON_GetObjectItemCaseSensitive(r, "time")) && cJSON_IsString(v)) out->time = v->valuestring;
    if ((v = cJSON_GetObjectItemCaseSensitive(r, "mem")) && cJSON_IsString(v)) out->mem = v->valuestring;
    if ((v = cJSON_GetObjectItemCaseSensitive(r, "partition")) && cJSON_IsString(v)) out->partition = v->valuestring;
    if ((v = cJSON_GetObjectItemCaseSensitive(r, "account")) && cJSON_IsString(v)) out->account = v->valuestring;
    if ((v = cJSON_GetObjectItemCaseSensitive(r, "cpus")) && cJSON_IsNumber(v)) out->cpus_per_task = v->valueint;
    if ((v = cJSON_GetObjectItemCaseSensitive(r, "gpus")) && cJSON_IsNumber(v)) out->gpus_per_node = v->valueint;
    if ((v = cJSON_GetObjectItemCaseSensitive(r, "nodes")) && cJSON_IsNumber(v)) {
        if (v->valueint > out->ntasks)
            return err_set(ERR_INPUT, "%s:%d:%d: stage '%s': resources.nodes is %d but the stage has %d rank%s; every "
                           "node needs at least one rank: set ranks: %d or fewer nodes", st->file, st->line, st->col,
                           st->name, v->valueint, out->ntasks, out->ntasks == 1 ? "" : "s", v->valueint);
        out->nodes = v->valueint;
    }
    /* device: cuda without a GPU count asks for one GPU per rank of the busiest node. */
    if (st->device == STAGE_DEVICE_CUDA && out->gpus_per_node == 0) {
        int nodes = out->nodes > 0 ? out->nodes : 1;
        out->gpus_per_node = (out->ntasks + nodes - 1) / nodes;
    }
    return 0;
}

void slurm_job_name(char *buf, size_t cap, const char *run) { snprintf(buf, cap, "smelt-%s", run); }

/* Values written into #SBATCH lines must be single words that Slurm takes literally. */
static int sbatch_safe(const char *what, const char *v, const char *stage) {
    for (const unsigned char *p = (const unsigned char *)v; *p; p++)
        if (isspace(*p) || iscntrl(*p) || *p == '"' || *p == '\'' || *p == '\\' || *p == '%')
            return err_set(ERR_INPUT, "stage %s: the %s '%s' cannot be written into an #SBATCH line (it contains %s); "
                           "use a value without spaces, quotes, backslashes or %%", stage, what, v,
                           isspace(*p) ? "a space" : iscntrl(*p) ? "a control character" : "a quote, backslash or %");
    return 0;
}

/* 'text' quoted for /bin/sh. */
static int sh_quote(strbuf *sb, const char *s) {
    int rc = sb_putc(sb, '\'');
    for (; *s && !rc; s++) rc = *s == '\'' ? sb_puts(sb, "'\\''") : sb_putc(sb, *s);
    return rc ? rc : sb_putc(sb, '\'');
}

int slurm_script(strbuf *sb, const recipe_stage *st, const slurm_resources *res, const char *self_exe,
                 const char *store_dir, const char *run, const char *dependency) {
    const char *words[][2] = {{"store directory", store_dir}, {"run id", run},     {"time", res->time},
                              {"mem", res->mem},                {"partition", res->partition},
                              {"account", res->account},        {"stage name", st->name}};
    for (size_t i = 0; i < sizeof words / sizeof *words; i++)
        if (words[i][1] && sbatch_safe(words[i][0], words[i][1], st->name)) return -1;
    char name[128];
    slurm_job_name(name, sizeof name, run);
    int rc = sb_printf(sb, "#!/bin/sh\n# smelt: stage %s of run %s. The job computes the stage's cache key from the "
                       "upstream outputs\n# in the store when it starts, reuses a completed key, or runs the stage.\n",
                       st->name, run);
    rc |= sb_printf(sb, "#SBATCH --job-name=%s\n#SBATCH --comment=%s\n", name, st->name);
    rc |= sb_printf(sb, "#SBATCH --output=%s/logs/%s/%s.slurm-%%j.log\n#SBATCH --chdir=%s\n", store_dir, run, st->name,
                    store_dir);
    rc |= sb_printf(sb, "#SBATCH --ntasks=%d\n", res->ntasks);
    if (res->nodes > 0) rc |= sb_printf(sb, "#SBATCH --nodes=%d\n", res->nodes);
    if (res->cpus_per_task > 0) rc |= sb_printf(sb, "#SBATCH --cpus-per-task=%d\n", res->cpus_per_task);
    if (res->gpus_per_node > 0) rc |= sb_printf(sb, "#SBATCH --gpus-per-node=%d\n", res->gpus_per_node);
    if (res->time) rc |= sb_printf(sb, "#SBATCH --time=%s\n", res->time);
    if (res->mem) rc |= sb_printf(sb, "#SBATCH --mem=%s\n", res->mem);
    if (res->partition) rc |= sb_printf(sb, "#SBATCH --partition=%s\n", res->partition);
    if (res->account) rc |= sb_printf(sb, "#SBATCH --account=%s\n", res->account);
    /* A job whose upstream job failed or was cancelled can never run: Slurm cancels it. */
    if (dependency && dependency[0])
        rc |= sb_printf(sb, "#SBATCH --dependency=%s\n#SBATCH --kill-on-invalid-dep=yes\n", dependency);
    rc |= sb_puts(sb, "exec ");
    rc |= sh_quote(sb, self_exe);
    rc |= sb_puts(sb, " slurm-stage --store ");
    rc |= sh_quote(sb, store_dir);
    rc |= sb_puts(sb, " --run ");
    rc |= sh_quote(sb, run);
    rc |= sb_puts(sb, " --stage ");
    rc |= sh_quote(sb, st->name);
    rc |= sb_putc(sb, '\n');
    return rc ? -1 : 0;
}

/* ---- running Slurm commands ---- */

#define SLURM_OUTPUT_MAX (16u << 20)

int slurm_cmd(char *const argv[], char **out, char **err, int *exit_status) {
    *out = *err = NULL;
    int po[2] = {-1, -1}, pe[2] = {-1, -1};
    if (pipe2(po, O_CLOEXEC) || pipe2(pe, O_CLOEXEC)) {
        int e = errno;
        for (int i = 0; i < 2; i++) {
            if (po[i] >= 0) close(po[i]);
            if (pe[i] >= 0) close(pe[i]);
        }
        errno = e;
        return err_errno("cannot create a pipe to run %s", argv[0]);
    }
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        close(po[0]), close(po[1]), close(pe[0]), close(pe[1]);
        return err_errno("cannot fork to run %s", argv[0]);
    }
    if (pid == 0) {
        int devnull = open("/dev/null", O_RDONLY);
        if (devnull >= 0) dup2(devnull, STDIN_FILENO);
        dup2(po[1], STDOUT_FILENO);
        dup2(pe[1], STDERR_FILENO);
        execvp(argv[0], argv);
        _exit(127);
    }
    close(po[1]);
    close(pe[1]);
    strbuf sb[2] = {STRBUF_INIT, STRBUF_INIT};
    struct pollfd fds[2] = {{po[0], POLLIN, 0}, {pe[0], POLLIN, 0}};
    int open_fds = 2, rc = 0;
    while (open_fds > 0) {
        if (poll(fds, 2, -1) < 0) {
            if (errno == EINTR) continue;
            rc = err_errno("waiting for the output of %s", argv[0]);
            break;
        }
        for (int i = 0; i < 2; i++) {
            if (fds[i].fd < 0 || !(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
            char buf[8192];
            ssize_t n = read(fds[i].fd, buf, sizeof buf);
            if (n < 0 && errno == EINTR) continue;
            if (n <= 0) {
                close(fds[i].fd);
                fds[i].fd = -1;
                open_fds--;
            } else if (sb[i].len < SLURM_OUTPUT_MAX && sb_append(&sb[i], buf, (size_t)n)) {
                rc = -1;
            }
        }
    }
    for (int i = 0; i < 2; i++)
        if (fds[i].fd >= 0) close(fds[i].fd);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
    int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    if (!rc && code == 127 && sb[0].len == 0 && sb[1].len == 0)
        rc = err_set(ERR_INPUT, "cannot run '%s': it is not on PATH. Is this a Slurm login node? Install the Slurm "
                     "client (Debian: slurm-client) or add its bin directory to PATH", argv[0]);
    if (rc) {
        sb_free(&sb[0]);
        sb_free(&sb[1]);
        return -1;
    }
    *out = sb_detach(&sb[0]);
    *err = sb_detach(&sb[1]);
    *exit_status = code;
    return 0;
}

/* ---- job states ---- */

int slurm_state_active(const char *state) {
    static const char *const active[] = {"PENDING",   "CONFIGURING", "RUNNING",   "COMPLETING", "SUSPENDED",
                                         "REQUEUED",  "REQUEUE_FED", "REQUEUE_HOLD", "RESIZING", "SIGNALING",
                                         "STAGE_OUT", "STOPPED",     "RESV_DEL_HOLD", "SPECIAL_EXIT", NULL};
    for (int i = 0; active[i]; i++)
        if (!strcmp(state, active[i])) return 1;
    return 0;
}

/* Splits `line` at '|' into at most n fields (the last takes the rest); returns the count. */
static int split_bar(char *line, char **f, int n) {
    int k = 0;
    f[k++] = line;
    for (char *p = line; *p && k < n; p++)
        if (*p == '|') {
            *p = 0;
            f[k++] = p + 1;
        }
    return k;
}

static int parse_lines(const char *text, int n_fields, int squeue, slurm_live **out, int *n) {
    *out = NULL;
    *n = 0;
    char *copy = xstrdup(text);
    if (!copy) return -1;
    int cap = 0, rc = 0;
    for (char *line = copy, *next; line && *line && !rc; line = next) {
        next = strchr(line, '\n');
        if (next) *next++ = 0;
        size_t len = strlen(line);
        if (len && line[len - 1] == '\r') line[--len] = 0;
        if (!len) continue;
        char *f[6];
        /* The state is the first word: sacct writes "CANCELLED by 1000", "CANCELLED+" when cut. */
        if (split_bar(line, f, n_fields) != n_fields || !f[0][0] || strcspn(f[1], " +") == 0) {
            rc = err_set(ERR_IO, "cannot read a line of %s's output: '%s' (expected %d fields separated by '|')",
                         squeue ? "squeue" : "sacct", line, n_fields);
            break;
        }
        if (*n == cap) {
            cap = cap ? 2 * cap : 32;
            slurm_live *nl = xrealloc(*out, (size_t)cap * sizeof *nl);
            if (!nl) {
                rc = -1;
                break;
            }
            *out = nl;
        }
        slurm_live *l = &(*out)[(*n)++];
        memset(l, 0, sizeof *l);
        snprintf(l->job_id, sizeof l->job_id, "%s", f[0]);
        snprintf(l->state, sizeof l->state, "%.*s", (int)strcspn(f[1], " +"), f[1]);
        snprintf(l->elapsed, sizeof l->elapsed, "%s", f[2]);
        snprintf(l->node, sizeof l->node, "%s", strcmp(f[3], "None assigned") && strcmp(f[3], "(null)") ? f[3] : "");
        snprintf(l->reason, sizeof l->reason, "%s", strcmp(f[4], "None") && strcmp(f[4], "(null)") ? f[4] : "");
        if (squeue) snprintf(l->stage, sizeof l->stage, "%s", strcmp(f[5], "(null)") ? f[5] : "");
    }
    free(copy);
    if (rc) {
        free(*out);
        *out = NULL;
        *n = 0;
    }
    return rc;
}

int slurm_parse_squeue(const char *text, slurm_live **out, int *n) { return parse_lines(text, 6, 1, out, n); }
int slurm_parse_sacct(const char *text, slurm_live **out, int *n) { return parse_lines(text, 5, 0, out, n); }

/* 1 when a Slurm command's error output says the controller could not be reached (an operation
 * that failed, exit 1) rather than that the request was refused (bad input, exit 2). The texts
 * are Slurm's own (slurm_strerror): "Unable to contact slurm controller (connect failure)", ... */
int slurm_unreachable(const char *text) {
    static const char *const signs[] = {"Unable to contact slurm controller", "Socket timed out",
                                        "Communication connection failure", "Connection refused",
                                        "Zero Bytes were transmitted or received", "temporarily unable to accept job",
                                        "Slurm backup controller in standby mode", NULL};
    for (int i = 0; text && signs[i]; i++)
        if (strstr(text, signs[i])) return 1;
    return 0;
}

/* One query; -1 (error slot naming the command and its message) when the command failed. */
static int query_once(int sacct, const char *run, const slurm_job_row *jobs, int n_jobs, slurm_live **live, int *n) {
    char name[128], *out = NULL, *err = NULL;
    slurm_job_name(name, sizeof name, run);
    strbuf ids = STRBUF_INIT, nm = STRBUF_INIT;
    int rc = 0, code = 0;
    for (int i = 0; i < n_jobs && !rc; i++) rc = sb_printf(&ids, "%s%s", i ? "," : "", jobs[i].job_id);
    if (!rc) rc = sb_printf(&nm, "--name=%s", name);
    if (!rc) {
        char *sq[] = {"squeue", "-h", "-t", "all", nm.buf, "-o", "%i|%T|%M|%N|%r|%k", NULL};
        char *sa[] = {"sacct", "-n", "-X", "-P", "-j", ids.buf, "-o", "JobID,State,Elapsed,NodeList,Reason", NULL};
        rc = slurm_cmd(sacct ? sa : sq, &out, &err, &code);
    }
    if (!rc && code != 0)
        rc = err_set(ERR_IO, "%s failed (exit %d): %s", sacct ? "sacct" : "squeue", code, err && err[0] ? err : out);
    if (!rc) rc = sacct ? slurm_parse_sacct(out, live, n) : slurm_parse_squeue(out, live, n);
    free(out);
    free(err);
    sb_free(&ids);
    sb_free(&nm);
    return rc;
}

/* Appends b's entries to a (both owned arrays of slurm_live); frees b. */
static int live_append(slurm_live **a, int *na, slurm_live *b, int nb) {
    if (nb == 0) {
        free(b);
        return 0;
    }
    slurm_live *m = xrealloc(*a, (size_t)(*na + nb) * sizeof *m);
    if (!m) {
        free(b);
        return -1;
    }
    memcpy(m + *na, b, (size_t)nb * sizeof *m);
    *a = m;
    *na += nb;
    free(b);
    return 0;
}

int slurm_run_query(const char *method, const char *run, const slurm_job_row *jobs, int n_jobs, int all_jobs,
                    slurm_live **live, int *n_live, int *calls) {
    *live = NULL;
    *n_live = 0;
    *calls = 0;
    const char *env = getenv("SMELT_SLURM_QUERY");
    if (env && env[0]) method = env; /* the user knows better than what the submit probe found */
    int sacct = method && !strcmp(method, "sacct") && n_jobs > 0, rc = 0;
    if (n_jobs == 0 && !all_jobs) return 0;
    (*calls)++;
    rc = query_once(sacct, run, jobs, n_jobs, live, n_live);
    if (rc && sacct) {
        /* Accounting is down or was turned off: the controller still knows the recent jobs. */
        err_clear();
        (*calls)++;
        return query_once(0, run, jobs, n_jobs, live, n_live);
    }
    if (!rc && sacct && all_jobs) {
        /* sacct -j lists the recorded jobs only; the controller lists every queued job of the run. */
        slurm_live *more = NULL;
        int n_more = 0;
        (*calls)++;
        rc = query_once(0, run, jobs, n_jobs, &more, &n_more);
        if (!rc) rc = live_append(live, n_live, more, n_more);
    }
    if (rc) {
        free(*live);
        *live = NULL;
        *n_live = 0;
    }
    return rc;
}

void slurm_view_fill(const slurm_job_row *jobs, int n_jobs, const slurm_live *live, int n_live, slurm_view *views) {
    for (int i = 0; i < n_jobs; i++) {
        slurm_view *v = &views[i];
        memset(v, 0, sizeof *v);
        const slurm_live *l = NULL;
        for (int k = 0; k < n_live && !l; k++)
            if (!strcmp(live[k].job_id, jobs[i].job_id)) l = &live[k];
        if (l) {
            snprintf(v->state, sizeof v->state, "%s", l->state);
            snprintf(v->elapsed, sizeof v->elapsed, "%s", l->elapsed);
            snprintf(v->node, sizeof v->node, "%s", l->node[0] ? l->node : jobs[i].node);
            snprintf(v->reason, sizeof v->reason, "%s", l->reason);
            v->live = 1;
            v->active = slurm_state_active(l->state);
            continue;
        }
        /* Slurm no longer knows the job (or could not be asked): what the store recorded. */
        static const char *const names[][2] = {{"completed", "COMPLETED"}, {"failed", "FAILED"},
                                               {"stopped", "STOPPED"},     {"cancelled", "CANCELLED"},
                                               {"lost", "LOST"},           {"started", "LOST"}};
        const char *st = "VANISHED";
        for (size_t k = 0; k < sizeof names / sizeof *names; k++)
            if (!strcmp(jobs[i].state, names[k][0])) st = names[k][1];
        snprintf(v->state, sizeof v->state, "%s", st);
        snprintf(v->node, sizeof v->node, "%s", jobs[i].node);
        if (jobs[i].started_at > 0) {
            double end = jobs[i].finished_at > 0 ? jobs[i].finished_at : jobs[i].started_at;
            int s = (int)(end - jobs[i].started_at + 0.5);
            snprintf(v->elapsed, sizeof v->elapsed, "%d:%02d:%02d", s / 3600, s / 60 % 60, s % 60);
        }
    }
}

int slurm_run_view(const char *method, const char *run, const slurm_job_row *jobs, int n_jobs, slurm_view *views,
                   int *calls) {
    slurm_live *live = NULL;
    int n_live = 0, rc = slurm_run_query(method, run, jobs, n_jobs, 0, &live, &n_live, calls);
    slurm_view_fill(jobs, n_jobs, live, n_live, views);
    free(live);
    return rc;
}
