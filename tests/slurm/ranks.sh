#!/usr/bin/env bash
# A stage with ranks: 2 is one Slurm job with 2 tasks whose 2 MPI processes start inside that
# allocation: with the default launcher (mpirun, which reads the allocation from Slurm) and with
# srun --mpi=pmix. Both ranks log their rank and the job id of the allocation, and the built-in
# mpi-selftest stage all-reduces across them.
source "$(dirname "$0")/lib.sh"
# OpenMPI's plugins keep allocations until exit (see tests/cli/mpi.sh): no leak checking here.
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0"
cat > mpi.yaml <<'YAML'
smelt: 1
stages:
  ranks:
    kind: command
    ranks: 2
    params: {launcher: default}
    run: |
      echo "hello from rank $SMELT_RANK of $SMELT_WORLD_SIZE in job $SLURM_JOB_ID (slurm task $SLURM_PROCID, ompi rank ${OMPI_COMM_WORLD_RANK:-none})"
      echo "$SMELT_RANK" > $SMELT_OUTPUT_DIR/rank.txt
  allreduce:
    kind: mpi-selftest
    ranks: 2
    length: 4096
YAML
check_run() { # check_run RUN LABEL LENGTH
  local run=$1 n=$3 job log
  job=$(job_of "$run" ranks)
  expect_contains "$(cat "$(q "SELECT script_path FROM slurm_jobs WHERE run_id = '$run' AND stage = 'ranks'")")" \
                  "#SBATCH --ntasks=2" "ranks: 2 asks Slurm for 2 tasks ($2)"
  log=$(q "SELECT log_path FROM stages WHERE run_id = '$run' AND stage = 'ranks'")
  expect_contains "$(cat "$log")" "hello from rank 0 of 2 in job $job" "rank 0 inside the allocation ($2)"
  expect_contains "$(cat "$log")" "hello from rank 1 of 2 in job $job" "rank 1 inside the allocation ($2)"
  expect_eq "$(q "SELECT count(*) FROM artifacts WHERE run_id = '$run' AND stage = 'ranks'")" 1 "one output ($2)"
  log=$(q "SELECT log_path FROM stages WHERE run_id = '$run' AND stage = 'allreduce'")
  expect_contains "$(cat "$log")" "rank 0 of 2: all-reduce of $n elements ok" "rank 0 of the self-test ($2)"
  expect_contains "$(cat "$log")" "rank 1 of 2: all-reduce of $n elements ok" "rank 1 of the self-test ($2)"
  expect_eq "$(q "SELECT value FROM latest_metrics WHERE run_id = '$run' AND stage = 'allreduce' AND key = 'world_size'")" 2 "world size ($2)"
  # sum over i of 3 * (i + 1) for i < n
  expect_eq "$(q "SELECT value FROM latest_metrics WHERE run_id = '$run' AND stage = 'allreduce' AND key = 'sum'")" \
            "$((3 * n * (n + 1) / 2))" "all-reduced sum ($2)"
}

"$SMELT" submit mpi.yaml --slurm > submit.out 2>&1 || fail "submit failed: $(cat submit.out)"
RUN=$(q "SELECT run_id FROM runs")
trap 'cleanup_jobs $RUN; cleanup_jobs ${RUN2:-none}' EXIT
wait_run "$RUN" ok 90
check_run "$RUN" mpirun 4096
expect_contains "$(cat "$(q "SELECT log_path FROM stages WHERE run_id = '$RUN' AND stage = 'ranks'")")" \
                "ompi rank 1)" "mpirun started the ranks"

# srun as the launcher, with new keys (other parameters) so that both stages run again.
"$SMELT" submit mpi.yaml --slurm --launcher 'srun --mpi=pmix' --set stages.ranks.params.launcher=srun \
  --set stages.allreduce.length=2048 > submit2.out 2>&1 || fail "submit with srun failed: $(cat submit2.out)"
RUN2=$(q "SELECT run_id FROM runs ORDER BY created_at DESC LIMIT 1")
wait_run "$RUN2" ok 90
check_run "$RUN2" "srun --mpi=pmix" 2048
expect_contains "$(cat "$(q "SELECT log_path FROM stages WHERE run_id = '$RUN2' AND stage = 'ranks'")")" \
                "slurm task 1, ompi rank none)" "srun started the ranks as Slurm tasks"
pass "ranks: 2 runs 2 MPI processes inside one Slurm allocation (mpirun and srun --mpi=pmix)"
