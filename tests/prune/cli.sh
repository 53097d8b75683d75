# The prune stage through the CLI: OSSCAR (with local search), the two baselines, keep_ratio, a
# per-layer schedule, the attention-first order and a bf16 output on a tiny trained model; the
# per-layer metrics and the totals; the output folder (standard config when uniform, smelt_layers
# when not, the calibration set's tokenizer, inspect and generate read it, transformers loads it);
# caching; and bad input refused before any work with exit status 2.
source "$(dirname "$0")/common.sh"
base_recipe r.yaml
cat >> r.yaml <<'YAML'
  osscar:
    kind: prune
    model: base
    calibration: data.calibration
    mlp: {remove: 24}
    attention: {remove_kv_groups: 1}
    local_search: {iterations: 4}
  magnitude:
    kind: prune
    model: base
    calibration: data.calibration
    method: magnitude
    mlp: {remove: 24}
    attention: {remove_kv_groups: 1}
  activation:
    kind: prune
    model: base
    calibration: data.calibration
    method: activation
    mlp: {remove: 24}
    attention: {remove_kv_groups: 1}
  ratio:
    kind: prune
    model: base
    calibration: data.calibration
    mlp: {keep_ratio: 0.6}
    order: attention_first
    save_dtype: bfloat16
  layered:
    kind: prune
    model: base
    calibration: data.calibration
    per_layer: [{mlp: 10}, {mlp: 40, kv_groups: 1}, {kv_groups: 0}]
    mlp: {remove: 8}
YAML
"$SMELT" run r.yaml > run.out 2>&1 || fail "run failed: $(cat run.out)"
RUN=$(q "SELECT run_id FROM runs")
m() { q "SELECT value FROM metrics WHERE stage = '$1' AND key = '$2' AND step = $3"; }
last() { q "SELECT value FROM latest_metrics WHERE stage = '$1' AND key = '$2'"; }

# per-layer metrics (step = layer) and totals
for s in osscar magnitude activation; do
  for key in rel_error_mlp rel_error_attn groups_removed_mlp groups_removed_attn seconds; do
    expect_eq "$(q "SELECT group_concat(step) FROM metrics WHERE stage = '$s' AND key = '$key'")" "0,1,2" "$s: layers with $key"
  done
  expect_eq "$(q "SELECT group_concat(CAST(value AS INTEGER)) FROM metrics WHERE stage = '$s' AND key = 'groups_removed_mlp'")" "24,24,24" \
    "$s: neurons removed per layer"
  for key in params params_before rel_error_mlp_mean rel_error_attn_mean; do
    [ -n "$(last $s $key)" ] || fail "$s: no $key"
  done
done
for key in rel_error_mlp_greedy rel_error_attn_greedy ls_swaps_mlp; do
  expect_eq "$(q "SELECT count(*) FROM metrics WHERE stage = 'osscar' AND key = '$key'")" 3 "osscar: $key per layer"
