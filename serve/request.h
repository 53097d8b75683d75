/* request.h: the JSON bodies of OpenAI's /v1/completions and /v1/chat/completions, parsed and
 * checked before anything reaches the engine. Unknown fields, wrong types, out-of-range values and
 * unsupported options are errors with the HTTP status, the offending field and an OpenAI-style
 * error type, so that a client sees what to fix. Pure functions (no server state): the fuzz target
 * tests/fuzz/fuzz_serve_request.c calls them on arbitrary bytes. */
#ifndef SMELT_SERVE_REQUEST_H
#define SMELT_SERVE_REQUEST_H

#include <stddef.h>
#include <stdint.h>

#include "common/strbuf.h"
#include "model/chat.h"

#define SERVE_MAX_STOP 4
#define SERVE_MAX_LOGPROBS 20

typedef struct {
    int status;        /* 400, 404, 413, ... */
    char type[40];     /* invalid_request_error, not_found_error, ... */
    char param[40];    /* the field at fault ("" when none) */
    char code[40];     /* context_length_exceeded, ... ("" when none) */
    char message[400];
} serve_error;

typedef struct {
    int chat;                 /* 1: /v1/chat/completions */
    char *model;              /* the model asked for (NULL: any) */
    int *prompt_ids;          /* a prompt given as token ids [n_prompt_ids] (completions) */
    int n_prompt_ids;
    char *prompt_text;        /* a text prompt, or the chat messages rendered by the template */
    int max_tokens;           /* new tokens at most (0: the server's limit) */
    double temperature, top_p;
    uint64_t seed;
    int stream, include_usage, echo, ignore_eos;
    int logprobs;             /* -1: none; else how many top alternatives per token (0..20) */
    char *stop[SERVE_MAX_STOP];
    int n_stop;
} serve_request;

/* Parses body (len bytes, not necessarily NUL-terminated) for the endpoint (chat or not). Chat
 * messages are rendered with the model's template tmpl (bos_text: the tokenizer's BOS text, for
 * Llama 3 templates; may be NULL); a chat request to a model without a template (tmpl NULL) is a
 * 400. 0, or -1 with *err filled (nothing allocated then). */
int serve_request_parse(serve_request *r, const char *body, size_t len, int chat, const chat_template *tmpl,
                        const char *bos_text, serve_error *err);
void serve_request_free(serve_request *r);

/* {"error": {"message", "type", "param", "code"}} into sb. 0 or -1. */
int serve_error_json(strbuf *sb, const serve_error *e);
/* Fills e; returns -1. */
int serve_error_set(serve_error *e, int status, const char *type, const char *param, const char *code,
                    const char *fmt, ...) __attribute__((format(printf, 6, 7)));

/* Length of the longest prefix of s[0..n) that does not end inside a UTF-8 sequence (bytes held
 * back while streaming until the character is complete). */
size_t utf8_complete_len(const char *s, size_t n);
/* Appends s[0..n) as a JSON string literal, invalid UTF-8 replaced by U+FFFD. 0 or -1. */
int sb_json_utf8(strbuf *sb, const char *s, size_t n);

#endif
