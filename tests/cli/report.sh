# `smelt report` on a run shaped like the paper's pipeline (tests/report_helper.c writes it through
# the store API: train, prune, quantize, evaluate and benchmark stages with their metrics, traces,
# long names, a model without a parameter count): every line within 100 columns; the Models,
# Serving, Pruning and Quantization rows equal the store's values read back with `smelt query`
# (tests/cli/report_check.py), "-" where a value is absent; the Pareto fronts are the non-dominated
# models; --raw keeps the metric view; the HTML page is self-contained, has every figure with
# labelled axes, and renders in headless Chromium (a screenshot of the expected size, not blank,
# with the plots' colours); the same checks on a real run of the data, train, quantize and evaluate
# stages; bad arguments fail before anything is written.
source "$(dirname "$0")/lib.sh"
H=${SMELT_REPORT_HELPER:?SMELT_REPORT_HELPER must point to the report_helper binary}
CHECK="python3 $SMELT_SOURCE_DIR/tests/cli/report_check.py"
export SMELT
RUN=$("$H" "$SMELT_STORE") || fail "report_helper"

"$SMELT" report "$RUN" > report.txt || fail "report: $(cat report.txt)"
$CHECK text report.txt "$RUN" || fail "the report's tables"
for t in Models Serving "Prefill and time per part" Evaluations "AUC per task" Training Pruning Quantization; do
  grep -qx "$t" report.txt || fail "section $t missing"
done
# a value that was never measured is "-", never 0: the command stage's model has no parameter
# count, no weight bytes and no reference; the MLP pruning step cut no KV group
row=$(grep -E '^  handmade ' report.txt) || fail "the handmade model's row"
expect_eq "$(awk '{print $3, $4, $6, $7, $8}' <<<"$row")" "- - - - -" "unmeasured values of the handmade model"
row=$(grep -E '^  prune-mlp-grad' report.txt | head -1)
expect_eq "$(awk '{print $(NF-2), $NF}' <<<"$row")" "- -" "KV groups and attention error of an MLP-only step"
grep -q 'bench\[fp8\]' <(sed -n '/^Prefill/,/^$/p' report.txt) && fail "a benchmark without prefill metrics has a prefill row"
pass "report: tables within 100 columns, values equal the store's, absent values shown as -"

"$SMELT" report "$RUN" --raw > raw.txt || fail "report --raw"
expect_contains "$(cat raw.txt)" "eval[teacher] (evaluate, ok)" "--raw prints one block per stage"
expect_contains "$(cat raw.txt)" "ttft_ms_p50 1032" "--raw shows the metrics as stored"
pass "report --raw: the metric view"

"$SMELT" report "$RUN" --html page.html > html.out || fail "report --html: $(cat html.out)"
expect_contains "$(cat html.out)" "wrote page.html" "report --html says where"
# 3 trade-off plots (parameters, bytes, TTFT), 1 pruning, 1 + 4 quantization, 4 loss curves,
# TTFT and TPOT distributions, time per layer
$CHECK html page.html "$RUN" 16 || fail "the HTML page"
pass "report --html: self-contained page, 16 figures with labelled axes"

CHROMIUM=$(command -v chromium || command -v chromium-browser || command -v google-chrome || true)
if [ -n "$CHROMIUM" ]; then
  # the page is about 6,300 CSS pixels tall at 1,300 wide; rendered at half scale (a quarter of
  # the pixels to decode in Python) the screenshot is 650 x 3500
  timeout 120 "$CHROMIUM" --headless --no-sandbox --disable-gpu --hide-scrollbars --user-data-dir="$WORK/chromium" \
    --force-device-scale-factor=0.5 --window-size=1300,7000 --screenshot="$WORK/page.png" "file://$WORK/page.html" \
    > chromium.log 2>&1 || fail "chromium did not render the page: $(tail -5 chromium.log)"
  # the series colours of svg.c's palette (#1f77b4, #d62728) must be drawn: an error page has neither
  python3 "$SMELT_SOURCE_DIR/tests/cli/png_check.py" stats page.png 650 3500 1f77b4 d62728 || fail "the screenshot"
  pass "report --html: rendered by headless Chromium"
elif [ "${SMELT_REQUIRE_CHROMIUM:-}" = 1 ]; then
  fail "chromium is absent and SMELT_REQUIRE_CHROMIUM=1 (scripts/install-deps.sh installs it)"
else
  echo "skip: the Chromium rendering check: no chromium on PATH (scripts/install-deps.sh installs it)"
fi

# A real run of the stages on main (data, train SFT and distillation, quantize, evaluate with a
# reference) on a tiny model, about 2 s: the same checks against the store, 6 figures (AUC against
# parameters and bytes, quantization error per layer and per linear, two loss curves).
cat > real.yaml <<'YAML'
smelt: 1
name: real-report
seed: 7
defaults:
  train: {data: data, steps: 12, batch_tokens: 2048, seq_len: 256, valid_examples: 16, valid_every: 6}
stages:
  data: {kind: data, source: synthetic, members: 24, items: 40, tasks: [like, save], history: 6,
         calibration: {samples: 8, from: train}}
  teacher:
    kind: train
    init: {arch: llama, hidden: 32, layers: 2, heads: 2, kv_heads: 1, intermediate: 64}
    loss: {ce: 1.0}
  student:
    kind: train
    init: {arch: llama, hidden: 16, layers: 1, heads: 2, kv_heads: 1, intermediate: 32}
    teacher: teacher
    loss: {fkl: 0.9, ce: 0.1}
  w4: {kind: quantize, model: student, calibration: data.calibration, method: rtn, bits: 4, group_size: 16}
  eval-teacher: {kind: evaluate, model: teacher, data: data}
  eval-student: {kind: evaluate, model: student, data: data, reference: eval-teacher}
  eval-w4: {kind: evaluate, model: w4, data: data, reference: eval-teacher}
YAML
OMP_NUM_THREADS=1 "$SMELT" run real.yaml > real.out 2>&1 || fail "the real run: $(tail -20 real.out)"
REAL=$(q "SELECT run_id FROM runs WHERE name = 'real-report'")
"$SMELT" report "$REAL" --html real.html > real.txt || fail "report of the real run: $(cat real.txt)"
$CHECK text real.txt "$REAL" || fail "the real run's tables"
$CHECK html real.html "$REAL" 6 || fail "the real run's page"
row=$(grep -E '^  w4 ' real.txt | head -1)
expect_contains "$row" "quantize rtn w4 g16" "the quantized model's kind"
expect_contains "$(grep -E '^  student ' real.txt | sed -n 2p)" "distill" "the student's training row"
pass "report: a real run of data, train, quantize and evaluate stages"

# bad input: exit 2 with the cause, nothing written
set +e
"$SMELT" report "$RUN" --html "$WORK/no/such/dir/page.html" > bad.out 2>&1; rc=$?
set -e
expect_eq "$rc" 2 "--html into a missing folder"
expect_contains "$(cat bad.out)" "the folder $WORK/no/such/dir does not exist" "the message names the folder"
[ ! -e "$WORK/no" ] || fail "a missing folder was created"
set +e
"$SMELT" report "$RUN" --raw --html x.html > bad.out 2>&1; rc=$?
set -e
expect_eq "$rc" 2 "--raw with --html"
[ ! -e x.html ] || fail "a page was written for bad usage"
set +e
"$SMELT" report no-such-run > bad.out 2>&1; rc=$?
set -e
expect_eq "$rc" 2 "an unknown run"
pass "report: bad arguments exit 2 before writing anything"
