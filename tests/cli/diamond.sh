# A diamond of 6 command stages: caching (a second run launches nothing), a parameter change
# re-runs exactly that stage and its descendants, and `smelt why` names the changed field.
source "$(dirname "$0")/lib.sh"
L=$WORK/launches
cat > diamond.yaml <<YAML
smelt: 1
name: diamond
stages:
  s1:
    kind: command
    run: echo s1 >> $L; echo one > \$SMELT_OUTPUT_DIR/v.txt
  s2:
    kind: command
    inputs: {up: s1}
    run: echo s2 >> $L; cat \$SMELT_INPUT_UP/v.txt > \$SMELT_OUTPUT_DIR/v.txt; echo two >> \$SMELT_OUTPUT_DIR/v.txt
  s3:
    kind: command
    inputs: {up: s1}
    params: {factor: 3, label: three}
    run: echo s3 >> $L; echo "\$SMELT_PARAM_LABEL x\$SMELT_PARAM_FACTOR" > \$SMELT_OUTPUT_DIR/v.txt; echo "score 0.25" >> \$SMELT_METRICS
  s4:
    kind: command
    inputs: {left: s2, right: s3}
    run: echo s4 >> $L; cat \$SMELT_INPUT_LEFT/v.txt \$SMELT_INPUT_RIGHT/v.txt > \$SMELT_OUTPUT_DIR/v.txt
  s5:
    kind: command
    inputs: {up: s2}
    run: echo s5 >> $L; mkdir -p \$SMELT_OUTPUT_DIR/sub; cat \$SMELT_INPUT_UP/v.txt > \$SMELT_OUTPUT_DIR/sub/w.txt
  s6:
    kind: command
    inputs: {a: s4, b: s5}
    run: echo s6 >> $L; cat \$SMELT_INPUT_A/v.txt \$SMELT_INPUT_B/sub/w.txt > \$SMELT_OUTPUT_DIR/final.txt
YAML
"$SMELT" run diamond.yaml > run1.out || fail "first run failed: $(cat run1.out)"
expect_eq "$(count_lines $L)" 6 "first run launches"
RUN1=$(q "SELECT run_id FROM runs ORDER BY created_at DESC LIMIT 1")

# Second run of the unchanged recipe: no stage process at all, all 6 cached.
: > $L
"$SMELT" run diamond.yaml > run2.out || fail "second run failed"
expect_eq "$(count_lines $L)" 0 "second run launches"
RUN2=$(q "SELECT run_id FROM runs ORDER BY created_at DESC LIMIT 1")
expect_eq "$(q "SELECT count(*) FROM stages WHERE run_id = '$RUN2' AND cached = 1")" 6 "cached stages of run 2"
expect_eq "$(grep -c 'cached (from run' run2.out)" 6 "cached lines printed"
expect_eq "$(q "SELECT group_concat(digest) FROM (SELECT digest FROM artifacts WHERE run_id = '$RUN2' ORDER BY stage)")" \
          "$(q "SELECT group_concat(digest) FROM (SELECT digest FROM artifacts WHERE run_id = '$RUN1' ORDER BY stage)")" \
          "cached artifacts equal the originals"
# Metrics of cached stages are visible in the new run too.
expect_eq "$(q "SELECT value FROM latest_metrics WHERE run_id = '$RUN2' AND stage = 's3' AND key = 'score'")" 0.25 "metric copied"

# Key order, comments and whitespace do not change keys.
sed 's/params: {factor: 3, label: three}/params: {label: three, factor: 3}  # reordered/' diamond.yaml > reordered.yaml
: > $L
"$SMELT" run reordered.yaml > run3.out || fail "reordered run failed"
expect_eq "$(count_lines $L)" 0 "reordered recipe launches"

# Change one param of the third stage: exactly s3 and its descendants s4, s6 re-run.
: > $L
"$SMELT" run diamond.yaml --set stages.s3.params.factor=4 > run4.out || fail "changed run failed"
expect_eq "$(sort $L | tr '\n' ' ')" "s3 s4 s6 " "stages re-run after the change"
RUN4=$(q "SELECT run_id FROM runs ORDER BY created_at DESC LIMIT 1")
expect_eq "$(q "SELECT group_concat(stage) FROM (SELECT stage FROM stages WHERE run_id = '$RUN4' AND cached = 0 ORDER BY stage)")" \
          "s3,s4,s6" "uncached stages in the store"
WHY=$("$SMELT" why "$RUN4" s3)
expect_contains "$WHY" "params.factor: 3 -> 4" "why names the field"
expect_contains "$WHY" "in 1 field" "why counts one field"
WHY4=$("$SMELT" why "$RUN4" s4)
expect_contains "$WHY4" "inputs.right: artifact" "why of a descendant names the changed input"
WHYNEW=$("$SMELT" why "$RUN1" s1)
expect_contains "$WHYNEW" "new: no earlier run has a stage named s1" "why of a new stage"
# The final artifact, checked out of the store.
"$SMELT" checkout "$RUN4" s6 -o final > /dev/null || fail "checkout failed"
expect_eq "$(cat final/final.txt | tr '\n' ' ')" "one two three x4 one two " "final output of the changed run"
# External files: their content, not their name, is part of the key.
echo "v1" > ext.txt
cat > files.yaml <<YAML
smelt: 1
stages:
  reader:
    kind: command
    files: {src: ./ext.txt}
    run: echo reader >> $WORK/launches-files; cat \$SMELT_FILE_SRC > \$SMELT_OUTPUT_DIR/copy.txt; test "\$(pwd)" != "\$SMELT_RECIPE_DIR"; test -f "\$SMELT_RECIPE_DIR/files.yaml"
YAML
mkdir -p sub && cp files.yaml sub/files.yaml && cp ext.txt sub/ext.txt
"$SMELT" run files.yaml > f1.out || fail "files run failed: $(cat f1.out)"
(cd sub && "$SMELT" run files.yaml > ../f2.out) || fail "files run from another folder failed"
expect_eq "$(count_lines launches-files)" 1 "same content elsewhere is cached"
echo "v2" > ext.txt
"$SMELT" run files.yaml > f3.out || fail "files run after a change failed"
expect_eq "$(count_lines launches-files)" 2 "changed content re-runs"
RUNF=$(q "SELECT run_id FROM runs ORDER BY created_at DESC LIMIT 1")
expect_contains "$("$SMELT" why "$RUNF" reader)" "files.src: file content" "why names the file"
set +e; "$SMELT" run files.yaml --set stages.reader.files.src=./nope.txt > /dev/null 2> f4.err; rc=$?; set -e
expect_eq $rc 2 "missing file exit status"
expect_contains "$(cat f4.err)" "which does not exist (relative paths start at the recipe's folder)" "missing file message"
pass "diamond caching, re-run on change, why"
