#!/usr/bin/env bash
# build.sh [--sanitize]: configures and builds smelt into build/ (or build-asan/ with
# AddressSanitizer and UndefinedBehaviorSanitizer). Where nvcc exists, the plain build also builds
# the CUDA backend in build-cuda/ (SMELT_CUDA=ON, engine only: kernels/cuda for sm_90, its twin
# tests and bench_cuda, warnings as errors) so that CUDA code never rots; build/ is unchanged by it.
# SMELT_NO_CUDA_BUILD=1 skips that.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = "--sanitize" ]; then
  cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DSMELT_SANITIZE=ON > /dev/null
  cmake --build build-asan -j"$(nproc)"
  exit 0
fi
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release > /dev/null
cmake --build build -j"$(nproc)"
nvcc=$(command -v nvcc || true)
[ -z "$nvcc" ] && [ -x /usr/local/cuda/bin/nvcc ] && nvcc=/usr/local/cuda/bin/nvcc
if [ "${SMELT_NO_CUDA_BUILD:-0}" = 1 ]; then
  echo "build.sh: CUDA build skipped (SMELT_NO_CUDA_BUILD=1)"
elif [ -z "$nvcc" ]; then
  echo "build.sh: no nvcc here: the CUDA backend is not built (its host emulation is, in build/)"
else
  cmake -S . -B build-cuda -DCMAKE_BUILD_TYPE=Release -DSMELT_CUDA=ON -DSMELT_ENGINE_ONLY=ON \
    -DCMAKE_CUDA_COMPILER="$nvcc" > /dev/null
  cmake --build build-cuda -j"$(nproc)" --target smelt_cuda test_cuda test_cuda_step test_ops_table_gpu bench_cuda
fi
