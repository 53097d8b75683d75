#!/usr/bin/env python3
"""make_loss_fixtures.py: PyTorch references for the training objective of the `train` stage
(ALGORITHMS.md section 1, stages/train/loss.h): forward KL, reverse KL, generalized JSD(beta),
cross-entropy, temperature with T^2 scaling, and the answer/prompt weighting of positions, with
the gradient of the whole objective w.r.t. the student's logits from autograd.

Regenerate (from the repository root; needs torch, safetensors):
    python3 tools/make_loss_fixtures.py            # writes tests/fixtures/train_losses/

Output: losses.safetensors with
    student, teacher   F64 [positions, vocab]   the logits (exactly representable in fp32)
    grad.<case>        F64 [positions, vocab]   d objective / d student logits
and cases.json: per case its loss configuration, the token ids, masks (0 prompt, 1 action,
2 response), sequence lengths and flags (1: sampled by the student, no CE), the objective and
its parts (mean CE / divergences over answer positions, the prompt part).

The reference is written from the definitions with torch.log_softmax / logsumexp, independently
of the C code: positions are classified by the mask of the token they predict, answer positions
get ce*CE + D, prompt positions D (or ce*CE without a teacher), and the two means are mixed with
prompt_weight (the other kind gets weight 1 when one is empty).
"""
import json
import os
import sys

import torch
from safetensors.torch import save_file

SEED = 20260511
VOCAB = 23
SEQ_LENS = [7, 5, 6]

# masks per sequence: a ranking example (answer = the last token), a generative one, another ranking one
MASKS_MIXED = [[0, 0, 0, 0, 0, 0, 1], [0, 0, 2, 2, 2], [0, 0, 0, 0, 0, 1]]
MASKS_TEXT = [[2] * 7, [2] * 5, [2] * 6]

BASE = dict(ce=0.0, fkl=0.0, rkl=0.0, jsd=0.0, prompt_weight=0.0, temperature=1.0, beta=0.5)


def case(name, masks=MASKS_MIXED, flags=(0, 0, 0), teacher=True, **kw):
    cfg = dict(BASE)
    cfg.update(kw)
    return dict(name=name, masks=masks, flags=list(flags), teacher=teacher, config=cfg)


CASES = [
    case("fkl_T2", fkl=1.0, temperature=2.0),
    case("rkl_T0.5", rkl=1.0, temperature=0.5),
    case("jsd_b0.1_T1.5", jsd=1.0, beta=0.1, temperature=1.5),
    case("jsd_b0.5_T1.5", jsd=1.0, beta=0.5, temperature=1.5),
    case("jsd_b0.9_T1.5", jsd=1.0, beta=0.9, temperature=1.5),
    case("ce_only", ce=1.0, teacher=False),
    case("paper_recipe", fkl=0.9, ce=0.1, prompt_weight=0.05),
    case("sft_prompt_weight", ce=1.0, prompt_weight=0.2, teacher=False),
    case("mixed_T2_on_policy", ce=0.3, fkl=0.3, rkl=0.2, jsd=0.2, beta=0.5, temperature=2.0, prompt_weight=0.1,
         flags=(0, 1, 0)),
    case("text_fkl_ce_T1.5", fkl=0.5, ce=0.5, temperature=1.5, prompt_weight=0.05, masks=MASKS_TEXT),
]


def divergences(zs, zt, T, beta):
    """Per-position T^2 * FKL, RKL, JSD(beta) between p = softmax(zt/T) and q = softmax(zs/T)."""
    ls = torch.log_softmax(zs / T, dim=-1)
    lt = torch.log_softmax(zt / T, dim=-1)
    p, q = lt.exp(), ls.exp()
    fkl = (p * (lt - ls)).sum(-1)
    rkl = (q * (ls - lt)).sum(-1)
    lm = torch.logsumexp(torch.stack([lt + torch.log(torch.tensor(beta, dtype=zs.dtype)),
                                      ls + torch.log(torch.tensor(1 - beta, dtype=zs.dtype))]), dim=0)
    jsd = beta * (p * (lt - lm)).sum(-1) + (1 - beta) * (q * (ls - lm)).sum(-1)
    return T * T * fkl, T * T * rkl, T * T * jsd


def objective(zs, zt, tokens, masks, flags, cfg, teacher):
    # position t predicts tokens[t + 1]; the last position of each sequence is never used below
    ce_all = torch.nn.functional.cross_entropy(zs, tokens.roll(-1), reduction="none")
    fkl, rkl, jsd = divergences(zs, zt, cfg["temperature"], cfg["beta"])
    div = cfg["fkl"] * fkl + cfg["rkl"] * rkl + cfg["jsd"] * jsd
    answer, prompt, no_ce = [], [], []
    off = 0
    for s, m in enumerate(masks):
        for t in range(len(m) - 1):
            (answer if m[t + 1] != 0 else prompt).append(off + t)
            if m[t + 1] != 0 and flags[s] & 1:
                no_ce.append(off + t)
        off += len(m)
    na, npr, pw = len(answer), len(prompt), cfg["prompt_weight"]
    if na and npr and pw > 0:
        wa, wp = (1 - pw) / na, pw / npr
    elif na:
        wa, wp = 1.0 / na, 0.0
    else:
        wa, wp = 0.0, 1.0 / npr
    has_div = teacher and (cfg["fkl"] > 0 or cfg["rkl"] > 0 or cfg["jsd"] > 0)
    total = zs.new_zeros(())
    for i in answer:
        ce_w = 0.0 if i in no_ce else cfg["ce"]
        total = total + wa * (ce_w * ce_all[i] + (div[i] if has_div else 0.0))
    for i in prompt:
        total = total + wp * (div[i] if has_div else cfg["ce"] * ce_all[i])
    idx_a = torch.tensor(answer)
    parts = dict(ce=ce_all[idx_a].mean().item())
    if has_div:
        for k, v in (("fkl", fkl), ("rkl", rkl), ("jsd", jsd)):
            if cfg[k] > 0:
                parts[k] = v[idx_a].mean().item()
    return total, parts, na, npr


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures",
                                                              "train_losses")
    os.makedirs(out, exist_ok=True)
    g = torch.Generator().manual_seed(SEED)
    n = sum(SEQ_LENS)
    # fp32-representable values, computed in float64 (the C side reads them as fp32 exactly)
    student = (2.0 * torch.randn(n, VOCAB, generator=g)).float().double()
    teacher = (2.5 * torch.randn(n, VOCAB, generator=g)).float().double()
    tokens = torch.randint(0, VOCAB, (n,), generator=g)
    tensors = {"student": student, "teacher": teacher}
    meta = dict(vocab=VOCAB, seq_lens=SEQ_LENS, tokens=tokens.tolist(), cases=[])
    for c in CASES:
        zs = student.clone().requires_grad_(True)
        total, parts, na, npr = objective(zs, teacher, tokens, c["masks"], c["flags"], c["config"], c["teacher"])
        total.backward()
        tensors["grad." + c["name"]] = zs.grad.detach().clone()
        meta["cases"].append(dict(name=c["name"], config=c["config"], teacher=c["teacher"],
                                  mask=[v for m in c["masks"] for v in m], flags=c["flags"], loss=total.item(),
                                  parts=parts, answer_positions=na, prompt_positions=npr))
        print(f"{c['name']:22s} loss {total.item():.6f} parts {parts}")
    save_file({k: v.contiguous() for k, v in tensors.items()}, os.path.join(out, "losses.safetensors"))
    with open(os.path.join(out, "cases.json"), "w") as f:
        json.dump(meta, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
