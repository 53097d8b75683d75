#!/usr/bin/env bash
# train_bench.sh: the train stage's benchmark table. (1) Tokens/s and peak memory of an SFT step and
# a distillation step (the teacher's overhead) in smelt and in PyTorch on the same shapes, batch and
# threads. (2) Peak memory of the LM head + loss + backward, naive ([tokens x vocab] logits for the
# student, and the teacher's for distillation) against smelt's chunked path, vocab 128,256 and
# 4,096 tokens. Each figure comes from its own process (peak RSS is per process).
# usage: bench/train_bench.sh [BUILD_DIR] (default build); THREADS, STEPS, SKIP_LMHEAD=1 from the env.
set -euo pipefail
B=${1:-build}/bench/bench_train
HERE=$(dirname "$0")
THREADS=${THREADS:-$(nproc)}
STEPS=${STEPS:-5}
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
# student: hidden 256, 4 layers, 8 heads (4 kv), MLP 704, vocab 8192; 4096 tokens as 8 x 512
STUDENT="256 4 8 4 704 8192 4096 512 $THREADS $STEPS"
TEACHER="512 6 8 4 1408" # hidden 512, 6 layers

get() { sed -n "s/^$1 //p" <<<"$2"; }
row() { printf "%-28s %12s %12s %10s\n" "$@"; }

echo "train step: student $(echo $STUDENT | cut -d' ' -f1-6) (H L heads kv I V), teacher $TEACHER, 4096 tokens (8 x 512), $THREADS threads, median of $STEPS steps"
row "" "tokens/s" "step (s)" "peak MiB"
for mode in sft distill; do
  extra=""
  [ $mode = distill ] && extra=$TEACHER
  out=$($B step $mode $STUDENT $extra)
  row "smelt $mode" "$(get tokens_per_s "$out")" "$(get step_s "$out")" "$(get peak_mib "$out")"
  if python3 -c "import torch, transformers" 2> /dev/null; then
    out=$(python3 "$HERE/torch_train.py" $mode $STUDENT $extra 2> /dev/null)
    row "pytorch $mode" "$(get tokens_per_s "$out")" "$(get step_s "$out")" "$(get peak_mib "$out")"
  fi
done

[ "${SKIP_LMHEAD:-0}" = 1 ] && exit 0
echo
echo "LM head + loss + backward, vocab 128256, 4096 tokens, hidden 256 (memory beyond the weights and hidden states)"
row "" "extra MiB" "peak MiB" "seconds"
for loss in ce fkl; do
  for path in naive chunked; do
    out=$($B lmhead $path $loss 128256 4096 256 $THREADS)
    row "$path $loss" "$(get extra_peak_mib "$out")" "$(get peak_mib "$out")" "$(get seconds "$out")"
  done
done
