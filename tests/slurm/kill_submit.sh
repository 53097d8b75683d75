#!/usr/bin/env bash
# Killing the submitting smelt (kill -9 of its process group) does not stop the run: the jobs
# run on, a later `smelt status` reads their states with one call, and `smelt resume` submits
# nothing that is pending, running or done (it adopts the jobs). Killed in the middle of the
# submission, resume submits exactly the stages that never got a job. Killed while sbatch had
# accepted a job but before smelt recorded it, resume finds that job in the queue (its name and
# comment), records and adopts it: no stage gets a second job. Every stage runs once.
source "$(dirname "$0")/lib.sh"
L=$WORK/launches
recipe() { # recipe NAME TAG: a 6-stage recipe whose first stage takes a few seconds
  cat > "$1.yaml" <<YAML
smelt: 1
name: $1
stages:
  k1:
    kind: command
    params: {tag: $2}
    run: echo "$2 k1" >> $L; sleep 3; echo \$SMELT_PARAM_TAG > \$SMELT_OUTPUT_DIR/tag.txt
  k2:
    kind: command
    inputs: {t: k1}
    run: echo "$2 k2" >> $L; cat \$SMELT_INPUT_T/tag.txt > \$SMELT_OUTPUT_DIR/k2.txt
  k3:
    kind: command
    inputs: {t: k1}
    run: echo "$2 k3" >> $L; cat \$SMELT_INPUT_T/tag.txt > \$SMELT_OUTPUT_DIR/k3.txt
  k4:
    kind: command
    inputs: {a: k2, b: k3}
    run: echo "$2 k4" >> $L; cat \$SMELT_INPUT_A/k2.txt \$SMELT_INPUT_B/k3.txt > \$SMELT_OUTPUT_DIR/k4.txt
  k5:
    kind: command
    inputs: {a: k4}
    run: echo "$2 k5" >> $L; wc -c < \$SMELT_INPUT_A/k4.txt > \$SMELT_OUTPUT_DIR/k5.txt
  k6:
    kind: command
    inputs: {a: k5, b: k2}
    run: echo "$2 k6" >> $L; cat \$SMELT_INPUT_A/k5.txt \$SMELT_INPUT_B/k2.txt > \$SMELT_OUTPUT_DIR/k6.txt
YAML
}
run_named() { q "SELECT run_id FROM runs WHERE name = '$1'"; }
n_jobs() { q "SELECT count(*) FROM slurm_jobs WHERE run_id = '$1'"; }
# kill_when_jobs NAME N: submits NAME.yaml in its own process group and kills the group with
# SIGKILL as soon as N job ids of the run named NAME are in the store.
kill_when_jobs() {
  setsid "$SMELT" submit "$1.yaml" --slurm > "submit-$1.out" 2>&1 &
  local pid=$! run="" i
  for i in $(seq 1 600); do
    run=$(run_named "$1" 2>/dev/null || true)
    [ -n "$run" ] && [ "$(n_jobs "$run" 2>/dev/null || echo 0)" -ge "$2" ] && break
    sleep 0.05
  done
  kill -9 -- "-$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  [ -n "$run" ] && [ "$(n_jobs "$run")" -ge "$2" ] || fail "the submission of $1 never recorded $2 jobs: $(cat "submit-$1.out")"
  KILLED_RUN=$run
}

# ---- A: killed right after the submission (all 6 job ids recorded) ----
recipe a A
kill_when_jobs a 6
RUN=$KILLED_RUN
trap 'touch $WORK/gate-c; cleanup_jobs $RUN; cleanup_jobs ${RUN_B:-none}; cleanup_jobs ${RUN_C:-none}' EXIT
expect_eq "$(n_jobs "$RUN")" 6 "job ids recorded before the kill"
reset_calls
"$SMELT" status "$RUN" > status-a.out 2>&1 || fail "status failed: $(cat status-a.out)"
expect_eq "$(all_calls)" 1 "Slurm calls of status"
grep -q '^k1 .* \(RUNNING\|PENDING\|COMPLETED\) ' status-a.out || fail "k1's job is not known to Slurm: $(cat status-a.out)"
"$SMELT" resume "$RUN" > resume-a.out 2>&1 || fail "resume failed: $(cat resume-a.out)"
expect_eq "$(calls sbatch)" 0 "sbatch calls of a resume with every job pending, running or done"
expect_eq "$(calls scancel)" 0 "scancel calls of that resume"
expect_eq "$(calls squeue)" 2 "one state query for status, one for resume"
ADOPTED=$(grep -c 'adopted job' resume-a.out || true)
DONE=$(grep -c ' done$' resume-a.out || true)
expect_eq "$((ADOPTED + DONE))" 6 "stages adopted or done by resume"
expect_contains "$(cat resume-a.out)" "0 submitted, $ADOPTED adopted, $DONE done" "resume summary"
wait_run "$RUN" ok 90
for s in k1 k2 k3 k4 k5 k6; do
  expect_eq "$(grep -c "^A $s\$" "$L")" 1 "launches of $s"
  expect_eq "$(q "SELECT count(*) FROM slurm_jobs WHERE run_id = '$RUN' AND stage = '$s'")" 1 "jobs of $s"
