#!/usr/bin/env bash
# gguf_cli.sh: GGUF files through the CLI. With the SmolLM2 file of ../shared:
# - `smelt generate FILE --chat "What is the capital of France?" --temperature 0` prints
#   "The capital of France is Paris." (the acceptance check of issue 10);
# - `smelt inspect`, `smelt tokenize --tokenizer FILE`;
# - the round trip GGUF -> Hugging Face folder -> GGUF (q8_0) -> smelt, checked by
#   tools/check_gguf_export.py with gguf-py, safetensors and transformers (skipped, with one line,
#   when those Python packages are absent): the folder's weights equal gguf-py's dequantization
#   bit for bit, transformers tokenizes with the folder's tokenizer exactly as smelt does, and the
#   q8_0 file reads in GGUFReader with the original names, shapes, metadata and values within Q8_0
#   rounding (test_gguf_convert reads such files back in smelt, block by block).
# Always: malformed GGUF files make inspect/generate/convert/tokenize exit 2 naming the field, and
# a failed convert leaves nothing at OUT. About 40 s on 2 shared cores (the Python check is most).
set -u
. "$(dirname "$0")/expect_lib.sh"
source "$SRC/tests/lib_shared.sh"

# ---- malformed files (no ../shared needed): a valid small GGUF from the fuzz corpus, damaged ----
SEED=$SRC/tests/fuzz/corpus_gguf/types.gguf
printf 'GGML\003\000\000\000' > "$TMP/magic.gguf"
expect 2 "GGUF magic" "$BIN" inspect "$TMP/magic.gguf"
head -c 300 "$SEED" > "$TMP/cut.gguf"
expect 2 "truncated" "$BIN" inspect "$TMP/cut.gguf"
expect 2 "truncated" "$BIN" generate "$TMP/cut.gguf" --prompt hi
expect 2 "truncated" "$BIN" tokenize --tokenizer "$TMP/cut.gguf" hi
expect 2 "truncated" "$BIN" convert "$TMP/cut.gguf" "$TMP/out"
[ -e "$TMP/out" ] && fail "a failed convert left $TMP/out"
cp "$SEED" "$TMP/v9.gguf" && printf '\011' | dd of="$TMP/v9.gguf" bs=1 seek=4 conv=notrunc status=none
expect 2 "version 9 is not supported" "$BIN" inspect "$TMP/v9.gguf"
# the seed is a well-formed file whose metadata describes no model: the missing key is named
expect 2 "llama.block_count" "$BIN" inspect "$SEED"
expect 2 "no tokenizer" "$BIN" tokenize --tokenizer "$SEED" hi
expect 2 "not one of f32, f16, bf16, q8_0, q4_0, q4_1" "$BIN" convert "$SRC/tests/fixtures/llama_tied" "$TMP/x.gguf" --dtype q4_k
# a fixture model round trip through the CLI (F32 and the F16 fallback for 16-wide rows)
expect 0 "GGUF llama 2 layers" "$BIN" convert "$SRC/tests/fixtures/llama_gqa" "$TMP/gqa.gguf"
expect 0 '"format": "gguf"' "$BIN" inspect "$TMP/gqa.gguf" --json
expect 0 '"check": "ok"' "$BIN" inspect "$TMP/gqa.gguf" --json
expect 0 "F32, " "$BIN" convert "$TMP/gqa.gguf" "$TMP/gqa_hf"
cmp -s "$TMP/gqa_hf/model.safetensors" <("$BIN" convert "$SRC/tests/fixtures/llama_gqa" "$TMP/gqa_hf2" >/dev/null && cat "$TMP/gqa_hf2/model.safetensors") ||
  fail "HF -> GGUF -> HF (f32) is not byte-identical to HF -> HF"

if ! shared_file G models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf "the SmolLM2 checks"; then
  [ $status = 0 ] && echo "gguf_cli: all checks passed"
  exit $status
fi

# ---- the acceptance check: greedy chat answer ----
out=$("$BIN" generate "$G" --chat "What is the capital of France?" --temperature 0 --max-tokens 24 2>/dev/null)
case "$out" in
  *"<|im_start|>assistant"$'\n'"The capital of France is Paris.") echo "generate --chat: The capital of France is Paris." ;;
  *) fail "generate --chat printed: $out" ;;
esac
expect 0 "check:        ok" "$BIN" inspect "$G"
expect 0 "Q4_1        210 tensors" "$BIN" inspect "$G"
expect 0 "^19556 905 216 34 32 34 36$" "$BIN" tokenize --tokenizer "$G" "Hello world 2024"
expect 0 "format gguf" "$BIN" tokenize --tokenizer "$G" --info
expect 2 "give --prompt or --chat" "$BIN" generate "$G" --prompt a --chat b

# ---- GGUF -> HF -> GGUF (q8_0) -> smelt ----
expect 0 "F32, " "$BIN" convert "$G" "$TMP/hf"
for f in config.json generation_config.json model.safetensors tokenizer.json tokenizer_config.json; do
  [ -f "$TMP/hf/$f" ] || fail "convert wrote no $f"
done
grep -q '"chat_template"' "$TMP/hf/tokenizer_config.json" || fail "the chat template is not in tokenizer_config.json"
expect 0 "Q8_0, " "$BIN" convert "$TMP/hf" "$TMP/q8.gguf" --dtype q8_0
expect 0 "Q8_0        211 tensors" "$BIN" inspect "$TMP/q8.gguf"
if python3 -c "import gguf, safetensors, transformers, numpy" 2>/dev/null; then
  python3 "$SRC/tools/check_gguf_export.py" --orig "$G" --hf "$TMP/hf" --gguf "$TMP/q8.gguf" \
    --fixture "$SRC/tests/fixtures/smollm2/reference.json" || fail "tools/check_gguf_export.py"
else
  echo "SKIP the gguf-py/transformers check of the converted files: python3 lacks gguf, safetensors or transformers"
fi
[ $status = 0 ] && echo "gguf_cli: all checks passed"
exit $status
