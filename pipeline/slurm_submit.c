/* slurm_submit.c: submitting a run to Slurm, resuming it, cancelling it, and the plan of what
 * would be submitted. One process submits or resumes a run at a time (a lock file per run);
 * each job id is written to the store right after sbatch returns it. Slurm calls are counted:
 * a resume makes one state query, at most one scancel, and one sbatch per stage it submits. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#include "common/error.h"
#include "common/fsutil.h"
#include "common/log.h"
#include "pipeline/runner.h"
#include "pipeline/slurm.h"
#include "store/runs.h"

typedef enum { ST_DONE, ST_ADOPT, ST_SUBMIT } step_kind;

typedef struct {
    step_kind kind;
    char job_id[SLURM_JOB_ID_MAX]; /* ADOPT: the adopted job; SUBMIT: the new job */
    const slurm_job_row *job;      /* the stage's current job before this call, or NULL */
    const slurm_view *view;        /* its state, or NULL */
} step;

/* 1 when every object of the stage's outputs (manifests and their files) is on disk. */
static int outputs_present(store *s, const char *run, const char *stage) {
    output_row *outs;
    int n, present = 1;
    if (store_stage_outputs(s, run, stage, &outs, &n)) return -1;
    for (int i = 0; i < n && present; i++) {
        manifest m;
        if (!store_object_present(s, outs[i].digest) || store_manifest_read(s, outs[i].digest, &m)) {
            err_clear();
            present = 0;
            continue;
        }
        for (int j = 0; j < m.n_files && present; j++) present = store_object_present(s, m.files[j].digest);
        manifest_free(&m);
    }
    free(outs);
    return present && n > 0;
}

/* The run's submit lock: held while submitting or resuming (never waited for: a second
 * submitter is refused) and by `smelt cancel` while it cancels (which waits for it). With `out`,
 * a wait is announced there. */
static int lock_run(store *s, const char *run, int wait, FILE *out) {
    char *rel = xasprintf("locks/slurm-%s.lock", run);
    char *p = rel ? store_path(s, rel) : NULL;
    free(rel);
    int fd = p ? open(p, O_RDWR | O_CREAT | O_CLOEXEC, 0644) : -1;
    if (fd < 0) {
        if (p) err_errno("cannot open the lock file %s", p);
        free(p);
        return -1;
    }
    free(p);
    if (!flock(fd, LOCK_EX | LOCK_NB)) return fd;
    if (!wait) {
        close(fd);
        return err_set(ERR_INPUT, "another smelt process is submitting or resuming run %s right now; wait for it to "
                       "finish, then look with 'smelt status %s'", run, run);
    }
    if (out) {
        fprintf(out, "a smelt process is submitting run %s: waiting for it to stop before its next sbatch\n", run);
        fflush(out);
    }
    while (flock(fd, LOCK_EX)) {
        if (errno == EINTR) continue;
        err_errno("cannot take the submit lock of run %s", run);
        close(fd);
        return -1;
    }
    return fd;
}

/* "afterok:1:2" over the dependencies of stage i that have a job, or "". */
static char *dependency_of(const recipe *r, int i, const step *steps) {
    strbuf sb = STRBUF_INIT;
    int rc = 0;
    const recipe_stage *st = &r->stages[i];
    for (int k = 0; k < st->n_deps && !rc; k++) {
        const step *d = &steps[st->deps[k]];
        if (d->kind == ST_DONE) continue;
        rc = sb_printf(&sb, "%s%s", sb.len ? ":" : "afterok:", d->job_id);
    }
    if (rc) {
        sb_free(&sb);
        return NULL;
    }
    return sb_detach(&sb);
}

