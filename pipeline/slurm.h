/* slurm.h: running a recipe on a Slurm cluster. Every stage that is not already done becomes
 * one batch job (sbatch) whose dependencies (afterok) mirror the DAG; the job runs
 * `smelt slurm-stage`, which computes the stage's cache key from the upstream outputs then in
 * the store, reuses a completed key, or runs the stage like `smelt exec` (under mpirun or srun
 * inside its allocation when ranks > 1) and commits its outputs itself. No smelt process
 * watches the jobs: status and resume read job states with one batched query (sacct when the
 * cluster keeps accounting, squeue otherwise) and the store's own records.
 * Files: slurm_script.c (options, resources, scripts, commands, state queries),
 * slurm_submit.c (submit, resume, cancel, status), slurm_stage.c (the job's body). */
#ifndef SMELT_PIPELINE_SLURM_H
#define SMELT_PIPELINE_SLURM_H

#include <stdio.h>

#include "common/strbuf.h"
#include "pipeline/recipe.h"
#include "store/slurm_jobs.h"
#include "store/store.h"

/* Defaults of every job of a run (`smelt submit --slurm` options); a stage's `resources:`
 * override them. Strings are owned (NULL: not set); numbers are 0 when not set. */
typedef struct {
    char *partition, *account, *time, *mem;
    int nodes, gpus_per_node, cpus_per_task;
    char *launcher; /* how ranks > 1 start: NULL or "mpirun" (mpirun -np N), else a command line ("srun --mpi=pmix") */
} slurm_opts;

int slurm_opts_to_json(const slurm_opts *o, char **json);
/* Fills an empty (zeroed or freed) o from JSON; ERR_CORRUPT when it is not an object. */
int slurm_opts_from_json(slurm_opts *o, const char *json);
/* Copies every field set in `over` into `o`. */
int slurm_opts_merge(slurm_opts *o, const slurm_opts *over);
void slurm_opts_free(slurm_opts *o);

/* The resources of one stage's job: the defaults with the stage's `resources:` applied.
 * Pointers refer into the options or the recipe. ERR_INPUT when they cannot be combined
 * (more nodes than ranks). */
typedef struct {
    int ntasks, nodes, cpus_per_task, gpus_per_node;
    const char *time, *mem, *partition, *account;
} slurm_resources;
int slurm_stage_resources(const recipe_stage *st, const slurm_opts *o, slurm_resources *out);

/* The Slurm job name shared by every job of a run: "smelt-RUN". */
void slurm_job_name(char *buf, size_t cap, const char *run);
/* The batch script of one stage. `dependency` is "" or "afterok:12:13". Values that cannot be
 * written into an #SBATCH line (spaces, quotes, control characters) are ERR_INPUT. */
int slurm_script(strbuf *sb, const recipe_stage *st, const slurm_resources *res, const char *self_exe,
                 const char *store_dir, const char *run, const char *dependency);

/* Runs a Slurm command found on PATH and captures its stdout and stderr (owned, NUL-terminated).
 * Returns 0 when it ran (its exit status in *exit_status), -1 (ERR_INPUT) when it could not be
 * started, naming the command and what to install. */
int slurm_cmd(char *const argv[], char **out, char **err, int *exit_status);

/* A job's state as Slurm reports it. */
typedef struct {
    char job_id[SLURM_JOB_ID_MAX];
    char state[32];               /* first word: CANCELLED, not "CANCELLED by 0" */
    char elapsed[32];
    char node[128];
    char reason[64];
    char stage[160];              /* the job's comment (the stage name); squeue only */
} slurm_live;

/* Parsers of `squeue -h -o '%i|%T|%M|%N|%r|%k'` and `sacct -n -X -P -o JobID,State,Elapsed,NodeList,Reason`.
 * Lines that do not parse are ERR_IO naming the line. */
int slurm_parse_squeue(const char *text, slurm_live **out, int *n);
int slurm_parse_sacct(const char *text, slurm_live **out, int *n);
/* 1 when Slurm may still run (or is running) a job in this state: PENDING, RUNNING, ... */
int slurm_state_active(const char *state);

/* What status and resume know of a stage's current job. */
typedef struct {
    char state[32];   /* Slurm's state, or smelt's record of a job Slurm forgot (see `live`) */
    char elapsed[32], node[128], reason[64];
    int live;         /* 1: from Slurm; 0: the job left Slurm's memory, state from the store */
    int active;       /* pending or running in Slurm */
} slurm_view;

/* 1 when a Slurm command's error output says that the controller could not be reached (the
 * operation failed: exit 1), not that the request was refused (bad input: exit 2). */
int slurm_unreachable(const char *text);

/* Reads the Slurm states of the run's jobs with one batched query: squeue (every job named
 * smelt-RUN) or sacct (-j with the ids of `jobs`) as `method` (or $SMELT_SLURM_QUERY) says; when
 * sacct fails, squeue once. With all_jobs, also the jobs the store does not know (a submitter
 * killed between sbatch's answer and the store write): squeue lists them with their stage in the
 * comment; after sacct that is a second call. *live is owned by the caller; *calls counts the
 * Slurm commands run (0 to 2). */
int slurm_run_query(const char *method, const char *run, const slurm_job_row *jobs, int n_jobs, int all_jobs,
                    slurm_live **live, int *n_live, int *calls);
/* views[i] describes jobs[i]: from Slurm's answer when it knows the job, else from the store. */
void slurm_view_fill(const slurm_job_row *jobs, int n_jobs, const slurm_live *live, int n_live, slurm_view *views);
/* slurm_run_query of the recorded jobs, then slurm_view_fill. */
int slurm_run_view(const char *method, const char *run, const slurm_job_row *jobs, int n_jobs, slurm_view *views,
                   int *calls);

/* Submits a new run (resume == 0) or resumes one (resume != 0): stages that are done stay
 * done, stages whose key is computable and already completed are linked (never submitted),
 * on resume pending and running jobs are adopted, and every other stage is submitted with
 * afterok dependencies on the jobs of its upstream stages. Job ids are in the store before it
 * returns. Prints one line per stage to `out`; *n_jobs is the number of jobs submitted or
 * adopted (0: every stage was done or cached). A `smelt cancel` of the run while it submits
 * stops it before its next sbatch (ERR_STAGE, saying so). */
int slurm_submit_run(store *s, const recipe *r, const char *run, const slurm_opts *o, const char *self_exe,
                     int resume, FILE *out, int *n_jobs);
/* Cancels every job of the run with one scancel and marks the run interrupted. The run is
 * marked cancelled first, so that a `submit` or `resume` of it still running stops before its
 * next sbatch; the scancel waits for that process to stop (the run's submit lock), so that it
 * also cancels the jobs that process queued. */
int slurm_cancel_run(store *s, const char *run, FILE *out);
/* `smelt plan --slurm`: the scripts that would be submitted for the stages not known to be
 * cached (cached[i] != 0) and their dependency chain; submits and writes nothing. */
int slurm_plan_print(const recipe *r, const int *cached, const slurm_opts *o, const char *self_exe,
                     const char *store_dir, FILE *out);

/* The body of a Slurm job (`smelt slurm-stage`): see the top of this file. Returns 0 when the
 * stage is done (run or reused), -1 with the error slot set; *signal_stop is the signal that
 * stopped it (scancel, time limit, pre-emption) or 0. */
int slurm_stage_run(const char *store_dir, const char *run, const char *stage, const char *self_exe, int *signal_stop);

#endif
