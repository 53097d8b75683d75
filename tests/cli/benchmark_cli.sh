# The benchmark stage through the CLI: a ranking workload from a data stage (k candidates sharing a
# prefix) in process with the prefix cache on and off, a synthetic generation workload with bursty
# arrivals over duration_s, the metrics and the trace artifact, the per-layer breakdown adding up to
# the measured forward time within 10%, the capacity search with fleet sizing, and the limits that
# fail at start: a context longer than the model allows, a KV budget too small for one request.
source "$(dirname "$0")/lib.sh"
# One thread: the model is tiny (dim 64), and on a shared, oversubscribed machine every OpenMP barrier
# of a 2-thread step waits for both threads to be scheduled, which made most steps 100x slower than
# the rest (0.4 s instead of 3 ms at a load of 11 on 2 cores) and the cost model all stall.
export OMP_NUM_THREADS=1
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0"
H=${SMELT_DATA_HELPER:?SMELT_DATA_HELPER must point to the data_helper binary}
"$H" model rand 261 1 64 2 || fail "random model"
cat > bench.yaml <<'YAML'
smelt: 1
seed: 7
stages:
  data:
    kind: data
    source: synthetic
    members: 24
    items: 40
    tasks: [like]
    history: 8
    history_tokens: 200
    interactions: 30
  bench:
    kind: benchmark
    foreach: [on, off]
    model: ./rand
    workload: {kind: ranking, candidates: 3, prompts: data, requests: 16, arrival: poisson, rate: 20, seed: 1}
    prefix_cache: ${item}
  probe:
    kind: benchmark
    model: ./rand
    workload: {kind: ranking, candidates: 3, prompts: {context_tokens: 128, shared: 0.9}, requests: 5, rate: 50}
  gen:
    kind: benchmark
    model: ./rand
    workload: {kind: generation, prompts: {context_tokens: 64, output_tokens: 8}, duration_s: 1, rate: 20,
               arrival: {kind: bursty, peak_to_mean: 4, period_s: 0.5}}
    max_batch_tokens: 48
YAML
"$SMELT" run bench.yaml > run.out 2>&1 || fail "run failed: $(cat run.out)"
m() { q "SELECT value FROM latest_metrics WHERE stage = '$1' AND key = '$2'"; }
for k in ttft_ms_p50 ttft_ms_p99 e2e_ms_p50 e2e_ms_p99 input_tokens_per_s output_tokens_per_s requests_per_s \
  prefix_hit_ratio prefill_cold_ms prefill_hot_ms forward_ms attention_ms mlp_ms other_ms breakdown_coverage; do
  [ -n "$(m 'bench[on]' $k)" ] || fail "metric $k missing"
done
expect_eq "$(m 'bench[on]' requests)" 48 "16 members x 3 candidates"
expect_eq "$(m 'bench[on]' errors)" 0 "no failed request"
python3 - "$(m 'bench[on]' prefix_hit_ratio)" "$(m 'bench[off]' prefix_hit_ratio)" "$(m 'bench[on]' breakdown_coverage)" \
  "$(m 'bench[off]' breakdown_coverage)" "$(m gen breakdown_coverage)" <<'PY' || fail "hit ratios and breakdown"
import sys
on, off, *cov = map(float, sys.argv[1:])
assert on > 0.3 and off == 0, (on, off)          # candidates share their profile and history
assert all(0.9 <= c <= 1.0 + 1e-9 for c in cov), cov  # attention + MLP + rest = the forward within 10%
PY
expect_eq "$(q "SELECT COUNT(*) FROM metrics WHERE stage = 'bench[on]' AND key = 'layer_attention_ms'")" 2 \
  "one attention time per layer"
"$SMELT" checkout latest 'bench[on]' -o on > /dev/null || fail "checkout"
expect_eq "$(head -1 on/trace.csv)" \
  "request,member,candidate,arrival_s,first_token_s,finish_s,prompt_tokens,output_tokens,cached_tokens,cache_hit,error" \
  "trace header"
expect_eq "$(($(wc -l < on/trace.csv) - 1))" 48 "one trace row per request"
python3 - on/trace.csv <<'PY' || fail "trace"
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
for r in rows:
    assert float(r["arrival_s"]) <= float(r["first_token_s"]) <= float(r["finish_s"]), r
    assert r["output_tokens"] == "1", r      # ranking: one output token
