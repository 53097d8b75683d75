/* cmd_serve.c: `smelt serve MODEL [--port P] [--host H] ...`: loads a model (and its tokenizer),
 * starts the OpenAI-compatible server (serve/server.h) and runs until SIGINT or SIGTERM. */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cmd/cli.h"
#include "cmd/commands.h"
#include "common/error.h"
#include "common/fsutil.h"
#include "common/log.h"
#include "kernels/threads.h"
#include "model/model_load.h"
#include "model/qmodel.h"
#include "serve/server.h"

typedef struct {
    const char *model, *tokenizer, *host, *name, *chat, *port_file;
    long port, max_tokens, max_batch_tokens, max_seqs, block_size, threads, max_connections, max_body_kb;
    double kv_budget_mb;
    int prefix_cache, kv_f16;
} serve_args;

static int num(const char *flag, const char *v, double lo, double hi, double *out) {
    char *end;
    errno = 0;
    double d = v ? strtod(v, &end) : 0;
    if (!v || errno || end == v || *end || !(d >= lo && d <= hi))
        return cli_usage_error("serve", "%s '%s': expected a number from %g to %g", flag, v ? v : "", lo, hi);
    *out = d;
    return 0;
}

static int parse(int argc, char **argv, serve_args *a) {
    *a = (serve_args){.host = "127.0.0.1", .port = 8000, .max_tokens = 256, .max_batch_tokens = 1024, .max_seqs = 64,
                      .block_size = 16, .max_connections = 1024, .max_body_kb = 1024, .kv_budget_mb = 256,
                      .prefix_cache = 1};
    static const struct { const char *flag; double lo, hi; } nums[] = {
        {"--port", 0, 65535}, {"--max-tokens", 1, 1 << 24}, {"--max-batch-tokens", 1, 1 << 20}, {"--max-seqs", 1, 65536},
        {"--block-size", 1, 1024}, {"--threads", 1, 4096}, {"--max-connections", 1, 65536},
        {"--max-body-kb", 1, 1 << 20}, {"--kv-budget-mb", 1e-3, 1 << 20},
    };
    long *dst[] = {&a->port, &a->max_tokens, &a->max_batch_tokens, &a->max_seqs, &a->block_size, &a->threads,
                   &a->max_connections, &a->max_body_kb, NULL};
    for (int i = 1; i < argc; i++) {
        const char *f = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int matched = 0;
        for (size_t k = 0; k < sizeof nums / sizeof nums[0] && !matched; k++) {
            if (strcmp(f, nums[k].flag)) continue;
            double d = 0;
            if (num(f, v, nums[k].lo, nums[k].hi, &d)) return EXIT_USAGE;
            if (dst[k]) *dst[k] = (long)d;
            else a->kv_budget_mb = d;
            matched = 1, i++;
        }
        if (matched) continue;
        const char **sdst = !strcmp(f, "--host") ? &a->host : !strcmp(f, "--tokenizer") ? &a->tokenizer
                          : !strcmp(f, "--served-model-name") ? &a->name : !strcmp(f, "--chat-template") ? &a->chat
                          : !strcmp(f, "--port-file") ? &a->port_file : NULL;
        if (sdst) {
            if (!v) return cli_usage_error("serve", "%s needs a value", f);
            *sdst = v, i++;
        } else if (!strcmp(f, "--kv-dtype")) {
            if (!v || (strcmp(v, "f32") && strcmp(v, "f16"))) return cli_usage_error("serve", "--kv-dtype f32|f16");
            a->kv_f16 = !strcmp(v, "f16"), i++;
        } else if (!strcmp(f, "--prefix-cache")) {
            if (!v || (strcmp(v, "on") && strcmp(v, "off"))) return cli_usage_error("serve", "--prefix-cache on|off");
            a->prefix_cache = !strcmp(v, "on"), i++;
        } else if (f[0] == '-' && f[1]) {
            return cli_usage_error("serve", "unknown option '%s'", f);
        } else if (!a->model) {
            a->model = f;
        } else {
            return cli_usage_error("serve", "unexpected argument '%s'", f);
        }
    }
    if (!a->model) return cli_usage_error("serve", "which model? give a Hugging Face folder or a llama2.c .bin");
    if (a->chat && strcmp(a->chat, "chatml") && strcmp(a->chat, "llama3"))
        return cli_usage_error("serve", "--chat-template '%s': expected chatml or llama3", a->chat);
    return 0;
}

