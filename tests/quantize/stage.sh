# The `quantize` stage end to end on a small trained model (2 layers, hidden 48): RTN, GPTQ, QuantEase,
# SmoothQuant+GPTQ W8A8 and FP8 run from one recipe; per layer and per linear family QuantEase <= GPTQ
# <= RTN in rel_error; QuantEase's objective never increases across sweeps; the totals are there; a
# second run is cached; kill -9 after layer 0 and `smelt resume` give a byte-identical artifact; bad
# parameters stop the stage before any work with exit status 2 and a message naming the cause.
source "$(dirname "$0")/../cli/lib.sh"
export OMP_WAIT_POLICY=passive

recipe() { # recipe FILE EXTRA_STAGES [HIDDEN INTERMEDIATE]
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
    init: {arch: llama, hidden: ${3:-48}, layers: 2, heads: 4, kv_heads: 2, intermediate: ${4:-96}}
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
# bits_per_weight is what the written file spends on the quantized linears, computed again from the file
# alone (tools/file_bits_per_weight.py: the safetensors header's tensor sizes, or gguf-py's). Both are
# the correctly rounded double of the same ratio of integers, printed with 17 significant digits on
# both sides, so they agree exactly (a relative 1e-15 allows one unit of the last place).
bpw_file() { # bpw_file STAGE DIR
  local f a
  f=$(python3 "$SMELT_SOURCE_DIR/tools/file_bits_per_weight.py" "$2") || fail "$1: reading bits per weight from $2"
  a=$(q "SELECT printf('%.17g', value) FROM metrics WHERE stage = '$1' AND key = 'bits_per_weight'")
  awk -v a="$a" -v b="$f" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(b > 0 && d <= 1e-15 * b) }' ||
    fail "$1: bits_per_weight $a, but the file spends $f bits per quantized weight"
}
[ -z "$(m q-fp8 rel_error_q 0)" ] || fail "fp8 without calibration has no error metrics"
RUN=$(q "SELECT run_id FROM runs")
"$SMELT" checkout "$RUN" q-qe -o qe > /dev/null || fail "checkout of q-qe failed"
[ -f qe/config.json ] && [ -f qe/model.safetensors ] || fail "q-qe output incomplete: $(ls qe)"
[ -f qe/tokenizer.json ] || fail "the tokenizer was not copied into the output: $(ls qe)"
expect_eq "$(python3 -c "import json; c = json.load(open('qe/config.json'))['quantization_config']; print(c['quant_method'], c['format'])")" \
  "compressed-tensors pack-quantized" "q-qe is a compressed-tensors W4A16 checkpoint"
INSPECT=$("$SMELT" inspect qe 2>&1) || fail "smelt inspect of the quantized output failed: $INSPECT"
expect_contains "$INSPECT" "int4 group 16" "inspect names the quantized linears"
"$SMELT" checkout "$RUN" q-ign -o ign > /dev/null
for s in rtn gptq w8a8 fp8; do "$SMELT" checkout "$RUN" q-$s -o $s > /dev/null || fail "checkout of q-$s failed"; done
for s in rtn gptq qe w8a8 fp8 ign; do bpw_file q-$s $s; done
# compressed-tensors keeps F32 scales: 4-bit group 16 is 4 + 32/16 bits, plus weight_shape (128 bits a
# linear; the smallest here, k_proj, has 24 x 48 weights: at most 0.12 bits more per weight)
awk -v a="$(m q-gptq bits_per_weight 0)" 'BEGIN { exit !(a > 6 && a < 6.12) }' ||
  fail "q-gptq: 4-bit codes and an F32 scale per 16 weights are 6 bits per weight, not $(m q-gptq bits_per_weight 0)"
pass "bits_per_weight equals the bits the compressed-tensors files spend per quantized weight (W4, W8A8, FP8)"
"$SMELT" run r.yaml > again.out 2>&1 || fail "second run failed"
expect_contains "$(cat again.out)" "(0 run, 8 cached)" "second run is cached"
# ignore: down_proj everywhere and all of layer 1 stay fp32 (no metric, listed as ignored in the export)
expect_eq "$(q "SELECT count(*) FROM metrics WHERE run_id = '$RUN' AND stage = 'q-ign' AND key LIKE 'rel_error_%' AND key != 'rel_error_mean'")" 6 \
  "q-ign quantized the six linears of layer 0 other than down_proj"
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
bad gguf-bits3 "{kind: quantize, model: teacher, method: rtn, bits: 3, group_size: 32, format: gguf}" \
  "format gguf holds llama.cpp's Q8_0"
bad gguf-group16 "{kind: quantize, model: teacher, method: rtn, bits: 4, group_size: 16, format: gguf}" "groups of 32"
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

# format gguf on a teacher of hidden 64 (groups of 32 divide it): Q4_0 (RTN symmetric), Q4_1 (GPTQ
# asymmetric: scales of 7 significant bits keep -scale*zero an fp16 number) and Q8_0 (GPTQ 8-bit) as
# one model.gguf each; evaluate reads them through model_load, and the Q4_0 file scores exactly as
# the same RTN written as compressed-tensors (the same qweights both ways); gguf-py reads the files
# (tensor types, smelt.quantized) and its dequantized Q4_0 weights equal the compressed-tensors ones.
export SMELT_STORE=$WORK/gg
recipe g.yaml "  q-q40: {kind: quantize, model: teacher, method: rtn, bits: 4, group_size: 32, format: gguf}
  q-ct40: {kind: quantize, model: teacher, method: rtn, bits: 4, group_size: 32}
  q-q41: {kind: quantize, model: teacher, method: gptq, bits: 4, sym: false, group_size: 32, format: gguf, calibration: data.calibration}
  q-q80: {kind: quantize, model: teacher, method: gptq, bits: 8, group_size: 32, format: gguf, calibration: data.calibration}
  q-gq: {kind: quantize, model: teacher, method: rtn, bits: 4, group_size: 32, format: gptq}
  e-q40: {kind: evaluate, model: q-q40, data: data}
  e-ct40: {kind: evaluate, model: q-ct40, data: data}
  e-q41: {kind: evaluate, model: q-q41, data: data}
  e-q80: {kind: evaluate, model: q-q80, data: data}" 64 128
