# ranks: 2 shards the calibration set over two MPI processes; rank 0 adds the Gram matrices in rank
# order and prunes (both orders: together, and attention_first, where rank 0 sends the pruned
# attention to every rank before the MLP pass). Against one rank: the same kept neurons and KV
# groups in every layer, the same per-layer relative errors and the same weights, within what the
# different float64 summation order allows. Tolerance: a Gram entry summed in another order moves by at most n eps64 relative
# (n = calibration tokens, ~3,000: 7e-13); the solver amplifies that by at most cond(H + λI) (about
# 1e4 with damp 0.01 on these layers), so the solutions move by ~1e-8 relative: the relative errors
# are compared to 1e-6, and the fp32 weights, rounded to 2^-24, to 2^-20 of each tensor's scale.
source "$(dirname "$0")/common.sh"
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0" # OpenMPI keeps its plugins' allocations
command -v mpirun > /dev/null || fail "mpirun is not installed (apt-get install openmpi-bin)"
for n in 1 2; do
  base_recipe r$n.yaml
  cat >> r$n.yaml <<YAML
  p:
    kind: prune
    model: base
    calibration: data.calibration
    mlp: {remove: 30}
    attention: {remove_kv_groups: 1}
    local_search: {iterations: 2}
    ranks: $n
  q:
    kind: prune
    model: base
    calibration: data.calibration
    mlp: {remove: 20}
    attention: {remove_kv_groups: 1}
    order: attention_first
    ranks: $n
YAML
  SMELT_STORE=$WORK/s$n "$SMELT" run r$n.yaml > run$n.out 2>&1 || fail "$n-rank run failed: $(cat run$n.out)"
  RUN=$(SMELT_STORE=$WORK/s$n q "SELECT run_id FROM runs")
  SMELT_STORE=$WORK/s$n "$SMELT" checkout "$RUN" p -o p$n > /dev/null
  SMELT_STORE=$WORK/s$n "$SMELT" checkout "$RUN" q -o q$n > /dev/null
done
expect_eq "$(SMELT_STORE=$WORK/s2 q "SELECT ranks FROM stages WHERE stage = 'p'")" 2 "the stage ran on 2 ranks"
LOG=$(SMELT_STORE=$WORK/s2 q "SELECT log_path FROM stages WHERE stage = 'p'")
expect_contains "$(cat "$LOG")" "rank 1 of 2" "rank 1 ran"
for st in p q; do # q: attention_first (rank 0's pruned attention reaches every rank before the MLP pass)
  expect_eq "$(cat ${st}2/smelt_prune.json)" "$(cat ${st}1/smelt_prune.json)" "$st: kept neurons and KV groups, 1 vs 2 ranks"
  for key in rel_error_mlp rel_error_attn $([ $st = p ] && echo rel_error_mlp_greedy); do
    paste -d, <(metric_curve $WORK/s1 $st $key) <(metric_curve $WORK/s2 $st $key) |
      awk -F, -v key=$st.$key '{ d = $2 - $4; if (d < 0) d = -d; r = d / $2; if (r > worst) worst = r
                                if (r > 1e-6) { printf "%s layer %d: %.12g vs %.12g\n", key, $1, $2, $4; bad = 1 } }
                              END { printf "%s: worst relative difference %.2e over %d layers\n", key, worst, NR; exit bad }' ||
      fail "$st: $key differs between 1 and 2 ranks"
  done
  "$(dirname "$SMELT")/tests/test_prune_model" --compare ${st}2 ${st}1 9.5367431640625e-07 ||
    fail "$st: weights differ between 1 and 2 ranks"
done
pass "prune on 1 and 2 ranks: same supports, errors and weights within the float64 summation tolerance"
