/* http.c: the benchmark's workload against an OpenAI-compatible server (`target: http://HOST:PORT`:
 * vLLM, SGLang, smelt serve). One libcurl multi handle drives every request from this thread: each
 * member's prompts are POSTed to /v1/completions at their arrival time as token-id prompts with
 * stream: true, ignore_eos and usage in the stream; TTFT is the first streamed chunk with a choice,
 * the end is the end of the stream. The served model is the first of /v1/models; the HTTP overhead
 * is the median round trip of GET /health on a fresh connection. Token ids are sent as they are:
 * the server's model must use the workload's tokenizer. */
#include <curl/curl.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "common/log.h"
#include "common/strbuf.h"
#include "stages/benchmark/benchmark.h"

#define HTTP_REQUEST_TIMEOUT_S 600L

typedef struct {
    CURL *h;
    int idx;
    strbuf line;       /* bytes of the current SSE line */
    strbuf body;       /* the request body */
    int chunks, usage_tokens, cached, done_marker, bad;
    req_trace *t;
    double t0;         /* the run's clock origin */
} http_req;

static size_t sink(char *p, size_t sz, size_t n, void *ud) {
    (void)p;
    (void)ud;
    return sz * n;
}

static void on_sse_data(http_req *r, const char *data) {
    if (!strcmp(data, "[DONE]")) {
        r->done_marker = 1;
        return;
    }
    cJSON *j = cJSON_Parse(data);
    if (!j) {
        r->bad = 1;
        return;
    }
    if (cJSON_GetObjectItem(j, "error")) r->bad = 1;
    const cJSON *ch = cJSON_GetObjectItem(j, "choices");
    if (cJSON_IsArray(ch) && cJSON_GetArraySize(ch) > 0) {
        if (r->chunks++ == 0) r->t->first = time_monotonic() - r->t0;
    }
    const cJSON *u = cJSON_GetObjectItem(j, "usage");
    if (cJSON_IsObject(u)) {
        const cJSON *ct = cJSON_GetObjectItem(u, "completion_tokens"), *d = cJSON_GetObjectItem(u, "prompt_tokens_details");
        if (cJSON_IsNumber(ct)) r->usage_tokens = (int)ct->valuedouble;
        const cJSON *c = cJSON_IsObject(d) ? cJSON_GetObjectItem(d, "cached_tokens") : NULL;
        if (cJSON_IsNumber(c)) r->cached = (int)c->valuedouble;
    }
    cJSON_Delete(j);
}

/* Server-sent events: lines "data: ...", events separated by blank lines. */
static size_t on_bytes(char *p, size_t sz, size_t n, void *ud) {
    http_req *r = ud;
    const size_t len = sz * n;
    for (size_t i = 0; i < len; i++) {
        if (p[i] != '\n') {
            if (p[i] != '\r' && sb_putc(&r->line, p[i])) return 0;
            continue;
        }
        const char *l = sb_str(&r->line);
        if (!strncmp(l, "data:", 5)) on_sse_data(r, l + 5 + (l[5] == ' '));
        sb_reset(&r->line);
    }
    return len;
}

static int get_json(const char *url, cJSON **out) {
    CURL *h = curl_easy_init();
    if (!h) return err_set(ERR_NOMEM, "curl_easy_init");
    char *text = NULL;
    size_t len = 0;
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_TIMEOUT, 30L);
    FILE *mem = open_memstream(&text, &len); /* libcurl's default writer fwrite()s into it */
    if (!mem) {
        curl_easy_cleanup(h);
        return err_errno("open_memstream");
    }
    curl_easy_setopt(h, CURLOPT_WRITEDATA, mem);
    CURLcode cc = curl_easy_perform(h);
    long status = 0;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_cleanup(h);
    fclose(mem);
    int rc = 0;
    if (cc != CURLE_OK) rc = err_set(ERR_STAGE, "GET %s: %s; is the server running?", url, curl_easy_strerror(cc));
    else if (status != 200) rc = err_set(ERR_STAGE, "GET %s: HTTP %ld", url, status);
    else if (!(*out = cJSON_Parse(text ? text : ""))) rc = err_set(ERR_STAGE, "GET %s: the answer is not JSON", url);
    free(text);
    return rc;
}

