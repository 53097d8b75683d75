#!/usr/bin/env python3
"""check_gguf_export.py: checks the files `smelt convert` writes from a GGUF model, with readers
that share no code with smelt (gguf-py's GGUFReader and dequantize, safetensors, transformers).

    python3 tools/check_gguf_export.py --orig SmolLM2-135M-Instruct.Q4_1.gguf --hf HF_DIR --gguf Q8.gguf \
        --fixture tests/fixtures/smollm2/reference.json

- HF_DIR (smelt convert ORIG HF_DIR): every tensor of model.safetensors equals gguf-py's dequantization
  of ORIG bit for bit, after undoing llama.cpp's q/k row permutation for Llama
  (W.reshape(n, head_dim/2, 2, in).swapaxes(1, 2)); config.json has ORIG's sizes.
- HF_DIR's tokenizer in transformers (AutoTokenizer): the 47 golden strings give the fixture's
  llama.cpp smollm ids, no BOS is added, and apply_chat_template renders the fixture's chat texts.
- GGUF (smelt convert HF_DIR GGUF --dtype q8_0): GGUFReader reads the same tensor names and shapes as
  ORIG, 2-D weights Q8_0 and norms F32, every metadata key of ORIG with the same value (tokens, merges
  and token types element by element), and every Q8_0 block within the format's rounding of ORIG's
  dequantized weights: |w - w'| <= d (1/2 + 127 * 2^-11), d = max|w| / 127 over the block of 32.
Prints one line per check; exits 1 on the first failure.
"""
import argparse
import json
import os
import sys

import numpy as np
import gguf
from safetensors.numpy import load_file


def fail(msg):
    print("FAIL:", msg)
    sys.exit(1)


def field_value(f):
    return f.contents()


def hf_name(name):
    """llama.cpp name -> Hugging Face name."""
    top = {"token_embd.weight": "model.embed_tokens.weight", "output_norm.weight": "model.norm.weight",
           "output.weight": "lm_head.weight"}
    if name in top:
        return top[name]
    layer = {"attn_norm.weight": "input_layernorm.weight", "attn_q.weight": "self_attn.q_proj.weight",
             "attn_k.weight": "self_attn.k_proj.weight", "attn_v.weight": "self_attn.v_proj.weight",
             "attn_output.weight": "self_attn.o_proj.weight", "ffn_norm.weight": "post_attention_layernorm.weight",
             "ffn_gate.weight": "mlp.gate_proj.weight", "ffn_up.weight": "mlp.up_proj.weight",
             "ffn_down.weight": "mlp.down_proj.weight"}
    _, n, rest = name.split(".", 2)
    return f"model.layers.{n}.{layer[rest]}"


