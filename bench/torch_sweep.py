#!/usr/bin/env python3
"""torch_sweep.py: the PyTorch reference of bench_sweep.c: one measurement of transformers'
LlamaForCausalLM (fp32, SDPA attention, torch.set_num_threads) on the same shape, batch and threads:
a training step (forward + loss + backward + clip + torch.optim.AdamW, best of the steps after a
warm-up), prefill (one sequence, best of 3 after a warm-up) or decode (64 single-token steps with
the KV cache after a 1-token prompt, best of 3). Prints bench_sweep's "key value" lines.

usage: torch_sweep.py train|prefill|decode H LAYERS HEADS KV_HEADS INTER VOCAB TIED BATCH SEQ THREADS
(bench/sweep.sh runs it beside smelt.)"""
import sys
import time

import torch
import transformers


def main():
    mode = sys.argv[1]
    h, layers, heads, kv, inter, vocab, tied, batch, seq, threads = (int(x) for x in sys.argv[2:12])
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(
        hidden_size=h, num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=kv,
        head_dim=h // heads, intermediate_size=inter, vocab_size=vocab, max_position_embeddings=max(seq, 128),
        rms_norm_eps=1e-5, rope_theta=10000.0, tie_word_embeddings=bool(tied), attention_bias=False)
    model = transformers.LlamaForCausalLM(cfg).float()
    try:
        model.set_attn_implementation("sdpa")
    except Exception:
        pass
    n_params = sum(p.numel() for p in model.parameters())
    print(f"mode torch-{mode}\nparams {n_params}\nthreads {torch.get_num_threads()}\ntorch {torch.__version__}")
    if mode == "train":
        x = torch.randint(0, vocab, (batch, seq))
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1)
        model.train()
        steps = 2 if h >= 512 else 4
        best = float("inf")
        for s in range(steps + 1):  # step 0 warms up
            t = time.perf_counter()
            loss = model(input_ids=x, labels=x).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            opt.zero_grad(set_to_none=True)
            t = time.perf_counter() - t
            if s:
                best = min(best, t)
        print(f"tokens {batch * seq}\nstep_s {best:.5f}\ntokens_per_s {batch * seq / best:.1f}\nloss {loss.item():.4f}")
        return
    model.eval()
    with torch.inference_mode():
        if mode == "prefill":
            x = torch.randint(0, vocab, (1, seq))
            best = float("inf")
            for r in range(4):
                t = time.perf_counter()
                model(input_ids=x, use_cache=True, logits_to_keep=1)
                t = time.perf_counter() - t
                if r:
                    best = min(best, t)
            print(f"tokens {seq}\nseconds {best:.5f}\ntokens_per_s {seq / best:.1f}")
        elif mode == "decode":
            steps = 64
            x = torch.randint(0, vocab, (1, steps + 1))
            best = float("inf")
            for _ in range(3):
                out = model(input_ids=x[:, :1], use_cache=True)
                past = out.past_key_values
                t = time.perf_counter()
                for i in range(1, steps + 1):
                    out = model(input_ids=x[:, i:i + 1], past_key_values=past, use_cache=True)
                    past = out.past_key_values
                best = min(best, time.perf_counter() - t)
            print(f"steps {steps}\nseconds {best:.5f}\ntokens_per_s {steps / best:.2f}")
        else:
            sys.exit(f"torch_sweep.py: unknown mode {mode}")


if __name__ == "__main__":
    main()
