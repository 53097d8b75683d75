# lib.sh: helpers for the command-line tests. Each test sources this, works in a fresh
# directory under $SMELT_TEST_TMP, and fails loudly (non-zero exit) on the first mismatch.
set -euo pipefail
SMELT=${SMELT_BIN:?SMELT_BIN must point to the smelt binary}
TEST_NAME=$(basename "$0" .sh)
# the folder too: tests/cli/resume_kill.sh and tests/train/resume_kill.sh run at the same time
WORK=${SMELT_TEST_TMP:-/tmp/smelt-tests}/$(basename "$(dirname "$0")")/$TEST_NAME
rm -rf "$WORK"
mkdir -p "$WORK"
cd "$WORK"
export SMELT_STORE="$WORK/store"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1

fail() { echo "FAIL ($TEST_NAME): $*" >&2; exit 1; }
pass() { echo "ok: $*"; }
expect_eq() { [ "$1" == "$2" ] || fail "$3: expected '$2', got '$1'"; }
expect_contains() { grep -qF -- "$2" <<<"$1" || fail "$3: expected to find '$2' in: $1"; }
# q SQL: one value from the store (CSV without the header).
q() { "$SMELT" query --csv "$1" | tail -n +2 | sed -e "s/^\"\(.*\)\"$/\1/"; }
count_lines() { if [ -f "$1" ]; then wc -l <"$1" | tr -d ' '; else echo 0; fi; }
