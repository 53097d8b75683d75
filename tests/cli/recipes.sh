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
  for r in teacher_smollm2 smollm2-movielens smollm2-oneshot; do
    "$SMELT" plan "$R/$r.yaml" > plan.out 2> plan.err || fail "plan $r.yaml: $(cat plan.err)"
  done
fi
# smollm2-oneshot.yaml prunes smollm2-movielens.yaml's fine-tuned teacher: its seed, its train
# defaults and its data and teacher stages must stay the same definitions, or its data stage and the
# 60-step teacher would no longer be cache hits in a store where smollm2-movielens.yaml ran.
block() { awk -v s="$2" 'p && !/^   / {exit} $0 == s {p=1} p' "$1"; }  # FILE LINE: LINE and the lines indented under it
for b in "  train:" "  data:" "  teacher:"; do
  one=$(block "$R/smollm2-oneshot.yaml" "$b") movielens=$(block "$R/smollm2-movielens.yaml" "$b")
  [ -n "$one" ] || fail "smollm2-oneshot.yaml has no block '$b'"
  expect_eq "$one" "$movielens" "smollm2-oneshot.yaml's '$b' block against smollm2-movielens.yaml's"
done
expect_eq "$(grep '^seed:' "$R/smollm2-oneshot.yaml")" "$(grep '^seed:' "$R/smollm2-movielens.yaml")" "the two recipes' seeds"

# The paper's recipes at real scale (Llama 3 / Qwen2.5 checkpoints, your data, device: cuda, Slurm
# resources). They name ../models/* and ../data/* beside recipes/: a copy of each in a scratch
# layout with those paths present (empty stand-ins: planning reads no model) must plan, and
# `submit --dry-run` must print every job's sbatch script and create nothing.
P=$PWD/paper
mkdir -p "$P/recipes" "$P/data/ranking" "$P/data/reasoning"
for m in Llama-3.1-8B-Instruct Llama-3.2-3B-Instruct Qwen2.5-7B-Instruct Qwen2.5-1.5B-Instruct; do
  mkdir -p "$P/models/$m" && echo '{}' > "$P/models/$m/config.json"
done
for f in interactions items members; do echo "x" > "$P/data/ranking/$f.csv"; done
echo '{"prompt": "p", "response": "r"}' > "$P/data/reasoning/explanations.jsonl"
cp "$R/paper-ranking.yaml" "$R/paper-reasoning.yaml" "$P/recipes/"
for r in paper-ranking:41 paper-reasoning:21; do
  "$SMELT" plan "$P/recipes/${r%:*}.yaml" --store "$P/store" > plan.out 2> plan.err || fail "plan ${r%:*}.yaml: $(cat plan.err)"
  expect_contains "$(head -1 plan.out)" "${r#*:} stages" "${r%:*} stage count"
  "$SMELT" submit "$P/recipes/${r%:*}.yaml" --slurm --dry-run --name x --partition gpu --store "$P/store" > dry.out 2> dry.err ||
    fail "submit --dry-run ${r%:*}.yaml: $(cat dry.err)"
  expect_contains "$(cat dry.out)" "${r#*:} jobs would be submitted; nothing was submitted" "${r%:*} dry run"
  expect_contains "$(cat dry.out)" "#SBATCH --partition=gpu" "${r%:*} dry run: the --partition option"
  [ ! -e "$P/store" ] || fail "submit --dry-run ${r%:*}.yaml created the store"
done
# the ranking teacher: 8 ranks with 8 GPUs and its resources; the data stage asks for no GPU
"$SMELT" submit "$P/recipes/paper-ranking.yaml" --slurm --dry-run --store "$P/store" > dry.out
job() { sed -n "/^# ---- job [0-9]*: stage $1 ----/,/^exec/p" dry.out; }
for line in "--ntasks=8" "--gpus-per-node=8" "--time=24:00:00" "--mem=800G" "--dependency=afterok:<data>"; do
  expect_contains "$(job teacher)" "#SBATCH $line" "paper-ranking teacher job"
done
! job data | grep -q gpus || fail "the data stage's job asks for GPUs: $(job data)"
# device: cuda cannot run here: run and a real submit refuse before creating anything, naming the fix
set +e
"$SMELT" run "$P/recipes/paper-ranking.yaml" --store "$P/store" > run.out 2> run.err
rc=$?
set -e
expect_eq "$rc" 2 "run of a recipe with device: cuda"
expect_contains "$(cat run.err)" "asks for device: cuda" "run refusal"
expect_contains "$(cat run.err)" "--set stages.teacher.device=cpu" "run refusal names the fix"
[ ! -e "$P/store" ] || fail "the refused run created the store"
set +e
"$SMELT" submit "$P/recipes/paper-reasoning.yaml" --slurm --store "$P/store" > run.out 2> run.err
rc=$?
set -e
expect_eq "$rc" 2 "submit of a recipe with device: cuda"
[ ! -e "$P/store" ] || fail "the refused submit created the store"
# device: cuda without resources.gpus asks for one GPU per rank; a device other than cpu/cuda is refused
cat > dev.yaml <<'YAML'
smelt: 1
name: dev
stages:
  data: {kind: data, source: synthetic, members: 20, items: 10, history: 3, tokenizer: builtin:bytes}
  one: {kind: train, data: data, init: {arch: llama, hidden: 16, layers: 1, heads: 2, intermediate: 32}, steps: 1, ranks: 3, device: cuda}
YAML
"$SMELT" submit dev.yaml --slurm --dry-run --store "$P/store" > dry.out
expect_contains "$(job one)" "#SBATCH --gpus-per-node=3" "device: cuda with 3 ranks"
set +e
"$SMELT" plan dev.yaml --set stages.one.device=tpu > plan.out 2> plan.err
rc=$?
set -e
expect_eq "$rc" 2 "device: tpu"
expect_contains "$(cat plan.err)" "'device' must be cpu or cuda" "device: tpu message"
pass "the shipped recipes plan"
