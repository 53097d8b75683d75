#!/usr/bin/env python3
"""check_hf_load.py: proves that folders written by `smelt convert` load in Hugging Face
transformers (AutoModelForCausalLM) with the source's config and weights, and records
transformers' logits on them as tests/fixtures/<model>/hf_reload.safetensors.

    python3 tools/check_hf_load.py --smelt build/smelt            # every fixture (+ stories260K)
    python3 tools/check_hf_load.py --smelt build/smelt --only llama_gqa
    python3 tools/check_hf_load.py FIXTURE_DIR F32_DIR BF16_DIR    # folders converted by hand

For each fixture it runs `smelt convert FIXTURE OUT --dtype fp32` and `--dtype bf16` (stories260K:
from ../shared/models/stories260K/stories260K.bin), then checks: the model class, every config
field that shapes the model, the RoPE inverse frequencies (exactly), every weight (fp32: bitwise
equal to the source; bf16: bitwise equal to torch's round-to-nearest-even of the source), and
that the fp32 logits equal the fixture's reference logits. It then writes `tokens`, `seq_lens`,
`logits.f32` and `logits.bf16` (transformers, fp32 compute, on smelt's fp32 and bf16 saves).
"""
import argparse
import os
import subprocess
import sys
import tempfile

import torch
import transformers
from safetensors import safe_open
from safetensors.torch import load_file, save_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_fixtures  # noqa: E402

CONFIG_KEYS = ["hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
               "num_key_value_heads", "vocab_size", "rms_norm_eps", "max_position_embeddings",
               "tie_word_embeddings", "bos_token_id", "eos_token_id"]


def load(d):
    return transformers.AutoModelForCausalLM.from_pretrained(d, dtype=torch.float32,
                                                             attn_implementation="eager").eval()


def head_dim(cfg):
    return getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads


def check_same_model(src, got, what, bf16):
    if type(src) is not type(got):
        raise SystemExit(f"{what}: loads as {type(got).__name__}, the source is {type(src).__name__}")
    for k in CONFIG_KEYS:
        a, b = getattr(src.config, k), getattr(got.config, k)
        if a != b:
            raise SystemExit(f"{what}: config {k} is {b!r}, the source has {a!r}")
    if head_dim(src.config) != head_dim(got.config):
        raise SystemExit(f"{what}: head_dim {head_dim(got.config)} != {head_dim(src.config)}")
    rs, rg = dict(src.config.rope_parameters), dict(got.config.rope_parameters)
    if rs != rg:
        raise SystemExit(f"{what}: rope parameters {rg} != source {rs}")
    if not torch.equal(src.model.rotary_emb.inv_freq, got.model.rotary_emb.inv_freq):
        raise SystemExit(f"{what}: RoPE inverse frequencies differ from the source's")
    ss, sg = src.state_dict(), got.state_dict()
    if set(ss) != set(sg):
        raise SystemExit(f"{what}: tensors differ: missing {set(ss) - set(sg)}, extra {set(sg) - set(ss)}")
    for name, a in ss.items():
        want = a.to(torch.bfloat16).float() if bf16 else a
        if not torch.equal(want, sg[name]):
            raise SystemExit(f"{what}: tensor {name} differs from the source{' (rounded to bf16)' if bf16 else ''}")
    if got.config.tie_word_embeddings and got.lm_head.weight.data_ptr() != got.model.embed_tokens.weight.data_ptr():
        raise SystemExit(f"{what}: lm_head is not tied after loading")


