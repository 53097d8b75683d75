#!/usr/bin/env python3
"""make_smollm2_fixtures.py: writes tests/fixtures/smollm2/reference.json, transformers' view of
../shared/models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf (loaded with gguf_file=,
which dequantizes the weights to fp32 and builds the tokenizer from the GGUF metadata itself), and
the chat templates smelt renders, rendered by jinja2 as transformers does.

Regenerate (from the repository root; needs torch, transformers >= 5, gguf, accelerate, jinja2):
    python3 tools/make_smollm2_fixtures.py [--shared ../shared] [--out tests/fixtures/smollm2/reference.json]

Recorded:
- "golden": for each of the 46 strings of ../shared/tokenizers/golden/vocab-test.inp, the ids of
  transformers' GGUF tokenizer ("ids") and the ids with llama.cpp's `smollm` pre-tokenizer (digits
  split one by one, then GPT-2's regex: "ids_smollm"); transformers does not know `smollm` and uses
  GPT-2's regex alone. The script reports on how many strings the two differ.
- "chat": conversations rendered with the file's chat template (apply_chat_template, with and without
  the generation prompt) and their ids (no BOS added: the template writes every special token).
- "templates": the same conversations rendered with Qwen2's template (../shared/tokenizers/qwen2) and
  Meta Llama 3's instruct template (below), by jinja2 with transformers' settings.
- "logits": prompts (ids), and per prompt at a few positions the top-32 logits (ids, values) and the
  logits of 16 fixed ids, fp32 on the CPU, one thread, eager attention.
- "greedy": the chat message "What is the capital of France?" decoded greedily for 12 tokens.
"""
import argparse
import json
import os

import jinja2
import torch
import transformers
from tokenizers import Regex, pre_tokenizers
from transformers import AutoModelForCausalLM, AutoTokenizer

from fixture_io import SHARED_DEFAULT, write_json

LLAMA3_TEMPLATE = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + "
    "message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}"
    "{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)
CONVERSATIONS = [
    [{"role": "user", "content": "What is the capital of France?"}],
    [{"role": "system", "content": "You rank movies."}, {"role": "user", "content": "Will I like Heat (1995)? yes or no"}],
    [{"role": "user", "content": "Hi!"}, {"role": "assistant", "content": " Hello, how can I help?\n"},
     {"role": "user", "content": "  Tell me a joke.  "}],
    [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"}],
]
LOGIT_PROMPTS = [
    ("plain", "The capital of France is", False),
    ("chat", "What is the capital of France?", True),
    ("movielens", "Will the member rate the candidate movie 4 stars or more? Answer yes or no.\nHistory:\n"
                  "- Heat (1995) (Action, Crime, Thriller): rated 4.5\nCandidate: Toy Story (1995)\nAnswer:", False),
]
FIXED_IDS = [0, 1, 2, 17, 198, 216, 255, 1000, 4649, 9531, 12345, 20000, 30000, 40000, 49000, 49151]


def read_golden(shared):
    with open(os.path.join(shared, "tokenizers", "golden", "vocab-test.inp"), encoding="utf-8") as f:
        raw = f.read()
    return raw.split("\n__ggml_vocab_test__\n")


def render(template, messages, add_generation_prompt, bos="", eos=""):
    env = jinja2.Environment(trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"])
    env.filters["tojson"] = json.dumps
    return env.from_string(template).render(messages=messages, add_generation_prompt=add_generation_prompt,
                                            bos_token=bos, eos_token=eos)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shared", default=SHARED_DEFAULT)
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "smollm2",
                                                  "reference.json"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    d = os.path.join(args.shared, "models", "smollm2-135m-instruct")
    name = "SmolLM2-135M-Instruct.Q4_1.gguf"
    tok = AutoTokenizer.from_pretrained(d, gguf_file=name)
    out = {"generator": "tools/make_smollm2_fixtures.py", "transformers": transformers.__version__,
           "torch": torch.__version__}

    # tokenizer: transformers' own, and with llama.cpp's smollm pre-tokenizer
    golden = read_golden(args.shared)
    ids_hf = [tok(s, add_special_tokens=False)["input_ids"] for s in golden]
    backend = tok.backend_tokenizer
    saved = backend.pre_tokenizer
    backend.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(r"\p{N}"), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)])
    ids_sm = [tok(s, add_special_tokens=False)["input_ids"] for s in golden]
    backend.pre_tokenizer = saved
    differ = sum(a != b for a, b in zip(ids_hf, ids_sm))
    print(f"golden strings: {len(golden)}; transformers' GGUF tokenizer and llama.cpp's smollm pre-tokenizer differ on "
          f"{differ}")
    out["golden"] = [{"text": s, "ids": a, "ids_smollm": b} for s, a, b in zip(golden, ids_hf, ids_sm)]
    out["add_bos"] = bool(getattr(tok, "add_bos_token", False))
    out["bos"], out["eos"] = tok.bos_token_id, tok.eos_token_id

    # chat template of the file, and the other two families
    chat = []
    for conv in CONVERSATIONS:
        for gen in (True, False):
            if gen and conv[-1]["role"] == "assistant":
                continue
            if not gen and conv[-1]["role"] == "user":
                continue  # what smelt renders: a prompt to answer, or a finished conversation
            text = tok.apply_chat_template(conv, tokenize=False, add_generation_prompt=gen)
            ids = tok(text, add_special_tokens=False)["input_ids"]
            chat.append({"messages": conv, "add_generation_prompt": gen, "text": text, "ids": ids})
    out["chat"] = chat
    with open(os.path.join(args.shared, "tokenizers", "qwen2", "tokenizer_config.json")) as f:
        qwen2_template = json.load(f)["chat_template"]
    out["templates"] = []
    for fam, template, bos in (("qwen2", qwen2_template, ""), ("llama3", LLAMA3_TEMPLATE, "<|begin_of_text|>")):
        for c in chat:
            text = render(template, c["messages"], c["add_generation_prompt"], bos=bos)
            out["templates"].append({"family": fam, "template": template, "bos": bos, "messages": c["messages"],
                                     "add_generation_prompt": c["add_generation_prompt"], "text": text})

    # logits and greedy decoding, fp32
    model = AutoModelForCausalLM.from_pretrained(d, gguf_file=name, dtype=torch.float32, attn_implementation="eager")
    model.eval()
    out["logits"] = []
    with torch.no_grad():
        for label, text, is_chat in LOGIT_PROMPTS:
            if is_chat:
                text = tok.apply_chat_template([{"role": "user", "content": text}], tokenize=False,
                                               add_generation_prompt=True)
            ids = tok(text, add_special_tokens=False)["input_ids"]
            logits = model(torch.tensor([ids])).logits[0].float()
            rows = []
            for pos in sorted({0, len(ids) // 2, len(ids) - 2, len(ids) - 1}):
                row = logits[pos]
                top = torch.topk(row, 32)
                rows.append({"pos": pos, "top_ids": top.indices.tolist(), "top": top.values.tolist(),
                             "fixed": row[FIXED_IDS].tolist(), "max_abs": float(row.abs().max())})
            out["logits"].append({"label": label, "text": text, "ids": ids, "rows": rows})
        out["fixed_ids"] = FIXED_IDS
        prompt = out["logits"][1]["ids"]
        gen = model.generate(torch.tensor([prompt]), max_new_tokens=12, do_sample=False)[0][len(prompt):].tolist()
        out["greedy"] = {"prompt_ids": prompt, "ids": gen, "text": tok.decode(gen)}
        print("greedy:", repr(out["greedy"]["text"]))
    write_json(args.out, out)


if __name__ == "__main__":
    main()