/* Writes the script of stage i under logs/RUN/slurm/ and submits it; records the job id. */
static int submit_stage(store *s, const recipe *r, const char *run, int i, const slurm_opts *o, const char *self_exe,
                        step *steps, FILE *out) {
    const recipe_stage *st = &r->stages[i];
    slurm_resources res;
    char *dep = dependency_of(r, i, steps), *dir = NULL, *path = NULL, *sout = NULL, *serr = NULL;
    strbuf sb = STRBUF_INIT;
    int rc = dep ? slurm_stage_resources(st, o, &res) : -1, code = 0;
    if (!rc) rc = slurm_script(&sb, st, &res, self_exe, store_dir(s), run, dep);
    if (!rc) {
        char *rel = xasprintf("logs/%s/slurm", run);
        dir = rel ? store_path(s, rel) : NULL;
        free(rel);
        int n = steps[i].job ? steps[i].job->submission + 1 : 1;
        path = dir ? xasprintf("%s/%s.%d.sbatch", dir, st->name, n) : NULL;
        rc = !path || fs_mkdir_p(dir, 0755) || fs_write_atomic(path, sb.buf, sb.len) ? -1 : 0;
    }
    if (!rc) {
        char *argv[] = {"sbatch", "--parsable", path, NULL};
        rc = slurm_cmd(argv, &sout, &serr, &code);
    }
    if (!rc && code != 0) {
        const char *said = serr && serr[0] ? serr : sout;
        if (slurm_unreachable(said))
            rc = err_set(ERR_IO, "sbatch could not reach the Slurm controller for stage %s (exit %d): %s; check that "
                         "slurmctld runs (scontrol ping), then 'smelt resume %s'", st->name, code, said, run);
        else
            rc = err_set(ERR_INPUT, "sbatch refused the job of stage %s (exit %d): %s; script %s", st->name, code, said,
                         path);
    }
    if (!rc) {
        /* --parsable prints "ID" or "ID;CLUSTER". */
        size_t n = strcspn(sout, ";\n\r ");
        if (n == 0 || n >= sizeof steps[i].job_id || strspn(sout, "0123456789") != n)
            rc = err_set(ERR_IO, "sbatch printed '%s' for stage %s, not a job id", sout, st->name);
        else snprintf(steps[i].job_id, sizeof steps[i].job_id, "%.*s", (int)n, sout);
    }
    if (!rc) rc = store_slurm_job_add(s, run, st->name, steps[i].job_id, dep, path);
    if (!rc) rc = store_stage_set_status(s, run, st->name, "pending", NULL);
    if (!rc) {
        fprintf(out, "  %-24s submitted job %s%s%s%s\n", st->name, steps[i].job_id, dep[0] ? " (" : "", dep,
                dep[0] ? ")" : "");
        fflush(out);
    }
    free(dep);
    free(dir);
    free(path);
    free(sout);
    free(serr);
    sb_free(&sb);
    return rc;
}

/* How job states are read: SMELT_SLURM_QUERY, else sacct when `sacct` answers for the job. */
static int query_method(const char *probe_job, char method[16]) {
    const char *env = getenv("SMELT_SLURM_QUERY");
    if (env && env[0]) {
        if (strcmp(env, "sacct") && strcmp(env, "squeue"))
            return err_set(ERR_INPUT, "SMELT_SLURM_QUERY='%s': expected sacct or squeue", env);
        snprintf(method, 16, "%s", env);
        return 0;
    }
    snprintf(method, 16, "squeue");
    if (!probe_job) return 0;
    char *out = NULL, *err = NULL, ids[SLURM_JOB_ID_MAX];
    snprintf(ids, sizeof ids, "%s", probe_job);
    char *argv[] = {"sacct", "-n", "-X", "-j", ids, "-o", "JobID", NULL};
    int code = 1;
    if (slurm_cmd(argv, &out, &err, &code)) err_clear();
    if (code == 0) snprintf(method, 16, "sacct");
    free(out);
    free(err);
    return 0;
}

static int cmp_job_id(const void *a, const void *b) {
    unsigned long long x = strtoull(((const slurm_live *)a)->job_id, NULL, 10);
    unsigned long long y = strtoull(((const slurm_live *)b)->job_id, NULL, 10);
    return x < y ? -1 : x > y;
}