/* Median round trip of GET /health on fresh connections, in ms. */
static int measure_overhead(const char *base, double *ms) {
    char url[1024];
    snprintf(url, sizeof url, "%s/health", base);
    double t[15];
    for (int i = 0; i < 15; i++) {
        CURL *h = curl_easy_init();
        if (!h) return err_set(ERR_NOMEM, "curl_easy_init");
        curl_easy_setopt(h, CURLOPT_URL, url);
        curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(h, CURLOPT_FRESH_CONNECT, 1L);
        curl_easy_setopt(h, CURLOPT_FORBID_REUSE, 1L);
        curl_easy_setopt(h, CURLOPT_TIMEOUT, 30L);
        curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, sink);
        const double t0 = time_monotonic();
        CURLcode cc = curl_easy_perform(h);
        t[i] = 1e3 * (time_monotonic() - t0);
        curl_easy_cleanup(h);
        if (cc != CURLE_OK) return err_set(ERR_STAGE, "GET %s: %s", url, curl_easy_strerror(cc));
    }
    *ms = percentile(t, 15, 0.5);
    return 0;
}

static int start_request(CURLM *mh, http_req *r, const char *url, const char *model_name, const bw_prompt *p,
                         struct curl_slist *hdr) {
    strbuf *b = &r->body;
    int rc = sb_puts(b, "{\"model\": ") || sb_json_string(b, model_name) || sb_puts(b, ", \"prompt\": [");
    for (int i = 0; i < p->n_tokens && !rc; i++) rc = sb_printf(b, "%s%d", i ? "," : "", p->tokens[i]);
    rc = rc || sb_printf(b, "], \"max_tokens\": %d, \"temperature\": 0, \"stream\": true, \"ignore_eos\": true, "
                            "\"stream_options\": {\"include_usage\": true}}", p->output);
    if (rc || !(r->h = curl_easy_init())) return err_set(ERR_NOMEM, "an HTTP request");
    curl_easy_setopt(r->h, CURLOPT_URL, url);
    curl_easy_setopt(r->h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(r->h, CURLOPT_HTTPHEADER, hdr);
    curl_easy_setopt(r->h, CURLOPT_POSTFIELDS, sb_str(b));
    curl_easy_setopt(r->h, CURLOPT_POSTFIELDSIZE, (long)b->len);
    curl_easy_setopt(r->h, CURLOPT_WRITEFUNCTION, on_bytes);
    curl_easy_setopt(r->h, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(r->h, CURLOPT_PRIVATE, r);
    curl_easy_setopt(r->h, CURLOPT_TIMEOUT, HTTP_REQUEST_TIMEOUT_S);
    if (curl_multi_add_handle(mh, r->h) != CURLM_OK) return err_set(ERR_STAGE, "curl_multi_add_handle failed");
    return 0;
}

static void finish_request(http_req *r, CURLcode cc, double now) {
    long status = 0;
    curl_easy_getinfo(r->h, CURLINFO_RESPONSE_CODE, &status);
    req_trace *t = r->t;
    t->finish = now;
    t->output_tokens = r->usage_tokens > 0 ? r->usage_tokens : r->chunks;
    t->cached_tokens = r->cached;
    t->error = cc != CURLE_OK || status != 200 || r->bad || !r->done_marker || r->chunks == 0;
    if (t->error)
        log_warn("request %d failed: %s, HTTP %ld%s%s", r->idx, curl_easy_strerror(cc), status,
                 r->bad ? ", an error in the stream" : "", !r->done_marker ? ", no [DONE]" : "");
}

int bench_http(stage_ctx *ctx, const bench_params *bp, bench_state *st) {
    (void)ctx;
    const workload *w = &st->w;
    const int n = w->n_groups * w->k;
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) return err_set(ERR_STAGE, "curl_global_init failed");
    char base[1024], url[1100];
    snprintf(base, sizeof base, "%s", bp->target);
    size_t bl = strlen(base);
    while (bl && base[bl - 1] == '/') base[--bl] = 0;
    cJSON *models = NULL;
    snprintf(url, sizeof url, "%s/v1/models", base);
    if (get_json(url, &models)) return -1;
    const cJSON *d0 = cJSON_GetArrayItem(cJSON_GetObjectItem(models, "data"), 0), *id = cJSON_GetObjectItem(d0, "id");
    if (!cJSON_IsString(id)) {
        cJSON_Delete(models);
        return err_set(ERR_STAGE, "%s lists no model (expected {\"data\": [{\"id\": ...}]})", url);
    }
    snprintf(st->served_model, sizeof st->served_model, "%s", id->valuestring);
    cJSON_Delete(models);
    if (measure_overhead(base, &st->http_overhead_ms)) return -1;
    log_info("target %s serves '%s'; HTTP round trip %.2f ms; sending %d requests", base, st->served_model,
             st->http_overhead_ms, n);
    snprintf(url, sizeof url, "%s/v1/completions", base);
    run_result *res = &st->res;
    memset(res, 0, sizeof *res);
    res->n = n;
    res->tr = xcalloc((size_t)n, sizeof *res->tr);
    http_req *reqs = xcalloc((size_t)n, sizeof *reqs);
    CURLM *mh = curl_multi_init();
    struct curl_slist *hdr = curl_slist_append(NULL, "Content-Type: application/json");
    int rc = -1, done = 0, next = 0;
    if (!res->tr || !reqs || !mh || !hdr) goto out;
    curl_multi_setopt(mh, CURLMOPT_MAX_HOST_CONNECTIONS, 0L);
    for (int i = 0; i < n; i++) {
        req_trace *t = &res->tr[i];
        t->group = i / w->k, t->cand = i % w->k;
        t->arrival = workload_arrival(w, &bp->arrival, bp->rate, t->group);
        t->prompt_tokens = w->prompts[i].n_tokens;
        t->first = t->finish = -1;
    }
    const double t0 = time_monotonic();
    while (done < n) {
        const double now = time_monotonic() - t0;
        for (; next < w->n_groups && res->tr[next * w->k].arrival <= now; next++)
            for (int j = 0; j < w->k; j++) {
                const int i = next * w->k + j;
                reqs[i] = (http_req){.idx = i, .t = &res->tr[i], .t0 = t0};
                if (start_request(mh, &reqs[i], url, st->served_model, &w->prompts[i], hdr)) goto out;
            }
        int running;
        curl_multi_perform(mh, &running);
        CURLMsg *msg;
        int left;
        while ((msg = curl_multi_info_read(mh, &left)))
            if (msg->msg == CURLMSG_DONE) {
                http_req *r;
                curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&r);
                finish_request(r, msg->data.result, time_monotonic() - t0);
                curl_multi_remove_handle(mh, r->h);
                curl_easy_cleanup(r->h);
                r->h = NULL;
                done++;
            }
        double wait = next < w->n_groups ? res->tr[next * w->k].arrival - (time_monotonic() - t0) : 1.0;
        int ms = wait <= 0 ? 0 : wait > 1 ? 1000 : (int)ceil(wait * 1e3);
        if (done < n) curl_multi_poll(mh, NULL, 0, ms, NULL);
    }
    run_summarize(res, &st->sum);
    log_info("TTFT p50 %.2f ms, p99 %.2f ms over HTTP; %d of %d requests failed", st->sum.ttft_p50, st->sum.ttft_p99,
             st->sum.n_err, n);
    rc = st->sum.n_ok > 0 ? 0 : err_set(ERR_STAGE, "every request to %s failed (see the log)", url);
out:
    for (int i = 0; reqs && i < n; i++) {
        if (reqs[i].h) {
            curl_multi_remove_handle(mh, reqs[i].h);
            curl_easy_cleanup(reqs[i].h);
        }
        sb_free(&reqs[i].line);
        sb_free(&reqs[i].body);
    }
    free(reqs);
    curl_slist_free_all(hdr);
    if (mh) curl_multi_cleanup(mh);
    curl_global_cleanup();
    return rc;
}
