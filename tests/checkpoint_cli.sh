#!/usr/bin/env bash
# checkpoint_cli.sh: `smelt convert` and `smelt inspect` end to end on the committed fixtures (and
# stories260K when ../shared is there): outputs, dtypes, determinism, exit codes and messages.
set -u
. "$(dirname "$0")/expect_lib.sh"
source "$SRC/tests/lib_shared.sh"
FX=$SRC/tests/fixtures

expect 0 "F32, " "$BIN" convert "$FX/llama_gqa" "$TMP/f32"
expect 0 "BF16, " "$BIN" convert "$FX/llama_gqa" "$TMP/bf16" --dtype bf16
expect 0 '"F32": {"tensors": 21' "$BIN" inspect "$TMP/f32" --json
expect 0 '"check": "ok"' "$BIN" inspect "$TMP/bf16" --json
expect 0 '"BF16": {"tensors": 21' "$BIN" inspect "$TMP/bf16" --json
expect 0 "head_dim 8" "$BIN" inspect "$TMP/f32"
expect 0 "check:        ok" "$BIN" inspect "$FX/qwen2_bias/model.safetensors"
expect 0 "check:        ok" "$BIN" inspect "$FX/llama_tied/config.json"
expect 0 "qkv bias yes" "$BIN" inspect "$FX/qwen2_bias"
expect 0 "rope llama3 (factor 8, low 1, high 4, original max 64)" "$BIN" inspect "$FX/llama_rope3"
# without --dtype the source's dtype is kept; the writer is deterministic
expect 0 "BF16, " "$BIN" convert "$TMP/bf16" "$TMP/bf16-again"
cmp -s "$TMP/bf16/model.safetensors" "$TMP/bf16-again/model.safetensors" || fail "bf16 -> bf16 is not byte-identical"
cmp -s "$TMP/bf16/config.json" "$TMP/bf16-again/config.json" || fail "config.json differs after a second convert"
expect 0 "F32, " "$BIN" convert "$TMP/f32" "$TMP/f32-again" --dtype=f32
cmp -s "$TMP/f32/model.safetensors" "$TMP/f32-again/model.safetensors" || fail "fp32 -> fp32 is not byte-identical"
# a tied model writes no lm_head
expect 0 '"tie_word_embeddings": true' "$BIN" inspect "$FX/llama_tied" --json
# errors: usage (2), bad input (2)
expect 2 "not one of bf16, fp32, fp16" "$BIN" convert "$FX/llama_gqa" "$TMP/x" --dtype int4
expect 2 "expected IN and OUT" "$BIN" convert "$FX/llama_gqa"
expect 2 "unknown option '--fast'" "$BIN" inspect "$FX/llama_gqa" --fast
expect 2 "expected MODEL" "$BIN" inspect
expect 2 "does not exist" "$BIN" inspect "$TMP/nothing"
expect 0 "usage: smelt convert IN OUT" "$BIN" convert --help
expect 0 "usage: smelt inspect MODEL" "$BIN" inspect --help
cp -r "$FX/llama_gqa" "$TMP/damaged"
truncate -s 9000 "$TMP/damaged/model.safetensors"
expect 2 "truncated" "$BIN" inspect "$TMP/damaged"
expect 2 "truncated" "$BIN" convert "$TMP/damaged" "$TMP/out"
[ -e "$TMP/out/config.json" ] && fail "a failed convert wrote config.json"
printf '{"model_type": "llama", "hidden_size": -1}' > "$TMP/damaged/config.json"
expect 2 '"hidden_size" is -1' "$BIN" convert "$TMP/damaged" "$TMP/out"

if shared_file S models/stories260K/stories260K.bin "the stories260K convert and inspect cases"; then
  expect 0 "tokenizer" "$BIN" convert "$S" "$TMP/stories"
  expect 0 '"F32": {"tensors": 47' "$BIN" inspect "$TMP/stories" --json
  expect 0 "llama2.c checkpoint" "$BIN" inspect "$S"
  head -c 100000 "$S" > "$TMP/cut.bin"
  expect 2 "truncated" "$BIN" convert "$TMP/cut.bin" "$TMP/out"
fi
[ $status = 0 ] && echo "checkpoint_cli: all checks passed"
exit $status
