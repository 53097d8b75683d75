"""quant_ref.py: GPTQ and QuantEase in NumPy float64, the reference of bench/quant_bench.sh.

Reads w.f32 [out, n] and h.f64 [n, n] written by bench_quant --dump, runs the same algorithms as
stages/quantize/ (ALGORITHMS.md section 4: static 4-bit symmetric groups with fp16-rounded scales,
damp 0.01, GPTQ in blocks of 128 with lazy batch updates as in the GPTQ paper's reference code, and
QuantEase as FMCHISEL writes it: P = W H D^-1 once, then per sweep a product for the whole matrix
and one vector-matrix product per column), and prints one RESULT line of JSON with the timings and
relative layer errors. Usage: quant_ref.py DIR OUT N GROUP SWEEPS
"""
import json
import sys
import time

import numpy as np


def grid(w, group, bits=4):
    """Static symmetric scales [out, n/group] (fp16-representable) from the original weights."""
    out, n = w.shape
    m = np.abs(w.reshape(out, n // group, group)).max(axis=2)
    s = (2.0 * m / (2**bits - 1)).astype(np.float16).astype(np.float32)
    return np.maximum(s, np.float32(2.0**-24))


def quant(x, s, bits=4):
    z = 2 ** (bits - 1)
    q = np.clip(np.rint(x / s) + z, 0, 2**bits - 1)
    return (s * (q - z).astype(np.float32)).astype(np.float64)


def gptq(w, h, scales, group, block=128):
    n = w.shape[1]
    w = w.astype(np.float64).copy()
    l = np.linalg.cholesky(h)
    linv = np.linalg.inv(l)
    u = np.linalg.cholesky(linv.T @ linv).T  # upper factor of H^-1
    for i1 in range(0, n, block):
        i2 = min(i1 + block, n)
        w1 = w[:, i1:i2].copy()
        err = np.zeros_like(w1)
        for i in range(i2 - i1):
            q = quant(w1[:, i], scales[:, (i1 + i) // group])
            e = (w1[:, i] - q) / u[i1 + i, i1 + i]
            w1[:, i:] -= np.outer(e, u[i1 + i, i1 + i:i2])
            w1[:, i] = q
            err[:, i] = e
        w[:, i1:i2] = w1
        w[:, i2:] -= err @ u[i1:i2, i2:]
    return w


def quantease(w_hat, w, h, scales, group, sweeps):
    n = w.shape[1]
    w_hat = w_hat.copy()
    norm = h / np.diag(h)[None, :]
    p = w.astype(np.float64) @ norm
    np.fill_diagonal(norm, 0)
    norm_t = norm.T.copy()
    times = []
    for _ in range(sweeps):
        t0 = time.perf_counter()
        delta = w_hat.T.copy()
        p_hat = (norm_t @ delta).T
        for j in range(n):
            u = p[:, j] - p_hat[:, j]
            if j > 0:
                u += norm_t[j, :j] @ delta[:j, :]
            u = quant(u, scales[:, j // group])
            w_hat[:, j] = u
            delta[j, :] -= u
        times.append(time.perf_counter() - t0)
    return w_hat, times


def rel_error(w, w_hat, h):
    d = w_hat - w
    return float(np.sum((d @ h) * d) / np.sum((w @ h) * w))


def main():
    d, out, n, group, sweeps = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
    w = np.fromfile(f"{d}/w.f32", dtype=np.float32).reshape(out, n).astype(np.float64)
    h0 = np.fromfile(f"{d}/h.f64", dtype=np.float64).reshape(n, n)
    t0 = time.perf_counter()
    h = h0.copy()
    dead = np.diag(h) == 0
    h[dead, dead] = 1
    w[:, dead] = 0
    h[np.diag_indices(n)] += 0.01 * np.mean(np.diag(h))
    scales = grid(w.astype(np.float32), group)
    t_prep = time.perf_counter() - t0
    t0 = time.perf_counter()
    wq = gptq(w, h, scales, group)
    t_gptq = time.perf_counter() - t0
    wq_qe, times = quantease(wq, w, h, scales, group, sweeps)
    print(f"NumPy {np.__version__} (float64): GPTQ {t_gptq:.3f} s, QuantEase column loop {np.mean(times):.3f} s per sweep")
    print("RESULT " + json.dumps({"gptq_s": t_gptq, "prep_s": t_prep, "sweep_s": float(np.mean(times)),
                                  "err_gptq": rel_error(w, wq, h0), "err_quantease": rel_error(w, wq_qe, h0)}))


if __name__ == "__main__":
    main()
