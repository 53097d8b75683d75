# Every failure of the store reaches the exit status. smelt_faults is smelt with a fault hook
# (tests/fault_hook.c): SMELT_STORE_FAULT=COMMAND:N fails the Nth SQLite operation of each
# `smelt COMMAND` process. For the runner (`run`), the stage process (`exec`) and the Slurm job
# body (`slurm-stage`), the test counts the operations of a clean run, then fails each one in
# turn on a fresh store: whenever the fault fired, the command must exit non-zero with a message;
# never "ok" with exit 0 while the store says something else.
source "$(dirname "$0")/lib.sh"
FAULTS=${SMELT_FAULTS_BIN:?SMELT_FAULTS_BIN must point to the smelt_faults binary}
LOG=$WORK/faults.log
export SMELT_STORE_FAULT_LOG=$LOG
cat > r.yaml <<'YAML'
smelt: 1
name: faults
stages:
  a:
    kind: command
    run: echo "m 1" >> $SMELT_METRICS; echo a > $SMELT_OUTPUT_DIR/a.txt
  b:
    kind: command
    inputs: {a: a}
    run: cat $SMELT_INPUT_A/a.txt > $SMELT_OUTPUT_DIR/b.txt
YAML
# A fake Slurm for the job body: sbatch hands out ids, nothing runs.
mkdir -p fake
printf '#!/bin/sh\nn=$(cat %s/fake/next 2>/dev/null || echo 100); echo $((n + 1)) > %s/fake/next; echo "$n"\n' \
  "$WORK" "$WORK" > fake/sbatch
printf '#!/bin/sh\nexit 0\n' > fake/squeue
printf '#!/bin/sh\necho "no accounting" >&2; exit 1\n' > fake/sacct
chmod +x fake/*
export PATH=$WORK/fake:$PATH

# prepare COMMAND: a fresh store in which `smelt COMMAND` has its work to do.
prepare() {
  rm -rf "$WORK/store"
  case $1 in
    run | exec) ;;
    slurm-stage)
      "$SMELT" submit r.yaml --slurm > prep.out 2>&1 || fail "submit with the fake sbatch failed: $(cat prep.out)"
      RUN=$(q "SELECT run_id FROM runs") ;;
  esac
}
# invoke COMMAND: what the sweep runs (exec faults are reached through `run`).
invoke() {
  case $1 in
    run | exec) "$FAULTS" run r.yaml ;;
    slurm-stage) "$FAULTS" slurm-stage --store "$WORK/store" --run "$RUN" --stage a ;;
  esac
}

sweep() {
  local cmd=$1 total n rc fired hits=0
  prepare "$cmd"
  : > "$LOG"
  SMELT_STORE_FAULT="$cmd:0" invoke "$cmd" > clean.out 2>&1 || fail "$cmd without a fault failed: $(cat clean.out)"
  total=$(awk -v c="$cmd" '$1 == "count" && $2 == c { if ($3 > m) m = $3 } END { print m + 0 }' "$LOG")
  [ "$total" -gt 5 ] || fail "$cmd: counted only $total store operations"
  for n in $(seq 1 "$total"); do
    prepare "$cmd"
    : > "$LOG"
    rc=0
    SMELT_STORE_FAULT="$cmd:$n" invoke "$cmd" > out.txt 2> err.txt || rc=$?
    fired=$(grep -c "^fired $cmd $n " "$LOG" || true)
    [ "$fired" -gt 0 ] || continue
    hits=$((hits + 1))
    [ "$rc" -ne 0 ] || fail "$cmd: a fault in store operation $n ($(grep "^fired" "$LOG" | head -n 1)) exited 0: $(cat out.txt)"
    [ -s err.txt ] || fail "$cmd: a fault in operation $n exited $rc without a message"
  done
  [ "$hits" -gt 5 ] || fail "$cmd: only $hits of $total faults fired"
  echo "$cmd: $total store operations, $hits faults injected, each one reached the exit status"
}
sweep run
sweep exec
sweep slurm-stage
pass "a failing store operation in run, exec or slurm-stage always fails the command"
