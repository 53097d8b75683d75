# lib.sh: helpers of the Slurm tests (on top of tests/cli/lib.sh). Every test runs against the
# private cluster that the slurm_cluster fixture started (SLURM_CONF), with a PATH shim that logs
# each call of a Slurm command to $CALLS, so that tests can count them.
source "$(dirname "${BASH_SOURCE[0]}")/../cli/lib.sh"
: "${SLURM_CONF:?SLURM_CONF must name the test cluster (the slurm_cluster fixture sets it)}"
if [ ! -f "$SLURM_CONF" ]; then
  # the fixture skipped (no Slurm or not root, and SMELT_REQUIRE_SLURM unset): so does this test
  if [ "${SMELT_REQUIRE_SLURM:-0}" != 1 ] && { ! command -v slurmd > /dev/null || [ "$(id -u)" -ne 0 ]; }; then
    echo "skip: no Slurm test cluster (slurm_cluster_start skipped: Slurm is not installed or this is not root)"
    exit 77
  fi
  fail "no test cluster at $SLURM_CONF: the slurm_cluster_start fixture did not run or failed"
fi
export SLURM_CONF

CALLS=$WORK/slurm-calls.log
SHIM=$WORK/shim
mkdir -p "$SHIM"
: > "$CALLS"
REAL_SQUEUE=$(command -v squeue) || fail "squeue is not installed"
REAL_SCANCEL=$(command -v scancel) || fail "scancel is not installed"
for c in sbatch squeue sacct scancel srun scontrol sinfo; do
  real=$(command -v "$c") || fail "$c is not installed"
  # SMELT_TEST_SBATCH_DELAY makes sbatch slow, to kill a submitter between two submissions;
  # SMELT_TEST_SBATCH_LATE makes it answer late, after Slurm accepted the job (whose id it then
  # appends to $CALLS.accepted), to kill a submitter before it records a job Slurm has.
  cat > "$SHIM/$c" <<EOF
#!/bin/sh
echo "$c \$*" >> "$CALLS"
[ "$c" = sbatch ] && [ -n "\${SMELT_TEST_SBATCH_DELAY:-}" ] && sleep "\$SMELT_TEST_SBATCH_DELAY"
if [ "$c" = sbatch ] && [ -n "\${SMELT_TEST_SBATCH_LATE:-}" ]; then
  out=\$("$real" "\$@"); rc=\$?
  echo "\$out" >> "$CALLS.accepted"
  sleep "\$SMELT_TEST_SBATCH_LATE"
  echo "\$out"
  exit \$rc
fi
exec "$real" "\$@"
EOF
  chmod +x "$SHIM/$c"
done
export PATH="$SHIM:$PATH"

# calls CMD: how many times CMD ran since the start (or since the last reset_calls).
calls() { grep -c "^$1 " "$CALLS" || true; }
all_calls() { wc -l < "$CALLS" | tr -d ' '; }
reset_calls() { : > "$CALLS"; }

# run_status RUN: the run's status from the store (reads the database only, no Slurm call).
run_status() { q "SELECT status FROM runs WHERE run_id = '$1'"; }
# job_of RUN STAGE: the current job id of a stage.
job_of() { q "SELECT job_id FROM slurm_jobs WHERE run_id = '$1' AND stage = '$2' ORDER BY submission DESC LIMIT 1"; }

# wait_run RUN STATUS SECONDS: polls the store until the run has STATUS.
wait_run() {
  local i
  for i in $(seq 1 $(($3 * 5))); do
    [ "$(run_status "$1")" = "$2" ] && return 0
    sleep 0.2
  done
  "$SMELT" status "$1" >&2 || true
  fail "run $1 did not reach status '$2' within $3 s (it is '$(run_status "$1")')"
}

# The test's own Slurm calls bypass the shim, so that they are never counted as smelt's.
real_squeue() { "$REAL_SQUEUE" "$@"; }
real_scancel() { "$REAL_SCANCEL" "$@"; }

# wait_state RUN STAGE STATE SECONDS: polls the Slurm state of a stage's job.
wait_state() {
  local id i st=""
  id=$(job_of "$1" "$2")
  for i in $(seq 1 $(($4 * 5))); do
    st=$(real_squeue -h -t all -j "$id" -o %T 2>/dev/null || true)
    [ "$st" = "$3" ] && return 0
    sleep 0.2
  done
  fail "job $id of stage $2 did not reach state $3 within $4 s (it is '$st')"
}

# The digests of a run's artifacts, one "stage,name,digest" line each.
digests() { "$SMELT" query --csv "SELECT stage, name, digest FROM artifacts WHERE run_id = '$1' ORDER BY stage, name" | tail -n +2; }

# sql STORE SQL: the sqlite3 shell on a store's database, waiting for locks like smelt does (in
# rollback-journal mode a reader is refused while a job commits).
sql() { sqlite3 -cmd '.timeout 20000' "$1/smelt.db" "$2"; }

# Asserts that the store is consistent: SQLite integrity and every object hashes to its name.
check_store() {
  expect_eq "$(sql "$1" 'PRAGMA integrity_check')" ok "integrity_check of $1"
  local f d
  for f in "$1"/objects/*/*; do
    [ -f "$f" ] || continue
    d=$(basename "$(dirname "$f")")$(basename "$f")
    expect_eq "$(sha256sum "$f" | cut -d' ' -f1)" "$d" "object $d is complete"
  done
}

# A test must leave no job of its runs behind, whatever happened.
cleanup_jobs() { real_scancel --name="smelt-$1" > /dev/null 2>&1 || true; }
