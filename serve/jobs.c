/* jobs.c: the engine thread of smelt serve and the shape of its answers. The thread moves queued
 * jobs into the engine, applies cancellations, runs engine steps while anything is waiting or
 * running, and turns each event into the job's output: log-probabilities, text (pieces held back
 * while they could end in a stop sequence or inside a UTF-8 character), and for streams the SSE
 * chunks, which the connection's thread sends. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/error.h"
#include "common/log.h"
#include "serve/serve_internal.h"

void job_release(job *j) {
    pthread_mutex_lock(&j->mu);
    int last = --j->refs == 0;
    pthread_mutex_unlock(&j->mu);
    if (!last) return;
    pthread_mutex_lock(&j->srv->mu);
    j->srv->jobs_alive--;
    pthread_mutex_unlock(&j->srv->mu);
    serve_request_free(&j->rq);
    free(j->prompt), free(j->gen), free(j->echo);
    sb_free(&j->text), sb_free(&j->out);
    pthread_mutex_destroy(&j->mu);
    pthread_cond_destroy(&j->cv);
    free(j);
}

void serve_count_status(struct serve_server *s, int status) {
    int i = status == 200 ? 0 : status == 400 ? 1 : status == 404 ? 2 : status == 413 ? 3 : status == 500 ? 4 : 5;
    pthread_mutex_lock(&s->mu);
    s->n_status[i]++;
    pthread_mutex_unlock(&s->mu);
}

void job_enqueue(struct serve_server *s, job *j) {
    pthread_mutex_lock(&s->mu);
    if (s->stopping) { /* shutting down: the job ends at once */
        pthread_mutex_unlock(&s->mu);
        pthread_mutex_lock(&j->mu);
        j->done = j->failed = 1;
        serve_error_set(&j->err, 503, "server_error", NULL, NULL, "the server is shutting down");
        pthread_cond_broadcast(&j->cv);
        pthread_mutex_unlock(&j->mu);
        return;
    }
    pthread_mutex_lock(&j->mu);
    j->refs++; /* the engine side's */
    pthread_mutex_unlock(&j->mu);
    j->next = NULL;
    if (s->incoming_tail) s->incoming_tail->next = j;
    else s->incoming = j;
    s->incoming_tail = j;
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

