#!/usr/bin/env bash
# `smelt cancel` while `smelt submit` of the same run is still submitting: the submitter stops
# before its next sbatch and says why; cancel waits for it and then cancels everything queued, so
# that when both have returned no job of the run is left in Slurm's queue, and the run is
# interrupted (resume continues it). Before, the submitter went on queueing jobs under the
# cancelled run.
source "$(dirname "$0")/lib.sh"
GATE=$WORK/gate
{
  echo "smelt: 1"
  echo "name: twelve"
  echo "stages:"
  for i in $(seq 1 12); do
    printf '  s%02d:\n    kind: command\n    params: {i: %d}\n' "$i" "$i"
    echo "    run: while [ ! -f $GATE ]; do sleep 0.2; done; echo \$SMELT_PARAM_I > \$SMELT_OUTPUT_DIR/i.txt"
  done
} > twelve.yaml
export SMELT_TEST_SBATCH_DELAY=0.4 # 12 submissions take about 5 s
"$SMELT" submit twelve.yaml --slurm > submit.out 2>&1 &
SUBMIT=$!
RUN=""
for _ in $(seq 1 300); do
  RUN=$(q "SELECT run_id FROM runs" 2>/dev/null || true)
  [ -n "$RUN" ] && [ "$(q "SELECT count(*) FROM slurm_jobs WHERE run_id = '$RUN'")" -ge 3 ] && break
  sleep 0.05
done
trap 'touch $GATE; cleanup_jobs ${RUN:-none}' EXIT
[ -n "$RUN" ] || fail "the submission never recorded a job: $(cat submit.out)"
"$SMELT" cancel "$RUN" > cancel.out 2>&1 || fail "cancel failed: $(cat cancel.out)"
# cancel returned: the submitter has stopped (cancel waited for it) and nothing of the run is queued.
kill -0 "$SUBMIT" 2>/dev/null && fail "smelt submit still runs after cancel returned"
rc=0
wait "$SUBMIT" || rc=$?
unset SMELT_TEST_SBATCH_DELAY
expect_eq "$rc" 1 "exit status of the cancelled submit"
expect_contains "$(cat submit.out)" "was cancelled with 'smelt cancel' while it was being submitted" "what submit says"
expect_contains "$(cat cancel.out)" "waiting for it to stop" "what cancel says while it waits"
N=$(calls sbatch)
[ "$N" -lt 12 ] || fail "the submitter submitted all 12 jobs despite the cancel"
expect_eq "$(q "SELECT count(*) FROM slurm_jobs WHERE run_id = '$RUN'")" "$N" "every submitted job is recorded"
expect_eq "$(real_squeue -h --name="smelt-$RUN" -t pending,running | wc -l)" 0 "jobs of the run left in the queue"
expect_eq "$(run_status "$RUN")" interrupted "run status after the cancel"
expect_eq "$(q "SELECT count(*) FROM slurm_jobs WHERE run_id = '$RUN' AND state = 'submitted'")" 0 \
  "jobs still recorded as submitted"
# Resume continues the run: the cancelled stages and those never submitted.
touch "$GATE"
reset_calls
"$SMELT" resume "$RUN" > resume.out 2>&1 || fail "resume failed: $(cat resume.out)"
# every stage again: submitted anew, or (a job whose scancel Slurm had not carried out yet when the
# gate opened, on a loaded machine) adopted or found done; never twice
S=$(calls sbatch)
A=$(grep -c 'adopted job' resume.out || true)
D=$(grep -c ' done$' resume.out || true)
expect_eq "$((S + A + D))" 12 "stages submitted ($S), adopted ($A) or done ($D) by the resume"
[ "$S" -ge $((12 - N)) ] || fail "the resume submitted $S jobs, fewer than the $((12 - N)) stages the submitter never reached"
wait_run "$RUN" ok 90
pass "cancel during submit: the submitter stopped after $N of 12 jobs, nothing was left queued, resume finished the run"
