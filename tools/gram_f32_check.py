"""gram_f32_check.py: float32 Gram chunks accumulated in float64 against the all-float64 Gram (ALGORITHMS.md asks
float64 accumulation), on SmolLM2-135M's real calibration inputs (transformers float32 forward of the unquantized
model; the inputs of down_proj and q_proj at the given layers), and GPTQ W4 group 64 (bench/quant_ref.py) on
each, with a control: the same float64 sums in another order. For docs/quantize.md.

Usage: python3 tools/gram_f32_check.py HF_DIR IDS.jsonl LAYERS   (e.g. 0,15,29; ids from smelt export-calibration)
"""
import json
import os
import sys

import numpy as np
import torch
import transformers

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "bench"))
import quant_ref as qr
hf, ids_path = sys.argv[1], sys.argv[2]
layers = [int(x) for x in sys.argv[3].split(",")]
torch.set_num_threads(2)
ids = [json.loads(l) for l in open(ids_path) if l.strip()]
model = transformers.AutoModelForCausalLM.from_pretrained(hf, dtype=torch.float32)
cap = {}
def hook(name):
    def f(mod, args):
        cap.setdefault(name, []).append(args[0][0].detach().numpy().copy())
    return f
for l in layers:
    model.model.layers[l].mlp.down_proj.register_forward_pre_hook(hook((l, "down")))
    model.model.layers[l].self_attn.q_proj.register_forward_pre_hook(hook((l, "qkv")))
with torch.no_grad():
    for s in ids:
        model(torch.tensor([s]))
def gram_f32(x, chunk):
    h = np.zeros((x.shape[1],) * 2)
    for c in range(0, len(x), chunk):
        xc = x[c:c + chunk]
        h += (xc.T @ xc).astype(np.float64)  # float32 sgemm over the chunk, then float64
    return h
for key in sorted(cap):
    x = np.concatenate(cap[key]).astype(np.float32)
    x64 = x.astype(np.float64)
    h64 = x64.T @ x64
    lam = 0.01 * np.mean(np.diag(h64))
    w = (model.model.layers[key[0]].mlp.down_proj.weight if key[1] == "down" else
         model.model.layers[key[0]].self_attn.q_proj.weight).detach().numpy().astype(np.float32)
    group = 64
    scales = qr.grid(w, group)
    hd = h64 + lam * np.eye(len(h64))
    w64 = qr.gptq(w, hd, scales, group)
    e64 = qr.rel_error(w.astype(np.float64), w64, h64)
    d = np.sqrt(np.diag(h64))
    # control: the same float64 sums in another order (chunks of 256 reversed)
    hb = np.zeros_like(h64)
    for c in reversed(range(0, len(x64), 256)):
        hb += x64[c:c + 256].T @ x64[c:c + 256]
    wb = qr.gptq(w, hb + lam * np.eye(len(h64)), scales, group)
    print(f"layer {key[0]} {key[1]:4s} control (float64, another order): |E|_F/|H|_F {np.linalg.norm(hb - h64) / np.linalg.norm(h64):.2e}, "
          f"codes differing {100 * np.mean(wb != w64):.3f}%, rel. error {qr.rel_error(w.astype(np.float64), wb, h64):.6e}", flush=True)
    for chunk in (256, 2048):
        h32 = gram_f32(x, chunk)
        E = h32 - h64
        rel_f = np.linalg.norm(E) / np.linalg.norm(h64)
        rel_max = np.max(np.abs(E) / np.outer(d, d))
        e2 = np.linalg.norm(E, 2)
        w32 = qr.gptq(w, h32 + lam * np.eye(len(h64)), scales, group)
        e32 = qr.rel_error(w.astype(np.float64), w32, h64)
        diff = np.mean(w32 != w64)
        print(f"layer {key[0]} {key[1]:4s} tokens {len(x)} chunk {chunk}: |E|_F/|H|_F {rel_f:.2e}, max |E_ij|/sqrt(H_ii H_jj) "
              f"{rel_max:.2e}, |E|_2/lambda {e2 / lam:.2e}; GPTQ codes differing {100 * diff:.3f}%, rel. error "
              f"(both on the float64 H) {e32:.6e} vs {e64:.6e} ({100 * (e32 / e64 - 1):+.3f}%)", flush=True)
