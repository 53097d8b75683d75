# Export then import into an empty store gives identical query results (metric values of 1e300
# and infinity included: far outside int64, they must not be converted to one, which was undefined
# behaviour that the sanitizer build catches); a truncated or tampered archive fails cleanly and
# registers nothing.
source "$(dirname "$0")/lib.sh"
cat > r.yaml <<'YAML'
smelt: 1
name: shipping
seed: 11
stages:
  data:
    kind: command
    params: {rows: 3}
    run: seq 1 $SMELT_PARAM_ROWS > $SMELT_OUTPUT_DIR/rows.txt; mkdir -p $SMELT_OUTPUT_DIR/deep/er; echo x > $SMELT_OUTPUT_DIR/deep/er/x.bin
  train:
    kind: command
    inputs: {data: data}
    run: for s in 1 2 3 4 5; do echo "loss $s 0.$((9 - s))" >> $SMELT_METRICS; done; echo "auc 0.8125" >> $SMELT_METRICS; wc -l < $SMELT_INPUT_DATA/rows.txt > $SMELT_OUTPUT_DIR/model.txt
  eval:
    kind: command
    inputs: {model: train, data: data}
    needs: [data]
    run: echo "auc 0.75" >> $SMELT_METRICS; echo "huge 1e300" >> $SMELT_METRICS; echo "ppl inf" >> $SMELT_METRICS; cat $SMELT_INPUT_MODEL/model.txt > $SMELT_OUTPUT_DIR/report.txt
YAML
"$SMELT" run r.yaml > run.out || fail "run failed"
RUN=$(q "SELECT run_id FROM runs")
"$SMELT" export "$RUN" -o run.tar.zst > export.out || fail "export failed"
[ -s run.tar.zst ] || fail "no archive written"
zstd -dc run.tar.zst | tar -t > listing.txt || fail "the archive is not a zstd tar"
expect_contains "$(cat listing.txt)" "smelt-export.json" "archive listing"

snapshot() { # every documented view, sorted
  for v in runs stages artifacts metrics latest_metrics lineage params; do
    echo "== $v"; "$SMELT" query --csv "SELECT * FROM $v ORDER BY 1, 2, 3"
  done
}
snapshot > before.txt
SMELT_STORE=$WORK/other "$SMELT" import run.tar.zst > import.out || fail "import failed: $(cat import.out)"
SMELT_STORE=$WORK/other snapshot > after.txt
# Log paths point into each store; compare everything else.
sed "s#$WORK/store/#STORE/#g" before.txt > b.txt
sed "s#$WORK/other/#STORE/#g" after.txt > a.txt
diff b.txt a.txt > views.diff || fail "views differ after import: $(cat views.diff)"
[ "$(grep -c . b.txt)" -gt 20 ] || fail "the snapshot is too small to mean anything"
# The imported artifacts are usable: a new run in the other store reuses all three stages.
SMELT_STORE=$WORK/other "$SMELT" run r.yaml > rerun.out || fail "run in the importing store failed"
expect_eq "$(grep -c 'cached (from run' rerun.out)" 3 "imported stages reused"
# Importing again is refused.
set +e
SMELT_STORE=$WORK/other "$SMELT" import run.tar.zst > /dev/null 2> again.err
rc=$?
set -e
expect_eq $rc 2 "re-import exit status"
expect_contains "$(cat again.err)" "already in the store" "re-import message"

# Truncated archive: clean failure, nothing registered.
SIZE=$(stat -c %s run.tar.zst)
head -c $((SIZE / 2)) run.tar.zst > truncated.tar.zst
set +e
SMELT_STORE=$WORK/fresh "$SMELT" import truncated.tar.zst > /dev/null 2> trunc.err
rc=$?
set -e
expect_eq $rc 2 "truncated import exit status"
expect_contains "$(cat trunc.err)" "truncated or damaged" "truncated import message"
expect_eq "$(SMELT_STORE=$WORK/fresh q "SELECT count(*) FROM runs")" 0 "runs after a truncated import"
expect_eq "$(SMELT_STORE=$WORK/fresh q "SELECT count(*) FROM artifacts")" 0 "artifacts after a truncated import"
expect_eq "$(ls $WORK/fresh/tmp | wc -l)" 0 "staging left behind"

# Tampered object inside an uncompressed archive: the digest check names it.
"$SMELT" export "$RUN" -o run.tar > /dev/null
python3 - run.tar <<'PY'
import sys, tarfile, io
src = sys.argv[1]
with tarfile.open(src) as t:
    members = [(m, t.extractfile(m).read() if m.isfile() else None) for m in t.getmembers()]
with tarfile.open(src, "w") as t:
    for m, data in members:
        if m.name.startswith("objects/") and data and b"3" in data:
            data = data.replace(b"3", b"4", 1)
        if data is not None:
            m.size = len(data)
            t.addfile(m, io.BytesIO(data))
PY
set +e
SMELT_STORE=$WORK/fresh2 "$SMELT" import run.tar > /dev/null 2> tamper.err
rc=$?
set -e
expect_eq $rc 2 "tampered import exit status"
expect_contains "$(cat tamper.err)" "is damaged: its content hashes to" "tampered import message"
expect_eq "$(SMELT_STORE=$WORK/fresh2 q "SELECT count(*) FROM runs")" 0 "runs after a tampered import"
# An SQLite error in the middle of the export (here a damaged page of the manifest_entry table,
# read while listing the run's objects) fails the export; it never writes an archive that lacks
# objects (the loop used to read the error as "no more rows").
cat > many.yaml <<'YAML'
smelt: 1
name: many
stages:
  files:
    kind: command
    run: for i in $(seq 1 300); do echo "file $i" > $SMELT_OUTPUT_DIR/f$i.txt; done
YAML
export SMELT_STORE=$WORK/damaged
"$SMELT" run many.yaml > many.out || fail "run of many.yaml failed: $(cat many.out)"
MANY=$(q "SELECT run_id FROM runs")
python3 - "$WORK/damaged/smelt.db" <<'PY' || fail "could not damage the database"
import sqlite3, sys
db = sys.argv[1]
c = sqlite3.connect(db)
leaves = [r[0] for r in c.execute("SELECT pageno FROM dbstat WHERE name = 'manifest_entry' AND pagetype = 'leaf' ORDER BY pageno")]
size = c.execute("PRAGMA page_size").fetchone()[0]
c.close()
assert len(leaves) >= 4, leaves
with open(db, "r+b") as f:  # the page type byte of the last leaf: 0xff is no b-tree page type
    f.seek((leaves[-1] - 1) * size)
    f.write(b"\xff")
PY
rc=0
"$SMELT" export "$MANY" -o many.tar > many-export.out 2> many-export.err || rc=$?
[ "$rc" -ne 0 ] || fail "export over a damaged table succeeded: $(cat many-export.out)"
expect_contains "$(cat many-export.err)" "malformed" "export error names SQLite's error"
[ ! -e many.tar ] || fail "a failed export left an archive"
ls many.tar.tmp.* > /dev/null 2>&1 && fail "a failed export left its temporary file"
pass "export/import round trip; truncated and tampered archives refused; an SQLite error fails the export"
