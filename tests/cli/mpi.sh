# A stage with ranks: 2 really runs under mpirun with 2 processes: a command stage sees
# OMPI_COMM_WORLD_RANK 0 and 1, and the built-in mpi-selftest stage all-reduces across them.
source "$(dirname "$0")/lib.sh"
# OpenMPI's plugins keep allocations until exit and are unloaded before LeakSanitizer looks,
# so their reports cannot be suppressed by name: leak checking is off for this test only (the
# same stage code runs leak-checked without MPI in the other tests).
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0"
command -v mpirun > /dev/null || fail "mpirun is not installed (apt-get install openmpi-bin)"
cat > mpi.yaml <<'YAML'
smelt: 1
stages:
  ranks:
    kind: command
    ranks: 2
    run: |
      echo "hello from rank $OMPI_COMM_WORLD_RANK of $OMPI_COMM_WORLD_SIZE (smelt rank $SMELT_RANK of $SMELT_WORLD_SIZE)"
      echo "$SMELT_RANK" > $SMELT_OUTPUT_DIR/rank.txt
  allreduce:
    kind: mpi-selftest
    ranks: 2
    length: 4096
YAML
"$SMELT" run mpi.yaml > run.out 2>&1 || fail "mpi run failed: $(cat run.out)"
RUN=$(q "SELECT run_id FROM runs")
LOG=$(q "SELECT log_path FROM stages WHERE run_id = '$RUN' AND stage = 'ranks'")
expect_contains "$(cat "$LOG")" "hello from rank 0 of 2 (smelt rank 0 of 2)" "rank 0 line"
expect_contains "$(cat "$LOG")" "hello from rank 1 of 2 (smelt rank 1 of 2)" "rank 1 line"
expect_eq "$(q "SELECT count(*) FROM artifacts WHERE run_id = '$RUN' AND stage = 'ranks'")" 1 "one output (rank 0's)"
LOG2=$(q "SELECT log_path FROM stages WHERE run_id = '$RUN' AND stage = 'allreduce'")
expect_contains "$(cat "$LOG2")" "rank 1 of 2: all-reduce of 4096 elements ok" "rank 1 of the self-test"
expect_eq "$(q "SELECT value FROM latest_metrics WHERE run_id = '$RUN' AND stage = 'allreduce' AND key = 'world_size'")" 2 "world size"
# sum over i of 3 * (i + 1) for i < 4096
expect_eq "$(q "SELECT value FROM latest_metrics WHERE run_id = '$RUN' AND stage = 'allreduce' AND key = 'sum'")" \
          "$((3 * 4096 * 4097 / 2))" "all-reduced sum"
expect_eq "$(q "SELECT ranks FROM stages WHERE run_id = '$RUN' AND stage = 'allreduce'")" 2 "ranks recorded"
pass "ranks: 2 runs two MPI processes that all-reduce"
