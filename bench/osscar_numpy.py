#!/usr/bin/env python3
"""osscar_numpy.py: OSSCAR's greedy backward elimination and exact re-solve (ALGORITHMS.md §3) in
NumPy float64, written as the algorithm reads: H_λ⁻¹ by np.linalg.inv, each step's scores
‖B_j‖² / (2 Hinv_jj), the rank-|U| downdates of B and Hinv with np.linalg.solve on Hinv[U, U],
zeroed rows and columns, then B̂_S = (H_λ)_SS⁻¹ (H_λ B)_S. The reference of bench_osscar (same H and
W, read from DIR); prints its seconds and compares its kept neurons and weights with smelt's.

    python3 bench/osscar_numpy.py DIR REMOVE UPDATE_EVERY
"""
import sys
import time

import numpy as np


def osscar(H, W, n_remove, u, damp=0.01):
    B = W.T.astype(np.float64)  # [in, out]
    n = H.shape[0]
    Hl = H + damp * np.mean(np.diag(H)) * np.eye(n)
    Hinv = np.linalg.inv(Hl)
    Bc = B.copy()
    removed = np.zeros(n, dtype=bool)
    steps = -(-n_remove // u)
    for s in range(steps):
        k = (s + 1) * n_remove // steps - s * n_remove // steps
        with np.errstate(divide="ignore", invalid="ignore"):
            score = np.sum(Bc * Bc, axis=1) / (2 * np.diag(Hinv))
        score[removed] = np.inf
        U = np.argsort(score, kind="stable")[:k]
        K = Hinv[np.ix_(U, U)]
        HU = Hinv[:, U]
        Bc -= HU @ np.linalg.solve(K, Bc[U, :])
        Hinv -= HU @ np.linalg.solve(K, Hinv[U, :])
        Hinv[U, :] = 0
        Hinv[:, U] = 0
        Bc[U, :] = 0
        removed[U] = True
    S = ~removed
    Bhat = np.zeros_like(B)
    Bhat[S] = np.linalg.solve(Hl[np.ix_(S, S)], Hl[S, :] @ B)
    return Bhat, removed, Hl, B


def main():
    d, n_remove, u = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    H, W = np.load(f"{d}/H.npy"), np.load(f"{d}/W.npy")
    t0 = time.perf_counter()
    Bhat, removed, Hl, B = osscar(H, W, n_remove, u)
    sec = time.perf_counter() - t0
    D = Bhat - B
    obj = 0.5 * float(np.sum(D * (Hl @ D)))
    keep_smelt = np.load(f"{d}/keep_smelt.npy").astype(bool)
    w_smelt = np.load(f"{d}/W_smelt.npy").astype(np.float64)
    same = int(np.sum(keep_smelt == ~removed))
    wdiff = float(np.max(np.abs(w_smelt - Bhat.T)) / np.max(np.abs(Bhat)))
    print(f"numpy:  {sec:.2f} s (NumPy {np.__version__}); objective {obj:.10g}")
    print(f"agreement: {same}/{len(removed)} neurons with the same keep/remove decision; weights differ by "
          f"{wdiff:.2e} of the largest")
    print(f"seconds {sec:.4f}\nobjective {obj:.12g}")


if __name__ == "__main__":
    main()
