/* commands.h: the subcommands, one file each in cmd/, and their rows of the command table.
 * Adding a command: declare its function here and add one row to COMMANDS_TABLE. */
#ifndef SMELT_COMMANDS_H
#define SMELT_COMMANDS_H

#include "cmd/cli.h"

int cmd_tokenize(int argc, char **argv);

#define COMMANDS_TABLE \
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
