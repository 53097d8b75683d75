"""serve_ref.py: the references of bench_serve on the same model shape and threads.
transformers (eager attention, fp32): prefill tokens/s of one prompt and decode tokens/s of one
sequence with its KV cache. llama.cpp (PyPI llama-cpp-python, if installed) on a GGUF file: the
same two figures. Prints one "name value" line per figure; bench/serve_compare.sh tabulates them.
usage: serve_ref.py THREADS PROMPT_LEN DECODE_STEPS [GGUF]
"""
import os
import sys
import time

threads, L, steps = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
gguf = sys.argv[4] if len(sys.argv) > 4 else ""


def transformers_ref():
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.set_num_threads(threads)
    torch.manual_seed(1)
    cfg = LlamaConfig(hidden_size=576, num_hidden_layers=30, num_attention_heads=9, num_key_value_heads=3,
                      intermediate_size=1536, vocab_size=49152, tie_word_embeddings=True, rope_theta=100000,
                      max_position_embeddings=8192, attn_implementation="eager")
    model = LlamaForCausalLM(cfg).eval()
    ids = torch.tensor([[(i * 2654435761) % 49152 for i in range(L)]])
    best = 1e30
    with torch.no_grad():
        model(ids[:, :16])
        for _ in range(3):
            t0 = time.perf_counter()
            out = model(ids, use_cache=True)
            best = min(best, time.perf_counter() - t0)
        past, tok = out.past_key_values, out.logits[:, -1:].argmax(-1)
        t0 = time.perf_counter()
        for _ in range(steps):
            out = model(tok, past_key_values=past, use_cache=True)
            past, tok = out.past_key_values, out.logits[:, -1:].argmax(-1)
        dec = (time.perf_counter() - t0) / steps
    print("transformers_prefill_tps %.1f" % (L / best))
    print("transformers_decode_tps %.1f" % (1 / dec))


def llamacpp_ref():
    try:
        from llama_cpp import Llama
    except ImportError:
        print("llamacpp_note not_installed(pip install llama-cpp-python builds llama.cpp)")
        return
    if not os.path.exists(gguf):
        print("llamacpp_note no_gguf_file")
        return
    llm = Llama(model_path=gguf, n_threads=threads, n_threads_batch=threads, n_ctx=L + steps + 8, n_batch=L,
                verbose=False)
    ids = [(i * 2654435761) % llm.n_vocab() for i in range(L)]
    best = 1e30
    for _ in range(3):
        llm.reset()
        t0 = time.perf_counter()
        llm.eval(ids)
        best = min(best, time.perf_counter() - t0)
    t0 = time.perf_counter()
    for i in range(steps):
        llm.eval([ids[i % L]])
    dec = (time.perf_counter() - t0) / steps
    print("llamacpp_prefill_tps %.1f" % (L / best))
    print("llamacpp_decode_tps %.1f" % (1 / dec))


transformers_ref()
llamacpp_ref()
