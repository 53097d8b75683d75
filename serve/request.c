/* request.c: parsing and checking OpenAI request bodies (see request.h). The accepted fields are
 * the ones smelt implements; fields OpenAI defines but smelt does not support are refused only
 * when they ask for something else than the default (n > 1, penalties). */
#include "serve/request.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"

int serve_error_set(serve_error *e, int status, const char *type, const char *param, const char *code,
                    const char *fmt, ...) {
    memset(e, 0, sizeof *e);
    e->status = status;
    snprintf(e->type, sizeof e->type, "%s", type);
    snprintf(e->param, sizeof e->param, "%s", param ? param : "");
    snprintf(e->code, sizeof e->code, "%s", code ? code : "");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->message, sizeof e->message, fmt, ap);
    va_end(ap);
    return -1;
}

#define BAD(param, ...) serve_error_set(err, 400, "invalid_request_error", param, NULL, __VA_ARGS__)

size_t utf8_complete_len(const char *s, size_t n) {
    /* look back at most 3 bytes for the start of a sequence that is not complete */
    for (size_t back = 1; back <= 4 && back <= n; back++) {
        unsigned char c = (unsigned char)s[n - back];
        if ((c & 0xC0) == 0x80) continue; /* a continuation byte */
        size_t need = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 1;
        return need > back ? n - back : n;
    }
    return n;
}

/* Length of a valid UTF-8 sequence at s (of at most n bytes), or 0 when invalid. */
static size_t utf8_seq(const unsigned char *s, size_t n) {
    if (s[0] < 0x80) return 1;
    size_t len = s[0] >= 0xF0 && s[0] <= 0xF4 ? 4 : s[0] >= 0xE0 && s[0] < 0xF0 ? 3 : s[0] >= 0xC2 && s[0] < 0xE0 ? 2 : 0;
    if (!len || len > n) return 0;
    for (size_t i = 1; i < len; i++)
        if ((s[i] & 0xC0) != 0x80) return 0;
    if (len == 3 && ((s[0] == 0xE0 && s[1] < 0xA0) || (s[0] == 0xED && s[1] >= 0xA0))) return 0; /* overlong, surrogate */
    if (len == 4 && ((s[0] == 0xF0 && s[1] < 0x90) || (s[0] == 0xF4 && s[1] >= 0x90))) return 0;
    return len;
}

int sb_json_utf8(strbuf *sb, const char *s, size_t n) {
    const unsigned char *u = (const unsigned char *)s;
    if (sb_putc(sb, '"')) return -1;
    for (size_t i = 0; i < n;) {
        size_t l = utf8_seq(u + i, n - i);
        int rc;
        if (!l) rc = sb_puts(sb, "\xEF\xBF\xBD"), l = 1;
        else if (l > 1) rc = sb_append(sb, s + i, l);
        else if (u[i] == '"' || u[i] == '\\') rc = sb_putc(sb, '\\') || sb_putc(sb, (char)u[i]);
        else if (u[i] == '\n') rc = sb_puts(sb, "\\n");
        else if (u[i] < 0x20 || u[i] == 0x7F) rc = sb_printf(sb, "\\u%04x", u[i]);
        else rc = sb_putc(sb, (char)u[i]);
        if (rc) return -1;
        i += l;
    }
    return sb_putc(sb, '"');
}

int serve_error_json(strbuf *sb, const serve_error *e) {
    return sb_puts(sb, "{\"error\": {\"message\": ") || sb_json_utf8(sb, e->message, strlen(e->message)) ||
           sb_puts(sb, ", \"type\": ") || sb_json_string(sb, e->type) || sb_puts(sb, ", \"param\": ") ||
           (e->param[0] ? sb_json_string(sb, e->param) : sb_puts(sb, "null")) || sb_puts(sb, ", \"code\": ") ||
           (e->code[0] ? sb_json_string(sb, e->code) : sb_puts(sb, "null")) || sb_puts(sb, "}}\n");
}

void serve_request_free(serve_request *r) {
    free(r->model);
    free(r->prompt_ids);
    free(r->prompt_text);
    for (int i = 0; i < r->n_stop; i++) free(r->stop[i]);
    memset(r, 0, sizeof *r);
}

static const char *const completion_fields[] = {"model", "prompt", "max_tokens", "temperature", "top_p", "stream",
                                                "stream_options", "echo", "logprobs", "stop", "seed", "n", "user",
                                                "ignore_eos", "presence_penalty", "frequency_penalty", NULL};
static const char *const chat_fields[] = {"model", "messages", "max_tokens", "max_completion_tokens", "temperature",
                                          "top_p", "stream", "stream_options", "logprobs", "top_logprobs", "stop",
                                          "seed", "n", "user", "ignore_eos", "presence_penalty", "frequency_penalty",
                                          NULL};

static int known(const char *const *list, const char *k) {
    for (int i = 0; list[i]; i++)
        if (!strcmp(list[i], k)) return 1;
    return 0;
}

