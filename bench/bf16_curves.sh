#!/usr/bin/env bash
# bf16_curves.sh: runs bench/bf16_curves.yaml (200 steps of a 1M-parameter student in fp32, bf16 and
# fp32 with another seed) in a temporary store and prints the mean loss per window of 20 steps,
# |bf16 - fp32| beside |fp32 seed 8 - fp32|, and their largest ratio. usage: bench/bf16_curves.sh [BUILD_DIR]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
smelt="${1:-$here/../build}/smelt"
[ -x "$smelt" ] || { echo "bf16_curves.sh: $smelt is missing; build first" >&2; exit 2; }
store="$(mktemp -d)"
trap 'rm -rf "$store"' EXIT
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
"$smelt" run "$here/bf16_curves.yaml" --store "$store" > "$store/run.log" 2>&1 || { tail -20 "$store/run.log"; exit 1; }
"$smelt" query --store "$store" --csv "SELECT stage, step, value FROM metrics WHERE key = 'loss' ORDER BY stage, step" > "$store/loss.csv"
"$smelt" query --store "$store" --csv "SELECT stage, value FROM metrics WHERE key = 'bf16'" > "$store/bf16.csv"
python3 - "$store/loss.csv" "$store/bf16.csv" <<'PY'
import csv, sys
curves = {}
for r in csv.DictReader(open(sys.argv[1])):
    curves.setdefault(r["stage"], {})[int(r["step"])] = float(r["value"])
ran = {r["stage"]: r["value"] for r in csv.DictReader(open(sys.argv[2]))}
a, b, c = curves["fp32"], curves["bf16"], curves["fp32-seed8"]
print(f"bf16 products in effect: {ran.get('bf16')}")
print(f"{'steps':>9} {'fp32':>8} {'bf16':>8} {'seed 8':>8} {'|bf16-fp32|':>12} {'|seed-fp32|':>12}")
worst, spread_max = 0.0, 0.0
steps = sorted(a)
for w0 in range(0, len(steps), 20):
    ws = steps[w0:w0 + 20]
    ma, mb, mc = (sum(d[s] for s in ws) / len(ws) for d in (a, b, c))
    spread_max = max(spread_max, abs(mc - ma))
    worst = max(worst, abs(mb - ma))
    print(f"{ws[0]:>4}-{ws[-1]:<4} {ma:8.4f} {mb:8.4f} {mc:8.4f} {abs(mb - ma):12.4f} {abs(mc - ma):12.4f}")
print(f"largest |bf16 - fp32| {worst:.4f}; largest move of another seed {spread_max:.4f}; ratio {worst / spread_max:.2f}")
PY
