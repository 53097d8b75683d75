/* cmd_generate.c: `smelt generate MODEL [--tokenizer FILE] [--prompt TEXT | --chat MESSAGE
 * [--system TEXT]] [--max-tokens N] [--temperature T] [--top-p P] [--seed S] [--threads N]`: text
 * generation with the CPU engine and a KV cache, printed on stdout as it is produced; statistics
 * on stderr. --chat renders the message with the model's chat template (model/chat.h). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd/cli.h"
#include "cmd/commands.h"
#include "common/error.h"
#include "common/fsutil.h"
#include "common/log.h"
#include "kernels/threads.h"
#include "model/chat.h"
#include "model/checkpoint.h"
#include "model/model_load.h"
#include "model/qmodel.h"
#include "model/model.h"
#include "model/sample.h"
#include "model/tokenizer.h"

typedef struct {
    const char *model, *tokenizer, *prompt, *chat, *system;
    long max_tokens;
    double temperature, top_p;
    unsigned long long seed;
    int threads;
} gen_opts;

static int parse_long(const char *s, long lo, long hi, long *out) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) return -1;
    *out = v;
    return 0;
}

static int parse_double(const char *s, double lo, double hi, double *out) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !(v >= lo && v <= hi)) return -1;
    *out = v;
    return 0;
}

static int parse_args(int argc, char **argv, gen_opts *o) {
    *o = (gen_opts){.max_tokens = 256, .temperature = 1.0, .top_p = 1.0, .seed = 1234, .threads = 0};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        long l;
        if (!strcmp(a, "--tokenizer") || !strcmp(a, "--prompt") || !strcmp(a, "--chat") || !strcmp(a, "--system") ||
            !strcmp(a, "--max-tokens") ||
            !strcmp(a, "--temperature") || !strcmp(a, "--top-p") || !strcmp(a, "--seed") || !strcmp(a, "--threads")) {
            if (!v) return cli_usage_error("generate", "%s needs a value", a);
            i++;
            if (!strcmp(a, "--tokenizer")) o->tokenizer = v;
            else if (!strcmp(a, "--prompt")) o->prompt = v;
            else if (!strcmp(a, "--chat")) o->chat = v;
            else if (!strcmp(a, "--system")) o->system = v;
            else if (!strcmp(a, "--max-tokens")) {
                if (parse_long(v, 1, 1L << 30, &o->max_tokens))
                    return cli_usage_error("generate", "--max-tokens '%s': expected a positive integer", v);
            } else if (!strcmp(a, "--temperature")) {
                if (parse_double(v, 0, 100, &o->temperature))
                    return cli_usage_error("generate", "--temperature '%s': expected a number >= 0 (0: greedy)", v);
            } else if (!strcmp(a, "--top-p")) {
                if (parse_double(v, 0, 1, &o->top_p) || o->top_p == 0)
                    return cli_usage_error("generate", "--top-p '%s': expected a number in (0, 1]", v);
            } else if (!strcmp(a, "--seed")) {
                if (parse_long(v, 0, 0x7fffffffffffffffL, &l))
                    return cli_usage_error("generate", "--seed '%s': expected a non-negative integer", v);
                o->seed = (unsigned long long)l;
            } else {
                if (parse_long(v, 1, 4096, &l))
                    return cli_usage_error("generate", "--threads '%s': expected 1 to 4096", v);
                o->threads = (int)l;
            }
        } else if (a[0] == '-' && a[1]) {
            return cli_usage_error("generate", "unknown option '%s'", a);
        } else if (!o->model) {
            o->model = a;
        } else {
            return cli_usage_error("generate", "unexpected argument '%s' (quote a prompt and pass it with --prompt)", a);
        }
    }
    if (!o->model)
        return cli_usage_error("generate", "which model? give a Hugging Face folder, a .gguf file or a llama2.c .bin");
    if (o->prompt && o->chat) return cli_usage_error("generate", "give --prompt or --chat, not both");
    if (o->system && !o->chat) return cli_usage_error("generate", "--system goes with --chat");
    return 0;
}

/* Prints the text of ids[0..n) beyond the `printed` bytes already shown (decoding the whole
 * sequence keeps multi-token characters and sentencepiece spaces right). */
static int print_new_text(const tokenizer *tok, const int32_t *ids, size_t n, size_t *printed) {
    char *text;
    size_t len;
    if (tokenizer_decode(tok, ids, n, &text, &len)) return -1;
    if (len > *printed) {
        fwrite(text + *printed, 1, len - *printed, stdout);
        fflush(stdout);
        *printed = len;
    }
    free(text);
    return 0;
}

static int is_stop(const model_config *c, const tokenizer *tok, int id, int llama2c, int chat) {
    if (id == c->eos_id || id == tokenizer_eos_id(tok)) return 1;
    /* a chat turn ends with the template's end-of-turn token */
    if (chat && (id == tokenizer_token_id(tok, "<|im_end|>") || id == tokenizer_token_id(tok, "<|eot_id|>"))) return 1;
    for (int i = 0; i < c->n_eos; i++)
        if (id == c->eos_ids[i]) return 1;
    /* llama2.c models mark the start of the next document with BOS (run.c stops there too) */
    return llama2c && id == c->bos_id;
}

