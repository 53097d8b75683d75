#!/usr/bin/env python3
"""make_fixtures.py: writes the reference fixtures of tests/fixtures (see tests/fixtures/README.md)
with Hugging Face transformers and PyTorch (fp32, CPU, seeded, deterministic).

Regenerate (from the repository root; needs torch, transformers >= 5, safetensors, numpy):
    python3 tools/make_fixtures.py                 # all fixtures into tests/fixtures
    python3 tools/make_fixtures.py --only llama_gqa --out /tmp/fx
then rerun tools/check_hf_load.py (it records hf_reload.safetensors from smelt's own saves).

Tiny random Llama/Qwen2 models: config.json + model.safetensors (save_pretrained) and
reference.safetensors: a packed batch of 3 sequences, the logits at every position, the mean
next-token cross-entropy, its gradient w.r.t. every parameter ("grad.<name>") and the parameters
after 10 AdamW steps ("adamw.<name>"). stories260K (llama2.c, from ../shared): converted to the
HF layout with transformers' q/k permutation, checked against a NumPy port of llama2.c's run.c
and the published greedy story, then its tensor hashes and logits are recorded.
"""
import argparse
import hashlib
import json
import os
import struct
import sys

import numpy as np
import torch
import transformers
from safetensors.torch import save_file

SEED = 20240611
SEQ_LENS = [9, 6, 4]
ADAMW = dict(lr=1e-2, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1)
ADAMW_STEPS = 10

COMMON = dict(hidden_size=16, intermediate_size=32, num_hidden_layers=2, vocab_size=64, rms_norm_eps=1e-5,
              rope_theta=10000.0, max_position_embeddings=128, bos_token_id=1, eos_token_id=2)
MODELS = {
    # GQA (4 query heads share 2 kv heads), head_dim 8 decoupled from hidden/heads = 4, untied head
    "llama_gqa": dict(model_type="llama", num_attention_heads=4, num_key_value_heads=2, head_dim=8,
                      tie_word_embeddings=False),
    # tied embeddings, plain multi-head attention, head_dim = hidden/heads = 4
    "llama_tied": dict(model_type="llama", num_attention_heads=4, num_key_value_heads=4, tie_word_embeddings=True),
    # Llama 3 RoPE scaling; head_dim 8 gives wavelengths 6.3, 63, 628, 6283 against
    # high/low_freq_wavelen = 64/4 = 16 and 64/1 = 64: one kept, one smoothed, two divided by 8
    "llama_rope3": dict(model_type="llama", num_attention_heads=2, num_key_value_heads=1, tie_word_embeddings=False,
                        max_position_embeddings=256,
                        rope_scaling=dict(rope_type="llama3", factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0,
                                          original_max_position_embeddings=64)),
    # Qwen2: q/k/v biases, GQA, untied
    "qwen2_bias": dict(model_type="qwen2", num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=False,
                       bos_token_id=None, eos_token_id=3),
}


def make_config(name):
    spec = dict(COMMON)
    spec.update(MODELS[name])
    mt = spec.pop("model_type")
    rope = spec.pop("rope_scaling", None)
    theta = spec.pop("rope_theta")
    rope_parameters = dict(rope_type="default", rope_theta=theta)
    if rope:
        rope_parameters.update(rope)
    cls = transformers.LlamaConfig if mt == "llama" else transformers.Qwen2Config
    cfg = cls(rope_parameters=rope_parameters, attn_implementation="eager", **spec)
    return cfg


