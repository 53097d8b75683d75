#!/usr/bin/env python3
"""torch_llama.py: the PyTorch reference of bench_llama.c: the same ~32M-parameter Llama
(transformers LlamaForCausalLM, fp32, SDPA attention) on the same batch shapes and thread count:
training step (forward + loss + backward + torch.optim.AdamW), prefill and decode tokens/s.
Prints a table and one "RESULT {json}" line (bench/run_llama.sh puts it beside smelt)."""
import argparse
import json
import time

import torch
import transformers


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seq", type=int, default=512)
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--decode", type=int, default=128)
    ap.add_argument("--layers", type=int, default=8)
    ap.add_argument("--precision", choices=["fp32", "bf16"], default="fp32",
                    help="bf16: torch.autocast(cpu, bfloat16) around forwards (fp32 weights and AdamW)")
    a = ap.parse_args()
    amp = torch.autocast("cpu", dtype=torch.bfloat16, enabled=a.precision == "bf16")
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(
        hidden_size=512, num_hidden_layers=a.layers, num_attention_heads=8, num_key_value_heads=4, head_dim=64,
        intermediate_size=1408, vocab_size=8192, max_position_embeddings=a.seq, rms_norm_eps=1e-5,
        rope_theta=10000.0, tie_word_embeddings=False, attention_bias=False)
    model = transformers.LlamaForCausalLM(cfg).float()
    try:
        model.set_attn_implementation("sdpa")
    except Exception:
        pass
    n_params = sum(p.numel() for p in model.parameters())
    print(f"torch_llama: torch {torch.__version__}, transformers {transformers.__version__}, "
          f"{n_params / 1e6:.1f}M parameters, {a.threads} threads, batch {a.batch} x {a.seq}")
    x = torch.randint(0, cfg.vocab_size, (a.batch, a.seq))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1)
    model.train()
    best = float("inf")
    loss = None
    for s in range(a.steps + 1):  # step 0 warms up
        t = time.perf_counter()
        with amp:
            out = model(input_ids=x, labels=x)
            loss = out.loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        t = time.perf_counter() - t
        if s >= 1:
            best = min(best, t)
    tps = a.batch * a.seq / best
    print(f"training step (best of {a.steps}): {best:.3f} s, {tps:.0f} tokens/s, loss {loss.item():.4f}")

    model.eval()
    with torch.inference_mode(), amp:
        p = x[:1]
        t_pre = float("inf")
        for r in range(4):
            t = time.perf_counter()
            model(input_ids=p, use_cache=True)
            t = time.perf_counter() - t
            if r:
                t_pre = min(t_pre, t)
        out = model(input_ids=x[:1, :1], use_cache=True)
        past = out.past_key_values
        t = time.perf_counter()
        for i in range(1, a.decode + 1):
            out = model(input_ids=x[:1, i:i + 1], past_key_values=past, use_cache=True)
            past = out.past_key_values
        t_dec = time.perf_counter() - t
    print(f"prefill {a.seq} tokens: {t_pre:.3f} s, {a.seq / t_pre:.0f} tokens/s")
    print(f"decode {a.decode} steps: {t_dec:.3f} s, {a.decode / t_dec:.1f} tokens/s")
    print("RESULT " + json.dumps({
        "impl": "torch", "threads": a.threads, "batch": a.batch, "seq": a.seq,
        "train_tokens_per_s": round(tps, 1), "train_step_s": round(best, 4),
        "prefill_tokens_per_s": round(a.seq / t_pre, 1), "decode_tokens_per_s": round(a.decode / t_dec, 1),
        "loss": round(loss.item(), 4), "precision": a.precision}))


if __name__ == "__main__":
    main()
