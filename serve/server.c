/* server.c: the HTTP side of smelt serve (see server.h): libmicrohttpd with one thread per
 * connection (poll(), so more than 1024 sockets work), request bodies collected up to the size
 * limit, routing, request checks (parse, model name, tokenization, context and KV limits), and
 * the answers: JSON, or server-sent events streamed from the job's output buffer. While a stream
 * waits for its next token it sends an SSE comment every second, so that a client that went away
 * is noticed (the write fails, libmicrohttpd closes the connection and frees the response, which
 * cancels the job) even when its request waits in the queue. */
#include "serve/server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/error.h"
#include "common/log.h"
#include "serve/serve_internal.h"

#define KEEPALIVE_S 1

typedef struct {
    strbuf body;
    int too_large;
} conn_ctx;

static enum MHD_Result send_text(struct serve_server *s, struct MHD_Connection *c, int status, const char *type,
                                 const char *text, size_t n) {
    struct MHD_Response *r = MHD_create_response_from_buffer(n, (void *)text, MHD_RESPMEM_MUST_COPY);
    if (!r) return MHD_NO;
    MHD_add_response_header(r, "Content-Type", type);
    enum MHD_Result rc = MHD_queue_response(c, (unsigned)status, r);
    MHD_destroy_response(r);
    serve_count_status(s, status);
    return rc;
}

static enum MHD_Result send_error(struct serve_server *s, struct MHD_Connection *c, const serve_error *e) {
    strbuf sb = STRBUF_INIT;
    if (serve_error_json(&sb, e)) return MHD_NO;
    enum MHD_Result rc = send_text(s, c, e->status, "application/json", sb_str(&sb), sb.len);
    sb_free(&sb);
    return rc;
}

static enum MHD_Result send_json(struct serve_server *s, struct MHD_Connection *c, const strbuf *sb) {
    return send_text(s, c, 200, "application/json", sb_str(sb), sb->len);
}

static int metrics_text(struct serve_server *s, strbuf *sb) {
    static const char *codes[6] = {"200", "400", "404", "413", "500", "other"};
    pthread_mutex_lock(&s->mu);
    int rc = sb_puts(sb, "# HELP smelt_requests_total HTTP requests answered, by status.\n"
                         "# TYPE smelt_requests_total counter\n");
    for (int i = 0; i < 6 && !rc; i++)
        rc = sb_printf(sb, "smelt_requests_total{code=\"%s\"} %lld\n", codes[i], (long long)s->n_status[i]);
    rc = rc || sb_printf(sb,
                         "# HELP smelt_prompt_tokens_total Prompt tokens of accepted generation requests.\n"
                         "# TYPE smelt_prompt_tokens_total counter\nsmelt_prompt_tokens_total %lld\n"
                         "# HELP smelt_prefill_tokens_total Prompt tokens computed (not taken from the prefix cache).\n"
                         "# TYPE smelt_prefill_tokens_total counter\nsmelt_prefill_tokens_total %lld\n"
                         "# HELP smelt_cached_prompt_tokens_total Prompt tokens taken from the prefix cache.\n"
                         "# TYPE smelt_cached_prompt_tokens_total counter\nsmelt_cached_prompt_tokens_total %lld\n"
                         "# HELP smelt_generation_tokens_total Tokens generated.\n"
                         "# TYPE smelt_generation_tokens_total counter\nsmelt_generation_tokens_total %lld\n"
                         "# HELP smelt_engine_steps_total Engine steps (batched forwards).\n"
                         "# TYPE smelt_engine_steps_total counter\nsmelt_engine_steps_total %lld\n"
                         "# HELP smelt_time_to_first_token_seconds Time from a request's arrival to its first token.\n"
                         "# TYPE smelt_time_to_first_token_seconds summary\n"
                         "smelt_time_to_first_token_seconds_sum %.6f\nsmelt_time_to_first_token_seconds_count %lld\n"
                         "# HELP smelt_requests_running Requests in the engine's running batch.\n"
                         "# TYPE smelt_requests_running gauge\nsmelt_requests_running %d\n"
                         "# HELP smelt_requests_waiting Requests queued in the engine.\n"
                         "# TYPE smelt_requests_waiting gauge\nsmelt_requests_waiting %d\n"
                         "# HELP smelt_requests_active Generation requests held by the server (queued, running or "
                         "being answered).\n# TYPE smelt_requests_active gauge\nsmelt_requests_active %d\n"
                         "# HELP smelt_kv_blocks KV cache blocks by state.\n# TYPE smelt_kv_blocks gauge\n"
                         "smelt_kv_blocks{state=\"total\"} %d\nsmelt_kv_blocks{state=\"free\"} %d\n"
                         "smelt_kv_blocks{state=\"cached\"} %d\n",
                         (long long)s->prompt_tokens, (long long)s->prefill_tokens, (long long)s->cached_tokens,
                         (long long)s->gen_tokens, (long long)s->steps, s->ttft_sum, (long long)s->ttft_count,
                         s->running, s->waiting, s->jobs_alive, s->kv_total, s->kv_free, s->kv_cached);
    pthread_mutex_unlock(&s->mu);
    return rc;
}

