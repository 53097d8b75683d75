/* commands.h: the subcommands, one file each in cmd/, and their rows of the command table.
 * Adding a command: declare its function here and add one row to COMMANDS_TABLE. */
#ifndef SMELT_COMMANDS_H
#define SMELT_COMMANDS_H

#include "cmd/cli.h"

int cmd_convert(int argc, char **argv);
int cmd_generate(int argc, char **argv);
int cmd_inspect(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);

#define COMMANDS_TABLE \
    {"convert", cmd_convert, "convert a checkpoint (llama2.c .bin, HF safetensors) to a Hugging Face folder", \
     "usage: smelt convert IN OUT [--dtype bf16|fp32|fp16]\n\n" \
     "Loads IN (a Hugging Face folder, a .safetensors file or model.safetensors.index.json with\n" \
     "config.json beside it, or a llama2.c .bin) and writes OUT/config.json,\n" \
     "OUT/generation_config.json and OUT/model.safetensors, which transformers, vLLM and SGLang\n" \
     "load. llama2.c q/k weights are permuted to Hugging Face's RoPE layout. Tokenizer files of an\n" \
     "HF folder are copied as they are; a llama2.c tokenizer.bin is not converted.\n\n" \
     "  --dtype D   bf16 (round to nearest even), fp32 or fp16; default: the source's float dtype\n" \
     "              (fp32 for llama2.c and mixed sources)\n\n" \
     "Exit status: 0 ok, 1 I/O failure, 2 bad usage or a bad/damaged checkpoint.\n", 0}, \
    {"generate", cmd_generate, "generate text with a model (CPU engine, KV cache)", \
     "usage: smelt generate MODEL [--tokenizer FILE] [--prompt TEXT] [--max-tokens N]\n" \
     "                      [--temperature T] [--top-p P] [--seed S] [--threads N]\n\n" \
     "Loads MODEL (a Hugging Face folder, a .safetensors file with config.json beside it, or a\n" \
     "llama2.c .bin), encodes the prompt after BOS (without --prompt it starts from BOS alone) and\n" \
     "prints the prompt and the generated text on stdout as it is produced; it stops at EOS (for\n" \
     "llama2.c models also at BOS, which starts the next document) or after N new tokens.\n" \
     "Statistics (prompt time, tokens/s) go to stderr.\n\n" \
     "  --tokenizer FILE  tokenizer.json, vocab.json, tiktoken .model, llama2.c tokenizer.bin, or a\n" \
     "                    folder holding one; default: MODEL when it is a folder\n" \
     "  --prompt TEXT     text to continue\n" \
     "  --max-tokens N    new tokens at most (default 256; capped by max_position_embeddings)\n" \
     "  --temperature T   0 is greedy (argmax); default 1.0\n" \
     "  --top-p P         nucleus sampling in (0, 1]; default 1.0 (the whole distribution)\n" \
     "  --seed S          RNG seed of the sampler (default 1234: runs are reproducible)\n" \
     "  --threads N       CPU threads (default: the cores this process may use)\n\n" \
     "Example:\n" \
     "  smelt generate ../shared/models/stories260K/stories260K.bin \\\n" \
     "      --tokenizer ../shared/models/stories260K/tok512.bin --temperature 0\n\n" \
     "Exit status: 0 ok, 1 failure, 2 bad usage, a bad model or tokenizer.\n", 0}, \
    {"inspect", cmd_inspect, "show a checkpoint's architecture, sizes, dtypes and files", \
     "usage: smelt inspect MODEL [--json]\n\n" \
     "MODEL: a Hugging Face folder, a .safetensors file or model.safetensors.index.json (with\n" \
     "config.json beside it), or a llama2.c .bin. Prints the architecture, per-layer sizes, the\n" \
     "parameter count, the dtypes and files on disk, and whether every tensor has the shape the\n" \
     "config implies (\"check\"; nothing is loaded into memory).\n\n" \
     "  --json      one JSON object on stdout\n\n" \
     "Exit status: 0 ok (even when check reports a mismatch), 2 bad usage or an unreadable or\n" \
     "damaged checkpoint.\n", 0}, \
    {"tokenize", cmd_tokenize, "encode text to token ids or decode ids to text", \
     "usage: smelt tokenize --tokenizer SPEC [--json] [TEXT... | -]\n" \
     "       smelt tokenize --tokenizer SPEC --decode [ID...]\n" \
     "       smelt tokenize --tokenizer SPEC [--info] [--save-hf DIR]\n\n" \
     "Encodes TEXT (the arguments joined by one space; standard input when none or '-') and prints\n" \
     "the ids separated by spaces. No BOS is added; special tokens written in the text are kept whole.\n\n" \
     "  -t, --tokenizer SPEC  a tokenizer.json, vocab.json (merges.txt beside it), tiktoken .model,\n" \
     "                        llama2.c tokenizer.bin, a directory holding one, or builtin:bytes\n" \
     "  -d, --decode          decode the ids given as arguments (or on standard input) and print the text\n" \
     "  --json                print {\"ids\": [...]} instead of plain ids\n" \
     "  --info                print the format, vocabulary size and BOS/EOS ids\n" \
     "  --save-hf DIR         write DIR/tokenizer.json and DIR/tokenizer_config.json for Hugging Face\n\n" \
     "Examples:\n" \
     "  smelt tokenize --tokenizer ../shared/tokenizers/llama3/tokenizer.model 'This is a test sentence.'\n" \
     "  smelt tokenize --tokenizer builtin:bytes --decode 72 105 259\n\n" \
     "Exit status: 0 ok, 1 failure, 2 bad usage, bad input or a damaged tokenizer file.\n", 0},

#endif
