# MovieLens latest-small read straight from ../shared/data/ml-latest-small.zip through the data
# stage: the counts equal the raw CSV's (counted here with Python's zipfile and csv), no
# held-out (valid or test) interaction appears in any training prompt's history (checked here by
# decoding every training prompt and matching its history lines to the member's ratings), and the
# history-mean baseline equals the AUC recomputed here from the test prompts' own history lines.
source "$(dirname "$0")/lib.sh"
source "$SMELT_SOURCE_DIR/tests/lib_shared.sh"
shared_file ZIP data/ml-latest-small.zip "every MovieLens check here" || exit 77
cat > ml.yaml <<YAML
smelt: 1
stages:
  ml:
    kind: data
    source: movielens
    path: $ZIP
    tasks: [like, Comedy, Drama]
    members: 40
    candidates: 8
    history: 20
    history_tokens: 384
    calibration: {samples: 64, from: train}
YAML
"$SMELT" run ml.yaml > run.out 2>&1 || fail "run failed: $(cat run.out)"
RUN=$(q "SELECT run_id FROM runs")
m() { q "SELECT value FROM latest_metrics WHERE run_id = '$RUN' AND stage = 'ml' AND key = '$1'"; }
"$SMELT" checkout "$RUN" ml -o ml > /dev/null || fail "checkout"
python3 - "$ZIP" ml "$(m events)" "$(m members)" "$(m items)" "$(m baseline_history_mean_auc_test)" <<'PY' || fail "counts, leakage or baseline"
import csv, io, struct, sys, zipfile
zp, art, events, members, items, hist_auc = sys.argv[1], sys.argv[2], *map(float, sys.argv[3:])
z = zipfile.ZipFile(zp)
ratings = list(csv.DictReader(io.TextIOWrapper(z.open("ml-latest-small/ratings.csv"), "utf-8")))
movies = list(csv.DictReader(io.TextIOWrapper(z.open("ml-latest-small/movies.csv"), "utf-8")))
users = {r["userId"] for r in ratings}
print(f"raw CSV: {len(ratings)} ratings, {len(users)} users, {len(movies)} movies; stage: {events:.0f}, {members:.0f}, {items:.0f}")
assert (len(ratings), len(users), len(movies)) == (100836, 610, 9742)
assert (events, members, items) == (len(ratings), len(users), len(movies))

def text(m):  # the item text of the prompts: title, then the genres in parentheses
    g = m["genres"]
    return m["title"] + ("" if g == "(no genres listed)" else " (" + g.replace("|", ", ") + ")")
mtext = {m["movieId"]: text(m) for m in movies}

def split_file(path):
    d = open(path, "rb").read()
    _, _, hb, ne, nt, _, _, _, to, _ = struct.unpack("<8sIIQQQIIQQ", d[:64])
    out = []
    for i in range(ne):
        off, time, n, pl, ap, g, mem, item, task, lab, _, _ = struct.unpack("<QqIIIIIIHbBI", d[hb + 48 * i:hb + 48 + 48 * i])
        toks = struct.unpack(f"<{n}i", d[to + 4 * off:to + 4 * off + 4 * n])
        # bytes, with the added tokens " yes"/" no" (which titles may contain: "Shichinin no samurai")
        raw = b"".join(bytes([t]) if t < 256 else {256: b"", 259: b" yes", 260: b" no"}[t] for t in toks).decode("utf-8")
        out.append(dict(time=time, member=mem, item=item, task=task, label=lab, text=raw))
    return out

sp = {k: split_file(f"{art}/{k}.bin") for k in ("train", "valid", "test")}
by_user = {}
for i, r in enumerate(ratings):
    by_user.setdefault(int(r["userId"]), []).append((int(r["timestamp"]), i, mtext[r["movieId"]], float(r["rating"])))
held_items = {}
for k in ("valid", "test"):
    for e in sp[k]:
        held_items.setdefault(e["member"], set()).add((e["item"], e["time"]))