def check(fixture_dir, f32_dir, bf16_dir, source=None):
    name = os.path.basename(os.path.normpath(fixture_dir))
    ref = load_file(os.path.join(fixture_dir, "reference.safetensors"))
    tokens = ref["tokens"]
    seq_lens = ref["seq_lens"].tolist() if "seq_lens" in ref else [tokens.numel()]
    src = source if source is not None else load(fixture_dir)
    got32, got16 = load(f32_dir), load(bf16_dir)
    check_same_model(src, got32, f"{name} fp32 save", bf16=False)
    check_same_model(src, got16, f"{name} bf16 save", bf16=True)
    for d, want in ((f32_dir, "float32"), (bf16_dir, "bfloat16")):
        if transformers.AutoConfig.from_pretrained(d).dtype != getattr(torch, want):
            raise SystemExit(f"{name}: {d}/config.json does not say torch_dtype {want}")
        with safe_open(os.path.join(d, "model.safetensors"), "pt") as f:
            dts = {f.get_slice(k).get_dtype() for k in f.keys()}
        if dts != {"F32" if want == "float32" else "BF16"}:
            raise SystemExit(f"{name}: {d}/model.safetensors holds {dts}, expected only {want}")
    with torch.no_grad():
        l32 = make_fixtures.packed_logits(got32, tokens, seq_lens)
        l16 = make_fixtures.packed_logits(got16, tokens, seq_lens)
    # same weights, same code, same machine: the fp32 logits are the fixture's, up to summation order
    # (a few ulps of the logit scale)
    scale = ref["logits"].abs().max().item()
    d32 = (l32 - ref["logits"]).abs().max().item()
    if d32 > 1e-6 * scale:
        raise SystemExit(f"{name}: fp32 reload logits differ from the fixture by {d32} (scale {scale})")
    out = {"tokens": tokens.to(torch.int32), "seq_lens": torch.tensor(seq_lens, dtype=torch.int32),
           "logits.f32": l32.contiguous(), "logits.bf16": l16.contiguous()}
    save_file(out, os.path.join(fixture_dir, "hf_reload.safetensors"))
    d16 = (l16 - ref["logits"]).abs().max().item()
    print(f"{name}: fp32 and bf16 saves load in transformers {transformers.__version__}; config, RoPE and weights "
          f"match; logits fp32 max|diff| {d32:.3g}, bf16 {d16:.3g} (scale {scale:.3g})")


def run_smelt(smelt, src, out, dtype):
    r = subprocess.run([smelt, "convert", src, out, "--dtype", dtype], capture_output=True, text=True)
    if r.returncode:
        raise SystemExit(f"smelt convert {src} {out} --dtype {dtype} failed ({r.returncode}): {r.stderr}")


def main():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("dirs", nargs="*", help="FIXTURE_DIR F32_DIR BF16_DIR")
    ap.add_argument("--smelt", help="the smelt binary: convert every fixture with it, then check")
    ap.add_argument("--fixtures", default=os.path.join(root, "tests", "fixtures"))
    ap.add_argument("--shared", default=os.environ.get("SMELT_SHARED_DIR", os.path.join(root, "..", "shared")))
    ap.add_argument("--only", action="append")
    args = ap.parse_args()
    transformers.logging.set_verbosity_error()
    torch.set_num_threads(1)
    if args.dirs:
        if len(args.dirs) != 3:
            ap.error("expected FIXTURE_DIR F32_DIR BF16_DIR")
        check(*args.dirs)
        return
    if not args.smelt:
        ap.error("give --smelt BIN or FIXTURE_DIR F32_DIR BF16_DIR")
    names = args.only or list(make_fixtures.MODELS) + ["stories260K"]
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            fx = os.path.join(args.fixtures, name)
            source, src_path = None, fx
            if name == "stories260K":
                src_path = os.path.join(args.shared, "models/stories260K/stories260K.bin")
                source, _ = make_fixtures.llama2c_to_hf(*make_fixtures.read_llama2c(src_path))
            f32, bf16 = os.path.join(tmp, name + "-f32"), os.path.join(tmp, name + "-bf16")
            run_smelt(args.smelt, src_path, f32, "fp32")
            run_smelt(args.smelt, src_path, bf16, "bf16")
            check(fx, f32, bf16, source)


if __name__ == "__main__":
    main()
