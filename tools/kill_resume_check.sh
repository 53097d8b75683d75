#!/usr/bin/env bash
# kill_resume_check.sh [RECIPE] [KILLS]: the kill/resume acceptance of the whole pipeline. Runs
# RECIPE (default recipes/quickstart.yaml) uninterrupted into one store, then into a second store
# while killing (kill -9) KILLS times (default 3) at a random moment either the runner or the stage
# process it is running, each time continuing with `smelt resume`; then compares, stage by stage,
# the digests of every output artifact of the two runs. Benchmark outputs hold measured times, so
# their digests are listed but expected to differ; every other artifact must be identical.
# Prints one line per stage and exits 1 on any other difference.
set -euo pipefail
cd "$(dirname "$0")/.."
recipe=$(realpath "${1:-recipes/quickstart.yaml}")
kills=${2:-3}
SMELT=$(realpath build/smelt)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export OMP_WAIT_POLICY=passive OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
echo "== uninterrupted run"
"$SMELT" run "$recipe" --store "$work/a" > "$work/a.log" 2>&1 || { cat "$work/a.log"; exit 1; }
total=$(awk '/ok \(/{n++} END{print n}' "$work/a.log")
secs=$(sed -n 's/.* in \([0-9.]*\)s$/\1/p' "$work/a.log" | tail -1)
echo "   $total stages in ${secs}s"
echo "== run with $kills kills"
"$SMELT" run "$recipe" --store "$work/b" > "$work/b.log" 2>&1 &
runner=$!
for k in $(seq 1 "$kills"); do
  sleep "$(awk -v s="$secs" -v r="$RANDOM" -v k="$kills" 'BEGIN{printf "%.1f", (0.2 + 0.6 * r / 32767) * s / k}')"
  if [ $((RANDOM % 2)) = 0 ]; then
    victim=$(pgrep -f "smelt exec --store $work/b" | head -1 || true)
    what="stage process"
  else
    victim=$(pgrep -f "smelt (run|resume) .*--store $work/b" | head -1 || true)
    what="runner"
  fi
  [ -n "$victim" ] || { victim=$runner; what="runner"; }
  echo "   kill -9 of the $what (pid $victim): $(pgrep -af "store $work/b" | grep -o -- '--stage [^ ]*' | head -1)"
  kill -9 "$victim" 2> /dev/null || true
  sleep 1
  pkill -9 -f "store $work/b" 2> /dev/null || true # the runner's stage children die with it in a crash
  wait "$runner" 2> /dev/null || true
  "$SMELT" resume latest --store "$work/b" > "$work/b.log" 2>&1 &
  runner=$!
done
wait "$runner" || { cat "$work/b.log"; echo "resume failed"; exit 1; }
echo "== artifact digests, uninterrupted vs killed and resumed"
digests() {
  "$SMELT" query --store "$1" --csv "SELECT a.stage, a.name, s.kind, a.digest FROM artifacts a JOIN stages s
    USING (run_id, stage) WHERE a.run_id = (SELECT run_id FROM runs ORDER BY created_at DESC LIMIT 1)
    ORDER BY a.stage, a.name" | tail -n +2
}
digests "$work/a" > "$work/da"
# the last run of store b is the last resume: a resume continues the same run id
digests "$work/b" > "$work/db"
bad=0 same=0 timed=0
while IFS=, read -r stage name kind d; do
  other=$(awk -F, -v s="$stage" -v n="$name" '$1 == s && $2 == n {print $4}' "$work/db")
  if [ "$d" = "$other" ]; then
    same=$((same + 1))
  elif [ "$kind" = benchmark ]; then
    timed=$((timed + 1))
  else
    echo "   DIFFERS: $stage.$name ($kind) $d vs ${other:-missing}"
    bad=$((bad + 1))
  fi
done < "$work/da"
echo "   $same artifacts identical, $timed benchmark outputs differ (measured times), $bad other differences"
exit $((bad > 0))
