#!/usr/bin/env python3
"""check_qexport.py: proves that smelt's quantized exports are read by the reference
implementations, and records what they read as tests/fixtures/quant/<case>/ for test_qexport.

    python3 tools/check_qexport.py --helper build/tests/qexport_helper [--out tests/fixtures/quant]

Needs torch, transformers, safetensors, numpy, gguf and the PyPI package compressed-tensors.
`qexport_helper OUT` writes every case of tests/qexport_cases.h (a fixture model quantized by
smelt's test RTN and saved by qcheckpoint_save). For each folder:

compressed-tensors cases: transformers loads the folder (AutoModelForCausalLM; its
  compressed-tensors quantizer decompresses every quantized linear with the compressed-tensors
  package: unpacking, zero points, scales). The decompressed weight of every quantized linear is
  hashed (sha256 of its fp32 little-endian bytes): smelt's qweight_dequantize must give the same
  bits. The logits of the model as loaded (fp32 activations) are recorded as `logits`; when the
  scheme quantizes activations, `logits_actq` are the logits with smelt's dynamic per-token
  activation quantization emulated in PyTorch on every quantized linear's input (int8:
  s = max|x|/127, q = round_half_even(x * 127/max|x|) clamped to +-127; FP8: s = max(max|x|/448,
  1/(448*512)), q = e4m3(x / s); QA_FP8_TENSOR: the same with one max over all the tokens of the
  call), then x_hat = s * q; and `logits_transformers` the logits of
  the folder as transformers runs it, activations fake-quantized by compressed-tensors' own rule
  (int8: s = max|x|/127.5, codes clamped to [-128, 127], as its calculate_qparams does; vLLM's
  kernels use max|x|/127 like smelt). Where transformers cannot load a folder (compressed-tensors
  0.20.1 creates unpacked zero-point parameters before loading packed ones: asymmetric
  pack-quantized folders fail with a size mismatch), that is recorded; the package's compressor
  still decompresses them.
GGUF cases (a synthetic model of tests/qtestutil.h: the fixtures' hidden size 16 has no groups of
  32): gguf-py's GGUFReader reads the file (metadata, tensor types), gguf.quants.dequantize decodes
  every Q8_0/Q4_0/Q4_1 linear (q/k rows un-permuted), and transformers loads the file itself
  (gguf_file=) with the same weights; its logits are recorded.
GPTQ cases: no GPTQ kernel runs on this CPU-only machine, so the files are decoded here with
  NumPy from the format's definition (qweight [in/8, out] low bits first along the input, qzeros
  [groups, out/8] storing zero-1, scales fp16 [groups, out], g_idx), the decoded weights are
  hashed, put into the fixture model's transformers class, and its logits recorded.

Written per case: reference.json (case, model, the sha256 of config.json and model.safetensors
as smelt wrote them, the decompressed-weight hashes, versions) and reference.safetensors
(tokens I32, logits F32 [T, vocab], logits_actq when activations are quantized).
"""
import argparse
import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile

import numpy as np
import torch
import transformers
from safetensors import safe_open
from safetensors.torch import save_file

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def gguf_version():
    from importlib.metadata import version
    return version("gguf")


