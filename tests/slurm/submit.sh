#!/usr/bin/env bash
# A 6-stage command recipe (a diamond with parallel branches) submitted with --slurm completes on
# the real test cluster, its artifacts equal a local run's, every stage ran once as its own job
# with afterok edges mirroring the DAG, per-stage resources override the defaults, plan --slurm
# submits nothing, status makes one Slurm call, and a second submit with other resources submits
# nothing (all cached: resources are not part of a cache key).
# The store is declared shared (SMELT_STORE_FS=shared): the jobs write concurrently through
# SQLite's rollback journal, the mode a network file system gets.
source "$(dirname "$0")/lib.sh"
L=$WORK/launches
cat > six.yaml <<YAML
smelt: 1
name: six
seed: 3
stages:
  a:
    kind: command
    params: {n: 40}
    run: echo a >> $L; seq 1 \$SMELT_PARAM_N > \$SMELT_OUTPUT_DIR/numbers.txt
  b:
    kind: command
    inputs: {a: a}
    run: echo b >> $L; awk '{ s += \$1 } END { print s }' \$SMELT_INPUT_A/numbers.txt > \$SMELT_OUTPUT_DIR/sum.txt
  c:
    kind: command
    inputs: {a: a}
    resources: {time: "0:07:00", cpus: 1, mem: 100M}
    run: echo c >> $L; sort -r \$SMELT_INPUT_A/numbers.txt | head -n 5 > \$SMELT_OUTPUT_DIR/top.txt
  d:
    kind: command
    inputs: {sum: b, top: c}
    run: echo d >> $L; cat \$SMELT_INPUT_SUM/sum.txt \$SMELT_INPUT_TOP/top.txt > \$SMELT_OUTPUT_DIR/d.txt
  e:
    kind: command
    inputs: {d: d}
    run: |
      echo e >> $L
      mkdir -p \$SMELT_OUTPUT_DIR/sub
      wc -l < \$SMELT_INPUT_D/d.txt > \$SMELT_OUTPUT_DIR/sub/lines.txt
      echo "lines \$(cat \$SMELT_OUTPUT_DIR/sub/lines.txt)" >> \$SMELT_METRICS
  f:
    kind: command
    inputs: {e: e, a: a}
    run: echo f >> $L; cat \$SMELT_INPUT_E/sub/lines.txt \$SMELT_INPUT_A/numbers.txt | md5sum > \$SMELT_OUTPUT_DIR/f.txt
YAML

# The reference: a local run in its own store.
SMELT_STORE=$WORK/ref "$SMELT" run six.yaml > ref.out 2>&1 || fail "local reference run failed: $(cat ref.out)"
REF=$(SMELT_STORE=$WORK/ref q "SELECT run_id FROM runs")
REF_DIGESTS=$(SMELT_STORE=$WORK/ref digests "$REF")
expect_eq "$(echo "$REF_DIGESTS" | wc -l)" 6 "outputs of the reference"
: > "$L"

# plan --slurm prints the scripts and the chain and submits nothing (no store is created either).
"$SMELT" plan six.yaml --slurm --time 0:30:00 > plan.out 2>&1 || fail "plan --slurm failed: $(cat plan.out)"
expect_eq "$(calls sbatch)" 0 "sbatch calls of plan --slurm"
[ ! -e "$WORK/store" ] || fail "plan --slurm created the store"
expect_eq "$(grep -c '^#!/bin/sh' plan.out)" 6 "scripts printed by plan --slurm"
expect_contains "$(cat plan.out)" "#SBATCH --dependency=afterok:<b>:<c>" "d waits on b and c"
expect_contains "$(cat plan.out)" "#SBATCH --time=0:07:00" "stage c's own time limit"
expect_contains "$(cat plan.out)" "d                        after b, c" "chain line of d"
expect_contains "$(cat plan.out)" "6 jobs would be submitted; nothing was submitted" "plan summary"

