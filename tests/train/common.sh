# common.sh: what the train stage's command-line tests share: the CLI test helpers (tests/cli/lib.sh)
# and a tiny pipeline (synthetic data, a teacher trained with SFT, a smaller student distilled
# from it) small enough to run in seconds on two cores.
source "$(dirname "$0")/../cli/lib.sh"
# The kernels give bitwise the same results for any thread count; passive waiting only keeps
# OpenMP's spinning threads from starving each other on a shared, oversubscribed test machine.
export OMP_WAIT_POLICY=passive

# tiny_recipe FILE STUDENT_EXTRA: writes the pipeline to FILE; STUDENT_EXTRA holds more student
# parameters (one YAML line each, indented by 4 spaces); a key it sets replaces the default line.
tiny_recipe() {
  local student="    data: data
    teacher: teacher
    init: {arch: llama, hidden: 32, layers: 2, heads: 2, kv_heads: 1, intermediate: 64}
    loss: {fkl: 0.9, ce: 0.1, prompt_weight: 0.05, temperature: 1.5}
    optim: {lr: 3.0e-3, warmup: 2}
    batch_tokens: 2048
    seq_len: 160
    valid_examples: 32"
  local key
  for key in $(sed -n 's/^    \([a-z_]*\):.*/\1/p' <<<"$2"); do
    student=$(grep -v "^    $key:" <<<"$student" || true)
  done
  cat > "$1" <<YAML
smelt: 1
name: tiny
seed: 11
stages:
  data:
    kind: data
    source: synthetic
    members: 40
    items: 60
    tasks: [like]
    history: 4
    max_tokens: 160
    candidates: 4
  teacher:
    kind: train
    data: data
    init: {arch: llama, hidden: 48, layers: 2, heads: 4, kv_heads: 2, intermediate: 96}
    loss: {ce: 1.0, prompt_weight: 0.2}
    optim: {lr: 3.0e-3, warmup: 2}
    steps: 12
    batch_tokens: 2048
    seq_len: 160
    valid_examples: 32
  student:
    kind: train
$student
$2
YAML
}
# metric_curve STORE STAGE KEY: "step,value" lines of a metric of the store's only run.
metric_curve() {
  SMELT_STORE=$1 "$SMELT" query --csv "SELECT step, value FROM metrics WHERE stage = '$2' AND key = '$3' ORDER BY step" |
    tail -n +2
}
