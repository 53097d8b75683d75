#!/usr/bin/env bash
# sweep.sh: the CPU engine over model sizes from ~50K to 135M parameters (bench_sweep list), beside
# PyTorch on the same shapes and threads: training step, prefill and decode tokens/s, evaluate
# examples/s (smelt only: PyTorch has no evaluate stage), at 1 and 2 threads, fp32 and (smelt)
# bf16; the machine's read bandwidth measured in the same run (before and after) and decode as a
# share of it in weight bytes/s (the bandwidth measured in the same process and rounds); the load
# average before each measurement. smelt measures 1 and 2 threads in alternation in one process.
# usage: bench/sweep.sh [BUILD_DIR] [--shapes "h32 h64 ..."] [--modes "train prefill decode evaluate"]
#                       [--threads "1 2"] [--no-torch] [--no-bf16]
# Passive OpenMP waiting, as the smelt binary runs (cmd/main.c); OPENBLAS_CORETYPE as the
# environment sets it (docs/engine.md). Prints a table and writes the raw figures to $SWEEP_OUT
# (default a temporary folder, removed) as one JSON line per measurement.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
build="$here/../build"
if [ $# -gt 0 ] && [ -d "$1" ]; then build="$1"; shift; fi
bin="$build/bench/bench_sweep"
[ -x "$bin" ] || { echo "sweep.sh: $bin is missing; build first (scripts/build.sh)" >&2; exit 2; }
shapes="$("$bin" list | cut -d' ' -f1 | tr '\n' ' ')"
modes="train prefill decode evaluate"
threads="1 2"
torch=1
bf16=1
while [ $# -gt 0 ]; do
  case "$1" in
    --shapes) shapes="$2"; shift 2 ;;
    --modes) modes="$2"; shift 2 ;;
    --threads) threads="$2"; shift 2 ;;
    --no-torch) torch=0; shift ;;
    --no-bf16) bf16=0; shift ;;
    *) echo "usage: bench/sweep.sh [BUILD_DIR] [--shapes S] [--modes M] [--threads T] [--no-torch] [--no-bf16]" >&2; exit 2 ;;
  esac
done
python3 -c "import torch, transformers" 2> /dev/null || torch=0
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
out="${SWEEP_OUT:-$(mktemp -d)}"
[ -n "${SWEEP_OUT:-}" ] || trap 'rm -rf "$out"' EXIT
mkdir -p "$out"
res="$out/results.jsonl"
: > "$res"
load() { cut -d' ' -f1 /proc/loadavg; }

# record IMPL SHAPE MODE THREADS PRECISION COMMAND...: the "key value" lines of the command as JSON
# lines of results.jsonl, with the load average before it ran. THREADS and PRECISION are one value,
# or comma lists whose keys the command prints as t<threads>.<precision>.<key> (bench_sweep:
# configurations measured in alternation).
record() {
  local impl=$1 shape=$2 mode=$3 thr=$4 prec=$5 before
  shift 5
  before=$(load)
  if ! "$@" > "$out/kv.txt" 2> "$out/err.txt"; then
    echo "sweep.sh: $impl $mode $shape $thr threads $prec failed: $(tail -1 "$out/err.txt")" >&2
    return 0
  fi
  python3 - "$impl" "$shape" "$mode" "$thr" "$prec" "$before" "$out/kv.txt" >> "$res" <<'PY'
import json, sys
impl, shape, mode, thr, prec, load, path = sys.argv[1:8]
common, per = {}, {}
for line in open(path):
    p = line.split()
    if len(p) != 2:
        continue
    try: v = float(p[1])
    except ValueError: v = p[1]
    f = p[0].split(".")
    if len(f) == 3 and f[0][:1] == "t" and f[0][1:].isdigit():  # t<threads>.<precision>.<key>
        per.setdefault((int(f[0][1:]), f[1]), {})[f[2]] = v
    elif len(f) == 2 and f[0][:1] == "t" and f[0][1:].isdigit():  # t<threads>.<key>
        per.setdefault((int(f[0][1:]), prec.split(",")[0]), {})[f[1]] = v
    else:
        common[p[0]] = v
for (t, pr), kv in sorted(per.items()) or [((int(thr), prec), {})]:
    print(json.dumps({**common, **kv, "impl": impl, "shape": shape, "mode": mode, "threads": t,
                      "precision": pr, "load": float(load)}))
PY
}

echo "sweep: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores, OMP_WAIT_POLICY=$OMP_WAIT_POLICY, OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-unset}"
tlist=$(echo $threads | tr ' ' ',')
plist=fp32
[ "$bf16" = 1 ] && plist=fp32,bf16
record smelt - bandwidth "$tlist" - "$bin" bandwidth - "$tlist"
for shape in $shapes; do
  read -r _ params H L HEADS KV I V TIED < <("$bin" list | grep "^$shape ")
  echo "shape $shape ($params parameters), load $(load)" >&2
  for mode in $modes; do
    record smelt "$shape" "$mode" "$tlist" "$plist" "$bin" "$mode" "$shape" "$tlist" "$plist"
    if [ "$torch" = 1 ] && [ "$mode" != evaluate ]; then
      for t in $threads; do
        record torch "$shape" "$mode" "$t" fp32 python3 "$here/torch_sweep.py" "$mode" "$H" "$L" "$HEADS" "$KV" "$I" "$V" "$TIED" 4 256 "$t"
      done
    fi
  done
done
record smelt - bandwidth "$tlist" - "$bin" bandwidth - "$tlist"

python3 - "$res" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
bw = {}
for r in rows:
    if r["mode"] == "bandwidth":
        bw[r["threads"]] = max(bw.get(r["threads"], 0), r.get("read_gb_per_s", 0))