/* ---- streaming ---- */

static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max) {
    (void)pos;
    job *j = cls;
    pthread_mutex_lock(&j->mu);
    while (j->out.len == j->out_off && !j->done) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += KEEPALIVE_S;
        if (pthread_cond_timedwait(&j->cv, &j->mu, &ts) == ETIMEDOUT && j->out.len == j->out_off && !j->done)
            sb_puts(&j->out, ": keep-alive\n\n"); /* a comment: clients ignore it, a closed socket fails on it */
    }
    ssize_t n;
    if (j->out.len > j->out_off) {
        size_t avail = j->out.len - j->out_off;
        n = (ssize_t)(avail < max ? avail : max);
        memcpy(buf, j->out.buf + j->out_off, (size_t)n);
        j->out_off += (size_t)n;
        if (j->out_off == j->out.len) sb_reset(&j->out), j->out_off = 0;
    } else if (j->failed) {
        n = MHD_CONTENT_READER_END_WITH_ERROR;
    } else {
        n = MHD_CONTENT_READER_END_OF_STREAM;
    }
    pthread_mutex_unlock(&j->mu);
    return n;
}

/* The response is gone (stream ended, or the client disconnected): cancel what still runs. */
static void stream_free(void *cls) {
    job *j = cls;
    job_cancel(j->srv, j);
    job_release(j);
}

/* ---- generation requests ---- */

static int tokenize_prompt(struct serve_server *s, job *j, serve_error *err) {
    serve_request *r = &j->rq;
    const int V = engine_config(s->e)->vocab;
    if (r->prompt_ids) {
        for (int i = 0; i < r->n_prompt_ids; i++)
            if (r->prompt_ids[i] >= V)
                return serve_error_set(err, 400, "invalid_request_error", "prompt", NULL,
                                       "prompt token %d is %d; the vocabulary has %d tokens", i, r->prompt_ids[i], V);
        j->prompt = r->prompt_ids, j->n_prompt = r->n_prompt_ids;
        r->prompt_ids = NULL, r->n_prompt_ids = 0;
        return 0;
    }
    if (!s->tok)
        return serve_error_set(err, 400, "invalid_request_error", "prompt", NULL,
                               "this server has no tokenizer (start it with --tokenizer); send the prompt as token ids");
    int32_t *ids = NULL;
    size_t n = 0;
    if (tokenizer_encode(s->tok, r->prompt_text, strlen(r->prompt_text), &ids, &n))
        return serve_error_set(err, 400, "invalid_request_error", "prompt", NULL, "%s", err_msg());
    const int bos = r->chat ? -1 : tokenizer_bos_id(s->tok); /* chat templates carry their own start */
    j->prompt = malloc(sizeof(int) * (n + 2));
    if (!j->prompt) {
        free(ids);
        return serve_error_set(err, 500, "server_error", NULL, NULL, "out of memory");
    }
    if (bos >= 0) j->prompt[j->n_prompt++] = bos;
    for (size_t i = 0; i < n; i++) j->prompt[j->n_prompt++] = ids[i];
    free(ids);
    if (j->n_prompt == 0) return serve_error_set(err, 400, "invalid_request_error", "prompt", NULL, "the prompt is empty");
    for (int i = 0; i < j->n_prompt; i++)
        if (j->prompt[i] >= V)
            return serve_error_set(err, 400, "invalid_request_error", "prompt", NULL,
                                   "the tokenizer gave id %d but the model's vocabulary has %d tokens", j->prompt[i], V);
    return 0;
}

static int check_limits(struct serve_server *s, job *j, serve_error *err) {
    const engine_opts *eo = engine_get_opts(s->e);
    int ctx = eo->max_context > 0 ? eo->max_context : engine_config(s->e)->max_pos > 0 ? engine_config(s->e)->max_pos : 4096;
    if (j->n_prompt >= ctx)
        return serve_error_set(err, 400, "invalid_request_error", "prompt", "context_length_exceeded",
                               "the prompt has %d tokens but the model's context is %d; shorten it", j->n_prompt, ctx);
    if (j->rq.max_tokens > s->o.max_tokens)
        return serve_error_set(err, 400, "invalid_request_error", "max_tokens", NULL,
                               "max_tokens %d exceeds this server's limit of %d", j->rq.max_tokens, s->o.max_tokens);
    j->max_new = j->rq.max_tokens ? j->rq.max_tokens : s->o.max_tokens;
    if (!j->rq.max_tokens && j->n_prompt + j->max_new > ctx) j->max_new = ctx - j->n_prompt;
    if (j->n_prompt + j->max_new > ctx)
        return serve_error_set(err, 400, "invalid_request_error", "max_tokens", "context_length_exceeded",
                               "%d prompt tokens + max_tokens %d exceed the model's context of %d", j->n_prompt,
                               j->max_new, ctx);
    if (engine_check_fits(s->e, j->n_prompt, j->max_new))
        return serve_error_set(err, 400, "invalid_request_error", "max_tokens", "context_length_exceeded", "%s", err_msg());
    return 0;
}

