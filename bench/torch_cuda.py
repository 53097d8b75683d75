#!/usr/bin/env python3
"""torch_cuda.py: PyTorch (transformers LlamaForCausalLM, SDPA attention) on the shapes of
bench_cuda.c, on the same GPU, so that scripts/gpu-check.sh prints both side by side. Rows carry the
same (what, shape) keys as bench_cuda --csv.

  training: fp32 parameters, torch.autocast bf16, SDPA, loss over every position, backward,
            clip_grad_norm_(1.0), torch.optim.AdamW(fused=True); best step of `--steps` after 2 warm-ups
  prefill:  bf16 weights, one forward of the whole prompt with a KV cache and logits of the last row
            only, then argmax to the host (time to first token); best of 3 after a warm-up
  decode:   one token at a time after a 4k prefill, argmax to the host each step
  peak:     torch.matmul of two 8192^3 bf16 matrices (cuBLAS underneath)
MFU uses the FLOP counts of bench_cuda.c (linear products 2 per multiply-add, LM head included,
causal attention 2 T^2 D per head and layer, training 3x) against the peak measured here.

usage: torch_cuda.py [--csv] [--steps S] [--quick]   (--quick: tiny shapes, runs on the CPU too)"""
import argparse
import sys
import time

import torch
from transformers import LlamaConfig, LlamaForCausalLM

SHAPES = {
    "smollm2-135m": dict(hidden_size=576, num_hidden_layers=30, num_attention_heads=9, num_key_value_heads=3,
                         head_dim=64, intermediate_size=1536, vocab_size=49152, rope_theta=100000.0),
    "llama-1b": dict(hidden_size=2048, num_hidden_layers=16, num_attention_heads=32, num_key_value_heads=8,
                     head_dim=64, intermediate_size=8192, vocab_size=128256, rope_theta=500000.0,
                     rope_scaling={"rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0,
                                   "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}),
    "tiny": dict(hidden_size=64, num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1, head_dim=32,
                 intermediate_size=96, vocab_size=128, rope_theta=10000.0),
}

CSV = False


def row(what, shape, value, unit, note=""):
    if CSV:
        print(f"{what},{shape},{value:.6g},{unit},{note}")
    else:
        print(f"{what:24s} {shape:30s} {value:12.4g} {unit:10s} {note}")


def config(name):
    c = LlamaConfig(max_position_embeddings=131072, tie_word_embeddings=True, rms_norm_eps=1e-5, **SHAPES[name])
    c._attn_implementation = "sdpa"
    return c


def linear_flops(s):
    h, q, kv, i = s["hidden_size"], s["num_attention_heads"] * s["head_dim"], s["num_key_value_heads"] * s["head_dim"], \
        s["intermediate_size"]
    return 2.0 * s["vocab_size"] * h + s["num_hidden_layers"] * (2.0 * h * (q + 2 * kv) + 2.0 * q * h + 6.0 * h * i)


def attn_flops(s, t):
    return s["num_hidden_layers"] * s["num_attention_heads"] * 2.0 * t * t * s["head_dim"]


def sync(dev):
    if dev.type == "cuda":
        torch.cuda.synchronize()


def peak(dev, n, reps):
    a = torch.rand(n, n, dtype=torch.bfloat16, device=dev) - 0.5
    b = torch.rand(n, n, dtype=torch.bfloat16, device=dev) - 0.5
    best = 0.0
    for r in range(-2, reps):
        sync(dev)
        t0 = time.perf_counter()
        torch.matmul(a, b.t())
        sync(dev)
        t = time.perf_counter() - t0
        if r >= 0:
            best = max(best, 2.0 * n ** 3 / t / 1e12)
    return best


def train(dev, name, seq, n_seqs, steps, pk):
    s = SHAPES[name]
    torch.manual_seed(0)
    model = LlamaForCausalLM(config(name)).to(dev)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.95), weight_decay=0.1,
                            fused=dev.type == "cuda")
    ids = torch.randint(0, s["vocab_size"], (n_seqs, seq), device=dev)
    best, loss0, loss = 1e30, None, None
    for st in range(-2, steps):
        sync(dev)
        t0 = time.perf_counter()
        with torch.autocast(dev.type, dtype=torch.bfloat16):
            out = model(input_ids=ids, labels=ids)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        loss = out.loss.item()
        t = time.perf_counter() - t0
        loss0 = loss if loss0 is None else loss0
        if st >= 0:
            best = min(best, t)
    n = seq * n_seqs
    flops = 3 * (linear_flops(s) * n + attn_flops(s, seq) * n_seqs)
    shape = f"{name} {n_seqs}x{seq}"
    row("train tokens/s", shape, n / best, "tok/s", f"step {best * 1e3:.1f} ms, loss {loss0:.3f} -> {loss:.3f}")
    row("train MFU", shape, 100 * flops / best / 1e12 / pk, "%", f"{flops / best / 1e12:.1f} TFLOP/s of {pk:.1f}")
    del model, opt
    if dev.type == "cuda":
        torch.cuda.empty_cache()