def sha(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def wsha(t):
    return hashlib.sha256(t.detach().to(torch.float32).contiguous().numpy().astype("<f4").tobytes()).hexdigest()


def read_cases():
    """Case names, models and token list from tests/qexport_cases.h (one source of truth)."""
    text = open(os.path.join(ROOT, "tests", "qexport_cases.h")).read()
    cases = re.findall(r'\{"(\w+)", "(\w+)", \{"([^"]*)", (QCKPT_\w+), (QW_\w+), (\d+), (QA_\w+)', text)
    tokens = [int(x) for x in re.search(r"qexport_tokens\[\] = \{([^}]*)\}", text).group(1).split(",")]
    return [dict(name=c[0], model=c[1], desc=c[2], format=c[3], act=c[6]) for c in cases], tokens


def act_quant_hook(kind):
    def hook(module, args):
        x = args[0]
        # per token, or one scale over every token of the forward call (QA_FP8_TENSOR)
        amax = x.abs().amax() if kind == "QA_FP8_TENSOR" else x.abs().amax(dim=-1, keepdim=True)
        if kind == "QA_INT8":
            inv = torch.where(amax > 0, 127.0 / amax, torch.zeros_like(amax))
            q = torch.clamp(torch.round(x * inv), -127, 127)
            s = amax / 127.0
        else:
            s = torch.clamp(amax / 448.0, min=1.0 / (448.0 * 512.0))
            q = (x / s).to(torch.float8_e4m3fn).to(torch.float32)
        return (q * s,)
    return hook


def quantized_modules(folder):
    with safe_open(os.path.join(folder, "model.safetensors"), "pt") as f:
        keys = list(f.keys())
    mods = set()
    for k in keys:
        for suf in (".weight_packed", ".qweight"):
            if k.endswith(suf):
                mods.add(k[: -len(suf)])
        if k.endswith(".weight_scale"):
            mods.add(k[: -len(".weight_scale")])
    return sorted(mods)


def model_logits(case, folder, weights, tokens, act=None):
    """The fixture model's transformers class with smelt's fp32 tensors and the given decoded weights."""
    src = os.path.join(ROOT, "tests", "fixtures", case["model"])
    model = transformers.AutoModelForCausalLM.from_pretrained(src, dtype=torch.float32,
                                                              attn_implementation="eager").eval()
    state = model.state_dict()
    with safe_open(os.path.join(folder, "model.safetensors"), "pt") as f:
        for k in f.keys():
            if k.rsplit(".", 1)[0] not in weights:
                state[k] = f.get_tensor(k)
    for m, w in weights.items():
        state[m + ".weight"] = w
    model.load_state_dict(state)
    named = dict(model.named_modules())
    hooks = [named[m].register_forward_pre_hook(act_quant_hook(act)) for m in weights] if act else []
    with torch.no_grad():
        logits = model(torch.tensor([tokens])).logits[0].clone()
    for h in hooks:
        h.remove()
    return logits


def check_ct(folder, case, tokens):
    from compressed_tensors.compressors.base import BaseCompressor
    from compressed_tensors.quantization import QuantizationConfig
    qc = QuantizationConfig.model_validate(json.load(open(os.path.join(folder, "config.json")))["quantization_config"])
    with safe_open(os.path.join(folder, "model.safetensors"), "pt") as f:
        keys = list(f.keys())
        weights = {}
        for m in quantized_modules(folder):
            group = [g for g in qc.config_groups.values() if "Linear" in g.targets or m in g.targets]
            if len(group) != 1 or m in qc.ignore:
                raise SystemExit(f"{case['name']}: {m} matches {len(group)} config groups (or is ignored)")
            comp = BaseCompressor.load_from_registry(group[0].format or qc.format)
            local = {k[len(m) + 1:]: f.get_tensor(k) for k in keys if k.startswith(m + ".")}
            w = comp.decompress(local, group[0])["weight"]
            if w.dtype != torch.float32:
                raise SystemExit(f"{case['name']}: {m} decompressed to {w.dtype}")
            weights[m] = w
    dequant = {m: wsha(w) for m, w in weights.items()}
    out = {"logits": model_logits(case, folder, weights, tokens)}
    # transformers loading the folder itself (its compressed-tensors quantizer) must agree
    try:
        model = transformers.AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32,
                                                                  attn_implementation="eager").eval()
        with torch.no_grad():
            direct = model(torch.tensor([tokens])).logits[0]
        named = dict(model.named_modules())
        for m in weights:
            if wsha(named[m].weight) != dequant[m]:
                raise SystemExit(f"{case['name']}: transformers decompressed {m} differently")
        if case["act"] == "QA_NONE" and not torch.equal(direct, out["logits"]):
            raise SystemExit(f"{case['name']}: transformers' logits on the folder differ from the decompressed model's")
        if case["act"] != "QA_NONE":  # transformers fake-quantizes activations its own way (max/127.5 for int8)
            out["logits_transformers"] = direct.clone()
        loads = "yes: same weights" + (" and logits" if case["act"] == "QA_NONE" else "")
    except RuntimeError as e:  # compressed-tensors 0.20 expects unpacked zero points on load (see docs)
        loads = "no: " + str(e).splitlines()[0][:200]
    if case["act"] != "QA_NONE":
        out["logits_actq"] = model_logits(case, folder, weights, tokens, case["act"])
    return dequant, out, loads


