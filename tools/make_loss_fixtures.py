#!/usr/bin/env python3
"""make_loss_fixtures.py: PyTorch references for the training objective of the `train` stage
(ALGORITHMS.md section 1, stages/train/loss.h): forward KL, reverse KL, generalized JSD(beta) with
beta = 0 and 1 meaning FKL and RKL exactly (FMCHISEL's convention), total variation distance, skew
KL and skew reverse KL(alpha), cross-entropy, temperature with T^2 scaling, the answer/prompt
weighting of positions with the prompt part normalized over the batch or per sequence, the parts
of a sampled step (CE of the data batch, divergences of the sampled one), and heads padded beyond
the tokenizer's ids (the divergences compare the first VOCAB columns only; CE runs over the
student's whole head), with the gradient of the whole objective w.r.t. the student's logits from
autograd.

Regenerate (from the repository root; needs torch, safetensors):
    python3 tools/make_loss_fixtures.py            # writes tests/fixtures/train_losses/

Output: losses.safetensors with
    student, teacher   F64 [positions, vocab]   the logits (exactly representable in fp32)
    student_pad        F64 [positions, vocab + 3]  student with 3 padded columns (the first vocab equal)
    teacher_pad        F64 [positions, vocab + 4]  teacher with 4 padded columns of large logits
    grad.<case>        F64 [positions, student columns]   d objective / d student logits
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

BASE = dict(ce=0.0, fkl=0.0, rkl=0.0, jsd=0.0, tvd=0.0, skl=0.0, srkl=0.0, prompt_weight=0.0, temperature=1.0,
            beta=0.5, alpha=0.1, prompt_norm="batch")


def case(name, masks=MASKS_MIXED, flags=(0, 0, 0), teacher=True, part="all", student_pad=False, teacher_pad=False,
         **kw):
    cfg = dict(BASE)
    cfg.update(kw)
    return dict(name=name, masks=masks, flags=list(flags), teacher=teacher, config=cfg, part=part,
                student_pad=student_pad, teacher_pad=teacher_pad)


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
    # JSD at its ends: exactly FKL and RKL
    case("jsd_b0_T1.5", jsd=1.0, beta=0.0, temperature=1.5, prompt_weight=0.1),
    case("jsd_b1_T1.5", jsd=1.0, beta=1.0, temperature=1.5, prompt_weight=0.1),
    # FMCHISEL's other losses at T != 1, a in {0.1, 0.5}, with prompt weights
    case("tvd_T1.5_pw", tvd=1.0, temperature=1.5, prompt_weight=0.1),
    case("skl_a0.1_T2_pw", skl=1.0, alpha=0.1, temperature=2.0, prompt_weight=0.05),
    case("skl_a0.5_T0.7_pw", skl=1.0, alpha=0.5, temperature=0.7, prompt_weight=0.2),
    case("srkl_a0.1_T1.5_pw", srkl=1.0, alpha=0.1, temperature=1.5, prompt_weight=0.1),
    case("srkl_a0.5_T2_pw", srkl=1.0, alpha=0.5, temperature=2.0, prompt_weight=0.3),
    case("mix_tvd_skl_srkl_ce", ce=0.2, tvd=0.3, skl=0.3, srkl=0.2, alpha=0.1, temperature=1.5, prompt_weight=0.1),
    # the prompt part averaged per sequence
    case("prompt_norm_sequence", fkl=0.9, ce=0.1, prompt_weight=0.3, prompt_norm="sequence"),
    case("sft_prompt_norm_sequence", ce=1.0, prompt_weight=0.2, prompt_norm="sequence", teacher=False),
    # a sampled step: CE of the data batch, divergences of the sampled sequences
    case("part_ce", fkl=0.9, ce=0.1, prompt_weight=0.05, part="ce"),
    case("part_div", fkl=0.9, ce=0.1, skl=0.5, prompt_weight=0.05, temperature=1.5, part="div"),
    # heads padded beyond the tokenizer's ids
    case("pad_teacher", fkl=0.5, srkl=0.3, tvd=0.2, ce=0.2, temperature=1.5, prompt_weight=0.1, teacher_pad=True),
    case("pad_student", fkl=0.5, skl=0.5, ce=0.3, temperature=2.0, prompt_weight=0.1, student_pad=True),
]


def divergences(zs, zt, T, beta, alpha):
    """Per-position T^2 * (FKL, RKL, JSD(beta), TVD, SKL(alpha), SRKL(alpha)) between p = softmax(zt/T)
    and q = softmax(zs/T), each from its definition (mixtures formed as probabilities)."""
    ls = torch.log_softmax(zs / T, dim=-1)
    lt = torch.log_softmax(zt / T, dim=-1)
    p, q = lt.exp(), ls.exp()
    fkl = (p * (lt - ls)).sum(-1)
    rkl = (q * (ls - lt)).sum(-1)
    if beta == 0:  # FMCHISEL: JSD(0) is forward KL, JSD(1) reverse KL
        jsd = fkl
    elif beta == 1:
        jsd = rkl
    else:
        m = beta * p + (1 - beta) * q
        jsd = beta * (p * (lt - m.log())).sum(-1) + (1 - beta) * (q * (ls - m.log())).sum(-1)
    tvd = 0.5 * (p - q).abs().sum(-1)
    mk = alpha * p + (1 - alpha) * q
    skl = (p * (lt - mk.log())).sum(-1)
    mr = alpha * q + (1 - alpha) * p
    srkl = (q * (ls - mr.log())).sum(-1)
    return {k: T * T * v for k, v in dict(fkl=fkl, rkl=rkl, jsd=jsd, tvd=tvd, skl=skl, srkl=srkl).items()}


DIVS = ("fkl", "rkl", "jsd", "tvd", "skl", "srkl")


def objective(zs, zt, tokens, masks, flags, cfg, teacher, part, vocab):
    """The objective of one pass (part all, ce or div): zs and zt may be wider than vocab (padded
    heads): the divergences compare their first vocab columns, CE runs over every student column."""
    # position t predicts tokens[t + 1]; the last position of each sequence is never used below
    ce_all = torch.nn.functional.cross_entropy(zs, tokens.roll(-1), reduction="none")
    d = divergences(zs[:, :vocab], zt[:, :vocab], cfg["temperature"], cfg["beta"], cfg["alpha"])
    div = sum(cfg[k] * d[k] for k in DIVS)
    answer, prompt, no_ce, seq_of = [], [], [], {}
    off = 0
    for s, m in enumerate(masks):
        for t in range(len(m) - 1):
            (answer if m[t + 1] != 0 else prompt).append(off + t)
            seq_of[off + t] = s
            if m[t + 1] != 0 and flags[s] & 1:
                no_ce.append(off + t)
        off += len(m)
    na, npr, pw = len(answer), len(prompt), cfg["prompt_weight"]
    if na and npr and pw > 0:
        sa, sp = 1 - pw, pw
    elif na:
        sa, sp = 1.0, 0.0
    else:
        sa, sp = 0.0, 1.0
    wa = sa / na if na else 0.0
    # the prompt weight of a position: a share of all prompt positions, or of each sequence's
    per_seq = {}
    for i in prompt:
        per_seq[seq_of[i]] = per_seq.get(seq_of[i], 0) + 1
    wp = {i: (sp / (len(per_seq) * per_seq[seq_of[i]]) if cfg["prompt_norm"] == "sequence" else sp / npr)
          for i in prompt}
    has_div = teacher and any(cfg[k] > 0 for k in DIVS) and part != "ce"
    use_ce = part != "div"
    total = zs.new_zeros(())
    for i in answer:
        ce_w = 0.0 if i in no_ce or not use_ce else cfg["ce"]
        total = total + wa * (ce_w * ce_all[i] + (div[i] if has_div else 0.0))
    for i in prompt:
        if has_div:
            total = total + wp[i] * div[i]
        elif part == "all":
            total = total + wp[i] * cfg["ce"] * ce_all[i]
    idx_a = torch.tensor(answer)
    parts = dict(ce=ce_all[idx_a].mean().item()) if use_ce else {}
    if has_div:
        for k in DIVS:
            if cfg[k] > 0:
                parts[k] = d[k][idx_a].mean().item()
    return total, parts, na, npr, len(per_seq)


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
    # padded heads: the student gains 3 columns (CE sees them), the teacher 4 of large logits that
    # would dominate any divergence that compared them
    student_pad = torch.cat([student, (2.0 * torch.randn(n, 3, generator=g)).float().double()], dim=1)
    teacher_pad = torch.cat([teacher, (8.0 + 2.0 * torch.randn(n, 4, generator=g)).float().double()], dim=1)
    tensors = {"student": student, "teacher": teacher, "student_pad": student_pad, "teacher_pad": teacher_pad}
    meta = dict(vocab=VOCAB, seq_lens=SEQ_LENS, tokens=tokens.tolist(), cases=[])
    for c in CASES:
        zs = (student_pad if c["student_pad"] else student).clone().requires_grad_(True)
        zt = teacher_pad if c["teacher_pad"] else teacher
        total, parts, na, npr, nps = objective(zs, zt, tokens, c["masks"], c["flags"], c["config"], c["teacher"],
                                               c["part"], VOCAB)
        total.backward()
        tensors["grad." + c["name"]] = zs.grad.detach().clone()
        meta["cases"].append(dict(name=c["name"], config=c["config"], teacher=c["teacher"], part=c["part"],
                                  student_pad=c["student_pad"], teacher_pad=c["teacher_pad"],
                                  mask=[v for m in c["masks"] for v in m], flags=c["flags"], loss=total.item(),
                                  parts=parts, answer_positions=na, prompt_positions=npr, prompt_seqs=nps))
        print(f"{c['name']:26s} loss {total.item():.6f} parts {parts}")
    save_file({k: v.contiguous() for k, v in tensors.items()}, os.path.join(out, "losses.safetensors"))
    with open(os.path.join(out, "cases.json"), "w") as f:
        json.dump(meta, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
