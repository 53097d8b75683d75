/* chat.h: chat templates: a list of messages to the prompt text a chat model was trained on, and
 * the token that ends an assistant turn. ChatML (<|im_start|>role\n...<|im_end|>\n: SmolLM2, Qwen2),
 * Llama 3 (<|start_header_id|>role<|end_header_id|>\n\n...<|eot_id|>) and a plain "role: text"
 * fallback for models without chat tokens. A template given in a model's metadata (GGUF, HF
 * tokenizer_config.json) maps onto one of these by its markers (chat_format_detect). */
#ifndef SMELT_MODEL_CHAT_H
#define SMELT_MODEL_CHAT_H

#include <stddef.h>

#include "model/tokenizer.h"

typedef enum { CHAT_PLAIN = 0, CHAT_CHATML = 1, CHAT_LLAMA3 = 2 } chat_format;

typedef struct {
    const char *role;    /* system, user, assistant (other roles are written as given) */
    const char *content;
} chat_message;

/* The format a tokenizer's special tokens imply (ChatML when it has <|im_start|>, Llama 3 when it
 * has <|start_header_id|>, else plain); tok may be NULL. */
chat_format chat_format_detect(const tokenizer *tok, const char *template_text);
/* "chatml", "llama3", "plain" -> format; -1 for an unknown name. */
int chat_format_parse(const char *name);
const char *chat_format_name(chat_format f);
/* The prompt for messages[0..n), ending with the opening of the assistant's turn (caller frees).
 * 0 or -1 (ERR_NOMEM). */
int chat_render(chat_format f, const chat_message *msgs, int n, char **out);
/* The text of the token that ends an assistant turn ("<|im_end|>", "<|eot_id|>"), or NULL. */
const char *chat_end_token(chat_format f);

#endif