def build_model(cfg, seed):
    """A model whose weights are drawn here, not by HF's init: linear ~ N(0, 1/fan_in) keeps
    activations O(1); norms 1 + N(0, 0.1^2) and biases N(0, 0.1^2) so that they matter."""
    torch.manual_seed(seed)
    cls = transformers.LlamaForCausalLM if cfg.model_type == "llama" else transformers.Qwen2ForCausalLM
    model = cls(cfg).float().eval()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=g))
            elif name.endswith(".bias"):
                p.copy_(0.1 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(torch.randn(p.shape, generator=g) / (p.shape[1] ** 0.5 if "embed" not in name else 2.0))
    return model


def packed_logits(model, tokens, seq_lens):
    """Each sequence on its own (positions from 0, attending only to itself), concatenated: [T, vocab]."""
    out, o = [], 0
    for n in seq_lens:
        out.append(model(input_ids=tokens[o:o + n][None].long()).logits[0])
        o += n
    return torch.cat(out, 0)


def packed_loss(logits, tokens, seq_lens):
    """Mean cross-entropy over every next-token target of the batch (sum over sequences of len-1)."""
    total, count, o = logits.new_zeros(()), 0, 0
    for n in seq_lens:
        total = total + torch.nn.functional.cross_entropy(logits[o:o + n - 1], tokens[o + 1:o + n].long(),
                                                          reduction="sum")
        count += n - 1
        o += n
    return total / count


def tensor_hashes(named):
    """shape and sha256 of the little-endian fp32 bytes of each tensor (what a loader must reproduce)."""
    out = {}
    for name, t in sorted(named):
        a = t.detach().contiguous().numpy().astype("<f4")
        out[name] = {"shape": list(a.shape), "sha256": hashlib.sha256(a.tobytes()).hexdigest()}
    return out


def make_tiny(name, out_dir):
    cfg = make_config(name)
    model = build_model(cfg, SEED)
    if cfg.rope_parameters.get("rope_type") == "llama3":
        # the scaling must hit every band: one frequency kept, one smoothed, the rest divided by factor
        hd = cfg.head_dim
        base = 1.0 / (cfg.rope_parameters["rope_theta"] ** (torch.arange(0, hd, 2, dtype=torch.float32) / hd))
        ratio = (model.model.rotary_emb.inv_freq / base).tolist()
        f = cfg.rope_parameters["factor"]
        assert abs(ratio[0] - 1) < 1e-6 and 1 / f + 1e-3 < ratio[1] < 1 - 1e-3 and all(
            abs(r - 1 / f) < 1e-6 for r in ratio[2:]), ratio
    d = os.path.join(out_dir, name)
    os.makedirs(d, exist_ok=True)
    model.save_pretrained(d, safe_serialization=True)
    g = torch.Generator().manual_seed(SEED + 1)
    seq_lens = list(SEQ_LENS)
    tokens = torch.randint(0, cfg.vocab_size, (sum(seq_lens),), generator=g, dtype=torch.int32)

    ref = {"tokens": tokens, "seq_lens": torch.tensor(seq_lens, dtype=torch.int32)}
    model.zero_grad()
    logits = packed_logits(model, tokens, seq_lens)
    loss = packed_loss(logits, tokens, seq_lens)
    loss.backward()
    ref["logits"] = logits.detach().clone()
    ref["loss"] = loss.detach().reshape(1).clone()
    for pname, p in model.named_parameters():
        ref["grad." + pname] = p.grad.detach().clone()

    # 10 AdamW steps on the same batch; one parameter group (weight decay on every tensor), no clipping
    opt = torch.optim.AdamW(model.parameters(), foreach=False, **ADAMW)
    losses = []
    for _ in range(ADAMW_STEPS):
        opt.zero_grad()
        step_loss = packed_loss(packed_logits(model, tokens, seq_lens), tokens, seq_lens)
        losses.append(step_loss.item())
        step_loss.backward()
        opt.step()
    for pname, p in model.named_parameters():
        ref["adamw." + pname] = p.detach().clone()
    ref["adamw_loss"] = torch.tensor(losses, dtype=torch.float32)
    save_file({k: v.contiguous() for k, v in ref.items()}, os.path.join(d, "reference.safetensors"))
    meta = {
        "model": name,
        "seed": SEED,
        "seq_lens": seq_lens,
        "loss": loss.item(),
        "tensors": tensor_hashes((n, p) for n, p in build_model(cfg, SEED).named_parameters()),
        "adamw": {"lr": ADAMW["lr"], "betas": list(ADAMW["betas"]), "eps": ADAMW["eps"],
                  "weight_decay": ADAMW["weight_decay"], "steps": ADAMW_STEPS, "clip": None,
                  "param_groups": "one group: weight decay on every parameter (norms and biases too)",
                  "update": "torch.optim.AdamW(foreach=False): p *= 1 - lr*wd; m = b1*m + (1-b1)*g; "
                            "v = b2*v + (1-b2)*g^2; p -= lr/(1-b1^t) * m / (sqrt(v)/sqrt(1-b2^t) + eps)"},
        "torch": torch.__version__,
        "transformers": transformers.__version__,
    }
    with open(os.path.join(d, "reference.json"), "w") as f:
        json.dump(meta, f, indent=2)
        f.write("\n")
    print(f"{name}: {sum(p.numel() for p in model.parameters())} parameters, loss {loss.item():.6f} -> "
          f"{losses[-1]:.6f} after {ADAMW_STEPS - 1} AdamW steps")


# ---- stories260K (llama2.c) ----

def read_llama2c(path):
    """The tensors of a llama2.c version-0 checkpoint as numpy arrays in run.c's order."""
    raw = open(path, "rb").read()
    dim, hidden, n_layers, n_heads, n_kv, vocab, seq_len = struct.unpack("<7i", raw[:28])
    shared = vocab > 0
    vocab = abs(vocab)
    hs = dim // n_heads
    kv = hs * n_kv
    a = np.frombuffer(raw, dtype="<f4", offset=28)
    o = 0

    def take(*shape):
        nonlocal o
        n = int(np.prod(shape))
        t = a[o:o + n].reshape(shape)
        o += n
        return t

    w = {"emb": take(vocab, dim), "rms_att": take(n_layers, dim), "wq": take(n_layers, dim, dim),
         "wk": take(n_layers, kv, dim), "wv": take(n_layers, kv, dim), "wo": take(n_layers, dim, dim),
         "rms_ffn": take(n_layers, dim), "w1": take(n_layers, hidden, dim), "w2": take(n_layers, dim, hidden),
         "w3": take(n_layers, hidden, dim), "rms_final": take(dim)}
    take(seq_len, hs // 2)
    take(seq_len, hs // 2)
    w["wcls"] = w["emb"] if shared else take(vocab, dim)
    assert o == a.size, "file size does not match the header"
    hp = dict(dim=dim, hidden=hidden, n_layers=n_layers, n_heads=n_heads, n_kv=n_kv, vocab=vocab, seq_len=seq_len,
              shared=shared)
    return hp, w


def permute(w, n_heads, dim1, dim2):
    """transformers' convert_llama_weights_to_hf.py permute(): interleaved RoPE rows -> rotate_half halves."""
    return w.view(n_heads, dim1 // n_heads // 2, 2, dim2).transpose(1, 2).reshape(dim1, dim2)


def llama2c_to_hf(hp, w):
    cfg = transformers.LlamaConfig(
        hidden_size=hp["dim"], intermediate_size=hp["hidden"], num_hidden_layers=hp["n_layers"],
        num_attention_heads=hp["n_heads"], num_key_value_heads=hp["n_kv"], vocab_size=hp["vocab"],
        max_position_embeddings=hp["seq_len"], rms_norm_eps=1e-5,
        rope_parameters=dict(rope_type="default", rope_theta=10000.0), tie_word_embeddings=hp["shared"],
        bos_token_id=1, eos_token_id=2, attn_implementation="eager")
    t = lambda x: torch.from_numpy(np.array(x, dtype=np.float32))
    D, kv = hp["dim"], hp["dim"] // hp["n_heads"] * hp["n_kv"]
    sd = {"model.embed_tokens.weight": t(w["emb"]), "model.norm.weight": t(w["rms_final"])}
    for l in range(hp["n_layers"]):
        p = f"model.layers.{l}."
        sd[p + "input_layernorm.weight"] = t(w["rms_att"][l])
        sd[p + "self_attn.q_proj.weight"] = permute(t(w["wq"][l]), hp["n_heads"], D, D)
        sd[p + "self_attn.k_proj.weight"] = permute(t(w["wk"][l]), hp["n_kv"], kv, D)
        sd[p + "self_attn.v_proj.weight"] = t(w["wv"][l])
        sd[p + "self_attn.o_proj.weight"] = t(w["wo"][l])
        sd[p + "post_attention_layernorm.weight"] = t(w["rms_ffn"][l])
        sd[p + "mlp.gate_proj.weight"] = t(w["w1"][l])
        sd[p + "mlp.down_proj.weight"] = t(w["w2"][l])
        sd[p + "mlp.up_proj.weight"] = t(w["w3"][l])
    if not hp["shared"]:
        sd["lm_head.weight"] = t(w["wcls"])
    model = transformers.LlamaForCausalLM(cfg).float().eval()
    missing, unexpected = model.load_state_dict(sd, strict=False)
    assert not unexpected and all(m == "lm_head.weight" for m in missing), (missing, unexpected)
    if hp["shared"]:
        model.tie_weights()
        assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    return model, sd


def run_c_forward(hp, w, tokens):
    """A float64 NumPy port of llama2.c run.c's forward (interleaved RoPE on the unpermuted weights)."""
    D, hs, nh, nkv = hp["dim"], hp["dim"] // hp["n_heads"], hp["n_heads"], hp["n_kv"]
    f = lambda x: np.asarray(x, dtype=np.float64)

    def rms(x, g):
        return g * x / np.sqrt(np.mean(x * x) + 1e-5)

    kc = np.zeros((hp["n_layers"], len(tokens), nkv * hs))
    vc = np.zeros_like(kc)
    out = []
    for pos, tok in enumerate(tokens):
        x = f(w["emb"][tok]).copy()
        for l in range(hp["n_layers"]):
            xb = rms(x, f(w["rms_att"][l]))
            q, k, v = f(w["wq"][l]) @ xb, f(w["wk"][l]) @ xb, f(w["wv"][l]) @ xb
            for i in range(0, D, 2):
                fr = 1.0 / 10000.0 ** ((i % hs) / hs)
                c, s = np.cos(pos * fr), np.sin(pos * fr)
                for vec in ((q, k) if i < nkv * hs else (q,)):
                    a0, a1 = vec[i], vec[i + 1]
                    vec[i], vec[i + 1] = a0 * c - a1 * s, a0 * s + a1 * c
            kc[l, pos], vc[l, pos] = k, v
            att = np.zeros(D)
            for h in range(nh):
                kh = h // (nh // nkv)
                sc = kc[l, :pos + 1, kh * hs:(kh + 1) * hs] @ q[h * hs:(h + 1) * hs] / np.sqrt(hs)
                p = np.exp(sc - sc.max())
                p /= p.sum()
                att[h * hs:(h + 1) * hs] = p @ vc[l, :pos + 1, kh * hs:(kh + 1) * hs]
            x = x + f(w["wo"][l]) @ att
            xb = rms(x, f(w["rms_ffn"][l]))
            h1, h3 = f(w["w1"][l]) @ xb, f(w["w3"][l]) @ xb
            x = x + f(w["w2"][l]) @ (h1 / (1 + np.exp(-h1)) * h3)
        out.append(f(w["wcls"]) @ rms(x, f(w["rms_final"])))
    return np.array(out)


def read_tok512(path):
    raw = open(path, "rb").read()
    (max_len,) = struct.unpack_from("<i", raw, 0)
    o, vocab = 4, []
    while o < len(raw):
        _score, n = struct.unpack_from("<fi", raw, o)
        o += 8
        vocab.append(raw[o:o + n])
        o += n
    return vocab


def decode(vocab, ids):
    out = b""
    for prev, tok in zip([1] + ids[:-1], ids):
        piece = vocab[tok]
        if prev == 1 and piece.startswith(b" "):
            piece = piece[1:]  # run.c: the space after BOS is dropped
        out += piece
    return out.decode("utf-8", "replace")


def make_stories(shared, out_dir):
    bin_path = os.path.join(shared, "models/stories260K/stories260K.bin")
    hp, w = read_llama2c(bin_path)
    model, sd = llama2c_to_hf(hp, w)
    # greedy decoding from BOS must reproduce the published story
    ids = [1]
    with torch.no_grad():
        for _ in range(40):
            ids.append(int(model(input_ids=torch.tensor([ids])).logits[0, -1].argmax()))
    text = decode(read_tok512(os.path.join(shared, "models/stories260K/tok512.bin")), ids[1:])
    expect = "Once upon a time, there was a little girl named Lily. She loved to play outside"
    assert text.startswith(expect), f"greedy story differs: {text!r}"
    tokens = ids[:16]
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([tokens])).logits[0]
    # the permutation is right iff HF (rotate_half on permuted rows) == run.c (interleaved on the original)
    ref64 = run_c_forward(hp, w, tokens)
    err = np.abs(logits.numpy().astype(np.float64) - ref64).max()
    scale = np.abs(ref64).max()
    # fp32 forward vs float64: dim 64, 5 layers; a few hundred roundings of 2^-24 relative each
    assert err <= 1e-4 * scale, f"HF logits differ from the run.c port by {err} (scale {scale})"
    d = os.path.join(out_dir, "stories260K")
    os.makedirs(d, exist_ok=True)
    save_file({"tokens": torch.tensor(tokens, dtype=torch.int32), "logits": logits.contiguous()},
              os.path.join(d, "reference.safetensors"))
    tensors = {}
    for name in sorted(sd):
        a = sd[name].contiguous().numpy().astype("<f4")
        tensors[name] = {"shape": list(a.shape), "sha256": hashlib.sha256(a.tobytes()).hexdigest(),
                         "sum": float(a.astype(np.float64).sum())}
    meta = {"source": "../shared/models/stories260K/stories260K.bin", "header": hp, "text_greedy_40": text,
            "logits_max_abs_diff_vs_runc_port": float(err), "tensors": tensors,
            "torch": torch.__version__, "transformers": transformers.__version__}
    with open(os.path.join(d, "reference.json"), "w") as f:
        json.dump(meta, f, indent=1)
        f.write("\n")
    print(f"stories260K: HF vs run.c port max |diff| {err:.3g} (logit scale {scale:.3g}); greedy: {text[:60]!r}...")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    ap.add_argument("--out", default=os.path.join(root, "tests", "fixtures"))
    ap.add_argument("--shared", default=os.environ.get("SMELT_SHARED_DIR", os.path.join(root, "..", "shared")))
    ap.add_argument("--only", action="append", help="one fixture (repeatable): " + ", ".join(MODELS) + ", stories260K")
    args = ap.parse_args()
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    names = args.only or list(MODELS) + ["stories260K"]
    for name in names:
        if name == "stories260K":
            make_stories(args.shared, args.out)
        elif name in MODELS:
            make_tiny(name, args.out)
        else:
            sys.exit(f"unknown fixture {name}")


if __name__ == "__main__":
    main()
