# kill -9 of the runner and its stage processes while the third stage runs; `smelt resume`
# launches the first two stages zero times, the third continues from its in-stage checkpoint,
# every final artifact digest equals an uninterrupted run's, and the store stays consistent.
source "$(dirname "$0")/lib.sh"
L=$WORK/launches
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
    run: |
      start=0
      [ -f "\$SMELT_CHECKPOINT_DIR/step" ] && start=\$(cat "\$SMELT_CHECKPOINT_DIR/step")
      echo "s3 start \$start" >> $L
      i=\$start
      while [ \$i -lt 12 ]; do
        sleep 0.25
        i=\$((i + 1))
        echo \$i > "\$SMELT_CHECKPOINT_DIR/step.tmp" && mv "\$SMELT_CHECKPOINT_DIR/step.tmp" "\$SMELT_CHECKPOINT_DIR/step"
      done
      seq 1 12 > \$SMELT_OUTPUT_DIR/steps.txt
      cat \$SMELT_INPUT_TWO/two.txt >> \$SMELT_OUTPUT_DIR/steps.txt
  s4:
    kind: command
    inputs: {three: s3}
    run: echo s4 >> $L; wc -l < \$SMELT_INPUT_THREE/steps.txt > \$SMELT_OUTPUT_DIR/count.txt
YAML
digests() { "$SMELT" query --csv "SELECT stage, name, digest FROM artifacts WHERE run_id = '$1' ORDER BY stage, name" | tail -n +2; }

# The uninterrupted reference, in its own store.
SMELT_STORE=$WORK/ref "$SMELT" run chain.yaml > ref.out || fail "reference run failed"
REF=$(SMELT_STORE=$WORK/ref "$SMELT" query --csv "SELECT run_id FROM runs" | tail -1)
REF_DIGESTS=$(SMELT_STORE=$WORK/ref digests "$REF")
: > $L

# The run to kill.
setsid "$SMELT" run chain.yaml > run.out 2>&1 &
RUNNER=$!
for _ in $(seq 1 200); do
  CK=$(ls -d $WORK/store/checkpoints/*/ 2>/dev/null | head -1 || true)
  [ -n "$CK" ] && [ -f "$CK/step" ] && [ "$(cat "$CK/step")" -ge 4 ] && break
  sleep 0.05
done
[ -n "$CK" ] && [ "$(cat "$CK/step")" -ge 4 ] || fail "stage s3 never reached step 4: $(cat run.out)"
# Crash: the runner, its stage processes and the command, all with SIGKILL at once.
kill -9 -- -$RUNNER 2>/dev/null || true
pkill -9 -f "smelt exec --store $WORK/store" 2>/dev/null || true
pkill -9 -f "$L" 2>/dev/null || true   # the command, whose text names this test's launches file
wait $RUNNER 2>/dev/null || true
sleep 0.5
STEP_AT_KILL=$(cat "$CK/step")
RUN=$(q "SELECT run_id FROM runs")
expect_eq "$(q "SELECT status FROM stages WHERE run_id = '$RUN' AND stage = 's3'")" running "s3 left running by the crash"
expect_eq "$(q "SELECT count(*) FROM artifacts WHERE run_id = '$RUN' AND stage IN ('s3', 's4')")" 0 "no artifact of the killed stage"
expect_eq "$(sort $L | tr '\n' ' ')" "s1 s2 s3 start 0 " "launches before the kill"
expect_contains "$("$SMELT" status "$RUN")" "its runner process is gone" "status notices the dead runner"

: > $L
"$SMELT" resume "$RUN" > resume.out 2>&1 || fail "resume failed: $(cat resume.out)"
expect_eq "$(grep -c '^s1$\|^s2$' $L || true)" 0 "s1 and s2 launched on resume"
START=$(sed -n 's/^s3 start //p' $L)
[ "$START" -ge 4 ] || fail "s3 restarted from step $START, not from its checkpoint (>= 4)"
[ "$START" -le "$STEP_AT_KILL" ] || fail "s3 started at $START, past the checkpoint $STEP_AT_KILL"
expect_eq "$(q "SELECT status FROM runs WHERE run_id = '$RUN'")" ok "resumed run status"
expect_eq "$(digests "$RUN")" "$REF_DIGESTS" "artifact digests after kill and resume"
expect_eq "$(q "SELECT attempts FROM stages WHERE run_id = '$RUN' AND stage = 's3'")" 2 "s3 attempts"
[ ! -d "$CK" ] || fail "the checkpoint directory of a completed stage was not removed"

# Consistency: the database and every object.
expect_eq "$(sqlite3 $WORK/store/smelt.db 'PRAGMA integrity_check')" ok "integrity_check"
for f in $WORK/store/objects/*/*; do
  d=$(basename "$(dirname "$f")")$(basename "$f")
  expect_eq "$(sha256sum "$f" | cut -d' ' -f1)" "$d" "object $d is complete"
done
pass "kill -9 and resume: s3 continued from step $START (killed at $STEP_AT_KILL), digests equal"
