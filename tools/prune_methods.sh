#!/usr/bin/env bash
# prune_methods.sh stories|smollm2 [OUT]: the prune stage's acceptance experiment on a real model:
# OSSCAR against the magnitude and activation baselines (recipes/prune_methods_<kind>.yaml).
#   stories: stories260K with STORIES (default 160) stories sampled from itself (tools/stories_corpus.sh);
#   smollm2: SmolLM2-135M-Instruct (../shared, GGUF) with MovieLens prompts.
# Runs the recipe into OUT/store (default /tmp/prune-methods-KIND) and prints: per layer, the
# relative error ‖X(Ŵ − W)ᵀ‖² / ‖XWᵀ‖² of each method for 25% and 50% of the MLP neurons and one
# KV group, and whether OSSCAR is below both baselines ('tie': equal to one, the same groups
# removed), on the unpruned model's inputs (the methods solve the same problems) and on each
# method's own pruned stream; then the models' test-split figures (loss, AUC where the data is a
# ranking set), pruned and after the short re-distillation.
# JOBS (default 1): stages run at once (with OMP_NUM_THREADS=1 each on a shared machine).
# Long: run it under nice -n 19 on a shared machine.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SMELT=${SMELT_BIN:-$ROOT/build/smelt}
SHARED=${SMELT_SHARED_DIR:-$ROOT/../shared}
KIND=${1:?usage: prune_methods.sh stories|smollm2 [OUT]}
OUT=${2:-/tmp/prune-methods-$KIND}
mkdir -p "$OUT"
case $KIND in
  stories) "$ROOT/tools/stories_corpus.sh" "$OUT" "${STORIES:-160}" ;;
  smollm2)
    ln -sf "$SHARED/models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf" "$OUT/smollm2.gguf"
    ln -sf "$SHARED/data/ml-latest-small.zip" "$OUT/ml-latest-small.zip" ;;
  *) echo "usage: prune_methods.sh stories|smollm2 [OUT]" >&2; exit 2 ;;
esac
cp "$ROOT/recipes/prune_methods_$KIND.yaml" "$OUT/"
export SMELT_STORE=$OUT/store
OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive} "$SMELT" run --jobs "${JOBS:-1}" "$OUT/prune_methods_$KIND.yaml"
# the run to report: RUN from the environment, else the newest in the store
RUN=${RUN:-$("$SMELT" query --csv "SELECT run_id FROM runs ORDER BY created_at DESC LIMIT 1" | tail -1)}
for setting in mlp25-dense:rel_error_mlp mlp50-dense:rel_error_mlp kv1-dense:rel_error_attn mlp25-dense-damp:rel_error_mlp \
  mlp50-dense-damp:rel_error_mlp mlp25:rel_error_mlp mlp50:rel_error_mlp kv1:rel_error_attn; do
  s=${setting%%:*} k=${setting#*:}
  # a recipe may leave a setting out (the SmolLM2 one, sized for 2 cores)
  [ -n "$("$SMELT" query --csv "SELECT 1 FROM metrics WHERE run_id = '$RUN' AND stage = '$s[osscar]' LIMIT 1" | tail -n +2)" ] || continue
  echo
  case $s in
    *-dense) echo "$s: per-layer $k, every method on the unpruned model's inputs (osscar below both baselines?)" ;;
    *-dense-damp) echo "$s: per-layer $k, every method on the unpruned model's inputs, damp 0.0001 (osscar below both baselines?)" ;;
    *) echo "$s: per-layer $k, each method on the inputs through its own pruned layers (osscar below both baselines?)" ;;
  esac
  "$SMELT" query "SELECT o.step AS layer, printf('%.4g', o.value) AS osscar, printf('%.4g', m.value) AS magnitude,
      printf('%.4g', a.value) AS activation, CASE WHEN o.value < m.value AND o.value < a.value THEN 'yes'
      WHEN o.value <= m.value AND o.value <= a.value THEN 'tie' ELSE 'NO' END AS below
    FROM metrics o JOIN metrics m ON m.run_id = o.run_id AND m.stage = '$s[magnitude]' AND m.key = o.key AND m.step = o.step
    JOIN metrics a ON a.run_id = o.run_id AND a.stage = '$s[activation]' AND a.key = o.key AND a.step = o.step
    WHERE o.run_id = '$RUN' AND o.stage = '$s[osscar]' AND o.key = '$k' ORDER BY o.step"
done
echo
echo "local search (mlp50-ls vs mlp50[osscar]): mean relative error and swaps"
"$SMELT" query "SELECT stage, key, printf('%.5g', value) AS value FROM latest_metrics WHERE run_id = '$RUN'
  AND stage IN ('mlp50[osscar]', 'mlp50-ls') AND key IN ('rel_error_mlp_mean', 'params') ORDER BY stage, key"
"$SMELT" query "SELECT sum(value) AS swaps FROM metrics WHERE run_id = '$RUN' AND stage = 'mlp50-ls' AND key = 'ls_swaps_mlp'"
echo
echo "test split: the unpruned model, each pruned model, and the re-distilled ones"
"$SMELT" query "SELECT e.stage, printf('%.4f', l.value) AS response_loss, printf('%.4f', p.value) AS perplexity,
    (SELECT printf('%.4f', value) FROM latest_metrics WHERE run_id = e.run_id AND stage = e.stage AND key = 'auc') AS auc,
    (SELECT printf('%.4f', value) FROM latest_metrics WHERE run_id = e.run_id AND stage = e.stage AND key = 'log_loss') AS log_loss
  FROM (SELECT DISTINCT run_id, stage FROM latest_metrics WHERE run_id = '$RUN' AND stage LIKE 'eval%') e
  JOIN latest_metrics l ON l.run_id = e.run_id AND l.stage = e.stage AND l.key = 'response_loss'
  JOIN latest_metrics p ON p.run_id = e.run_id AND p.stage = e.stage AND p.key = 'perplexity' ORDER BY e.stage"
