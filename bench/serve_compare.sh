#!/usr/bin/env bash
# serve_compare.sh [BUILD_DIR] [THREADS] [PROMPT_LEN] [DECODE_STEPS]: the serving engine beside
# transformers (eager, fp32, same shape and threads, same run) and llama.cpp (llama-cpp-python on
# SmolLM2's GGUF from ../shared, when installed), prefill and decode tokens/s side by side, then
# smelt's cold/hot prefill and TTFT under load. Builds nothing; asserts nothing. smelt runs random
# weights of SmolLM2-135M's shape until checkpoint_load reads GGUF (then pass the file to
# bench_serve); transformers runs the same shape, so the arithmetic is the same.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
threads=${2:-2}
L=${3:-512}
steps=${4:-128}
gguf=../shared/models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf
echo "machine: $(lscpu | sed -n 's/^Model name: *//p'); load before: $(cut -d' ' -f1-3 /proc/loadavg)"
smelt_out=$("$build/bench/bench_serve" smollm2-shape "$threads" "$L" "$steps")
ref_out=$(OMP_NUM_THREADS=$threads python3 bench/serve_ref.py "$threads" "$L" "$steps" "$gguf")
get() { sed -n "s/^$1 //p" <<<"$ref_out"; }
s_pre=$(sed -n 's/^prefill tokens\/s[^0-9]*\([0-9.]*\)$/\1/p' <<<"$smelt_out")
s_dec=$(sed -n 's/^decode tokens\/s[^0-9]*\([0-9.]*\)$/\1/p' <<<"$smelt_out")
printf "%-34s %12s %14s %12s\n" "tokens/s ($threads threads, $L-token prompt)" smelt transformers llama.cpp
printf "%-34s %12s %14s %12s\n" "prefill" "$s_pre" "$(get transformers_prefill_tps)" "$(get llamacpp_prefill_tps)"
printf "%-34s %12s %14s %12s\n" "decode" "$s_dec" "$(get transformers_decode_tps)" "$(get llamacpp_decode_tps)"
get llamacpp_note | sed 's/^/llama.cpp: /'
echo
echo "$smelt_out"
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
