#!/usr/bin/env python3
"""make_gguf_fixtures.py: writes tests/fixtures/gguf/quants.json, the reference for smelt's GGUF
reader and its (de)quantization, computed by the `gguf` Python package (llama.cpp's gguf-py).

Regenerate (from the repository root; needs numpy and gguf from PyPI):
    python3 tools/make_gguf_fixtures.py [--shared ../shared] [--out tests/fixtures/gguf/quants.json]

What it records:
- "dequant": for every format smelt converts (F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K..Q6_K),
  random blocks (seeded) as hex and gguf.quants.dequantize's fp32 output: its sha256 and first values.
  Block bytes are uniform random except the fp16 scale fields, which hold random finite values of a
  realistic magnitude (|d| in [2^-12, 2^-2]), so that every code path and bit position is exercised.
- "quant": random fp32 rows (hex) and the bytes gguf.quants.quantize makes of them for F16, BF16,
  Q8_0, Q4_0 and Q4_1 (the writer's formats; gguf-py matches ggml's reference quantizers).
- "smollm2": for ../shared/models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf as
  gguf.GGUFReader reads it: version, counts, alignment, data offset, every metadata key with its
  type and value (arrays: element type, count and a sha256 of their elements, see array_digest), and every
  tensor's name, type, shape (ggml order), offset and the first 16 hex digits of the sha256 of its
  dequantized fp32 little-endian bytes.
"""
import argparse
import hashlib
import json
import os

import numpy as np
import gguf
from gguf import GGMLQuantizationType as T
from gguf.constants import GGML_QUANT_SIZES

from fixture_io import SHARED_DEFAULT, write_json

SEED = 20241206
# offsets (bytes within a block) of the fp16 scale fields of each format
SCALE_FIELDS = {
    T.Q4_0: [0], T.Q4_1: [0, 2], T.Q5_0: [0], T.Q5_1: [0, 2], T.Q8_0: [0],
    T.Q2_K: [80, 82], T.Q3_K: [108], T.Q4_K: [0, 2], T.Q5_K: [0, 2], T.Q6_K: [208],
}
N_BLOCKS = {T.F32: 64, T.F16: 64, T.BF16: 64}  # elements for the plain types; blocks for the others
DEFAULT_BLOCKS_32 = 12
DEFAULT_BLOCKS_K = 3


def random_half(rng, n):
    mag = np.exp2(rng.uniform(-12, -2, n)).astype(np.float32)
    sign = np.where(rng.random(n) < 0.5, -1, 1).astype(np.float32)
    return (mag * sign).astype(np.float16)


def dequant_case(rng, qtype):
    blck, size = GGML_QUANT_SIZES[qtype]
    if qtype == T.F32:
        raw = rng.standard_normal(N_BLOCKS[qtype]).astype(np.float32).tobytes()
    elif qtype == T.F16:
        raw = rng.standard_normal(N_BLOCKS[qtype]).astype(np.float16).tobytes()
    elif qtype == T.BF16:
        x = rng.standard_normal(N_BLOCKS[qtype]).astype(np.float32)
        raw = (x.view(np.uint32) >> 16).astype(np.uint16).tobytes()
    else:
        nb = DEFAULT_BLOCKS_K if blck == 256 else DEFAULT_BLOCKS_32
        blocks = rng.integers(0, 256, size=(nb, size), dtype=np.uint8)
        for off in SCALE_FIELDS[qtype]:
            blocks[:, off:off + 2] = random_half(rng, nb).view(np.uint8).reshape(nb, 2)
        raw = blocks.tobytes()
    data = np.frombuffer(raw, dtype=np.uint8)
    out = gguf.quants.dequantize(data, qtype).astype(np.float32, copy=False).reshape(-1)
    return {
        "blocks": raw.hex(),
        "n": int(out.size),
        "sha256": hashlib.sha256(out.tobytes()).hexdigest(),
        "head": [float(v) for v in out[:8]],
    }


