# The `quantize` stage end to end on a small trained model (2 layers, hidden 48): RTN, GPTQ, QuantEase,
# SmoothQuant+GPTQ W8A8 and FP8 run from one recipe; per layer and per linear family QuantEase <= GPTQ
# <= RTN in rel_error; QuantEase's objective never increases across sweeps; the totals are there; a
# second run is cached; kill -9 after layer 0 and `smelt resume` give a byte-identical artifact; bad
# parameters stop the stage before any work with exit status 2 and a message naming the cause.
source "$(dirname "$0")/../cli/lib.sh"
export OMP_WAIT_POLICY=passive

recipe() { # recipe FILE EXTRA_STAGES
  cat > "$1" <<YAML
smelt: 1
name: qtiny
seed: 11
stages:
  data:
    kind: data
    source: synthetic
    members: 40
    items: 60
    tasks: [like]
    history: 4
    max_tokens: 160
    candidates: 4
    calibration: {samples: 16}
  teacher:
    kind: train
    data: data
    init: {arch: llama, hidden: 48, layers: 2, heads: 4, kv_heads: 2, intermediate: 96}
    loss: {ce: 1.0, prompt_weight: 0.2}
    optim: {lr: 3.0e-3, warmup: 2}
    steps: 12
    batch_tokens: 2048
    seq_len: 160
    valid_examples: 32
$2
YAML
}
ALL="  q-rtn: {kind: quantize, model: teacher, method: rtn, bits: 4, group_size: 16, calibration: data.calibration}
  q-gptq: {kind: quantize, model: teacher, method: gptq, bits: 4, group_size: 16, calibration: data.calibration}
  q-qe: {kind: quantize, model: teacher, method: quantease, iterations: 4, bits: 4, group_size: 16, calibration: data.calibration}
  q-w8a8: {kind: quantize, model: teacher, method: smoothquant+gptq, smooth: {alpha: 0.8}, bits: 8, group_size: -1, activations: int8, calibration: data.calibration}
  q-fp8: {kind: quantize, model: teacher, method: fp8, activations: fp8}
  q-ign: {kind: quantize, model: teacher, method: rtn, bits: 8, group_size: -1, ignore: [lm_head, down_proj, model.layers.1], calibration: data.calibration}"
recipe r.yaml "$ALL"
"$SMELT" run r.yaml > run.out 2>&1 || fail "run failed: $(cat run.out)"
m() { q "SELECT value FROM metrics WHERE stage = '$1' AND key = '$2' AND step = $3"; }
for l in 0 1; do
  for f in q k v o gate up down; do
    R=$(m q-rtn rel_error_$f $l) G=$(m q-gptq rel_error_$f $l) E=$(m q-qe rel_error_$f $l)
    [ -n "$R" ] && [ -n "$G" ] && [ -n "$E" ] || fail "layer $l $f: a rel_error is missing"
    awk -v r="$R" -v g="$G" -v e="$E" 'BEGIN { exit !(e <= g && g <= r && r > 0) }' ||
      fail "layer $l $f: QuantEase $E <= GPTQ $G <= RTN $R does not hold"
  done
  OBJ=$(q "SELECT value FROM metrics WHERE stage = 'q-qe' AND key = 'objective_$l' ORDER BY step")
  expect_eq "$(wc -l <<<"$OBJ" | tr -d ' ')" 5 "layer $l: objective before and after each of 4 sweeps"
  awk 'NR > 1 && $1 > prev * (1 + 1e-12) { bad = 1 } { prev = $1 } END { exit bad }' <<<"$OBJ" ||
    fail "layer $l: the QuantEase objective increased: $OBJ"
  W=$(m q-w8a8 rel_error_down $l)
  awk -v w="$W" 'BEGIN { exit !(w > 0 && w < 1e-3) }' || fail "layer $l: W8A8 down_proj error $W"
done
for s in q-rtn q-gptq q-qe q-w8a8 q-fp8; do
  for k in bytes bits_per_weight; do [ -n "$(m $s $k 0)" ] || fail "$s: no $k"; done
done
expect_eq "$(m q-gptq bits_per_weight 0)" 5 "4-bit weights with an fp16 scale per 16: 5 bits per weight"
[ -z "$(m q-fp8 rel_error_q 0)" ] || fail "fp8 without calibration has no error metrics"
RUN=$(q "SELECT run_id FROM runs")
"$SMELT" checkout "$RUN" q-qe -o qe > /dev/null || fail "checkout of q-qe failed"
[ -f qe/config.json ] && [ -f qe/model.safetensors ] || fail "q-qe output incomplete: $(ls qe)"
[ -f qe/tokenizer.json ] || fail "the tokenizer was not copied into the output: $(ls qe)"
expect_eq "$(python3 -c "import json; c = json.load(open('qe/config.json'))['quantization_config']; print(c['quant_method'], c['format'])")" \
  "compressed-tensors pack-quantized" "q-qe is a compressed-tensors W4A16 checkpoint"
INSPECT=$("$SMELT" inspect qe 2>&1) || fail "smelt inspect of the quantized output failed: $INSPECT"
expect_contains "$INSPECT" "int4 group 16" "inspect names the quantized linears"
"$SMELT" run r.yaml > again.out 2>&1 || fail "second run failed"
expect_contains "$(cat again.out)" "(0 run, 8 cached)" "second run is cached"
# ignore: down_proj everywhere and all of layer 1 stay fp32 (no metric, listed as ignored in the export)
expect_eq "$(q "SELECT count(*) FROM metrics WHERE run_id = '$RUN' AND stage = 'q-ign' AND key LIKE 'rel_error_%' AND key != 'rel_error_mean'")" 6 \
  "q-ign quantized the six linears of layer 0 other than down_proj"
