# A corrupted object makes the stage that reads it fail with a digest mismatch naming the
# object; gc frees unreferenced objects only, never those of failed or incomplete runs.
source "$(dirname "$0")/lib.sh"
cat > pair.yaml <<'YAML'
smelt: 1
stages:
  producer:
    kind: command
    run: echo "precious data" > $SMELT_OUTPUT_DIR/data.txt
  consumer:
    kind: command
    inputs: {src: producer}
    params: {version: 1}
    run: cat $SMELT_INPUT_SRC/data.txt > $SMELT_OUTPUT_DIR/copy.txt
YAML
"$SMELT" run pair.yaml > run1.out || fail "first run failed"
# The object holding data.txt: the manifest's single file.
OBJ=$(echo -n "precious data" | { cat; echo; } | sha256sum | cut -d' ' -f1)
F=$WORK/store/objects/${OBJ:0:2}/${OBJ:2}
[ -f "$F" ] || fail "object $OBJ of data.txt not found"
chmod u+w "$F"
echo "tampered" > "$F"
set +e
"$SMELT" run pair.yaml --set stages.consumer.params.version=2 > run2.out 2> run2.err
rc=$?
set -e
expect_eq $rc 1 "exit status of the run reading a corrupt object"
RUN2=$(q "SELECT run_id FROM runs ORDER BY created_at DESC LIMIT 1")
ERR=$(q "SELECT error FROM stages WHERE run_id = '$RUN2' AND stage = 'consumer'")
expect_contains "$ERR" "digest mismatch" "error of the consumer"
expect_contains "$ERR" "$OBJ" "the error names the object"
expect_contains "$(cat run2.err)" "stage consumer failed" "run error names the stage"
# Repair by deleting the damaged object: the producer is recomputed, not reused.
rm -f "$F"
"$SMELT" run pair.yaml --set stages.consumer.params.version=2 > run3.out || fail "run after repair failed: $(cat run3.out)"
expect_contains "$(cat run3.out)" "producer                 ok" "producer recomputed after its object was deleted"

# A failed run and an incomplete (killed) run keep their objects through gc.
cat > failing.yaml <<'YAML'
smelt: 1
stages:
  first:
    kind: command
    run: echo "kept by a failed run" > $SMELT_OUTPUT_DIR/f.txt
  second:
    kind: command
    inputs: {f: first}
    run: exit 3
YAML
set +e; "$SMELT" run failing.yaml > failing.out 2>&1; set -e
cat > killed.yaml <<'YAML'
smelt: 1
stages:
  early:
    kind: command
    run: echo "kept by an incomplete run" > $SMELT_OUTPUT_DIR/e.txt
  late:
    kind: command
    inputs: {e: early}
    run: sleep 30
YAML
setsid "$SMELT" run killed.yaml > killed.out 2>&1 &
K=$!
for _ in $(seq 1 100); do grep -q "late .*running" killed.out 2>/dev/null && break; sleep 0.1; done
kill -9 -- -$K 2>/dev/null || true
pkill -9 -f "smelt exec --store $WORK/store" 2>/dev/null || true
wait $K 2>/dev/null || true

# An unreferenced object (as left by an interrupted import) is garbage.
printf 'orphan bytes' > orphan
ORPH=$(sha256sum orphan | cut -d' ' -f1)
mkdir -p $WORK/store/objects/${ORPH:0:2}
cp orphan $WORK/store/objects/${ORPH:0:2}/${ORPH:2}

DRY=$("$SMELT" gc --dry-run)
expect_contains "$DRY" "would free" "dry run wording"
[ -f $WORK/store/objects/${ORPH:0:2}/${ORPH:2} ] || fail "dry run deleted an object"
GC=$("$SMELT" gc)
expect_contains "$GC" "1 unreferenced objects (12 B)" "gc freed the orphan only"
[ ! -f $WORK/store/objects/${ORPH:0:2}/${ORPH:2} ] || fail "gc kept the orphan"
# Every object any run references is still there and intact.
for d in $(q "SELECT digest FROM artifacts"); do
  f=$WORK/store/objects/${d:0:2}/${d:2}
  [ -f "$f" ] || fail "gc deleted referenced manifest $d"
  for fd in $(grep -o '"digest":"[0-9a-f]*"' "$f" | cut -d'"' -f4); do
    [ -f $WORK/store/objects/${fd:0:2}/${fd:2} ] || fail "gc deleted referenced file object $fd"
  done
done
for text in "kept by a failed run" "kept by an incomplete run"; do
  d=$(echo "$text" | sha256sum | cut -d' ' -f1)
  [ -f $WORK/store/objects/${d:0:2}/${d:2} ] || fail "gc deleted the object of '$text'"
done
AGAIN=$("$SMELT" gc)
expect_contains "$AGAIN" "freed 0 bytes" "a second gc frees nothing"
pass "corrupt objects are named; gc keeps referenced objects"