def quant_case(rng, qtype):
    x = (rng.standard_normal(4 * 32) * rng.uniform(0.01, 3)).astype(np.float32)
    x[5] = 0.0  # exact zeros and a block of equal values exercise the d == 0 paths
    x[96:128] = 0.25
    q = gguf.quants.quantize(x.reshape(1, -1), qtype)
    return {"x": x.tobytes().hex(), "bytes": np.asarray(q).tobytes().hex()}


def array_digest(et, vals):
    """sha256 over the elements: a string as its 8-byte little-endian length and UTF-8 bytes, an
    integer or bool as int64 little-endian, a float as float64 little-endian (unambiguous, and easy to
    recompute from any reader's parse)."""
    h = hashlib.sha256()
    for v in vals:
        if et == gguf.GGUFValueType.STRING:
            b = v.encode("utf-8")
            h.update(len(b).to_bytes(8, "little") + b)
        elif et in (gguf.GGUFValueType.FLOAT32, gguf.GGUFValueType.FLOAT64):
            h.update(np.float64(v).tobytes())
        else:
            h.update(int(v).to_bytes(8, "little", signed=True))
    return h.hexdigest()


def kv_entry(field):
    vt = field.types[0]
    if vt == gguf.GGUFValueType.ARRAY:
        et = field.types[1] if len(field.types) > 1 else gguf.GGUFValueType.UINT8
        return {"type": int(vt), "elem_type": int(et), "n": len(field.data),
                "sha256": array_digest(et, field.contents())}
    val = field.contents()
    if vt == gguf.GGUFValueType.BOOL:
        val = bool(val)
    elif vt in (gguf.GGUFValueType.FLOAT32, gguf.GGUFValueType.FLOAT64):
        val = float(val)
    elif vt != gguf.GGUFValueType.STRING:
        val = int(val)
    return {"type": int(vt), "value": val}


def smollm2_summary(path):
    r = gguf.GGUFReader(path)
    kvs = {}
    for name, field in r.fields.items():
        if name.startswith("GGUF."):
            continue
        kvs[name] = kv_entry(field)
    tensors = []
    for t in r.tensors:
        deq = gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float32, copy=False)
        tensors.append([t.name, int(t.tensor_type), [int(d) for d in t.shape], int(t.data_offset - r.data_offset),
                        hashlib.sha256(np.ascontiguousarray(deq).tobytes()).hexdigest()[:16]])
    return {
        "version": int(r.fields["GGUF.version"].parts[-1][0]),
        "n_kv": len(kvs), "n_tensors": len(r.tensors),
        "alignment": int(r.alignment), "data_offset": int(r.data_offset),
        "kv": kvs, "tensors": tensors,
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shared", default=SHARED_DEFAULT)
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "gguf",
                                                  "quants.json"))
    args = ap.parse_args()
    rng = np.random.default_rng(SEED)
    deq_types = [T.F32, T.F16, T.BF16, T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1, T.Q8_0, T.Q2_K, T.Q3_K, T.Q4_K, T.Q5_K, T.Q6_K]
    out = {"generator": "tools/make_gguf_fixtures.py", "gguf_version": getattr(gguf, "__version__", "?"),
           "numpy": np.__version__, "seed": SEED,
           "dequant": {t.name: dict(type=int(t), **dequant_case(rng, t)) for t in deq_types},
           "quant": {t.name: dict(type=int(t), **quant_case(rng, t)) for t in [T.F16, T.BF16, T.Q8_0, T.Q4_0, T.Q4_1]}}
    model = os.path.join(args.shared, "models", "smollm2-135m-instruct", "SmolLM2-135M-Instruct.Q4_1.gguf")
    if os.path.exists(model):
        out["smollm2"] = smollm2_summary(model)
    else:
        print(f"note: {model} not found; the real-file part is left out")
    write_json(args.out, out)


if __name__ == "__main__":
    main()
