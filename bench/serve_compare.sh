#!/usr/bin/env bash
# serve_compare.sh [BUILD_DIR] [THREADS] [PROMPT_LEN] [DECODE_STEPS]: the serving engine beside
# transformers (eager, fp32, same shape and threads, same run) and llama.cpp (llama-cpp-python on
# SmolLM2's GGUF from ../shared, when installed), prefill and decode tokens/s side by side, then
# smelt's cold/hot prefill and TTFT under load. Builds nothing; asserts nothing. smelt runs the
# GGUF file (dequantized to fp32, and re-quantized W8A8 / W4A16 by round to nearest; "+head": the
# tied LM head quantized too, as the GGUF file quantizes it); transformers runs random weights of
# the same shape (the same arithmetic).
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
threads=${2:-2}
L=${3:-512}
steps=${4:-128}
gguf=../shared/models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf
echo "machine: $(lscpu | sed -n 's/^Model name: *//p'); load before: $(cut -d' ' -f1-3 /proc/loadavg)"
model=$gguf
[ -f "$model" ] || model=smollm2-shape
smelt_out=$("$build/bench/bench_serve" "$model" "$threads" "$L" "$steps")
w8_out=$("$build/bench/bench_serve" "$model:w8a8" "$threads" "$L" "$steps" 1 1)
w8h_out=$("$build/bench/bench_serve" "$model:w8a8+head" "$threads" "$L" "$steps" 1 1)
w4h_out=$("$build/bench/bench_serve" "$model:w4a16+head" "$threads" "$L" "$steps" 1 1)
w4k_out=$("$build/bench/bench_serve" "$model:w4a16+head" "$threads" "$L" "$steps" 1 1 f16)
ref_out=$(OMP_NUM_THREADS=$threads python3 bench/serve_ref.py "$threads" "$L" "$steps" "$gguf")
get() { sed -n "s/^$1 //p" <<<"$ref_out"; }
fig() { sed -n "s|^$1[^0-9]*\\([0-9.]*\\)\$|\\1|p" <<<"$2"; }
printf "%-12s %10s %10s %10s %11s %13s %14s %14s\n" "tokens/s" "smelt fp32" "smelt W8A8" "W8A8+head" "W4A16+head" \
  "W4A16+h kv16" "transformers" "llama.cpp Q4_1"
for k in prefill decode; do
  printf "%-12s %10s %10s %10s %11s %13s %14s %14s\n" "$k" "$(fig "$k tokens/s" "$smelt_out")" "$(fig "$k tokens/s" "$w8_out")" \
    "$(fig "$k tokens/s" "$w8h_out")" "$(fig "$k tokens/s" "$w4h_out")" "$(fig "$k tokens/s" "$w4k_out")" \
    "$(get transformers_${k}_tps)" "$(get llamacpp_${k}_tps)"
done
echo "($threads threads, $L-token prompt, $steps decode steps; transformers: eager attention, fp32, same shape;"
echo " kv16: smelt's KV cache in fp16, as llama.cpp's by default; the other smelt columns keep it in fp32)"
get llamacpp_note | sed 's/^/llama.cpp: /'
echo
echo "$smelt_out"
echo
echo "$w4k_out"
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
