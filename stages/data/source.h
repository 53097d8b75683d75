/* source.h: what the `data` stage's sources produce before prompts are built. Interaction sources
 * (synthetic, movielens, interactions) fill an rs_corpus: items with text, members, and timed events
 * with a yes/no label per task; build.c turns it into temporal splits of grouped, tokenized prompts.
 * Record sources (pairs, text) fill an rs_records list of prompt/response texts. Internal to
 * stages/data (tests use it too). */
#ifndef SMELT_STAGES_DATA_SOURCE_H
#define SMELT_STAGES_DATA_SOURCE_H

#include <cjson/cJSON.h>
#include <stdint.h>

#include "common/strbuf.h"
#include "model/tokenizer.h"

#define RS_MAX_TASKS 32

typedef struct {
    char *name;        /* "like", "Comedy" */
    char *instruction; /* the first line(s) of its prompts */
    char *filter;      /* only items whose tags contain this tag (NULL: every item) */
} rs_task;

typedef struct {
    char *text;        /* what prompts show: "Toy Story (1995) (Adventure, Animation, Comedy)" */
    char *tags;        /* '|'-separated tags for task filters ("Adventure|Animation"), or NULL */
    uint32_t id;       /* the source's item id */
    float quality;     /* synthetic: the item's latent appeal (else 0) */
} rs_item;

typedef struct {
    uint32_t member;   /* index into members */
    uint32_t item;     /* index into items */
    int64_t time;
    uint32_t action;   /* index into the action strings: what history lines show ("rated 4.5") */
    uint32_t in_task;  /* bit t: the event is an example of task t */
    uint32_t yes;      /* bit t: its label for task t is yes */
    float value;       /* the rating the label came from (MovieLens, numeric interaction labels), or NAN */
} rs_event;

typedef struct {
    int n_tasks;
    rs_task tasks[RS_MAX_TASKS];
    int n_items;
    rs_item *items;
    int n_members;
    uint32_t *member_ids;  /* [n_members] the source's member ids */
    char **member_text;    /* [n_members] profile text, or NULL entries ("Member <id>") */
    int64_t n_events;
    rs_event *events;      /* sorted by (member, time, source order) once loaded */
    int n_actions;
    char **actions;        /* [n_actions] */
    float *truth;          /* synthetic: [n_events * n_tasks] the generator's P(yes); else NULL */
    int64_t raw_events;    /* rows read from the source, before caps (reported as a metric) */
    int raw_members, raw_items;
} rs_corpus;

void rs_corpus_free(rs_corpus *c);
/* Interns an action string; returns its index or -1 (ERR_NOMEM). */
int rs_action_id(rs_corpus *c, const char *text);
/* Sorts the events by (member, time), stable. */
int rs_sort_events(rs_corpus *c);
/* Adds a task (name and instruction copied; filter may be NULL). */
int rs_add_task(rs_corpus *c, const char *name, const char *instruction, const char *filter);
/* Reads the `tasks:` parameter (a list of names or {name, instruction, filter} maps); for each
 * task, def_instr(ctx, name) gives the default instruction (allocated) and def_filter(ctx, name)
 * (may be NULL) the default filter. */
int rs_tasks_from_params(rs_corpus *c, const cJSON *params, char *(*def_instr)(void *ctx, const char *name),
                         const char *(*def_filter)(void *ctx, const char *name), void *ctx);

/* Sources of interactions. Each reads its parameters (the data stage's resolved params). */
int synthetic_generate(rs_corpus *c, const cJSON *params, int64_t seed);
int movielens_load(rs_corpus *c, const cJSON *params);
int interactions_load(rs_corpus *c, const cJSON *params);

/* Records of the pairs and text sources. */
typedef struct {
    char *prompt;     /* text before the response (pairs), or the whole document (text) */
    char *response;   /* NULL for documents */
    char *where;      /* "file:line" of the record, for messages */
    char *suffix;     /* chat: the template's text after the response ("<|im_end|>\n"), else NULL */
} rs_record;

typedef struct {
    int64_t n, cap;
    rs_record *r;
    int chat;         /* rendered with the model's chat template: it writes BOS and ends each turn itself */
} rs_records;

struct chat_template;
void rs_records_free(rs_records *r);
/* chat (may be NULL: plain text): render every record as a conversation with the model's chat
 * template (prompt and response records become one user message and the answer); bos_text is
 * the tokenizer's BOS text for templates that write it. */
int pairs_load(rs_records *out, const cJSON *params, const struct chat_template *chat, const char *bos_text);
int text_load(rs_records *out, const cJSON *params);

/* ---- helpers shared by the readers (reader.c) ---- */

/* A hash map from strings (ids as written in the source) to indices. */
typedef struct {
    char **keys;
    int32_t *vals;
    size_t cap, n;
} strmap;

/* The index of key, or -1. */
int32_t strmap_get(const strmap *m, const char *key);
/* Inserts key -> val; returns 0, 1 when the key was already present (nothing changed), -1 on ERR_NOMEM. */
int strmap_put(strmap *m, const char *key, int32_t val);
void strmap_free(strmap *m);

/* 1 when the bytes are valid UTF-8 (no overlongs, surrogates or code points above U+10FFFF). */
int utf8_valid(const char *s, size_t n);
/* A whole input file (at most max_bytes); an empty file is an error naming it. */
int rs_read_file(const char *path, size_t max_bytes, char **out, size_t *len);
/* Reads the file whose last path component is `name` from `path`: a directory, or a zip/tar
 * archive read through libarchive. *found = 0 (and 0 returned) when there is no such file;
 * *display receives "path:entry" for messages (caller frees; NULL after an error). A damaged or
 * truncated archive is ERR_CORRUPT naming it. */
int rs_bundle_read(const char *path, const char *name, size_t max_bytes, char **out, size_t *len, char **display,
                   int *found);

/* A CSV/TSV reader over a buffer, RFC 4180 quoting for CSV, with line numbers for messages. */
typedef struct {
    const char *p, *end, *name; /* name: "ratings.csv" for messages */
    char sep;
    int quotes;                 /* 1: "..." fields with "" escapes (CSV) */
    int64_t line;               /* 1-based line where the record just read starts */
    int64_t next_line;          /* the line at p */
    int n_fields, cap_fields;
    char **fields;              /* the record's fields (NUL-terminated, in buf) */
    size_t *starts;             /* [cap_fields] offsets of the fields in buf */
    strbuf buf;
} csv_reader;

void csv_init(csv_reader *r, const char *name, const char *data, size_t len, char sep, int quotes);
/* Reads the next record: 1 read, 0 at the end, -1 on an error (unterminated quote, NUL byte,
 * invalid UTF-8) naming the file and line. Blank lines are skipped. */
int csv_next(csv_reader *r);
void csv_free(csv_reader *r);
/* The index of a header column, or -1 (ERR_INPUT naming the file, the column and the header). */
int csv_column(const csv_reader *r, const char *col, int required);
/* Strict number parsing of a field: the whole field, finite; errors name file:line and column. */
int csv_double(const csv_reader *r, int col, const char *col_name, double *out);
int csv_int64(const csv_reader *r, int col, const char *col_name, int64_t *out);

#endif
