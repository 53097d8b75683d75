/* serve_internal.h: what server.c (HTTP) and jobs.c (the engine thread and the responses) share.
 * A job is one request from its parsing to its response. It is referenced by the HTTP side (until
 * the response is built or the stream is closed), by the engine side (until it finishes, fails or
 * is cancelled) and by a pending cancellation; the last reference frees it. */
#ifndef SMELT_SERVE_SERVE_INTERNAL_H
#define SMELT_SERVE_SERVE_INTERNAL_H

#include <pthread.h>
#include <stdint.h>

#include "serve/request.h"
#include "serve/server.h"

typedef struct job job;

typedef struct {
    int token;
    float logprob;
    int n_top;
    int top_id[SERVE_MAX_LOGPROBS];
    float top_lp[SERVE_MAX_LOGPROBS];
} tok_lp;

struct job {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int refs;               /* under mu */
    struct serve_server *srv;
    serve_request rq;
    int *prompt;            /* [n_prompt] */
    int n_prompt, max_new;
    int64_t engine_id;
    char id[40];
    long created;
    double t_arrival;
    /* engine side (written by the engine thread; read by the HTTP side after done, or under mu) */
    tok_lp *gen;            /* [max_new] generated tokens with their log-probabilities */
    int n_gen;
    tok_lp *echo;           /* [n_prompt] prompt log-probabilities (echo with logprobs) */
    int n_echo;
    strbuf text;            /* the generated text (stop sequences cut) */
    size_t text_streamed;   /* bytes of text already sent */
    int finish;             /* ENGINE_FINISH_* */
    int cached, first_seen;
    /* under mu */
    strbuf out;             /* streaming: SSE bytes not yet handed to the connection */
    size_t out_off;
    int done;               /* the engine is through with it (out then holds everything left) */
    int cancel;             /* the client went away */
    int failed;
    serve_error err;
    job *next;              /* the incoming queue (under the server's mutex) */
    job *next_cancel;       /* the cancellation stack (under the server's mutex) */
    job *prev_active, *next_active;
};

struct serve_server {
    serve_opts o;
    engine *e;
    const tokenizer *tok;
    int stop_ids[4], n_stop_ids; /* chat end token and EOS ids */
    char bos_text[64];           /* the tokenizer's BOS as text (Llama 3 chat templates) */
    struct MHD_Daemon *d;
    int port;
    pthread_t thread;
    pthread_mutex_t mu;     /* the queues and counters below */
    pthread_cond_t cv;
    int stopping;
    job *incoming, *incoming_tail, *cancels;
    job *active;            /* engine-side jobs (engine thread only) */
    /* counters (under mu) */
    int64_t n_status[6];    /* 200, 400, 404, 413, 500, other */
    int64_t prompt_tokens, prefill_tokens, gen_tokens, cached_tokens, steps;
    double ttft_sum;
    int64_t ttft_count;
    int running, waiting, jobs_alive, kv_total, kv_free, kv_cached;
};

/* jobs.c */
int jobs_start(struct serve_server *s);   /* the engine thread */
void jobs_stop(struct serve_server *s);
/* Queues a parsed, tokenized job for the engine (takes an engine reference). */
void job_enqueue(struct serve_server *s, job *j);
/* The client is gone: cancel the job if it still runs. */
void job_cancel(struct serve_server *s, job *j);
void job_release(job *j);
/* The non-streaming response body of a finished job. 0 or -1. */
int job_response_json(const job *j, strbuf *sb);
void serve_count_status(struct serve_server *s, int status);

#endif
