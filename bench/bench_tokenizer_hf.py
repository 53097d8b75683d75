#!/usr/bin/env python3
"""bench_tokenizer_hf.py: the Hugging Face `tokenizers` (Rust) side of bench/bench_tokenizer.c.
usage: RAYON_NUM_THREADS=1 python3 bench/bench_tokenizer_hf.py TOKENIZER_DIR TEXT_FILE REPS NAME
Encodes TEXT_FILE line by line (encode_batch, one thread) and as one string; prints one table
row in bench_tokenizer's format. Needs: pip install tokenizers."""
import os
import sys
import time

from tokenizers import Tokenizer


def main():
    d, path, reps, name = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    t0 = time.perf_counter()
    tok = Tokenizer.from_file(os.path.join(d, "tokenizer.json"))
    load_s = time.perf_counter() - t0
    raw = open(path, "rb").read()
    text = raw.decode("utf-8")
    lines = text.split("\n")
    mb = len(raw) / 1e6
    best_lines = best_whole = 0.0
    n_lines = n_whole = 0
    for _ in range(reps):
        t0 = time.perf_counter()
        encs = tok.encode_batch(lines, add_special_tokens=False)
        best_lines = max(best_lines, mb / (time.perf_counter() - t0))
        n_lines = sum(len(e.ids) for e in encs)
        t0 = time.perf_counter()
        enc = tok.encode(text, add_special_tokens=False)
        best_whole = max(best_whole, mb / (time.perf_counter() - t0))
        n_whole = len(enc.ids)
    import tokenizers
    impl = f"HF tokenizers {tokenizers.__version__}"
    print(f"{name:<8} {impl:<22} {best_lines:10.2f} {n_lines:12d} {best_whole:10.2f} {n_whole:12d} {load_s:8.2f}", flush=True)


if __name__ == "__main__":
    main()