static enum MHD_Result generate(struct serve_server *s, struct MHD_Connection *c, const conn_ctx *cc, int chat) {
    serve_error err;
    job *j = calloc(1, sizeof *j);
    if (!j) return MHD_NO;
    pthread_mutex_init(&j->mu, NULL);
    pthread_cond_init(&j->cv, NULL);
    j->refs = 1; /* the HTTP side's */
    j->srv = s;
    pthread_mutex_lock(&s->mu);
    s->jobs_alive++;
    static long counter;
    snprintf(j->id, sizeof j->id, "%s-%ld", chat ? "chatcmpl" : "cmpl", ++counter);
    pthread_mutex_unlock(&s->mu);
    j->created = (long)time(NULL);
    j->t_arrival = time_monotonic();
    int rc = serve_request_parse(&j->rq, sb_str(&cc->body), cc->body.len, chat, s->o.chat, s->bos_text, &err);
    if (!rc && j->rq.model && strcmp(j->rq.model, s->o.model_name))
        rc = serve_error_set(&err, 404, "invalid_request_error", "model", "model_not_found",
                             "the model '%.100s' does not exist here; this server serves '%.100s'", j->rq.model,
                             s->o.model_name);
    if (!rc) rc = tokenize_prompt(s, j, &err) || check_limits(s, j, &err);
    if (!rc) {
        j->gen = calloc((size_t)j->max_new, sizeof *j->gen);
        j->echo = calloc((size_t)j->n_prompt, sizeof *j->echo);
        if (!j->gen || !j->echo) rc = serve_error_set(&err, 500, "server_error", NULL, NULL, "out of memory");
    }
    if (rc) {
        enum MHD_Result r = send_error(s, c, &err);
        job_release(j);
        return r;
    }
    pthread_mutex_lock(&s->mu);
    s->prompt_tokens += j->n_prompt;
    pthread_mutex_unlock(&s->mu);
    job_enqueue(s, j);
    if (j->rq.stream) {
        struct MHD_Response *r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 4096, stream_read, j, stream_free);
        if (!r) {
            stream_free(j);
            return MHD_NO;
        }
        MHD_add_response_header(r, "Content-Type", "text/event-stream");
        MHD_add_response_header(r, "Cache-Control", "no-cache");
        enum MHD_Result q = MHD_queue_response(c, 200, r);
        MHD_destroy_response(r);
        serve_count_status(s, 200);
        return q;
    }
    pthread_mutex_lock(&j->mu); /* this connection's thread waits for the whole answer */
    while (!j->done) pthread_cond_wait(&j->cv, &j->mu);
    pthread_mutex_unlock(&j->mu);
    enum MHD_Result q;
    if (j->failed) q = send_error(s, c, &j->err);
    else {
        strbuf sb = STRBUF_INIT;
        q = job_response_json(j, &sb) ? MHD_NO : send_json(s, c, &sb);
        sb_free(&sb);
    }
    job_release(j);
    return q;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                                  const char *version, const char *upload, size_t *upload_size, void **con_cls) {
    (void)version;
    struct serve_server *s = cls;
    conn_ctx *cc = *con_cls;
    if (!cc) { /* the headers: set up the body */
        if (!(cc = calloc(1, sizeof *cc))) return MHD_NO;
        *con_cls = cc;
        return MHD_YES;
    }
    if (*upload_size) {
        if (cc->body.len + *upload_size > s->o.max_body_bytes) cc->too_large = 1;
        else if (sb_append(&cc->body, upload, *upload_size)) return MHD_NO;
        *upload_size = 0;
        return MHD_YES;
    }
    serve_error err;
    const int get = !strcmp(method, "GET"), post = !strcmp(method, "POST");
    if (cc->too_large) {
        serve_error_set(&err, 413, "invalid_request_error", NULL, "request_too_large",
                        "the request body exceeds %zu bytes", s->o.max_body_bytes);
        return send_error(s, c, &err);
    }
    if (!strcmp(url, "/health") && get) return send_text(s, c, 200, "application/json", "{\"status\": \"ok\"}\n", 17);
    if (!strcmp(url, "/metrics") && get) {
        strbuf sb = STRBUF_INIT;
        enum MHD_Result r = metrics_text(s, &sb) ? MHD_NO : send_text(s, c, 200, "text/plain; version=0.0.4", sb_str(&sb), sb.len);
        sb_free(&sb);
        return r;
    }
    if (!strcmp(url, "/v1/models") && get) {
        strbuf sb = STRBUF_INIT;
        int rc = sb_puts(&sb, "{\"object\": \"list\", \"data\": [{\"id\": ") || sb_json_string(&sb, s->o.model_name) ||
                 sb_printf(&sb, ", \"object\": \"model\", \"created\": %ld, \"owned_by\": \"smelt\", \"max_model_len\": %d}]}\n",
                           (long)time(NULL), engine_config(s->e)->max_pos);
        enum MHD_Result r = rc ? MHD_NO : send_json(s, c, &sb);
        sb_free(&sb);
        return r;
    }
    if ((!strcmp(url, "/v1/completions") || !strcmp(url, "/v1/chat/completions")) && post)
        return generate(s, c, cc, !strcmp(url, "/v1/chat/completions"));
    const int known = !strcmp(url, "/health") || !strcmp(url, "/metrics") || !strcmp(url, "/v1/models") ||
                      !strcmp(url, "/v1/completions") || !strcmp(url, "/v1/chat/completions");
    if (known) serve_error_set(&err, 405, "invalid_request_error", NULL, NULL, "%s is not allowed on %s", method, url);
    else serve_error_set(&err, 404, "not_found_error", NULL, NULL, "no endpoint %.200s", url);
    return send_error(s, c, &err);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode code) {
    (void)cls, (void)c, (void)code;
    conn_ctx *cc = *con_cls;
    if (cc) {
        sb_free(&cc->body);
        free(cc);
    }
    *con_cls = NULL;
}

