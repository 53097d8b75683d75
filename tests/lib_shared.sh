# lib_shared.sh: how a shell test uses the shared data folder (../shared; SMELT_SHARED_DIR names
# it); tests/shared_dir.h is the same for C tests. A part that needs a file from it runs when the
# file is there; otherwise the test prints ONE line, "skip: <what>: <path> is absent ...", goes on
# with the rest, and exits 77 (ctest's SKIP_RETURN_CODE) when it skipped everything. With
# SMELT_REQUIRE_SHARED=1 (CI sets it) a missing folder or file is a failure (exit 1): sourcing
# this file already fails when the folder is absent.
#   source "$SMELT_SOURCE_DIR/tests/lib_shared.sh"
#   if shared_file F models/stories260K/stories260K.bin "the stories260K checks"; then ... "$F" ...; fi
SHARED_DIR=${SMELT_SHARED_DIR:-${SMELT_SOURCE_DIR:-.}/../shared}
shared_required() { [ "${SMELT_REQUIRE_SHARED:-}" = 1 ]; }
if shared_required && [ ! -d "$SHARED_DIR" ]; then
  echo "FAIL: the shared folder $SHARED_DIR is absent and SMELT_REQUIRE_SHARED=1: the tests that need it must run (set SMELT_SHARED_DIR to it)" >&2
  exit 1
fi
# shared_file VAR REL WHAT: sets VAR to $SHARED_DIR/REL and returns 0 when it exists; otherwise
# prints the skip line for WHAT and returns 1, or fails the test (exit 1) when it is required.
shared_file() {
  local path=$SHARED_DIR/$2
  printf -v "$1" '%s' "$path"
  [ -e "$path" ] && return 0
  if shared_required; then
    echo "FAIL: $3 needs $path, which is absent, and SMELT_REQUIRE_SHARED=1" >&2
    exit 1
  fi
  echo "skip: $3: $path is absent (set SMELT_SHARED_DIR to the shared folder)"
  return 1
}
