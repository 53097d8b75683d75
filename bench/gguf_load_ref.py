#!/usr/bin/env python3
"""gguf_load_ref.py: the references of bench_gguf: transformers' GGUF loading to fp32
(AutoModelForCausalLM.from_pretrained(DIR, gguf_file=NAME, dtype=float32): parse, dequantize with
its NumPy kernels, undo the q/k permutation, build the model) and gguf-py's dequantization of every
tensor (GGUFReader + gguf.quants.dequantize), each the median of RUNS runs in this process after
the imports. Prints "key value" lines like bench_gguf.

usage: gguf_load_ref.py FILE.gguf [RUNS] [THREADS]
"""
import os
import statistics
import sys
import time

import torch
import gguf
from transformers import AutoModelForCausalLM
from transformers.utils import logging

def main():
    path = os.path.abspath(sys.argv[1])
    runs = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    torch.set_num_threads(int(sys.argv[3]) if len(sys.argv) > 3 else os.cpu_count())
    logging.set_verbosity_error()
    logging.disable_progress_bar()
    t = []
    for _ in range(runs):
        t0 = time.perf_counter()
        m = AutoModelForCausalLM.from_pretrained(os.path.dirname(path), gguf_file=os.path.basename(path),
                                                 dtype=torch.float32)
        t.append(time.perf_counter() - t0)
        del m
    print(f"transformers_load_s {statistics.median(t):.4f}")
    t = []
    for _ in range(runs):
        t0 = time.perf_counter()
        r = gguf.GGUFReader(path)
        for x in r.tensors:
            gguf.quants.dequantize(x.data, x.tensor_type)
        t.append(time.perf_counter() - t0)
    print(f"ggufpy_dequant_s {statistics.median(t):.4f}")


if __name__ == "__main__":
    main()