done
# the local search never makes a layer worse than the greedy result it starts from
BAD=$(q "SELECT count(*) FROM metrics a JOIN metrics g ON a.stage = g.stage AND a.step = g.step
         WHERE a.stage = 'osscar' AND a.key = 'rel_error_mlp' AND g.key = 'rel_error_mlp_greedy' AND a.value > g.value * (1 + 1e-9)")
expect_eq "$BAD" 0 "layers where the local search raised the error"
expect_eq "$(last osscar params_before)" "$(last magnitude params_before)" "params_before"
awk -v a="$(last osscar params)" -v b="$(last osscar params_before)" 'BEGIN { exit !(a < b) }' || fail "params did not fall"
echo "mean MLP relative error: osscar $(last osscar rel_error_mlp_mean), magnitude $(last magnitude rel_error_mlp_mean)," \
  "activation $(last activation rel_error_mlp_mean)"
# keep_ratio 0.6 of 96 neurons keeps 58 (round(57.6)); no attention metric when attention is not pruned
expect_eq "$(q "SELECT group_concat(CAST(value AS INTEGER)) FROM metrics WHERE stage = 'ratio' AND key = 'groups_removed_mlp'")" "38,38,38" \
  "keep_ratio 0.6"
expect_eq "$(q "SELECT count(*) FROM metrics WHERE stage = 'ratio' AND key = 'rel_error_attn'")" 0 "no attention metric"
expect_eq "$(q "SELECT group_concat(CAST(value AS INTEGER)) FROM metrics WHERE stage = 'layered' AND key = 'groups_removed_mlp'")" "10,40,8" \
  "per_layer neurons"
expect_eq "$(q "SELECT group_concat(step) FROM metrics WHERE stage = 'layered' AND key = 'groups_removed_attn'")" "1" \
  "per_layer KV groups"

# the output folders
"$SMELT" checkout "$RUN" osscar -o osscar > /dev/null
for f in config.json generation_config.json model.safetensors tokenizer.json tokenizer_config.json smelt_prune.json; do
  [ -f osscar/$f ] || fail "the pruned folder lacks $f"
done
INS=$("$SMELT" inspect osscar)
grep -qE "^check: +ok" <<<"$INS" || fail "inspect of the pruned model: $INS"
expect_contains "$INS" "heads 2, kv heads 1, head_dim 12, intermediate 72" "pruned sizes"
expect_contains "$INS" "parameters:   $(last osscar params) " "params metric == the folder's parameters"
grep -q smelt_layers osscar/config.json && fail "a uniform pruning wrote a non-standard config.json"
expect_contains "$(cat osscar/config.json)" '"head_dim": 12' "head_dim written explicitly"
expect_contains "$(cat osscar/config.json)" '"tie_word_embeddings": true' "tied embeddings stay tied"
expect_contains "$(cat osscar/smelt_prune.json)" '"kept_kv_groups":[' "smelt_prune.json lists the kept groups"
"$SMELT" checkout "$RUN" ratio -o ratio > /dev/null
expect_contains "$("$SMELT" inspect ratio)" "BF16" "save_dtype bfloat16"
"$SMELT" checkout "$RUN" layered -o layered > /dev/null
INS=$("$SMELT" inspect layered)
grep -qE "^check: +ok" <<<"$INS" || fail "inspect of the per-layer model: $INS"
expect_contains "$(cat layered/config.json)" "smelt_layers" "per-layer sizes are listed"
expect_contains "$INS" "      1      2         1            56" "layer 1: 2 heads, 1 kv head, 56 neurons"
# smelt generates with it; transformers loads it and agrees on the greedy next token
expect_hf_greedy osscar
# (transformers would refuse weights whose shapes differ from the config's sizes)

# a second run computes nothing
"$SMELT" run r.yaml > again.out 2>&1 || fail "second run failed"
expect_contains "$(cat again.out)" "(0 run, 7 cached)" "second run is cached"

# bad input: refused before any work (no per-layer metric), the stage process exits with 2
bad() { # bad NAME YAML EXPECTED: a recipe whose prune stage is YAML fails naming EXPECTED
  base_recipe bad.yaml
  printf '%s\n' "$2" >> bad.yaml
  set +e
  SMELT_STORE=$WORK/bad "$SMELT" run bad.yaml > bad.out 2>&1
  local rc=$?
  set -e
  [ $rc -ne 0 ] || fail "$1: the run succeeded"
  local run err
  run=$(SMELT_STORE=$WORK/bad q "SELECT run_id FROM runs ORDER BY created_at DESC LIMIT 1")
  err=$(SMELT_STORE=$WORK/bad q "SELECT error FROM stages WHERE run_id = '$run' AND stage = 'p'")
  expect_contains "$err" "exit status 2" "$1: exit status of the stage"
  expect_contains "$err" "$3" "$1"
  expect_eq "$(SMELT_STORE=$WORK/bad q "SELECT count(*) FROM metrics WHERE run_id = '$run' AND stage = 'p'")" 0 \
    "$1: metrics before failing"
}
P="  p:
    kind: prune
    model: base
    calibration: data.calibration"
bad too-many-neurons "$P
    mlp: {remove: 96}" "removing 96 MLP neurons from layer 0, which has 96, would leave none"
bad too-many-groups "$P
    attention: {remove_kv_groups: 2}" "removing 2 KV groups from layer 0, which has 2"
bad per-layer-too-many "$P
    per_layer: [{mlp: 1}, {mlp: 200}, {mlp: 1}]" "removing 200 MLP neurons from layer 1"
bad keep-ratio-one "$P
    mlp: {keep_ratio: 1.0}" "strictly between 0 and 1"
bad nothing "$P" "nothing to prune"
bad both "$P
    mlp: {remove: 3, keep_ratio: 0.5}" "not both"
bad per-layer-length "$P
    per_layer: [{mlp: 4}]" "per_layer has 1 entries but the model has 3 layers"
bad ls-baseline "$P
    method: magnitude
    mlp: {remove: 3}
    local_search: {iterations: 2}" "local_search applies to method osscar only"
bad not-calibration "  p:
    kind: prune
    model: base
    calibration: data
    mlp: {remove: 3}" "not a calibration set; name the data stage's calibration output: calibration: data.calibration"
# a model without the Llama projections
mkdir -p gpt2 && printf '{"model_type": "gpt2", "n_embd": 48, "n_layer": 2, "n_head": 4, "vocab_size": 261}\n' > gpt2/config.json
bad not-llama "  p:
    kind: prune
    model: $WORK/gpt2
    calibration: data.calibration
    mlp: {remove: 3}" "prune needs a Llama-family model (self_attn.q/k/v/o_proj and mlp.gate/up/down_proj"
# a calibration set built with another tokenizer of the same size (two byte tokens swapped)
mkdir -p othertok && sed -e 's/"a": 97,/"a": 98,/' -e 's/"b": 98,/"b": 97,/' osscar/tokenizer.json > othertok/tokenizer.json
bad other-tokenizer "  data2:
    kind: data
    source: synthetic
    members: 10
    items: 20
    tasks: [like]
    history: 3
    tokenizer: $WORK/othertok/tokenizer.json
    calibration: {samples: 8, from: train}
  p:
    kind: prune
    model: base
    calibration: data2.calibration
    mlp: {remove: 3}" "the calibration set was built with another tokenizer than the model's"
# a keep_ratio outside [0, 1] is a recipe error: smelt run exits 2 before creating a run
base_recipe ratio.yaml
printf '%s\n' "$P" "    mlp: {keep_ratio: 1.5}" >> ratio.yaml
set +e
SMELT_STORE=$WORK/bad2 "$SMELT" run ratio.yaml > ratio.out 2>&1
rc=$?
set -e
expect_eq $rc 2 "keep_ratio 1.5: exit status of smelt run"
expect_contains "$(cat ratio.out)" "between 0 and 1" "keep_ratio 1.5"
pass "prune CLI: OSSCAR, baselines, keep_ratio, per_layer, orders, outputs, caching, bad input"
