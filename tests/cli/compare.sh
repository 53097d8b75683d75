# `smelt compare` on real runs of a small recipe (one parameter changed by --set: the first
# diverging stage, the changed key field, ran vs reused, the parameter and metric deltas equal to
# the store's values, a run against itself is identical) and on two pipeline-shaped runs written
# by tests/report_helper.c (the models side by side: AUC and TTFT in both runs equal the store's;
# `--models --kind quantize --sort auc-per-ms` orders the quantized models by AUC per millisecond
# of TTFT, computed here independently from `smelt query`); the HTML page is self-contained; bad
# input exits 2 with the cause and writes nothing.
source "$(dirname "$0")/lib.sh"
H=${SMELT_REPORT_HELPER:?SMELT_REPORT_HELPER must point to the report_helper binary}
export SMELT

cat > d.yaml <<'YAML'
smelt: 1
name: cmp
stages:
  s1:
    kind: command
    run: echo one > $SMELT_OUTPUT_DIR/v.txt
  s2:
    kind: command
    inputs: {up: s1}
    params: {factor: 3}
    run: echo "x$SMELT_PARAM_FACTOR" > $SMELT_OUTPUT_DIR/v.txt; echo "score 0.$SMELT_PARAM_FACTOR" >> $SMELT_METRICS; echo "same 1" >> $SMELT_METRICS
  s3:
    kind: command
    inputs: {up: s2}
    run: cat $SMELT_INPUT_UP/v.txt > $SMELT_OUTPUT_DIR/v.txt; echo "n 5" >> $SMELT_METRICS
YAML
"$SMELT" run d.yaml > run1.out || fail "run 1: $(cat run1.out)"
R1=$(q "SELECT run_id FROM runs ORDER BY created_at DESC, rowid DESC LIMIT 1")
"$SMELT" run d.yaml --set stages.s2.params.factor=4 > run2.out || fail "run 2: $(cat run2.out)"
R2=$(q "SELECT run_id FROM runs ORDER BY created_at DESC, rowid DESC LIMIT 1")
[ "$R1" != "$R2" ] || fail "two runs expected"

"$SMELT" compare "$R1" "$R2" > c.txt || fail "compare: $(cat c.txt)"
expect_contains "$(cat c.txt)" "lineage diverges first at stage s2:" "the first diverging stage"
expect_contains "$(cat c.txt)" "params.factor: 3 -> 4" "the key field that differs"
row() { grep -E "^  $1 " c.txt | tr -s ' ' | sed 's/^ //'; }
expect_eq "$(row s1)" "s1 command ran reused from A same" "s1: computed in A, reused in B"
expect_eq "$(row s2 | head -1)" "s2 command ran ran differs" "s2 ran in both with different keys"
expect_eq "$(row s3 | head -1)" "s3 command ran ran differs" "s3 re-ran because its input changed"
expect_contains "$(cat c.txt)" "1 of 3 stages have the same cache key" "the count of shared keys"
expect_eq "$(grep -E '^  s2 +params.factor' c.txt | tr -s ' ')" " s2 params.factor 3 4" "the parameter that differs"
# the metric row against the store's values: B − A and (B − A)/|A|
a=$(q "SELECT value FROM latest_metrics WHERE run_id = '$R1' AND stage = 's2' AND key = 'score'")
b=$(q "SELECT value FROM latest_metrics WHERE run_id = '$R2' AND stage = 's2' AND key = 'score'")
want=$(python3 -c "a,b=$a,$b; print('s2 score %.6g %.6g %+.4g %+.2f%%' % (a, b, b-a, 100*(b-a)/abs(a)))")
expect_eq "$(grep -E '^  s2 +score ' c.txt | tr -s ' ' | sed 's/^ //')" "$want" "the metric delta"
grep -qE '^  s[123] +(same|n) ' c.txt && fail "an equal metric is listed as differing"
expect_contains "$(cat c.txt)" "2 more are equal" "the equal metrics are counted"
grep -q '^Models$' c.txt && fail "a Models section for runs without models"
pass "compare: divergence, ran/reused, parameter and metric deltas equal the store's"

"$SMELT" compare "$R2" "$R2" > same.txt || fail "compare a run with itself"
expect_contains "$(cat same.txt)" "lineage: identical" "a run against itself"
expect_contains "$(cat same.txt)" "no parameter or metric differs" "nothing differs"
pass "compare: a run against itself is identical"