/* An integer field in [lo, hi]; absent or null leaves *out. */
static int get_int(const cJSON *j, const char *k, long lo, long hi, long *out, serve_error *err) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, k);
    if (!v || cJSON_IsNull(v)) return 0;
    if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble) || v->valuedouble < lo || v->valuedouble > hi)
        return BAD(k, "'%s' must be an integer from %ld to %ld", k, lo, hi);
    *out = (long)v->valuedouble;
    return 0;
}

static int get_num(const cJSON *j, const char *k, double lo, double hi, double *out, serve_error *err) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, k);
    if (!v || cJSON_IsNull(v)) return 0;
    if (!cJSON_IsNumber(v) || !(v->valuedouble >= lo && v->valuedouble <= hi))
        return BAD(k, "'%s' must be a number from %g to %g", k, lo, hi);
    *out = v->valuedouble;
    return 0;
}

static int get_bool(const cJSON *j, const char *k, int *out, serve_error *err) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, k);
    if (!v || cJSON_IsNull(v)) return 0;
    if (!cJSON_IsBool(v)) return BAD(k, "'%s' must be true or false", k);
    *out = cJSON_IsTrue(v);
    return 0;
}

static int parse_prompt(serve_request *r, const cJSON *p, serve_error *err) {
    if (cJSON_IsString(p)) {
        r->prompt_text = strdup(p->valuestring);
        return r->prompt_text ? 0 : serve_error_set(err, 500, "server_error", NULL, NULL, "out of memory");
    }
    if (cJSON_IsArray(p) && cJSON_GetArraySize(p) == 1 && cJSON_IsString(cJSON_GetArrayItem(p, 0)))
        return parse_prompt(r, cJSON_GetArrayItem(p, 0), err);
    int n = cJSON_IsArray(p) ? cJSON_GetArraySize(p) : 0;
    if (n < 1) return BAD("prompt", "'prompt' must be a non-empty string or a non-empty array of token ids");
    if (n > 1 << 20) return BAD("prompt", "'prompt' has more than 2^20 tokens");
    r->prompt_ids = malloc(sizeof(int) * (size_t)n);
    if (!r->prompt_ids) return serve_error_set(err, 500, "server_error", NULL, NULL, "out of memory");
    int i = 0;
    for (const cJSON *t = p->child; t; t = t->next, i++) {
        if (!cJSON_IsNumber(t) || t->valuedouble != floor(t->valuedouble) || t->valuedouble < 0 || t->valuedouble > 1e9)
            return BAD("prompt", "'prompt' token %d is not a token id (a non-negative integer); batches of prompts are "
                       "not supported", i);
        r->prompt_ids[i] = (int)t->valuedouble;
    }
    r->n_prompt_ids = n;
    return 0;
}

static int parse_messages(serve_request *r, const cJSON *m, const chat_template *tmpl, const char *bos_text,
                          serve_error *err) {
    if (!tmpl)
        return serve_error_set(err, 400, "invalid_request_error", "messages", NULL,
                               "this model has no chat template (none in its tokenizer files or GGUF metadata); use "
                               "/v1/completions, or start smelt serve with --chat-template chatml|llama3");
    int n = cJSON_IsArray(m) ? cJSON_GetArraySize(m) : 0;
    if (n < 1) return BAD("messages", "'messages' must be a non-empty array of {role, content}");
    chat_message *msgs = calloc((size_t)n, sizeof *msgs);
    if (!msgs) return serve_error_set(err, 500, "server_error", NULL, NULL, "out of memory");
    int i = 0, rc = 0;
    for (const cJSON *e = m->child; e && !rc; e = e->next, i++) {
        const cJSON *role = cJSON_GetObjectItemCaseSensitive(e, "role"), *c = cJSON_GetObjectItemCaseSensitive(e, "content");
        if (!cJSON_IsObject(e) || !cJSON_IsString(role) || !cJSON_IsString(c)) {
            rc = BAD("messages", "message %d needs a string 'role' and a string 'content'", i);
            break;
        }
        for (const cJSON *f = e->child; f && !rc; f = f->next)
            if (strcmp(f->string, "role") && strcmp(f->string, "content") && strcmp(f->string, "name"))
                rc = BAD("messages", "message %d: unknown field '%.100s'", i, f->string);
        if (!rc && strcmp(role->valuestring, "system") && strcmp(role->valuestring, "user") &&
            strcmp(role->valuestring, "assistant"))
            rc = BAD("messages", "message %d: role '%.60s' is not system, user or assistant", i, role->valuestring);
        msgs[i] = (chat_message){role->valuestring, c->valuestring};
    }
    strbuf sb = STRBUF_INIT;
    if (!rc && chat_render(&sb, tmpl, msgs, n, 1, bos_text))
        rc = serve_error_set(err, 500, "server_error", NULL, NULL, "out of memory");
    if (!rc) r->prompt_text = sb_detach(&sb);
    sb_free(&sb);
    free(msgs);
    return rc;
}

