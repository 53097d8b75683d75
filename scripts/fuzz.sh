#!/usr/bin/env bash
# fuzz.sh [SECONDS]: builds the libFuzzer targets (clang) and runs each for SECONDS (default 60)
# starting from its seed corpus in tests/fuzz/corpus_<name>/ when there is one.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-60}
CC=clang cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=Debug -DSMELT_FUZZ=ON > /dev/null
cmake --build build-fuzz -j"$(nproc)"
for bin in build-fuzz/tests/fuzz_*; do
  name=$(basename "$bin")
  corpus=$(mktemp -d)
  seeds=tests/fuzz/corpus_${name#fuzz_}
  [ -d "$seeds" ] && cp -r "$seeds"/. "$corpus"/
  echo "== $name for ${secs}s"
  "$bin" -max_total_time="$secs" -rss_limit_mb=4096 -print_final_stats=1 "$corpus" 2>&1 | tail -n 12
  rm -rf "$corpus"
done
