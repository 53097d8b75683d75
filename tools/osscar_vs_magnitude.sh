#!/usr/bin/env bash
# osscar_vs_magnitude.sh RUN [STORE [STAGE...]]: the model-level OSSCAR-vs-magnitude comparison of
# recipes/smollm2-movielens.yaml (the gradual OSSCAR steps and their magnitude counterparts, the
# *-mag stages) or recipes/smollm2-oneshot.yaml: checks out every evaluation of RUN that exists,
# prints each model's test loss (response loss and log loss from the evaluate stage) and
# tools/auc_table.py's AUC table against the teacher with the paired difference OSSCAR − magnitude at
# each point, then the KL to the teacher and the paired response-loss and KL differences (members
# resampled 2000 times, seed 0: the same resamples for the AUC, the loss and the KL).
# Each STAGE is an OSSCAR stage whose evaluation is `eval[STAGE]`; its magnitude counterpart is
# STAGE-mag, evaluated as `eval-mag[STAGE-mag]`; the teacher's evaluation is `eval-teacher`. Without
# STAGEs: smollm2-movielens.yaml's six gradual points (prune-mlp1 ... pruned); for
# smollm2-oneshot.yaml: `prune-1shot distill-1shot distill-1shot-seed8`. Points whose magnitude stage has not run yet are
# left out. STORE defaults to $SMELT_STORE.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SMELT=${SMELT_BIN:-$ROOT/build/smelt}
RUN=${1:?usage: osscar_vs_magnitude.sh RUN [STORE [STAGE...]]}
STORE=${2:-${SMELT_STORE:-./smelt-store}}
shift $(($# < 2 ? $# : 2))
points=("$@")
[ ${#points[@]} -gt 0 ] || points=(prune-mlp1 distill-mlp1 prune-mlp2 distill-mlp2 prune-kv pruned)
DIR=$(mktemp -d "${TMPDIR:-/tmp}/smelt-ovm-XXXXXX")
trap 'rm -rf "$DIR"' EXIT
checkout() {  # NAME STAGE: 0 when the stage's evaluation is there
  "$SMELT" checkout "$RUN" "$2" -o "$DIR/$1" --store "$STORE" > /dev/null 2>&1
}
checkout teacher eval-teacher || { echo "osscar_vs_magnitude: run $RUN has no eval-teacher" >&2; exit 2; }
args=(teacher="$DIR/teacher/predictions.tsv") pairs=() names=()
for p in "${points[@]}"; do
  checkout "$p" "eval[$p]" && checkout "$p-mag" "eval-mag[$p-mag]" || continue
  names+=("$p" "$p-mag")
  pairs+=(--pair "$p:$p-mag")
done
[ ${#pairs[@]} -gt 0 ] || { echo "osscar_vs_magnitude: run $RUN has no evaluation pair eval[S], eval-mag[S-mag] for S in: ${points[*]}" >&2; exit 2; }
printf '| model | response loss | log loss |\n|---|---:|---:|\n'
for m in teacher "${names[@]}"; do
  printf '| %s | %.4f | %.4f |\n' "$m" "$(jq .response_loss "$DIR/$m/metrics.json")" "$(jq .log_loss "$DIR/$m/metrics.json")"
  [ "$m" = teacher ] || args+=("$m=$DIR/$m/predictions.tsv")
done
echo
python3 "$ROOT/tools/auc_table.py" --ref teacher "${pairs[@]}" "${args[@]}"
echo
echo "fidelity to the teacher on the same examples: the answer's P(yes) against the teacher's; then"
echo "each pair's paired differences OSSCAR - magnitude of the response loss (-ln p of the answer"
echo "token) and of the KL, with 95% intervals from 2000 resamples of members (seed 0)"
python3 - "${args[@]}" <<'PY'
import csv, sys
import numpy as np
rows = {}
for a in sys.argv[1:]:
    name, _, path = a.partition("=")
    with open(path, newline="") as f:
        rows[name] = {int(r["index"]): r for r in csv.DictReader(f, delimiter="\t")}
t = rows.pop("teacher")
idx = sorted(set(t).intersection(*rows.values()))
member = np.array([int(t[i]["member"]) for i in idx])
p = np.clip(np.array([float(t[i]["score"]) for i in idx]), 1e-12, 1 - 1e-12)
kl, nll = {}, {}
print("| model | mean binary KL(teacher ‖ model) | mean abs. P(yes) difference |")
print("|---|---:|---:|")
for name, r in rows.items():
    q = np.clip(np.array([float(r[i]["score"]) for i in idx]), 1e-12, 1 - 1e-12)
    kl[name] = p * np.log(p / q) + (1 - p) * np.log((1 - p) / (1 - q))
    nll[name] = np.array([float(r[i]["nll"]) for i in idx])
    print(f"| {name} | {kl[name].mean():.5f} | {np.abs(p - q).mean():.4f} |")
members = np.unique(member)
by_m = [np.flatnonzero(member == m) for m in members]
rng = np.random.default_rng(0)
picks = [np.concatenate([by_m[j] for j in rng.integers(0, len(members), len(members))]) for _ in range(2000)]
print()
print("| OSSCAR - magnitude | response loss difference | 95% interval | KL difference | 95% interval |")
print("|---|---:|---|---:|---|")
for name in rows:
    if name.endswith("-mag") or name + "-mag" not in rows:
        continue
    out = []
    for v in (nll, kl):
        d = v[name] - v[name + "-mag"]
        b = np.array([d[ix].mean() for ix in picks])
        lo, hi = np.percentile(b, [2.5, 97.5])
        out.append(f"{d.mean():+.4f} | [{lo:+.4f}, {hi:+.4f}]")
    print(f"| {name} | {out[0]} | {out[1]} |")
PY
