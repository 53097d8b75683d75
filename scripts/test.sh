#!/usr/bin/env bash
# test.sh [--sanitize]: builds smelt and runs every test with ctest (the test command of the
# README). With --sanitize the build has ASan+UBSan and any report fails the test.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/build.sh "$@"
dir=build
# Tests run two at a time on two cores: OpenMP threads that spin while waiting for work would take
# the cores the other test needs (measured 15x slower for small models), so they sleep instead.
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
if [ "${1:-}" = "--sanitize" ]; then
  dir=build-asan
  export ASAN_OPTIONS="abort_on_error=1:detect_leaks=1"
  export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
fi
ctest --test-dir "$dir" --output-on-failure -j"$(nproc)"
