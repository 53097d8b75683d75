#!/usr/bin/env bash
# test.sh [--sanitize]: builds smelt and runs every test with ctest (the test command of the
# README). With --sanitize the build has ASan+UBSan and any report fails the test.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/build.sh "$@"
dir=build
if [ "${1:-}" = "--sanitize" ]; then
  dir=build-asan
  export ASAN_OPTIONS="abort_on_error=1:detect_leaks=1"
  export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
fi
ctest --test-dir "$dir" --output-on-failure -j"$(nproc)"
