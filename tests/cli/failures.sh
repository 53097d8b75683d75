# Retries, a failed stage stopping its descendants while independent branches finish, resume
# after a fix, per-attempt logs, exit statuses and --help on every command.
source "$(dirname "$0")/lib.sh"
L=$WORK/launches
cat > f.yaml <<YAML
smelt: 1
stages:
  a:
    kind: command
    run: echo a >> $L; echo a > \$SMELT_OUTPUT_DIR/a
  flaky:
    kind: command
    retries: 2
    inputs: {a: a}
    run: |
      echo flaky >> $L
      n=\$(cat \$SMELT_CHECKPOINT_DIR/n 2>/dev/null || echo 0); echo \$((n + 1)) > \$SMELT_CHECKPOINT_DIR/n
      echo "attempt \$SMELT_ATTEMPT"
      [ \$n -ge 1 ] || exit 9
      echo ok > \$SMELT_OUTPUT_DIR/f
  broken:
    kind: command
    inputs: {a: a}
    run: echo broken >> $L; test -f $WORK/fixed || { echo "not fixed yet" >&2; exit 4; }; echo b > \$SMELT_OUTPUT_DIR/b
  after-broken:
    kind: command
    inputs: {b: broken}
    run: echo after-broken >> $L; echo c > \$SMELT_OUTPUT_DIR/c
  independent:
    kind: command
    needs: [a]
    run: echo independent >> $L; sleep 0.2; echo d > \$SMELT_OUTPUT_DIR/d
YAML
set +e
"$SMELT" run f.yaml --jobs 2 > run.out 2> run.err
rc=$?
set -e
expect_eq $rc 1 "exit status of a run with a failed stage"
RUN=$(q "SELECT run_id FROM runs")
expect_contains "$(cat run.err)" "stage broken failed; log: $WORK/store/logs/$RUN/broken.1.log" "the run names the stage and its log"
expect_contains "$(cat $WORK/store/logs/$RUN/broken.1.log)" "not fixed yet" "the log holds the stage's stderr"
expect_eq "$(q "SELECT status FROM stages WHERE run_id = '$RUN' AND stage = 'after-broken'")" skipped "descendant skipped"
expect_eq "$(q "SELECT status FROM stages WHERE run_id = '$RUN' AND stage = 'independent'")" ok "independent branch finished"
expect_eq "$(q "SELECT status || ' ' || attempts FROM stages WHERE run_id = '$RUN' AND stage = 'flaky'")" "ok 2" "flaky retried once"
expect_contains "$(cat $WORK/store/logs/$RUN/flaky.1.log)" "attempt 1" "first attempt log"
expect_contains "$(cat $WORK/store/logs/$RUN/flaky.2.log)" "attempt 2" "second attempt log"
expect_eq "$(q "SELECT status FROM runs")" failed "run status"
expect_contains "$(q "SELECT error FROM runs")" "stage broken failed" "run error"
grep -q "^after-broken$" $L && fail "a descendant of the failed stage was launched"

# Fix the cause and resume: only the failed stage and its descendant run.
touch $WORK/fixed
: > $L
"$SMELT" resume "$RUN" > resume.out 2>&1 || fail "resume failed: $(cat resume.out)"
expect_eq "$(sort $L | tr '\n' ' ')" "after-broken broken " "stages launched by resume"
expect_eq "$(q "SELECT status FROM runs")" ok "run status after resume"
RESUME2=$("$SMELT" resume "$RUN")
expect_contains "$RESUME2" "already complete" "resuming a complete run"

# Exit statuses of usage errors and --help on every command.
set +e
"$SMELT" frobnicate > /dev/null 2>&1; expect_eq $? 2 "unknown command"
"$SMELT" run missing.yaml > /dev/null 2> m.err; expect_eq $? 2 "missing recipe"
"$SMELT" status 20990101-000000-zzzz > /dev/null 2> s.err; expect_eq $? 2 "unknown run"
"$SMELT" run f.yaml --jobs 0 > /dev/null 2>&1; expect_eq $? 2 "bad --jobs"
SMELT_STORE=$WORK/nowhere "$SMELT" runs > /dev/null 2> n.err; expect_eq $? 2 "missing store"
set -e
expect_contains "$(cat m.err)" "cannot read the recipe" "missing recipe message"
expect_contains "$(cat s.err)" "no run '20990101-000000-zzzz'" "unknown run message"
expect_contains "$(cat n.err)" "no smelt store at $WORK/nowhere" "missing store message"
for c in run plan resume status runs why query report export import gc checkout version; do
  OUT=$("$SMELT" $c --help) || fail "$c --help failed"
  expect_contains "$OUT" "usage: smelt $c" "$c --help"
done
# `smelt --help` names only what exists: every command it lists answers --help, and every stage
# kind it lists is a kind a recipe may use (not "unknown kind").
"$SMELT" --help > help.txt || fail "smelt --help failed"
expect_contains "$(cat help.txt)" "Exit status: 0 ok, 1" "top-level help"
LISTED=$(sed -n '/^commands:/,/^$/p' help.txt | awk 'NF >= 2 && /^  / {print $1}')
[ "$(echo "$LISTED" | wc -l)" -ge 15 ] || fail "smelt --help lists too few commands: $LISTED"
for c in $LISTED; do
  OUT=$("$SMELT" "$c" --help) || fail "smelt --help lists '$c', but 'smelt $c --help' fails"
  expect_contains "$OUT" "usage: smelt $c" "$c --help"
done
KINDS=$(sed -n 's/^stage kinds of a recipe: //p' help.txt | tr -d ',')
[ -n "$KINDS" ] || fail "smelt --help does not list the stage kinds: $(cat help.txt)"
for k in $KINDS; do
  printf 'smelt: 1\nstages:\n  a:\n    kind: %s\n' "$k" > kind.yaml
  "$SMELT" plan kind.yaml > /dev/null 2> kind.err || true
  if grep -q "unknown kind" kind.err; then fail "smelt --help lists the stage kind '$k', which does not exist"; fi
done
for word in distill prune quantize benchmark; do
  if grep -qw "$word" help.txt && ! grep -qw "$word" <<<"$KINDS $LISTED"; then
    fail "smelt --help names '$word', which is neither a command nor a stage kind: $(cat help.txt)"
  fi
done
pass "retries, failure isolation, resume after a fix, exit statuses, help (only commands and kinds that exist)"
