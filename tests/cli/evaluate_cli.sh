# The data and evaluate stages through the CLI: a synthetic data set, a model artifact made by a
# command stage (the train stage's stand-in) and an external model folder; per-task AUC, log loss,
# response loss, deltas against a reference; ranks: 2 gives byte-identical outputs; precision: bf16
# (the metric, the exact fp32 fallback, bf16 in effect); an Alpaca pairs file with Yes./No. outputs
# gets AUC and response loss; a one-class task is reported as undefined, never 0.5; malformed data
# and mismatched models fail with nothing registered.
source "$(dirname "$0")/lib.sh"
source "$SMELT_SOURCE_DIR/tests/lib_shared.sh"
export OMP_NUM_THREADS=1
# OpenMPI's plugins keep allocations until exit (see mpi.sh): no leak checking under ASan here.
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0"
H=${SMELT_DATA_HELPER:?SMELT_DATA_HELPER must point to the data_helper binary}
"$H" model rand 261 1 || fail "random model"
"$H" model rand2 261 2 48 2 || fail "random model 2"
"$H" model small 200 3 || fail "random model with a small vocabulary"
cat > eval.yaml <<'YAML'
smelt: 1
seed: 7
stages:
  data:
    kind: data
    source: synthetic
    members: 24
    items: 40
    tasks: [like, save]
    history: 8
    history_tokens: 200
    interactions: 30
    calibration: {samples: 16, from: train}
  teacher:
    kind: command
    files: {model: ./rand}
    run: cp -r $SMELT_FILE_MODEL/. $SMELT_OUTPUT_DIR/
  eval-teacher:
    kind: evaluate
    model: teacher
    data: data
  eval-student:
    kind: evaluate
    model: ./rand2
    data: data
    reference: eval-teacher
  eval-calib:
    kind: evaluate
    model: teacher
    data: data.calibration
    split: calibration
YAML
"$SMELT" run eval.yaml > run1.out 2>&1 || fail "run failed: $(cat run1.out)"
RUN=$(q "SELECT run_id FROM runs")
m() { q "SELECT value FROM latest_metrics WHERE run_id = '$RUN' AND stage = '$1' AND key = '$2'"; }
N=$(m data examples_test)
expect_eq "$(m eval-teacher examples)" "$N" "every test example scored"
for k in auc auc_like auc_save log_loss response_loss perplexity; do
  v=$(m eval-teacher $k)
  [ -n "$v" ] || fail "metric $k missing"
done
python3 - "$(m eval-student auc)" "$(m eval-teacher auc)" "$(m eval-student auc_delta)" "$(m eval-student auc_delta_pct)" \
  "$(m eval-student auc_ref)" "$(m eval-student response_loss)" "$(m eval-student perplexity)" <<'PY' || fail "deltas"
import math, sys
a, ref, d, pct, r, loss, ppl = map(float, sys.argv[1:])
assert 0 < a < 1 and 0 < ref < 1, (a, ref)
# smelt query prints 10 significant digits
assert r == ref, (r, ref)
assert abs(d - (a - ref)) < 1e-9 and abs(pct - 100 * (a - ref) / ref) < 1e-6, (d, a - ref, pct)
assert abs(ppl - math.exp(loss)) < 1e-8 * ppl
PY
expect_eq "$(m eval-calib examples)" 16 "the calibration artifact evaluates"
"$SMELT" checkout "$RUN" eval-student -o student > /dev/null || fail "checkout"
expect_eq "$(($(wc -l < student/predictions.tsv) - 1))" "$N" "one prediction per example"
expect_contains "$(cat student/metrics.json)" '"auc_delta_pct"' "metrics.json holds the deltas"
pass "evaluate: per-task AUC, log loss, response loss, deltas against a reference"

# ranks: 2 shards the examples over two MPI processes: the same bytes as one rank
SMELT_STORE=$WORK/store2 "$SMELT" run eval.yaml --set stages.eval-student.ranks=2 --set stages.eval-teacher.ranks=2 \
  > run2.out 2>&1 || fail "ranks 2 run failed: $(cat run2.out)"
for st in eval-teacher eval-student; do
  d1=$(q "SELECT digest FROM artifacts WHERE stage = '$st'")
  d2=$(SMELT_STORE=$WORK/store2 q "SELECT digest FROM artifacts WHERE stage = '$st'")
  expect_eq "$d2" "$d1" "$st on 2 ranks equals 1 rank (artifact digest)"
  expect_eq "$(SMELT_STORE=$WORK/store2 q "SELECT ranks FROM stages WHERE stage = '$st'")" 2 "$st ran on 2 ranks"
done
LOG=$(SMELT_STORE=$WORK/store2 q "SELECT log_path FROM stages WHERE stage = 'eval-student'")
expect_contains "$(cat "$LOG")" "rank 1: scoring examples" "rank 1 scored its shard"
pass "evaluate on 2 ranks equals 1 rank"

