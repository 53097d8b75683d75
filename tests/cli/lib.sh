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
# expect_hf_greedy DIR: transformers loads the model folder DIR (weights and tokenizer) and the
# prompt's ids and the greedy next token agree with smelt's (tokenize, and generate of one token
# re-encoded). Prints a skip line when transformers is not installed.
expect_hf_greedy() {
  "$SMELT" generate "$1" --prompt "Answer:" --max-tokens 1 --temperature 0 > gen.out 2> gen.err ||
    fail "generate failed: $(cat gen.err)"
  # (generate prints the BOS it started from, then the prompt and the token: drop the BOS's id)
  local smelt_ids hf_ids
  smelt_ids=$(head -c -1 gen.out | "$SMELT" tokenize --tokenizer "$1" - | cut -d' ' -f2-)
  if ! python3 -c "import torch, transformers" 2> /dev/null; then
    echo "skip: transformers is not installed, the reload check of $1 is not run"
    return 0
  fi
  hf_ids=$(python3 - "$1" <<'PY' 2> hf.err
import sys, torch, transformers
d = sys.argv[1]
m = transformers.AutoModelForCausalLM.from_pretrained(d, dtype=torch.float32)
t = transformers.AutoTokenizer.from_pretrained(d)
ids = t("Answer:", add_special_tokens=False)["input_ids"]
logits = m(torch.tensor([[m.config.bos_token_id] + ids])).logits[0, -1]
print(" ".join(str(i) for i in ids + [int(logits.argmax())]))
PY
) || fail "transformers could not load $1: $(cat hf.err)"
  expect_eq "$hf_ids" "$smelt_ids" "$1: prompt ids and greedy next token, transformers vs smelt"
}
