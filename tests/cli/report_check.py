#!/usr/bin/env python3
"""report_check.py: checks the output of `smelt report RUN` against the store, read independently
with `smelt query --json` (SMELT and SMELT_STORE from the environment):

  report_check.py text REPORT.txt RUN     every line within 100 columns; the Models, Serving,
                                          Pruning, Quantization and AUC per task rows equal the
                                          values the
                                          store holds (formatted as the report documents, "-"
                                          where a value is absent); the Pareto fronts named in the
                                          Models note are the non-dominated models
  report_check.py html PAGE.html RUN N    the page is self-contained (no script, nothing fetched),
                                          has N figures, each with a title and non-empty x and y
                                          axis labels, and its AUC-against-parameters caption names
                                          the same Pareto front
Exits non-zero with the first mismatch.
"""
import json
import math
import os
import re
import subprocess
import sys

WIDTH = 100


def query(sql):
    out = subprocess.run([os.environ["SMELT"], "query", "--json", sql], check=True, capture_output=True, text=True)
    return json.loads(out.stdout or "[]")


def fail(msg):
    raise SystemExit(f"FAIL (report_check): {msg}")


class Run:
    def __init__(self, run):
        self.kind = {r["stage"]: r["kind"] for r in query(f"SELECT stage, kind FROM stages WHERE run_id = '{run}'")}
        self.metrics = {}
        for r in query(f"SELECT stage, key, value FROM latest_metrics WHERE run_id = '{run}'"):
            self.metrics[(r["stage"], r["key"])] = r["value"]
        self.params = {}
        for r in query(f"SELECT stage, key, value FROM params WHERE run_id = '{run}'"):
            self.params[(r["stage"], r["key"])] = r["value"]
        self.inputs = {}
        for r in query(f"SELECT stage, input, from_stage FROM lineage WHERE run_id = '{run}'"):
            self.inputs[(r["stage"], r["input"])] = r["from_stage"]
        self.stages = sorted(self.kind)

    def m(self, stage, key):
        v = self.metrics.get((stage, key))
        return math.nan if v is None else float(v)

    def model_params(self, model):
        """The params metric of the model's stage, or of the model a quantize stage read."""
        s = model
        while s is not None:
            p = self.m(s, "params")
            if not math.isnan(p):
                return p
            s = self.inputs.get((s, "model")) if self.kind.get(s) == "quantize" else None
        return math.nan

    def evaluation(self, model):
        """The evaluate stage of the model on split test, else its only one (the tests' runs have
        at most one of each, so that the report's choice by stage order is not needed here)."""
        evs = [s for s, k in self.kind.items() if k == "evaluate" and self.inputs.get((s, "model")) == model]
        test = [s for s in evs if self.params.get((s, "split")) == "test"]
        if len(test) > 1 or (not test and len(evs) > 1):
            fail(f"model {model} has several evaluations: {evs}")
        return (test or evs or [None])[0]

    def benchmark(self, model):
        bs = [s for s, k in self.kind.items() if k == "benchmark" and self.inputs.get((s, "model")) == model]
        if len(bs) > 1:
            fail(f"model {model} has several benchmarks: {bs}")
        return bs[0] if bs else None


def fmt(v, spec):
    return "-" if math.isnan(v) else spec % v


def fmt_scaled(v, suffixes, sep):
    """Three significant digits with a suffix (report_data.c's rule, written again here)."""
    if math.isnan(v):
        return "-"
    k, a = 0, abs(v)
    while a >= 999.5 and k + 1 < len(suffixes):
        a, v, k = a / 1000, v / 1000, k + 1
    if k == 0:
        return "%.0f%s%s" % (v, sep if suffixes[0] else "", suffixes[0])
    digits = 2 if a < 9.995 else 1 if a < 99.95 else 0
    return "%.*f%s%s" % (digits, v, sep, suffixes[k])


def count(v):
    return fmt_scaled(v, ["", "K", "M", "B", "T"], "")


def size(v):
    return fmt_scaled(v, ["B", "KB", "MB", "GB", "TB"], " ")


def same_name(cell, name):
    """A cell shows a name whole, or its start followed by an ellipsis when the column shrank."""
    return cell == name or (cell.endswith("…") and name.startswith(cell[:-1]))


def section(lines, title):
    """Rows of the table under a section title (cells split at runs of 2+ spaces), and its note."""
    try:
        i = lines.index(title)
    except ValueError:
        fail(f"no section '{title}'")
    header = re.split(r"\s{2,}", lines[i + 1].strip())
    rows, k = [], i + 2
    while k < len(lines) and lines[k].startswith("  ") and len(re.split(r"\s{2,}", lines[k].strip())) == len(header):
        rows.append(re.split(r"\s{2,}", lines[k].strip()))
        k += 1
    note = []
    while k < len(lines) and lines[k].startswith("  "):
        note.append(lines[k].strip())
        k += 1
    return header, rows, " ".join(note)


