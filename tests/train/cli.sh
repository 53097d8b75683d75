# The train stage through the CLI: a teacher trained with SFT and a student distilled from it; the
# output folder (HF layout, tokenizer, inspect and generate read it); the metrics; caching; epochs
# with batch_size; select: best_valid_loss; on-policy and sequence-level sampling; errors caught
# before any work (vocabulary mismatches, loss terms without a teacher, ...) and a NaN loss
# stopping the stage with its step named and the last checkpoint kept; precision: bf16.
source "$(dirname "$0")/common.sh"
FIX=${SMELT_SOURCE_DIR:?}/tests/fixtures
tiny_recipe r.yaml "    steps: 10
    select: best_valid_loss
    valid_every: 3
    save_dtype: bfloat16"
cat >> r.yaml <<'YAML'
  seqkd:
    kind: train
    data: data
    teacher: teacher
    init: {arch: qwen2, hidden: 32, layers: 1, heads: 2, intermediate: 64, tie_embeddings: false}
    loss: {fkl: 1.0, ce: 0.5}
    on_policy: {fraction: 1.0, max_new_tokens: 3, sampled_by: teacher}
    batch_size: 8
    steps: 3
    seq_len: 160
    valid_examples: 0
  onpolicy:
    kind: train
    data: data
    teacher: teacher
    init: student
    loss: {rkl: 0.5, jsd: 0.5, jsd_beta: 0.9, temperature: 2.0}
    on_policy: {fraction: 1.0, max_new_tokens: 4, temperature: 1.0, top_p: 0.95}
    batch_size: 8
    steps: 3
    seq_len: 160
    valid_examples: 0
  epochs:
    kind: train
    data: data
    init: {arch: llama, hidden: 16, layers: 1, heads: 2, intermediate: 32}
    epochs: 1
    batch_size: 32
    seq_len: 160
    valid_examples: 0
YAML
"$SMELT" run r.yaml > run.out 2>&1 || fail "run failed: $(cat run.out)"
RUN=$(q "SELECT run_id FROM runs")
m() { q "SELECT value FROM metrics WHERE stage = '$1' AND key = '$2' AND step = $3"; }
last() { q "SELECT value FROM latest_metrics WHERE stage = '$1' AND key = '$2'"; }

# the teacher learned: its training loss fell by a tenth or more over 12 steps
awk -v a="$(m teacher loss 1)" -v b="$(last teacher loss)" 'BEGIN { exit !(b < 0.9 * a) }' ||
  fail "the teacher's loss did not fall: $(m teacher loss 1) -> $(last teacher loss)"
# every per-step metric of the student exists at every step
for key in loss ce fkl prompt_loss lr grad_norm tokens_per_s answer_tokens sequences; do
  expect_eq "$(q "SELECT count(*) FROM metrics WHERE stage = 'student' AND key = '$key'")" 10 "steps with metric $key"
done
expect_eq "$(q "SELECT group_concat(step) FROM metrics WHERE stage = 'student' AND key = 'valid_loss'")" "3,6,9,10" \
  "validation steps"
# select: best_valid_loss picked the step with the lowest validation loss
BEST=$(q "SELECT step FROM metrics WHERE stage = 'student' AND key = 'valid_loss' ORDER BY value, step LIMIT 1")
expect_eq "$(last student selected_step)" "$BEST" "selected step"
# ranking examples: one answer token per sequence when nothing is sampled
expect_eq "$(m student answer_tokens 1)" "$(m student sequences 1)" "answer tokens of an off-policy step"

# the model folder: HF layout, the data's tokenizer, loadable by inspect and generate
"$SMELT" checkout "$RUN" student -o student > /dev/null
for f in config.json generation_config.json model.safetensors tokenizer.json tokenizer_config.json smelt_train.json; do
  [ -f student/$f ] || fail "the student's folder lacks $f"
done
"$SMELT" inspect student | grep -qE "^check: +ok" || fail "inspect of the output: $("$SMELT" inspect student)"
expect_contains "$("$SMELT" inspect student)" "BF16" "save_dtype bfloat16"
expect_contains "$(cat student/smelt_train.json)" "\"selected_step\": $BEST" "summary file"
# transformers loads the folder and agrees with smelt on the greedy next token
expect_hf_greedy student

# sequence-level KD (teacher samples) and on-policy (student samples, from the student's weights)
for s in seqkd onpolicy; do
  for step in 1 2 3; do
    A=$(m $s answer_tokens $step) N=$(m $s sequences $step)
    expect_eq "$N" 8 "$s: sequences of step $step"
    # every sampled token is an answer position; a sample stops early only at EOS
    awk -v a="$A" -v n="$N" -v k=$([ $s = seqkd ] && echo 3 || echo 4) 'BEGIN { exit !(a >= n && a <= k * n) }' ||
      fail "$s step $step: $A answer tokens for $N sequences"
  done
