#!/usr/bin/env python3
"""make_prune_fixtures.py: records transformers' view of the checkpoints smelt's prune pass makes
(tests/fixtures/pruned/<case>/, read by tests/test_prune_model.c).

    python3 tools/make_prune_fixtures.py --test build/tests/test_prune_model

1. Runs `test_prune_model --write-fixtures tests/fixtures/pruned`: the pass prunes the fixture
   models (llama_gqa, qwen2_bias, llama_tied) with seeded calibration sequences and writes each
   physically smaller model (config.json, generation_config.json, model.safetensors, fp32).
2. Loads each folder with transformers (AutoModelForCausalLM, fp32, eager attention), checks that
   the config carries the pruned sizes (intermediate_size, num_key_value_heads,
   num_attention_heads, head_dim unchanged, tie_word_embeddings as the source) and that every
   weight loaded is the file's, then writes hf_logits.safetensors: `tokens` and `seq_lens` (the
   source fixture's packed batch) and `logits` [T, vocab], each sequence run on its own.
The C test then compares smelt's logits on the same folders with these.
"""
import argparse
import json
import os
import subprocess
import sys

import torch
import transformers
from safetensors.torch import load_file, save_file

CASES = {"llama_gqa": "llama_gqa", "qwen2_bias": "qwen2_bias", "llama_tied": "llama_tied"}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--test", required=True, help="the built tests/test_prune_model program")
    ap.add_argument("--out", default="tests/fixtures/pruned")
    args = ap.parse_args()
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = os.path.join(root, args.out) if not os.path.isabs(args.out) else args.out
    os.makedirs(out, exist_ok=True)
    env = dict(os.environ, SMELT_SOURCE_DIR=root)
    subprocess.run([args.test, "--write-fixtures", out], check=True, env=env)
    torch.set_num_threads(1)
    for case, src in CASES.items():
        d = os.path.join(out, case)
        src_cfg = json.load(open(os.path.join(root, "tests/fixtures", src, "config.json")))
        cfg = json.load(open(os.path.join(d, "config.json")))
        if "smelt_layers" in cfg:
            raise SystemExit(f"{case}: config.json is not uniform")
        m = transformers.AutoModelForCausalLM.from_pretrained(d, dtype=torch.float32, attn_implementation="eager").eval()
        hd = src_cfg.get("head_dim") or src_cfg["hidden_size"] // src_cfg["num_attention_heads"]
        rep = src_cfg["num_attention_heads"] // src_cfg["num_key_value_heads"]
        c = m.config
        if c.head_dim != hd or c.num_attention_heads != rep * c.num_key_value_heads:
            raise SystemExit(f"{case}: head_dim {c.head_dim} (want {hd}) or heads {c.num_attention_heads} "
                             f"(want {rep} x {c.num_key_value_heads})")
        if c.intermediate_size >= src_cfg["intermediate_size"] or c.num_key_value_heads >= src_cfg["num_key_value_heads"]:
            raise SystemExit(f"{case}: the config is not smaller than the source's")
        if bool(c.tie_word_embeddings) != bool(src_cfg["tie_word_embeddings"]):
            raise SystemExit(f"{case}: tie_word_embeddings changed")
        for layer in m.model.layers:
            if layer.mlp.down_proj.weight.shape[1] != c.intermediate_size:
                raise SystemExit(f"{case}: down_proj is {tuple(layer.mlp.down_proj.weight.shape)}")
            if layer.self_attn.o_proj.weight.shape[1] != c.num_attention_heads * hd:
                raise SystemExit(f"{case}: o_proj is {tuple(layer.self_attn.o_proj.weight.shape)}")
        on_disk = load_file(os.path.join(d, "model.safetensors"))
        state = m.state_dict()
        for name, t in on_disk.items():
            if not torch.equal(state[name], t):
                raise SystemExit(f"{case}: {name} differs from the file after loading")
        ref = load_file(os.path.join(root, "tests/fixtures", src, "reference.safetensors"))
        tokens, seq_lens = ref["tokens"], ref["seq_lens"]
        logits, o = [], 0
        with torch.no_grad():
            for n in seq_lens.tolist():
                logits.append(m(input_ids=tokens[o:o + n][None].long()).logits[0])
                o += n
        save_file({"tokens": tokens.contiguous(), "seq_lens": seq_lens.contiguous(),
                   "logits": torch.cat(logits).contiguous()}, os.path.join(d, "hf_logits.safetensors"),
                  metadata={"transformers": transformers.__version__, "torch": torch.__version__})
        os.chmod(os.path.join(d, "hf_logits.safetensors"), 0o644)
        print(f"{case}: intermediate {c.intermediate_size}, kv heads {c.num_key_value_heads}, heads "
              f"{c.num_attention_heads}: transformers' logits written")


if __name__ == "__main__":
    sys.exit(main())
