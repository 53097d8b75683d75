#!/usr/bin/env bash
# gpu-check.sh: every GPU check of the CUDA backend (issue 15's GPU acceptance) in one run on an H100
# or H200 (the kernels are built for sm_90 only), finishing within a time budget (default 480 s, so
# that a borrowed GPU's 15 minutes hold the machine's start, this run and a rerun):
#   the build (Release, SMELT_CUDA=ON, engine only); the twin tests (test_cuda: every op x shapes x
#   dtypes; test_cuda_step: a training step, AdamW, prefill and decode against the CPU engine;
#   test_ops_table_gpu: the op table's CUDA backend); the benchmark (cuBLAS's bf16 peak, training
#   MFU of SmolLM2-135M's shape and a 1B Llama, prefill time to first token and tokens/s at 4k and
#   16k, decode); PyTorch with SDPA on the same shapes in the same run; then a table of both side by
#   side and the acceptance figures of issue 15, each with its goal.
# No network is needed: libraries the machine lacks come from .gpu-deps/ (scripts/gpu-deps.sh, run
# where apt works, then carried along). Logs go to $OUT (the device tool's folder; 8 files at most)
# or build-gpu/logs: build.log, test_cuda.log, test_cuda_step.log (with the op table's test),
# bench_cuda.csv, torch_cuda.csv, bench.err, status.txt (each step's exit status), summary.txt.
#
# usage: scripts/gpu-check.sh [--budget SECONDS]   the whole check
#        scripts/gpu-check.sh --summary DIR         the table and the acceptance figures again, from
#                                                   the logs of a run (any machine)
# Exit status: 0 every check passed, 1 a check failed or ran out of time, 2 the machine cannot run them.
set -euo pipefail
cd "$(dirname "$0")/.."