hits = [r for r in rows if r["cache_hit"] == "1"]
assert all(r["candidate"] != "0" or True for r in hits) and len(hits) >= len(rows) // 2, len(hits)
PY
[ -n "$(m gen tpot_ms_p50)" ] || fail "generation has a TPOT"
[ -z "$(m 'bench[on]' tpot_ms_p50)" ] || fail "ranking (one output token) has no TPOT"
# The capacity search's SLO is 20 cold prefills of one candidate as this build measures them (a
# sanitizer build is 20x slower than Release): one member alone takes a few of them (a cold
# prefill, then a hot step for the other two; measured 1.3 ms against an SLO of 8.6 ms in Release),
# all 200 members at once about 280 (60 ms against 8.6 at 3200 members/s), so the search must
# bracket the SLO: capacity.csv has trials that meet it and trials that miss it.
SLO=$(python3 -c "print(round(20 * float('$(m probe prefill_cold_ms)'), 3))") || fail "probe: no prefill_cold_ms"
cat > cap.yaml <<YAML
smelt: 1
stages:
  capacity:
    kind: benchmark
    model: ./rand
    workload: {kind: ranking, candidates: 3, prompts: {context_tokens: 128, shared: 0.9}, requests: 200, rate: 50}
    slo: {ttft_ms_p99: $SLO}
    fleet: {members_per_s: 1000, replicas_down: 2}
YAML
"$SMELT" run cap.yaml > cap.out 2>&1 || fail "capacity run failed: $(cat cap.out)"
"$SMELT" checkout latest capacity -o cap > /dev/null || fail "checkout capacity"
python3 - "$(m capacity slo_rate)" "$(m capacity replicas_needed)" "$(m capacity slo_simulated_ttft_ms_p99)" \
  cap/capacity.csv "$SLO" <<'PY' || fail "capacity: $(grep -E 'cost model|SLO' "$SMELT_STORE"/logs/*/capacity.1.log)"
import csv, math, sys
rate, replicas, p99 = (float(v or "nan") for v in sys.argv[1:4])
slo = float(sys.argv[5])
assert rate > 0 and p99 <= slo, (rate, p99, slo)
assert replicas == math.ceil(1000 / rate) + 2, (rate, replicas)   # ALGORITHMS.md 6
trials = list(csv.DictReader(open(sys.argv[4])))
meets = {t["meets_slo"] for t in trials}
assert len(trials) > 5 and meets == {"0", "1"}, trials             # bracketed, then bisected
best = max(float(t["rate"]) for t in trials if t["meets_slo"] == "1")
assert abs(best - rate) <= 1e-6 * rate, (rate, best)               # the reported rate is the best that met it
PY
pass "benchmark: metrics, trace, breakdown within 10%, prefix cache on/off, capacity and fleet"

# limits fail at start, before any request runs, and register nothing
bad() { # NAME YAML-LINE EXPECTED-MESSAGE
  cat > $1.yaml <<YAML
smelt: 1
stages:
  b:
    kind: benchmark
    model: ./rand
    $2
YAML
  set +e
  "$SMELT" run $1.yaml > $1.out 2>&1
  rc=$?
  set -e
  [ $rc = 1 ] || fail "$1: expected exit 1, got $rc"
  log=$(ls -t "$SMELT_STORE"/logs/*/b.1.log | head -1)
  expect_contains "$(cat "$log")" "$3" "$1: the cause is named"
  if grep -q "running .* requests" "$log"; then fail "$1: requests ran before the limit was found"; fi
  expect_eq "$(q "SELECT COUNT(*) FROM artifacts a JOIN runs r USING (run_id) WHERE a.stage = 'b' AND r.status = 'failed'")" 0 \
    "$1: nothing registered"
}
bad long "workload: {kind: generation, prompts: {context_tokens: 4090, output_tokens: 64}, requests: 2}" "context holds 4096"
bad kv "workload: {prompts: {context_tokens: 512}, requests: 2}
    kv_budget_mb: 0.01" "raise kv_budget_mb"
pass "benchmark: a too-long context and a too-small KV budget fail at start"
