#!/usr/bin/env bash
# run_llama.sh: bench_llama (smelt) and torch_llama.py (PyTorch) on the same ~32M-parameter Llama,
# batch and thread count, printed side by side. Usage: bench/run_llama.sh [BUILD_DIR] [ARGS...]
# (ARGS go to both: --batch B --seq T --steps S --threads N --decode N). OPENBLAS_CORETYPE is
# left as the environment sets it; the table says which OpenBLAS kernels ran.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
build="$here/../build"
if [ $# -gt 0 ] && [ -d "$1" ]; then build="$1"; shift; fi
[ "${1:-}" = "--" ] && shift
args=("$@")
threads=2
for ((i = 0; i < ${#args[@]}; i++)); do [ "${args[$i]}" = "--threads" ] && threads="${args[$((i + 1))]}"; done
bin="$build/bench/bench_llama"
[ -x "$bin" ] || { echo "run_llama.sh: $bin is missing; build first (cmake --build $build)" >&2; exit 2; }
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
"$bin" --threads "$threads" "${args[@]}" | tee "$out/smelt.txt"
echo
python3 "$here/torch_llama.py" --threads "$threads" "${args[@]}" 2>/dev/null | tee "$out/torch.txt"
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
python3 - "$out/smelt.txt" "$out/torch.txt" <<'PY'
import json, sys
def result(path):
    for line in open(path):
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    sys.exit(f"run_llama.sh: no RESULT line in {path}")
s, t = result(sys.argv[1]), result(sys.argv[2])
print()
print(f"{'':28}{'smelt':>12}{'PyTorch':>12}{'ratio':>8}")
for key, name in [("train_tokens_per_s", "training tokens/s"), ("prefill_tokens_per_s", "prefill tokens/s"),
                  ("decode_tokens_per_s", "decode tokens/s")]:
    print(f"{name:28}{s[key]:12.1f}{t[key]:12.1f}{s[key] / t[key]:8.2f}")
print(f"{'training MFU (sgemm peak)':28}{100 * s['mfu']:11.1f}%{100 * t['train_tokens_per_s'] * s['model_mflop_per_token'] * 1e6 / (s['sgemm_gflops'] * 1e9):11.1f}%")
print(f"sgemm peak {s['sgemm_gflops']:.1f} GFLOP/s on {s['threads']} threads (OpenBLAS {s['openblas_core']} kernels); "
      f"batch {s['batch']} x {s['seq']}")
if s["openblas_core"] in ("Prescott", "Katmai", "Core2", "Penryn", "Dunnington", "Nehalem"):
    print("note: OpenBLAS chose generic SSE kernels; on an AVX-512 CPU it did not recognize, OPENBLAS_CORETYPE "
          "(SkylakeX, SapphireRapids) selects fitting ones")
PY