"$SMELT" run g.yaml > g.out 2>&1 || fail "gguf run failed: $(cat g.out)"
GRUN=$(q "SELECT run_id FROM runs")
for s in q40 q41 q80 ct40 gq; do "$SMELT" checkout "$GRUN" q-$s -o $s > /dev/null || fail "checkout of q-$s failed"; done
for s in q40 q41 q80; do
  [ -f $s/model.gguf ] && [ ! -f $s/config.json ] || fail "q-$s: expected model.gguf alone: $(ls $s)"
done
ev() { q "SELECT value FROM latest_metrics WHERE run_id = '$GRUN' AND stage = '$1' AND key = '$2'"; }
for k in auc log_loss response_loss perplexity; do
  [ -n "$(ev e-q40 $k)" ] && [ -n "$(ev e-q41 $k)" ] && [ -n "$(ev e-q80 $k)" ] || fail "evaluate of a GGUF output: no $k"
  expect_eq "$(ev e-q40 $k)" "$(ev e-ct40 $k)" "$k of the Q4_0 GGUF and of the same RTN as compressed-tensors"
done
expect_eq "$(m q-q40 bits_per_weight 0)" 4.5 "Q4_0: 4 bits and an fp16 scale per 32"
expect_eq "$(m q-q41 bits_per_weight 0)" 5 "Q4_1: 4 bits, an fp16 scale and an fp16 minimum per 32"
expect_eq "$(m q-q80 bits_per_weight 0)" 8.5 "Q8_0: 8 bits and an fp16 scale per 32"
bpw_file q-gq gq
INSPECT=$("$SMELT" inspect q41 2>&1) || fail "smelt inspect of the GGUF output folder failed: $INSPECT"
expect_contains "$INSPECT" "Q4_1         14 tensors" "inspect reads the folder's model.gguf"
pass "format gguf: Q4_0, Q4_1 and Q8_0 files that evaluate reads; Q4_0 scores as its compressed-tensors twin"
if ! python3 -c "import gguf, numpy, safetensors" 2> /dev/null; then
  echo "skip: the gguf-py reader check (python3 packages gguf, numpy and safetensors are not installed)"
  exit 0
fi
python3 - <<'PY' || fail "gguf-py's reading of the stage's GGUF files"
import gguf, numpy as np
from safetensors.numpy import load_file
want = {"q40": "Q4_0", "q41": "Q4_1", "q80": "Q8_0"}
files = {s: gguf.GGUFReader(f"{s}/model.gguf") for s in want}
for s, r in files.items():
    meta = {k: r.fields[k].contents() for k in r.fields}
    assert meta.get("smelt.quantized") is True, (s, "smelt.quantized")
    types = {t.name: t.tensor_type.name for t in r.tensors}
    lin = [n for n in types if n.startswith("blk.") and n.split(".")[2] in
           ("attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down")]
    assert len(lin) == 14 and all(types[n] == want[s] for n in lin), (s, types)
    assert types["token_embd.weight"] == "F32", (s, types["token_embd.weight"])
# Q4_0 dequantized by gguf-py == the compressed-tensors twin decoded with NumPy (codes q = value + 8,
# little-endian 4-bit fields of int32 words along each row; w = scale * (q - 8), exact in fp32)
r = files["q40"]
meta = {k: r.fields[k].contents() for k in r.fields}
heads, kv = meta["llama.attention.head_count"], meta["llama.attention.head_count_kv"]
ct = load_file("ct40/model.safetensors")
names = {"attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj", "attn_v": "self_attn.v_proj",
         "attn_output": "self_attn.o_proj", "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj", "ffn_down": "mlp.down_proj"}
n = 0
for t in r.tensors:
    if t.tensor_type.name != "Q4_0":
        continue
    _, l, kind, _ = t.name.split(".")
    w = np.asarray(gguf.quants.dequantize(t.data, t.tensor_type), dtype=np.float32)
    if kind in ("attn_q", "attn_k"):  # llama.cpp's interleaved RoPE rows back to HF's halves
        h = heads if kind == "attn_q" else kv
        w = w.reshape(h, w.shape[0] // h // 2, 2, -1).swapaxes(1, 2).reshape(w.shape)
    mod = f"model.layers.{l}.{names[kind]}"
    packed = ct[mod + ".weight_packed"].astype(np.int64) & 0xFFFFFFFF
    q = ((packed[:, :, None] >> (np.arange(8) * 4)) & 15).reshape(packed.shape[0], -1)[:, :w.shape[1]]
    s = ct[mod + ".weight_scale"].astype(np.float32)
    ref = s.repeat(32, axis=1) * (q.astype(np.float32) - 8)
    assert w.shape == ref.shape and np.array_equal(w, ref), (mod, float(np.abs(w - ref).max()))
    n += 1
assert n == 14, n
print("gguf-py: 3 files, 14 quantized linears each; Q4_0 equals its compressed-tensors twin")
PY
for s in q40 q41 q80; do bpw_file q-$s $s; done
pass "gguf-py reads the stage's Q4_0, Q4_1 and Q8_0 files; Q4_0 dequantizes to the compressed-tensors weights"