/* Jobs Slurm has queued for the run that the store does not know: a submitter was killed between
 * sbatch's answer and its store write (the window is the whole sbatch call). Those still pending
 * or running whose comment names a stage of the recipe are recorded in submission (job id) order,
 * so that the newest of a stage becomes its current job and is adopted, not submitted again. */
static int record_unknown_jobs(store *s, const recipe *r, const char *run, const slurm_job_row *jobs, int n_jobs,
                               const slurm_live *live, int n_live, int *n_recorded) {
    *n_recorded = 0;
    slurm_live *unknown = xcalloc((size_t)n_live + 1, sizeof *unknown);
    if (!unknown) return -1;
    int n = 0, rc = 0;
    for (int k = 0; k < n_live; k++) {
        const slurm_live *l = &live[k];
        int known = 0;
        for (int j = 0; j < n_jobs && !known; j++) known = !strcmp(jobs[j].job_id, l->job_id);
        for (int j = 0; j < n && !known; j++) known = !strcmp(unknown[j].job_id, l->job_id);
        if (!known && slurm_state_active(l->state) && recipe_stage_index(r, l->stage) >= 0) unknown[n++] = *l;
    }
    qsort(unknown, (size_t)n, sizeof *unknown, cmp_job_id);
    for (int k = 0; k < n && !rc; k++) {
        rc = store_slurm_job_add(s, run, unknown[k].stage, unknown[k].job_id, NULL, NULL);
        if (!rc) {
            log_info("stage %s: job %s (%s) was queued by a submitter that died before recording it; recorded now",
                     unknown[k].stage, unknown[k].job_id, unknown[k].state);
            (*n_recorded)++;
        }
    }
    free(unknown);
    return rc;
}

/* Jobs that Slurm says have ended although their own process never recorded an end (cancelled
 * while pending, their dependency failed, or killed): the store records it. */
static int record_ended_jobs(store *s, const char *run, const slurm_job_row *jobs, const slurm_view *views, int n_jobs) {
    for (int k = 0; k < n_jobs; k++) {
        if (!views[k].live || views[k].active) continue;
        int changed = 0;
        if (store_slurm_job_ended(s, run, jobs[k].job_id, !strcmp(views[k].state, "CANCELLED") ? "cancelled" : "failed",
                                  &changed))
            return -1;
    }
    return 0;
}

/* Resume: the run's current jobs as the store and Slurm know them, with one batched query (two
 * when the run reads states with sacct: squeue then lists the jobs the store does not know). */
static int resume_view(store *s, const recipe *r, const char *run, const char *method, slurm_job_row **jobs,
                       int *n_jobs, slurm_view **views, int *calls) {
    slurm_live *live = NULL;
    int n_live = 0, n_new = 0;
    int rc = store_slurm_jobs_current(s, run, jobs, n_jobs);
    if (!rc && slurm_run_query(method, run, *jobs, *n_jobs, 1, &live, &n_live, calls))
        rc = err_prefix("cannot read the states of run %s's jobs, so nothing was resubmitted: ", run);
    if (!rc) rc = record_unknown_jobs(s, r, run, *jobs, *n_jobs, live, n_live, &n_new);
    if (!rc && n_new) {
        slurm_job_rows_free(*jobs, *n_jobs);
        rc = store_slurm_jobs_current(s, run, jobs, n_jobs);
    }
    if (!rc && !(*views = xcalloc((size_t)*n_jobs + 1, sizeof **views))) rc = -1;
    if (!rc) {
        slurm_view_fill(*jobs, *n_jobs, live, n_live, *views);
        rc = record_ended_jobs(s, run, *jobs, *views, *n_jobs);
    }
    free(live);
    return rc;
}

/* Decides each stage's step: done, adopted, cached now (linked), or to submit. Pending jobs that
 * wait on a job being replaced go to cancel[] (ids owned by `jobs`). */
