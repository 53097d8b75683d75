#!/usr/bin/env python3
"""auc_table.py: test AUC of evaluated models and of the data stage's baselines on the SAME test
examples, with 95% bootstrap intervals over members (members resampled with replacement, each
with all its examples), and each row's difference from a reference row with its own paired interval.

  python3 tools/auc_table.py --baselines DATA_DIR/baselines.tsv \\
      zero-shot=ZS_DIR/predictions.tsv teacher=T_DIR/predictions.tsv [--ref history_mean] [--boot 2000]
      [--pair A:B]...

DATA_DIR, ZS_DIR, ...: `smelt checkout RUN STAGE -o DIR` of the data and evaluate stages. The AUC of
a row is the mean over tasks of the per-task AUC (ties count one half), as smelt's evaluate reports
it; the examples are those every predictions file has (evaluate's max_examples takes the first N)."""
import argparse
import csv
import sys

import numpy as np


def read_tsv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f, delimiter="\t"))


def auc_one(score, label):
    pos, neg = label == 1, label == 0
    if not pos.any() or not neg.any():
        return np.nan
    # rank-sum (Mann-Whitney) with average ranks for ties
    order = np.argsort(score, kind="mergesort")
    s = score[order]
    ranks = np.empty(len(s))
    i = 0
    while i < len(s):
        j = i
        while j + 1 < len(s) and s[j + 1] == s[i]:
            j += 1
        ranks[i:j + 1] = (i + j) / 2 + 1
        i = j + 1
    r = np.empty(len(s))
    r[order] = ranks
    n1, n0 = pos.sum(), neg.sum()
    return (r[pos].sum() - n1 * (n1 + 1) / 2) / (n1 * n0)


def auc_mean(score, label, task):
    a = [auc_one(score[task == t], label[task == t]) for t in np.unique(task)]
    a = [x for x in a if np.isfinite(x)]
    return float(np.mean(a)) if a else np.nan


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--baselines", help="the data stage's baselines.tsv (without it: the labels, tasks and "
                    "members of the predictions files, and no baseline rows)")
    ap.add_argument("--ref", default="history_mean", help="the row the differences are taken from")
    ap.add_argument("--boot", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--pair", action="append", default=[], metavar="A:B",
                    help="also print the paired difference A - B (same resamples); repeatable")
    ap.add_argument("models", nargs="+", help="NAME=predictions.tsv")
    a = ap.parse_args()
    base = read_tsv(a.baselines) if a.baselines else None
    preds = {}
    for m in a.models:
        name, _, path = m.partition("=")
        if not path:
            sys.exit(f"auc_table: '{m}' is not NAME=predictions.tsv")
        preds[name] = {int(r["index"]): r for r in read_tsv(path)}
    keep = sorted(set.intersection(*(set(p) for p in preds.values())))
    if not keep:
        sys.exit("auc_table: the predictions files share no test example")
    if base is None:  # the first predictions file's labels, tasks and members (each file is checked against them)
        base = list(next(iter(preds.values())).values())
    bidx = {int(r["index"]): r for r in base}
    for i in keep:
        b = bidx.get(i)
        for name, p in preds.items():
            r = p[i]
            if b is None or int(r["label"]) != int(b["label"]) or int(r["task"]) != int(b["task"]):
                sys.exit(f"auc_table: example {i} of {name} does not match baselines.tsv (another data set?)")
    label = np.array([int(bidx[i]["label"]) for i in keep])
    task = np.array([int(bidx[i]["task"]) for i in keep])
    member = np.array([int(bidx[i]["member"]) for i in keep])
    rows = {}
    for col in ("popularity", "history_mean", "combined"):
        if col not in bidx[keep[0]]:
            continue
        v = np.array([float(bidx[i][col]) for i in keep])
        if np.isfinite(v).all():
            rows[col] = v
    for name, p in preds.items():
        rows[name] = np.array([float(p[i]["margin"]) for i in keep])
    pairs = [p.split(":") for p in a.pair]
    for p in [a.ref] + [x for pr in pairs for x in pr]:
        if p not in rows:
            sys.exit(f"auc_table: '{p}' (--ref or --pair) is none of {', '.join(rows)}")
    if any(len(pr) != 2 for pr in pairs):
        sys.exit("auc_table: --pair takes A:B, two row names")
    rng = np.random.default_rng(a.seed)
    members = np.unique(member)
    by_member = [np.flatnonzero(member == m) for m in members]
    point = {k: auc_mean(v, label, task) for k, v in rows.items()}
    boots = {k: [] for k in rows}
    for _ in range(a.boot):
        pick = rng.integers(0, len(members), len(members))
        idx = np.concatenate([by_member[j] for j in pick])
        for k, v in rows.items():
            boots[k].append(auc_mean(v[idx], label[idx], task[idx]))
    print(f"{len(keep)} test examples, {len(members)} members, {a.boot} bootstrap resamples of members; "
          f"differences from '{a.ref}'")
    print(f"| {'scorer':<14} | {'AUC':>6} | {'95% interval':>15} | {'minus ' + a.ref:>20} | {'95% interval':>17} |")
    print(f"|{'-' * 16}|{'-' * 8}|{'-' * 17}|{'-' * 22}|{'-' * 19}|")
    ref = np.array(boots[a.ref])
    for k in rows:
        b = np.array(boots[k])
        lo, hi = np.nanpercentile(b, [2.5, 97.5])
        d = b - ref
        dlo, dhi = np.nanpercentile(d, [2.5, 97.5])
        print(f"| {k:<14} | {point[k]:.4f} | [{lo:.4f}, {hi:.4f}] | {point[k] - point[a.ref]:>+20.4f} | "
              f"[{dlo:+.4f}, {dhi:+.4f}] |")
    if pairs:
        print("\n| paired difference | AUC difference | 95% interval | resamples with A > B |")
        print("|---|---:|---|---:|")
    for x, y in pairs:
        d = np.array(boots[x]) - np.array(boots[y])
        dlo, dhi = np.nanpercentile(d, [2.5, 97.5])
        print(f"| {x} - {y} | {point[x] - point[y]:+.4f} | [{dlo:+.4f}, {dhi:+.4f}] | {np.nanmean(d > 0):.1%} |")


if __name__ == "__main__":
    main()
