#!/usr/bin/env python3
"""bench_checkpoint_ref.py: the reference rows of bench_checkpoint: Python safetensors
save_file / load_file (torch tensors) of the same checkpoints smelt wrote and read.
usage: bench_checkpoint_ref.py F32_DIR BF16_DIR MB_FP32"""
import os
import sys
import tempfile
import time

import torch
from safetensors.torch import load_file, save_file

torch.set_num_threads(1)
mb = float(sys.argv[3])
for name, d in (("fp32", sys.argv[1]), ("bf16", sys.argv[2])):
    path = os.path.join(d, "model.safetensors")
    t0 = time.perf_counter()
    sd = load_file(path)
    sd32 = {k: v.float() for k, v in sd.items()}  # smelt's load includes the conversion to fp32
    t1 = time.perf_counter()
    with tempfile.TemporaryDirectory(dir=d) as tmp:
        t2 = time.perf_counter()
        save_file({k: v.to(torch.bfloat16) if name == "bf16" else v for k, v in sd32.items()},
                  os.path.join(tmp, "m.safetensors"), metadata={"format": "pt"})
        os.sync()
        t3 = time.perf_counter()
    print(f"{'safetensors save_file ' + name:<34} {t3 - t2:10.3f} {mb / (t3 - t2):12.0f}")
    print(f"{'safetensors load_file+float ' + name:<34} {t1 - t0:10.3f} {mb / (t1 - t0):12.0f}")