def pareto(points):
    """Names not dominated when fewer x and more AUC are better."""
    out = []
    for n, x, y in points:
        if math.isnan(x) or math.isnan(y):
            continue
        if not any(x2 <= x and y2 >= y and (x2 < x or y2 > y) for _, x2, y2 in points
                   if not (math.isnan(x2) or math.isnan(y2))):
            out.append(n)
    return out


def models(run):
    """The stages whose output an evaluate or benchmark stage read as its model."""
    return sorted({run.inputs[(s, "model")] for s in run.stages
                   if run.kind[s] in ("evaluate", "benchmark") and (s, "model") in run.inputs})


def match(rows, names, what):
    """Pairs each row with the name its first cell shows (whole or shortened, never two)."""
    out = []
    for row in rows:
        hits = [n for n in names if same_name(row[0], n)]
        if len(hits) != 1:
            fail(f"{what} row {row} matches {hits} of {names}")
        out.append((row, hits[0]))
    if sorted(n for _, n in out) != sorted(names):
        fail(f"{what} rows {[r[0] for r in rows]} are not {names}")
    return out


def check_text(path, run_id):
    text = open(path, encoding="utf-8").read()
    lines = text.split("\n")
    for n, line in enumerate(lines, 1):
        if len(line) > WIDTH:
            fail(f"line {n} is {len(line)} columns wide (at most {WIDTH}): {line}")
    run = Run(run_id)
    header, rows, note = section(lines, "Models")
    want = models(run)
    pts = {"parameters": [], "bytes": [], "TTFT p50": []}
    for row, model in match(rows, want, "Models"):
        ev, bench = run.evaluation(model), run.benchmark(model)
        auc = run.m(ev, "auc") if ev else math.nan
        params = run.model_params(model)
        qbytes = run.m(model, "bytes")
        nbytes = qbytes if not math.isnan(qbytes) else 4 * params
        expect = {
            "PARAMS": count(params),
            "BYTES": size(nbytes) + ("" if not math.isnan(qbytes) or math.isnan(params) else "*"),
            "AUC": fmt(auc, "%.4f"),
            "ΔAUC %": fmt(run.m(ev, "auc_delta_pct") if ev else math.nan, "%+.2f%%"),
            "ΔAUC": fmt(run.m(ev, "auc_delta") if ev else math.nan, "%+.4f"),
        }
        for col, v in expect.items():
            got = row[header.index(col)]
            if got != v:
                fail(f"Models: {model} {col} is '{got}', the store says '{v}'")
        pts["parameters"].append((model, params, auc))
        pts["bytes"].append((model, nbytes, auc))
        pts["TTFT p50"].append((model, run.m(bench, "ttft_ms_p50") if bench else math.nan, auc))
    for what, p in pts.items():
        front = pareto(p)
        if what == "TTFT p50" and all(math.isnan(x) for _, x, _ in p):
            continue
        m = re.search(r"against %s (.*?)(;|\.$)" % re.escape(what), note)
        if not m:
            fail(f"the Models note names no Pareto front against {what}: {note}")
        got = [x.strip() for x in m.group(1).split(",")] if m.group(1) != "-" else []
        if sorted(got) != sorted(front):
            fail(f"Pareto front against {what}: the report says {got}, the store's values give {front}")
    benches = [s for s in run.stages if run.kind[s] == "benchmark"]
    if benches:
        header, rows, _ = section(lines, "Serving")
        cols = {"TTFT p50": ("ttft_ms_p50", "%.1f"), "TTFT p99": ("ttft_ms_p99", "%.1f"),
                "TPOT p50": ("tpot_ms_p50", "%.2f"), "TPOT p99": ("tpot_ms_p99", "%.2f"),
                "REQ/S": ("requests_per_s", "%.2f"), "IN TOK/S": ("input_tokens_per_s", "%.0f"),
                "OUT TOK/S": ("output_tokens_per_s", "%.1f")}
        for row, b in match(rows, benches, "Serving"):
            for col, (key, spec) in cols.items():
                if row[header.index(col)] != fmt(run.m(b, key), spec):
                    fail(f"Serving: {b} {col} is '{row[header.index(col)]}', the store says {run.m(b, key)}")
    prunes = [s for s in run.stages if run.kind[s] == "prune"]
    if prunes:
        header, rows, _ = section(lines, "Pruning")
        for row, p in match(rows, prunes, "Pruning"):
            for col, key in (("ERR MLP", "rel_error_mlp_mean"), ("ERR ATTN", "rel_error_attn_mean")):
                if row[header.index(col)] != fmt(run.m(p, key), "%.3g"):
                    fail(f"Pruning: {p} {col} is '{row[header.index(col)]}', the store says {run.m(p, key)}")
            if row[header.index("PARAMS")] != f"{count(run.m(p, 'params_before'))} → {count(run.m(p, 'params'))}":
                fail(f"Pruning: {p} PARAMS is '{row[header.index('PARAMS')]}'")
    quants = [s for s in run.stages if run.kind[s] == "quantize"]
    if quants:
        header, rows, _ = section(lines, "Quantization")
        for row, q in match(rows, quants, "Quantization"):
            for col, key, spec in (("BITS/W", "bits_per_weight", "%.2f"), ("ERR MEAN", "rel_error_mean", "%.3g")):
                if row[header.index(col)] != fmt(run.m(q, key), spec):
                    fail(f"Quantization: {q} {col} is '{row[header.index(col)]}', the store says {run.m(q, key)}")
            if row[header.index("BYTES")] != size(run.m(q, "bytes")):
                fail(f"Quantization: {q} BYTES is '{row[header.index('BYTES')]}'")
    # AUC per task: one row per (evaluation, task) with a per-task AUC metric
    tasks = [(s, k[4:]) for s in run.stages if run.kind[s] == "evaluate" for (st, k) in run.metrics
             if st == s and k.startswith("auc_") and not k.startswith("auc_delta") and k != "auc_ref"]
    if tasks:
        header, rows, _ = section(lines, "AUC per task")
        got = [(r[0], r[header.index("TASK")]) for r in rows]
        if len(got) != len(tasks) or not all(same_name(g[0], t[0]) and g[1] == t[1] for g, t in
                                             zip(sorted(got), sorted(tasks))):
            fail(f"AUC per task rows {got} are not {tasks}")
        for row in rows:
            ev = [s for s, t in tasks if same_name(row[0], s) and t == row[header.index("TASK")]][0]
            task = row[header.index("TASK")]
            auc, d = run.m(ev, f"auc_{task}"), run.m(ev, f"auc_delta_{task}")
            expect = {"AUC": fmt(auc, "%.4f"), "REF AUC": fmt(auc - d, "%.4f"), "ΔAUC": fmt(d, "%+.4f"),
                      "ΔAUC %": fmt(100 * d / (auc - d), "%+.2f%%")}
            for col, v in expect.items():
                if row[header.index(col)] != v:
                    fail(f"AUC per task: {ev} {task} {col} is '{row[header.index(col)]}', the store says '{v}'")
    print(f"ok: {len(want)} models, {len(benches)} benchmarks, {len(prunes)} prune and {len(quants)} quantize stages, "
          f"{len(tasks)} task AUCs match the store; every line within {WIDTH} columns")


