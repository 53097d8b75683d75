#!/usr/bin/env python3
"""make_fp8_fixture.py: writes tests/fixtures/fp8/e4m3fn.json, the reference of smelt's FP8 E4M3
conversions (kernels/qweight.c) taken from ml_dtypes.float8_e4m3fn.

    python3 tools/make_fp8_fixture.py [--out tests/fixtures/fp8/e4m3fn.json]

Contents (compact: a hash stands for the million random encodings):
  decode:  the 256 codes' float32 bit patterns as ml_dtypes decodes them (0x7F, 0xFF: NaN).
  ties:    [float32 bits, code] for every midpoint between two adjacent finite E4M3 values of
           either sign (round half to even decides them), and the float32 neighbours just below
           and above each midpoint; all below 464 in magnitude.
  random:  N values drawn by the generator below (written in C in tests/test_qweight.c too),
           the sha256 of their N ml_dtypes codes, and the first 256 codes for diagnosis.
Random generator (splitmix64 from `seed`): u = next(); sign = u >> 63; e = 114 + (u >> 32) % 22
(float32 biased exponents 114..135, i.e. 2^-13 .. 2^9, across E4M3's subnormals, normals and the
top of its range); mantissa = u & 0x7FFFFF; x = the float32 of those bits, halved when
|x| >= 464. ml_dtypes turns |x| >= 464 into NaN where smelt saturates at 448 (qweight.h), so the
draw stays below 464, where both round to nearest even and clamp to 448 alike.
"""
import argparse
import hashlib
import json
import os
import struct

import ml_dtypes
import numpy as np

SEED = 0x5EED0F8
N = 1000000
MASK = (1 << 64) - 1


def splitmix64(state):
    state = (state + 0x9E3779B97F4A7C15) & MASK
    z = state
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
    return state, z ^ (z >> 31)


def random_values(n, seed):
    out = np.empty(n, dtype=np.uint32)
    state = seed
    for i in range(n):
        state, u = splitmix64(state)
        sign = u >> 63
        e = 114 + ((u >> 32) % 22)
        bits = (sign << 31) | (e << 23) | (u & 0x7FFFFF)
        out[i] = bits
    x = out.view(np.float32).copy()
    big = np.abs(x) >= 464
    x[big] = x[big] * np.float32(0.5)
    return x


def f32_bits(x):
    return struct.unpack("<I", struct.pack("<f", float(x)))[0]


def main():
    ap = argparse.ArgumentParser()
    here = os.path.dirname(os.path.abspath(__file__))
    ap.add_argument("--out", default=os.path.join(here, "..", "tests", "fixtures", "fp8", "e4m3fn.json"))
    a = ap.parse_args()

    codes = np.arange(256, dtype=np.uint8)
    dec = codes.view(ml_dtypes.float8_e4m3fn).astype(np.float32)
    decode = ["%08x" % b for b in dec.view(np.uint32)]

    # every adjacent pair of finite positive values 0, 2^-9, ..., 448 and its midpoint
    pos = np.sort(dec[(codes < 0x7F) & np.isfinite(dec)])
    ties = []
    for lo, hi in zip(pos[:-1], pos[1:]):
        mid = np.float32((np.float64(lo) + np.float64(hi)) / 2)  # exact: a midpoint has one more bit
        assert np.float64(mid) == (np.float64(lo) + np.float64(hi)) / 2
        for v in (np.nextafter(mid, np.float32(0)), mid, np.nextafter(mid, np.float32(np.inf))):
            for s in (1, -1):
                x = np.float32(s * v)
                c = int(np.array([x], dtype=np.float32).astype(ml_dtypes.float8_e4m3fn).view(np.uint8)[0])
                ties.append([f32_bits(x), c])

    x = random_values(N, SEED)
    rc = x.astype(ml_dtypes.float8_e4m3fn).view(np.uint8)
    assert not np.any((rc & 0x7F) == 0x7F), "the draw must stay below ml_dtypes' NaN threshold"
    fixture = {
        "what": "FP8 E4M3 (fn) reference from ml_dtypes.float8_e4m3fn; written by tools/make_fp8_fixture.py",
        "ml_dtypes": ml_dtypes.__version__,
        "decode": decode,
        "ties": ties,
        "random": {"seed": SEED, "n": N, "sha256": hashlib.sha256(rc.tobytes()).hexdigest(),
                   "first": rc[:256].tolist()},
    }
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    with open(a.out, "w") as f:
        json.dump(fixture, f, separators=(",", ":"))
        f.write("\n")
    print(f"wrote {a.out}: 256 codes, {len(ties)} tie cases, {N} random values")


if __name__ == "__main__":
    main()
