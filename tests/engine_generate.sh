#!/usr/bin/env bash
# engine_generate.sh: `smelt generate` end to end on the real stories260K llama2.c checkpoint:
# greedy decoding from BOS must reproduce, exactly, the beginning of the text that
# ../shared/README.md quotes (an independent decoder's output); plus the CLI's error paths.
set -u
source "${SMELT_SOURCE_DIR:?}/tests/lib_shared.sh"
smelt="${SMELT_BIN:?SMELT_BIN is not set}"
what="every smelt generate check here"
shared_file model models/stories260K/stories260K.bin "$what" && shared_file tok models/stories260K/tok512.bin "$what" &&
  shared_file readme README.md "$what" || exit 77
shared=$SHARED_DIR
fail=0
# The quoted text: the backticked line after "Greedy (temperature 0) decoding from BOS".
want=$(grep -A1 'Greedy (temperature 0) decoding from BOS' "$shared/README.md" | tail -n 1 | sed -n 's/^[^`]*`\([^`]*\)`.*$/\1/p')
if [ -z "$want" ]; then
    echo "FAIL: could not find the quoted greedy text in $shared/README.md"
    exit 1
fi
got=$("$smelt" generate "$model" --tokenizer "$tok" --max-tokens 256 --temperature 0 2>/dev/null)
rc=$?
if [ $rc -ne 0 ]; then echo "FAIL: smelt generate exited with $rc"; fail=1; fi
if [ "${got:0:${#want}}" != "$want" ]; then
    echo "FAIL: greedy text differs from README.md"
    echo "  want: $want"
    echo "  got:  ${got:0:${#want}}"
    fail=1
else
    echo "ok   greedy decoding reproduces README.md's text (${#want} bytes)"
fi
# The same model converted to a Hugging Face folder (smelt convert) gives the same text.
tmp="${SMELT_TEST_TMP:-/tmp}/engine_generate.$$"
mkdir -p "$tmp"
if "$smelt" convert "$model" "$tmp/hf" >/dev/null 2>&1; then
    got_hf=$("$smelt" generate "$tmp/hf" --tokenizer "$tok" --max-tokens 256 --temperature 0 2>/dev/null)
    if [ "${got_hf:0:${#want}}" != "$want" ]; then echo "FAIL: greedy text from the HF folder differs"; fail=1;
    else echo "ok   the converted Hugging Face folder generates the same text"; fi
else
    echo "FAIL: smelt convert $model"; fail=1
fi
rm -rf "$tmp"
# The same with a prompt: the output starts with the prompt and continues the same story.
got2=$("$smelt" generate "$model" --tokenizer "$tok" --prompt "Once upon a time" --max-tokens 30 --temperature 0 2>/dev/null)
if [ "${got2:0:40}" != "${want:0:40}" ]; then echo "FAIL: prompted greedy text: '${got2:0:60}'"; fail=1; else echo "ok   prompted greedy text"; fi
# Sampling is reproducible with a seed.
a=$("$smelt" generate "$model" --tokenizer "$tok" --max-tokens 40 --temperature 0.9 --top-p 0.9 --seed 7 2>/dev/null)
b=$("$smelt" generate "$model" --tokenizer "$tok" --max-tokens 40 --temperature 0.9 --top-p 0.9 --seed 7 2>/dev/null)
if [ -z "$a" ] || [ "$a" != "$b" ]; then echo "FAIL: two runs with --seed 7 differ"; fail=1; else echo "ok   seeded sampling is reproducible"; fi
# Error paths: exit status 2 and a message naming the problem.
check_err() { # expected-substring command...
    local pat="$1"; shift
    local out; out=$("$@" 2>&1 >/dev/null); local st=$?
    if [ $st -ne 2 ] || ! grep -q -- "$pat" <<<"$out"; then
        echo "FAIL: '$*' exited $st with: $out"; fail=1
    else echo "ok   error: $pat"; fi
}
check_err "no-such" "$smelt" generate "$shared/no-such.bin" --tokenizer "$tok"
check_err "--tokenizer" "$smelt" generate "$model"
check_err "--temperature" "$smelt" generate "$model" --tokenizer "$tok" --temperature -1
check_err "--top-p" "$smelt" generate "$model" --tokenizer "$tok" --top-p 0
check_err "--max-tokens" "$smelt" generate "$model" --tokenizer "$tok" --max-tokens x
check_err "unknown option" "$smelt" generate "$model" --bogus
exit $fail
