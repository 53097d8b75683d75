#!/usr/bin/env bash
# tokenizer_cli.sh: `smelt tokenize` end to end: encode, decode, --json, stdin, --info,
# --save-hf (and loading what it wrote), and the exit status and message of bad usage/input.
# Llama 3 cases need ../shared (tests/lib_shared.sh); without it only builtin:bytes cases run.
set -u
SMELT=${SMELT_BIN:?SMELT_BIN is not set}
source "${SMELT_SOURCE_DIR:?}/tests/lib_shared.sh"
TMP=${SMELT_TEST_TMP:-/tmp}/tokenizer_cli.$$
mkdir -p "$TMP"
trap 'rm -rf "$TMP"' EXIT
fails=0
check() { # check NAME EXPECTED ACTUAL
    if [ "$2" != "$3" ]; then
        echo "FAIL $1: expected [$2], got [$3]" >&2
        fails=$((fails + 1))
    fi
}
status() { "$@" >/dev/null 2>"$TMP/err"; echo $?; }

check "bytes encode" "72 105 259" "$("$SMELT" tokenize -t builtin:bytes 'Hi yes')"
check "bytes decode" "Hi yes" "$("$SMELT" tokenize -t builtin:bytes --decode 72 105 259)"
check "bytes json" '{"ids": [72, 105, 260]}' "$("$SMELT" tokenize -t builtin:bytes --json 'Hi no')"
check "stdin" "97 10 98" "$(printf 'a\nb' | "$SMELT" tokenize -t builtin:bytes -)"
check "args joined" "97 32 98" "$("$SMELT" tokenize -t builtin:bytes a b)"
check "decode stdin" "ab" "$(echo '97, 98' | "$SMELT" tokenize -t builtin:bytes --decode)"
check "info" "format builtin:bytes|vocab_size 261|bos 256|eos 257" \
    "$("$SMELT" tokenize -t builtin:bytes --info | head -4 | paste -sd'|')"
check "help" "0" "$(status "$SMELT" tokenize --help)"
grep -q "save-hf" <("$SMELT" tokenize --help) || { echo "FAIL help text" >&2; fails=$((fails + 1)); }

# errors: exit 2 with a message that names the problem
check "no tokenizer" "2" "$(status "$SMELT" tokenize hello)"
grep -q -- "--tokenizer" "$TMP/err" || { echo "FAIL no-tokenizer message: $(cat "$TMP/err")" >&2; fails=$((fails + 1)); }
check "missing file" "2" "$(status "$SMELT" tokenize -t "$TMP/nope.json" hello)"
grep -q "does not exist" "$TMP/err" || { echo "FAIL missing-file message: $(cat "$TMP/err")" >&2; fails=$((fails + 1)); }
check "bad id" "2" "$(status "$SMELT" tokenize -t builtin:bytes --decode 72 999)"
grep -q "999" "$TMP/err" || { echo "FAIL bad-id message: $(cat "$TMP/err")" >&2; fails=$((fails + 1)); }
check "not an id" "2" "$(status "$SMELT" tokenize -t builtin:bytes --decode 72 x)"
check "unknown option" "2" "$(status "$SMELT" tokenize -t builtin:bytes --frobnicate)"
printf '{"model": {' >"$TMP/tokenizer.json"
check "bad json" "2" "$(status "$SMELT" tokenize -t "$TMP/tokenizer.json" hi)"
grep -q "not valid JSON" "$TMP/err" || { echo "FAIL bad-json message: $(cat "$TMP/err")" >&2; fails=$((fails + 1)); }

# --save-hf, then the saved directory loads and encodes the same
check "save bytes" "0" "$(status "$SMELT" tokenize -t builtin:bytes --save-hf "$TMP/bytes")"
check "saved bytes" "72 105 259 256" "$("$SMELT" tokenize -t "$TMP/bytes" 'Hi yes<|begin_of_text|>')"

if shared_file L3 tokenizers/llama3/tokenizer.model "the Llama 3 and llama2.c CLI cases" &&
   shared_file T512 models/stories260K/tok512.bin "the Llama 3 and llama2.c CLI cases"; then
    check "meta check" "2028 374 264 1296 11914 13" "$("$SMELT" tokenize -t "$L3" 'This is a test sentence.')"
    check "llama3 decode" "This is a test sentence." "$("$SMELT" tokenize -t "$L3" -d 2028 374 264 1296 11914 13)"
    check "llama3 special" "128000 9906 128009" "$("$SMELT" tokenize -t "$L3" '<|begin_of_text|>Hello<|eot_id|>')"
    check "save llama3" "0" "$(status "$SMELT" tokenize -t "$L3" --save-hf "$TMP/l3")"
    check "saved llama3" "2028 374 264 1296 11914 13" "$("$SMELT" tokenize -t "$TMP/l3" 'This is a test sentence.')"
    check "llama2c save" "2" "$(status "$SMELT" tokenize -t "$T512" --save-hf "$TMP/l2c")"
    check "llama2c round trip" "Once upon a time" \
        "$("$SMELT" tokenize -t "$T512" -d $("$SMELT" tokenize -t "$T512" 'Once upon a time'))"
fi
if [ "$fails" -ne 0 ]; then
    echo "$fails check(s) failed" >&2
    exit 1
fi
echo "tokenizer CLI tests passed"