/* The chat message (after the optional system message) rendered with the model's template. */
static int encode_chat(const tokenizer *tok, const gen_opts *o, int32_t **ids, size_t *n) {
    chat_template t;
    if (chat_template_parse(&t, tokenizer_chat_template(tok))) return err_prefix("--chat: ");
    chat_message m[2];
    int k = 0;
    if (o->system) m[k++] = (chat_message){"system", o->system};
    m[k++] = (chat_message){"user", o->chat};
    strbuf sb = STRBUF_INIT;
    size_t bl = 0;
    const char *bos = tokenizer_bos_id(tok) >= 0 ? tokenizer_piece(tok, tokenizer_bos_id(tok), &bl) : NULL;
    char *bos_text = bos ? strndup(bos, bl) : NULL;
    int rc = chat_render(&sb, &t, m, k, 1, bos_text) || tokenizer_encode(tok, sb_str(&sb), sb.len, ids, n) ? -1 : 0;
    free(bos_text);
    sb_free(&sb);
    chat_template_free(&t);
    return rc;
}

static int generate(const gen_opts *o) {
    int rc = -1;
    model m;
    tokenizer *tok = NULL;
    kv_cache kv = {0};
    sampler smp = {0};
    int32_t *ids = NULL, *prompt = NULL;
    float *logits = NULL;
    size_t n_prompt = 0, printed = 0;
    memset(&m, 0, sizeof m);
    kernels_set_threads(o->threads);

    const int llama2c = checkpoint_detect(o->model) == CKPT_LLAMA2C;
    err_clear();
    const char *tok_spec = o->tokenizer;
    if (!tok_spec) {
        if (!fs_is_dir(o->model) && checkpoint_detect(o->model) != CKPT_GGUF)
            return err_set(ERR_INPUT, "%s is not a folder or a GGUF file, so it carries no tokenizer; pass --tokenizer FILE",
                           o->model);
        err_clear();
        tok_spec = o->model; /* a folder's tokenizer files, or the GGUF file's own metadata */
    }
    if (model_load(&m, o->model)) return -1;
    const model_config cfg = m.cfg;
    if (model_is_quantized(&m)) log_info("%s runs with quantized linears", o->model);
    if (tokenizer_load(&tok, tok_spec)) goto done;
    if (tokenizer_vocab_size(tok) > cfg.vocab) {
        err_set(ERR_INPUT, "the tokenizer %s has %d tokens but the model only %d; they do not belong together", tok_spec,
                tokenizer_vocab_size(tok), cfg.vocab);
        goto done;
    }
    if (o->chat ? encode_chat(tok, o, &prompt, &n_prompt)
                : o->prompt && tokenizer_encode(tok, o->prompt, strlen(o->prompt), &prompt, &n_prompt))
        goto done;
    /* BOS when the tokenizer says the model expects it (a chat template writes its own) */
    int bos = -1;
    if (!o->chat) bos = tokenizer_bos_id(tok) < 0 ? cfg.bos_id : tokenizer_add_bos(tok) ? tokenizer_bos_id(tok) : -1;
    long n_ctx = (long)n_prompt + (bos >= 0) + o->max_tokens;
    if (cfg.max_pos > 0 && n_ctx > cfg.max_pos) {
        if ((long)n_prompt + (bos >= 0) >= cfg.max_pos) {
            err_set(ERR_INPUT, "the prompt has %zu tokens but the model's context is %d positions; shorten the prompt",
                    n_prompt, cfg.max_pos);
            goto done;
        }
        log_warn("stopping after %ld new tokens: the model's context is %d positions",
                 cfg.max_pos - (long)n_prompt - (bos >= 0), cfg.max_pos);
        n_ctx = cfg.max_pos;
    }
    ids = xmalloc(sizeof(int32_t) * (size_t)n_ctx);
    logits = xmalloc(sizeof(float) * (size_t)cfg.vocab);
    if (!ids || !logits || kv_cache_init(&kv, &cfg, (int)n_ctx) ||
        sampler_init(&smp, cfg.vocab, (float)o->temperature, (float)o->top_p, o->seed))
        goto done;
    size_t n = 0;
    if (bos >= 0) ids[n++] = bos;
    for (size_t i = 0; i < n_prompt; i++) ids[n++] = prompt[i];
    if (n == 0) {
        err_set(ERR_INPUT, "nothing to start from: the prompt is empty and the tokenizer has no BOS token");
        goto done;
    }
    if (print_new_text(tok, ids, n, &printed)) goto done;
    double t0 = time_monotonic();
    if (model_extend(&m, &kv, ids, (int)n, NULL, 1, logits)) goto done;
    double t_prefill = time_monotonic() - t0;
    size_t n_new = 0;
    while ((long)n < n_ctx) {
        int next = sampler_sample(&smp, logits);
        if (is_stop(&cfg, tok, next, llama2c, o->chat != NULL)) break;
        ids[n++] = next;
        n_new++;
        if (print_new_text(tok, ids, n, &printed)) goto done;
        if ((long)n < n_ctx && model_decode(&m, &kv, next, logits)) goto done;
    }
    double t_all = time_monotonic() - t0;
    printf("\n");
    fflush(stdout);
    log_info("prompt %zu tokens in %.3f s; %zu new tokens, %.1f tokens/s (%d threads)", n - n_new, t_prefill, n_new,
             n_new / (t_all - t_prefill > 0 ? t_all - t_prefill : 1e-9), kernels_threads());
    rc = 0;
done:
    sampler_free(&smp);
    kv_cache_free(&kv);
    free(ids), free(prompt), free(logits);
    tokenizer_free(tok);
    model_free(&m);
    return rc;
}

int cmd_generate(int argc, char **argv) {
    gen_opts o;
    int rc = parse_args(argc, argv, &o);
    if (rc) return rc;
    return generate(&o) ? cli_fail("generate") : EXIT_OK;
}
