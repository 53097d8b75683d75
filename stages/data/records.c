/* records.c: the `pairs` and `text` sources. pairs: JSONL or a JSON list of records, each either
 * prompt/response fields, an Alpaca-style instruction/input/output record (rendered with the
 * Alpaca template), or a chat `messages` list (the last assistant message is the response).
 * With `template: chat` every record is rendered with the model's chat template instead (a
 * prompt/response or Alpaca record as one user message and the answer).
 * text: plain .txt files (one document each) or JSONL with a text field, from a file or a folder
 * (its .txt/.jsonl files in name order), for generic calibration sets. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "common/fsutil.h"
#include "common/strbuf.h"
#include "model/chat.h"
#include "stages/data/source.h"
#include "stages/params.h"

#define REC_MAX_BYTES ((size_t)2 << 30)

/* Takes ownership of the strings; NULL ones mean an allocation failed (response: when wanted). */
static int add_record(rs_records *r, char *prompt, char *response, char *where, int want_response) {
    if (!prompt || !where || (want_response && !response)) goto fail;
    if (r->n == r->cap) {
        int64_t cap = r->cap ? 2 * r->cap : 256;
        rs_record *p = xrealloc(r->r, (size_t)cap * sizeof *p);
        if (!p) goto fail;
        r->r = p;
        r->cap = cap;
    }
    r->r[r->n++] = (rs_record){prompt, response, where, NULL};
    return 0;
fail:
    free(prompt);
    free(response);
    free(where);
    return -1;
}

typedef struct {
    const char *prompt, *response, *instruction, *input, *output, *messages;
    const chat_template *chat; /* NULL: plain text */
    const char *bos_text;
} pair_fields;

static const char *str_field(const cJSON *o, const char *k) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* A conversation ending with the answer m[n-1], rendered with the chat template: the prompt is
 * everything up to the assistant's turn (with the generation prompt), the response the answer as
 * the template writes it (Llama 3 trims it), the suffix what ends the turn. */
static int chat_record(rs_records *out, const chat_message *m, int n, const pair_fields *f, const char *where) {
    strbuf p = STRBUF_INIT, full = STRBUF_INIT;
    int rc = -1;
    if (chat_render(&p, f->chat, m, n - 1, 1, f->bos_text) || chat_render(&full, f->chat, m, n, 0, f->bos_text)) goto out;
    const char *ans = m[n - 1].content, *rest = full.len >= p.len ? sb_str(&full) + p.len : "";
    size_t al = strlen(ans);
    if (strncmp(rest, ans, al)) { /* the template may trim the answer (Llama 3) */
        while (al && strchr(" \t\r\n", *ans)) ans++, al--;
        while (al && strchr(" \t\r\n", ans[al - 1])) al--;
    }
    if (full.len < p.len || memcmp(full.buf, sb_str(&p), p.len) || strncmp(rest, ans, al)) {
        rc = err_set(ERR_INPUT, "%s: the chat template does not render the answer after the prompt; use template: plain",
                     where);
        goto out;
    }
    rc = add_record(out, sb_detach(&p), xstrndup(ans, al), xstrdup(where), 1);
    if (!rc && !(out->r[out->n - 1].suffix = xstrdup(rest + al))) rc = -1;
out:
    sb_free(&p);
    sb_free(&full);
    return rc;
}

