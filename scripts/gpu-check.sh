#!/usr/bin/env bash
# gpu-check.sh: every GPU check of the CUDA backend in one run, within 8 minutes on an H100 or H200
# (the kernels are built for sm_90 only): the build (Release, SMELT_CUDA=ON, engine only), the twin
# tests (test_cuda: every op x shapes x dtypes; test_cuda_step: a training step, AdamW, prefill and
# decode against the CPU engine), the benchmark (cuBLAS's bf16 peak, training MFU of SmolLM2-135M's
# shape and a 1B Llama, prefill time to first token and tokens/s at 4k and 16k, decode), PyTorch
# with SDPA on the same shapes when torch and transformers are there, and a summary table.
# No network: libraries the machine lacks come from .gpu-deps/ (scripts/gpu-deps.sh, run where apt
# works, then carried along). Logs go to $OUT (the device tool's folder) or build-gpu/logs.
# Exit status: 0 all twin tests passed, 1 a check failed, 2 the machine cannot run the checks.
set -euo pipefail
cd "$(dirname "$0")/.."
t0=$(date +%s)
out=${OUT:-$PWD/build-gpu/logs}
mkdir -p "$out"
say() { printf '\n== %s (%ds)\n' "$*" "$(( $(date +%s) - t0 ))"; }
die() { printf 'gpu-check: %s\n' "$*" >&2; exit 2; }

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
echo "cores: $(nproc); cmake $(cmake --version | head -1 | cut -d' ' -f3); $(g++ --version | head -1)"

say "libraries"
cmake_extra=()
missing=()
for m in openblas libcjson libpcre2-8 libcrypto; do pkg-config --exists "$m" 2> /dev/null || missing+=("$m"); done
if [ ${#missing[@]} -gt 0 ]; then
  echo "not on this machine: ${missing[*]}"
  ls .gpu-deps/*.deb > /dev/null 2>&1 || die "carry .gpu-deps/ (scripts/gpu-deps.sh makes it on a machine with apt)"
  root=/tmp/smelt-deps
  rm -rf "$root" && mkdir -p "$root"
  for deb in .gpu-deps/*.deb; do
    if command -v dpkg-deb > /dev/null; then dpkg-deb -x "$deb" "$root"
    else (cd "$root" && ar p "$OLDPWD/$deb" data.tar.xz | tar -xJ); fi
  done
  lib=$root/usr/lib/x86_64-linux-gnu
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
  NCCL_HOME=$(python3 -c 'import nvidia.nccl, os; print(os.path.dirname(nvidia.nccl.__file__))' 2> /dev/null || true)
  if [ -n "$NCCL_HOME" ]; then export NCCL_HOME; echo "NCCL: $NCCL_HOME"; fi
fi
gen=()
if command -v ninja > /dev/null; then gen=(-G Ninja); fi

say "build (Release, CUDA for sm_90, engine only)"
cmake -S . -B build-gpu "${gen[@]}" -DCMAKE_BUILD_TYPE=Release -DSMELT_CUDA=ON -DSMELT_ENGINE_ONLY=ON \
  "${cmake_extra[@]}" > "$out/configure.log" 2>&1 || { tail -30 "$out/configure.log"; die "configure failed ($out/configure.log)"; }
timeout 420 cmake --build build-gpu -j"$(nproc)" --target test_cuda test_cuda_step test_ops_table_gpu bench_cuda > "$out/build.log" 2>&1 ||
  { tail -40 "$out/build.log"; die "build failed ($out/build.log)"; }
echo "built"

fail=0
say "twin tests: every op against the CPU reference"
SMELT_REQUIRE_GPU=1 timeout 180 build-gpu/bin/test_cuda > "$out/test_cuda.log" 2>&1 || fail=1
grep -v ' ok$' "$out/test_cuda.log" || true
echo "($(grep -c ' ok$' "$out/test_cuda.log") cases ok; the whole table in $out/test_cuda.log)"
say "twin test: a training step, AdamW, prefill and decode against the CPU engine"
SMELT_REQUIRE_GPU=1 timeout 120 build-gpu/bin/test_cuda_step 2>&1 | tee "$out/test_cuda_step.log" || fail=1

say "the op table on the GPU"
SMELT_REQUIRE_GPU=1 timeout 60 build-gpu/bin/test_ops_table_gpu 2>&1 | tee "$out/test_ops_table.log" || fail=1

say "benchmark: smelt"
timeout 240 build-gpu/bin/bench_cuda --csv > "$out/bench_cuda.csv" 2> "$out/bench_cuda.err" ||
  { cat "$out/bench_cuda.err"; echo "bench_cuda failed"; fail=1; }
column -s, -t < "$out/bench_cuda.csv" 2> /dev/null || cat "$out/bench_cuda.csv"

say "benchmark: PyTorch (SDPA) on the same shapes"
if python3 -c 'import torch, transformers, sys; sys.exit(0 if torch.cuda.is_available() else 1)' 2> /dev/null; then
  PYTHONUNBUFFERED=1 timeout 240 python3 bench/torch_cuda.py --csv > "$out/torch_cuda.csv" 2> "$out/torch_cuda.err" ||
    { tail -5 "$out/torch_cuda.err"; echo "torch_cuda.py failed (the smelt figures above stand alone)"; }
else
  echo "PyTorch with CUDA and transformers are not on this machine: no SDPA comparison in this run" | tee "$out/torch_cuda.csv"
fi

say "summary (smelt and PyTorch measured in this run, on this GPU; speed: smelt over PyTorch, > 1 is faster)"
[ "$(head -c 4 "$out/torch_cuda.csv" 2> /dev/null)" = "what" ] || echo "what,shape,value,unit,note" > "$out/torch_cuda.none"
awk -F, 'NR == FNR { if (FNR > 1) t[$1 "," $2] = $3; next }
         FNR == 1 { printf "%-20s %-28s %12s %12s %6s %s\n", "what", "shape", "smelt", "pytorch", "speed", "unit"; next }
         { k = $1 "," $2; p = (k in t) ? t[k] : ""; r = "";
           if (p != "" && p + 0 != 0 && $3 + 0 != 0) r = sprintf("%.2f", $4 == "ms" ? p / $3 : $3 / p);
           printf "%-20s %-28s %12.4g %12s %6s %s\n", $1, $2, $3, p, r, $4 }' \
  "$( [ -f "$out/torch_cuda.none" ] && echo "$out/torch_cuda.none" || echo "$out/torch_cuda.csv")" "$out/bench_cuda.csv" |
  tee "$out/summary.txt"
say "done: $([ $fail = 0 ] && echo 'every check passed' || echo 'A CHECK FAILED')"
exit $fail
