# `smelt plan` lists run/cached with reasons and writes nothing; `smelt query` answers over
# the documented views in three formats and refuses every write; `smelt report` shows metrics.
source "$(dirname "$0")/lib.sh"
cat > p.yaml <<'YAML'
smelt: 1
name: planned
stages:
  one:
    kind: command
    params: {n: 1}
    run: echo "auc 0.7" >> $SMELT_METRICS; echo "ms 12.5" >> $SMELT_METRICS; echo 1 > $SMELT_OUTPUT_DIR/x
  two:
    kind: command
    inputs: {x: one}
    run: echo "auc 0.9" >> $SMELT_METRICS; cat $SMELT_INPUT_X/x > $SMELT_OUTPUT_DIR/y
YAML
# Without a store: everything runs, and no store is created.
PLAN0=$("$SMELT" plan p.yaml)
expect_contains "$PLAN0" "one                      run: new stage" "plan without a store"
[ ! -e "$WORK/store" ] || fail "plan created a store"
"$SMELT" run p.yaml > run.out || fail "run failed"
fingerprint() { (cd "$WORK/store" && find . -type f | sort | xargs sha256sum; ls -la --time-style=+ . | awk '{print $1, $5, $NF}'); }
fingerprint > before.txt
PLAN1=$("$SMELT" plan p.yaml)
PLAN2=$("$SMELT" plan p.yaml --set stages.one.params.n=2)
fingerprint > after.txt
diff before.txt after.txt > /dev/null || fail "plan changed the store: $(diff before.txt after.txt)"
expect_contains "$PLAN1" "one                      cached (from run" "unchanged stage is cached"
expect_contains "$PLAN1" "0 to run, 2 cached" "plan summary"
expect_contains "$PLAN2" "one                      run: key differs from run" "changed stage runs"
expect_contains "$PLAN2" "params.n: 1 -> 2" "plan names the field"
expect_contains "$PLAN2" "two                      run: upstream one will run" "descendant runs"

# Query formats.
RUN=$(q "SELECT run_id FROM runs")
expect_eq "$(q "SELECT count(*) FROM stages WHERE run_id = '$RUN' AND status = 'ok'")" 2 "csv"
JSON=$("$SMELT" query --json "SELECT stage, value FROM latest_metrics WHERE key = 'auc' ORDER BY stage")
python3 -c 'import json,sys; d=json.loads(sys.argv[1]); assert d == [{"stage":"one","value":0.7},{"stage":"two","value":0.9}], d' "$JSON" \
  || fail "json output: $JSON"
TABLE=$("$SMELT" query "SELECT stage, key, value FROM latest_metrics WHERE stage = 'one' ORDER BY key")
expect_contains "$TABLE" "one    auc  0.7" "table output"
# A realistic question: the stage with the best AUC per millisecond.
expect_eq "$(q "SELECT a.stage FROM latest_metrics a JOIN latest_metrics m ON m.run_id = a.run_id AND m.stage = a.stage AND m.key = 'ms' WHERE a.key = 'auc' ORDER BY a.value / m.value DESC LIMIT 1")" one "auc per ms"

# Writes are refused, and nothing changes.
fingerprint > before.txt
for sql in "DELETE FROM runs" "DELETE FROM run" "UPDATE stage SET status = 'x'" "INSERT INTO metric VALUES ('a','b','c',1,2)" \
           "DROP TABLE run" "CREATE TABLE t(x)" "ATTACH DATABASE '/tmp/x.db' AS x" "PRAGMA writable_schema = 1" \
           "SELECT 1; DELETE FROM run" "VACUUM" "REINDEX" "PRAGMA user_version = 7"; do
  set +e
  "$SMELT" query "$sql" > /dev/null 2> q.err
  rc=$?
  set -e
  expect_eq $rc 2 "exit status of '$sql'"
  [ -s q.err ] || fail "no message for '$sql'"
done
fingerprint > after.txt
diff before.txt after.txt > /dev/null || fail "a refused query changed the store"
expect_contains "$(cat q.err)" "smelt query:" "message prefix"

REPORT=$("$SMELT" report "$RUN")
expect_contains "$REPORT" "STAGE  STATUS  auc  ms" "report header"
expect_contains "$REPORT" "one    ok      0.7  12.5" "report row"
expect_contains "$REPORT" "two    ok      0.9  -" "report row without a metric"
pass "plan writes nothing; query reads and refuses writes; report"