static int pair_record(rs_records *out, const cJSON *o, const pair_fields *f, const char *where) {
    if (!cJSON_IsObject(o)) return err_set(ERR_INPUT, "%s: a record must be a JSON object", where);
    const cJSON *msgs = cJSON_GetObjectItemCaseSensitive(o, f->messages);
    if (msgs) {
        int n = cJSON_GetArraySize(msgs), last = -1;
        if (!cJSON_IsArray(msgs) || n < 2) return err_set(ERR_INPUT, "%s: '%s' must list at least two messages", where, f->messages);
        for (int i = 0; i < n; i++) {
            const cJSON *m = cJSON_GetArrayItem(msgs, i);
            const char *role = str_field(m, "role"), *content = str_field(m, "content");
            if (!role || !content)
                return err_set(ERR_INPUT, "%s: message %d needs string 'role' and 'content'", where, i);
            if (!strcmp(role, "assistant")) last = i;
        }
        if (last < 1) return err_set(ERR_INPUT, "%s: no assistant message after the first; nothing to learn", where);
        if (f->chat) {
            chat_message *m = xcalloc((size_t)last + 1, sizeof *m);
            if (!m) return -1;
            for (int i = 0; i <= last; i++) {
                const cJSON *e = cJSON_GetArrayItem(msgs, i);
                m[i] = (chat_message){str_field(e, "role"), str_field(e, "content")};
            }
            int rc = chat_record(out, m, last + 1, f, where);
            free(m);
            return rc;
        }
        strbuf sb = STRBUF_INIT;
        for (int i = 0; i < last; i++) {
            const cJSON *m = cJSON_GetArrayItem(msgs, i);
            const char *role = str_field(m, "role");
            sb_printf(&sb, "%c%s: %s\n", role[0] >= 'a' && role[0] <= 'z' ? role[0] - 32 : role[0], role + 1,
                      str_field(m, "content"));
        }
        sb_puts(&sb, "Assistant:");
        char *resp = xasprintf(" %s", str_field(cJSON_GetArrayItem(msgs, last), "content"));
        return add_record(out, sb.buf ? sb_detach(&sb) : NULL, resp, xstrdup(where), 1);
    }
    const char *ins = str_field(o, f->instruction), *outp = str_field(o, f->output);
    if (ins && outp) {
        const char *in = str_field(o, f->input);
        char *prompt = in && in[0]
                           ? xasprintf("Below is an instruction that describes a task, paired with an input that provides "
                                       "further context. Write a response that appropriately completes the request.\n\n"
                                       "### Instruction:\n%s\n\n### Input:\n%s\n\n### Response:\n", ins, in)
                           : xasprintf("Below is an instruction that describes a task. Write a response that "
                                       "appropriately completes the request.\n\n### Instruction:\n%s\n\n### Response:\n",
                                       ins);
        if (f->chat && prompt) {
            /* the instruction (and input) as the user's message */
            char *user = in && in[0] ? xasprintf("%s\n\n%s", ins, in) : xstrdup(ins);
            chat_message m[2] = {{"user", user}, {"assistant", outp}};
            int rc = user ? chat_record(out, m, 2, f, where) : -1;
            free(user);
            free(prompt);
            return rc;
        }
        return add_record(out, prompt, xstrdup(outp), xstrdup(where), 1);
    }
    const char *p = str_field(o, f->prompt), *r = str_field(o, f->response);
    if (p && r && f->chat) {
        chat_message m[2] = {{"user", p}, {"assistant", r}};
        return chat_record(out, m, 2, f, where);
    }
    if (p && r) return add_record(out, xstrdup(p), xstrdup(r), xstrdup(where), 1);
    return err_set(ERR_INPUT, "%s: the record has neither string fields '%s'/'%s', nor '%s'/'%s' (Alpaca), nor a '%s' "
                   "list; set fields: in the recipe to the names your file uses", where, f->prompt, f->response,
                   f->instruction, f->output, f->messages);
}

/* Calls fn on every record of a JSON list or of JSONL lines, with "file:line" (JSONL) or
 * "file[index]" (JSON list) for messages. */
static int each_json(const char *path, const char *data, size_t len, const char *format,
                     int (*fn)(void *ctx, const cJSON *o, const char *where), void *ctx) {
    size_t k = 0;
    while (k < len && (data[k] == ' ' || data[k] == '\n' || data[k] == '\r' || data[k] == '\t')) k++;
    int list = !strcmp(format, "json") || (!strcmp(format, "auto") && k < len && data[k] == '[');
    char where[600];
    if (list) {
        if (!utf8_valid(data, len)) return err_set(ERR_INPUT, "%s: the text is not valid UTF-8; convert it to UTF-8", path);
        cJSON *arr = cJSON_ParseWithLength(data, len);
        if (!cJSON_IsArray(arr)) {
            cJSON_Delete(arr);
            return err_set(ERR_INPUT, "%s is not a valid JSON list of records (JSON error near byte %ld)", path,
                           (long)(cJSON_GetErrorPtr() && cJSON_GetErrorPtr() >= data ? cJSON_GetErrorPtr() - data : 0));
        }
        int i = 0, rc = 0;
        const cJSON *o;
        cJSON_ArrayForEach(o, arr) {
            snprintf(where, sizeof where, "%s[%d]", path, i++);
            if ((rc = fn(ctx, o, where))) break;
        }
        cJSON_Delete(arr);
        return rc;
    }
    int64_t line = 0;
    for (const char *p = data, *end = data + len; p < end;) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);
        const char *s = p;
        p += n + (nl ? 1 : 0);
        line++;
        size_t a = 0;
        while (a < n && (s[a] == ' ' || s[a] == '\t' || s[a] == '\r')) a++;
        if (a == n) continue;
        snprintf(where, sizeof where, "%s:%lld", path, (long long)line);
        if (memchr(s, 0, n)) return err_set(ERR_INPUT, "%s: a NUL byte; this is not a text file", where);
        if (!utf8_valid(s, n)) return err_set(ERR_INPUT, "%s: the text is not valid UTF-8; convert it to UTF-8", where);
        cJSON *o = cJSON_ParseWithLength(s, n);
        if (!o) return err_set(ERR_INPUT, "%s: not valid JSON; each line of a JSONL file is one record", where);
        int rc = fn(ctx, o, where);
        cJSON_Delete(o);
        if (rc) return -1;
    }
    return 0;
}

