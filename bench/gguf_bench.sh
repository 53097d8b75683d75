#!/usr/bin/env bash
# gguf_bench.sh: SmolLM2-135M-Instruct (the Q4_1 GGUF of ../shared) in smelt beside the Python
# references, same machine, same run. (1) Loading the 98 MB file to fp32 weights: smelt
# (checkpoint_load) against transformers' from_pretrained(gguf_file=) and gguf-py's dequantization
# of every tensor. (2) One SFT step of a model of SmolLM2's shape (hidden 576, 30 layers, 9 heads /
# 3 kv, MLP 1536, vocab 49152) on 4 x 256 tokens, with AdamW: smelt's bench_train against PyTorch
# (bench/torch_train.py) on the same shapes and threads (random weights: the cost does not depend
# on their values). Asserts nothing.
# usage: bench/gguf_bench.sh [BUILD_DIR] (default build); THREADS, RUNS, STEPS from the environment.
set -euo pipefail
B=${1:-build}/bench
HERE=$(dirname "$0")
G=${SMELT_SHARED_DIR:-$HERE/../../shared}/models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf
THREADS=${THREADS:-$(nproc)}
RUNS=${RUNS:-5}
STEPS=${STEPS:-3}
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
get() { sed -n "s/^$1 //p" <<<"$2"; }
echo "machine: $(lscpu | sed -n 's/^Model name: *//p'), $THREADS threads; load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "== load $G to fp32 (median of $RUNS)"
out=$("$B/bench_gguf" "$G" "$RUNS")
printf "%-44s %8.3f s\n" "smelt checkpoint_load" "$(get load_s "$out")"
grep '^dequant' <<<"$out" | sed 's/^/  smelt /'
if python3 -c "import torch, transformers, gguf" 2> /dev/null; then
  ref=$(python3 "$HERE/gguf_load_ref.py" "$G" "$RUNS" "$THREADS" 2> /dev/null)
  printf "%-44s %8.3f s\n" "transformers from_pretrained(gguf_file=)" "$(get transformers_load_s "$ref")"
  printf "%-44s %8.3f s\n" "gguf-py GGUFReader + dequantize (all)" "$(get ggufpy_dequant_s "$ref")"
else
  echo "(transformers/gguf absent: no reference)"
fi
SHAPE="576 30 9 3 1536 49152 1024 256 $THREADS $STEPS"
echo "== SFT step, SmolLM2-135M's shape, 4 x 256 tokens, median of $STEPS steps"
printf "%-28s %12s %12s %10s\n" "" "tokens/s" "step (s)" "peak MiB"
out=$("$B/bench_train" step sft $SHAPE)
printf "%-28s %12s %12s %10s\n" "smelt sft" "$(get tokens_per_s "$out")" "$(get step_s "$out")" "$(get peak_mib "$out")"
if python3 -c "import torch, transformers" 2> /dev/null; then
  out=$(python3 "$HERE/torch_train.py" sft $SHAPE 2> /dev/null)
  printf "%-28s %12s %12s %10s\n" "pytorch sft" "$(get tokens_per_s "$out")" "$(get step_s "$out")" "$(get peak_mib "$out")"
fi
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