done
awk -v a="$(m seqkd answer_tokens 1)" 'BEGIN { exit !(a > 8) }' || fail "the teacher sampled only one token per sequence"
[ -n "$(m onpolicy rkl 1)" ] && [ -n "$(m onpolicy jsd 1)" ] || fail "the on-policy stage lacks rkl/jsd metrics"
# no CE on the student's own samples: the on-policy objective equals its divergences
awk -v l="$(m onpolicy loss 1)" -v r="$(m onpolicy rkl 1)" -v j="$(m onpolicy jsd 1)" \
  'BEGIN { d = l - 0.5 * r - 0.5 * j; if (d < 0) d = -d; exit !(d <= 1e-6 * l) }' ||
  fail "on-policy loss $(m onpolicy loss 1) is not 0.5 rkl + 0.5 jsd"

# epochs with batch_size: ceil(360 training examples / 32) = 12 steps
expect_eq "$(last epochs selected_step)" 12 "steps of one epoch"
expect_eq "$(q "SELECT sum(value) FROM metrics WHERE stage = 'epochs' AND key = 'sequences'")" 384 "examples of 12 steps"

# a second run computes nothing
"$SMELT" run r.yaml > again.out 2>&1 || fail "second run failed"
expect_contains "$(cat again.out)" "(0 run, 6 cached)" "second run is cached"

# errors before any work
bad() { # bad NAME YAML_EXTRA EXPECTED [SED]: a student with extra parameters (and the recipe edited
        # by SED) fails with EXPECTED before training
  tiny_recipe bad.yaml "$2"
  [ -z "${4:-}" ] || sed -i "$4" bad.yaml
  set +e
  "$SMELT" run bad.yaml > bad.out 2>&1
  local rc=$?
  set -e
  [ $rc -ne 0 ] || fail "$1: the run succeeded"
  local run log
  run=$(q "SELECT run_id FROM runs ORDER BY created_at DESC LIMIT 1")
  log=$(q "SELECT log_path FROM stages WHERE run_id = '$run' AND stage = 'student'")
  expect_contains "$(cat bad.out "$log" 2>/dev/null)" "$3" "$1"
  [ -z "$(q "SELECT 1 FROM metrics WHERE run_id = '$run' AND stage = 'student' AND key = 'loss'")" ] ||
    fail "$1: the student trained before failing"
}
bad teacher-vocab "    steps: 2
    teacher: $FIX/llama_gqa" "has a vocabulary of 64 tokens but the data's tokenizer has 261"
bad init-vocab "    steps: 2
    init: $FIX/llama_gqa" "the student has a vocabulary of 64 but the data's tokenizer has 261"
bad no-teacher "    steps: 2" "loss.fkl/rkl/jsd/tvd/skl/srkl need a teacher" '/^    teacher: teacher$/d'
bad teacher-no-div "    steps: 2
    loss: {ce: 1.0}" "a teacher is given but the loss has no divergence"
bad best-no-valid "    steps: 2
    valid_examples: 0
    select: best_valid_loss" "select: best_valid_loss needs validation"
bad steps-and-epochs "    steps: 2
    epochs: 1" "set exactly one of steps and epochs"
bad no-room "    steps: 2
    on_policy: {fraction: 0.5, max_new_tokens: 200}" "leaves no room for a prompt"

bad layers-range "    steps: 2
    init: {from: teacher, layers: [0, 2]}" "init.layers[1] is 2, but the model of init.from has 2 layers (0 to 1)"

# init: {from, layers}: a student of the teacher's layer 1 of 2 trains (the teacher cached); its
# layer list is part of the cache key; empty or non-increasing lists are refused by the recipe check
tiny_recipe lay.yaml "    steps: 2
    init: {from: teacher, layers: [1]}"
"$SMELT" run lay.yaml > lay.out 2>&1 || fail "the run of a student of layers failed: $(cat lay.out)"
LAYRUN=$(q "SELECT run_id FROM runs ORDER BY created_at DESC LIMIT 1")
expect_contains "$(cat "$(q "SELECT log_path FROM stages WHERE run_id = '$LAYRUN' AND stage = 'student'")")" \
  "(llama, hidden 48, 1 layers)" "the student has the one kept layer"
