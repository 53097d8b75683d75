#!/usr/bin/env python3
"""prune_layer_probe.py: one layer's down_proj pruning problem, reproduced outside smelt and taken apart.

Gathers H = Σ x xᵀ (float64) at the input of down_proj of decoder layer LAYER of a Hugging Face model
(transformers, float32 forward, the unpruned model's inputs: the `inputs: dense` problem) over the
calibration sequences that `smelt export-calibration` wrote, then prunes REMOVE neurons with OSSCAR
(bench/osscar_numpy.py, update_every 1), magnitude and activation (both re-fitted exactly), for
several damps, and prints for each: the relative error ‖X(Ŵ − W)ᵀ‖² / ‖XWᵀ‖² (undamped H), the same
with the kept weights re-fitted on the undamped H (the support's own best), and the error without the
tokens whose activations are outliers. Also diag H's spread and where ‖XWᵀ‖² comes from (which tokens).
Used to explain docs/prune.md's layer-11 exception on SmolLM2.

    python3 tools/prune_layer_probe.py HF_DIR CALIB.jsonl LAYER REMOVE [DAMP ...]
"""
import json
import os
import sys

import numpy as np
import torch
from transformers import AutoModelForCausalLM

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "bench"))
from osscar_numpy import osscar  # noqa: E402


def refit(H, B, removed, lam):
    """B̂_S = (H + λI)_SS⁻¹ ((H + λI) B)_S; zero rows for the removed columns."""
    Hl = H + lam * np.eye(H.shape[0])
    S = ~removed
    Bhat = np.zeros_like(B)
    Bhat[S] = np.linalg.solve(Hl[np.ix_(S, S)], Hl[S, :] @ B)
    return Bhat


def rel_error(H, B, Bhat):
    D = Bhat - B
    return float(np.sum(D * (H @ D)) / np.sum(B * (H @ B)))


def main():
    hf, calib, layer, n_remove = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    damps = [float(d) for d in sys.argv[5:]] or [0.01, 1e-3, 1e-4, 1e-5]
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
    model = AutoModelForCausalLM.from_pretrained(hf, torch_dtype=torch.float32)
    model.model.layers = model.model.layers[: layer + 1]  # nothing after the layer is needed
    model.eval()
    xs = []
    hook = model.model.layers[layer].mlp.down_proj.register_forward_hook(
        lambda m, inp, out: xs.append(inp[0][0].detach().double().numpy()))
    seqs = [json.loads(line) for line in open(calib) if line.strip()]
    with torch.no_grad():
        for ids in seqs:
            model.model(torch.tensor([ids]))
    hook.remove()
    X = np.concatenate(xs)  # [tokens, in]
    W = model.model.layers[layer].mlp.down_proj.weight.detach().double().numpy()  # [out, in]
    B = W.T.copy()
    H = X.T @ X
    d = np.diag(H)
    print(f"layer {layer} down_proj: {X.shape[0]} tokens of {len(seqs)} sequences, in {X.shape[1]}, out {W.shape[0]}")
    print(f"diag H: mean {d.mean():.4g}, median {np.median(d):.4g}, max {d.max():.4g} (neuron {int(d.argmax())}), "
          f"max/median {d.max() / np.median(d):.3g}; the top 3 neurons hold {np.sort(d)[-3:].sum() / d.sum():.1%} of tr H")
    # where ‖XWᵀ‖² comes from
    y2 = np.sum((X @ W.T) ** 2, axis=1)
    order = np.argsort(-y2)
    starts = np.concatenate([[0], np.cumsum([len(s) for s in seqs])[:-1]])
    pos = [int(i - starts[np.searchsorted(starts, i, side="right") - 1]) for i in order[:16]]
    print(f"‖XWᵀ‖² = {y2.sum():.4g}; the largest token holds {y2[order[0]] / y2.sum():.1%}, the top 16 "
          f"{y2[order[:16]].sum() / y2.sum():.1%} (their positions in their sequences: {pos})")
    print(f"first tokens of the sequences hold {y2[starts].sum() / y2.sum():.1%} of ‖XWᵀ‖²")
    out_mask = np.ones(X.shape[0], dtype=bool)
    out_mask[order[:16]] = False
    Xr = X[out_mask]
    Hr = Xr.T @ Xr
    print("damp | λ/median diag H | method | rel. error | re-fitted on undamped H | without the top 16 tokens")
    for damp in damps:
        lam = damp * d.mean()
        Bo, rem_o, _, _ = osscar(H, W, n_remove, 1, damp=damp)
        res = [("osscar", rem_o, Bo)]
        for name, score in (("magnitude", np.sum(B * B, axis=1)), ("activation", d * np.sum(B * B, axis=1))):
            rem = np.zeros(len(d), dtype=bool)
            rem[np.argsort(score, kind="stable")[:n_remove]] = True
            res.append((name, rem, refit(H, B, rem, lam)))
        for name, rem, Bh in res:
            B0 = refit(H, B, rem, 0.0)
            print(f"{damp:g} | {lam / np.median(d):.3g} | {name} | {rel_error(H, B, Bh):.4g} | {rel_error(H, B, B0):.4g} | "
                  f"{rel_error(Hr, B, Bh):.4g}")
        print(f"{damp:g} | osscar and activation remove {int(np.sum(rem_o & res[2][1]))} of {n_remove} neurons in common")


if __name__ == "__main__":
    main()
