#!/usr/bin/env python3
"""tokenizer_bos_check.py: proves that transformers' tokenizer, loaded from the folder of a model
smelt trained, gives exactly the token ids smelt trained and scores with, BOS included, and writes
the fixtures tests/test_tokenizer_bos.c compares smelt against.

For each tokenizer case:
  1. `smelt run` a recipe with a `data` stage (source pairs, the prompts of
     tests/data/tokenizer/bos_prompts.jsonl, the case's tokenizer) and a one-step `train` stage;
  2. `smelt checkout` both: the ids smelt uses for prompt i are the tokens of record i's example
     before its first response token, read from the data artifact's train.bin;
  3. AutoTokenizer.from_pretrained(model folder)(prompt)["input_ids"] must equal them (and
     encode(prompt, add_special_tokens=False) must equal them without the BOS);
  4. writes tests/data/tokenizer/bos_<case>.out: a header with the sha256 of the folder's
     tokenizer.json and tokenizer_config.json (the C test checks that smelt still writes exactly
     these bytes), then one line of ids per prompt, each id preceded by a space.

Cases: builtin:bytes (BOS), Llama 3 tiktoken (BOS), Qwen2 vocab.json + merges.txt (no BOS
token), and two tokenizer.json files written here from smelt's bytes tokenizer, each with a
chat_template the trained folder must keep: `nobos` (tests/data/tokenizer/nobos/), whose files
do not add the BOS smelt adds (post_processor null, add_bos_token false: what smelt saved before
the post-processor), and `bytelevel` (tests/data/tokenizer/bytelevel/), whose ByteLevel
post-processor adds no BOS although the tokenizer has one (GPT-2's, SmolLM2's files), so neither
smelt nor transformers adds it. For `nobos` the script also shows the defect the post-processor
fixes: transformers on the original folder gives no BOS.

usage: python3 tools/tokenizer_bos_check.py --smelt build/smelt [--shared ../shared]
Needs transformers, tokenizers. Exits 1 on any mismatch.
"""
import argparse
import json
import os
import struct
import subprocess
import sys
import tempfile

from tokenizer_hf_check import write_ids_fixture

RECIPE = """smelt: 1
name: bos-check
seed: 1
stages:
  data:
    kind: data
    source: pairs
    path: {prompts}
    tokenizer: {tokenizer}
    split: {{valid: 0, test: 0}}
    calibration: {{samples: 0}}
  model:
    kind: train
    data: data
    init: {{arch: llama, hidden: 8, layers: 1, heads: 2, intermediate: 16}}
    steps: 1
    batch_size: 2
    valid_examples: 0
"""


def read_split(path):
    """(member, tokens, answer_pos) of every example of a smelt split file (stages/data/dataset.h)."""
    data = open(path, "rb").read()
    assert data[:8] == b"SMELTDS\x01", path
    version, header_bytes, n_ex, n_tok, _n_groups, _vocab, _n_tasks, tok_off, _mask_off = struct.unpack_from(
        "<IIQQQIIQQ", data, 8)
    out = []
    for i in range(n_ex):
        off, _time, n, _prefix, answer, _group, member = struct.unpack_from("<QqIIIII", data, header_bytes + 48 * i)
        ids = list(struct.unpack_from(f"<{n}i", data, tok_off + 4 * off))
        out.append((member, ids, answer))
    return out