static int parse_stop(serve_request *r, const cJSON *s, serve_error *err) {
    if (!s || cJSON_IsNull(s)) return 0;
    const cJSON *one = cJSON_IsString(s) ? s : NULL;
    int n = one ? 1 : cJSON_IsArray(s) ? cJSON_GetArraySize(s) : -1;
    if (n < 0 || n > SERVE_MAX_STOP) return BAD("stop", "'stop' must be a string or up to %d strings", SERVE_MAX_STOP);
    for (int i = 0; i < n; i++) {
        const cJSON *v = one ? one : cJSON_GetArrayItem(s, i);
        if (!cJSON_IsString(v) || !v->valuestring[0] || strlen(v->valuestring) > 256)
            return BAD("stop", "stop sequence %d must be a non-empty string of at most 256 bytes", i);
        if (!(r->stop[r->n_stop++] = strdup(v->valuestring)))
            return serve_error_set(err, 500, "server_error", NULL, NULL, "out of memory");
    }
    return 0;
}

static int parse_fields(serve_request *r, const cJSON *j, int chat, const chat_template *tmpl, const char *bos_text,
                        serve_error *err) {
    for (const cJSON *f = j->child; f; f = f->next)
        if (!known(chat ? chat_fields : completion_fields, f->string))
            return BAD(f->string, "unknown field '%.100s' (see docs/serve.md for the fields smelt accepts)", f->string);
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(j, "model");
    if (model && !cJSON_IsNull(model)) {
        if (!cJSON_IsString(model)) return BAD("model", "'model' must be a string");
        if (!(r->model = strdup(model->valuestring))) return serve_error_set(err, 500, "server_error", NULL, NULL, "out of memory");
    }
    long max_tokens = 0, n = 1, seed = 1234, lp = -1;
    double pp = 0, fp = 0;
    r->temperature = 1, r->top_p = 1;
    if (get_int(j, "max_tokens", 1, 1 << 24, &max_tokens, err) ||
        (chat && get_int(j, "max_completion_tokens", 1, 1 << 24, &max_tokens, err)) ||
        get_num(j, "temperature", 0, 2, &r->temperature, err) || get_num(j, "top_p", 1e-9, 1, &r->top_p, err) ||
        get_int(j, "n", 1, 1, &n, err) || get_int(j, "seed", -(1L << 53), 1L << 53, &seed, err) ||
        get_num(j, "presence_penalty", 0, 0, &pp, err) || get_num(j, "frequency_penalty", 0, 0, &fp, err) ||
        get_bool(j, "stream", &r->stream, err) || get_bool(j, "ignore_eos", &r->ignore_eos, err) ||
        parse_stop(r, cJSON_GetObjectItemCaseSensitive(j, "stop"), err))
        return -1;
    const cJSON *user = cJSON_GetObjectItemCaseSensitive(j, "user");
    if (user && !cJSON_IsString(user) && !cJSON_IsNull(user)) return BAD("user", "'user' must be a string");
    r->max_tokens = (int)max_tokens;
    r->seed = (uint64_t)seed;
    const cJSON *so = cJSON_GetObjectItemCaseSensitive(j, "stream_options");
    if (so && !cJSON_IsNull(so)) {
        if (!cJSON_IsObject(so) || (so->child && (strcmp(so->child->string, "include_usage") || so->child->next)))
            return BAD("stream_options", "'stream_options' may only hold include_usage");
        if (get_bool(so, "include_usage", &r->include_usage, err)) return -1;
    }
    if (chat) {
        int want = 0;
        if (get_bool(j, "logprobs", &want, err) || get_int(j, "top_logprobs", 0, SERVE_MAX_LOGPROBS, &lp, err)) return -1;
        if (lp >= 0 && !want) return BAD("top_logprobs", "'top_logprobs' needs 'logprobs': true");
        r->logprobs = want ? (lp < 0 ? 0 : (int)lp) : -1;
        return parse_messages(r, cJSON_GetObjectItemCaseSensitive(j, "messages"), tmpl, bos_text, err);
    }
    if (get_int(j, "logprobs", 0, SERVE_MAX_LOGPROBS, &lp, err) || get_bool(j, "echo", &r->echo, err)) return -1;
    r->logprobs = (int)lp;
    const cJSON *p = cJSON_GetObjectItemCaseSensitive(j, "prompt");
    if (!p) return BAD("prompt", "'prompt' is required");
    return parse_prompt(r, p, err);
}

int serve_request_parse(serve_request *r, const char *body, size_t len, int chat, const chat_template *tmpl,
                        const char *bos_text, serve_error *err) {
    memset(r, 0, sizeof *r);
    r->chat = chat;
    r->logprobs = -1;
    const char *end = NULL;
    cJSON *j = cJSON_ParseWithLengthOpts(body, len, &end, 0);
    if (!j) return BAD(NULL, "the body is not valid JSON (near byte %ld)", end ? (long)(end - body) : 0L);
    int rc = cJSON_IsObject(j) ? parse_fields(r, j, chat, tmpl, bos_text, err) : BAD(NULL, "the body must be a JSON object");
    cJSON_Delete(j);
    if (rc) serve_request_free(r);
    return rc;
}
