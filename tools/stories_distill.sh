#!/usr/bin/env bash
# stories_distill.sh: the acceptance experiment of distilling the real stories260K model into a
# smaller random student (recipes/stories_distill.yaml). Writes OUT/corpus.jsonl (N stories sampled
# from stories260K at temperature 1 with seeds 1..N, one JSON document per line), links the model
# and tokenizer beside a copy of the recipe, runs it, and prints the student's curve: the forward
# KL to the teacher and the CE on held-out stories, for the distilled and the CE-only student.
# usage: tools/stories_distill.sh [OUT (default /tmp/stories-distill)] [N (default 400)]
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SMELT=${SMELT_BIN:-$ROOT/build/smelt}
OUT=${1:-/tmp/stories-distill}
N=${2:-400}
"$ROOT/tools/stories_corpus.sh" "$OUT" "$N"
cp "$ROOT/recipes/stories_distill.yaml" "$OUT/"
export SMELT_STORE=$OUT/store
"$SMELT" run "$OUT/stories_distill.yaml"
RUN=$("$SMELT" query --csv "SELECT run_id FROM runs ORDER BY created_at DESC LIMIT 1" | tail -1)
echo
echo "validation curve (first 64 validation documents): forward KL to stories260K and CE per token"
"$SMELT" query "SELECT k.step, k.value AS kd_valid_fkl, c1.value AS kd_valid_ce, c2.value AS ce_only_valid_ce
  FROM metrics k JOIN metrics c1 ON c1.run_id = k.run_id AND c1.stage = 'student-kd' AND c1.key = 'valid_ce' AND c1.step = k.step
  JOIN metrics c2 ON c2.run_id = k.run_id AND c2.stage = 'student-ce' AND c2.key = 'valid_ce' AND c2.step = k.step
  WHERE k.run_id = '$RUN' AND k.stage = 'student-kd' AND k.key = 'valid_fkl' ORDER BY k.step"
echo
echo "test split (evaluate): CE per target token (response_loss) and perplexity"
"$SMELT" query "SELECT stage, key, value FROM latest_metrics WHERE run_id = '$RUN' AND stage LIKE 'eval%'
  AND key IN ('response_loss', 'perplexity', 'response_loss_delta', 'targets') ORDER BY stage, key"