static int serve(const serve_args *a) {
    model m;
    tokenizer *tok = NULL;
    engine *e = NULL;
    serve_server *srv = NULL;
    chat_template ct = {0};
    int have_ct = 0, rc = -1;
    memset(&m, 0, sizeof m);
    kernels_set_threads((int)a->threads);
    if (model_load(&m, a->model)) return err_prefix("loading %s: ", a->model); /* dense or quantized */
    const model_config cfg = m.cfg;
    /* the tokenizer: --tokenizer, else the model's folder, else a GGUF file's own metadata */
    const size_t ml = strlen(a->model);
    const int gguf = ml > 5 && !strcmp(a->model + ml - 5, ".gguf");
    const char *tspec = a->tokenizer ? a->tokenizer : fs_is_dir(a->model) || gguf ? a->model : NULL;
    if (tspec && tokenizer_load(&tok, tspec)) {
        if (a->tokenizer) goto done;
        log_warn("no tokenizer in %s (%s): only token-id prompts will be accepted; pass --tokenizer", tspec, err_msg());
        err_clear();
        tok = NULL;
    }
    if (tok && tokenizer_vocab_size(tok) > cfg.vocab) {
        err_set(ERR_INPUT, "the tokenizer has %d tokens but the model only %d; they do not belong together",
                tokenizer_vocab_size(tok), cfg.vocab);
        goto done;
    }
    engine_opts eo = engine_opts_default();
    eo.block_size = (int)a->block_size, eo.kv_budget_mb = a->kv_budget_mb, eo.max_batch_tokens = (int)a->max_batch_tokens;
    eo.max_seqs = (int)a->max_seqs, eo.prefix_cache = a->prefix_cache, eo.kv_f16 = a->kv_f16;
    if (engine_create(&e, &m, &eo)) goto done;
    char name[256];
    if (a->name) snprintf(name, sizeof name, "%s", a->name);
    else {
        const char *p = a->model + strlen(a->model);
        while (p > a->model && p[-1] == '/') p--;
        const char *end = p;
        while (p > a->model && p[-1] != '/') p--;
        snprintf(name, sizeof name, "%.*s", (int)(end - p), p);
    }
    /* the chat template: --chat-template, else the model's own (tokenizer_config.json, GGUF metadata) */
    if (a->chat) {
        ct.family = !strcmp(a->chat, "chatml") ? CHAT_CHATML : CHAT_LLAMA3;
        ct.bos = ct.family == CHAT_LLAMA3;
        have_ct = 1;
    } else if (tok && tokenizer_chat_template(tok)) {
        if (chat_template_parse(&ct, tokenizer_chat_template(tok))) {
            log_warn("%s; /v1/chat/completions will refuse requests (or pass --chat-template)", err_msg());
            err_clear();
        } else have_ct = 1;
    }
    serve_opts so = {.host = a->host, .port = (int)a->port, .model_name = name,
                     .max_body_bytes = (size_t)a->max_body_kb * 1024, .max_tokens = (int)a->max_tokens,
                     .max_connections = (int)a->max_connections, .chat = have_ct ? &ct : NULL};
    /* SIGINT/SIGTERM are blocked in every thread (the server's threads inherit the mask) and taken
     * by sigwait below; SIGPIPE from a closed socket is ignored (the write returns EPIPE) */
    signal(SIGPIPE, SIG_IGN);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    if (serve_start(&srv, e, tok, &so)) goto done;
    log_info("serving '%s'%s on http://%s:%d (chat template %s, %d threads, %s KV %g MiB in blocks of %d, prefix cache %s)",
             name, model_is_quantized(&m) ? " (quantized linears)" : "", a->host, serve_port(srv),
             !have_ct ? "none" : ct.family == CHAT_CHATML ? "ChatML" : "Llama 3", kernels_threads(), eo.kv_f16 ? "fp16" : "fp32", eo.kv_budget_mb, eo.block_size, eo.prefix_cache ? "on" : "off");
    if (a->port_file) {
        char buf[32];
        int n = snprintf(buf, sizeof buf, "%d\n", serve_port(srv));
        if (fs_write_atomic(a->port_file, buf, (size_t)n)) goto done;
    }
    int sig = 0;
    sigwait(&set, &sig);
    log_info("stopping (signal %d)", sig);
    rc = 0;
done:
    serve_stop(srv);
    if (have_ct) chat_template_free(&ct);
    engine_free(e);
    tokenizer_free(tok);
    model_free(&m);
    return rc;
}

int cmd_serve(int argc, char **argv) {
    serve_args a;
    int rc = parse(argc, argv, &a);
    if (rc) return rc;
    return serve(&a) ? cli_fail("serve") : EXIT_OK;
}
