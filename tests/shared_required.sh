# The tests that need ../shared follow one convention (tests/shared_dir.h for C, tests/lib_shared.sh
# for shell; README "Tests"): no test reads SMELT_SHARED_DIR or ../shared by itself, and with
# SMELT_REQUIRE_SHARED=1 (CI sets it) and no shared folder every one of them fails at once (exit 1,
# naming the folder) instead of skipping with 77, which ctest counts as a pass.
source "$(dirname "$0")/cli/lib.sh"
SRC=${SMELT_SOURCE_DIR:?}
BIN_DIR=${SMELT_TEST_BIN_DIR:?SMELT_TEST_BIN_DIR must name the folder of the test binaries}
users=()
while IFS= read -r f; do
  case $f in */shared_dir.h | */lib_shared.sh | */shared_required.sh) continue ;; esac
  grep -qE 'shared_dir\.h|lib_shared\.sh' "$f" ||
    fail "$f reads the shared folder without tests/shared_dir.h or tests/lib_shared.sh (see README 'Tests')"
  users+=("$f")
done < <(grep -rlE 'SMELT_SHARED_DIR|\.\./shared|shared_dir\.h|lib_shared\.sh' "$SRC/tests" --include='*.c' --include='*.h' \
           --include='*.sh' | sort)
[ "${#users[@]}" -ge 8 ] || fail "found only ${#users[@]} tests that use ../shared: ${users[*]}"
mkdir -p "$WORK/no-shared-parent" "$WORK/tmp"
for f in "${users[@]}"; do
  case $f in
    *.c) cmd=("$BIN_DIR/$(basename "$f" .c)") ;;
    *.sh) cmd=(bash "$f") ;;
    *) continue ;;
  esac
  [ "${cmd[0]}" = bash ] || [ -e "${cmd[0]}" ] || fail "no test binary ${cmd[0]} for $f"
  rc=0
  # their own scratch folders under ours: the same scripts run as tests of their own at the same time
  SMELT_TEST_TMP=$WORK/tmp SMELT_SHARED_DIR=$WORK/no-shared-parent/shared SMELT_REQUIRE_SHARED=1 timeout 120 "${cmd[@]}" \
    > out.txt 2> err.txt || rc=$?
  expect_eq "$rc" 1 "exit status of $(basename "$f") with SMELT_REQUIRE_SHARED=1 and no shared folder"
  expect_contains "$(cat err.txt)" "SMELT_REQUIRE_SHARED=1" "what $(basename "$f") says"
done
pass "${#users[@]} tests use the shared-folder helpers, and each fails without the folder when it is required"
