/* schema.c: the store's SQLite schema as forward migrations. Migration i takes the database
 * from user_version i to i+1; never edit a shipped migration, append a new one. The views
 * at the end of each are the documented query surface (README "Query views"). */
#include "store/schema.h"

const char *const store_migrations[] = {
    /* 0 -> 1 */
    "CREATE TABLE run ("
    "  id TEXT PRIMARY KEY,"
    "  name TEXT NOT NULL,"
    "  recipe_path TEXT,"
    "  recipe_sha TEXT NOT NULL,"
    "  overrides TEXT NOT NULL DEFAULT '[]',"   /* JSON list of the --set arguments */
    "  status TEXT NOT NULL,"                   /* running | ok | failed | interrupted */
    "  created_at REAL NOT NULL,"
    "  finished_at REAL,"
    "  host TEXT, pid INTEGER, jobs INTEGER,"
    "  error TEXT);"
    "CREATE TABLE recipe (sha TEXT PRIMARY KEY, text TEXT NOT NULL);"
    "CREATE TABLE stage ("
    "  run_id TEXT NOT NULL REFERENCES run(id),"
    "  name TEXT NOT NULL,"
    "  kind TEXT NOT NULL,"
    "  kind_version INTEGER NOT NULL,"
    "  ord INTEGER NOT NULL,"                   /* topological position */
    "  status TEXT NOT NULL,"                   /* pending|running|ok|cached|failed|skipped */
    "  cache_key TEXT, key_json TEXT, params_json TEXT,"
    "  cached_from TEXT,"
    "  attempts INTEGER NOT NULL DEFAULT 0,"
    "  ranks INTEGER NOT NULL DEFAULT 1,"
    "  retries INTEGER NOT NULL DEFAULT 0,"
    "  started_at REAL, finished_at REAL,"
    "  host TEXT, pid INTEGER, log_path TEXT, error TEXT,"
    "  PRIMARY KEY (run_id, name));"
    "CREATE INDEX stage_key ON stage(cache_key);"
    "CREATE INDEX stage_name ON stage(name);"
    /* DAG edges: input_name is the parameter path carrying the reference, or '' for needs: */
    "CREATE TABLE edge (run_id TEXT NOT NULL, stage TEXT NOT NULL, dep TEXT NOT NULL,"
    "  input_name TEXT NOT NULL, output_name TEXT NOT NULL,"
    "  PRIMARY KEY (run_id, stage, input_name, dep));"
    "CREATE TABLE attempt (run_id TEXT NOT NULL, stage TEXT NOT NULL, attempt INTEGER NOT NULL,"
    "  started_at REAL, finished_at REAL, exit_code INTEGER, log_path TEXT, host TEXT,"
    "  PRIMARY KEY (run_id, stage, attempt));"
    "CREATE TABLE object (digest TEXT PRIMARY KEY, type TEXT NOT NULL," /* file | manifest */
    "  bytes INTEGER NOT NULL, created_at REAL NOT NULL);"
    "CREATE TABLE manifest_entry (manifest TEXT NOT NULL, path TEXT NOT NULL, digest TEXT NOT NULL,"
    "  bytes INTEGER NOT NULL, PRIMARY KEY (manifest, path));"
    "CREATE INDEX manifest_entry_digest ON manifest_entry(digest);"
    "CREATE TABLE output (run_id TEXT NOT NULL, stage TEXT NOT NULL, name TEXT NOT NULL,"
    "  kind TEXT NOT NULL, digest TEXT NOT NULL, PRIMARY KEY (run_id, stage, name));"
    "CREATE INDEX output_digest ON output(digest);"
    "CREATE TABLE input (run_id TEXT NOT NULL, stage TEXT NOT NULL, name TEXT NOT NULL,"
    "  digest TEXT NOT NULL, from_stage TEXT NOT NULL, from_output TEXT NOT NULL,"
    "  PRIMARY KEY (run_id, stage, name));"
    "CREATE INDEX input_digest ON input(digest);"
    "CREATE TABLE completion (cache_key TEXT PRIMARY KEY, run_id TEXT NOT NULL, stage TEXT NOT NULL,"
    "  finished_at REAL NOT NULL);"
    "CREATE TABLE param (run_id TEXT NOT NULL, stage TEXT NOT NULL, path TEXT NOT NULL, value,"
    "  PRIMARY KEY (run_id, stage, path)) WITHOUT ROWID;"
    "CREATE TABLE metric (run_id TEXT NOT NULL, stage TEXT NOT NULL, key TEXT NOT NULL,"
    "  step INTEGER NOT NULL, value REAL, PRIMARY KEY (run_id, stage, key, step)) WITHOUT ROWID;"
    /* The latest point of each metric, kept by the writer so that reading it is O(result). */
    "CREATE TABLE metric_latest (run_id TEXT NOT NULL, stage TEXT NOT NULL, key TEXT NOT NULL,"
    "  step INTEGER NOT NULL, value REAL, PRIMARY KEY (run_id, stage, key)) WITHOUT ROWID;"
    "CREATE INDEX metric_latest_key ON metric_latest(key, value);"
    "CREATE VIEW runs AS SELECT id AS run_id, name, status,"
    "  strftime('%Y-%m-%dT%H:%M:%fZ', created_at, 'unixepoch') AS created_at,"
    "  strftime('%Y-%m-%dT%H:%M:%fZ', finished_at, 'unixepoch') AS finished_at,"
    "  finished_at - created_at AS seconds, host, recipe_path, error FROM run;"
    "CREATE VIEW stages AS SELECT run_id, name AS stage, kind, status,"
    "  (status = 'cached') AS cached, cached_from, attempts, cache_key,"
    "  strftime('%Y-%m-%dT%H:%M:%fZ', started_at, 'unixepoch') AS started_at,"
    "  strftime('%Y-%m-%dT%H:%M:%fZ', finished_at, 'unixepoch') AS finished_at,"
    "  finished_at - started_at AS seconds, ranks, log_path, error FROM stage;"
    "CREATE VIEW artifacts AS SELECT o.run_id, o.stage, o.name, o.kind, o.digest, ob.bytes"
    "  FROM output o LEFT JOIN object ob ON ob.digest = o.digest;"
    "CREATE VIEW metrics AS SELECT run_id, stage, key, step, value FROM metric;"
    "CREATE VIEW latest_metrics AS SELECT run_id, stage, key, step, value FROM metric_latest;"
    "CREATE VIEW lineage AS SELECT run_id, stage, name AS input, from_stage, from_output, digest FROM input;"
    "CREATE VIEW params AS SELECT run_id, stage, path AS key, value FROM param;",
    /* 1 -> 2: Slurm bookkeeping. slurm_run holds the defaults a run was submitted with (JSON)
     * and how its job states are read (sacct or squeue); slurm_job one row per submitted job,
     * the newest submission of a stage being its current job. `state` is what smelt itself
     * knows (submitted, started, completed, failed, stopped), written by the submitter and by
     * the job's own process, so that a cluster without accounting still tells how a job ended. */
    "CREATE TABLE slurm_run (run_id TEXT PRIMARY KEY, options TEXT NOT NULL, query TEXT NOT NULL,"
    "  submitted_at REAL NOT NULL, resumed_at REAL);"
    "CREATE TABLE slurm_job (run_id TEXT NOT NULL, stage TEXT NOT NULL, job_id TEXT NOT NULL,"
    "  submission INTEGER NOT NULL, submitted_at REAL NOT NULL, dependency TEXT NOT NULL DEFAULT '',"
    "  script_path TEXT, state TEXT NOT NULL DEFAULT 'submitted', started_at REAL, finished_at REAL,"
    "  node TEXT, PRIMARY KEY (run_id, stage, job_id));"
    "CREATE INDEX slurm_job_id ON slurm_job(job_id);"
    "CREATE VIEW slurm_jobs AS SELECT run_id, stage, job_id, submission,"
    "  strftime('%Y-%m-%dT%H:%M:%fZ', submitted_at, 'unixepoch') AS submitted_at, dependency, state,"
    "  strftime('%Y-%m-%dT%H:%M:%fZ', started_at, 'unixepoch') AS started_at,"
    "  strftime('%Y-%m-%dT%H:%M:%fZ', finished_at, 'unixepoch') AS finished_at, node, script_path FROM slurm_job;",
    /* 2 -> 3: `smelt cancel` marks the run (cancelled_at) before it cancels the jobs, so that a
     * submitter still running stops before its next sbatch and a job stopped by that cancel says
     * so; submit and resume clear the mark. A job that ended without running (cancelled while
     * pending) gets state 'cancelled' from the next cancel or resume that sees it. */
    "ALTER TABLE slurm_run ADD COLUMN cancelled_at REAL;",
};

const int store_n_migrations = (int)(sizeof store_migrations / sizeof store_migrations[0]);
