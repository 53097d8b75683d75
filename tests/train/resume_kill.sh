# kill -9 of a distillation stage (with on-policy steps) while it trains, then `smelt resume`:
# the stage continues from its newest in-stage checkpoint (not from step 0), and the final
# weights, the whole model artifact and the per-step loss curve are bitwise identical to an
# uninterrupted run's.
source "$(dirname "$0")/common.sh"
tiny_recipe r.yaml "    steps: 40
    checkpoint_every: 4
    on_policy: {fraction: 0.5, max_new_tokens: 4, temperature: 0.9}"

SMELT_STORE=$WORK/ref "$SMELT" run r.yaml > ref.out 2>&1 || fail "reference run failed: $(cat ref.out)"
REF_DIGEST=$(SMELT_STORE=$WORK/ref q "SELECT digest FROM artifacts WHERE stage = 'student'")
[ -n "$REF_DIGEST" ] || fail "no student artifact in the reference run"

setsid "$SMELT" run r.yaml > run.out 2>&1 &
RUNNER=$!
newest_step() { { ls -d "$WORK"/store/checkpoints/*/step-* 2>/dev/null || true; } | sed 's/.*step-0*//' | sort -n | tail -1; }
for _ in $(seq 1 2400); do
  S=$(newest_step)
  [ -n "$S" ] && [ "$S" -ge 8 ] && break
  sleep 0.02
done
S=$(newest_step)
[ -n "$S" ] && [ "$S" -ge 8 ] || fail "the student never wrote an in-stage checkpoint of step >= 8: $(cat run.out)"
CK=$(dirname "$(ls -d "$WORK"/store/checkpoints/*/step-* | head -1)")
kill -9 -- -$RUNNER 2>/dev/null || true
pkill -9 -f "smelt exec --store $WORK/store" 2>/dev/null || true
wait $RUNNER 2>/dev/null || true
STEP_AT_KILL=$(ls -d "$CK"/step-* | sed 's/.*step-0*//' | sort -n | tail -1)
RUN=$(q "SELECT run_id FROM runs")
expect_eq "$(q "SELECT status FROM stages WHERE stage = 'student'")" running "student left running by the kill"
expect_eq "$(q "SELECT count(*) FROM artifacts WHERE stage = 'student'")" 0 "no student artifact after the kill"
[ "$STEP_AT_KILL" -lt 40 ] || fail "the student finished (step $STEP_AT_KILL) before it was killed"

"$SMELT" resume "$RUN" > resume.out 2>&1 || fail "resume failed: $(cat resume.out)"
LOG=$(q "SELECT log_path FROM attempt WHERE stage = 'student' AND attempt = 2" 2>/dev/null ||
      q "SELECT log_path FROM stages WHERE stage = 'student'")
RESUMED=$(sed -n 's/.*resuming from the in-stage checkpoint of step \([0-9]*\) of 40.*/\1/p' "$LOG")
[ -n "$RESUMED" ] || fail "the second attempt did not resume from a checkpoint: $(cat "$LOG")"
[ "$RESUMED" -ge 8 ] || fail "resumed from step $RESUMED, expected a checkpoint of step >= 8"
expect_eq "$(q "SELECT digest FROM artifacts WHERE stage = 'student'")" "$REF_DIGEST" "student artifact after kill -9 and resume"
expect_eq "$(metric_curve $WORK/store student loss)" "$(metric_curve $WORK/ref student loss)" "loss curve after resume"
expect_eq "$(q "SELECT attempts FROM stages WHERE stage = 'student'")" 2 "student attempts"
[ ! -d "$CK" ] || fail "the in-stage checkpoints of the completed stage were not removed"
pass "kill -9 at step >= $STEP_AT_KILL, resumed from step $RESUMED: model and loss curve bitwise equal"
