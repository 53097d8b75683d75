/* fuzz_serve_request.c: smelt serve's request parsing under arbitrary bodies: the first byte picks
 * the endpoint (completions or chat) and the chat template, the rest is the body. Parsing must
 * return 0 or a 4xx/5xx error with a message, never crash, leak or read out of bounds; a parsed
 * request and any error render as valid UTF-8 JSON that cJSON reads back. */
#include <cjson/cJSON.h>
#include <stdint.h>
#include <string.h>

#include "serve/request.h"

/* 1 when s[0..n) is valid UTF-8 (an independent check of sb_json_utf8's replacement). */
static int valid_utf8(const unsigned char *s, size_t n) {
    for (size_t i = 0; i < n;) {
        unsigned c = s[i], len = c < 0x80 ? 1 : (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : (c & 0xF8) == 0xF0 ? 4 : 0;
        if (!len || i + len > n || (len == 2 && c < 0xC2) || (len == 4 && c > 0xF4)) return 0;
        unsigned cp = len == 1 ? c : c & (0x7F >> len);
        for (unsigned k = 1; k < len; k++) {
            if ((s[i + k] & 0xC0) != 0x80) return 0;
            cp = cp << 6 | (s[i + k] & 0x3F);
        }
        if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10FFFF)) || (cp >= 0xD800 && cp < 0xE000))
            return 0;
        i += len;
    }
    return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    const int chat = data[0] & 1, which = (data[0] >> 1) % 4;
    /* ChatML with and without a default system message, Llama 3 with BOS, or no template */
    chat_template t = {.family = which == 2 ? CHAT_LLAMA3 : CHAT_CHATML, .bos = which == 2,
                       .default_system = which == 1 ? "You are a helpful AI assistant." : NULL};
    serve_request r;
    serve_error e;
    strbuf sb = STRBUF_INIT;
    if (serve_request_parse(&r, (const char *)data + 1, size - 1, chat, which == 3 ? NULL : &t, "<|begin_of_text|>", &e) == 0) {
        if (r.prompt_text) (void)utf8_complete_len(r.prompt_text, strlen(r.prompt_text));
        if (r.prompt_text && sb_json_utf8(&sb, r.prompt_text, strlen(r.prompt_text)) == 0) {
            if (!valid_utf8((const unsigned char *)sb_str(&sb), sb.len)) __builtin_trap();
            cJSON *j = cJSON_Parse(sb_str(&sb));
            if (!j) __builtin_trap(); /* the JSON string of any text must parse */
            cJSON_Delete(j);
        }
        serve_request_free(&r);
    } else {
        if (e.status < 400 || e.status > 599 || !e.message[0]) __builtin_trap();
        if (serve_error_json(&sb, &e) == 0) {
            cJSON *j = cJSON_Parse(sb_str(&sb));
            if (!j) __builtin_trap();
            cJSON_Delete(j);
        }
    }
    sb_free(&sb);
    return 0;
}