export SMELT_STORE_FS=shared
"$SMELT" submit six.yaml --slurm --time 0:30:00 > submit.out 2>&1 || fail "submit failed: $(cat submit.out)"
RUN=$(q "SELECT run_id FROM runs")
trap 'cleanup_jobs $RUN' EXIT
# The job ids are in the store when submit returns.
expect_eq "$(calls sbatch)" 6 "sbatch calls"
expect_eq "$(q "SELECT count(*) FROM slurm_jobs WHERE run_id = '$RUN'")" 6 "job ids recorded by submit"
expect_eq "$(sql "$WORK/store" 'PRAGMA journal_mode')" delete "journal of a store declared shared"
# The dependencies mirror the DAG.
for pair in "b a" "c a" "d b c" "e d" "f e a"; do
  set -- $pair
  want="afterok"
  for dep in "${@:2}"; do want="$want:$(job_of "$RUN" "$dep")"; done
  # f depends on e then a (declaration order of its inputs): compare as sets.
  got=$(q "SELECT dependency FROM slurm_jobs WHERE run_id = '$RUN' AND stage = '$1'")
  expect_eq "$(echo "${got#afterok:}" | tr ':' '\n' | sort | tr '\n' ' ')" \
            "$(echo "${want#afterok:}" | tr ':' '\n' | sort | tr '\n' ' ')" "dependency of $1"
done
# Resources: the recipe's override for c, the command-line default elsewhere.
SC=$(q "SELECT script_path FROM slurm_jobs WHERE run_id = '$RUN' AND stage = 'c'")
SA=$(q "SELECT script_path FROM slurm_jobs WHERE run_id = '$RUN' AND stage = 'a'")
expect_contains "$(cat "$SC")" "#SBATCH --time=0:07:00" "c's time"
expect_contains "$(cat "$SC")" "#SBATCH --mem=100M" "c's memory"
expect_contains "$(cat "$SA")" "#SBATCH --time=0:30:00" "a's time (the default)"
J_A=$(job_of "$RUN" a)
[ "$(real_squeue -h -j "$J_A" -t all -o %l)" != "" ] || fail "job $J_A unknown to Slurm"

wait_run "$RUN" ok 90
expect_eq "$(digests "$RUN")" "$REF_DIGESTS" "artifacts of the Slurm run equal the local run's"
expect_eq "$(sort "$L" | tr '\n' ' ')" "a b c d e f " "each stage ran exactly once"
expect_eq "$(q "SELECT count(*) FROM stages WHERE run_id = '$RUN' AND status = 'ok'")" 6 "stages ok"
expect_eq "$(q "SELECT value FROM latest_metrics WHERE run_id = '$RUN' AND stage = 'e' AND key = 'lines'")" 6 "metric of e"
for s in a b c d e f; do
  expect_eq "$(q "SELECT state FROM slurm_jobs WHERE run_id = '$RUN' AND stage = '$s'")" completed "job record of $s"
  LOG=$(q "SELECT log_path FROM stages WHERE run_id = '$RUN' AND stage = '$s'")
  expect_contains "$LOG" ".slurm-$(job_of "$RUN" "$s").log" "log of $s is its job's output"
  expect_contains "$(cat "$LOG")" "stage $s (command v1) attempt 1" "log of $s"
done

reset_calls
"$SMELT" status "$RUN" > status.out 2>&1 || fail "status failed: $(cat status.out)"
expect_eq "$(all_calls)" 1 "Slurm calls of one status"
expect_eq "$(calls squeue)" 1 "status reads squeue (no accounting on the test cluster)"
expect_eq "$(grep -c ' COMPLETED ' status.out)" 6 "status shows 6 completed jobs"
expect_contains "$(cat status.out)" "run $RUN (six): ok on Slurm" "status header"

# Submitting the same recipe again, with other resources (never part of a key): every key is
# computable at submit time and completed, so nothing is submitted.
reset_calls
"$SMELT" submit six.yaml --slurm --time 0:20:00 --cpus-per-task 2 --set stages.c.resources.time=0:09:00 \
  > submit2.out 2>&1 || fail "second submit failed: $(cat submit2.out)"
expect_eq "$(calls sbatch)" 0 "sbatch calls of a fully cached submit"
expect_contains "$(cat submit2.out)" "0 submitted, 0 adopted, 0 done, 6 cached" "second submit summary"
# Nothing runs, so there is nothing to follow or stop: the submit says that the run is complete.
expect_contains "$(cat submit2.out)" "is complete: every stage was already computed, nothing was submitted" \
  "what a fully cached submit says"
if grep -q "smelt cancel" submit2.out; then fail "a fully cached submit tells how to stop it: $(cat submit2.out)"; fi
RUN2=$(q "SELECT run_id FROM runs ORDER BY created_at DESC LIMIT 1")
expect_eq "$(run_status "$RUN2")" ok "a fully cached submitted run is ok at once"
check_store "$WORK/store"
pass "6-stage recipe on Slurm: artifacts equal the local run's, one job per stage, 1 call per status, cached resubmit submits nothing"
