#!/usr/bin/env bash
# scancel of stage 3's job while it runs: status shows it CANCELLED and its descendants never
# run (Slurm cancels them: their dependency can never be satisfied); `smelt resume` submits
# stage 3 and its descendants only (4 sbatch calls, one state query), stage 3 continues from its
# in-stage checkpoint, and the final artifacts equal an uninterrupted local run's.
source "$(dirname "$0")/lib.sh"
L=$WORK/launches
# Stage 3: 24 steps of 0.25 s with a checkpoint after each. A script file rather than inline text,
# so that no other test's pkill -f of a pattern (tests/cli/resume_kill.sh) can match its command.
cat > s3.sh <<SH
start=0
[ -f "\$SMELT_CHECKPOINT_DIR/step" ] && start=\$(cat "\$SMELT_CHECKPOINT_DIR/step")
echo "s3 start \$start job \$SLURM_JOB_ID" >> $L
i=\$start
while [ \$i -lt 24 ]; do
  sleep 0.25
  i=\$((i + 1))
  echo \$i > "\$SMELT_CHECKPOINT_DIR/step.tmp" && mv "\$SMELT_CHECKPOINT_DIR/step.tmp" "\$SMELT_CHECKPOINT_DIR/step"
done
seq 1 24 > \$SMELT_OUTPUT_DIR/steps.txt
cat \$SMELT_INPUT_TWO/two.txt >> \$SMELT_OUTPUT_DIR/steps.txt
SH
cat > chain.yaml <<YAML
smelt: 1
name: chain
stages:
  s1:
    kind: command
    run: echo s1 >> $L; echo base > \$SMELT_OUTPUT_DIR/base.txt
  s2:
    kind: command
    inputs: {base: s1}
    run: echo s2 >> $L; cat \$SMELT_INPUT_BASE/base.txt > \$SMELT_OUTPUT_DIR/two.txt
  s3:
    kind: command
    inputs: {two: s2}
    files: {script: s3.sh}
    run: sh \$SMELT_FILE_SCRIPT
  s4:
    kind: command
    inputs: {three: s3}
    run: echo s4 >> $L; wc -l < \$SMELT_INPUT_THREE/steps.txt > \$SMELT_OUTPUT_DIR/count.txt
  s5:
    kind: command
    inputs: {four: s4}
    run: echo s5 >> $L; cat \$SMELT_INPUT_FOUR/count.txt \$SMELT_INPUT_FOUR/count.txt > \$SMELT_OUTPUT_DIR/twice.txt
  s6:
    kind: command
    inputs: {five: s5, one: s1}
    run: echo s6 >> $L; cat \$SMELT_INPUT_FIVE/twice.txt \$SMELT_INPUT_ONE/base.txt > \$SMELT_OUTPUT_DIR/all.txt
YAML

SMELT_STORE=$WORK/ref "$SMELT" run chain.yaml > ref.out 2>&1 || fail "local reference run failed: $(cat ref.out)"
REF_DIGESTS=$(SMELT_STORE=$WORK/ref digests "$(SMELT_STORE=$WORK/ref q "SELECT run_id FROM runs")")
: > "$L"

