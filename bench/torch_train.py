#!/usr/bin/env python3
"""torch_train.py: the PyTorch reference of bench_train's `step` mode: one SFT step (CE on every
position) or one distillation step (forward KL on every position, the teacher under no_grad) of a
transformers LlamaForCausalLM with the same sizes, batch and thread count, with AdamW. Prints the
median tokens/s and the process's peak resident memory, in bench_train's "key value" format.

usage: torch_train.py sft|distill H L HEADS KV I V TOKENS SEQ THREADS STEPS [TH TL THEADS TKV TI]
(bench/train_bench.sh runs it beside smelt.)
"""
import resource
import statistics
import sys
import time

import torch
import transformers


def config(h, layers, heads, kv, inter, vocab, seq):
    return transformers.LlamaConfig(hidden_size=h, num_hidden_layers=layers, num_attention_heads=heads,
                                    num_key_value_heads=kv, head_dim=h // heads, intermediate_size=inter,
                                    vocab_size=vocab, max_position_embeddings=seq, rms_norm_eps=1e-5,
                                    tie_word_embeddings=False, attn_implementation="sdpa")


def main():
    mode = sys.argv[1]
    a = [int(x) for x in sys.argv[2:12]]
    h, layers, heads, kv, inter, vocab, tokens, seq, threads, steps = a
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(config(h, layers, heads, kv, inter, vocab, seq))
    teacher = None
    if mode == "distill":
        t = [int(x) for x in sys.argv[12:17]]
        teacher = transformers.LlamaForCausalLM(config(t[0], t[1], t[2], t[3], t[4], vocab, seq)).eval()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.0)
    ns = tokens // seq
    times = []
    for _ in range(steps):
        ids = torch.randint(0, vocab, (ns, seq))
        t0 = time.perf_counter()
        if mode == "sft":
            loss = model(input_ids=ids, labels=ids).loss
        else:
            with torch.no_grad():
                lp = torch.log_softmax(teacher(input_ids=ids).logits[:, :-1].float(), dim=-1)
            lq = torch.log_softmax(model(input_ids=ids).logits[:, :-1].float(), dim=-1)
            loss = (lp.exp() * (lp - lq)).sum(-1).mean()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - t0)
    med = statistics.median(times)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"mode torch-{mode}\nparams {n_params}\ntokens {ns * seq}\nthreads {torch.get_num_threads()}\n"
          f"step_s {med:.4f}\ntokens_per_s {ns * seq / med:.1f}\n"
          f"peak_mib {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.1f}")


if __name__ == "__main__":
    main()