# precision: bf16 (docs/engine.md): the stage's wiring. The metric bf16 says which precision ran.
# Where it falls back (SMELT_NO_BF16=1, or a CPU without AVX512_BF16) the scores are the fp32 scores
# exactly; where bf16 runs, every margin z_yes - z_no is recomputed (the largest move is printed)
# and the fp32 run's are not reproduced bit for bit. The accuracy of bf16 logits against fp32 (a derived
# first-order bound) is test_bf16's.
sed -n '/^stages:/,/^  eval-teacher:/p' eval.yaml | sed '1i smelt: 1\nseed: 7' > bf16.yaml
printf '    kind: evaluate\n    model: teacher\n    data: data\n    precision: bf16\n' >> bf16.yaml
"$SMELT" checkout "$(q "SELECT run_id FROM runs WHERE name = 'eval'")" eval-teacher -o fp32-scores > /dev/null || fail "checkout fp32"
for mode in nobf16 bf16; do
  export SMELT_STORE=$WORK/store-$mode
  if [ $mode = nobf16 ]; then SMELT_NO_BF16=1 "$SMELT" run bf16.yaml > $mode.out 2>&1 || fail "$mode run: $(cat $mode.out)"
  else "$SMELT" run bf16.yaml > $mode.out 2>&1 || fail "$mode run: $(cat $mode.out)"; fi
  want=0
  [ $mode = bf16 ] && grep -qw avx512_bf16 /proc/cpuinfo && want=1
  expect_eq "$(q "SELECT value FROM latest_metrics WHERE stage = 'eval-teacher' AND key = 'bf16'")" $want \
    "precision bf16 ($mode): the metric says which precision ran"
  LOG=$(q "SELECT log_path FROM stages WHERE stage = 'eval-teacher'")
  if [ $want = 0 ]; then expect_contains "$(cat "$LOG")" "scoring runs in fp32" "the fallback is a warning in the log"; fi
  "$SMELT" checkout "$(q "SELECT run_id FROM runs")" eval-teacher -o $mode-scores > /dev/null || fail "checkout $mode"
  python3 - fp32-scores/predictions.tsv $mode-scores/predictions.tsv $want <<'PY' || fail "$mode scores against fp32"
import sys
rows = lambda p: [l.split("\t") for l in open(p).read().splitlines()]
a, b, bf16 = rows(sys.argv[1]), rows(sys.argv[2]), sys.argv[3] == "1"
c = a[0].index("margin")  # z_yes - z_no, what the AUC ranks
assert len(a) == len(b) and [r[:6] for r in a] == [r[:6] for r in b], "the same examples in the same order"
worst = max(abs(float(x[c]) - float(y[c])) for x, y in zip(a[1:], b[1:]))
print(f"precision bf16 ({'bf16' if bf16 else 'fp32 fallback'}): largest margin move against fp32 {worst:.2e}")
assert (worst > 0) if bf16 else a == b, worst
PY
done
export SMELT_STORE=$WORK/store
pass "evaluate precision bf16: the metric, the exact fp32 fallback, bf16 in effect where the CPU has it"

# An Alpaca-style file whose outputs are Yes./No.: AUC and response loss; all-yes: AUC undefined
{
  echo "["
  for i in $(seq 1 40); do
    ans=$([ $((i % 3)) -eq 0 ] && echo "No." || echo "Yes.")
    echo "  {\"instruction\": \"Will member $i like item $((i * 7 % 13))?\", \"input\": \"History: item $((i % 5)), item $((i % 7))\", \"output\": \"$ans\"}$([ $i -lt 40 ] && echo ,)"
  done
  echo "]"
} > alpaca.json
sed -e 's/"No\."/"Yes."/' alpaca.json > alpaca_yes.json
cat > pairs.yaml <<'YAML'
smelt: 1
stages:
  pairs:
    kind: data
    source: pairs
    path: alpaca.json
    split: {valid: 0, test: 0.5}
  eval:
    kind: evaluate
    model: ./rand
    data: pairs
  yes:
    kind: data
    source: pairs
    path: alpaca_yes.json
    split: {valid: 0, test: 0.5}
  eval-yes:
    kind: evaluate
    model: ./rand
    data: yes
YAML
"$SMELT" run pairs.yaml > pairs.out 2>&1 || fail "pairs run failed: $(cat pairs.out)"
RUN=$(q "SELECT run_id FROM runs WHERE name = 'pairs'")
for k in auc log_loss response_loss perplexity; do [ -n "$(m eval $k)" ] || fail "pairs: metric $k missing"; done
expect_eq "$(m eval-yes auc)" "" "no AUC when the test split has one class"
expect_eq "$(m eval-yes tasks_undefined)" 1 "the undefined task is counted"
[ -n "$(m eval-yes response_loss)" ] || fail "response loss is still reported"
LOG=$(q "SELECT log_path FROM stages WHERE run_id = '$RUN' AND stage = 'eval-yes'")
expect_contains "$(cat "$LOG")" "task pairs: AUC is undefined" "the warning names the task"
"$SMELT" checkout "$RUN" eval-yes -o yes > /dev/null
expect_contains "$(cat yes/metrics.json)" '"auc":	null' "metrics.json says null, not 0.5"
pass "Alpaca pairs evaluated both ways; a one-class task is undefined, not 0.5"

