#!/usr/bin/env python3
"""teacher_probe.py: why does the SFT'd SmolLM2 teacher rank MovieLens candidates no better than the
mean rating shown in its prompt? Evaluation-only probes (docs/teacher.md, "Why the teacher is level
with the shown mean"), independent of smelt's engine: the model runs in transformers (fp32).

  score   DATA_DIR MODEL [--n 400] [--variants a,b,...] --out DIR [--check PREDICTIONS]
          scores the first N test examples of a data artifact (`smelt checkout RUN data -o DATA_DIR`;
          test.bin) with MODEL (a Hugging Face folder, or a .gguf file
          loaded with gguf_file=) under prompt variants, writing DIR/VARIANT.tsv in evaluate's
          predictions.tsv columns (index, group, member, item, task, label, margin, score) plus the
          probability mass of the two label tokens (label_mass) and the donor member (variant
          `other`). --check compares the `original` margins with smelt's own predictions.tsv.
  analyze DATA_DIR DIR [--boot 2000]
          with the data stage's baselines.tsv: Spearman correlations of the model's margin with the
          shown-mean and popularity baselines, AUC within each prompt (the candidates of one member
          share its history, so the shown mean is constant there), the share of the margin's variance
          that lies between prompts, and, for `other`, how the margins follow the donor's shown mean;
          every figure with a 95% interval from resampling members.

Variants (each changes only the history lines of the prompt, at the token boundaries the data stage
recorded for them, test.bin's history cuts; the instruction, the "History:" header, the candidate
and the answer position are untouched):
  original     the prompt as evaluated (must reproduce smelt's margins)
  shuffled     the history lines in a random order (the same lines, the same mean)
  removed      no history lines ("History:" followed directly by the candidate)
  other        the history lines of another member's prompt (member k takes member k + G/2's, G groups)
  rating_const every "rated X" set to "rated 3.5" (titles and genres kept, the mean signal removed)
  rating_perm  the ratings permuted among the lines (same mean, each rating on another title)
  titles_blank every line's title and genres replaced by "a movie" (ratings kept)
Variants that rewrite text re-tokenize a line by itself with tokenizer.json; that each unchanged
line re-tokenizes to its own tokens is checked and printed.
"""
import argparse
import copy
import csv
import os
import re
import struct
import sys
import time

import numpy as np

VARIANTS = ["original", "shuffled", "removed", "other", "rating_const", "rating_perm", "titles_blank"]


def read_split(path):
    """test.bin: an 80-byte header, 48-byte records, int32 tokens, uint8 masks, uint32 history cuts
    (stages/data/dataset.h)."""
    d = open(path, "rb").read()
    magic, ver, hb, ne, nt, ng, vocab, ntask, to, mo, nc, co = struct.unpack("<8sIIQQQIIQQQQ", d[:80])
    if hb != 80:
        sys.exit(f"teacher_probe: {path}: header of {hb} bytes, expected a version-2 split file (80)")
    cuts = np.frombuffer(d, dtype="<u4", count=nc, offset=co) if nc else np.zeros(0, np.uint32)
    recs = [struct.unpack("<QqIIIIIIHbBI", d[hb + 48 * i:hb + 48 * (i + 1)]) for i in range(ne)]
    out = []
    for i, (off, _t, n, pl, ap, g, mem, item, task, lab, _f, cf) in enumerate(recs):
        toks = np.frombuffer(d, dtype="<i4", count=n, offset=to + 4 * off).astype(np.int64)
        cend = recs[i + 1][11] if i + 1 < ne else nc
        out.append(dict(index=i, tokens=toks, prefix_len=pl, answer_pos=ap, group=g, member=mem, item=item,
                        task=task, label=lab, cuts=[int(c) for c in cuts[cf:cend]]))
    return out


