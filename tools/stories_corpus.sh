#!/usr/bin/env bash
# stories_corpus.sh OUT [N]: writes OUT/corpus.jsonl (N stories, default 400, sampled from the
# real stories260K model at temperature 1 with seeds 1..N, one JSON document per line; no
# TinyStories text is shipped) and links stories260K.bin and tok512.bin into OUT. Keeps an existing
# corpus. Used by tools/stories_distill.sh and tools/prune_methods.sh.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SMELT=${SMELT_BIN:-$ROOT/build/smelt}
SHARED=${SMELT_SHARED_DIR:-$ROOT/../shared}
OUT=$1
N=${2:-400}
M=$SHARED/models/stories260K
mkdir -p "$OUT"
ln -sf "$M/stories260K.bin" "$OUT/stories260K.bin"
ln -sf "$M/tok512.bin" "$OUT/tok512.bin"
if [ ! -s "$OUT/corpus.jsonl" ]; then
  for i in $(seq 1 "$N"); do
    "$SMELT" generate "$M/stories260K.bin" --tokenizer "$M/tok512.bin" --temperature 1.0 --seed "$i" --max-tokens 256 2> /dev/null |
      python3 -c 'import json, sys; print(json.dumps({"text": sys.stdin.read().strip()}))'
  done > "$OUT/corpus.jsonl.tmp"
  mv "$OUT/corpus.jsonl.tmp" "$OUT/corpus.jsonl"
fi