# a stage added: every other stage reused, the new one "only in B" and where the lineage diverges
sed 's/^stages:$/stages:\n  s4:\n    kind: command\n    inputs: {up: s3}\n    run: cat $SMELT_INPUT_UP\/v.txt > $SMELT_OUTPUT_DIR\/w.txt/' d.yaml > d4.yaml
"$SMELT" run d4.yaml --set stages.s2.params.factor=4 > run3.out || fail "run 3: $(cat run3.out)"
R3=$(q "SELECT run_id FROM runs ORDER BY created_at DESC, rowid DESC LIMIT 1")
"$SMELT" compare "$R2" "$R3" > c4.txt || fail "compare with an added stage: $(cat c4.txt)"
expect_contains "$(cat c4.txt)" "lineage diverges first at stage s4:" "the added stage is where the lineage diverges"
expect_contains "$(cat c4.txt)" "the stage is not in run A" "why it diverges"
expect_eq "$(grep -E '^  s4 ' c4.txt | tr -s ' ')" " s4 command - ran only in B" "the added stage's row"
expect_eq "$(grep -E '^  s2 ' c4.txt | head -1 | tr -s ' ')" " s2 command ran reused from A same" "s2 reused from run A"
expect_contains "$(cat c4.txt)" "3 of 4 stages have the same cache key" "shared keys with an added stage"
pass "compare: an added stage is only in B, the others reused"

"$SMELT" compare "$R1" "$R2" --html c.html > html.out || fail "compare --html: $(cat html.out)"
expect_contains "$(cat html.out)" "wrote c.html" "compare --html says where"
expect_contains "$(cat c.html)" "Diverges first at stage <b>s2</b>" "the page names the divergence"
expect_contains "$(cat c.html)" "params.factor: 3 -&gt; 4" "the page shows the key field, escaped"
grep -qiE '<script|https?://|src=' c.html && fail "the page fetches or runs something"
pass "compare --html: self-contained page"

# two pipeline-shaped runs: w4-gptq with another group size (lower AUC), fp8 benchmarked faster
export ST=$WORK/models-store
A=$("$H" "$ST") || fail "report_helper A"
B=$("$H" "$ST" 2) || fail "report_helper B"
SM() { "$SMELT" "$@" --store "$ST"; }
QM() { "$SMELT" query --store "$ST" --csv "$1" | tail -n +2; }
SM compare "$A" "$B" --html m.html > m.txt || fail "compare of the model runs: $(cat m.txt)"
expect_contains "$(cat m.txt)" "lineage diverges first at stage w4-gptq:" "the first diverging stage"
expect_contains "$(cat m.txt)" "group_size: 32 -> 128" "its key field"
expect_contains "$(cat m.txt)" "also diverging with the same inputs in both runs: bench[fp8]" "the other root"
for model in w4-gptq fp8 teacher; do
  read -r aa ab ta tb < <(python3 - "$model" <<PY
import subprocess, sys
def v(run, stage, key):
    out = subprocess.run(["$SMELT", "query", "--store", "$ST", "--csv",
        f"SELECT value FROM latest_metrics WHERE run_id = '{run}' AND stage = '{stage}' AND key = '{key}'"],
        check=True, capture_output=True, text=True).stdout.split("\n")[1:]
    return float(out[0]) if out and out[0] else None
m = sys.argv[1]
f = lambda x, s: "-" if x is None else s % x
print(f(v("$A", f"eval[{m}]", "auc"), "%.4f"), f(v("$B", f"eval[{m}]", "auc"), "%.4f"),
      f(v("$A", f"bench[{m}]", "ttft_ms_p50"), "%.1f"), f(v("$B", f"bench[{m}]", "ttft_ms_p50"), "%.1f"))
PY
)
  got=$(sed -n '/^Models$/,/^$/p' m.txt | grep -E "^  $model " | awk '{print $2, $3, $5, $6}')
  expect_eq "$got" "$aa $ab $ta $tb" "AUC and TTFT of $model in both runs"
done
expect_eq "$(grep -c '<svg' m.html)" 1 "one figure on the compare page"
grep -q 'AUC in run A (mean over tasks)' m.html || fail "the figure's x axis label"
grep -q 'AUC in run B (mean over tasks)' m.html || fail "the figure's y axis label"
pass "compare: models side by side, values equal the store's"