void job_cancel(struct serve_server *s, job *j) {
    pthread_mutex_lock(&j->mu);
    int live = !j->done && !j->cancel;
    j->cancel = 1;
    if (live) j->refs++; /* the cancellation list's reference */
    pthread_mutex_unlock(&j->mu);
    if (!live) return;
    pthread_mutex_lock(&s->mu);
    j->next_cancel = s->cancels;
    s->cancels = j;
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

/* ---- output ---- */

static int json_piece(strbuf *sb, const tokenizer *tok, int id) {
    size_t n = 0;
    const char *p = tok ? tokenizer_piece(tok, id, &n) : NULL;
    return p ? sb_json_utf8(sb, p, n) : sb_printf(sb, "\"<%d>\"", id);
}

/* Completions: {"tokens", "token_logprobs", "top_logprobs", "text_offset"} over echo + generated. */
static int logprobs_legacy(strbuf *sb, const job *j, const tok_lp *a, int na, const tok_lp *b, int nb, int first_null) {
    const tokenizer *tok = j->srv->tok;
    int rc = sb_puts(sb, "{\"tokens\": [");
    for (int i = 0; i < na + nb && !rc; i++) rc = sb_puts(sb, i ? ", " : "") || json_piece(sb, tok, (i < na ? a[i] : b[i - na]).token);
    rc = rc || sb_puts(sb, "], \"token_logprobs\": [");
    for (int i = 0; i < na + nb && !rc; i++) {
        const tok_lp *t = i < na ? &a[i] : &b[i - na];
        rc = sb_puts(sb, i ? ", " : "") || (i == 0 && first_null ? sb_puts(sb, "null") : sb_printf(sb, "%.6g", t->logprob));
    }
    rc = rc || sb_puts(sb, "], \"top_logprobs\": [");
    for (int i = 0; i < na + nb && !rc; i++) {
        const tok_lp *t = i < na ? &a[i] : &b[i - na];
        rc = sb_puts(sb, i ? ", " : "");
        if (i == 0 && first_null) {
            rc = rc || sb_puts(sb, "null");
            continue;
        }
        rc = rc || sb_putc(sb, '{');
        for (int k = 0; k < t->n_top && !rc; k++)
            rc = sb_puts(sb, k ? ", " : "") || json_piece(sb, tok, t->top_id[k]) || sb_printf(sb, ": %.6g", t->top_lp[k]);
        rc = rc || sb_putc(sb, '}');
    }
    rc = rc || sb_puts(sb, "], \"text_offset\": [");
    size_t off = 0;
    for (int i = 0; i < na + nb && !rc; i++) {
        size_t n = 0;
        const tok_lp *t = i < na ? &a[i] : &b[i - na];
        if (tok) tokenizer_piece(tok, t->token, &n);
        rc = sb_printf(sb, "%s%zu", i ? ", " : "", off);
        off += n;
    }
    return rc || sb_puts(sb, "]}");
}

/* Chat: {"content": [{"token", "logprob", "top_logprobs": [{"token", "logprob"}]}]}. */
static int logprobs_chat(strbuf *sb, const job *j, const tok_lp *a, int n) {
    int rc = sb_puts(sb, "{\"content\": [");
    for (int i = 0; i < n && !rc; i++) {
        rc = sb_puts(sb, i ? ", {\"token\": " : "{\"token\": ") || json_piece(sb, j->srv->tok, a[i].token) ||
             sb_printf(sb, ", \"logprob\": %.6g, \"top_logprobs\": [", a[i].logprob);
        for (int k = 0; k < a[i].n_top && !rc; k++)
            rc = sb_puts(sb, k ? ", {\"token\": " : "{\"token\": ") || json_piece(sb, j->srv->tok, a[i].top_id[k]) ||
                 sb_printf(sb, ", \"logprob\": %.6g}", a[i].top_lp[k]);
        rc = rc || sb_puts(sb, "]}");
    }
    return rc || sb_puts(sb, "]}");
}

static const char *finish_name(int f) { return f == ENGINE_FINISH_LENGTH ? "length" : "stop"; }

static int usage_json(strbuf *sb, const job *j) {
    return sb_printf(sb, "{\"prompt_tokens\": %d, \"completion_tokens\": %d, \"total_tokens\": %d, "
                         "\"prompt_tokens_details\": {\"cached_tokens\": %d}}",
                     j->n_prompt, j->n_gen, j->n_prompt + j->n_gen, j->cached);
}

static int head_json(strbuf *sb, const job *j, const char *object) {
    return sb_puts(sb, "{\"id\": ") || sb_json_string(sb, j->id) || sb_printf(sb, ", \"object\": \"%s\", \"created\": %ld, \"model\": ", object, j->created) ||
           sb_json_string(sb, j->srv->o.model_name);
}

int job_response_json(const job *j, strbuf *sb) {
    const serve_request *r = &j->rq;
    int rc = head_json(sb, j, r->chat ? "chat.completion" : "text_completion") || sb_puts(sb, ", \"choices\": [{\"index\": 0, ");
    if (r->chat) rc = rc || sb_puts(sb, "\"message\": {\"role\": \"assistant\", \"content\": ") ||
                      sb_json_utf8(sb, sb_str(&j->text), j->text.len) || sb_puts(sb, "}, \"logprobs\": ") ||
                      (r->logprobs >= 0 ? logprobs_chat(sb, j, j->gen, j->n_gen) : sb_puts(sb, "null"));
    else {
        rc = rc || sb_puts(sb, "\"text\": ");
        if (!rc && r->echo) { /* the prompt's text, then the completion */
            strbuf t = STRBUF_INIT;
            for (int i = 0; i < j->n_prompt && !rc; i++) {
                size_t n = 0;
                const char *p = j->srv->tok ? tokenizer_piece(j->srv->tok, j->prompt[i], &n) : NULL;
                if (p) rc = sb_append(&t, p, n);
            }
            rc = rc || sb_append(&t, sb_str(&j->text), j->text.len) || sb_json_utf8(sb, sb_str(&t), t.len);
            sb_free(&t);
        } else rc = rc || sb_json_utf8(sb, sb_str(&j->text), j->text.len);
        rc = rc || sb_puts(sb, ", \"logprobs\": ") ||
             (r->logprobs >= 0 ? logprobs_legacy(sb, j, j->echo, j->n_echo, j->gen, j->n_gen, j->n_echo > 0)
                               : sb_puts(sb, "null"));
    }
    return rc || sb_printf(sb, ", \"finish_reason\": \"%s\"}], \"usage\": ", finish_name(j->finish)) || usage_json(sb, j) ||
           sb_puts(sb, "}\n");
}

/* One SSE chunk with new text (and the logprobs of tokens [t0, t1)); final: with finish_reason. */
static int stream_chunk(job *j, const char *text, size_t n, int t0, int t1, int final) {
    const serve_request *r = &j->rq;
    strbuf sb = STRBUF_INIT;
    int rc = sb_puts(&sb, "data: ") || head_json(&sb, j, r->chat ? "chat.completion.chunk" : "text_completion") ||
             sb_puts(&sb, ", \"choices\": [{\"index\": 0, ");
    if (r->chat) rc = rc || sb_puts(&sb, "\"delta\": {") ||
                      (j->first_seen == 1 ? sb_puts(&sb, "\"role\": \"assistant\", ") : 0) ||
                      sb_puts(&sb, "\"content\": ") || sb_json_utf8(&sb, text, n) || sb_puts(&sb, "}, \"logprobs\": ") ||
                      (r->logprobs >= 0 ? logprobs_chat(&sb, j, j->gen + t0, t1 - t0) : sb_puts(&sb, "null"));
    else rc = rc || sb_puts(&sb, "\"text\": ") || sb_json_utf8(&sb, text, n) || sb_puts(&sb, ", \"logprobs\": ") ||
              (r->logprobs >= 0 ? logprobs_legacy(&sb, j, NULL, 0, j->gen + t0, t1 - t0, 0) : sb_puts(&sb, "null"));
    rc = rc || (final ? sb_printf(&sb, ", \"finish_reason\": \"%s\"}]}\n\n", finish_name(j->finish))
                      : sb_puts(&sb, ", \"finish_reason\": null}]}\n\n"));
    if (final && r->include_usage && !rc)
        rc = sb_puts(&sb, "data: ") || head_json(&sb, j, r->chat ? "chat.completion.chunk" : "text_completion") ||
             sb_puts(&sb, ", \"choices\": [], \"usage\": ") || usage_json(&sb, j) || sb_puts(&sb, "}\n\n");
    if (final && !rc) rc = sb_puts(&sb, "data: [DONE]\n\n");
    if (!rc) {
        pthread_mutex_lock(&j->mu);
        rc = sb_append(&j->out, sb_str(&sb), sb.len);
        pthread_cond_signal(&j->cv);
        pthread_mutex_unlock(&j->mu);
    }
    sb_free(&sb);
    return rc;
}

/* log-softmax of logits at token, and the top-k alternatives. */
static void fill_lp(tok_lp *t, const float *lg, int V, int token, int k) {
    float mx = lg[0];
    for (int v = 1; v < V; v++) mx = lg[v] > mx ? lg[v] : mx;
    double s = 0;
    for (int v = 0; v < V; v++) s += exp((double)lg[v] - mx);
    const double lse = mx + log(s);
    t->token = token;
    t->logprob = (float)(lg[token] - lse);
    t->n_top = 0;
    for (int v = 0; v < V && k > 0; v++) { /* insertion into a sorted list of at most k entries */
        if (t->n_top == k && lg[v] <= lg[t->top_id[k - 1]]) continue;
        int p = t->n_top < k ? t->n_top++ : k - 1;
        while (p > 0 && lg[t->top_id[p - 1]] < lg[v]) t->top_id[p] = t->top_id[p - 1], p--;
        t->top_id[p] = v;
    }
    for (int i = 0; i < t->n_top; i++) t->top_lp[i] = (float)(lg[t->top_id[i]] - lse);
}

/* The text that may be sent now: everything but what could still turn into a stop sequence or
 * is an incomplete UTF-8 character. */
static size_t safe_len(const job *j, int final) {
    size_t n = j->text.len;
    if (final) return n;
    size_t hold = 0;
    for (int i = 0; i < j->rq.n_stop; i++) {
        size_t l = strlen(j->rq.stop[i]) - 1;
        hold = l > hold ? l : hold;
    }
    n = n > hold ? n - hold : 0;
    return utf8_complete_len(sb_str(&j->text), n);
}

static void job_finished(struct serve_server *s, job *j, int failed) {
    if (j->prev_active) j->prev_active->next_active = j->next_active;
    else s->active = j->next_active;
    if (j->next_active) j->next_active->prev_active = j->prev_active;
    j->prev_active = j->next_active = NULL;
    pthread_mutex_lock(&j->mu);
    j->done = 1;
    j->failed = failed;
    if (failed) serve_error_set(&j->err, 500, "server_error", NULL, NULL, "the engine failed: %s", err_msg());
    pthread_cond_broadcast(&j->cv);
    pthread_mutex_unlock(&j->mu);
    job_release(j);
}

static int on_event(void *ctx, const engine_event *ev) {
    struct serve_server *s = ctx;
    job *j = ev->user;
    const int V = engine_config(s->e)->vocab, k = j->rq.logprobs > 0 ? j->rq.logprobs : 0;
    if (ev->kind == ENGINE_EV_PROMPT) { /* logits at pos predict prompt token pos + 1 */
        if (j->n_echo == 0) j->echo[j->n_echo++] = (tok_lp){.token = j->prompt[0]};
        fill_lp(&j->echo[j->n_echo++], ev->logits, V, j->prompt[ev->pos + 1], k);
        return 0;
    }
    if (!j->first_seen++) {
        pthread_mutex_lock(&s->mu);
        s->ttft_sum += time_monotonic() - j->t_arrival;
        s->ttft_count++;
        s->cached_tokens += ev->cached_tokens;
        pthread_mutex_unlock(&s->mu);
        j->cached = ev->cached_tokens;
        if (j->rq.echo && j->rq.logprobs >= 0 && j->n_echo == 0) j->echo[j->n_echo++] = (tok_lp){.token = j->prompt[0]};
    }
    tok_lp *t = &j->gen[j->n_gen++];
    if (j->rq.logprobs >= 0) fill_lp(t, ev->logits, V, ev->token, k);
    else t->token = ev->token;
    j->finish = ev->finish;
    int stop_hit = 0;
    if (ev->finish != ENGINE_FINISH_STOP && s->tok) { /* the stop token itself is not text */
        size_t n = 0;
        const char *p = tokenizer_piece(s->tok, ev->token, &n);
        if (p) sb_append(&j->text, p, n);
        for (int i = 0; i < j->rq.n_stop; i++) {
            const char *hit = strstr(sb_str(&j->text) + (j->text_streamed > 256 ? j->text_streamed - 256 : 0), j->rq.stop[i]);
            if (hit) {
                j->text.len = (size_t)(hit - j->text.buf), j->text.buf[j->text.len] = 0;
                stop_hit = 1, j->finish = ENGINE_FINISH_STOP;
            }
        }
    }
    const int final = j->finish != ENGINE_RUNNING;
    if (j->rq.stream) {
        size_t n = safe_len(j, final);
        if (n > j->text_streamed || final || j->rq.logprobs >= 0 || j->first_seen == 1)
            stream_chunk(j, sb_str(&j->text) + j->text_streamed, n - j->text_streamed, j->n_gen - 1, j->n_gen, final);
        j->text_streamed = n;
    }
    pthread_mutex_lock(&s->mu);
    s->gen_tokens++;
    pthread_mutex_unlock(&s->mu);
    if (final) job_finished(s, j, 0);
    return stop_hit;
}

/* Moves queued jobs into the engine (called with s->mu held; releases it around the engine). */
static void take_incoming(struct serve_server *s) {
    while (s->incoming) {
        job *j = s->incoming;
        s->incoming = j->next;
        if (!s->incoming) s->incoming_tail = NULL;
        pthread_mutex_unlock(&s->mu);
        pthread_mutex_lock(&j->mu);
        int cancelled = j->cancel;
        pthread_mutex_unlock(&j->mu);
        engine_request q = {.prompt = j->prompt, .n_prompt = j->n_prompt, .max_new_tokens = j->max_new,
                            .ignore_eos = j->rq.ignore_eos, .stop_ids = s->stop_ids, .n_stop = s->n_stop_ids,
                            .temperature = (float)j->rq.temperature, .top_p = (float)j->rq.top_p, .seed = j->rq.seed,
                            .prompt_logits = j->rq.echo && j->rq.logprobs >= 0, .user = j};
        if (cancelled || engine_submit(s->e, &q, &j->engine_id)) {
            pthread_mutex_lock(&j->mu);
            j->done = 1;
            if (!cancelled) serve_error_set(&j->err, 400, "invalid_request_error", NULL, NULL, "%s", err_msg());
            j->failed = !cancelled;
            pthread_cond_broadcast(&j->cv);
            pthread_mutex_unlock(&j->mu);
            job_release(j);
        } else {
            j->next_active = s->active, j->prev_active = NULL;
            if (s->active) s->active->prev_active = j;
            s->active = j;
        }
        pthread_mutex_lock(&s->mu);
    }
}

static void take_cancels(struct serve_server *s) {
    while (s->cancels) {
        job *j = s->cancels;
        s->cancels = j->next_cancel;
        pthread_mutex_unlock(&s->mu);
        /* still in the engine: off the active list, and the engine's reference is dropped */
        if (j->engine_id && engine_cancel(s->e, j->engine_id)) job_finished(s, j, 0);
        job_release(j); /* the cancellation's reference */
        pthread_mutex_lock(&s->mu);
    }
}

/* The engine's gauges for /metrics (called with s->mu held, from the engine thread). */
static void publish(struct serve_server *s) {
    s->running = engine_n_running(s->e), s->waiting = engine_n_waiting(s->e);
    engine_kv_usage(s->e, &s->kv_total, &s->kv_free, &s->kv_cached);
}

static void *engine_main(void *arg) {
    struct serve_server *s = arg;
    pthread_mutex_lock(&s->mu);
    while (!s->stopping) {
        take_cancels(s);
        take_incoming(s);
        take_cancels(s);
        if (engine_n_waiting(s->e) + engine_n_running(s->e) == 0) {
            publish(s);
            pthread_cond_wait(&s->cv, &s->mu);
            continue;
        }
        pthread_mutex_unlock(&s->mu);
        engine_step_info info;
        int rc = engine_step(s->e, on_event, s, &info);
        if (rc) { /* every request was dropped: fail them all */
            log_error("engine step failed: %s", err_msg());
            while (s->active) job_finished(s, s->active, 1);
        }
        pthread_mutex_lock(&s->mu);
        s->prefill_tokens += info.prefill_tokens;
        s->steps++;
        publish(s);
    }
    take_cancels(s);
    while (s->incoming) { /* shutting down: queued jobs end unanswered */
        job *j = s->incoming;
        s->incoming = j->next;
        pthread_mutex_lock(&j->mu);
        j->done = j->failed = 1;
        serve_error_set(&j->err, 503, "server_error", NULL, NULL, "the server is shutting down");
        pthread_cond_broadcast(&j->cv);
        pthread_mutex_unlock(&j->mu);
        pthread_mutex_unlock(&s->mu);
        job_release(j);
        pthread_mutex_lock(&s->mu);
    }
    s->incoming_tail = NULL;
    pthread_mutex_unlock(&s->mu);
    while (s->active) { /* shutting down: end what is left */
        engine_cancel(s->e, s->active->engine_id);
        job_finished(s, s->active, 0);
    }
    return NULL;
}

int jobs_start(struct serve_server *s) {
    if (pthread_create(&s->thread, NULL, engine_main, s)) return err_set(ERR_IO, "cannot start the engine thread");
    return 0;
}

void jobs_stop(struct serve_server *s) {
    pthread_mutex_lock(&s->mu);
    s->stopping = 1;
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
    pthread_join(s->thread, NULL);
}