class Retok:
    """Line text <-> tokens with the artifact's tokenizer.json (byte-level BPE)."""

    def __init__(self, path):
        from tokenizers import Tokenizer
        self.tok = Tokenizer.from_file(path)
        self.checked = self.mismatch = 0

    def text(self, ids):
        return self.tok.decode([int(t) for t in ids], skip_special_tokens=False)

    def ids(self, text):
        return np.array(self.tok.encode(text, add_special_tokens=False).ids, dtype=np.int64)

    def check(self, ids):
        self.checked += 1
        if not np.array_equal(self.ids(self.text(ids)), ids):
            self.mismatch += 1


RATED = re.compile(r"rated (\d+(?:\.\d+)?)")


def split_prompt(e):
    """head (up to the first history line), the history lines, and the rest of the shared prefix."""
    t, c, pl = e["tokens"], e["cuts"], e["prefix_len"]
    if len(c) < 2:
        return t[:pl], [], t[pl:pl]
    if c[-1] > pl:
        sys.exit(f"teacher_probe: example {e['index']}: history ends at {c[-1]}, past the shared prefix {pl}")
    return t[:c[0]], [t[c[k]:c[k + 1]] for k in range(len(c) - 1)], t[c[-1]:pl]


def variant_prefix(v, e, groups_lines, donor, rt, rng):
    head, lines, tail = split_prompt(e)
    if v == "original":
        new = lines
    elif v == "shuffled":
        p = rng.permutation(len(lines))
        while len(lines) > 1 and (p == np.arange(len(lines))).all():
            p = rng.permutation(len(lines))
        new = [lines[k] for k in p]
    elif v == "removed":
        new = []
    elif v == "other":
        new = groups_lines[donor]
    else:
        texts = [rt.text(x) for x in lines]
        for x in lines:
            rt.check(x)
        if v == "rating_const":
            texts = [RATED.sub("rated 3.5", s) for s in texts]
        elif v == "rating_perm":
            vals = [m.group(1) for s in texts for m in [RATED.search(s)] if m]
            if len(vals) == len(texts) and len(vals) > 1:
                p = rng.permutation(len(vals))
                while (p == np.arange(len(vals))).all():
                    p = rng.permutation(len(vals))
                texts = [RATED.sub("rated " + vals[p[k]], s) for k, s in enumerate(texts)]
        elif v == "titles_blank":
            texts = [re.sub(r"^- .*: rated", "- a movie: rated", s) for s in texts]
        new = [rt.ids(s) for s in texts]
    parts = [head] + list(new) + [tail]
    return np.concatenate(parts) if parts else np.zeros(0, np.int64)


def load_model(path, threads):
    import torch
    from transformers import AutoModelForCausalLM
    torch.set_num_threads(threads)
    if path.endswith(".gguf"):
        m = AutoModelForCausalLM.from_pretrained(os.path.dirname(path) or ".", gguf_file=os.path.basename(path),
                                                 torch_dtype=torch.float32)
    else:
        m = AutoModelForCausalLM.from_pretrained(path, torch_dtype=torch.float32)
    return m.eval()


