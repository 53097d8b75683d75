/* slurm_jobs.h: the store's records of runs submitted to Slurm: the defaults a run was
 * submitted with, and every job submitted for its stages (the newest submission of a stage is
 * its current job). The submitter writes a job's row right after sbatch returns; the job's own
 * process writes it too when it starts (so a job whose submitter died is still known) and
 * records how it ended. */
#ifndef SMELT_STORE_SLURM_JOBS_H
#define SMELT_STORE_SLURM_JOBS_H

#include "store/runs.h"
#include "store/store.h"

#define SLURM_JOB_ID_MAX 32

typedef struct {
    char run_id[RUN_ID_MAX];
    char *options;        /* owned: JSON object of the submit defaults */
    char query[16];       /* how job states are read: "sacct" or "squeue" */
    double submitted_at, resumed_at;
    double cancelled_at;  /* when `smelt cancel` last cancelled it (0: not since the last submit or resume) */
} slurm_run_row;

typedef struct {
    char stage[STAGE_NAME_MAX];
    char job_id[SLURM_JOB_ID_MAX];
    int submission;       /* 1 for the first job of the stage, then 2, ... */
    char state[16];       /* smelt's own record: submitted | started | completed | failed | stopped, or, set
                           * by cancel and resume from Slurm's answer, cancelled (ended without running)
                           * | lost (started, then ended without recording how) */
    char node[128];
    double submitted_at, started_at, finished_at;
    char *dependency;     /* owned: "afterok:12:13" or "" */
    char *script_path;    /* owned; may be NULL (a job that registered itself) */
} slurm_job_row;

/* Records (or updates) the Slurm defaults and query method of a run, and clears its cancel mark. */
STORE_MUST_CHECK int store_slurm_run_put(store *s, const char *run, const char *options_json, const char *query);
/* 1 and fills r when the run was submitted to Slurm, 0 when it was not, -1 on error. */
STORE_MUST_CHECK int store_slurm_run_get(store *s, const char *run, slurm_run_row *r);
void slurm_run_row_free(slurm_run_row *r);

/* `smelt cancel`, before it cancels the jobs: marks the run cancelled (cancelled_at) and, when it
 * is running, interrupted with `why`; one transaction. */
STORE_MUST_CHECK int store_slurm_run_cancel(store *s, const char *run, const char *why);
/* *cancelled = 1 when the run was cancelled since its last submit or resume. */
STORE_MUST_CHECK int store_slurm_run_cancelled(store *s, const char *run, int *cancelled);

/* A job just submitted for a stage: the stage's next submission number. */
STORE_MUST_CHECK int store_slurm_job_add(store *s, const char *run, const char *stage, const char *job_id, const char *dependency,
                        const char *script_path);
/* Called by the job itself when it starts: state started, node; adds the row when the
 * submitter died before writing it. */
STORE_MUST_CHECK int store_slurm_job_started(store *s, const char *run, const char *stage, const char *job_id, const char *node);
/* Records how the job ended: completed, failed or stopped (finished_at is set). */
STORE_MUST_CHECK int store_slurm_job_finish(store *s, const char *run, const char *stage, const char *job_id, const char *state);
/* Slurm says the job has ended, but its own process never recorded an end: a job still
 * 'submitted' (it never ran: cancelled while pending, or its dependency failed) becomes
 * `never_ran` ("cancelled"), one 'started' without an end becomes 'lost'. *changed is set when
 * the row changed. */
STORE_MUST_CHECK int store_slurm_job_ended(store *s, const char *run, const char *job_id, const char *never_ran,
                                           int *changed);
/* `smelt cancel`: every job of the run still 'submitted' (so never started) is 'cancelled'. */
STORE_MUST_CHECK int store_slurm_jobs_cancelled(store *s, const char *run);
/* Sets the run ok when every one of its stages is ok or cached (one statement, so that of
 * several jobs finishing at once exactly the last one sees it complete); *completed says
 * whether it did. */
STORE_MUST_CHECK int store_run_complete_if_done(store *s, const char *run, int *completed);
/* Sets the run's status to `status` (with `error`) only when it is `from` now. */
STORE_MUST_CHECK int store_run_set_status_if(store *s, const char *run, const char *from, const char *status, const char *error);

/* The current (newest) job of every stage of the run that has one, in stage order. */
STORE_MUST_CHECK int store_slurm_jobs_current(store *s, const char *run, slurm_job_row **rows, int *n);
void slurm_job_rows_free(slurm_job_row *rows, int n);

#endif
