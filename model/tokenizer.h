/* tokenizer.h: text <-> token ids for the models smelt trains and compresses: Hugging Face
 * byte-level BPE (tokenizer.json, vocab.json + merges.txt), tiktoken .model files (Llama 3),
 * llama2.c tokenizer.bin (score-merged pieces) and a built-in byte tokenizer (builtin:bytes).
 *
 * A loaded tokenizer is read-only: encode/decode may run from several threads at once.
 * Encoding does not add BOS/EOS: callers prepend tokenizer_bos_id() themselves when
 * tokenizer_add_bos() says the model expects it.
 * Added and special tokens written in the text ("<|eot_id|>") are recognized and never split.
 * Invalid UTF-8 is not an error: byte-level tokenizers encode the offending bytes as byte
 * tokens and llama2.c tokenizers use their <0xXX> byte-fallback pieces, so that
 * decode(encode(x)) == x holds for every byte string (llama2.c: when its vocabulary has the
 * 256 byte pieces). */
#ifndef SMELT_MODEL_TOKENIZER_H
#define SMELT_MODEL_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

typedef struct tokenizer tokenizer;

/* The formats tokenizer_load reads (tokenizer_format() reports which one was read). */
typedef enum {
    TOKENIZER_HF_JSON = 1,  /* tokenizer.json, model BPE with a ByteLevel pre-tokenizer/decoder */
    TOKENIZER_HF_VOCAB,     /* vocab.json + merges.txt (+ tokenizer_config.json) */
    TOKENIZER_TIKTOKEN,     /* tiktoken .model: "base64 rank" lines */
    TOKENIZER_LLAMA2C,      /* llama2.c tokenizer.bin */
    TOKENIZER_BUILTIN_BYTES, /* builtin:bytes */
    TOKENIZER_GGUF          /* the tokenizer.ggml.* metadata of a GGUF file (gpt2 byte-level BPE or llama SPM) */
} tokenizer_format_t;

/* Ids of builtin:bytes: bytes 0..255 are ids 0..255, then these. */
enum {
    TOKENIZER_BYTES_BOS = 256, /* <|begin_of_text|> (special) */
    TOKENIZER_BYTES_EOS = 257, /* <|end_of_text|> (special) */
    TOKENIZER_BYTES_PAD = 258, /* <|pad|> (special) */
    TOKENIZER_BYTES_YES = 259, /* " yes" (added, not special) */
    TOKENIZER_BYTES_NO = 260,  /* " no" (added, not special) */
    TOKENIZER_BYTES_VOCAB = 261,
};

/* Loads a tokenizer. spec: a path to a tokenizer.json, a vocab.json (merges.txt beside it;
 * tokenizer_config.json beside it when present), a tiktoken .model, a llama2.c .bin, a GGUF
 * file (its tokenizer.ggml.* metadata), a directory holding one of these (tokenizer.gguf,
 * tokenizer.json, vocab.json, tokenizer.model, tokenizer.bin, then model.gguf (the quantize stage's GGUF
 * output): the first found), or "builtin:bytes".
 * On failure *out is NULL and the error slot names the file and the fault. */
int tokenizer_load(tokenizer **out, const char *spec);
void tokenizer_free(tokenizer *tok);

/* Encodes len bytes of text. *ids is allocated (caller frees; non-NULL even when *n == 0). */
int tokenizer_encode(const tokenizer *tok, const char *text, size_t len, int32_t **ids, size_t *n);

/* Decodes ids into bytes, NUL-terminated (caller frees). Special tokens decode to their text,
 * except llama2.c BOS/EOS which decode to nothing (sentencepiece semantics); llama2.c strips
 * the leading space of the first piece (the dummy prefix its encoder adds). Fails on an id
 * outside the vocabulary. */
int tokenizer_decode(const tokenizer *tok, const int32_t *ids, size_t n, char **text, size_t *len);

/* The bytes one token stands for (not NUL-terminated), or NULL for an unknown id. */
const char *tokenizer_piece(const tokenizer *tok, int32_t id, size_t *len);

int32_t tokenizer_vocab_size(const tokenizer *tok); /* max id + 1, added tokens included */
/* The id of the token whose text (as decode would produce it) is the NUL-terminated piece,
 * for example " yes" or "<|eot_id|>"; -1 when absent. */
int32_t tokenizer_token_id(const tokenizer *tok, const char *piece);
int32_t tokenizer_bos_id(const tokenizer *tok); /* -1 when the tokenizer has none */
/* 1 when text for the model starts with BOS (it has one, and its files do not say otherwise:
 * GGUF tokenizer.ggml.add_bos_token, a tokenizer.json post-processor that adds no BOS). */
int tokenizer_add_bos(const tokenizer *tok);
/* The model's chat template (Jinja text from GGUF or tokenizer_config.json), or NULL. */
const char *tokenizer_chat_template(const tokenizer *tok);
int32_t tokenizer_eos_id(const tokenizer *tok);
int tokenizer_is_special(const tokenizer *tok, int32_t id); /* 1 for special tokens */
tokenizer_format_t tokenizer_format(const tokenizer *tok);
const char *tokenizer_source(const tokenizer *tok); /* the path (or spec) it was loaded from */

/* Writes dir/tokenizer.json and dir/tokenizer_config.json (directory created if needed) that
 * Hugging Face transformers loads with AutoTokenizer.from_pretrained(dir) and that encodes
 * like this tokenizer: AutoTokenizer(text) gives exactly the BOS (when tokenizer_add_bos()) then
 * tokenizer_encode(text), through a TemplateProcessing post-processor and add_bos_token (and
 * without BOS a ByteLevel post-processor that adds none, which smelt's loader reads back as "no
 * BOS"); encode(text, add_special_tokens=False) gives tokenizer_encode(text). Keys of a
 * tokenizer_config.json already in dir that smelt does not write (chat_template,
 * model_max_length, ...) are kept. Supported for every byte-level format; llama2.c tokenizers
 * fail with ERR_INPUT. The output is deterministic (same tokenizer and dir, same bytes). */
int tokenizer_save_hf(const tokenizer *tok, const char *dir);

/* GGUF: the tokenizer.ggml.* keys (model gpt2 with its pre-tokenizer name, or llama for
 * SentencePiece; tokens, token types, merges or scores, BOS/EOS, add_bos_token, chat template)
 * into a writer (model/gguf_write.h), or a vocabulary-only .gguf file that tokenizer_load reads
 * back to the same tokenizer. ERR_INPUT for a byte-level tokenizer whose pre-tokenizer GGUF
 * cannot name. */
struct gguf_writer;
int tokenizer_to_gguf(const tokenizer *tok, struct gguf_writer *w);
/* The tokenizer of a GGUF file already open (model/gguf.h); tokenizer_load does this for paths. */
struct gguf_file_s;
int tokenizer_load_gguf_file(tokenizer **out, const struct gguf_file_s *f);
int tokenizer_save_gguf(const tokenizer *tok, const char *path);

#endif