print()
print("read bandwidth (best of the runs before and after): " + ", ".join(f"{t} thr {v:.1f} GB/s" for t, v in sorted(bw.items())))
key = {"train": "tokens_per_s", "prefill": "tokens_per_s", "decode": "tokens_per_s", "evaluate": "examples_per_s"}
def get(impl, shape, mode, t, prec="fp32"):
    for r in rows:
        if (r["impl"], r["shape"], r["mode"], r["threads"], r["precision"]) == (impl, shape, mode, t, prec):
            return r
    return None
def val(r, k):
    return r.get(k) if r else None
def f(x, w=9, d=1):
    return f"{x:{w}.{d}f}" if isinstance(x, (int, float)) else " " * (w - 1) + "-"
shapes = list(dict.fromkeys(r["shape"] for r in rows if r["mode"] != "bandwidth"))
params = {r["shape"]: int(r["params"]) for r in rows if r["impl"] == "smelt" and "params" in r}
# threads in the table are 1 and 2 (the columns); other counts are in results.jsonl
print(f"\n{'shape':11}{'params':>10} {'mode':9}{'smelt 1t':>10}{'smelt 2t':>10}{'2t/1t':>7}{'torch 1t':>10}{'torch 2t':>10}"
      f"{'vs torch 1t':>12}{'2t':>8}{'bf16 1t':>10}{'bf16 2t':>10}{'bf16/fp32':>10}  decode: weight GB/s / read GB/s in the same rounds (%)")
for s in shapes:
    for mode in ["train", "prefill", "decode", "evaluate"]:
        k = key[mode]
        s1, s2 = get("smelt", s, mode, 1), get("smelt", s, mode, 2)
        if not s1 and not s2:
            continue
        t1, t2 = get("torch", s, mode, 1), get("torch", s, mode, 2)
        b1, b2 = get("smelt", s, mode, 1, "bf16"), get("smelt", s, mode, 2, "bf16")
        v = lambda r: val(r, k)
        ratio = lambda a, b: a / b if a and b else None
        extra = ""
        if mode == "decode":
            parts = []
            for lab, r in [("fp32 1t", s1), ("fp32 2t", s2), ("bf16 1t", b1), ("bf16 2t", b2)]:
                if r and "weight_gb_per_s" in r:
                    # against the bandwidth measured in the same process and rounds
                    ref = r.get("read_gb_per_s") or bw.get(r["threads"])
                    pct = 100 * r["weight_gb_per_s"] / ref if ref else 0
                    parts.append(f"{lab} {r['weight_gb_per_s']:.1f}/{ref:.1f} ({pct:.0f}%)")
            extra = "  " + ", ".join(parts)
        best_b = max([x for x in [v(b1), v(b2)] if x] or [0]) or None
        best_s = max([x for x in [v(s1), v(s2)] if x] or [0]) or None
        print(f"{s:11}{params.get(s, 0):>10} {mode:9}{f(v(s1), 10)}{f(v(s2), 10)}{f(ratio(v(s2), v(s1)), 7, 2)}"
              f"{f(v(t1), 10)}{f(v(t2), 10)}{f(ratio(v(s1), v(t1)), 12, 2)}{f(ratio(v(s2), v(t2)), 8, 2)}"
              f"{f(v(b1), 10)}{f(v(b2), 10)}{f(ratio(best_b, best_s), 10, 2)}{extra}")
# the acceptance figures of issue 14 (docs/engine.md)
print("\nacceptance (issue 14):")
for mode in ["train", "prefill", "decode", "evaluate"]:
    rs = [(v2 / v1, s) for s in shapes
          for v1, v2 in [(val(get("smelt", s, mode, 1), key[mode]), val(get("smelt", s, mode, 2), key[mode]))] if v1 and v2]
    if rs:
        w = min(rs)
        print(f"  2 threads / 1 thread, {mode:8}: worst {w[0]:.2f} ({w[1]}); goal >= 0.95")
for mode in ["train", "prefill", "decode"]:
    rs = [(a / b, s, t) for s in shapes for t in (1, 2)
          for a, b in [(val(get("smelt", s, mode, t), key[mode]), val(get("torch", s, mode, t), key[mode]))] if a and b]
    if rs:
        w = min(rs)
        print(f"  smelt / PyTorch, {mode:8}: worst {w[0]:.2f} ({w[1]}, {w[2]} threads); goal >= 1")
for s in [x for x in shapes if x == "llama32m"]:
    for mode in ["train", "prefill"]:
        for t in (1, 2):
            a, b = val(get("smelt", s, mode, t, "bf16"), key[mode]), val(get("smelt", s, mode, t), key[mode])
            if a and b:
                print(f"  bf16 / fp32, {s} {mode}, {t} threads: {a / b:.2f}; goal >= 1.8")
for s in [x for x in shapes if x in ("llama32m", "smollm135m")]:
    for prec in ("fp32", "bf16"):
        best = max((r for r in rows if r["impl"] == "smelt" and r["shape"] == s and r["mode"] == "decode"
                    and r["precision"] == prec and r.get("read_gb_per_s")), key=lambda r: r.get("tokens_per_s", 0), default=None)
        if best:
            print(f"  decode {s} {prec} ({best['threads']} threads): {best['weight_gb_per_s']:.1f} GB/s of weights, "
                  f"{100 * best['weight_gb_per_s'] / best['read_gb_per_s']:.0f}% of the {best['read_gb_per_s']:.1f} GB/s read "
                  f"in the same rounds; goal >= 85%")
loads = [r["load"] for r in rows]
print(f"\nload average (1 min) during the run: {min(loads):.2f} .. {max(loads):.2f}")
PY
