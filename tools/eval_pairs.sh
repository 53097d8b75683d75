#!/usr/bin/env bash
# eval_pairs.sh RUN STORE [--pair A:B]... REF=EVAL_STAGE NAME=EVAL_STAGE...: paired comparisons of
# evaluate stages of one run on the same test examples. The first NAME=EVAL_STAGE is the reference
# (the teacher); each is checked out from STORE (`smelt checkout RUN EVAL_STAGE`). Prints each
# model's test loss (response loss and log loss from the evaluate stage), tools/auc_table.py's AUC
# table against the reference with the paired AUC difference A − B of each --pair, then the KL to
# the reference and, for each pair, the paired differences A − B of the response loss and of the KL
# (members resampled 2000 times, seed 0: the same resamples for the AUC, the loss and the KL).
# An evaluation that is not in RUN is an error (exit 2). SMELT_BIN picks the smelt binary. Needs
# numpy (scripts/install-deps.sh --bench installs it).
#   tools/eval_pairs.sh latest smollm2-store --pair distill:sft teacher=eval-teacher \
#       'distill=eval[distill-1shot]' 'sft=eval-sft[sft-1shot]'
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SMELT=${SMELT_BIN:-$ROOT/build/smelt}
usage="usage: eval_pairs.sh RUN STORE [--pair A:B]... REF=EVAL_STAGE NAME=EVAL_STAGE..."
[ $# -ge 4 ] || { echo "$usage" >&2; exit 2; }
RUN=$1 STORE=$2
shift 2
pairs=() models=()
while [ $# -gt 0 ]; do
  case "$1" in
    --pair) [ $# -ge 2 ] || { echo "$usage" >&2; exit 2; }; pairs+=(--pair "$2"); shift 2 ;;
    *=*) models+=("$1"); shift ;;
    *) echo "eval_pairs: '$1' is not NAME=EVAL_STAGE or --pair A:B; $usage" >&2; exit 2 ;;
  esac
done
[ ${#models[@]} -ge 2 ] || { echo "eval_pairs: a reference and at least one model are needed; $usage" >&2; exit 2; }
given=" ${models[*]%%=*} "
for ((i = 1; i < ${#pairs[@]}; i += 2)); do
  a=${pairs[i]%%:*} b=${pairs[i]#*:}
  [[ "$given" == *" $a "* && "$given" == *" $b "* && "${pairs[i]}" == *:* ]] ||
    { echo "eval_pairs: --pair ${pairs[i]} names a model that is not given (given:$given)" >&2; exit 2; }
done
DIR=$(mktemp -d "${TMPDIR:-/tmp}/smelt-pairs-XXXXXX")
trap 'rm -rf "$DIR"' EXIT
args=() names=()
for mv in "${models[@]}"; do
  name=${mv%%=*} stage=${mv#*=}
  "$SMELT" checkout "$RUN" "$stage" -o "$DIR/$name" --store "$STORE" > "$DIR/checkout.log" 2>&1 ||
    { echo "eval_pairs: cannot check out $stage of run $RUN from $STORE: $(tail -1 "$DIR/checkout.log")" >&2; exit 2; }
  names+=("$name")
  args+=("$name=$DIR/$name/predictions.tsv")
done
ref=${names[0]}
printf '| model | response loss | log loss |\n|---|---:|---:|\n'
for m in "${names[@]}"; do
  python3 -c 'import json, sys; m = json.load(open(sys.argv[2])); print("| %s | %.4f | %.4f |" % (sys.argv[1], m["response_loss"], m["log_loss"]))' \
    "$m" "$DIR/$m/metrics.json"
done
echo
python3 "$ROOT/tools/auc_table.py" --ref "$ref" "${pairs[@]}" "${args[@]}"
echo
echo "fidelity to $ref on the same examples: the answer's P(yes) against $ref's; then each pair's"
echo "paired differences A - B of the response loss (-ln p of the answer token) and of the KL, with"
echo "95% intervals from 2000 resamples of members (seed 0)"
python3 - "${pairs[@]}" "${args[@]}" <<'PY'
import csv, sys
import numpy as np
rows, pairs, argv = {}, [], sys.argv[1:]
while argv:
    a = argv.pop(0)
    if a == "--pair":
        pairs.append(tuple(argv.pop(0).split(":", 1)))
        continue
    name, _, path = a.partition("=")
    with open(path, newline="") as f:
        rows[name] = {int(r["index"]): r for r in csv.DictReader(f, delimiter="\t")}
ref = next(iter(rows))
t = rows[ref]
idx = sorted(set(t).intersection(*rows.values()))
member = np.array([int(t[i]["member"]) for i in idx])
p = np.clip(np.array([float(t[i]["score"]) for i in idx]), 1e-12, 1 - 1e-12)
kl, nll = {}, {}
print(f"| model | mean binary KL({ref} ‖ model) | mean abs. P(yes) difference |")
print("|---|---:|---:|")
for name, r in rows.items():  # the reference too (its KL is 0), so that a pair may name it
    q = np.clip(np.array([float(r[i]["score"]) for i in idx]), 1e-12, 1 - 1e-12)
    kl[name] = p * np.log(p / q) + (1 - p) * np.log((1 - p) / (1 - q))
    nll[name] = np.array([float(r[i]["nll"]) for i in idx])
    if name != ref:
        print(f"| {name} | {kl[name].mean():.5f} | {np.abs(p - q).mean():.4f} |")
if not pairs:
    sys.exit(0)
members = np.unique(member)
by_m = [np.flatnonzero(member == m) for m in members]
rng = np.random.default_rng(0)
picks = [np.concatenate([by_m[j] for j in rng.integers(0, len(members), len(members))]) for _ in range(2000)]
print()
print("| A - B | response loss difference | 95% interval | KL difference | 95% interval |")
print("|---|---:|---|---:|---|")
for a, b in pairs:
    if a not in rows or b not in rows:
        sys.exit(f"eval_pairs: the pair {a}:{b} names a model that is not given")
    out = []
    for v in (nll, kl):
        d = v[a] - v[b]
        bs = np.array([d[ix].mean() for ix in picks])
        lo, hi = np.percentile(bs, [2.5, 97.5])
        out.append(f"{d.mean():+.4f} | [{lo:+.4f}, {hi:+.4f}]")
    print(f"| {a} - {b} | {out[0]} | {out[1]} |")
PY