done
reset_calls
"$SMELT" resume "$RUN" > resume-a2.out 2>&1 || fail "second resume failed: $(cat resume-a2.out)"
expect_contains "$(cat resume-a2.out)" "already complete" "resume of the finished run"
expect_eq "$(calls sbatch)" 0 "sbatch calls of resuming a finished run"
"$SMELT" status "$RUN" > status-a2.out 2>&1 || fail "status failed"
expect_eq "$(grep -c ' COMPLETED ' status-a2.out)" 6 "jobs completed"

# ---- B: killed in the middle of the submission (2 of 6 job ids recorded) ----
recipe b B
export SMELT_TEST_SBATCH_DELAY=1
kill_when_jobs b 2
unset SMELT_TEST_SBATCH_DELAY
RUN_B=$KILLED_RUN
# The kill comes as soon as the poll sees 2 job ids; a poll slowed by a loaded machine may see a
# third recorded first (sbatch takes 1 s here). Killed mid-way is what matters: 2 to 5 recorded.
N_B=$(n_jobs "$RUN_B")
[ "$N_B" -ge 2 ] && [ "$N_B" -lt 6 ] || fail "jobs recorded before the kill: expected 2 to 5 (a kill mid-submission), got $N_B"
reset_calls
"$SMELT" resume "$RUN_B" > resume-b.out 2>&1 || fail "resume failed: $(cat resume-b.out)"
expect_eq "$(calls sbatch)" $((6 - N_B)) "sbatch calls: the $((6 - N_B)) stages that never got a job"
expect_eq "$(n_jobs "$RUN_B")" 6 "jobs after resume"
expect_eq "$(q "SELECT count(*) FROM slurm_jobs WHERE run_id = '$RUN_B' AND submission > 1")" 0 "no stage got a second job"
wait_run "$RUN_B" ok 90
for s in k1 k2 k3 k4 k5 k6; do expect_eq "$(grep -c "^B $s\$" "$L")" 1 "launches of $s (B)"; done

# ---- C: killed after Slurm accepted the 3rd job, before smelt recorded it ----
# k1 waits for a gate, so that the unrecorded job (k3, after k1) stays pending and cannot record
# itself by starting.
recipe c C
GATE=$WORK/gate-c
sed -i "s#sleep 3;#while [ ! -f $GATE ]; do sleep 0.2; done;#" c.yaml
: > "$CALLS.accepted"
export SMELT_TEST_SBATCH_LATE=1.5
setsid "$SMELT" submit c.yaml --slurm > submit-c.out 2>&1 &
PID_C=$!
for _ in $(seq 1 300); do
  [ "$(count_lines "$CALLS.accepted")" -ge 3 ] && break
  sleep 0.05
done
kill -9 -- "-$PID_C" 2>/dev/null || true
wait "$PID_C" 2>/dev/null || true
unset SMELT_TEST_SBATCH_LATE
[ "$(count_lines "$CALLS.accepted")" -ge 3 ] || fail "sbatch never accepted 3 jobs of c: $(cat submit-c.out)"
RUN_C=$(run_named c)
UNRECORDED=$(sed -n 3p "$CALLS.accepted")
expect_eq "$(n_jobs "$RUN_C")" 2 "jobs recorded before the kill"
[ -n "$(real_squeue -h -j "$UNRECORDED" -o %i 2>/dev/null)" ] || fail "the unrecorded job $UNRECORDED is not queued"
reset_calls
"$SMELT" resume "$RUN_C" > resume-c.out 2>&1 || fail "resume failed: $(cat resume-c.out)"
expect_eq "$(calls sbatch)" 3 "sbatch calls: the 3 stages that never got a job, not the one Slurm had"
expect_eq "$(calls squeue)" 1 "state queries of resume"
expect_contains "$(cat resume-c.out)" "adopted job $UNRECORDED" "the unrecorded job is adopted"
expect_eq "$(n_jobs "$RUN_C")" 6 "jobs after resume"
expect_eq "$(q "SELECT count(*) FROM slurm_jobs WHERE run_id = '$RUN_C' AND submission > 1")" 0 "no stage got a second job"
expect_eq "$(q "SELECT count(*) FROM slurm_jobs WHERE run_id = '$RUN_C' AND job_id = '$UNRECORDED'")" 1 \
  "the adopted job is recorded"
touch "$GATE"
wait_run "$RUN_C" ok 90
for s in k1 k2 k3 k4 k5 k6; do expect_eq "$(grep -c "^C $s\$" "$L")" 1 "launches of $s (C)"; done
expect_eq "$(real_squeue -h --name="smelt-$RUN_C" | wc -l)" 0 "jobs of c left in the queue"
check_store "$WORK/store"
pass "a killed submitter loses nothing: resume adopted $ADOPTED jobs and submitted none; killed mid-way, it submitted the $((6 - N_B)) missing; killed before recording an accepted job, it adopted that job"
