#!/usr/bin/env python3
"""Bits per weight of the quantized linears of a quantized checkpoint, read from the written file alone.

    python3 tools/file_bits_per_weight.py OUT        (OUT: a quantize stage's output folder)

Prints 8 x (bytes of every tensor of the quantized linears) / (their weights), the figure the quantize
stage records as `bits_per_weight` (tests/quantize/stage.sh compares the two). Computed here without
smelt's code:

- a folder with model.safetensors (compressed-tensors or GPTQ): the tensor sizes come from the
  safetensors header (data_offsets, the standard library's json), a linear is quantized when its module
  holds `weight_scale` (compressed-tensors) or `scales` (GPTQ), and every tensor of that module counts
  (codes, scales, zero points, weight_shape, g_idx); the weights per linear come from config.json's
  sizes (hidden, heads, head_dim, intermediate);
- a folder with model.gguf: gguf-py's reader, the tensors of types Q8_0/Q4_0/Q4_1 (n_bytes / n_elements).
"""
import json
import os
import struct
import sys

PROJ = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}


def linear_shape(cfg, proj):
    """[n_out, n_in] of a linear of a llama-like model from its config.json."""
    hid, heads = cfg["hidden_size"], cfg["num_attention_heads"]
    kv, hd = cfg.get("num_key_value_heads", heads), cfg.get("head_dim") or hid // heads
    inter = cfg["intermediate_size"]
    return {"q_proj": (heads * hd, hid), "k_proj": (kv * hd, hid), "v_proj": (kv * hd, hid),
            "o_proj": (hid, heads * hd), "gate_proj": (inter, hid), "up_proj": (inter, hid),
            "down_proj": (hid, inter)}[proj]


def safetensors_bpw(folder):
    with open(os.path.join(folder, "model.safetensors"), "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
    cfg = json.load(open(os.path.join(folder, "config.json")))
    modules = {}
    for name, t in header.items():
        if name == "__metadata__":
            continue
        mod, param = name.rsplit(".", 1)
        start, end = t["data_offsets"]
        modules.setdefault(mod, {})[param] = end - start
    nbytes = nweights = 0
    for mod, params in modules.items():
        if "weight_scale" not in params and "scales" not in params:
            continue  # dense
        proj = mod.rsplit(".", 1)[1]
        if proj not in PROJ:
            raise SystemExit(f"{mod}: a quantized module that is not a decoder linear")
        n_out, n_in = linear_shape(cfg, proj)
        nbytes += sum(params.values())
        nweights += n_out * n_in
    return nbytes, nweights


def gguf_bpw(path):
    import gguf

    nbytes = nweights = 0
    for t in gguf.GGUFReader(path).tensors:
        if t.tensor_type.name in ("Q8_0", "Q4_0", "Q4_1"):
            nbytes += int(t.n_bytes)
            nweights += int(t.n_elements)
    return nbytes, nweights


def main():
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    out = sys.argv[1]
    gg = os.path.join(out, "model.gguf")
    nbytes, nweights = gguf_bpw(gg) if os.path.exists(gg) else safetensors_bpw(out)
    if not nweights:
        raise SystemExit(f"{out}: no quantized linear")
    print("%.17g" % (8 * nbytes / nweights))


if __name__ == "__main__":
    main()
