/* chat.h: chat templates. smelt does not run Jinja: it recognizes the two template families
 * most models use and renders them itself, byte for byte what transformers' apply_chat_template
 * renders for conversations that end with a user message (with the generation prompt) or with
 * an assistant message (without it):
 * - ChatML (SmolLM2, Qwen2, ...): "<|im_start|>ROLE\nCONTENT<|im_end|>\n" per message, the
 *   generation prompt "<|im_start|>assistant\n", and the template's default system message
 *   (its text is read from the template) when the conversation does not start with one;
 * - Llama 3: BOS (when the template writes bos_token), then
 *   "<|start_header_id|>ROLE<|end_header_id|>\n\nCONTENT<|eot_id|>" with CONTENT trimmed, and
 *   the generation prompt "<|start_header_id|>assistant<|end_header_id|>\n\n".
 * Any other template is refused with a message that names the two families. */
#ifndef SMELT_MODEL_CHAT_H
#define SMELT_MODEL_CHAT_H

#include "common/strbuf.h"

typedef enum { CHAT_CHATML = 1, CHAT_LLAMA3 } chat_family;

typedef struct chat_template {
    chat_family family;
    char *default_system; /* ChatML: the system message used when none is given, or NULL */
    int bos;              /* Llama 3: the template starts with bos_token */
} chat_template;

typedef struct {
    const char *role;    /* "system", "user", "assistant" */
    const char *content;
} chat_message;

/* Recognizes a Jinja template (NULL: the model has none). 0, or -1 with ERR_INPUT. */
int chat_template_parse(chat_template *t, const char *jinja);
void chat_template_free(chat_template *t);

/* Appends the rendered conversation to out; bos_text is the tokenizer's BOS text (Llama 3). */
int chat_render(strbuf *out, const chat_template *t, const chat_message *m, int n, int add_generation_prompt,
                const char *bos_text);

#endif