typedef struct {
    rs_records *out;
    pair_fields f;
    const char *text_field;
} rec_ctx;

static int pair_cb(void *vctx, const cJSON *o, const char *where) {
    rec_ctx *x = vctx;
    return pair_record(x->out, o, &x->f, where);
}

int pairs_load(rs_records *out, const cJSON *p, const chat_template *chat, const char *bos_text) {
    const char *path, *format;
    rec_ctx x = {.out = out, .f = {.chat = chat, .bos_text = bos_text}};
    out->chat = chat != NULL;
    if (param_string(p, "path", &path) || param_string(p, "format", &format) ||
        param_string(p, "fields.prompt", &x.f.prompt) || param_string(p, "fields.response", &x.f.response) ||
        param_string(p, "fields.instruction", &x.f.instruction) || param_string(p, "fields.input", &x.f.input) ||
        param_string(p, "fields.output", &x.f.output) || param_string(p, "fields.messages", &x.f.messages))
        return -1;
    if (fs_is_dir(path)) return err_set(ERR_INPUT, "source pairs reads one file; %s is a folder", path);
    char *data;
    size_t len;
    if (rs_read_file(path, REC_MAX_BYTES, &data, &len)) return -1;
    int rc = each_json(path, data, len, format, pair_cb, &x);
    free(data);
    if (!rc && out->n == 0) rc = err_set(ERR_INPUT, "%s holds no records", path);
    return rc;
}

static int text_cb(void *vctx, const cJSON *o, const char *where) {
    rec_ctx *x = vctx;
    const char *t = str_field(o, x->text_field);
    if (!t) return err_set(ERR_INPUT, "%s: the record has no string field '%s' (set fields.text)", where, x->text_field);
    if (!t[0]) return 0;
    return add_record(x->out, xstrdup(t), NULL, xstrdup(where), 0);
}

static int text_file(rs_records *out, const char *path, const char *format, const char *field) {
    char *data;
    size_t len;
    if (rs_read_file(path, REC_MAX_BYTES, &data, &len)) return -1;
    int rc;
    int json = !strcmp(format, "jsonl") || !strcmp(format, "json") ||
               (!strcmp(format, "auto") && (str_ends_with(path, ".jsonl") || str_ends_with(path, ".json")));
    if (json) {
        rec_ctx x = {.out = out, .text_field = field};
        rc = each_json(path, data, len, format, text_cb, &x);
    } else if (memchr(data, 0, len)) {
        rc = err_set(ERR_INPUT, "%s: a NUL byte; this is not a text file", path);
    } else if (!utf8_valid(data, len)) {
        rc = err_set(ERR_INPUT, "%s: the text is not valid UTF-8; convert it to UTF-8", path);
    } else {
        rc = add_record(out, data, NULL, xstrdup(path), 0);
        data = NULL;
    }
    free(data);
    return rc;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

int text_load(rs_records *out, const cJSON *p) {
    const char *path, *format, *field;
    if (param_string(p, "path", &path) || param_string(p, "format", &format) || param_string(p, "fields.text", &field))
        return -1;
    if (!fs_is_dir(path)) {
        if (text_file(out, path, format, field)) return -1;
    } else {
        DIR *d = opendir(path);
        if (!d) return err_errno("cannot open folder %s", path);
        char **names = NULL;
        size_t n = 0, cap = 0;
        struct dirent *e;
        int rc = 0;
        while ((e = readdir(d))) {
            if (!str_ends_with(e->d_name, ".txt") && !str_ends_with(e->d_name, ".jsonl")) continue;
            if (n == cap) {
                cap = cap ? 2 * cap : 64;
                char **x = xrealloc(names, cap * sizeof *x);
                if (!x) {
                    rc = -1;
                    break;
                }
                names = x;
            }
            if (!(names[n] = fs_join(path, e->d_name))) {
                rc = -1;
                break;
            }
            n++;
        }
        closedir(d);
        if (!rc) qsort(names, n, sizeof *names, cmp_str);
        for (size_t i = 0; i < n && !rc; i++) rc = text_file(out, names[i], format, field);
        for (size_t i = 0; i < n; i++) free(names[i]);
        free(names);
        if (rc) return -1;
        if (n == 0) return err_set(ERR_INPUT, "folder %s has no .txt or .jsonl files", path);
    }
    if (out->n == 0) return err_set(ERR_INPUT, "%s holds no text", path);
    return 0;
}