"$SMELT" checkout "$RUN" q-ign -o ign > /dev/null
IGN=$(python3 -c "import json; print(' '.join(sorted(json.load(open('ign/config.json'))['quantization_config']['ignore'])))")
expect_contains "$IGN" "model.layers.0.mlp.down_proj" "the export lists the ignored down_proj"
expect_contains "$IGN" "model.layers.1.self_attn.q_proj" "the export lists layer 1's linears"
pass "five methods; QuantEase <= GPTQ <= RTN on every layer and family; monotone objective; cached rerun"

# kill -9 right after the checkpoint of layer 0, resume: the same bytes as an uninterrupted run
recipe k.yaml "  q-qe: {kind: quantize, model: teacher, method: smoothquant+quantease, iterations: 2, bits: 8, group_size: -1, activations: int8, calibration: data.calibration}"
SMELT_STORE=$WORK/ref "$SMELT" run k.yaml > ref.out 2>&1 || fail "reference run failed: $(cat ref.out)"
REF=$(SMELT_STORE=$WORK/ref q "SELECT digest FROM artifacts WHERE stage = 'q-qe'")
set +e
SMELT_STORE=$WORK/kill SMELT_QUANTIZE_KILL_AT=q-qe:0 "$SMELT" run k.yaml > kill.out 2>&1
set -e
KRUN=$(SMELT_STORE=$WORK/kill q "SELECT run_id FROM runs")
expect_eq "$(SMELT_STORE=$WORK/kill q "SELECT count(*) FROM artifacts WHERE stage = 'q-qe'")" 0 "no artifact after the kill"
SMELT_STORE=$WORK/kill "$SMELT" resume "$KRUN" > resume.out 2>&1 || fail "resume failed: $(cat resume.out)"
LOG=$(SMELT_STORE=$WORK/kill q "SELECT log_path FROM stages WHERE stage = 'q-qe'")
expect_contains "$(cat "$LOG")" "resuming after layer 0 of 2" "the second attempt resumed from layer 0's checkpoint"
expect_eq "$(SMELT_STORE=$WORK/kill q "SELECT digest FROM artifacts WHERE stage = 'q-qe'")" "$REF" "artifact after kill -9 and resume"
for key in rel_error_q rel_error_down objective_1; do
  expect_eq "$(SMELT_STORE=$WORK/kill q "SELECT group_concat(value) FROM metrics WHERE stage = 'q-qe' AND key = '$key'")" \
    "$(SMELT_STORE=$WORK/ref q "SELECT group_concat(value) FROM metrics WHERE stage = 'q-qe' AND key = '$key'")" "$key after resume"
done
pass "kill -9 after layer 0 and resume: byte-identical artifact and metrics"

# bad parameters: exit status 2 before any work, the message names the cause
bad() { # bad NAME STAGE_YAML EXPECTED
  recipe bad.yaml "  q: $2"
  set +e
  "$SMELT" run bad.yaml > bad.out 2>&1
  local rc=$?
  set -e
  [ $rc -ne 0 ] || fail "$1: the run succeeded"
  local run err
  run=$(q "SELECT run_id FROM runs ORDER BY created_at DESC LIMIT 1")
  err=$(q "SELECT error FROM stages WHERE run_id = '$run' AND stage = 'q'")
  expect_contains "$err" "exit status 2" "$1: exit status"
  expect_contains "$err" "$3" "$1"
  [ -z "$(q "SELECT 1 FROM metrics WHERE run_id = '$run' AND stage = 'q' AND key LIKE 'rel_error%'")" ] ||
    fail "$1: a layer was quantized before the failure"
}
bad bits3-gptq "{kind: quantize, model: teacher, method: gptq, bits: 3, group_size: 16, format: gptq, calibration: data.calibration}" \
  "format gptq packs 2, 4 or 8 bits"
bad gguf "{kind: quantize, model: teacher, method: rtn, bits: 4, group_size: 32, format: gguf}" "format gguf"
bad group20 "{kind: quantize, model: teacher, method: gptq, bits: 4, group_size: 20, calibration: data.calibration}" \
  "group_size 20 does not divide the hidden size"
bad quantized "{kind: quantize, model: $WORK/qe, method: rtn, bits: 4, group_size: 16}" "is already quantized"
bad ignore "{kind: quantize, model: teacher, method: rtn, bits: 4, group_size: 16, ignore: [lm_head, model.layers.7.mlp.up_proj]}" \
  "ignore entry 'model.layers.7.mlp.up_proj' names no linear"
bad ignore-part "{kind: quantize, model: teacher, method: rtn, bits: 4, group_size: 16, ignore: [model.layers.1.self_attn.k_proj]}" \
  "ignore them together"
bad no-calibration "{kind: quantize, model: teacher, method: gptq, bits: 4, group_size: 16}" "method gptq needs calibration data"
bad int-fp8act "{kind: quantize, model: teacher, method: gptq, bits: 8, group_size: -1, activations: fp8, calibration: data.calibration}" \
  "integer weights with FP8 activations"
bad fp8-gptq "{kind: quantize, model: teacher, method: fp8, format: gptq}" "format gptq holds integer weights only"
pass "bad parameters: exit 2 before any layer, with the cause"
