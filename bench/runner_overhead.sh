#!/usr/bin/env bash
# runner_overhead.sh: milliseconds of `smelt run` on a fully cached 6-stage recipe (the
# runner's own cost: parse, keys, store lookups, linking), and of `smelt plan` and
# `smelt query` on the same store, beside the cost of starting the binary (`smelt version`).
# Also times `smelt query` over the large store made by bench_store.
# Usage: bench/runner_overhead.sh [BUILD_DIR]   (prints; asserts nothing)
set -euo pipefail
BUILD=${1:-build}
SMELT=$(realpath "$BUILD/smelt")
W=$(mktemp -d)
cd "$W"
export SMELT_STORE=$W/store
cat > six.yaml <<'YAML'
smelt: 1
stages:
  s1: {kind: command, run: "echo 1 > $SMELT_OUTPUT_DIR/x"}
  s2: {kind: command, inputs: {a: s1}, run: "cat $SMELT_INPUT_A/x > $SMELT_OUTPUT_DIR/x"}
  s3: {kind: command, inputs: {a: s1}, params: {k: 3}, run: "cat $SMELT_INPUT_A/x > $SMELT_OUTPUT_DIR/x"}
  s4: {kind: command, inputs: {a: s2, b: s3}, run: "cat $SMELT_INPUT_A/x $SMELT_INPUT_B/x > $SMELT_OUTPUT_DIR/x"}
  s5: {kind: command, inputs: {a: s2}, run: "cat $SMELT_INPUT_A/x > $SMELT_OUTPUT_DIR/x"}
  s6: {kind: command, inputs: {a: s4, b: s5}, run: "cat $SMELT_INPUT_A/x $SMELT_INPUT_B/x > $SMELT_OUTPUT_DIR/x"}
YAML
"$SMELT" run six.yaml > /dev/null
ms() { # median of 21 runs of a command, in ms
  for i in $(seq 1 21); do
    t0=$(date +%s%N); "$@" > /dev/null; t1=$(date +%s%N)
    echo $(( (t1 - t0) / 1000 ))
  done | sort -n | awk '{a[NR] = $1} END {printf "%.2f", a[11] / 1000}'
}
printf "%-52s %8s ms\n" "smelt version (process start)" "$(ms "$SMELT" version)"
printf "%-52s %8s ms\n" "smelt run, 6 stages all cached" "$(ms "$SMELT" run six.yaml)"
printf "%-52s %8s ms\n" "smelt plan, 6 stages all cached" "$(ms "$SMELT" plan six.yaml)"
printf "%-52s %8s ms\n" "smelt query over this store" "$(ms "$SMELT" query "SELECT count(*) FROM stages")"
if [ -f /tmp/smelt-bench-store/smelt.db ]; then
  printf "%-52s %8s ms\n" "smelt query, latest auc of 6,000 series (6M points)" \
    "$(ms "$SMELT" query --store /tmp/smelt-bench-store --csv "SELECT run_id, stage, value FROM latest_metrics WHERE key = 'auc'")"
fi
rm -rf "$W"