def cmd_score(a):
    import torch
    meta_labels = None
    import json
    with open(os.path.join(a.data, "meta.json")) as f:
        meta_labels = json.load(f)["labels"]
    yes, no = meta_labels["yes_id"], meta_labels["no_id"]
    ex = read_split(os.path.join(a.data, "test.bin"))[:a.n]
    tj = a.tokenizer or next((p for p in (os.path.join(a.data, "tokenizer", "tokenizer.json"),
                                          os.path.join(a.model, "tokenizer.json")) if os.path.exists(p)), None)
    if not tj:
        sys.exit("teacher_probe: no tokenizer.json in DATA_DIR/tokenizer or MODEL; name one with --tokenizer")
    rt = Retok(tj)
    groups = sorted({e["group"] for e in ex})
    first = {}
    for e in ex:
        first.setdefault(e["group"], e)
    glines = {g: split_prompt(first[g])[1] for g in groups}
    gpos = {g: k for k, g in enumerate(groups)}
    donor = {g: groups[(gpos[g] + len(groups) // 2) % len(groups)] for g in groups}
    model = load_model(a.model, a.threads)
    os.makedirs(a.out, exist_ok=True)
    for v in a.variants.split(","):
        if v not in VARIANTS:
            sys.exit(f"teacher_probe: unknown variant '{v}' (one of {', '.join(VARIANTS)})")
        rng = np.random.default_rng(a.seed)
        t0 = time.time()
        rows, cache, cache_g, ntok = [], None, None, 0
        with torch.no_grad():
            for e in ex:
                g = e["group"]
                if g != cache_g:  # a new prompt: prefill its (possibly changed) shared prefix once
                    pre = variant_prefix(v, e, glines, donor[g], rt, rng)
                    cache, cache_g = None, g
                    if len(pre):
                        o = model.model(input_ids=torch.tensor(pre)[None], use_cache=True)
                        cache = o.past_key_values
                        ntok += len(pre)
                suf = e["tokens"][e["prefix_len"]:e["answer_pos"]]
                # a copy of the prefix's cache per candidate (the forward appends to the cache it is given)
                o = model.model(input_ids=torch.tensor(suf)[None], past_key_values=copy.deepcopy(cache),
                                use_cache=cache is not None)
                ntok += len(suf)
                h = o.last_hidden_state[0, -1]
                logits = model.lm_head(h).double()
                lp = torch.log_softmax(logits, -1)
                margin = float(logits[yes] - logits[no])
                rows.append(dict(index=e["index"], group=g, member=e["member"], item=e["item"], task=e["task"],
                                 label=e["label"], margin=repr(margin), score=f"{1 / (1 + np.exp(-margin)):.9f}",
                                 label_mass=f"{float(lp[yes].exp() + lp[no].exp()):.6f}",
                                 top_token=int(torch.argmax(logits)),
                                 donor=first[donor[g]]["member"] if v == "other" else ""))
        with open(os.path.join(a.out, v + ".tsv"), "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]), delimiter="\t")
            w.writeheader()
            w.writerows(rows)
        print(f"{v}: {len(rows)} examples, {ntok} tokens, {time.time() - t0:.1f} s", flush=True)
        if v == "original" and a.check:
            with open(a.check, newline="") as f:
                ref = {int(r["index"]): float(r["margin"]) for r in csv.DictReader(f, delimiter="\t")}
            d = np.array([abs(float(r["margin"]) - ref[r["index"]]) for r in rows if r["index"] in ref])
            m = np.array([abs(ref[r["index"]]) for r in rows if r["index"] in ref])
            print(f"  against {a.check}: {len(d)} examples, largest |margin difference| {d.max():.3g} "
                  f"(largest |margin| {m.max():.3g}), mean {d.mean():.3g}")
    if rt.checked:
        print(f"re-tokenization: {rt.checked - rt.mismatch} of {rt.checked} unchanged history lines re-tokenize "
              f"to their own tokens")


def rank(x):
    from scipy.stats import rankdata
    return rankdata(x)


def spearman(x, y):
    rx, ry = rank(x), rank(y)
    return float(np.corrcoef(rx, ry)[0, 1])


def auc(score, label):
    pos, neg = label == 1, label == 0
    if not pos.any() or not neg.any():
        return np.nan
    r = rank(score)
    n1, n0 = pos.sum(), neg.sum()
    return (r[pos].sum() - n1 * (n1 + 1) / 2) / (n1 * n0)


def within_auc(score, label, group):
    """AUC over the (yes, no) pairs of the same prompt only (ties count one half): how well a scorer
    orders the candidates of one member, where the shown mean is the same for all of them."""
    num = den = 0.0
    for g in np.unique(group):
        s, y = score[group == g], label[group == g]
        p, n = s[y == 1], s[y == 0]
        if len(p) and len(n):
            num += (p[:, None] > n[None, :]).sum() + 0.5 * (p[:, None] == n[None, :]).sum()
            den += len(p) * len(n)
    return num / den if den else np.nan


def between_share(score, group):
    """Share of the score's variance between prompts (1: the score is a per-prompt constant)."""
    tot = ((score - score.mean()) ** 2).sum()
    gm = {g: score[group == g].mean() for g in np.unique(group)}
    bet = sum(((gm[g] - score.mean()) ** 2) * (group == g).sum() for g in gm)
    return bet / tot


def cmd_analyze(a):
    with open(os.path.join(a.data, "baselines.tsv"), newline="") as f:
        base = {int(r["index"]): r for r in csv.DictReader(f, delimiter="\t")}
    runs = {}
    for v in VARIANTS:
        p = os.path.join(a.dir, v + ".tsv")
        if os.path.exists(p):
            with open(p, newline="") as f:
                runs[v] = list(csv.DictReader(f, delimiter="\t"))
    if "original" not in runs:
        sys.exit(f"teacher_probe: {a.dir}/original.tsv missing (run score first)")
    o = runs["original"]
    idx = [int(r["index"]) for r in o]
    label = np.array([int(r["label"]) for r in o])
    group = np.array([int(r["group"]) for r in o])
    member = np.array([int(r["member"]) for r in o])
    hm = np.array([float(base[i]["history_mean"]) for i in idx])
    pop = np.array([float(base[i]["popularity"]) for i in idx])
    margins = {v: np.array([float(r["margin"]) for r in rs]) for v, rs in runs.items()}
    gfirst = {}
    for r in o:
        gfirst.setdefault(int(r["group"]), hm[idx.index(int(r["index"]))])
    members = np.unique(member)
    by_m = [np.flatnonzero(member == m) for m in members]
    rng = np.random.default_rng(a.seed)
    # a resample draws members with replacement; each drawn copy's prompts count as prompts of their own
    picks = []
    for _ in range(a.boot):
        js = rng.integers(0, len(members), len(members))
        ix = np.concatenate([by_m[j] for j in js])
        copy = np.concatenate([np.full(len(by_m[j]), c) for c, j in enumerate(js)])
        picks.append((ix, group[ix] * len(members) + copy))

    def ci(f):
        pt = f(np.arange(len(o)), group)
        b = np.array([f(ix, gid) for ix, gid in picks])
        lo, hi = np.nanpercentile(b, [2.5, 97.5])
        return pt, lo, hi, b

    def fmt(t):
        return f"{t[0]:.3f} [{t[1]:.3f}, {t[2]:.3f}]"

    t = margins["original"]
    print(f"{len(o)} test examples, {len(members)} members, {len(np.unique(group))} prompts; "
          f"95% intervals from {a.boot} resamples of members\n")
    print("(a) does the teacher only reproduce the shown mean?\n")
    print("| quantity | value [95% interval] |\n|---|---|")
    print(f"| Spearman(teacher margin, shown mean) | {fmt(ci(lambda ix, g: spearman(t[ix], hm[ix])))} |")
    print(f"| Spearman(teacher margin, popularity) | {fmt(ci(lambda ix, g: spearman(t[ix], pop[ix])))} |")
    print(f"| Spearman(shown mean, popularity) | {fmt(ci(lambda ix, g: spearman(hm[ix], pop[ix])))} |")
    print(f"| share of the teacher margin's variance between prompts | "
          f"{fmt(ci(lambda ix, g: between_share(t[ix], g)))} |")
    # residual of the margin after a per-prompt constant: what the teacher adds within a prompt
    print(f"| Spearman(teacher margin, popularity) within prompts (margins and popularity centred per prompt) | "
          f"{fmt(ci(lambda ix, g: spearman(centre(t[ix], g), centre(pop[ix], g))))} |")
    print("\nAUC over all pairs (as evaluate) and within prompts (pairs of candidates of the same member only):\n")
    print("| scorer | AUC, all pairs | AUC within prompts |\n|---|---|---|")
    for name, s in (("teacher (SFT 60 steps)", t), ("shown mean", hm), ("popularity", pop),
                    ("popularity log-odds + shown mean - 3.5", np.log(pop / (1 - pop)) + hm - 3.5)):
        print(f"| {name} | {fmt(ci(lambda ix, g: auc(s[ix], label[ix])))} | "
              f"{fmt(ci(lambda ix, g: within_auc(s[ix], label[ix], g)))} |")
    wd = ci(lambda ix, g: within_auc(t[ix], label[ix], g) - within_auc(pop[ix], label[ix], g))
    print(f"\nteacher minus popularity, AUC within prompts: {wd[0]:+.3f} [{wd[1]:+.3f}, {wd[2]:+.3f}]")
    # strata of the shown mean (quartiles over prompts): AUC inside each stratum, pooled over its prompts
    q = np.quantile(hm, [0.25, 0.5, 0.75])
    strat = np.searchsorted(q, hm, side="right")
    print("\nAUC inside strata of the shown mean (quartiles of the examples' shown mean):\n")
    print("| shown mean | examples | yes rate | teacher AUC | popularity AUC |\n|---|---:|---:|---|---|")
    for k in range(4):
        sel = strat == k
        lo_, hi_ = hm[sel].min(), hm[sel].max()
        print(f"| {lo_:.2f} to {hi_:.2f} | {sel.sum()} | {label[sel].mean():.2f} | "
              f"{fmt(ci(lambda ix, g: auc(t[ix][strat[ix] == k], label[ix][strat[ix] == k])))} | "
              f"{fmt(ci(lambda ix, g: auc(pop[ix][strat[ix] == k], label[ix][strat[ix] == k])))} |")
    print("\n(b, c) the prompt's history changed (the same examples, the same model):\n")
    print("| variant | AUC | minus original | within-prompt AUC | Spearman(margin, shown mean) | "
          "mean P(yes)+P(no) | margin mean, sd |")
    print("|---|---|---|---|---|---|---|")
    for v, m in margins.items():
        d = ci(lambda ix, g: auc(m[ix], label[ix]) - auc(t[ix], label[ix]))
        mass = np.array([float(r["label_mass"]) for r in runs[v]])
        print(f"| {v} | {fmt(ci(lambda ix, g: auc(m[ix], label[ix])))} | {d[0]:+.3f} [{d[1]:+.3f}, {d[2]:+.3f}] | "
              f"{fmt(ci(lambda ix, g: within_auc(m[ix], label[ix], g)))} | "
              f"{fmt(ci(lambda ix, g: spearman(m[ix], hm[ix])))} | {mass.mean():.3f} | {m.mean():+.2f}, {m.std():.2f} |")
    if "other" in runs:
        dm = {}
        for r in runs["original"]:
            dm.setdefault(int(r["member"]), hm[idx.index(int(r["index"]))])
        dhm = np.array([dm[int(r["donor"])] for r in runs["other"]])
        m = margins["other"]
        print(f"\n`other` (another member's history): Spearman(margin, the donor's shown mean) "
              f"{fmt(ci(lambda ix, g: spearman(m[ix], dhm[ix])))}, with the member's own shown mean "
              f"{fmt(ci(lambda ix, g: spearman(m[ix], hm[ix])))}; AUC of the donor's shown mean against the "
              f"member's labels {fmt(ci(lambda ix, g: auc(dhm[ix], label[ix])))}")


def centre(x, group):
    out = x.astype(float).copy()
    for g in np.unique(group):
        out[group == g] -= x[group == g].mean()
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("score")
    s.add_argument("data")
    s.add_argument("model")
    s.add_argument("--n", type=int, default=400)
    s.add_argument("--variants", default=",".join(VARIANTS))
    s.add_argument("--out", required=True)
    s.add_argument("--check")
    s.add_argument("--tokenizer", help="tokenizer.json of the data set's tokenizer (default: DATA_DIR/tokenizer/ "
                   "or MODEL/tokenizer.json; smelt writes it beside every model it trains)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--threads", type=int, default=2)
    z = sub.add_parser("analyze")
    z.add_argument("data")
    z.add_argument("dir")
    z.add_argument("--boot", type=int, default=2000)
    z.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    cmd_score(a) if a.cmd == "score" else cmd_analyze(a)


if __name__ == "__main__":
    main()
