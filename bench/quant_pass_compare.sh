#!/usr/bin/env bash
# quant_pass_compare.sh: the whole SmolLM2-135M W4A16 GPTQ pass, smelt's `quantize` stage beside
# llmcompressor's GPTQModifier, one after the other in one invocation on the same calibration token ids
# (int4 symmetric, group 64, no act order, damping 0.01, blocks of 128, lm_head kept; SmolLM2's 576 is
# no multiple of 128). Prints both wall times, the ratio, both mean per-layer relative errors (and layer
# 0's, where both tools see the same inputs), with the machine and the load before each side.
#   bench/quant_pass_compare.sh [BUILD_DIR]
# Environment: LLMC_VENV (default .venv-llmcompressor: `tools/llmcompressor_setup.sh`), HF_DIR (the float
# Hugging Face folder; default bench/out/smollm2-hf, converted once from ../shared's GGUF by
# tools/gguf_to_hf.py, not timed), SAMPLES (calibration sequences, 48), THREADS (2).
# smelt's time is its stage's wall time from the store (model load, calibration forward, every layer,
# the output) and llmcompressor's the wall time of its oneshot() call (the model is loaded before).
# Runtime on a quiet 2-core machine: about 3 to 4 minutes (data stage ~10 s, smelt ~1 min,
# llmcompressor ~1.5 min, model loads). Without the llmcompressor venv it prints one line and exits 0.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=$(cd "${1:-$ROOT/build}" && pwd)
VENV=${LLMC_VENV:-$ROOT/.venv-llmcompressor}
HF=${HF_DIR:-$ROOT/bench/out/smollm2-hf}
SAMPLES=${SAMPLES:-48}
GGUF=$ROOT/../shared/models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf
if ! "$VENV/bin/python" -c "import llmcompressor" >/dev/null 2>&1; then
  echo "quant_pass_compare.sh: skipped: no llmcompressor in $VENV (install it with tools/llmcompressor_setup.sh $VENV)"
  exit 0
fi
[ -x "$BUILD/smelt" ] || { echo "quant_pass_compare.sh: $BUILD/smelt is missing; build first" >&2; exit 2; }
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive} OMP_NUM_THREADS=${THREADS:-2}
if [ ! -f "$HF/model.safetensors" ]; then
  [ -f "$GGUF" ] || { echo "quant_pass_compare.sh: $GGUF is missing (../shared)" >&2; exit 2; }
  echo "converting $GGUF to $HF (once; not timed)"
  python3 "$ROOT/tools/gguf_to_hf.py" "$GGUF" "$HF" >/dev/null 2>&1
fi
HF=$(cd "$HF" && pwd)
DIR=$(mktemp -d "${TMPDIR:-/tmp}/smelt-qpass-XXXXXX")
trap 'rm -rf "$DIR"' EXIT
cat > "$DIR/r.yaml" <<YAML
smelt: 1
name: quant-pass-compare
seed: 7
stages:
  data:
    kind: data
    source: movielens
    path: $(realpath "$ROOT/../shared/data/ml-latest-small.zip")
    tokenizer: $HF/tokenizer.json
    members: 100
    max_tokens: 256
    calibration: {samples: $SAMPLES}
  gptq: {kind: quantize, model: $HF, method: gptq, bits: 4, group_size: 64, calibration: data.calibration}
YAML
export SMELT_STORE=$DIR/store
echo "machine: $(lscpu | sed -n 's/^Model name: *//p'), $OMP_NUM_THREADS threads; load before smelt: $(cut -d' ' -f1-3 /proc/loadavg)"
"$BUILD/smelt" run "$DIR/r.yaml" > "$DIR/run.out" 2>&1 || { cat "$DIR/run.out"; exit 1; }
q() { "$BUILD/smelt" query --csv "$1" | tail -n +2; }
RUN=$(q "SELECT run_id FROM stages WHERE stage = 'gptq'")
"$BUILD/smelt" checkout "$RUN" data.calibration -o "$DIR/cal" > /dev/null
"$BUILD/smelt" export-calibration "$DIR/cal" -o "$DIR/ids.jsonl" > /dev/null 2>&1
LOG=$(q "SELECT log_path FROM stages WHERE stage = 'gptq'")
# smelt's own split of its layers' time (the log's per-layer lines), summed
python3 - "$LOG" <<'PY'
import re, sys
c = g = qz = e = a = f = k = 0.0
for line in open(sys.argv[1]):
    m = re.search(r"calibration ([\d.]+) s, of which Gram matrices ([\d.]+) s; quantization ([\d.]+) s, of which error metrics ([\d.]+) s", line)
    if m:
        c, g, qz, e = c + float(m[1]), g + float(m[2]), qz + float(m[3]), e + float(m[4])
    m = re.search(r"([\d.]+) s in all \(next-layer forward ([\d.]+) s, checkpoint ([\d.]+) s", line)
    if m:
        a, f, k = a + float(m[1]), f + float(m[2]), k + float(m[3])
print(f"smelt, summed over the layers: {a:.1f} s = capture forward {c - g:.1f} + Gram matrices {g:.1f} + quantization "
      f"{qz - e:.1f} + error metrics {e:.1f} + next-layer forward {f:.1f} + checkpoints {k:.1f} (+ rest)")
PY
"$VENV/bin/python" "$ROOT/tools/llmcompressor_compare.py" --model "$HF" --ids "$DIR/ids.jsonl" --scheme w4a16 --group 64 \
  --threads "$OMP_NUM_THREADS" --smelt "$BUILD/smelt" --store "$DIR/store" --run "$RUN" --stage gptq --json "$DIR/cmp.json" \
  > "$DIR/cmp.out" 2>&1 || { tail -n 40 "$DIR/cmp.out"; exit 1; }
grep -v -i -E "^(20[0-9][0-9]-|.*\| (INFO|DEBUG|WARNING) )" "$DIR/cmp.out" | grep -E "^(load|w4a16| *[0-9]+ |layer|mean)" || true
python3 - "$DIR/cmp.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
def mean(t, layers=None):
    v = [x for l, r in t.items() if layers is None or int(l) in layers for x in r.values()]
    return sum(v) / len(v)
lc, sm = d["llmcompressor"], d["smelt"]
print(f"\nwhole pass, same calibration ids: smelt {sm['seconds']:.1f} s, llmcompressor {lc['seconds']:.1f} s: "
      f"smelt {lc['seconds'] / sm['seconds']:.2f}x faster (goal 3x)")
print(f"mean per-layer relative error: smelt {mean(sm['per_layer']):.4e}, llmcompressor {mean(lc['per_layer']):.4e} "
      f"({100 * (mean(sm['per_layer']) / mean(lc['per_layer']) - 1):+.1f}%); layer 0 (same inputs): smelt "
      f"{mean(sm['per_layer'], {0}):.4e}, llmcompressor {mean(lc['per_layer'], {0}):.4e}")
PY
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
