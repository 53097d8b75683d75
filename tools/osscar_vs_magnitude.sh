#!/usr/bin/env bash
# osscar_vs_magnitude.sh RUN [STORE]: the model-level OSSCAR-vs-magnitude comparison of
# recipes/smollm2-movielens.yaml (the gradual OSSCAR steps and their magnitude counterparts, the
# *-mag stages): checks out every evaluation of RUN that exists, prints each model's test loss
# (response loss and log loss from the evaluate stage) and tools/auc_table.py's AUC table against the
# teacher with the paired difference OSSCAR − magnitude at each point (members resampled, 2000 times).
# Points whose magnitude stage has not run yet are left out. STORE defaults to $SMELT_STORE.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SMELT=${SMELT_BIN:-$ROOT/build/smelt}
RUN=${1:?usage: osscar_vs_magnitude.sh RUN [STORE]}
STORE=${2:-${SMELT_STORE:-./smelt-store}}
DIR=$(mktemp -d "${TMPDIR:-/tmp}/smelt-ovm-XXXXXX")
trap 'rm -rf "$DIR"' EXIT
checkout() {  # NAME STAGE: 0 when the stage's evaluation is there
  "$SMELT" checkout "$RUN" "$2" -o "$DIR/$1" --store "$STORE" > /dev/null 2>&1
}
checkout teacher eval-teacher || { echo "osscar_vs_magnitude: run $RUN has no eval-teacher" >&2; exit 2; }
args=(teacher="$DIR/teacher/predictions.tsv") pairs=()
printf '| model | response loss | log loss |\n|---|---:|---:|\n'
printf '| teacher | %.4f | %.4f |\n' "$(jq .response_loss "$DIR/teacher/metrics.json")" "$(jq .log_loss "$DIR/teacher/metrics.json")"
for p in prune-mlp1 distill-mlp1 prune-mlp2 distill-mlp2 prune-kv pruned; do
  checkout "$p" "eval[$p]" && checkout "$p-mag" "eval-mag[$p-mag]" || continue
  for m in "$p" "$p-mag"; do
    printf '| %s | %.4f | %.4f |\n' "$m" "$(jq .response_loss "$DIR/$m/metrics.json")" "$(jq .log_loss "$DIR/$m/metrics.json")"
    args+=("$m=$DIR/$m/predictions.tsv")
  done
  pairs+=(--pair "$p:$p-mag")
done
echo
python3 "$ROOT/tools/auc_table.py" --ref teacher "${pairs[@]}" "${args[@]}"
echo
echo "fidelity to the teacher on the same examples: the answer's P(yes) against the teacher's"
python3 - "${args[@]}" <<'PY'
import csv, sys
import numpy as np
rows = {}
for a in sys.argv[1:]:
    name, _, path = a.partition("=")
    with open(path, newline="") as f:
        rows[name] = {int(r["index"]): float(r["score"]) for r in csv.DictReader(f, delimiter="\t")}
t = rows.pop("teacher")
print("| model | mean binary KL(teacher ‖ model) | mean abs. P(yes) difference |")
print("|---|---:|---:|")
for name, r in rows.items():
    idx = sorted(set(t) & set(r))
    p = np.clip(np.array([t[i] for i in idx]), 1e-12, 1 - 1e-12)
    q = np.clip(np.array([r[i] for i in idx]), 1e-12, 1 - 1e-12)
    kl = p * np.log(p / q) + (1 - p) * np.log((1 - p) / (1 - q))
    print(f"| {name} | {kl.mean():.5f} | {np.abs(p - q).mean():.4f} |")
PY
