/* cmd_tokenize.c: `smelt tokenize`: encode text to ids, decode ids to text, describe a
 * tokenizer, or convert one to Hugging Face files (--save-hf). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd/cli.h"
#include "cmd/commands.h"
#include "common/error.h"
#include "common/strbuf.h"
#include "model/tokenizer.h"

static int read_stdin(strbuf *sb) {
    char buf[65536];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, stdin)) > 0)
        if (sb_append(sb, buf, n)) return -1;
    if (ferror(stdin)) return err_errno("cannot read standard input");
    return 0;
}

static const char *format_name(tokenizer_format_t f) {
    switch (f) {
    case TOKENIZER_HF_JSON: return "tokenizer.json";
    case TOKENIZER_HF_VOCAB: return "vocab.json+merges.txt";
    case TOKENIZER_TIKTOKEN: return "tiktoken";
    case TOKENIZER_LLAMA2C: return "llama2.c";
    case TOKENIZER_BUILTIN_BYTES: return "builtin:bytes";
    case TOKENIZER_GGUF: return "gguf";
    }
    return "?";
}

static int parse_ids(const char *cmd, strbuf *src, int32_t **ids, size_t *n) {
    size_t cap = 64;
    *n = 0;
    *ids = malloc(cap * sizeof **ids);
    if (!*ids) return cli_usage_error(cmd, "out of memory");
    for (char *p = src->buf ? src->buf : ""; *p;) {
        while (*p == ' ' || *p == '\n' || *p == '\t' || *p == '\r' || *p == ',') p++;
        if (!*p) break;
        char *end;
        errno = 0;
        long v = strtol(p, &end, 10);
        if (end == p || errno || v < INT32_MIN || v > INT32_MAX ||
            (*end && *end != ' ' && *end != '\n' && *end != '\t' && *end != '\r' && *end != ',')) {
            return cli_usage_error(cmd, "'%.32s' is not a token id; --decode takes integer ids", p);
        }
        if (*n == cap) {
            cap *= 2;
            int32_t *q = realloc(*ids, cap * sizeof *q);
            if (!q) return cli_usage_error(cmd, "out of memory");
            *ids = q;
        }
        (*ids)[(*n)++] = (int32_t)v;
        p = end;
    }
    return EXIT_OK;
}

int cmd_tokenize(int argc, char **argv) {
    const char *spec = NULL, *save_dir = NULL;
    int decode = 0, json = 0, info = 0, i;
    for (i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--")) {
            i++;
            break;
        } else if (!strcmp(a, "--tokenizer") || !strcmp(a, "-t")) {
            if (++i >= argc) return cli_usage_error(argv[0], "%s needs a value", a);
            spec = argv[i];
        } else if (!strncmp(a, "--tokenizer=", 12)) {
            spec = a + 12;
        } else if (!strcmp(a, "--save-hf")) {
            if (++i >= argc) return cli_usage_error(argv[0], "--save-hf needs a directory");
            save_dir = argv[i];
        } else if (!strcmp(a, "--decode") || !strcmp(a, "-d")) {
            decode = 1;
        } else if (!strcmp(a, "--json")) {
            json = 1;
        } else if (!strcmp(a, "--info")) {
            info = 1;
        } else if (a[0] == '-' && a[1] && !(decode && a[1] >= '0' && a[1] <= '9')) {
            return cli_usage_error(argv[0], "unknown option '%s'", a);
        } else {
            break;
        }
    }
    if (!spec) return cli_usage_error(argv[0], "--tokenizer FILE is required");
    if (json && decode) return cli_usage_error(argv[0], "--json applies to encoding only; --decode prints the text");
    tokenizer *tok;
    if (tokenizer_load(&tok, spec)) return cli_fail(argv[0]);
    int rc = EXIT_OK;
    if (info || save_dir) {
        if (save_dir && tokenizer_save_hf(tok, save_dir)) rc = cli_fail(argv[0]);
        if (info && rc == EXIT_OK)
            printf("format %s\nvocab_size %ld\nbos %ld\neos %ld\nsource %s\n", format_name(tokenizer_format(tok)),
                   (long)tokenizer_vocab_size(tok), (long)tokenizer_bos_id(tok), (long)tokenizer_eos_id(tok),
                   tokenizer_source(tok));
        tokenizer_free(tok);
        return rc;
    }
    /* The input: the remaining arguments joined by one space, or standard input for none or "-". */
    strbuf in = STRBUF_INIT;
    if (i >= argc || (i == argc - 1 && !strcmp(argv[i], "-"))) {
        if (read_stdin(&in)) rc = cli_fail(argv[0]);
    } else {
        for (int k = i; k < argc && rc == EXIT_OK; k++)
            if ((k > i && sb_putc(&in, ' ')) || sb_puts(&in, argv[k])) rc = cli_fail(argv[0]);
    }
    if (rc == EXIT_OK && !decode) {
        int32_t *ids;
        size_t n;
        if (tokenizer_encode(tok, in.buf ? in.buf : "", in.len, &ids, &n)) {
            rc = cli_fail(argv[0]);
        } else {
            fputs(json ? "{\"ids\": [" : "", stdout);
            for (size_t k = 0; k < n; k++) printf(k ? (json ? ", %ld" : " %ld") : "%ld", (long)ids[k]);
            fputs(json ? "]}\n" : "\n", stdout);
            free(ids);
        }
    } else if (rc == EXIT_OK) {
        int32_t *ids = NULL;
        size_t n = 0;
        rc = parse_ids(argv[0], &in, &ids, &n);
        char *text = NULL;
        size_t len;
        if (rc == EXIT_OK && tokenizer_decode(tok, ids, n, &text, &len)) rc = cli_fail(argv[0]);
        if (rc == EXIT_OK) {
            fwrite(text, 1, len, stdout);
            fputc('\n', stdout);
        }
        free(text);
        free(ids);
    }
    sb_free(&in);
    tokenizer_free(tok);
    if (fflush(stdout) && rc == EXIT_OK) rc = EXIT_FAILED;
    return rc;
}
