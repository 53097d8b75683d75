#!/usr/bin/env bash
# Slurm submission without a cluster: bad usage and bad values are refused with the cause and the
# fix (exit 2); a missing or failing sbatch is reported with its message; with a fake Slurm whose
# jobs never run and which forgets them, status shows the store's records (and says it could not
# ask Slurm), resume resubmits every forgotten job, and the job body refuses to start before its
# upstream stages are done.
source "$(dirname "$0")/../cli/lib.sh"
# The scripts of tests/slurm/ run as they are (docs/slurm.md: tests/slurm/cluster.sh start DIR);
# lib.sh is only sourced.
for f in "$SMELT_SOURCE_DIR"/tests/slurm/*.sh; do
  [ "$(basename "$f")" = lib.sh ] || [ -x "$f" ] || fail "$f has no run bit (git update-index --chmod=+x)"
done
cat > two.yaml <<'YAML'
smelt: 1
name: two
stages:
  a:
    kind: command
    run: echo a > $SMELT_OUTPUT_DIR/a.txt
  b:
    kind: command
    inputs: {a: a}
    resources: {nodes: 2}
    ranks: 2
    run: cat $SMELT_INPUT_A/a.txt > $SMELT_OUTPUT_DIR/b.txt
YAML
# expect_fail CODE TEXT CMD...: CMD exits with CODE and says TEXT on stderr.
expect_fail() {
  local code=$1 text=$2 rc=0
  shift 2
  "$@" > err.out 2>&1 || rc=$?
  expect_eq "$rc" "$code" "exit status of: $*"
  expect_contains "$(cat err.out)" "$text" "message of: $*"
}
expect_fail 2 "name the scheduler: --slurm" "$SMELT" submit two.yaml
expect_fail 2 "--nodes expects a whole number" "$SMELT" submit two.yaml --slurm --nodes 0
expect_fail 2 "--cpus-per-task expects a whole number" "$SMELT" plan two.yaml --slurm --cpus-per-task x
expect_fail 2 "the Slurm options need --slurm" "$SMELT" plan two.yaml --partition gpu
expect_fail 2 "cannot be written into an #SBATCH line" "$SMELT" plan two.yaml --slurm --partition "a b"
sed 's/ranks: 2/ranks: 1/' two.yaml > nodes.yaml
expect_fail 2 "nodes.yaml:7:3: stage 'b': resources.nodes is 2 but the stage has 1 rank" "$SMELT" plan nodes.yaml --slurm
[ ! -e "$WORK/store" ] || fail "plan created a store"

# No Slurm on PATH: the submission fails naming the command; the run records why.
mkdir -p empty
expect_fail 2 "cannot run 'sbatch': it is not on PATH" env PATH="$WORK/empty" "$SMELT" submit two.yaml --slurm
RUN=$(q "SELECT run_id FROM runs")
expect_eq "$(q "SELECT status FROM runs WHERE run_id = '$RUN'")" failed "status of a run whose submission failed"

# A fake Slurm: sbatch hands out ids (or refuses a partition), squeue knows no job.
mkdir -p fake
cat > fake/sbatch <<'SH'
#!/bin/sh
for a in "$@"; do f=$a; done
grep -q -- '--partition=nope' "$f" && { echo "sbatch: error: invalid partition specified: nope" >&2; exit 1; }
n=$(cat "$(dirname "$0")/next" 2>/dev/null || echo 100); echo $((n + 1)) > "$(dirname "$0")/next"; echo "$n"
SH
printf '#!/bin/sh\necho "sacct $*" >> %s/fake/log\necho "Slurm accounting storage is disabled" >&2; exit 1\n' "$WORK" > fake/sacct
printf '#!/bin/sh\necho "squeue $*" >> %s/fake/log\nexit 0\n' "$WORK" > fake/squeue
printf '#!/bin/sh\necho "scancel $*" >> %s/fake/log\nexit 0\n' "$WORK" > fake/scancel
chmod +x fake/*
export PATH=$WORK/fake:$PATH
expect_fail 2 "invalid partition specified: nope" "$SMELT" submit two.yaml --slurm --partition nope
expect_contains "$(cat err.out)" "/slurm/a.1.sbatch" "the refused script is named"
# An unreachable controller is an operation that failed (exit 1), not bad input (the message is
# real sbatch's when slurmctld is down).
mkdir -p down
printf '#!/bin/sh\necho "sbatch: error: Batch job submission failed: Unable to contact slurm controller (connect failure)" >&2\nexit 1\n' > down/sbatch
chmod +x down/sbatch
expect_fail 1 "could not reach the Slurm controller" env PATH="$WORK/down:$PATH" "$SMELT" submit two.yaml --slurm
expect_contains "$(cat err.out)" "Unable to contact slurm controller" "sbatch's own words"

"$SMELT" submit two.yaml --slurm > submit.out 2>&1 || fail "submit with the fake sbatch failed: $(cat submit.out)"
RUN=$(q "SELECT run_id FROM runs ORDER BY created_at DESC LIMIT 1")
expect_eq "$(q "SELECT group_concat(job_id, ' ') FROM (SELECT job_id FROM slurm_jobs WHERE run_id = '$RUN' ORDER BY stage)")" \
          "100 101" "job ids"
expect_eq "$(q "SELECT dependency FROM slurm_jobs WHERE run_id = '$RUN' AND stage = 'b'")" "afterok:100" "dependency of b"
B_SCRIPT=$(q "SELECT script_path FROM slurm_jobs WHERE run_id = '$RUN' AND stage = 'b'")
expect_contains "$(cat "$B_SCRIPT")" "#SBATCH --ntasks=2" "b's tasks"
expect_contains "$(cat "$B_SCRIPT")" "#SBATCH --nodes=2" "b's nodes"

# Slurm forgot both jobs, which never started: status shows the store's view.
"$SMELT" status "$RUN" > status.out 2>&1 || fail "status failed: $(cat status.out)"
expect_contains "$(grep '^a ' status.out)" "VANISHED*" "a job Slurm forgot before it started"
expect_fail 1 "cannot read the job states from Slurm" env PATH="$WORK/empty" "$SMELT" status "$RUN"
expect_contains "$(cat err.out)" "100" "status without Slurm still lists the jobs"

# The job body refuses to start before its upstream stage is done.
expect_fail 2 "stage b needs stage a, which is pending" "$SMELT" slurm-stage --store "$WORK/store" --run "$RUN" --stage b
expect_eq "$(q "SELECT status FROM runs WHERE run_id = '$RUN'")" failed "run status after a job failed"
# By hand (no SLURM_JOB_ID), the job body runs the first stage like a job would.
"$SMELT" slurm-stage --store "$WORK/store" --run "$RUN" --stage a > stage-a.out 2>&1 || fail "slurm-stage a failed: $(cat stage-a.out)"
expect_eq "$(q "SELECT status FROM stages WHERE run_id = '$RUN' AND stage = 'a'")" ok "a, run by hand"

# Resume: a is done, b's job was forgotten by Slurm: one new job for b, depending on nothing.
: > fake/log
"$SMELT" resume "$RUN" > resume.out 2>&1 || fail "resume failed: $(cat resume.out)"
expect_contains "$(cat resume.out)" "1 submitted, 0 adopted, 1 done" "resume summary"
expect_eq "$(q "SELECT job_id || ' ' || dependency FROM slurm_jobs WHERE run_id = '$RUN' AND stage = 'b' AND submission = 2")" \
          "102 " "b's new job has no dependency (a is done)"
expect_eq "$(grep -c '^squeue' fake/log)" 1 "state queries of resume"
expect_eq "$(grep -c '^scancel' fake/log || true)" 0 "scancel calls of resume"

# cancel: one scancel by job name; a local run cannot be cancelled this way.
: > fake/log
"$SMELT" cancel "$RUN" > cancel.out 2>&1 || fail "cancel failed: $(cat cancel.out)"
expect_eq "$(cat fake/log)" "scancel --name=smelt-$RUN" "the scancel call"
"$SMELT" run two.yaml --set stages.b.ranks=1 --set stages.b.resources.nodes=1 > local.out 2>&1 || fail "local run failed: $(cat local.out)"
LOCAL=$(q "SELECT run_id FROM runs ORDER BY created_at DESC LIMIT 1")
expect_fail 2 "was not submitted to Slurm" "$SMELT" cancel "$LOCAL"
expect_fail 2 "the Slurm options do not apply to it" "$SMELT" resume "$LOCAL" --partition gpu
pass "Slurm usage errors, missing and failing sbatch, forgotten jobs, the job body's checks"
