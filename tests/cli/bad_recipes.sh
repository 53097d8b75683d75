# Malformed recipes: each exits 2 with a file:line:column message naming the cause, and none
# creates a run (nor a store).
source "$(dirname "$0")/lib.sh"
n=0
# check NAME EXPECTED_LINE_COL EXPECTED_TEXT [--set ...]: runs `smelt run NAME.yaml`.
check() {
  local name=$1 pos=$2 text=$3
  shift 3
  set +e
  "$SMELT" run "$name.yaml" "$@" > "$name.out" 2> "$name.err"
  local rc=$?
  set -e
  [ $rc -eq 2 ] || fail "$name: exit status $rc, expected 2 (stderr: $(cat $name.err))"
  grep -qE -- "$pos" "$name.err" || fail "$name: no position '$pos' in: $(cat $name.err)"
  grep -qF -- "$text" "$name.err" || fail "$name: no '$text' in: $(cat $name.err)"
  [ ! -s "$name.out" ] || fail "$name: printed a run: $(cat $name.out)"
  n=$((n + 1))
}
ok_stage='    kind: command
    run: "true"'

printf 'smelt: 1\nstages: {a: [\n' > syntax.yaml
check syntax 'syntax.yaml:3:1:' "YAML syntax error"

printf 'smelt: 1\nstages:\n  a:\n\tkind: command\n' > tabs.yaml
check tabs 'tabs.yaml:4:1:' "tabs cannot indent YAML"

printf 'smelt: 1\nstages:\n  a:\n%s\n    colour: red\n' "$ok_stage" > unknown_key.yaml
check unknown_key 'unknown_key.yaml:6:5:' "unknown key 'colour' for kind command"

printf 'smelt: 1\nstages:\n  a:\n%s\n    retries: 1.5\n' "$ok_stage" > wrong_type.yaml
check wrong_type 'wrong_type.yaml:6:14:' "'retries' must be an integer"

printf 'smelt: 1\nstages:\n  a:\n    kind: command\n    run: "true"\n    inputs: {x: 5}\n' > wrong_type2.yaml
check wrong_type2 'wrong_type2.yaml:' "refers to stage '5', which is not defined"

printf 'smelt: 1\nstages:\n  a:\n    kind: command\n    run: x\n    needs: [c]\n  b:\n    kind: command\n    run: x\n    needs: a\n  c:\n    kind: command\n    run: x\n    inputs: {p: b}\n' > cycle.yaml
check cycle 'cycle.yaml:[0-9]+:[0-9]+:' "the stages form a cycle: a -> c -> b -> a"

printf 'smelt: 1\nstages:\n  a:\n    kind: command\n    run: x\n    inputs: {p: ghost}\n' > dangling.yaml
check dangling 'dangling.yaml:6:17:' "refers to stage 'ghost', which is not defined"

printf 'smelt: 1\nstages:\n  a:\n%s\n  a:\n%s\n' "$ok_stage" "$ok_stage" > duplicate.yaml
check duplicate 'duplicate.yaml:6:3:' "duplicate key 'a' (first at line 3"

printf 'smelt: 1\nstages:\n  a:\n    run: x\n' > missing_kind.yaml
check missing_kind 'missing_kind.yaml:3:3:' "has no 'kind:'"

printf 'smelt: 1\nstages:\n  a:\n    kind: teleport\n' > unknown_kind.yaml
check unknown_kind 'unknown_kind.yaml:4:11:' "unknown kind 'teleport'; known kinds: command"

printf 'smelt: 1\nstages:\n  a:\n%s\n    ranks: -2\n' "$ok_stage" > negative_ranks.yaml
check negative_ranks 'negative_ranks.yaml:6:12:' "'ranks' must be an integer from 1"

: > empty.yaml
check empty 'empty.yaml:1:1:' "the recipe is empty"

printf 'smelt: 1\nname: caf\xc3\x28\nstages: {}\n' > invalid_utf8.yaml
check invalid_utf8 'invalid_utf8.yaml:2:[0-9]+:' "not valid UTF-8"

{ printf 'smelt: 1\nstages:\n  a:\n%s\n' "$ok_stage"; head -c 1100000 /dev/zero | tr '\0' '#'; } > huge.yaml
check huge 'huge.yaml:1:1:' "larger than the 1048576-byte limit"

printf 'name: x\nstages:\n  a:\n%s\n' "$ok_stage" > no_version.yaml
check no_version 'no_version.yaml:1:1:' "missing 'smelt: 1'"

printf 'smelt: 2\nstages:\n  a:\n%s\n' "$ok_stage" > newer.yaml
check newer 'newer.yaml:1:8:' "recipe language version 2 is newer"

printf 'smelt: 1\nstagez: {}\n' > top_key.yaml
check top_key 'top_key.yaml:2:1:' "unknown top-level key 'stagez'"

printf 'smelt: 1\nstages:\n  a:\n    kind: command\n' > missing_required.yaml
check missing_required 'missing_required.yaml:4:5:' "missing required key 'run'"

printf 'smelt: 1\nstages:\n  Big_Stage:\n%s\n' "$ok_stage" > bad_name.yaml
check bad_name 'bad_name.yaml:3:3:' "stage name 'Big_Stage' is not allowed"

printf 'smelt: 1\nstages:\n  a:\n%s\n    foreach: x\n' "$ok_stage" > foreach.yaml
check foreach 'foreach.yaml:6:14:' "must be a non-empty list"

printf 'smelt: 1\nstages:\n  a:\n%s\n  b:\n    kind: command\n    run: x\n    inputs: {p: a.nope}\n' "$ok_stage" > bad_output.yaml
check bad_output 'bad_output.yaml:9:17:' "refers to output 'nope' of stage 'a'"

printf 'smelt: 1\nstages:\n  - a\n' > stages_list.yaml
check stages_list 'stages_list.yaml:3:3:' "'stages' must be a non-empty mapping"

printf 'smelt: 1\nstages:\n  a:\n%s\n' "$ok_stage" > good.yaml
check good '--set stages.a.ranks=abc:1:16:' "'ranks' must be an integer" --set stages.a.ranks=abc

printf 'smelt: 1\nstages:\n  a:\n%s\n---\nsmelt: 1\n' "$ok_stage" > two_docs.yaml
check two_docs 'two_docs.yaml:6:1:' "a recipe is one YAML document"

printf 'smelt: 1\nstages:\n  a:\n%s\n    needs: [a]\n' "$ok_stage" > self_need.yaml
check self_need 'self_need.yaml:6:13:' "stage 'a' needs itself"

printf 'smelt: 1\nstages:\n  a:\n    kind: command\n    run: [1, 2]\n' > run_list.yaml
check run_list 'run_list.yaml:5:10:' "'run' must be a text, found a list"

printf 'smelt: 1\nstages:\n  a: &x\n%s\n  b: *y\n' "$ok_stage" > alias.yaml
check alias 'alias.yaml:6:6:' "alias *y refers to no anchor"

[ ! -e "$WORK/store" ] || fail "a bad recipe created a store"
# With an existing store: still no run is created.
"$SMELT" run good.yaml > /dev/null || fail "the good recipe failed"
for f in cycle dangling unknown_key huge; do set +e; "$SMELT" run $f.yaml >/dev/null 2>&1; set -e; done
expect_eq "$(q "SELECT count(*) FROM runs")" 1 "runs after bad recipes"
[ $n -ge 15 ] || fail "only $n malformed recipes checked"
pass "$n malformed recipes rejected with exit 2 and line:column"