# ---- the summary: the side-by-side table and issue 15's acceptance figures, from a run's logs ----
summary() ( # a subshell without errexit: a missing log never stops the summary
  set +e
  local d=$1 tf=$1/torch_cuda.csv
  [ -s "$tf" ] || tf=/dev/null
  echo "smelt and PyTorch measured in the same run on the same GPU; speed: smelt over PyTorch (> 1: smelt is faster)"
  [ -s "$d/bench_cuda.csv" ] || echo "(no benchmark figures in $d/bench_cuda.csv)"
  [ -s "$d/bench_cuda.csv" ] && awk -F, 'FILENAME ~ /torch/ { if (FNR > 1 && NF >= 4) t[$1 "," $2] = $3; next }
           FNR == 1 { printf "%-18s %-26s %11s %11s %6s %s\n", "what", "shape", "smelt", "pytorch", "speed", "unit"; next }
           NF >= 4 { k = $1 "," $2; p = (k in t) ? t[k] : "-"; r = "-";
             if (p != "-" && p + 0 != 0 && $3 + 0 != 0) r = sprintf("%.2f", $4 == "ms" ? p / $3 : $3 / p);
             printf "%-18s %-26s %11.4g %11s %6s %s\n", $1, $2, $3, p, r, $4 }' \
    "$tf" "$d/bench_cuda.csv"

  echo
  echo "issue 15, GPU acceptance (goal: result)"
  local st=$d/status.txt
  stat_of() { # a step's status: passed, FAILED (exit N), timeout-Ns, out-of-time, missing-torch or not run
    awk -v k="$1" '$1 == k { s = $2 } END { print (s == "" ? "not run" : s == "0" ? "passed" : s ~ /^[0-9]+$/ ? "FAILED (exit " s ")" : s) }' \
      "$st" 2> /dev/null || echo "not run"; }
  # 1. every op twin within tolerance
  if [ -s "$d/test_cuda.log" ]; then
    awk -v s="$(stat_of test_cuda)" '
      / worst err\/bound / { n++; v = $(NF - 1); if (v == "inf" || v == "nan" || v + 0 > w) w = (v == "inf" || v == "nan") ? 1e300 : v + 0; if ($NF != "ok") bad++ }
      END { printf "  every op twin within its bound (worst err/bound <= 1): %d cases, %d over, worst ratio %s [%s]\n",
                   n, bad, (w >= 1e300 ? "inf" : sprintf("%.3g", w)), s }' "$d/test_cuda.log"
  else echo "  every op twin within its bound: no log [$(stat_of test_cuda)]"; fi
  # 2. a training step's loss equal to the CPU's within the bf16 bound (and gradients, AdamW, prefill/decode)
  if [ -s "$d/test_cuda_step.log" ]; then
    echo "  training step against the CPU engine, within the bf16 bounds measured in the run [$(stat_of test_cuda_step)]:"
    grep -E 'loss: CPU|gradients \(|prefill 40|after AdamW' "$d/test_cuda_step.log" | sed 's/^/    /'
  else echo "  training step against the CPU engine: no log [$(stat_of test_cuda_step)]"; fi
  echo "  the op table's CUDA backend against its CPU backend [$(stat_of test_ops_table_gpu)]"
  # 3. MFU against cuBLAS's peak of this run (goal >= 40% on the 1B shape); 4. prefill against SDPA
  if [ -s "$d/bench_cuda.csv" ]; then
    awk -F, 'FILENAME ~ /torch/ { if (FNR > 1 && NF >= 4) t[$1 "," $2] = sprintf("%.4g", $3); next }
      $1 == "cuBLAS GEMM peak" { printf "  cuBLAS bf16 GEMM peak (%s), this run: %.1f TFLOP/s (PyTorch matmul: %s)\n", $2, $3, ($1 "," $2) in t ? t[$1 "," $2] : "-" }
      $1 == "train MFU" { goal = ($2 ~ /1b/) ? (($3 + 0 >= 40) ? " (goal >= 40%: met)" : " (goal >= 40%: NOT met)") : "";
        printf "  training MFU %s: %.1f%%%s; PyTorch %s%%\n", $2, $3, goal, ($1 "," $2) in t ? t[$1 "," $2] : "-" }
      $1 == "prefill TTFT" { k = $1 "," $2; printf "  prefill TTFT %s: %.1f ms; PyTorch SDPA %s ms\n", $2, $3, (k in t) ? t[k] : "-" }
      $1 == "prefill tokens/s" { k = $1 "," $2; printf "  prefill tokens/s %s: %.0f; PyTorch SDPA %s\n", $2, $3, (k in t) ? t[k] : "-" }
      $1 == "decode tokens/s" { k = $1 "," $2; printf "  decode tokens/s %s: %.0f; PyTorch %s\n", $2, $3, (k in t) ? t[k] : "-" }' \
      "$tf" "$d/bench_cuda.csv"
    [ "$(stat_of bench_cuda)" = passed ] || echo "  (bench_cuda: $(stat_of bench_cuda); the rows above are those it printed)"
  else echo "  benchmark figures: none [bench_cuda $(stat_of bench_cuda)]"; fi
  [ "$(stat_of torch_cuda)" = passed ] || echo "  PyTorch SDPA figures: $(stat_of torch_cuda) ($d/bench.err)"
)

budget=480
case "${1:-}" in
  --summary) [ -d "${2:-}" ] || { echo "usage: gpu-check.sh --summary DIR (the logs of a run)" >&2; exit 2; }
             summary "$2"; exit 0 ;;
  --budget) [[ "${2:-}" =~ ^[0-9]+$ ]] || { echo "usage: gpu-check.sh --budget SECONDS" >&2; exit 2; }
            budget=$2 ;;
  "") ;;
  *) echo "usage: gpu-check.sh [--budget SECONDS] | --summary DIR" >&2; exit 2 ;;
esac

