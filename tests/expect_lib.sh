# expect_lib.sh: what the CLI tests that check many commands in one script share (sourced after
# `set -u`): a temporary folder removed at exit, failures counted (the script goes on and exits 1
# at the end), and `expect STATUS PATTERN CMD...` (the exit status and a pattern of stdout+stderr).
BIN=${SMELT_BIN:?} SRC=${SMELT_SOURCE_DIR:?}
mkdir -p "${SMELT_TEST_TMP:-/tmp}"
TMP=$(mktemp -d "${SMELT_TEST_TMP:-/tmp}/$(basename "$0" .sh).XXXXXX")
trap 'rm -rf "$TMP"' EXIT
status=0
fail() { echo "FAIL: $*"; status=1; }
expect() {
  local want=$1 pat=$2; shift 2
  local out rc
  out=$("$@" 2>&1); rc=$?
  [ "$rc" = "$want" ] || fail "'$*' exited $rc, expected $want: $out"
  printf '%s' "$out" | grep -q -- "$pat" || fail "'$*' output lacks '$pat': $out"
}
