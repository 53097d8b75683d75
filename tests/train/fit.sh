# Training sequences hold what evaluation sees (issue 9, item 6), through the CLI:
# - seq_len left out is the longest example: the log says "0 truncated", the metrics agree, and the
#   seq_len recorded is the data's longest example;
# - a smaller seq_len leaves out the oldest history lines of the ranking examples that are too long
#   (counted in the log and the metrics) and trains;
# - generative (pairs) examples longer than seq_len are refused before training, with a count and
#   the fix; with long_examples: cut they are cut into pieces and trained on.
source "$(dirname "$0")/common.sh"
python3 - <<'PY'
import json
with open("pairs.jsonl", "w") as f:
    for i in range(24):
        f.write(json.dumps({"prompt": f"Tell story {i}:", "response": " once upon a time " * (8 + i % 5)}) + "\n")
PY
model="    init: {arch: llama, hidden: 16, layers: 1, heads: 2, intermediate: 32}
    steps: 2
    batch_tokens: 2048
    optim: {lr: 1.0e-3}"
cat > r.yaml <<YAML
smelt: 1
name: fit
seed: 3
stages:
  data:
    kind: data
    source: synthetic
    members: 30
    items: 60
    tasks: [like]
    history: 8
  whole:
    kind: train
    data: data
$model
    valid_examples: 16
  short:
    kind: train
    data: data
$model
    valid_examples: 16
    seq_len: 200
  stories:
    kind: data
    source: pairs
    path: ./pairs.jsonl
    split: {valid: 0, test: 0}
  pieces:
    kind: train
    data: stories
$model
    valid_examples: 0
    seq_len: 100
    long_examples: cut
YAML
"$SMELT" run r.yaml > run.out 2>&1 || fail "run failed: $(cat run.out)"
m() { q "SELECT value FROM latest_metrics WHERE stage = '$1' AND key = '$2'"; }
log() { cat "$(q "SELECT log_path FROM stages WHERE stage = '$1'")"; }

LONGEST=$(q "SELECT max(value) FROM latest_metrics WHERE stage = 'data' AND key IN ('max_tokens_train', 'max_tokens_valid')")
expect_eq "$(m whole seq_len)" "$LONGEST" "seq_len left out is the longest example"
expect_eq "$(m whole truncated_examples)" 0 "truncated examples with the default seq_len"
expect_contains "$(log whole)" "seq_len $LONGEST: 0 truncated" "the log states 0 truncated examples"

TRUNC=$(m short truncated_examples)
[ "$TRUNC" -gt 0 ] || fail "seq_len 200: no example was shortened (longest $LONGEST)"
[ "$(m short history_lines_dropped)" -ge "$TRUNC" ] || fail "seq_len 200: fewer lines dropped than examples"
expect_contains "$(log short)" "seq_len 200: $TRUNC truncated ($TRUNC left out" "the log counts the shortened examples"
[ -n "$(m short loss)" ] || fail "seq_len 200 did not train"

CUT=$(m pieces cut_examples)
expect_eq "$CUT" "$(m stories examples_train)" "every story is longer than 100 tokens and was cut"
[ -n "$(m pieces loss)" ] || fail "the cut stories did not train"

# without long_examples: cut, the same stage is refused before training, naming the count and the fix
sed -i 's/^    long_examples: cut$//' r.yaml
set +e
"$SMELT" run r.yaml > refused.out 2>&1
rc=$?
set -e
expect_eq $rc 1 "exit status of a run with refused examples"
ERR=$(q "SELECT error FROM stages WHERE stage = 'pieces' ORDER BY started_at DESC LIMIT 1")
expect_contains "$ERR" "$CUT training and 0 validation examples are longer than seq_len 100" "refusal counts them"
expect_contains "$ERR" "long_examples: cut" "refusal names the fix"
RUN=$(q "SELECT run_id FROM runs ORDER BY created_at DESC LIMIT 1")
[ -z "$(q "SELECT 1 FROM metrics WHERE run_id = '$RUN' AND stage = 'pieces' AND key = 'loss'")" ] ||
  fail "the refused stage trained"
pass "train fit: default seq_len without truncation, history lines left out, long examples refused or cut"