static int plan_steps(store *s, const recipe *r, const char *run, int resume, const slurm_job_row *jobs, int n_jobs,
                      const slurm_view *views, step *steps, const char **cancel, int *n_cancel, int counts[3], FILE *out) {
    for (int i = 0; i < r->n_stages; i++) {
        const recipe_stage *st = &r->stages[i];
        step *sp = &steps[i];
        int jk = -1;
        for (int k = 0; k < n_jobs; k++)
            if (!strcmp(jobs[k].stage, st->name)) jk = k;
        if (jk >= 0) sp->job = &jobs[jk], sp->view = &views[jk];
        stage_row row;
        if (store_stage_load(s, run, st->name, &row)) return -1;
        int done = !strcmp(row.status, "ok") || !strcmp(row.status, "cached");
        int present = done ? outputs_present(s, run, st->name) : 0;
        stage_row_free(&row);
        if (present < 0) return -1;
        if (present) {
            sp->kind = ST_DONE;
            counts[0]++;
            if (resume) fprintf(out, "  %-24s done\n", st->name);
            continue;
        }
        int deps_done = 1, deps_moving = 0;
        for (int k = 0; k < st->n_deps; k++) {
            deps_done &= steps[st->deps[k]].kind == ST_DONE;
            deps_moving |= steps[st->deps[k]].kind == ST_SUBMIT;
        }
        if (sp->view && sp->view->active) {
            /* Adopt a job Slurm still has, unless it waits on a job that is being replaced. */
            if (!(deps_moving && !strcmp(sp->view->state, "PENDING"))) {
                sp->kind = ST_ADOPT;
                snprintf(sp->job_id, sizeof sp->job_id, "%s", sp->job->job_id);
                counts[1]++;
                fprintf(out, "  %-24s adopted job %s (%s)\n", st->name, sp->job_id, sp->view->state);
                continue;
            }
            cancel[(*n_cancel)++] = jobs[jk].job_id;
        }
        if (deps_done) {
            /* The key is computable now: a stage completed anywhere in the store is not submitted. */
            char key[65], from_run[RUN_ID_MAX], from_stage[STAGE_NAME_MAX];
            int found = runner_prepare_from_store(s, r, run, i, key) ? -1
                                                                     : store_completion_find(s, key, from_run, from_stage);
            if (found < 0) return -1;
            if (found && (strcmp(from_run, run) || strcmp(from_stage, st->name))) {
                if (store_stage_link_cached(s, run, st->name, from_run, from_stage)) return -1;
                sp->kind = ST_DONE;
                counts[2]++;
                fprintf(out, "  %-24s cached (from run %s)\n", st->name, from_run);
                continue;
            }
        }
        sp->kind = ST_SUBMIT;
    }
    return 0;
}

/* Pending jobs that wait on a job being replaced: one scancel for all of them. */
static int cancel_waiting(const char **cancel, int n_cancel) {
    if (!n_cancel) return 0;
    char **argv = xcalloc((size_t)n_cancel + 2, sizeof *argv);
    char *so = NULL, *se = NULL;
    int code = 0;
    if (!argv) return -1;
    argv[0] = "scancel";
    for (int k = 0; k < n_cancel; k++) argv[k + 1] = (char *)cancel[k]; /* execvp does not write them */
    int rc = slurm_cmd(argv, &so, &se, &code);
    if (!rc && code != 0) log_warn("scancel of jobs waiting on replaced jobs said (exit %d): %s", code, se);
    free(argv);
    free(so);
    free(se);
    return rc;
}

/* Submits the stages to submit, in order; before each sbatch it looks whether `smelt cancel`
 * marked the run, and then stops (the cancel, waiting for this process, cancels what it queued). */
static int submit_steps(store *s, const recipe *r, const char *run, const slurm_opts *o, const char *self_exe,
                        step *steps, FILE *out, int *n_submit, const char **first_job, int *cancelled) {
    for (int i = 0; i < r->n_stages; i++) {
        if (steps[i].kind != ST_SUBMIT) continue;
        if (store_slurm_run_cancelled(s, run, cancelled)) return -1;
        if (*cancelled)
            return err_set(ERR_STAGE, "run %s was cancelled with 'smelt cancel' while it was being submitted: stopped "
                           "before the job of stage %s (%d job%s had been submitted; the cancel cancels them); continue "
                           "with 'smelt resume %s'", run, r->stages[i].name, *n_submit, *n_submit == 1 ? "" : "s", run);
        if (submit_stage(s, r, run, i, o, self_exe, steps, out)) return -1;
        if (!*first_job) *first_job = steps[i].job_id;
        (*n_submit)++;
    }
    return 0;
}

