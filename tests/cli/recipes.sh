#!/usr/bin/env bash
# recipes.sh: every recipe shipped in recipes/ that needs no prepared files is accepted by `smelt
# plan` (schema, references, the stage kinds' parameter checks), and the quickstart names every
# stage kind of the paper's pipeline (data, train, prune, quantize, evaluate, benchmark), so a
# change that breaks the README's main command fails here rather than in a user's first run.
source "$(dirname "$0")/lib.sh"
source "$SMELT_SOURCE_DIR/tests/lib_shared.sh"
R=$SMELT_SOURCE_DIR/recipes
for r in quickstart distill_synthetic gradual-prune oneshot-prune; do
  "$SMELT" plan "$R/$r.yaml" > plan.out 2> plan.err || fail "plan $r.yaml: $(cat plan.err)"
  expect_contains "$(cat plan.out)" "to run, 0 cached" "plan of $r.yaml"
done
# the quickstart: the whole pipeline, 34 stages
"$SMELT" plan "$R/quickstart.yaml" > plan.out
expect_contains "$(head -1 plan.out)" "34 stages" "quickstart stage count"
for k in data train prune quantize evaluate benchmark; do
  grep -q "kind: $k\b" "$R/quickstart.yaml" || fail "the quickstart has no stage of kind $k"
done
# the teacher experiment and the SmolLM2 pipeline read ../shared (the MovieLens zip and the SmolLM2 GGUF)
if shared_file ZIP data/ml-latest-small.zip "planning recipes/teacher_smollm2.yaml"; then
  for r in teacher_smollm2 smollm2-movielens; do
    "$SMELT" plan "$R/$r.yaml" > plan.out 2> plan.err || fail "plan $r.yaml: $(cat plan.err)"
  done
fi
pass "the shipped recipes plan"