def gptq_decode(f, mod, cfg_q):
    bits = cfg_q["bits"]
    pf = 32 // bits
    mask = (1 << bits) - 1
    qw = f.get_tensor(mod + ".qweight").numpy().astype(np.int64) & 0xFFFFFFFF  # [in/pf, out]
    qz = f.get_tensor(mod + ".qzeros").numpy().astype(np.int64) & 0xFFFFFFFF   # [ng, out/pf]
    sc = f.get_tensor(mod + ".scales").to(torch.float32).numpy()               # [ng, out]
    gi = f.get_tensor(mod + ".g_idx").numpy()                                  # [in]
    shifts = np.arange(pf) * bits
    q = ((qw[:, None, :] >> shifts[None, :, None]) & mask).reshape(-1, qw.shape[1])  # [in, out]
    z = ((qz[:, :, None] >> shifts[None, None, :]) & mask).reshape(qz.shape[0], -1)  # [ng, out]
    z = (z + 1) & mask  # v1: stored minus one
    w = (q.astype(np.float32) - z[gi].astype(np.float32)) * sc[gi]  # [in, out]: (q - z) * s in fp32
    return torch.from_numpy(np.ascontiguousarray(w.T))


def check_gptq(folder, case, tokens):
    cfg_q = json.load(open(os.path.join(folder, "config.json")))["quantization_config"]
    assert cfg_q["quant_method"] == "gptq" and cfg_q["checkpoint_format"] == "gptq"
    with safe_open(os.path.join(folder, "model.safetensors"), "pt") as f:
        weights = {m: gptq_decode(f, m, cfg_q) for m in quantized_modules(folder)}
    dequant = {m: wsha(w) for m, w in weights.items()}
    return dequant, {"logits": model_logits(case, folder, weights, tokens)}, "not tried (no GPTQ kernel on the CPU)"


GGUF_LAYER = {"attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj", "attn_v": "self_attn.v_proj",
              "attn_output": "self_attn.o_proj", "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj",
              "ffn_down": "mlp.down_proj"}


