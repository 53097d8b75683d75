#!/usr/bin/env bash
# Status of a 50-stage run makes one Slurm call (squeue for all 50 jobs), never one per job;
# with SMELT_SLURM_QUERY=sacct on a cluster without accounting it makes two (sacct fails, squeue
# answers). `smelt cancel` stops all 50 jobs with one scancel, and status then shows them all
# cancelled, still with one call, recorded as cancelled (pending ones) and stopped by the user's
# cancel (the running one), never as "stopped by signal 15".
source "$(dirname "$0")/lib.sh"
GATE=$WORK/gate
{
  echo "smelt: 1"
  echo "name: fifty"
  echo "stages:"
  echo "  s00:"
  echo "    kind: command"
  echo "    run: while [ ! -f $GATE ]; do sleep 0.2; done; echo go > \$SMELT_OUTPUT_DIR/go.txt"
  for i in $(seq 1 49); do
    printf '  s%02d:\n    kind: command\n    inputs: {g: s00}\n    params: {i: %d}\n' "$i" "$i"
    echo "    run: echo \$SMELT_PARAM_I > \$SMELT_OUTPUT_DIR/i.txt"
  done
} > fifty.yaml
"$SMELT" submit fifty.yaml --slurm > submit.out 2>&1 || fail "submit failed: $(cat submit.out)"
RUN=$(q "SELECT run_id FROM runs")
trap 'touch $GATE; cleanup_jobs $RUN' EXIT
expect_eq "$(calls sbatch)" 50 "sbatch calls: one per stage"
expect_eq "$(calls squeue)" 0 "squeue calls of submit"
[ "$(calls sacct)" -le 1 ] || fail "submit probed accounting $(calls sacct) times"
expect_eq "$(q "SELECT count(DISTINCT job_id) FROM slurm_jobs WHERE run_id = '$RUN'")" 50 "distinct job ids"
wait_state "$RUN" s00 RUNNING 30

reset_calls
"$SMELT" status "$RUN" > status.out 2>&1 || fail "status failed: $(cat status.out)"
expect_eq "$(all_calls)" 1 "Slurm calls of status for 50 jobs"
expect_eq "$(grep -c ' PENDING ' status.out)" 49 "pending jobs shown"
expect_eq "$(grep -c ' RUNNING ' status.out)" 1 "running job shown"
for s in s00 s17 s49; do
  expect_contains "$(grep "^$s " status.out)" " $(job_of "$RUN" "$s") " "job id of $s in status"
done

reset_calls
SMELT_SLURM_QUERY=sacct "$SMELT" status "$RUN" > status-sacct.out 2>&1 || fail "status (sacct) failed: $(cat status-sacct.out)"
expect_eq "$(calls sacct)" 1 "sacct calls"
expect_eq "$(calls squeue)" 1 "squeue calls after sacct failed (no accounting on the test cluster)"
expect_eq "$(grep -c ' PENDING ' status-sacct.out)" 49 "pending jobs after the fallback"

reset_calls
"$SMELT" cancel "$RUN" > cancel.out 2>&1 || fail "cancel failed: $(cat cancel.out)"
expect_eq "$(all_calls)" 1 "Slurm calls of cancel"
expect_eq "$(calls scancel)" 1 "one scancel for 50 jobs"
wait_state "$RUN" s00 CANCELLED 30
wait_state "$RUN" s49 CANCELLED 30
expect_eq "$(run_status "$RUN")" interrupted "run status after cancel"
reset_calls
"$SMELT" status "$RUN" > status2.out 2>&1 || fail "status failed: $(cat status2.out)"
expect_eq "$(all_calls)" 1 "Slurm calls of status after cancel"
expect_eq "$(grep -c ' CANCELLED ' status2.out)" 50 "cancelled jobs shown"
expect_eq "$(real_squeue -h --name="smelt-$RUN" -t pending,running | wc -l)" 0 "jobs left in the queue"
# What happened, in words: the 49 jobs cancelled while pending never ran and are recorded so (not
# left 'submitted' forever); the running one was cancelled by the user, not "stopped by signal 15".
expect_eq "$(q "SELECT count(*) FROM slurm_jobs WHERE run_id = '$RUN' AND state = 'cancelled'")" 49 \
  "jobs recorded as cancelled while pending"
for _ in $(seq 1 100); do
  [ "$(q "SELECT state FROM slurm_jobs WHERE run_id = '$RUN' AND stage = 's00'")" = stopped ] && break
  sleep 0.2
done
expect_eq "$(q "SELECT state FROM slurm_jobs WHERE run_id = '$RUN' AND stage = 's00'")" stopped "the running job's record"
"$SMELT" status "$RUN" > status3.out 2>&1 || fail "status failed: $(cat status3.out)"
if grep -q "signal 15" status3.out; then fail "the user's own cancel is reported as a signal: $(cat status3.out)"; fi
expect_contains "$(grep '^s00 ' status3.out)" "was cancelled with 'smelt cancel'" "s00's detail after the cancel"
expect_contains "$(cat status3.out)" "interrupted: cancelled with 'smelt cancel'" "the run's line after the cancel"
pass "50-stage run: status makes 1 Slurm call (2 with the sacct fallback), cancel 1 scancel"
