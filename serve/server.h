/* server.h: `smelt serve`: an OpenAI-compatible HTTP server (libmicrohttpd) over the serving
 * engine (model/engine.h). /v1/completions (text or token-id prompts, SSE streaming, logprobs,
 * echo with prompt log-probabilities), /v1/chat/completions (the model's chat template),
 * /v1/models, /health, /metrics (Prometheus text). One engine thread runs every request through
 * continuous batching; each HTTP connection has its own thread that waits for its request's
 * tokens. A client that disconnects is cancelled at the next token (or keep-alive) its connection
 * fails to send, and its slot and KV blocks are freed. */
#ifndef SMELT_SERVE_SERVER_H
#define SMELT_SERVE_SERVER_H

#include <stddef.h>

#include "model/chat.h"
#include "model/engine.h"
#include "model/tokenizer.h"

typedef struct {
    const char *host;          /* address to bind (default 127.0.0.1) */
    int port;                  /* 0: any free port (serve_port tells which) */
    const char *model_name;    /* the id /v1/models lists and requests may name */
    size_t max_body_bytes;     /* larger request bodies get 413 */
    int max_tokens;            /* new tokens a request may ask for, and the default */
    int max_connections;       /* connections at once; more are refused */
    const chat_template *chat; /* the model's chat template (NULL: /v1/chat/completions answers 400) */
} serve_opts;

typedef struct serve_server serve_server;

/* Starts the engine thread and the HTTP daemon. e and tok (tok may be NULL: token-id prompts only)
 * are borrowed until serve_stop. 0 or -1 (ERR_IO when the address cannot be bound). */
int serve_start(serve_server **s, engine *e, const tokenizer *tok, const serve_opts *o);
int serve_port(const serve_server *s);
/* Stops accepting, cancels what runs, joins the threads, frees the server. */
void serve_stop(serve_server *s);

#endif
