# Two runs of different recipes on one store at the same time both succeed, with no
# "database is locked" anywhere, and a third run computing the same stage waits for it.
source "$(dirname "$0")/lib.sh"
make_recipe() { # name, n stages
  echo "smelt: 1"; echo "name: $1"; echo "stages:"
  for i in $(seq 1 $2); do
    echo "  $1-s$i:"
    echo "    kind: command"
    [ $i -gt 1 ] && echo "    inputs: {prev: $1-s$((i - 1))}"
    echo "    params: {which: $1, i: $i}"
    echo "    run: for k in \$(seq 1 300); do echo \"m\$((k % 7)) \$k \$k\" >> \$SMELT_METRICS; done; echo \$SMELT_PARAM_WHICH\$SMELT_PARAM_I > \$SMELT_OUTPUT_DIR/out.txt"
  done
}
make_recipe alpha 8 > alpha.yaml
make_recipe beta 8 > beta.yaml
"$SMELT" run alpha.yaml --jobs 2 > alpha.out 2>&1 &
A=$!
"$SMELT" run beta.yaml --jobs 2 > beta.out 2>&1 &
B=$!
"$SMELT" runs > /dev/null 2>runs.err || true   # a reader in the middle
wait $A || fail "alpha failed: $(cat alpha.out)"
wait $B || fail "beta failed: $(cat beta.out)"
if grep -ri "locked\|busy" alpha.out beta.out runs.err $WORK/store/logs; then fail "a process saw a locked database"; fi
expect_eq "$(q "SELECT count(*) FROM runs WHERE status = 'ok'")" 2 "both runs ok"
expect_eq "$(q "SELECT count(*) FROM metrics")" $((16 * 300)) "every metric point recorded"

# The same new stage requested by two runs at once is computed once; the other reuses it.
cat > same.yaml <<YAML
smelt: 1
stages:
  slow:
    kind: command
    run: echo start >> $WORK/slow-launches; sleep 1.5; echo done > \$SMELT_OUTPUT_DIR/x.txt
YAML
mkdir -p r1 r2
(cd r1 && "$SMELT" run ../same.yaml > ../same1.out 2>&1) &
P1=$!
sleep 0.3
(cd r2 && "$SMELT" run ../same.yaml > ../same2.out 2>&1) &
P2=$!
wait $P1 || fail "first same-stage run failed: $(cat same1.out)"
wait $P2 || fail "second same-stage run failed: $(cat same2.out)"
expect_eq "$(count_lines slow-launches)" 1 "the shared stage ran once"
expect_eq "$(q "SELECT count(*) FROM stages WHERE stage = 'slow' AND status = 'cached'")" 1 "the other run reused it"
pass "concurrent runs on one store"