# Malformed data and mismatched models: the stage fails, names the file and line, registers nothing
printf 'item,title\na,Alpha\nb,Beta\n' > items.csv
printf 'member,item,label,timestamp\nm,a,1,5\nm,b,0,abc\n' > bad.csv
head -c 400 "$SMELT_SOURCE_DIR/tests/data/auc/fixtures.json" > notazip.zip
cat > bad.yaml <<'YAML'
smelt: 1
stages:
  bad-number:
    kind: data
    source: interactions
    path: bad.csv
    items_path: items.csv
  bad-zip:
    kind: data
    source: movielens
    path: notazip.zip
  bad-label:
    kind: data
    source: synthetic
    members: 4
    labels: {yes: ' yes!', no: ' no'}
  small-vocab:
    kind: evaluate
    model: ./small
    data: data-ok
  data-ok:
    kind: data
    source: synthetic
    members: 4
    items: 10
YAML
set +e
"$SMELT" run bad.yaml --jobs 2 > bad.out 2>&1
rc=$?
set -e
expect_eq $rc 1 "a run with failing data stages exits 1"
RUN=$(q "SELECT run_id FROM runs WHERE name = 'bad'")
err() { q "SELECT error FROM stages WHERE run_id = '$RUN' AND stage = '$1'"; }
expect_contains "$(err bad-number)" "bad.csv:3: timestamp 'abc' is not a number" "bad number: file and line"
expect_contains "$(err bad-zip)" "notazip.zip" "not a zip: the file is named"
expect_contains "$(err bad-label)" "labels.yes ' yes!' is 2 tokens" "a label that is not one token"
expect_contains "$(err small-vocab)" "the model's vocabulary has 200" "model/data vocabulary mismatch"
for st in bad-number bad-zip bad-label small-vocab; do
  expect_eq "$(q "SELECT count(*) FROM artifacts WHERE run_id = '$RUN' AND stage = '$st'")" 0 "$st registered nothing"
  expect_eq "$(q "SELECT status FROM stages WHERE run_id = '$RUN' AND stage = '$st'")" failed "$st failed"
done
pass "malformed data and a mismatched model fail cleanly and register nothing"

# A real model on text: stories260K (llama2.c file) with its own tokenizer copied into a text data
# set predicts TinyStories-like sentences far better than the same words shuffled.
if shared_file S models/stories260K "the stories260K perplexity check" &&
   shared_file S_BIN models/stories260K/stories260K.bin "the stories260K perplexity check"; then
  cat > stories.jsonl <<'JSONL'
{"text": "Once upon a time, there was a little girl named Lily. She loved to play outside in the park. One day, she saw a big, red ball."}
{"text": "Tom had a small dog. The dog liked to run and jump. One day, Tom and his dog went to the park to play with a ball."}
{"text": "The sun was shining and the birds were singing. Sam wanted to go outside and play with his friends."}
JSONL
  # the same words in a scrambled order (a fixed permutation: every 3rd word first, then the rest)
  python3 -c "
import json
for l in open('stories.jsonl'):
    w = json.loads(l)['text'].split()
    print(json.dumps({'text': ' '.join(w[::3] + [x for i, x in enumerate(w) if i % 3])}))" > scrambled.jsonl
  cat > stories.yaml <<YAML
smelt: 1
stages:
  stories:
    kind: data
    source: text
    path: ./stories.jsonl
    tokenizer: $S/tok512.bin
    split: {valid: 0, test: 0}
  scrambled:
    kind: data
    source: text
    path: ./scrambled.jsonl
    tokenizer: $S/tok512.bin
    split: {valid: 0, test: 0}
  ppl:
    kind: evaluate
    model: $S/stories260K.bin
    data: stories
    split: train
  ppl-scrambled:
    kind: evaluate
    model: $S/stories260K.bin
    data: scrambled
    split: train
YAML
  "$SMELT" run stories.yaml > stories.out 2>&1 || fail "stories run failed: $(cat stories.out)"
  RUN=$(q "SELECT run_id FROM runs WHERE name = 'stories'")
  python3 - "$(m ppl perplexity)" "$(m ppl-scrambled perplexity)" "$(m ppl targets)" "$(m ppl-scrambled targets)" <<'PY' || fail "stories260K perplexity"
import sys
p, q, t, u = map(float, sys.argv[1:])
print(f"stories260K perplexity: {p:.2f} on stories, {q:.1f} on the same words scrambled ({t:.0f} and {u:.0f} targets)")
assert t == u and p < 10 and q > 10 * p
PY
  "$SMELT" checkout "$RUN" stories -o stories-art > /dev/null
  [ -f stories-art/tokenizer/tokenizer.bin ] || fail "the llama2.c tokenizer is copied into the artifact"
  pass "stories260K: low perplexity on stories, high on scrambled words (llama2.c model and tokenizer)"
fi
