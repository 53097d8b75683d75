#!/usr/bin/env bash
# prune_pass.sh: the whole pruning pass of one model (calibration forward + every layer's Gram
# matrices, OSSCAR on o_proj and down_proj, the shrink and the output): wall seconds, seconds per
# layer and peak memory of the stage process, with its calibration set's size. Default: SmolLM2-135M
# (../shared, GGUF) with 64 MovieLens calibration prompts, 25% of the MLP neurons and 1 of 3 KV
# groups removed. usage: bench/prune_pass.sh [BUILD_DIR [MODEL [SAMPLES]]] (MODEL: a GGUF file
# whose tokenizer builds the calibration set). THREADS from the environment.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=$(cd "${1:-build}" && pwd)
MODEL=$(realpath "${2:-$ROOT/../shared/models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf}")
SAMPLES=${3:-64}
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive} OMP_NUM_THREADS=${THREADS:-$(nproc)}
DIR=$(mktemp -d "${TMPDIR:-/tmp}/smelt-prune-pass-XXXXXX")
trap 'rm -rf "$DIR"' EXIT
cat > "$DIR/r.yaml" <<YAML
smelt: 1
name: prune-pass
seed: 1
stages:
  data:
    kind: data
    source: movielens
    path: $(realpath "$ROOT/../shared/data/ml-latest-small.zip")
    tokenizer: $MODEL
    members: 60
    tasks: [like]
    history: 10
    max_tokens: 400
    calibration: {samples: $SAMPLES, from: train}
  p:
    kind: prune
    model: $MODEL
    calibration: data.calibration
    mlp: {keep_ratio: 0.75}
    attention: {remove_kv_groups: 1}
    chunk_tokens: 2048
YAML
export SMELT_STORE=$DIR/store
echo "machine: $(lscpu | sed -n 's/^Model name: *//p'), $OMP_NUM_THREADS threads, load $(cut -d' ' -f1-3 /proc/loadavg)"
"$BUILD/smelt" run "$DIR/r.yaml" > "$DIR/run.out" 2>&1 || { cat "$DIR/run.out"; exit 1; }
q() { "$BUILD/smelt" query --csv "$1" | tail -n +2; }
LOG=$(q "SELECT log_path FROM stages WHERE stage = 'p'")
grep -o "pruning .* threads" "$LOG" | sed "s|$DIR/[^ ]*|MODEL|"
echo "whole stage: $(q "SELECT printf('%.1f', value) FROM metrics WHERE stage = 'p' AND key = 'seconds_total'") s," \
  "layers $(q "SELECT printf('%.1f', sum(value)) FROM metrics WHERE stage = 'p' AND key = 'seconds'") s" \
  "($(q "SELECT printf('%.2f', avg(value)) FROM metrics WHERE stage = 'p' AND key = 'seconds'") s per layer)," \
  "peak RSS $(q "SELECT printf('%.0f', value) FROM metrics WHERE stage = 'p' AND key = 'peak_rss_mib'") MiB;" \
  "parameters $(q "SELECT CAST(value AS INTEGER) FROM metrics WHERE stage = 'p' AND key = 'params_before'") ->" \
  "$(q "SELECT CAST(value AS INTEGER) FROM metrics WHERE stage = 'p' AND key = 'params'")"
