#!/usr/bin/env python3
"""make_auc_fixtures.py: writes tests/data/auc/fixtures.json, the reference AUCs and log losses the
C test (tests/test_auc.c) compares against: sklearn.metrics.roc_auc_score and log_loss on fixtures
with ties (rounded scores, constant scores, duplicated values), imbalanced and tiny cases, and
confident models whose margins lie in [15, 40].

The scores are margins m = z_yes - z_no (what smelt's evaluate stage ranks): the AUC of any
increasing transform is the same, and the log loss is that of p = sigmoid(m). For |m| <= 30 the
reference is sklearn.metrics.log_loss(y, expit(m)) (expit(30) = 1 - 9.4e-14 is not clipped); for
larger margins p rounds to 1 in float64 and sklearn would clip, so the reference is numpy's
logaddexp(0, -m) / logaddexp(0, m) (-log sigmoid(m) and -log(1 - sigmoid(m))), checked here
against sklearn wherever both apply.

usage: python3 tools/make_auc_fixtures.py   (needs numpy and scikit-learn: pip install scikit-learn)
"""
import json
import os
import sys

import numpy as np
from scipy.special import expit
from sklearn.metrics import log_loss, roc_auc_score

rng = np.random.default_rng(20261129)
cases = []


def margin_log_loss(y, m):
    y, m = np.asarray(y), np.asarray(m, dtype=np.float64)
    return float(np.mean(np.where(y == 1, np.logaddexp(0, -m), np.logaddexp(0, m))))


def add(name, y, s):
    y = [int(v) for v in y]
    s = [float(v) for v in s]
    ll = margin_log_loss(y, s)
    if max(abs(v) for v in s) <= 30:
        ref = float(log_loss(y, expit(np.asarray(s, dtype=np.float64)), labels=[0, 1]))
        assert abs(ref - ll) <= 1e-12 * abs(ref), (name, ref, ll)
        ll = ref
    cases.append({"name": name, "labels": y, "scores": s, "auc": float(roc_auc_score(y, s)), "log_loss": ll})


add("tiny", [0, 1], [0.2, 0.8])
add("tiny_inverted", [1, 0], [0.2, 0.8])
add("all_tied", [0, 1, 1, 0, 1], [0.5] * 5)
add("half_tied", [0, 0, 1, 1, 0, 1], [0.1, 0.4, 0.4, 0.8, 0.4, 0.4])
for i, n in enumerate([20, 50, 200, 1000, 3000]):
    y = rng.integers(0, 2, n)
    y[0], y[1] = 0, 1
    s = np.round(np.clip(0.5 + 0.3 * (y - 0.5) + rng.normal(0, 0.3, n), 0, 1), 1)  # ties from rounding
    add(f"rounded_{n}", y, s)
for i, n in enumerate([100, 500]):
    y = (rng.random(n) < 0.05).astype(int)  # imbalanced
    y[0] = 1
    s = rng.integers(0, 7, n) / 7.0 + 0.05 * y
    add(f"imbalanced_{n}", y, s)
y = rng.integers(0, 2, 400)
add("discrete_3_levels", y, rng.integers(0, 3, 400) / 2.0)
y = rng.integers(0, 2, 300)
add("continuous", y, rng.random(300) * 0.5 + 0.4 * y)
y = rng.integers(0, 2, 64)
add("perfect_with_ties", y, y * 0.5 + 0.25)
y = rng.integers(0, 2, 50)
add("logits_moderate", y, rng.normal(0, 6, 50) + 4 * y)
# confident models: every sigmoid(m) is 1.0 in float32 (from m ~ 17.3) and most in float64 (from ~37)
for n in (40, 400):
    y = rng.integers(0, 2, n)
    y[0], y[1] = 0, 1
    add(f"margins_15_40_{n}", y, 15 + 25 * np.where(y == 1, 0.3 + 0.7 * rng.random(n), 0.7 * rng.random(n)))

out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "data", "auc", "fixtures.json")
with open(out, "w") as f:
    json.dump({"generator": "tools/make_auc_fixtures.py", "sklearn": __import__("sklearn").__version__,
               "cases": cases}, f, separators=(",", ":"))
    f.write("\n")
print(f"{len(cases)} fixtures -> {os.path.normpath(out)} ({os.path.getsize(out)} bytes)", file=sys.stderr)
