#!/usr/bin/env python3
"""tokenizer_hf_check.py: proves that the tokenizer.json files `smelt tokenize --save-hf` writes
load in Hugging Face transformers and encode like smelt, and records what transformers
produced so that tests/test_tokenizer.c can compare smelt's own encodings to it.

For builtin:bytes, Llama 3 (tiktoken tokenizer.model) and Qwen2 (vocab.json + merges.txt):
  1. smelt writes DIR/tokenizer.json + tokenizer_config.json;
  2. transformers' AutoTokenizer loads DIR and encodes every test string (the 46 golden
     strings, tests/data/tokenizer/extra.inp, and seeded random strings written here to
     tests/data/tokenizer/random.inp) with add_special_tokens=False; decode must give the
     string back;
  3. independent checks: the Llama 3 encodings of the golden strings must equal llama.cpp's
     ggml-vocab-llama-bpe.gguf.out, and the Qwen2 encodings of every string must equal those
     of transformers' own Qwen2 tokenizer loaded from the original vocab.json/merges.txt;
  4. writes tests/data/tokenizer/hf_<name>.out: a header with the sha256 of the two saved
     files (the C test checks that smelt still writes exactly these bytes), then one line of
     ids per string (golden, extra, random), each id preceded by a space.

usage: python3 tools/tokenizer_hf_check.py --smelt build/smelt [--shared ../shared]
Needs: transformers (5.x), tokenizers. Exits 1 on any mismatch.
"""
import argparse
import hashlib
import os
import random
import subprocess
import sys
import tempfile
import unicodedata

SEP = "\n__ggml_vocab_test__\n"


def read_strings(path):
    raw = open(path, "rb").read().decode("utf-8")
    out, pos = [], 0
    while pos < len(raw):
        nxt = raw.find(SEP, pos)
        if nxt < 0:
            out.append(raw[pos:])
            break
        out.append(raw[pos:nxt])
        pos = nxt + len(SEP)
    return out


def random_strings(seed=20250101, n=160):
    """Seeded random text over many scripts, NFC-normalized (Qwen2 normalizes to NFC)."""
    rng = random.Random(seed)
    pools = [
        (40, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"),
        (10, "0123456789"),
        (18, " "),
        (8, ".,;:!?'\"()[]{}<>-_=+*/\\|@#$%^&~`"),
        (4, "\n\t\r"),
        (4, "\u00e9\u00e8\u00fc\u00f1\u00e7\u00df\u00f8\u00e5\u00c9\u00d6"),
        (4, "\u0430\u0431\u0432\u0433\u0434\u0435\u0436\u0437\u0438\u043a\u041b\u041c"),
        (3, "\u03b1\u03b2\u03b3\u03b4\u03a9\u03a3"),
        (4, "\u4e00\u4e8c\u4e09\u4eba\u5927\u5c0f\u65e5\u672c\u8a9e\u4e2d\u6587"),
        (2, "\uac00\ub098\ub2e4\ud55c\uae00"),
        (2, "\u0627\u0644\u0639\u0631\u0628\u064a\u0629"),
        (2, "\u0939\u093f\u0928\u094d\u0926\u0940"),
        (2, "\u00a0\u2003\u3000\u2028\u0085\u200b"),
        (2, "\u0661\u0662\u00bd\u00b2\u2167\u0968"),
        (3, "\U0001f600\U0001f680\U0001f999\u2705\u2764\ufe0f\u200d\U0001f468"),
        (2, "\u017f\u212a\u0130\u0131"),
    ]
    weights = [w for w, _ in pools]
    out = []
    for _ in range(n):
        k = rng.randint(0, 60)
        s = "".join(rng.choice(rng.choices(pools, weights)[0][1]) for _ in range(k))
        out.append(unicodedata.normalize("NFC", s))
    return out


def sha256(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def write_ids_fixture(out, folder, encs):
    """The fixture format the C tests read: a header with the sha256 of folder's tokenizer.json and
    tokenizer_config.json (smelt must still write those bytes), then one line of ids per string."""
    import tokenizers
    import transformers
    with open(out, "w") as f:
        f.write(f"# sha256 tokenizer.json {sha256(os.path.join(folder, 'tokenizer.json'))} "
                f"tokenizer_config.json {sha256(os.path.join(folder, 'tokenizer_config.json'))} "
                f"transformers {transformers.__version__} tokenizers {tokenizers.__version__}\n")
        for ids in encs:
            f.write("".join(f" {i}" for i in ids) + "\n")


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    root = os.path.dirname(here)
    ap = argparse.ArgumentParser()
    ap.add_argument("--smelt", default=os.path.join(root, "build/smelt"))
    ap.add_argument("--shared", default=os.path.join(root, "../shared"))
    ap.add_argument("--out", default=os.path.join(root, "tests/data/tokenizer"))
    args = ap.parse_args()

    from transformers import AutoTokenizer

    rand = random_strings()
    with open(os.path.join(args.out, "random.inp"), "w", encoding="utf-8", newline="") as f:
        for s in rand:
            f.write(s + SEP)
    gold_dir = os.path.join(args.shared, "tokenizers/golden")
    golden = read_strings(os.path.join(gold_dir, "vocab-test.inp"))
    extra = read_strings(os.path.join(args.out, "extra.inp"))
    strings = golden + extra + rand
    llama_gold = [[int(x) for x in l.split()] for l in open(os.path.join(gold_dir, "ggml-vocab-llama-bpe.gguf.out"))]

    cases = [
        ("bytes", "builtin:bytes"),
        ("llama3", os.path.join(args.shared, "tokenizers/llama3/tokenizer.model")),
        ("qwen2", os.path.join(args.shared, "tokenizers/qwen2/vocab.json")),
    ]
    failures = 0
    with tempfile.TemporaryDirectory() as tmp:
        for name, spec in cases:
            d = os.path.join(tmp, name)
            subprocess.run([args.smelt, "tokenize", "--tokenizer", spec, "--save-hf", d], check=True)
            tok = AutoTokenizer.from_pretrained(d)
            encs = [tok.encode(s, add_special_tokens=False) for s in strings]
            for s, ids in zip(strings, encs):
                if tok.decode(ids) != s:
                    failures += 1
                    print(f"{name}: decode(encode({s!r})) = {tok.decode(ids)!r}", file=sys.stderr)
            if name == "llama3":
                for i, (s, ids) in enumerate(zip(golden, encs)):
                    if ids != llama_gold[i]:
                        failures += 1
                        print(f"llama3 golden {i} {s!r}: {ids} != {llama_gold[i]}", file=sys.stderr)
            if name == "qwen2":
                ref = AutoTokenizer.from_pretrained(os.path.dirname(spec))
                for s, ids in zip(strings, encs):
                    r = ref.encode(s, add_special_tokens=False)
                    if r != ids:
                        failures += 1
                        print(f"qwen2 {s!r}: saved {ids} != original {r}", file=sys.stderr)
            out = os.path.join(args.out, f"hf_{name}.out")
            write_ids_fixture(out, d, encs)
            print(f"{name}: {len(strings)} strings encoded by transformers from smelt's tokenizer.json -> {out}")
    if failures:
        print(f"{failures} mismatches", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
