/* chat.c: recognition of ChatML and Llama 3 chat templates and their rendering (see chat.h).
 * The default system message of a ChatML template is the text of its first
 * "<|im_start|>system\n...<|im_end|>" literal (SmolLM2's, Qwen2.5's), or of
 * "{% set system_message = '...' %}" (Qwen2's); "\n" written as an escape in the Jinja string
 * is a newline. A template that only uses the system message a conversation gives has none. */
#include "model/chat.h"

#include <stdlib.h>
#include <string.h>

#include "common/error.h"

/* The Jinja string literal starting at s (just after its opening quote q), unescaped, up to
 * `stop` (NULL: the closing quote). NULL when it does not end. */
static char *jinja_literal(const char *s, char q, const char *stop) {
    strbuf sb = STRBUF_INIT;
    for (const char *p = s; *p; p++) {
        if (stop && !strncmp(p, stop, strlen(stop))) return sb_detach(&sb);
        if (*p == q && !stop) return sb_detach(&sb);
        if (*p == q) break; /* the literal closed before `stop` */
        if (*p == '\\' && p[1]) {
            p++;
            char c = *p == 'n' ? '\n' : *p == 't' ? '\t' : *p;
            if (sb_putc(&sb, c)) break;
            continue;
        }
        if (sb_putc(&sb, *p)) break;
    }
    sb_free(&sb);
    return NULL;
}

/* The default system message of a ChatML template, or NULL. */
static char *chatml_default_system(const char *j) {
    const char *p = strstr(j, "set system_message = ");
    if (p) {
        p += strlen("set system_message = ");
        if (*p == '\'' || *p == '"') return jinja_literal(p + 1, *p, NULL);
    }
    /* '<|im_start|>system\n' + literal text + '<|im_end|>' inside one string literal */
    for (p = strstr(j, "<|im_start|>system"); p; p = strstr(p + 1, "<|im_start|>system")) {
        const char *q = p + strlen("<|im_start|>system");
        if (*q == '\n') q++;
        else if (q[0] == '\\' && q[1] == 'n') q += 2;
        else continue;
        /* the quote that opened this literal: the nearest ' or " before p */
        const char *open = p;
        while (open > j && open[-1] != '\'' && open[-1] != '"') open--;
        if (open == j) continue;
        char *text = jinja_literal(q, open[-1], "<|im_end|>");
        if (text) return text;
    }
    return NULL;
}

int chat_template_parse(chat_template *t, const char *jinja) {
    memset(t, 0, sizeof *t);
    if (!jinja || !*jinja)
        return err_set(ERR_INPUT, "the model has no chat template (no tokenizer.chat_template in the GGUF file, no "
                       "chat_template in tokenizer_config.json)");
    if (strstr(jinja, "<|im_start|>") && strstr(jinja, "<|im_end|>")) {
        t->family = CHAT_CHATML;
        t->default_system = chatml_default_system(jinja);
        return 0;
    }
    if (strstr(jinja, "<|start_header_id|>") && strstr(jinja, "<|eot_id|>")) {
        if (strstr(jinja, "Cutting Knowledge Date") || strstr(jinja, "tools"))
            return err_set(ERR_INPUT, "this is a Llama 3.1+ chat template (dates and tools in the system message), which "
                           "smelt does not reproduce; it renders ChatML and Llama 3 templates");
        t->family = CHAT_LLAMA3;
        t->bos = strstr(jinja, "bos_token") != NULL;
        return 0;
    }
    return err_set(ERR_INPUT, "the model's chat template is neither ChatML (<|im_start|>...<|im_end|>) nor Llama 3 "
                   "(<|start_header_id|>...<|eot_id|>), the two families smelt renders");
}

void chat_template_free(chat_template *t) {
    free(t->default_system);
    memset(t, 0, sizeof *t);
}

static int is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'; }

/* Jinja's trim: leading and trailing whitespace removed. */
static int put_trimmed(strbuf *out, const char *s) {
    size_t n = strlen(s), a = 0;
    while (a < n && is_space(s[a])) a++;
    while (n > a && is_space(s[n - 1])) n--;
    return sb_append(out, s + a, n - a);
}

int chat_render(strbuf *out, const chat_template *t, const chat_message *m, int n, int add_generation_prompt,
                const char *bos_text) {
    int rc = 0;
    if (t->family == CHAT_CHATML) {
        if (t->default_system && (n == 0 || strcmp(m[0].role, "system")))
            rc |= sb_puts(out, "<|im_start|>system\n") || sb_puts(out, t->default_system) || sb_puts(out, "<|im_end|>\n");
        for (int i = 0; i < n && !rc; i++)
            rc |= sb_puts(out, "<|im_start|>") || sb_puts(out, m[i].role) || sb_putc(out, '\n') ||
                  sb_puts(out, m[i].content) || sb_puts(out, "<|im_end|>\n");
        if (add_generation_prompt) rc |= sb_puts(out, "<|im_start|>assistant\n");
    } else {
        if (t->bos && n > 0 && bos_text) rc |= sb_puts(out, bos_text);
        for (int i = 0; i < n && !rc; i++)
            rc |= sb_puts(out, "<|start_header_id|>") || sb_puts(out, m[i].role) || sb_puts(out, "<|end_header_id|>\n\n") ||
                  put_trimmed(out, m[i].content) || sb_puts(out, "<|eot_id|>");
        if (add_generation_prompt) rc |= sb_puts(out, "<|start_header_id|>assistant<|end_header_id|>\n\n");
    }
    return rc ? -1 : 0;
}
