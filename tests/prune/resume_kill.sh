# kill -9 of the prune stage during layer L (its Gram matrices gathered, its weights not yet changed:
# SMELT_PRUNE_TEST_PAUSE holds it there), then `smelt resume`: the second attempt starts at
# layer L (layers 0..L-1 come from the in-stage checkpoint) and the pruned model artifact and the
# per-layer metrics are bitwise those of an uninterrupted run. Three times: with the stream file of
# the killed attempt (restored at layer L), without it (recomputed through the pruned layers
# 0..L-1), and without it for inputs: dense (recomputed through the unpruned layers).
source "$(dirname "$0")/common.sh"
base_recipe r.yaml 4
cat >> r.yaml <<'YAML'
  p:
    kind: prune
    model: base
    calibration: data.calibration
    mlp: {remove: 30}
    attention: {remove_kv_groups: 1}
    local_search: {iterations: 3}
YAML
sed 's/^    local_search: {iterations: 3}$/    inputs: dense/' r.yaml > dense.yaml

kill_and_resume() { # kill_and_resume STORE LAYER DROP_STREAM EXPECTED_STREAM_LAYER RECIPE
  SMELT_STORE=$1-ref "$SMELT" run $5 > ref.out 2>&1 || fail "reference run failed: $(cat ref.out)"
  local REF_DIGEST
  REF_DIGEST=$(SMELT_STORE=$1-ref q "SELECT digest FROM artifacts WHERE stage = 'p'")
  [ -n "$REF_DIGEST" ] || fail "no artifact in the reference run"
  export SMELT_STORE=$1
  SMELT_PRUNE_TEST_PAUSE=p:$2 setsid "$SMELT" run $5 > run.out 2>&1 &
  local runner=$! i
  for i in $(seq 1 3000); do
    ls "$SMELT_STORE"/checkpoints/*/paused-at-$2 > /dev/null 2>&1 && break
    sleep 0.02
  done
  ls "$SMELT_STORE"/checkpoints/*/paused-at-$2 > /dev/null 2>&1 || fail "the stage never reached layer $2: $(cat run.out)"
  local ck
  ck=$(dirname "$(ls "$SMELT_STORE"/checkpoints/*/paused-at-$2)")
  kill -9 -- -$runner 2>/dev/null || true
  pkill -9 -f "smelt exec --store $SMELT_STORE" 2>/dev/null || true
  wait $runner 2>/dev/null || true
  expect_eq "$(q "SELECT status FROM stages WHERE stage = 'p'")" running "p left running by the kill"
  expect_eq "$(q "SELECT count(*) FROM artifacts WHERE stage = 'p'")" 0 "no artifact after the kill"
  expect_eq "$(cd "$ck" && ls layer-*.bin | tr '\n' ' ')" "$(for l in $(seq 0 $(($2 - 1))); do printf 'layer-%04d.bin ' $l; done)" \
    "layer checkpoints at the kill"
  [ "$3" = drop ] && rm "$ck"/stream-r0of1.bin
  "$SMELT" resume "$(q "SELECT run_id FROM runs")" > resume.out 2>&1 || fail "resume failed: $(cat resume.out)"
  local log
  log=$(q "SELECT log_path FROM stages WHERE stage = 'p'")
  expect_contains "$(cat "$log")" "resuming at layer $2 of 4: layers 0..$(($2 - 1)) from the in-stage checkpoint (stream restored at layer $4)" \
    "the second attempt resumes at layer $2"
  expect_eq "$(q "SELECT attempts FROM stages WHERE stage = 'p'")" 2 "attempts"
  expect_eq "$(q "SELECT digest FROM artifacts WHERE stage = 'p'")" "$REF_DIGEST" "pruned model after kill -9 at layer $2 and resume"
  for key in rel_error_mlp rel_error_attn groups_removed_attn; do
    expect_eq "$(metric_curve "$SMELT_STORE" p $key)" "$(metric_curve $1-ref p $key)" "$key per layer after resume"
  done
  [ ! -d "$ck" ] || fail "the in-stage checkpoint of the completed stage was not removed"
}
kill_and_resume $WORK/a 2 keep 2 r.yaml
kill_and_resume $WORK/b 3 drop 0 r.yaml
kill_and_resume $WORK/c 2 drop 0 dense.yaml # the stream recomputed through the unpruned layers
pass "kill -9 during layers 2 and 3, resumed there (stream restored / recomputed, inputs pruned / dense): output and metrics bitwise equal"
