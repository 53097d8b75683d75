#!/usr/bin/env bash
# osscar_bench.sh: OSSCAR on one down_proj (in 8192, out 2048, remove 3072, update_every 64 by
# default) in smelt (bench_osscar) and in NumPy float64 (bench/osscar_numpy.py) on the same H and W,
# same machine and thread count; prints both and the speed-up. Needs about 3 GB of memory and of
# free space in TMPDIR. usage: bench/osscar_bench.sh [BUILD_DIR [in out remove update_every]]
set -euo pipefail
B=${1:-build}/bench/bench_osscar
IN=${2:-8192} OUT=${3:-2048} RM=${4:-3072} UPD=${5:-64}
THREADS=${THREADS:-$(nproc)}
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive} OPENBLAS_NUM_THREADS=$THREADS OMP_NUM_THREADS=$THREADS
DIR=$(mktemp -d "${TMPDIR:-/tmp}/smelt-osscar-XXXXXX")
trap 'rm -rf "$DIR"' EXIT
echo "machine: $(lscpu | sed -n 's/^Model name: *//p'), $THREADS threads, load $(cut -d' ' -f1-3 /proc/loadavg)," \
  "OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-unset}"
S=$("$B" "$DIR" "$IN" "$OUT" "$RM" "$UPD" "$IN" "$THREADS")
grep -v -e '^seconds ' -e '^objective ' <<<"$S"
if python3 -c "import numpy" 2> /dev/null; then
  N=$(python3 "$(dirname "$0")/osscar_numpy.py" "$DIR" "$RM" "$UPD")
  grep -v -e '^seconds ' -e '^objective ' <<<"$N"
  awk -v s="$(sed -n 's/^seconds //p' <<<"$S")" -v n="$(sed -n 's/^seconds //p' <<<"$N")" \
    -v os="$(sed -n 's/^objective //p' <<<"$S")" -v on="$(sed -n 's/^objective //p' <<<"$N")" \
    'BEGIN { printf "smelt is %.2fx faster than NumPy; objectives differ by %.2e relative\n", n / s, (os - on) / on }'
else
  echo "skip: numpy is not installed"
fi