def unpermute(w, n_head, head_dim):
    return w.reshape(n_head, head_dim // 2, 2, -1).swapaxes(1, 2).reshape(w.shape)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--orig", required=True)
    ap.add_argument("--hf", required=True)
    ap.add_argument("--gguf", required=True)
    ap.add_argument("--fixture", required=True)
    args = ap.parse_args()
    orig = gguf.GGUFReader(args.orig)
    n_head = int(field_value(orig.fields["llama.attention.head_count"]))
    n_kv = int(field_value(orig.fields["llama.attention.head_count_kv"]))
    hidden = int(field_value(orig.fields["llama.embedding_length"]))
    hd = hidden // n_head
    deq = {t.name: gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float32) for t in orig.tensors}

    # 1. the Hugging Face folder
    st = load_file(os.path.join(args.hf, "model.safetensors"))
    for name, w in deq.items():
        want = w
        if name.endswith("attn_q.weight"):
            want = unpermute(w, n_head, hd)
        elif name.endswith("attn_k.weight"):
            want = unpermute(w, n_kv, hd)
        got = st.get(hf_name(name))
        if got is None or got.shape != want.shape or not np.array_equal(got, want):
            fail(f"{args.hf}: {hf_name(name)} differs from gguf-py's dequantization of {name}")
    if len(st) != len(deq):
        fail(f"{args.hf}: {len(st)} tensors, the GGUF has {len(deq)}")
    cfg = json.load(open(os.path.join(args.hf, "config.json")))
    if (cfg["hidden_size"], cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["num_hidden_layers"]) != \
            (hidden, n_head, n_kv, int(field_value(orig.fields["llama.block_count"]))):
        fail(f"{args.hf}/config.json sizes differ from the GGUF's")
    print(f"hf: {len(st)} tensors equal gguf-py's dequantization bit for bit (q/k unpermuted); config.json sizes ok")

    # 2. its tokenizer in transformers
    from transformers import AutoTokenizer
    fx = json.load(open(args.fixture))
    tok = AutoTokenizer.from_pretrained(args.hf)
    for g in fx["golden"]:
        ids = tok(g["text"], add_special_tokens=False)["input_ids"]
        if ids != g["ids_smollm"]:
            fail(f"transformers on {args.hf}: {g['text']!r} gives {ids}, smelt/llama.cpp {g['ids_smollm']}")
        if tok(g["text"])["input_ids"] != ids:
            fail(f"transformers on {args.hf} adds special tokens to {g['text']!r}")
    for c in fx["chat"]:
        text = tok.apply_chat_template(c["messages"], tokenize=False, add_generation_prompt=c["add_generation_prompt"])
        if text != c["text"]:
            fail(f"transformers on {args.hf}: apply_chat_template gives {text!r}")
        if tok(text, add_special_tokens=False)["input_ids"] != c["ids"]:
            fail(f"transformers on {args.hf}: chat ids differ")
    print(f"hf tokenizer: transformers gives smelt's ids on {len(fx['golden'])} golden strings and "
          f"{len(fx['chat'])} chat prompts, adds no BOS, renders the chat template alike")

    # 3. the Q8_0 GGUF
    q8 = gguf.GGUFReader(args.gguf)
    qt = {t.name: t for t in q8.tensors}
    if set(qt) != set(deq):
        fail(f"{args.gguf}: tensor names differ: {sorted(set(qt) ^ set(deq))[:5]}")
    worst = 0.0
    for t in orig.tensors:
        q = qt[t.name]
        if list(q.shape) != list(t.shape):
            fail(f"{args.gguf}: {t.name} has shape {list(q.shape)}, the original {list(t.shape)}")
        want_type = gguf.GGMLQuantizationType.F32 if len(t.shape) == 1 else gguf.GGMLQuantizationType.Q8_0
        if q.tensor_type != want_type:
            fail(f"{args.gguf}: {t.name} is {q.tensor_type.name}, expected {want_type.name}")
        a = deq[t.name].reshape(-1, 32) if len(t.shape) > 1 else deq[t.name]
        b = gguf.quants.dequantize(q.data, q.tensor_type).astype(np.float32).reshape(a.shape)
        if len(t.shape) == 1:
            if not np.array_equal(a, b):
                fail(f"{args.gguf}: {t.name} (F32) differs")
            continue
        d = np.abs(a).max(axis=1, keepdims=True) / 127
        bound = d * (0.5 + 127 * 2.0 ** -11) + 2.0 ** -24
        excess = np.abs(a - b) - bound
        if (excess > 0).any():
            fail(f"{args.gguf}: {t.name} has a block beyond Q8_0 rounding (by {excess.max():.3g})")
        worst = max(worst, float((np.abs(a - b) / np.maximum(d, 1e-30)).max()))
    for key, f in orig.fields.items():
        if key.startswith("GGUF.") or key in ("general.file_type", "general.quantization_version", "general.name",
                                              "general.type") or not (key.startswith("llama.") or
                                                                      key.startswith("tokenizer.") or
                                                                      key == "general.architecture"):
            continue
        if key not in q8.fields:
            fail(f"{args.gguf}: metadata {key} is missing")
        a, b = field_value(f), field_value(q8.fields[key])
        if isinstance(a, list):
            if list(a) != list(b):
                fail(f"{args.gguf}: metadata {key} differs")
        elif isinstance(a, float) or isinstance(b, float):
            if np.float32(a) != np.float32(b):
                fail(f"{args.gguf}: metadata {key} is {b}, the original {a}")
        elif a != b:
            fail(f"{args.gguf}: metadata {key} is {b!r}, the original {a!r}")
    ft = int(field_value(q8.fields["general.file_type"]))
    if ft != 7:
        fail(f"{args.gguf}: general.file_type {ft}, expected 7 (MOSTLY_Q8_0)")
    print(f"gguf: GGUFReader reads {len(qt)} tensors with the original names and shapes, Q8_0 weights within "
          f"rounding (worst |w - w'| = {worst:.3f} d), every llama.* and tokenizer.* key equal")


if __name__ == "__main__":
    main()
