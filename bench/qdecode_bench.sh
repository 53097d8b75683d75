#!/usr/bin/env bash
# qdecode_bench.sh: SmolLM2-135M decode tokens/s in smelt (bench_qdecode: fp32, the Q4_1 file's own
# blocks, W8A8, W4A16) beside llama.cpp (PyPI llama-cpp-python) on the same GGUF file, prompt length,
# decode steps and threads, in the same run. Usage:
#   bench/qdecode_bench.sh [BUILD_DIR] [--model PATH] [--threads N] [--prompt P] [--decode D]
# Prints the load average before and after (figures for docs need a quiet machine).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
build="$here/../build"
if [ $# -gt 0 ] && [ -d "$1" ]; then build="$1"; shift; fi
model="$here/../../shared/models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf"
threads=2 prompt=16 decode=64
while [ $# -gt 0 ]; do
  case "$1" in
    --model) model="$2" ;;
    --threads) threads="$2" ;;
    --prompt) prompt="$2" ;;
    --decode) decode="$2" ;;
    *) echo "usage: qdecode_bench.sh [BUILD_DIR] [--model PATH] [--threads N] [--prompt P] [--decode D]" >&2; exit 2 ;;
  esac
  shift 2
done
bin="$build/bench/bench_qdecode"
[ -x "$bin" ] || { echo "qdecode_bench.sh: $bin is missing; build first (scripts/build.sh)" >&2; exit 2; }
[ -f "$model" ] || { echo "qdecode_bench.sh: $model is absent (the shared folder's SmolLM2 GGUF)" >&2; exit 2; }
echo "machine: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores; load before: $(cut -d' ' -f1-3 /proc/loadavg)"
OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive} "$bin" --model "$model" --threads "$threads" --prompt "$prompt" --decode "$decode"
echo
python3 - "$model" "$threads" "$prompt" "$decode" <<'PY'
import sys, time
try:
    import llama_cpp
except ImportError:
    sys.exit("llama.cpp: the PyPI package llama-cpp-python is not installed (pip install llama-cpp-python)")
path, threads, prompt, decode = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
llm = llama_cpp.Llama(model_path=path, n_threads=threads, n_threads_batch=threads, n_ctx=prompt + decode + 8,
                      verbose=False)
vocab = llm.n_vocab()
toks = [1 + (i * 977) % (vocab - 1) for i in range(prompt)]  # the prompt bench_qdecode feeds
best = 1e30
for rep in range(2):
    llm.reset()
    llm.eval(toks)
    t = time.perf_counter()
    for _ in range(decode):
        tok = int(llm.scores[llm.n_tokens - 1].argmax())  # greedy, as bench_qdecode
        llm.eval([tok])
    best = min(best, time.perf_counter() - t)
print(f"llama.cpp {llama_cpp.__version__} (same file, {threads} threads): {decode / best:.1f} tokens/s decode")
print(f"RESULT_LLAMA_CPP {decode / best:.2f}")
PY
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