"$SMELT" submit chain.yaml --slurm > submit.out 2>&1 || fail "submit failed: $(cat submit.out)"
RUN=$(q "SELECT run_id FROM runs")
trap 'cleanup_jobs $RUN' EXIT
J3=$(job_of "$RUN" s3)
for _ in $(seq 1 300); do
  CK=$(ls -d "$WORK"/store/checkpoints/*/ 2>/dev/null | head -n 1 || true)
  [ -n "$CK" ] && [ -f "$CK/step" ] && [ "$(cat "$CK/step")" -ge 4 ] && break
  sleep 0.1
done
[ -n "$CK" ] && [ "$(cat "$CK/step")" -ge 4 ] || fail "stage s3 never reached step 4: $("$SMELT" status "$RUN")"
real_scancel "$J3"
wait_state "$RUN" s3 CANCELLED 30
for s in s4 s5 s6; do wait_state "$RUN" "$s" CANCELLED 30; done
STEP_AT_CANCEL=$(cat "$CK/step")
sleep 1

reset_calls
"$SMELT" status "$RUN" > status.out 2>&1 || fail "status failed: $(cat status.out)"
expect_eq "$(all_calls)" 1 "Slurm calls of status"
expect_contains "$(grep '^s3 ' status.out)" "CANCELLED" "status of s3"
for s in s4 s5 s6; do
  expect_contains "$(grep "^$s " status.out)" "CANCELLED" "status of $s"
  expect_contains "$(grep "^$s " status.out)" "DependencyNeverSatisfied" "reason of $s"
done
expect_contains "$(grep '^s3 ' status.out)" "pending" "the store keeps s3 pending (its job stopped)"
expect_eq "$(run_status "$RUN")" interrupted "run status after the cancel"
expect_eq "$(grep -c '^s[456]$' "$L" || true)" 0 "descendants of the cancelled stage never ran"
expect_eq "$(q "SELECT state FROM slurm_jobs WHERE run_id = '$RUN' AND stage = 's3'")" stopped "s3's job record"
[ -d "$CK" ] || fail "the in-stage checkpoint of s3 was removed by the cancel"

: > "$L"
reset_calls
"$SMELT" resume "$RUN" > resume.out 2>&1 || fail "resume failed: $(cat resume.out)"
expect_eq "$(calls sbatch)" 4 "sbatch calls of resume (s3 and its 3 descendants)"
expect_eq "$(calls squeue)" 1 "state queries of resume"
expect_eq "$(calls scancel)" 0 "scancel calls of resume (nothing left to cancel)"
expect_contains "$(cat resume.out)" "2 done" "s1 and s2 are done"
for s in s3 s4 s5 s6; do
  [ "$(job_of "$RUN" "$s")" != "" ] || fail "no new job for $s"
  expect_eq "$(q "SELECT max(submission) FROM slurm_jobs WHERE run_id = '$RUN' AND stage = '$s'")" 2 "submissions of $s"
done
for s in s1 s2; do
  expect_eq "$(q "SELECT max(submission) FROM slurm_jobs WHERE run_id = '$RUN' AND stage = '$s'")" 1 "submissions of $s"
done
# The first jobs of s4..s6 never ran (Slurm cancelled them while pending): resume recorded that,
# instead of leaving them 'submitted' forever.
expect_eq "$(q "SELECT group_concat(state, ' ') FROM (SELECT state FROM slurm_jobs WHERE run_id = '$RUN' AND \
  submission = 1 AND stage IN ('s4', 's5', 's6') ORDER BY stage)")" "cancelled cancelled cancelled" \
  "records of the jobs cancelled while pending"
wait_run "$RUN" ok 90
expect_eq "$(grep -c '^s1$\|^s2$' "$L" || true)" 0 "s1 and s2 ran again"
START=$(sed -n 's/^s3 start \([0-9]*\) .*/\1/p' "$L")
[ "$START" -ge 4 ] || fail "s3 restarted from step $START, not from its checkpoint (>= 4)"
[ "$START" -le "$STEP_AT_CANCEL" ] || fail "s3 started at $START, past its checkpoint $STEP_AT_CANCEL"
expect_contains "$(cat "$L")" "job $(job_of "$RUN" s3)" "s3 continued in its new job"
expect_eq "$(grep -c '^s[456]$' "$L")" 3 "descendants ran once each"
expect_eq "$(digests "$RUN")" "$REF_DIGESTS" "artifacts after cancel and resume equal the local run's"
expect_eq "$(q "SELECT attempts FROM stages WHERE run_id = '$RUN' AND stage = 's3'")" 2 "attempts of s3"
[ ! -d "$CK" ] || fail "the checkpoint of the completed s3 was not removed"
check_store "$WORK/store"
pass "scancel of s3 at step $STEP_AT_CANCEL: descendants never ran; resume resubmitted 4 stages, s3 continued from step $START"