t0=$(date +%s)
out=${OUT:-$PWD/build-gpu/logs}
mkdir -p "$out"
rm -f "$out"/{build.log,test_cuda.log,test_cuda_step.log,bench_cuda.csv,torch_cuda.csv,bench.err,status.txt,summary.txt}
say() { printf '\n== %s (%ds)\n' "$*" "$(( $(date +%s) - t0 ))"; }
die() { printf 'gpu-check: %s\n' "$*" >&2; exit 2; }
# the seconds a step may take: its cap, or what is left of the budget less a reserve for the rest
tmo() { local l=$(( t0 + budget - $(date +%s) - $2 )); [ "$l" -lt "$1" ] || l=$1; [ "$l" -gt 0 ] || l=0; echo "$l"; }
fail=0
# run NAME CAP RESERVE CMD...: runs CMD under the time left, records NAME's exit status in status.txt
run() {
  local name=$1 s; local t; t=$(tmo "$2" "$3"); shift 3
  if [ "$t" -lt 5 ]; then echo "$name: not run, out of time (--budget $budget)"; echo "$name out-of-time" >> "$out/status.txt"; fail=1; return 0; fi
  set +e; timeout "$t" "${lb[@]}" "$@"; s=$?; set -e
  [ $s = 124 ] && { echo "$name: stopped after ${t}s (--budget $budget)"; s="timeout-${t}s"; }
  echo "$name $s" >> "$out/status.txt"
  [ "$s" = 0 ] || fail=1
  return 0
}
lb=()
command -v stdbuf > /dev/null && lb=(stdbuf -oL -eL) # line-buffered logs survive a timeout

say "the machine"
command -v nvidia-smi > /dev/null || die "nvidia-smi is missing: no NVIDIA driver on this machine"
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv,noheader || die "nvidia-smi sees no GPU"
for d in /usr/local/cuda/bin /usr/local/cuda-*/bin; do
  if [ -x "$d/nvcc" ]; then PATH="$PATH:$d"; fi
done
command -v nvcc > /dev/null || die "nvcc is missing: install the CUDA toolkit (12 or later) or put it on PATH"
command -v cmake > /dev/null || die "cmake is missing"
command -v g++ > /dev/null || die "g++ is missing (the host compiler of nvcc)"
nvcc --version | tail -1
echo "cores: $(nproc); cmake $(cmake --version | head -1 | cut -d' ' -f3); $(g++ --version | head -1); budget ${budget}s"

