"""gguf_to_hf.py: a GGUF model (llama.cpp) to a float32 Hugging Face folder, through transformers' own GGUF
reader (it dequantizes every tensor and undoes llama.cpp's q/k row permutation) and its tokenizer
conversion. For the quantize experiments of docs/quantize.md (SmolLM2-135M, whose GGUF is Q4_1) until
`smelt convert` reads GGUF; llmcompressor needs such a folder too.

Usage: python3 tools/gguf_to_hf.py FILE.gguf OUT_DIR
"""
import os
import sys

import torch
import transformers
from safetensors.torch import save_file


def main():
    path, out = sys.argv[1], sys.argv[2]
    d, f = os.path.dirname(os.path.abspath(path)), os.path.basename(path)
    os.makedirs(out, exist_ok=True)
    tok = transformers.AutoTokenizer.from_pretrained(d, gguf_file=f)
    model = transformers.AutoModelForCausalLM.from_pretrained(d, gguf_file=f, dtype=torch.float32)
    sd = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    if model.config.tie_word_embeddings:
        sd.pop("lm_head.weight", None)
    save_file(sd, os.path.join(out, "model.safetensors"), metadata={"format": "pt"})
    cfg = model.config
    if hasattr(cfg, "quantization_config"):
        del cfg.quantization_config  # the float weights are written, not the GGUF blocks
    cfg.save_pretrained(out)
    tok.save_pretrained(out)
    print(f"{out}: {sum(v.numel() for v in sd.values())} parameters, float32")


if __name__ == "__main__":
    main()
