#!/usr/bin/env python3
"""llama2c_tokenizer_ref.py: an independent Python port of llama2.c's encode() (run.c: dummy
prefix, UTF-8 grouping, <0xXX> byte fallback at id byte+3, then the O(n^2) loop that merges
the best-scoring adjacent pair, leftmost on ties). Writes the fixture that
tests/test_tokenizer.c compares smelt's llama2.c tokenizer against.

usage: python3 tools/llama2c_tokenizer_ref.py [../shared/models/stories260K/tok512.bin] [tests/data/tokenizer]
writes llama2c.inp (strings separated by "\\n__ggml_vocab_test__\\n", bytes, not always UTF-8)
and llama2c.out (one line of ids per string, each id preceded by a space).
"""
import os
import struct
import sys

SEP = b"\n__ggml_vocab_test__\n"

STRINGS = [
    b"Once upon a time, there was a little girl named Lily.",
    b"Lily and Ben played in the park. They saw a big, red ball!",
    b"",
    b" ",
    b"  two leading spaces",
    b"trailing spaces  ",
    b"The cat sat on the mat.\nThe dog barked.\n\n",
    b"a\tb\tc",
    "caf\u00e9 na\u00efve \U0001f999 and \u65e5\u672c\u8a9e".encode(),
    b"invalid \xff\xfe bytes \xc3 and \xe2\x82",
    b"\x80\x80\x80\x80\x80\x80 continuation run",
    b"1234567890 + 42 = 1234567932",
    b"She said: \"Don't go!\" -- and he didn't.",
    b"zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz",
]


def load(path):
    data = open(path, "rb").read()
    (max_len,) = struct.unpack_from("<i", data, 0)
    p, tokens, scores = 4, [], []
    while p < len(data):
        score, n = struct.unpack_from("<fi", data, p)
        p += 8
        tokens.append(data[p:p + n])
        scores.append(score)
        p += n
    return tokens, scores


def encode(tokens, scores, text):
    vocab = {}
    for i, t in enumerate(tokens):
        vocab.setdefault(t, i)
    ids = []
    if text:
        ids.append(vocab[b" "])
    buf = b""
    for i, c in enumerate(text):
        if (c & 0xC0) != 0x80:
            buf = b""
        buf += bytes([c])
        nxt = text[i + 1] if i + 1 < len(text) else 0
        if (nxt & 0xC0) == 0x80 and len(buf) < 4:
            continue
        if buf in vocab:
            ids.append(vocab[buf])
        else:
            ids.extend(b + 3 for b in buf)
        buf = b""
    while True:
        best_score, best_id, best_idx = -1e10, -1, -1
        for i in range(len(ids) - 1):
            j = vocab.get(tokens[ids[i]] + tokens[ids[i + 1]], -1)
            if j != -1 and scores[j] > best_score:
                best_score, best_id, best_idx = scores[j], j, i
        if best_idx == -1:
            break
        ids[best_idx] = best_id
        del ids[best_idx + 1]
    return ids


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    tok_path = sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, "../../shared/models/stories260K/tok512.bin")
    out_dir = sys.argv[2] if len(sys.argv) > 2 else os.path.join(here, "../tests/data/tokenizer")
    tokens, scores = load(tok_path)
    with open(os.path.join(out_dir, "llama2c.inp"), "wb") as f:
        for s in STRINGS:
            f.write(s + SEP)
    with open(os.path.join(out_dir, "llama2c.out"), "w") as f:
        for s in STRINGS:
            f.write("".join(f" {i}" for i in encode(tokens, scores, s)) + "\n")
    print(f"wrote {len(STRINGS)} encodings of {tok_path} to {out_dir}/llama2c.out")


if __name__ == "__main__":
    main()