say "libraries"
cmake_extra=()
missing=()
py=(env "LD_LIBRARY_PATH=${LD_LIBRARY_PATH:-}") # python3 (PyTorch) keeps the machine's own libraries
for m in openblas libcjson libpcre2-8 libcrypto; do pkg-config --exists "$m" 2> /dev/null || missing+=("$m"); done
if [ ${#missing[@]} -gt 0 ]; then
  echo "not on this machine: ${missing[*]}$(command -v pkg-config > /dev/null || echo ' (no pkg-config either)')"
  ls .gpu-deps/*.deb > /dev/null 2>&1 || die "carry .gpu-deps/ (scripts/gpu-deps.sh makes it on a machine with apt)"
  root=/tmp/smelt-deps
  rm -rf "$root" && mkdir -p "$root"
  for deb in .gpu-deps/*.deb; do
    if command -v dpkg-deb > /dev/null; then dpkg-deb -x "$deb" "$root"
    else (cd "$root" && ar p "$OLDPWD/$deb" "$(ar t "$OLDPWD/$deb" | grep '^data.tar')" | tar -xJ); fi
  done
  lib=$root/usr/lib/x86_64-linux-gnu
  command -v pkg-config > /dev/null || PATH=$root/usr/bin:$PATH # pkgconf from .gpu-deps
  export PKG_CONFIG_LIBDIR=$lib/openblas-pthread/pkgconfig:$lib/pkgconfig:$root/usr/share/pkgconfig
  export PKG_CONFIG_SYSROOT_DIR=$root
  export CPATH=$root/usr/include/x86_64-linux-gnu/openblas-pthread:$root/usr/include/x86_64-linux-gnu:$root/usr/include
  export LD_LIBRARY_PATH=$lib/openblas-pthread:$lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
  export LIBRARY_PATH=$lib/openblas-pthread:$lib
  cmake_extra+=(-DOPENSSL_ROOT_DIR="$root/usr" -DOPENSSL_CRYPTO_LIBRARY="$lib/libcrypto.so")
  for m in openblas libcjson libpcre2-8 libcrypto; do pkg-config --exists "$m" || die "$m is still missing after unpacking .gpu-deps"; done
  echo "using the carried packages (unpacked in $root)"
fi
# NCCL from PyTorch's wheel when the toolkit has none (optional: nothing here needs it yet)
if [ -z "${NCCL_HOME:-}" ] && command -v python3 > /dev/null; then
  NCCL_HOME=$("${py[@]}" python3 -c 'import nvidia.nccl, os; print(os.path.dirname(nvidia.nccl.__file__))' 2> /dev/null || true)
  if [ -n "$NCCL_HOME" ]; then export NCCL_HOME; echo "NCCL: $NCCL_HOME"; fi
fi
gen=()
if command -v ninja > /dev/null; then gen=(-G Ninja); fi

say "build (Release, CUDA for sm_90, engine only)"
# the reserve: what the tests and benchmarks need at least after the build
cmake -S . -B build-gpu "${gen[@]}" -DCMAKE_BUILD_TYPE=Release -DSMELT_CUDA=ON -DSMELT_ENGINE_ONLY=ON \
  "${cmake_extra[@]}" > "$out/build.log" 2>&1 || { tail -30 "$out/build.log"; die "configure failed ($out/build.log)"; }
run build 300 150 cmake --build build-gpu -j"$(nproc)" --target test_cuda test_cuda_step test_ops_table_gpu bench_cuda >> "$out/build.log" 2>&1
if ! grep -q '^build 0$' "$out/status.txt"; then tail -40 "$out/build.log"; echo "build failed ($out/build.log)"; exit 1; fi
echo "built"

say "twin tests: every op against the CPU reference"
SMELT_REQUIRE_GPU=1 run test_cuda 120 120 build-gpu/bin/test_cuda > "$out/test_cuda.log" 2>&1
grep -v ' ok$' "$out/test_cuda.log" || true
echo "($(grep -c ' ok$' "$out/test_cuda.log" || true) cases ok; the whole table in $out/test_cuda.log)"

say "twin test: a training step, AdamW, prefill and decode against the CPU engine"
SMELT_REQUIRE_GPU=1 run test_cuda_step 60 100 build-gpu/bin/test_cuda_step > "$out/test_cuda_step.log" 2>&1
cat "$out/test_cuda_step.log"

say "the op table on the GPU"
echo "-- test_ops_table_gpu" >> "$out/test_cuda_step.log"
SMELT_REQUIRE_GPU=1 run test_ops_table_gpu 30 90 build-gpu/bin/test_ops_table_gpu > "$out/test_ops_table.tmp" 2>&1
cat "$out/test_ops_table.tmp" | tee -a "$out/test_cuda_step.log"
rm -f "$out/test_ops_table.tmp"

say "benchmark: smelt"
run bench_cuda 150 60 build-gpu/bin/bench_cuda --csv > "$out/bench_cuda.csv" 2>> "$out/bench.err"
tail -5 "$out/bench.err"

say "benchmark: PyTorch (SDPA) on the same shapes"
if "${py[@]}" python3 -c 'import torch, transformers, sys; sys.exit(0 if torch.cuda.is_available() else 1)' 2> /dev/null; then
  PYTHONUNBUFFERED=1 run torch_cuda 150 5 "${py[@]}" python3 bench/torch_cuda.py --csv > "$out/torch_cuda.csv" 2>> "$out/bench.err"
  [ -s "$out/torch_cuda.csv" ] || tail -5 "$out/bench.err"
else
  echo "PyTorch with CUDA and transformers are not on this machine: no SDPA comparison in this run"
  echo "torch_cuda missing-torch" >> "$out/status.txt"
  fail=1
fi

say "summary"
summary "$out" | tee "$out/summary.txt"
[ $fail = 0 ] || grep -v ' 0$' "$out/status.txt" | sed 's/^/failed or not run: /'
say "done: $([ $fail = 0 ] && echo 'every check passed' || echo 'A CHECK FAILED')"
exit $fail