int slurm_submit_run(store *s, const recipe *r, const char *run, const slurm_opts *o, const char *self_exe, int resume,
                     FILE *out, int *n_jobs_out) {
    int n = r->n_stages, lock = lock_run(s, run, 0, NULL), rc = 0, calls = 0;
    *n_jobs_out = 0;
    if (lock < 0) return -1;
    step *steps = xcalloc((size_t)n + 1, sizeof *steps);
    slurm_job_row *jobs = NULL;
    slurm_view *views = NULL;
    slurm_run_row sr = {0};
    char *opts_json = NULL, method[16] = "squeue";
    int n_jobs = 0, counts[3] = {0, 0, 0}, n_submit = 0, cancelled = 0; /* counts: done, adopted, cached */
    const char **cancel = xcalloc((size_t)n + 1, sizeof *cancel);
    int n_cancel = 0;
    if (!steps || !cancel) rc = -1;
    if (!rc && resume) {
        int found = store_slurm_run_get(s, run, &sr);
        if (found < 0) rc = -1;
        else if (found) snprintf(method, sizeof method, "%s", sr.query);
        if (!rc) rc = resume_view(s, r, run, method, &jobs, &n_jobs, &views, &calls);
    }
    if (!rc) rc = slurm_opts_to_json(o, &opts_json);
    if (!rc) rc = store_run_claim(s, run);
    if (!rc) rc = store_slurm_run_put(s, run, opts_json, method);
    if (!rc) rc = plan_steps(s, r, run, resume, jobs, n_jobs, views, steps, cancel, &n_cancel, counts, out);
    if (!rc) rc = cancel_waiting(cancel, n_cancel);
    const char *first_job = NULL;
    if (!rc) rc = submit_steps(s, r, run, o, self_exe, steps, out, &n_submit, &first_job, &cancelled);
    if (!rc && !resume && first_job) {
        if (!(rc = query_method(first_job, method))) rc = store_slurm_run_put(s, run, opts_json, method);
    }
    if (!rc && n_submit + counts[1] == 0) {
        int completed;
        rc = store_run_complete_if_done(s, run, &completed);
    }
    if (!rc) {
        fprintf(out, "run %s: %d stages on Slurm: %d submitted, %d adopted, %d done, %d cached%s\n", run, n, n_submit,
                counts[1], counts[0], counts[2], n_submit + counts[1] ? "" : " (nothing left to run)");
        *n_jobs_out = n_submit + counts[1];
    } else if (n_submit > 0 && !cancelled) {
        err_prefix("%d job%s of run %s %s submitted before this error and keep%s going (cancel with 'smelt cancel %s', "
                   "or fix the cause and 'smelt resume %s'): ", n_submit, n_submit == 1 ? "" : "s", run,
                   n_submit == 1 ? "was" : "were", n_submit == 1 ? "s" : "", run, run);
    }
    if (rc && !cancelled) {
        /* A cancelled run stays as the cancel left it (interrupted). */
        char *msg = xstrdup(err_msg());
        err_kind k = err_kind_get();
        if (store_run_set_status(s, run, "failed", msg))
            err_set(k, "%s (and the store did not record the failure: %s)", msg ? msg : "submission failed", err_msg());
        else
            err_set(k, "%s", msg ? msg : "submission failed");
        free(msg);
    }
    slurm_job_rows_free(jobs, n_jobs);
    free(views);
    slurm_run_row_free(&sr);
    free(opts_json);
    free(cancel);
    free(steps);
    close(lock);
    fflush(out);
    return rc;
}

