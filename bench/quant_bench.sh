#!/usr/bin/env bash
# quant_bench.sh: GPTQ and QuantEase on one layer (default 2048 x 2048, group 128, 3 sweeps), smelt
# (bench_quant) beside NumPy float64 (quant_ref.py) on the same weights and Hessian, same run.
# Usage: bench/quant_bench.sh [BUILD_DIR] [--n N] [--out O] [--group G] [--sweeps S] [--threads K]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
build="$here/../build"
if [ $# -gt 0 ] && [ -d "$1" ]; then build="$1"; shift; fi
n=2048 out=2048 group=128 sweeps=3 threads=2
args=("$@")
for ((i = 0; i < ${#args[@]}; i += 2)); do
  case "${args[$i]}" in
    --n) n=${args[$((i + 1))]} ;; --out) out=${args[$((i + 1))]} ;; --group) group=${args[$((i + 1))]} ;;
    --sweeps) sweeps=${args[$((i + 1))]} ;; --threads) threads=${args[$((i + 1))]} ;;
    *) echo "quant_bench.sh: unknown option ${args[$i]}" >&2; exit 2 ;;
  esac
done
bin="$build/bench/bench_quant"
[ -x "$bin" ] || { echo "quant_bench.sh: $bin is missing; build first" >&2; exit 2; }
dir="$(mktemp -d)"
trap 'rm -rf "$dir"' EXIT
echo "machine: $(lscpu | sed -n 's/^Model name: *//p'), load before: $(cut -d' ' -f1-3 /proc/loadavg)"
"$bin" --n "$n" --out "$out" --group "$group" --sweeps "$sweeps" --threads "$threads" --dump "$dir" | tee "$dir/smelt.txt"
OMP_NUM_THREADS=$threads OPENBLAS_NUM_THREADS=$threads python3 "$here/quant_ref.py" "$dir" "$out" "$n" "$group" "$sweeps" |
  tee "$dir/numpy.txt"
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
python3 - "$dir/smelt.txt" "$dir/numpy.txt" <<'PY'
import json, sys
def result(p):
    return next(json.loads(l[7:]) for l in open(p) if l.startswith("RESULT "))
s, r = result(sys.argv[1]), result(sys.argv[2])
print()
print(f"{'':30}{'smelt':>10}{'NumPy':>10}{'speed-up':>10}")
print(f"{'GPTQ (s, incl. factor)':30}{s['gptq_s'] + s['factor_s']:10.3f}{r['gptq_s']:10.3f}{r['gptq_s'] / (s['gptq_s'] + s['factor_s']):10.1f}")
print(f"{'QuantEase column loop (s/sweep)':30}{s['sweep_s']:10.3f}{r['sweep_s']:10.3f}{r['sweep_s'] / s['sweep_s']:10.1f}")
print(f"{'GPTQ rel. error':30}{s['err_gptq']:10.3e}{r['err_gptq']:10.3e}")
print(f"{'QuantEase rel. error':30}{s['err_quantease']:10.3e}{r['err_quantease']:10.3e}")
PY