int serve_start(serve_server **out, engine *e, const tokenizer *tok, const serve_opts *o) {
    *out = NULL;
    struct serve_server *s = calloc(1, sizeof *s);
    if (!s) return err_set(ERR_NOMEM, "server");
    s->o = *o;
    s->e = e;
    s->tok = tok;
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    const model_config *cfg = engine_config(e);
    /* generation of a chat turn ends at the template's end-of-turn token */
    const char *end = !o->chat ? NULL : o->chat->family == CHAT_CHATML ? "<|im_end|>" : "<|eot_id|>";
    int id = end && tok ? tokenizer_token_id(tok, end) : -1;
    if (id >= 0) s->stop_ids[s->n_stop_ids++] = id;
    size_t bl = 0;
    const char *bp = tok && tokenizer_bos_id(tok) >= 0 ? tokenizer_piece(tok, tokenizer_bos_id(tok), &bl) : NULL;
    if (bp && bl < sizeof s->bos_text) memcpy(s->bos_text, bp, bl);
    if (tok && tokenizer_eos_id(tok) >= 0 && tokenizer_eos_id(tok) != cfg->eos_id)
        s->stop_ids[s->n_stop_ids++] = tokenizer_eos_id(tok);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV}, *ai = NULL;
    char port[16];
    snprintf(port, sizeof port, "%d", o->port);
    int gai = getaddrinfo(o->host, port, &hints, &ai);
    if (gai) {
        free(s);
        return err_set(ERR_INPUT, "--host %s: %s", o->host, gai_strerror(gai));
    }
    if (jobs_start(s)) {
        freeaddrinfo(ai);
        free(s);
        return -1;
    }
    unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL | MHD_USE_ERROR_LOG;
    if (ai->ai_family == AF_INET6) flags |= MHD_USE_IPv6;
    s->d = MHD_start_daemon(flags, (uint16_t)o->port, NULL, NULL, on_request, s, MHD_OPTION_SOCK_ADDR, ai->ai_addr,
                            MHD_OPTION_CONNECTION_LIMIT, (unsigned)o->max_connections, MHD_OPTION_CONNECTION_TIMEOUT,
                            (unsigned)600, MHD_OPTION_THREAD_STACK_SIZE, (size_t)(512 << 10),
                            MHD_OPTION_NOTIFY_COMPLETED, on_completed, s, MHD_OPTION_END);
    freeaddrinfo(ai);
    if (!s->d) {
        jobs_stop(s);
        free(s);
        return err_set(ERR_IO, "cannot listen on %s:%d (%s); is the port in use?", o->host, o->port, strerror(errno));
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(s->d, MHD_DAEMON_INFO_BIND_PORT);
    s->port = info ? info->port : o->port;
    *out = s;
    return 0;
}

int serve_port(const serve_server *s) { return s->port; }

void serve_stop(serve_server *s) {
    if (!s) return;
    MHD_quiesce_daemon(s->d); /* no new connections; then end every job so waiting threads return */
    jobs_stop(s);
    MHD_stop_daemon(s->d);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
    free(s);
}