int slurm_cancel_run(store *s, const char *run, FILE *out) {
    char name[128], flag[160], *so = NULL, *se = NULL;
    slurm_job_name(name, sizeof name, run);
    snprintf(flag, sizeof flag, "--name=%s", name);
    char *why = xasprintf("cancelled with 'smelt cancel'; continue with 'smelt resume %s'", run);
    if (!why) return -1;
    /* Mark first (a submitter still running stops before its next sbatch), wait for it, mark
     * again (it may have cleared the mark when it started), then cancel everything queued. */
    int lock = -1, code = 0;
    int rc = store_slurm_run_cancel(s, run, why);
    if (!rc && (lock = lock_run(s, run, 1, out)) < 0) rc = -1;
    if (!rc) rc = store_slurm_run_cancel(s, run, why);
    /* By name: also the jobs of a submitter that died before recording their ids. */
    char *argv[] = {"scancel", flag, NULL};
    if (!rc) rc = slurm_cmd(argv, &so, &se, &code);
    if (!rc && code != 0) {
        const char *said = se && se[0] ? se : so;
        rc = err_set(ERR_IO, "scancel failed (exit %d): %s; the run is marked cancelled but its jobs may still be queued: "
                     "%s'smelt cancel %s' again", code, said, slurm_unreachable(said) ? "once the controller answers, " : "",
                     run);
    }
    /* Jobs that never started never will: record them cancelled (those running record 'stopped'). */
    if (!rc) rc = store_slurm_jobs_cancelled(s, run);
    if (!rc) fprintf(out, "cancelled the Slurm jobs of run %s (scancel --name=%s); the run is interrupted: 'smelt resume %s' "
                          "continues it\n", run, name, run);
    if (lock >= 0) close(lock);
    free(so);
    free(se);
    free(why);
    return rc;
}

int slurm_plan_print(const recipe *r, const int *cached, const slurm_opts *o, const char *self_exe,
                     const char *store_dir_path, FILE *out) {
    int n = r->n_stages, rc = 0, n_jobs = 0;
    step *steps = xcalloc((size_t)n + 1, sizeof *steps);
    if (!steps) return -1;
    /* The job ids are not known before submission: "<stage>" stands for the job of that stage. */
    for (int i = 0; i < n; i++) {
        steps[i].kind = cached[i] ? ST_DONE : ST_SUBMIT;
        snprintf(steps[i].job_id, sizeof steps[i].job_id, "<%.*s>", (int)sizeof steps[i].job_id - 3,
                 r->stages[i].name);
    }
    fprintf(out, "\nsbatch scripts (NEW-RUN stands for the run id chosen at submission):\n");
    for (int i = 0; i < n && !rc; i++) {
        if (steps[i].kind != ST_SUBMIT) continue;
        const recipe_stage *st = &r->stages[i];
        slurm_resources res;
        strbuf sb = STRBUF_INIT;
        char *dep = dependency_of(r, i, steps);
        rc = dep ? slurm_stage_resources(st, o, &res) : -1;
        if (!rc) rc = slurm_script(&sb, st, &res, self_exe, store_dir_path, "NEW-RUN", dep);
        if (!rc) fprintf(out, "\n# ---- job %d: stage %s ----\n%s", ++n_jobs, st->name, sb.buf);
        sb_free(&sb);
        free(dep);
    }
    if (!rc) {
        fprintf(out, "\ndependency chain (afterok; a failed or cancelled job cancels the jobs that wait on it):\n");
        for (int i = 0; i < n; i++) {
            if (steps[i].kind != ST_SUBMIT) continue;
            const recipe_stage *st = &r->stages[i];
            fprintf(out, "  %-24s after", st->name);
            int any = 0;
            for (int k = 0; k < st->n_deps; k++)
                if (steps[st->deps[k]].kind == ST_SUBMIT) fprintf(out, "%s %s", any++ ? "," : "", r->stages[st->deps[k]].name);
            fprintf(out, "%s\n", any ? "" : " nothing (starts at once)");
        }
        fprintf(out, "%d job%s would be submitted; nothing was submitted\n", n_jobs, n_jobs == 1 ? "" : "s");
    }
    free(steps);
    return rc;
}
