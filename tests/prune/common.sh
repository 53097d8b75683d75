# common.sh: what the prune stage's command-line tests share: the CLI helpers (tests/cli/lib.sh)
# and a tiny pipeline (synthetic data with a calibration set, a 3-layer model trained for a few
# steps) to which each test appends its prune stages.
source "$(dirname "$0")/../cli/lib.sh"
export OMP_WAIT_POLICY=passive

# base_recipe FILE [LAYERS]: the data and model stages (no prune stage yet).
base_recipe() {
  cat > "$1" <<YAML
smelt: 1
name: prune-test
seed: 5
stages:
  data:
    kind: data
    source: synthetic
    members: 30
    items: 40
    tasks: [like]
    history: 4
    max_tokens: 160
    candidates: 4
    calibration: {samples: 24, from: train}
  base:
    kind: train
    data: data
    init: {arch: llama, hidden: 48, layers: ${2:-3}, heads: 4, kv_heads: 2, intermediate: 96}
    loss: {ce: 1.0}
    optim: {lr: 3.0e-3}
    steps: 6
    batch_tokens: 2048
    seq_len: 160
    valid_examples: 0
YAML
}
# metric_curve STORE STAGE KEY: "step,value" lines of a metric of the store's only run.
metric_curve() {
  SMELT_STORE=$1 "$SMELT" query --csv "SELECT step, printf('%.17g', value) FROM metrics WHERE stage = '$2' AND key = '$3' ORDER BY step" |
    tail -n +2
}