sed -i 's/layers: \[1\]}/layers: [0]}/' lay.yaml
expect_contains "$("$SMELT" plan lay.yaml 2>&1)" "init.layers" "another layer list is another cache key"
for l in "[]:needs at least 1 entry" "[1, 1]:must be strictly increasing, but entry [1] is 1 after 1"; do
  tiny_recipe lay.yaml "    steps: 2
    init: {from: teacher, layers: ${l%%:*}}"
  set +e
  "$SMELT" plan lay.yaml > lay.out 2>&1
  rc=$?
  set -e
  expect_eq $rc 2 "exit status of layers ${l%%:*}"
  expect_contains "$(cat lay.out)" "'init.layers' ${l#*:}" "layers ${l%%:*}"
done

# NaN at step 5 (fault injection): the stage fails naming the step; the checkpoint of step 4 stays
tiny_recipe nan.yaml "    steps: 8
    checkpoint_every: 2"
set +e
SMELT_STORE=$WORK/nan SMELT_TRAIN_NAN_AT=student:5 "$SMELT" run nan.yaml > nan.out 2>&1
rc=$?
set -e
expect_eq $rc 1 "exit status of a NaN run"
ERR=$(SMELT_STORE=$WORK/nan q "SELECT error FROM stages WHERE stage = 'student'")
expect_contains "$ERR" "the loss is NaN at step 5" "NaN error names the step"
expect_contains "$ERR" "the last good in-stage checkpoint (step 4) is kept" "NaN error names the checkpoint"
ls -d $WORK/nan/checkpoints/*/step-000000004 > /dev/null || fail "the checkpoint of step 4 is gone"
NANRUN=$(SMELT_STORE=$WORK/nan q "SELECT run_id FROM runs")
SMELT_STORE=$WORK/nan "$SMELT" resume "$NANRUN" > nanresume.out 2>&1 || fail "resume after the NaN failed"
expect_contains "$(cat $(SMELT_STORE=$WORK/nan q "SELECT log_path FROM stages WHERE stage = 'student'"))" \
  "resuming from the in-stage checkpoint of step 4 of 8" "resume after the NaN continues from step 4"
pass "train CLI: SFT, distillation, selection, sampling, outputs, caching, errors, NaN"

# precision: bf16 (docs/engine.md): the metric bf16 says which precision ran; the fp32 fallback
# (SMELT_NO_BF16=1, or a CPU without AVX512_BF16) trains exactly the fp32 weights (the same artifact
# digests); in bf16 the teacher (SFT) and the student (distilled from it, the teacher's weights kept
# as bf16 copies) learn as the fp32 teacher does and end with other weights. The 200-step loss
# curves of bf16 against fp32, with a derived tolerance, are test_bf16's.
tiny_recipe p.yaml "    steps: 4"
for mode in fp32 nobf16 bf16; do
  set -- --set stages.teacher.precision=bf16 --set stages.student.precision=bf16
  [ $mode = fp32 ] && set --
  if [ $mode = nobf16 ]; then SMELT_NO_BF16=1 SMELT_STORE=$WORK/p-$mode "$SMELT" run p.yaml "$@" > p.out 2>&1
  else SMELT_STORE=$WORK/p-$mode "$SMELT" run p.yaml "$@" > p.out 2>&1; fi || fail "precision $mode run: $(cat p.out)"
done
pq() { SMELT_STORE=$WORK/p-$1 q "$2"; }
want=0
grep -qw avx512_bf16 /proc/cpuinfo && want=1
for st in teacher student; do
  d32=$(pq fp32 "SELECT digest FROM artifacts WHERE stage = '$st'")
  expect_eq "$(pq nobf16 "SELECT value FROM latest_metrics WHERE stage = '$st' AND key = 'bf16'")" 0 "$st: SMELT_NO_BF16 runs fp32"
  expect_eq "$(pq nobf16 "SELECT digest FROM artifacts WHERE stage = '$st'")" "$d32" "$st: the fp32 fallback trains the fp32 weights"
  expect_eq "$(pq bf16 "SELECT value FROM latest_metrics WHERE stage = '$st' AND key = 'bf16'")" $want "$st: the bf16 metric"
  if [ $want = 1 ]; then
    [ "$(pq bf16 "SELECT digest FROM artifacts WHERE stage = '$st'")" != "$d32" ] || fail "$st: bf16 gave the fp32 weights"
  fi
done
a=$(pq bf16 "SELECT value FROM metrics WHERE stage = 'teacher' AND key = 'loss' AND step = 1")
b=$(pq bf16 "SELECT value FROM latest_metrics WHERE stage = 'teacher' AND key = 'loss'")
awk -v a="$a" -v b="$b" 'BEGIN { exit !(b < 0.9 * a) }' || fail "the bf16 teacher's loss did not fall: $a -> $b"
pass "train precision bf16: the metric, the exact fp32 fallback, bf16 in effect and learning"