def check_gguf(folder, case, tokens):
    """gguf-py's GGUFReader reads smelt's file: metadata, tensor types (quantized linears Q8_0, Q4_0 or
    Q4_1; everything else F32), every quantized linear dequantized by gguf.quants.dequantize with
    llama.cpp's q/k row permutation undone (hashed by Hugging Face module name); transformers loads
    the file itself (gguf_file=: its own dequantization and un-permutation) and must see the same
    weights; its logits are recorded."""
    import gguf
    path = os.path.join(folder, "model.gguf")
    r = gguf.GGUFReader(path)
    meta = {k: r.fields[k].contents() for k in r.fields}
    if meta.get("smelt.quantized") is not True or meta.get("general.architecture") != "llama":
        raise SystemExit(f"{case['name']}: metadata {meta}")
    heads, kv = meta["llama.attention.head_count"], meta["llama.attention.head_count_kv"]
    head_dim = meta.get("llama.attention.key_length", meta["llama.embedding_length"] // heads)
    weights = {}
    for t in r.tensors:
        q = t.tensor_type.name in ("Q8_0", "Q4_0", "Q4_1")
        if not q:
            if t.tensor_type.name != "F32":
                raise SystemExit(f"{case['name']}: {t.name} is {t.tensor_type.name}")
            continue
        w = np.asarray(gguf.quants.dequantize(t.data, t.tensor_type), dtype=np.float32)  # [out, in]
        if t.name == "output.weight":
            mod = "lm_head"
        else:
            _, n, kind, _ = t.name.split(".")
            mod = f"model.layers.{n}.{GGUF_LAYER[kind]}"
            if kind in ("attn_q", "attn_k"):  # llama.cpp's interleaved RoPE rows back to HF's halves
                h = heads if kind == "attn_q" else kv
                w = w.reshape(h, head_dim // 2, 2, -1).swapaxes(1, 2).reshape(w.shape)
        weights[mod] = torch.from_numpy(np.ascontiguousarray(w))
    dequant = {m: wsha(w) for m, w in weights.items()}
    model = transformers.AutoModelForCausalLM.from_pretrained(folder, gguf_file="model.gguf", dtype=torch.float32,
                                                              attn_implementation="eager").eval()
    named = dict(model.named_modules())
    for m, w in weights.items():
        if wsha(named[m].weight) != dequant[m]:
            raise SystemExit(f"{case['name']}: transformers' GGUF loader reads {m} differently from gguf-py")
    with torch.no_grad():
        logits = model(torch.tensor([tokens])).logits[0].clone()
    types = sorted({t.tensor_type.name for t in r.tensors})
    return dequant, {"logits": logits}, f"yes (gguf_file=): same weights; tensor types {', '.join(types)}"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--helper", default=os.path.join(ROOT, "build", "tests", "qexport_helper"))
    ap.add_argument("--out", default=os.path.join(ROOT, "tests", "fixtures", "quant"))
    a = ap.parse_args()
    import compressed_tensors
    torch.manual_seed(0)
    torch.set_num_threads(1)
    cases, tokens = read_cases()
    with tempfile.TemporaryDirectory() as tmp:
        env = dict(os.environ, SMELT_SOURCE_DIR=ROOT)
        subprocess.run([a.helper, tmp], check=True, env=env, stdout=subprocess.DEVNULL)
        for case in cases:
            folder = os.path.join(tmp, case["name"])
            check = {"QCKPT_GPTQ": check_gptq, "QCKPT_GGUF": check_gguf}.get(case["format"], check_ct)
            dequant, out, loads = check(folder, case, tokens)
            dst = os.path.join(a.out, case["name"])
            os.makedirs(dst, exist_ok=True)
            ref = {
                "what": "written by tools/check_qexport.py: the reference implementations' reading of smelt's export",
                "case": case["name"], "model": case["model"], "scheme": case["desc"],
                "files": {n: sha(os.path.join(folder, n)) for n in ("config.json", "model.safetensors", "model.gguf")
                          if os.path.exists(os.path.join(folder, n))},
                "dequant_sha256": dequant,
                "transformers_loads_folder": loads,
                "versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                             "compressed_tensors": compressed_tensors.__version__, "gguf": gguf_version()},
            }
            with open(os.path.join(dst, "reference.json"), "w") as f:
                json.dump(ref, f, indent=1, sort_keys=True)
                f.write("\n")
            tensors = {"tokens": torch.tensor(tokens, dtype=torch.int32)}
            tensors.update({k: v.to(torch.float32).contiguous() for k, v in out.items()})
            save_file(tensors, os.path.join(dst, "reference.safetensors"))
            print(f"{case['name']}: {len(dequant)} quantized linears read back; transformers loads it: {loads}"
                  + (f", activation-quantized logits differ by {float((out['logits_actq'] - out['logits']).abs().max()):.3e}"
                     if "logits_actq" in out else ""))


if __name__ == "__main__":
    sys.exit(main())