# Held out: each member's events from its first valid/test example on (the split is a suffix of
# the member's events sorted by time, ties in file order), whether or not they became examples.
held = {}
for u, evs in by_user.items():
    evs.sort()
    hs = {(int(ratings[i]["movieId"]), t) for t, i, *_ in evs} & held_items.get(u, set())
    first = min((k for k, (t, i, *_) in enumerate(evs) if (int(ratings[i]["movieId"]), t) in hs), default=len(evs))
    held[u] = {i for _, i, *_ in evs[first:]}
checked = lines = 0
for e in sp["train"]:
    u = e["member"]
    evs = by_user[u]
    hist = e["text"].split("History:\n", 1)[1].split("Candidate: ", 1)[0] if "History:\n" in e["text"] else ""
    for line in hist.splitlines():
        assert line.startswith("- ") and ": rated " in line, line
        t, r = line[2:].rsplit(": rated ", 1)
        match = [ev for ev in evs if ev[2] == t and ev[3] == float(r)]
        assert match, f"history line of member {u} matches none of its ratings: {line}"
        # a history line comes from an event strictly before the candidate, never a held-out one
        assert any(ev[0] <= e["time"] for ev in match), f"member {u}: history after the candidate: {line}"
        assert any(ev[1] not in held[u] for ev in match), \
            f"LEAK: member {u}'s held-out interaction {line} is in a training prompt"
        lines += 1
    checked += 1
    assert e["time"] <= min((t for _, t in held_items.get(u, ())), default=e["time"]), "train after test"
print(f"leakage check: {checked} training prompts, {lines} history lines, none from a valid/test interaction")
assert checked > 1000 and lines > 10000

def auc(scores, labels):  # Mann-Whitney: P(a positive scores above a negative), ties count 1/2
    pos = [s for s, l in zip(scores, labels) if l == 1]
    neg = [s for s, l in zip(scores, labels) if l == 0]
    return sum((p > n) + 0.5 * (p == n) for p in pos for n in neg) / (len(pos) * len(neg))

per_task = {}
for e in sp["test"]:
    hist = e["text"].split("History:\n", 1)[1].split("Candidate: ", 1)[0]
    rates = [float(l.rsplit(": rated ", 1)[1]) for l in hist.splitlines()]
    assert rates, "a test prompt without history (the baseline would use the train mean)"
    per_task.setdefault(e["task"], []).append((sum(rates) / len(rates), e["label"]))
aucs = [auc(*zip(*v)) for v in per_task.values() if {l for _, l in v} == {0, 1}]
mine = sum(aucs) / len(aucs)
print(f"history-mean baseline: {hist_auc:.6f} (stage), {mine:.6f} (recomputed from {len(sp['test'])} test prompts)")
assert abs(mine - hist_auc) < 1e-6

# baselines.tsv: one row per test example in the split's order, its label and history mean equal
# to the prompt's own (what tools/auc_table.py pairs with an evaluate stage's predictions.tsv)
rows = list(csv.DictReader(open(art + "/baselines.tsv"), delimiter="\t"))
assert len(rows) == len(sp["test"]), (len(rows), len(sp["test"]))
for i, (r, e) in enumerate(zip(rows, sp["test"])):
    hist = e["text"].split("History:\n", 1)[1].split("Candidate: ", 1)[0]
    rates = [float(l.rsplit(": rated ", 1)[1]) for l in hist.splitlines()]
    assert int(r["index"]) == i and int(r["label"]) == e["label"] and int(r["task"]) == e["task"], (i, r)
    assert abs(float(r["history_mean"]) - sum(rates) / len(rates)) < 1e-5, (i, r["history_mean"], rates)
    assert 0 < float(r["popularity"]) < 1
print(f"baselines.tsv: {len(rows)} rows match the test prompts")
PY
# a sample prompt (docs/data.md shows one)
"$SMELT_DATA_HELPER" dump ml/test.bin 0 1 | sed -e 's/^/    /' | head -30
pass "MovieLens from the zip: counts match the CSV, no leakage"