def infer(dev, name, ctx, decode, pk):
    s = SHAPES[name]
    torch.manual_seed(1)
    dtype = torch.bfloat16 if dev.type == "cuda" else torch.float32
    model = LlamaForCausalLM(config(name)).to(dev, dtype=dtype).eval()
    ids = torch.randint(0, s["vocab_size"], (1, ctx), device=dev)
    best, pkv, nxt = 1e30, None, None
    with torch.inference_mode():
        for r in range(-1, 3):
            sync(dev)
            t0 = time.perf_counter()
            out = model(input_ids=ids, use_cache=True, logits_to_keep=1)
            nxt = int(out.logits[0, -1].argmax())
            t = time.perf_counter() - t0
            pkv = out.past_key_values
            if r >= 0:
                best = min(best, t)
        shape = f"{name} ctx {ctx}"
        flops = linear_flops(s) * ctx + attn_flops(s, ctx)
        row("prefill TTFT", shape, best * 1e3, "ms", f"{flops / best / 1e12:.1f} TFLOP/s, {100 * flops / best / 1e12 / pk:.1f}% of peak")
        row("prefill tokens/s", shape, ctx / best, "tok/s", "")
        if decode:
            sync(dev)
            t0 = time.perf_counter()
            for _ in range(decode):
                out = model(input_ids=torch.tensor([[nxt]], device=dev), past_key_values=pkv, use_cache=True)
                pkv = out.past_key_values
                nxt = int(out.logits[0, -1].argmax())
            t = time.perf_counter() - t0
            row("decode tokens/s", shape, decode / t, "tok/s", f"{decode} steps, {t / decode * 1e3:.2f} ms/token")
    del model
    if dev.type == "cuda":
        torch.cuda.empty_cache()


def main():
    global CSV
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--csv", action="store_true")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--steps", type=int, default=5)
    a = ap.parse_args()
    CSV = a.csv
    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if not a.quick and dev.type != "cuda":
        print("torch_cuda.py: no CUDA device for PyTorch", file=sys.stderr)
        return 1
    if CSV:
        print("what,shape,value,unit,note")
    else:
        print(f"device: {torch.cuda.get_device_name() if dev.type == 'cuda' else 'cpu'}; torch {torch.__version__}")
    n = 128 if a.quick else 8192
    pk = peak(dev, n, 1 if a.quick else 10)
    row("cuBLAS GEMM peak", f"{n}^3 bf16 x bf16", pk, "TFLOP/s", f"torch.matmul, torch {torch.__version__}")
    if a.quick:
        train(dev, "tiny", 64, 2, 1, pk)
        infer(dev, "tiny", 70, 2, pk)
    else:
        train(dev, "smollm2-135m", 2048, 8, a.steps, pk)
        train(dev, "llama-1b", 2048, 4, a.steps, pk)
        for name, dec in (("smollm2-135m", 64), ("llama-1b", 32)):
            infer(dev, name, 4096, dec, pk)
            infer(dev, name, 16384, 0, pk)
    return 0


if __name__ == "__main__":
    sys.exit(main())
