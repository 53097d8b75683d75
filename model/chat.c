/* chat.c: the chat templates of chat.h, written out as the Jinja templates of SmolLM2/Qwen2
 * (ChatML) and Llama 3 render them with add_generation_prompt. */
#include "model/chat.h"

#include <string.h>

#include "common/error.h"
#include "common/strbuf.h"

chat_format chat_format_detect(const tokenizer *tok, const char *template_text) {
    if (template_text && strstr(template_text, "<|im_start|>")) return CHAT_CHATML;
    if (template_text && strstr(template_text, "<|start_header_id|>")) return CHAT_LLAMA3;
    if (tok && tokenizer_token_id(tok, "<|im_start|>") >= 0) return CHAT_CHATML;
    if (tok && tokenizer_token_id(tok, "<|start_header_id|>") >= 0) return CHAT_LLAMA3;
    return CHAT_PLAIN;
}

int chat_format_parse(const char *name) {
    if (!strcmp(name, "chatml")) return CHAT_CHATML;
    if (!strcmp(name, "llama3")) return CHAT_LLAMA3;
    if (!strcmp(name, "plain")) return CHAT_PLAIN;
    return -1;
}

const char *chat_format_name(chat_format f) {
    return f == CHAT_CHATML ? "chatml" : f == CHAT_LLAMA3 ? "llama3" : "plain";
}

const char *chat_end_token(chat_format f) {
    return f == CHAT_CHATML ? "<|im_end|>" : f == CHAT_LLAMA3 ? "<|eot_id|>" : NULL;
}

int chat_render(chat_format f, const chat_message *msgs, int n, char **out) {
    strbuf sb = STRBUF_INIT;
    int rc = 0;
    if (f == CHAT_LLAMA3) rc = sb_puts(&sb, "<|begin_of_text|>");
    for (int i = 0; i < n && !rc; i++) {
        const char *r = msgs[i].role, *c = msgs[i].content;
        if (f == CHAT_CHATML) rc = sb_printf(&sb, "<|im_start|>%s\n%s<|im_end|>\n", r, c);
        else if (f == CHAT_LLAMA3) rc = sb_printf(&sb, "<|start_header_id|>%s<|end_header_id|>\n\n%s<|eot_id|>", r, c);
        else rc = sb_printf(&sb, "%s: %s\n", r, c);
    }
    if (!rc) {
        if (f == CHAT_CHATML) rc = sb_puts(&sb, "<|im_start|>assistant\n");
        else if (f == CHAT_LLAMA3) rc = sb_puts(&sb, "<|start_header_id|>assistant<|end_header_id|>\n\n");
        else rc = sb_puts(&sb, "assistant:");
    }
    if (rc) {
        sb_free(&sb);
        return err_set(ERR_NOMEM, "rendering a chat prompt");
    }
    *out = sb_detach(&sb);
    return 0;
}