def check_html(path, run_id, n_figures):
    page = open(path, encoding="utf-8").read()
    low = page.lower()
    for bad in ("<script", "<link", "<img", "<iframe", "@import", "url(", "src="):
        if bad in low:
            fail(f"the page is not self-contained: it has '{bad}'")
    urls = set(re.findall(r"https?://[^\s\"'<>]+", page)) - {"http://www.w3.org/2000/svg"}
    if urls:
        fail(f"the page names addresses: {sorted(urls)}")
    svgs = re.findall(r"<svg.*?</svg>", page, re.S)
    if len(svgs) != n_figures:
        fail(f"the page has {len(svgs)} figures, expected {n_figures}")
    for svg in svgs:
        for cls in ("title", "xlabel", "ylabel"):
            m = re.search(r'class="%s"[^>]*>([^<]*)<' % cls, svg)
            if not m or not m.group(1).strip():
                fail(f"a figure has no {cls}: {svg[:200]}")
    run = Run(run_id)
    want = pareto([(m, run.model_params(m), run.m(run.evaluation(m), "auc") if run.evaluation(m) else math.nan)
                   for m in models(run)])
    m = re.search(r"AUC against parameters\. .*?fewer parameters\): (.*?)\.</figcaption>", page)
    if not m or sorted(x.strip() for x in m.group(1).split(",")) != sorted(want):
        fail(f"the AUC-against-parameters caption does not name the front {want}: {m.group(1) if m else None}")
    print(f"ok: {n_figures} figures with titles and labelled axes, self-contained, Pareto front {want}")


if __name__ == "__main__":
    if sys.argv[1] == "text":
        check_text(sys.argv[2], sys.argv[3])
    elif sys.argv[1] == "html":
        check_html(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    else:
        raise SystemExit(__doc__)