# which quantized model has the best AUC per millisecond of TTFT, over both runs
SM compare --models "$A" "$B" --kind quantize --sort auc-per-ms > best.txt || fail "--models: $(cat best.txt)"
python3 - best.txt "$A" "$B" <<'PY' || fail "the --models table"
import json, math, os, re, subprocess, sys
path, runs = sys.argv[1], sys.argv[2:]
def q(sql):
    out = subprocess.run([os.environ["SMELT"], "query", "--store", os.environ["ST"], "--json", sql],
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out or "[]")
FIXTURE_ORDER = ["fp8", "w8a8", "w4-gptq", "w4-quantease-five-sweeps-static-groups"]
want = []  # (letter, model, auc/ttft) in listing order: run by run, models in stage order
for k, run in enumerate(runs):
    kinds = {r["stage"]: r["kind"] for r in q(f"SELECT stage, kind FROM stages WHERE run_id = '{run}'")}
    # the stages in the run's order (the view has no order column): as tests/report_helper.c writes them
    order = sorted(kinds, key=lambda s: FIXTURE_ORDER.index(s) if s in FIXTURE_ORDER else len(FIXTURE_ORDER))
    model_of = {r["stage"]: r["from_stage"] for r in q(f"SELECT stage, from_stage FROM lineage WHERE run_id = '{run}' "
                                                        "AND input = 'model'")}
    m = {(r["stage"], r["key"]): r["value"] for r in q(f"SELECT stage, key, value FROM latest_metrics WHERE run_id = '{run}'")}
    for s in order:
        if kinds[s] != "quantize" or not any(model_of.get(x) == s for x in kinds):
            continue
        auc, ttft = m.get((f"eval[{s}]", "auc")), m.get((f"bench[{s}]", "ttft_ms_p50"))
        want.append(("AB"[k], s, auc / ttft if auc is not None and ttft is not None else math.nan))
known = sorted([w for w in want if not math.isnan(w[2])], key=lambda w: -w[2])
want = known + [w for w in want if math.isnan(w[2])]
lines = open(path, encoding="utf-8").read().split("\n")
i = lines.index("Models")
rows = []
for line in lines[i + 2:]:
    cells = re.split(r"\s{2,}", line.strip())
    if len(cells) != 9:
        break
    rows.append(cells)
got = [(c[0], c[1]) for c in rows]
def same(cell, name): return cell == name or (cell.endswith("…") and name.startswith(cell[:-1]))
if len(got) != len(want) or not all(g[0] == w[0] and same(g[1], w[1]) for g, w in zip(got, want)):
    raise SystemExit(f"rows {got} are not {[(w[0], w[1]) for w in want]}")
for c, w in zip(rows, want):
    shown = "-" if math.isnan(w[2]) else "%.3g" % w[2]
    if c[8] != shown:
        raise SystemExit(f"AUC/ms of {w[:2]}: {c[8]}, expected {shown}")
best = f"best by auc-per-ms: {want[0][1]} of run {want[0][0]}"
if "  " + best not in lines:
    raise SystemExit(f"no line '{best}'")
if any(len(l) > 100 for l in lines):
    raise SystemExit("a line is wider than 100 columns")
PY
expect_contains "$(cat best.txt)" "best by auc-per-ms: fp8 of run B" "the fixture's answer"
SM compare --models "$A" --kind prune > none.txt || fail "--models with no model of the kind"
expect_contains "$(cat none.txt)" "No model of this kind was measured" "an empty selection says so"
SM compare --models --sort params > one.txt || fail "--models of the latest run"
expect_contains "$(head -1 one.txt)" "run $B " "--models defaults to the latest run"
grep -qE '^  RUN ' one.txt && fail "a RUN column for one run"
pass "compare --models: the best quantized model by AUC per millisecond"

# bad input: exit 2, the cause named, nothing written
bad() { # bad WHAT EXPECTED_TEXT ARGS...
  local what=$1 text=$2
  shift 2
  set +e
  "$SMELT" compare "$@" > bad.out 2>&1
  local rc=$?
  set -e
  expect_eq "$rc" 2 "$what"
  expect_contains "$(cat bad.out)" "$text" "$what: the message"
}
bad "an unknown run A" "no run 'no-such-run'" no-such-run "$R2"
bad "an unknown run B" "no run 'no-such-run'" "$R1" no-such-run
bad "one run" "expected two run ids" "$R1"
bad "three runs" "expected two run ids" "$R1" "$R2" "$R2"
bad "an unknown option" "unknown option" "$R1" "$R2" --bogus
bad "an unknown sort key" "unknown --sort key 'speed'" --models --sort speed
bad "--sort without --models" "--sort goes with --models" "$R1" "$R2" --sort auc
bad "--models with --html" "leave out one of them" --models --html x.html
bad "--html into a missing folder" "the folder $WORK/no/such does not exist" "$R1" "$R2" --html "$WORK/no/such/c.html"
bad "an unknown run with --models" "no run 'no-such-run'" --models "$R1" no-such-run
[ ! -e "$WORK/no" ] && [ ! -e x.html ] || fail "bad input wrote something"
pass "compare: bad input exits 2 with the cause, before writing anything"
