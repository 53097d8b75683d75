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
# left out. STORE defaults to $SMELT_STORE. The tables come from tools/eval_pairs.sh.
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
there() {  # STAGE: 0 when RUN has it
  "$SMELT" checkout "$RUN" "$1" -o "$DIR/probe" --store "$STORE" > /dev/null 2>&1 && rm -rf "$DIR/probe"
}
there eval-teacher || { echo "osscar_vs_magnitude: run $RUN has no eval-teacher" >&2; exit 2; }
models=(teacher=eval-teacher) pairs=()
for p in "${points[@]}"; do
  there "eval[$p]" && there "eval-mag[$p-mag]" || continue
  models+=("$p=eval[$p]" "$p-mag=eval-mag[$p-mag]")
  pairs+=(--pair "$p:$p-mag")
done
[ ${#pairs[@]} -gt 0 ] || { echo "osscar_vs_magnitude: run $RUN has no evaluation pair eval[S], eval-mag[S-mag] for S in: ${points[*]}" >&2; exit 2; }
SMELT_BIN=$SMELT exec "$ROOT/tools/eval_pairs.sh" "$RUN" "$STORE" "${pairs[@]}" "${models[@]}"