def make_nobos(smelt, out_dir, post_processor):
    """smelt's bytes tokenizer as a folder whose own files add no BOS, with a chat template."""
    os.makedirs(out_dir, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([smelt, "tokenize", "--tokenizer", "builtin:bytes", "--save-hf", tmp], check=True)
        tj = json.load(open(os.path.join(tmp, "tokenizer.json"), encoding="utf-8"))
        tc = json.load(open(os.path.join(tmp, "tokenizer_config.json"), encoding="utf-8"))
    tj["post_processor"] = post_processor
    tc["add_bos_token"] = False
    tc["chat_template"] = "{% for m in messages %}{{ m['content'] }}\n{% endfor %}"
    tc["model_max_length"] = 4096
    with open(os.path.join(out_dir, "tokenizer.json"), "w", encoding="utf-8") as f:
        json.dump(tj, f, ensure_ascii=False, indent=1)
        f.write("\n")
    with open(os.path.join(out_dir, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump(tc, f, ensure_ascii=False, indent=1)
        f.write("\n")


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    root = os.path.dirname(here)
    ap = argparse.ArgumentParser()
    ap.add_argument("--smelt", default=os.path.join(root, "build/smelt"))
    ap.add_argument("--shared", default=os.path.join(root, "../shared"))
    ap.add_argument("--out", default=os.path.join(root, "tests/data/tokenizer"))
    args = ap.parse_args()
    smelt = os.path.abspath(args.smelt)

    from transformers import AutoTokenizer

    prompts_path = os.path.join(args.out, "bos_prompts.jsonl")
    prompts = [json.loads(line)["prompt"] for line in open(prompts_path, encoding="utf-8")]
    nobos, bytelevel = os.path.join(args.out, "nobos"), os.path.join(args.out, "bytelevel")
    make_nobos(smelt, nobos, None)
    make_nobos(smelt, bytelevel, {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True,
                                  "use_regex": True})
    cases = [
        ("bytes", "builtin:bytes", True),
        ("nobos", os.path.abspath(os.path.join(nobos, "tokenizer.json")), True),
        ("bytelevel", os.path.abspath(os.path.join(bytelevel, "tokenizer.json")), False),
        ("llama3", os.path.abspath(os.path.join(args.shared, "tokenizers/llama3/tokenizer.model")), True),
        ("qwen2", os.path.abspath(os.path.join(args.shared, "tokenizers/qwen2/vocab.json")), False),
    ]
    failures = 0
    for name, spec, want_bos in cases:
        with tempfile.TemporaryDirectory() as tmp:
            recipe = os.path.join(tmp, "recipe.yaml")
            with open(recipe, "w") as f:
                f.write(RECIPE.format(prompts=json.dumps(prompts_path), tokenizer=json.dumps(spec)))
            store = os.path.join(tmp, "store")
            env = dict(os.environ, SMELT_STORE=store)
            subprocess.run([smelt, "run", recipe], check=True, stdout=subprocess.DEVNULL, env=env)
            ddir, mdir = os.path.join(tmp, "data"), os.path.join(tmp, "model")
            for stage, d in (("data", ddir), ("model", mdir)):
                subprocess.run([smelt, "checkout", "latest", stage, "-o", d], check=True, env=env)
            used = {}
            for member, ids, answer in read_split(os.path.join(ddir, "train.bin")):
                used[member] = ids[:answer]
            assert sorted(used) == list(range(len(prompts))), f"{name}: records {sorted(used)}"
            tok = AutoTokenizer.from_pretrained(mdir)
            encs = []
            for i, p in enumerate(prompts):
                hf = tok(p)["input_ids"]
                plain = tok.encode(p, add_special_tokens=False)
                has_bos = tok.bos_token_id is not None and hf[:1] == [tok.bos_token_id] and hf[1:] == plain
                if hf != used[i] or has_bos != want_bos or (not want_bos and hf != plain):
                    failures += 1
                    print(f"{name} prompt {i}: transformers {hf} != smelt {used[i]} (BOS expected: {want_bos})",
                          file=sys.stderr)
                encs.append(hf)
            if name in ("nobos", "bytelevel"):
                orig = AutoTokenizer.from_pretrained(nobos)
                lacking = sum(orig(p)["input_ids"] != used[i] for i, p in enumerate(prompts))
                print(f"{name}: transformers on the original files differs from smelt on {lacking} of {len(prompts)} "
                      "prompts; on the trained folder on none")
                cfg = json.load(open(os.path.join(mdir, "tokenizer_config.json"), encoding="utf-8"))
                if "chat_template" not in cfg or cfg.get("model_max_length") != 4096:
                    failures += 1
                    print(f"{name}: the trained folder lost chat_template/model_max_length", file=sys.stderr)
            out = os.path.join(args.out, f"bos_{name}.out")
            write_ids_fixture(out, mdir, encs)
            print(f"{name}: {len(prompts)} prompts, transformers on the trained model's folder == smelt's ids -> {out}")
    if failures:
        print(f"{failures} mismatches", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
