# Quantized checkpoints through the CLI: `smelt inspect` summarizes and checks them, the evaluate
# stage scores them directly (W8A8, W4A16 compressed-tensors, GPTQ, FP8) beside the dense model they
# were made from, and `smelt generate` runs the real stories260K model quantized to W8A8: greedy
# decoding from BOS keeps the first sentences of the text ../shared/README.md quotes for fp32.
source "$(dirname "$0")/lib.sh"
source "$SMELT_SOURCE_DIR/tests/lib_shared.sh"
export OMP_NUM_THREADS=1
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0" # OpenMPI's plugins (see evaluate_cli.sh)
H=${SMELT_DATA_HELPER:?SMELT_DATA_HELPER must point to the data_helper binary}
QH=${SMELT_QEXPORT_HELPER:?SMELT_QEXPORT_HELPER must point to the qexport_helper binary}
"$H" model rand 261 1 || fail "random model"
for c in ct_w8a8 ct_w4a16_g8 gptq_w4_g8 ct_fp8_dynamic; do "$QH" quantize rand "$c" "$c" || fail "quantize $c"; done

out=$("$SMELT" inspect ct_w4a16_g8) || fail "inspect: $out"
expect_contains "$out" "quantized:    compressed-tensors pack-quantized: 14 int4 group 8 symmetric, fp32 activations; 1 fp32 (lm_head)" "inspect summary"
expect_contains "$out" "check:        ok (the quantized checkpoint reads back whole)" "inspect check"
out=$("$SMELT" inspect --json gptq_w4_g8) || fail "inspect --json"
expect_contains "$out" '"quantization": {"format": "gptq"' "inspect --json"
# a damaged quantized folder: inspect reports the problem, evaluate refuses it
cp -r gptq_w4_g8 broken && python3 - broken/config.json <<'PY'
import json, sys
c = json.load(open(sys.argv[1])); c["quantization_config"]["bits"] = 3; json.dump(c, open(sys.argv[1], "w"))
PY
out=$("$SMELT" inspect broken) || fail "inspect of a broken folder should still describe it"
expect_contains "$out" "bits 3; smelt reads 2, 4 and 8" "inspect names the problem"
pass "inspect: quantized summaries and checks"

cat > q.yaml <<'YAML'
smelt: 1
seed: 7
stages:
  data:
    kind: data
    source: synthetic
    members: 16
    items: 30
    tasks: [like]
    history: 6
    history_tokens: 150
    interactions: 20
  dense:
    kind: evaluate
    model: ./rand
    data: data
  w8a8:
    kind: evaluate
    model: ./ct_w8a8
    data: data
    reference: dense
  w4a16:
    kind: evaluate
    model: ./ct_w4a16_g8
    data: data
    reference: dense
  gptq:
    kind: evaluate
    model: ./gptq_w4_g8
    data: data
    reference: dense
  fp8:
    kind: evaluate
    model: ./ct_fp8_dynamic
    data: data
    reference: dense
YAML
"$SMELT" run q.yaml > run.out 2>&1 || fail "run failed: $(cat run.out)"
RUN=$(q "SELECT run_id FROM runs")
m() { q "SELECT value FROM latest_metrics WHERE run_id = '$RUN' AND stage = '$1' AND key = '$2'"; }
for st in w8a8 w4a16 gptq fp8; do
  [ -n "$(m $st auc)" ] && [ -n "$(m $st log_loss)" ] || fail "$st: metrics missing"
  LOG=$(q "SELECT log_path FROM stages WHERE run_id = '$RUN' AND stage = '$st'")
  expect_contains "$(cat "$LOG")" "(quantized)" "$st ran quantized"
done
# the same RTN in two formats (GPTQ's scales are rounded to fp16 first, so the two differ a little)
d1=$(q "SELECT value FROM latest_metrics WHERE run_id = '$RUN' AND stage = 'w4a16' AND key = 'log_loss'")
d2=$(q "SELECT value FROM latest_metrics WHERE run_id = '$RUN' AND stage = 'gptq' AND key = 'log_loss'")
pass "evaluate runs W8A8, W4A16, GPTQ and FP8 checkpoints directly (W4A16 log loss $d1, GPTQ $d2)"

what="the W8A8 stories260K generation"
shared_file model models/stories260K/stories260K.bin "$what" && shared_file tok models/stories260K/tok512.bin "$what" &&
  shared_file readme README.md "$what" || exit 0
shared=$SHARED_DIR
want=$(grep -A1 'Greedy (temperature 0) decoding from BOS' "$shared/README.md" | tail -n 1 | sed -n 's/^[^`]*`\([^`]*\)`.*$/\1/p')
"$SMELT" convert "$model" st-hf > /dev/null 2>&1 || fail "convert stories260K"
"$QH" quantize st-hf st-w8a8 ct_w8a8 || fail "quantize stories260K"
got=$("$SMELT" generate st-w8a8 --tokenizer "$tok" --max-tokens 40 --temperature 0 2> gen.err) || fail "generate: $(cat gen.err)"
expect_contains "$(cat gen.err)" "runs with quantized linears" "generate says it runs quantized"
expect_eq "${got:0:100}" "${want:0:100}" "W8A8 stories260K keeps the greedy story's first 100 bytes"
pass "generate runs stories260K in W8A8 and tells the same story"
