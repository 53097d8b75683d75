/* dataset.h: the on-disk format of a tokenized data set (the artifacts of a `data` stage) and its
 * reader (mmap, validated once at open) and writer. Consumed by train, evaluate, prune, quantize.
 *
 * An artifact is a directory:
 *   meta.json          format version, source, kind, tokenizer, label token ids, tasks, splits, counts
 *   tokenizer/         the tokenizer files, copied in (absent for builtin:bytes): every downstream stage
 *                      loads exactly this tokenizer (dataset_tokenizer_load)
 *   <split>.bin        one per split: train.bin, valid.bin, test.bin (a `data` output), or
 *                      calibration.bin (a `data.calibration` output)
 *
 * A split file (little-endian, exact size checked):
 *   ds_header (80 bytes) | ds_example[n_examples] (48 bytes each) | int32 tokens[n_tokens] | uint8 mask[n_tokens]
 *   | zero padding to a multiple of 4 | uint32 cuts[n_cuts]
 * (Version 1 files, still read, have a 64-byte header without n_cuts/cuts_offset and no cuts.)
 * Examples are packed back to back in the token array in file order. mask[t] says what token t is:
 * DS_TOK_PROMPT (context), DS_TOK_ACTION (the answer/label token of a ranking example) or
 * DS_TOK_RESPONSE (a response token of a generative example, or every token of a text document
 * after the first). Loss targets are next tokens: token t (mask != PROMPT) is predicted from the
 * logits at position t-1, so the first token of an example is never a target.
 *
 * Groups: consecutive examples with the same `group` (numbered 0, 1, 2, ... in file order) are the
 * candidates of one member for one task; every example of a group has the same prefix_len and their
 * first prefix_len tokens are identical (checked at open), so a scorer can prefill that prefix once
 * (KV cache) and run only each candidate's suffix. prefix_len < answer_pos whenever the example has
 * an answer, so the logits that predict the answer always come from the suffix.
 *
 * Cuts: the history lines of a ranking prompt, the only part of an example that may be left out to
 * make it shorter (oldest first; never the instruction and member lines before them, nor the
 * candidate and answer after them). Example i owns cuts [ex[i].cut_first, ex[i+1].cut_first) (the
 * last example: up to n_cuts): none, or positions b0 < b1 < ... < bL (L >= 1 lines) with line k =
 * tokens [b_k, b_k+1), 1 <= b0 and bL <= answer_pos. ds_fit_cuts() is the one budget rule: the
 * data stage fits prompts to max_tokens with it and the train stage fits examples to seq_len. */
#ifndef SMELT_STAGES_DATA_DATASET_H
#define SMELT_STAGES_DATA_DATASET_H

#include <cjson/cJSON.h>
#include <stddef.h>
#include <stdint.h>

#include "model/tokenizer.h"

#define DS_FORMAT_VERSION 2
#define DS_MAGIC "SMELTDS\x01"       /* 8 bytes */
#define DS_MAX_SPLITS 8
#define DS_MAX_TASKS 1024
#define DS_MAX_EXAMPLE_TOKENS (1 << 20) /* a bound the reader enforces on n_tokens of one example */

/* What a token is (mask values). */
enum { DS_TOK_PROMPT = 0, DS_TOK_ACTION = 1, DS_TOK_RESPONSE = 2 };
/* Example labels. */
enum { DS_LABEL_NONE = -1, DS_LABEL_NO = 0, DS_LABEL_YES = 1 };
#define DS_NO_ITEM UINT32_MAX

typedef struct {
    char magic[8];          /* DS_MAGIC */
    uint32_t version;       /* DS_FORMAT_VERSION */
    uint32_t header_bytes;  /* sizeof(ds_header) = 64 */
    uint64_t n_examples;
    uint64_t n_tokens;
    uint64_t n_groups;      /* the last example's group + 1 (0 when empty) */
    uint32_t vocab;         /* every token id is below this (the tokenizer's vocabulary size) */
    uint32_t n_tasks;       /* every task id is below this */
    uint64_t tokens_offset; /* 64 + 48 * n_examples */
    uint64_t mask_offset;   /* tokens_offset + 4 * n_tokens */
    uint64_t n_cuts;        /* entries of the cuts section */
    uint64_t cuts_offset;   /* mask_offset + n_tokens rounded up to 4; the file ends at cuts_offset + 4 n_cuts */
} ds_header;

typedef struct {
    uint64_t offset;     /* index of the example's first token in the split's token array */
    int64_t time;        /* the interaction's timestamp (seconds since the epoch; 0 when none) */
    uint32_t n_tokens;   /* >= 1 */
    uint32_t prefix_len; /* tokens shared with every example of the same group (0 .. answer_pos-1) */
    uint32_t answer_pos; /* first token with mask != PROMPT (the label token of a ranking example);
                          * n_tokens when the example has no target */
    uint32_t group;      /* candidates of one member for one task; 0, 1, 2, ... in file order */
    uint32_t member;     /* member id of the source (MovieLens userId, ...); for pairs/text: the record index */
    uint32_t item;       /* candidate item id of the source, DS_NO_ITEM when none */
    uint16_t task;       /* index into meta.json's tasks */
    int8_t label;        /* DS_LABEL_YES, DS_LABEL_NO, or DS_LABEL_NONE (no yes/no answer) */
    uint8_t flags;       /* 0 (reserved) */
    uint32_t cut_first;  /* index of the example's first cut (version 1: 0, no cuts) */
} ds_example;

/* An open split: the mapped file, validated. Pointers stay valid until ds_split_close. */
typedef struct {
    char name[32];
    char *path;
    const ds_example *ex;   /* [n_examples] */
    const int32_t *tokens;  /* [n_tokens] */
    const uint8_t *mask;    /* [n_tokens] */
    const uint32_t *cuts;   /* [n_cuts] */
    int64_t n_examples, n_tokens, n_groups, n_cuts;
    int32_t vocab;
    int n_tasks;
    void *map;
    size_t map_bytes;
} ds_split;

/* Opens and validates a split file: header, exact size, every example's bounds, group numbering,
 * shared prefixes, answer positions against the mask, labels, task ids and token ids. Any fault is
 * ERR_CORRUPT naming the file, the example and the field. 0 or -1. */
int ds_split_open(ds_split *s, const char *path);
/* The same checks over a split file already in memory (borrowed: data must outlive s); name is
 * used in messages. */
int ds_split_open_mem(ds_split *s, const void *data, size_t size, const char *name);
void ds_split_close(ds_split *s);
/* The tokens and mask of example i. */
const int32_t *ds_example_tokens(const ds_split *s, int64_t i);
const uint8_t *ds_example_mask(const ds_split *s, int64_t i);
/* One past the last example of the group that example i belongs to. */
int64_t ds_group_end(const ds_split *s, int64_t i);
/* The cuts of example i (its history line boundaries, see above) and *n how many (0, or >= 2). */
const uint32_t *ds_example_cuts(const ds_split *s, int64_t i, int *n);

/* The budget rule shared by the data and train stages. A sequence is tokens [0, cuts[0]) (BOS,
 * instruction, member lines), then n_cuts - 1 history lines (oldest first), then tokens
 * [cuts[n_cuts - 1], end) (candidate, answer). Returns how many of the oldest lines to leave out
 * for the rest to fit in budget tokens: 0 when it fits whole, n_cuts - 1 at most; -1 when it does
 * not fit even without any line, or has no cuts and does not fit. */
int ds_fit_cuts(const uint32_t *cuts, int n_cuts, int64_t end, int64_t budget);

/* ---- writer ---- */

/* What the caller gives per example; the writer derives answer_pos from the mask, numbers the
 * groups and makes prefix_len consistent (the minimum over the group, capped at answer_pos - 1 and
 * at the tokens really shared). */
typedef struct {
    int new_group;       /* 1: this example starts a new group (the first example always does) */
    uint32_t prefix_len; /* tokens the caller built as the group's shared prefix (0 if none) */
    uint32_t member, item;
    int64_t time;
    uint16_t task;
    int8_t label;
    const uint32_t *cuts; /* [n_cuts] the history line boundaries (0 or >= 2 positions, increasing, within
                           * [1, answer position]), or NULL */
    int n_cuts;
} ds_example_in;

typedef struct ds_writer ds_writer;

/* A writer that keeps the split in memory until ds_writer_finish. */
int ds_writer_new(ds_writer **w, int32_t vocab, int n_tasks);
/* Appends one example of n tokens (1 <= n <= DS_MAX_EXAMPLE_TOKENS). Checks token ids, task, label,
 * mask values and that a labelled example has an ACTION token. 0 or -1 (ERR_INPUT naming the field). */
int ds_writer_add(ds_writer *w, const ds_example_in *e, const int32_t *tokens, const uint8_t *mask, size_t n);
int64_t ds_writer_examples(const ds_writer *w);
int64_t ds_writer_tokens(const ds_writer *w);
/* Writes the split file at path (temporary name, fsync, rename). The writer stays usable for
 * nothing but ds_writer_free afterwards. 0 or -1. */
int ds_writer_finish(ds_writer *w, const char *path);
void ds_writer_free(ds_writer *w);

/* ---- the artifact: meta.json ---- */

typedef struct {
    char *name;        /* "like", "genre:Comedy" */
    char *instruction; /* the task instruction that starts its prompts */
} ds_task;

typedef struct {
    char name[32];     /* "train", "valid", "test", "calibration" */
    char file[48];     /* "train.bin" */
    int64_t examples, tokens, groups, positives, negatives;
    int64_t max_tokens; /* the longest example */
} ds_split_info;

typedef struct {
    char *dir;              /* the artifact directory (owned) */
    int version;            /* DS_FORMAT_VERSION */
    char source[32];        /* synthetic, movielens, interactions, pairs, text */
    char kind[16];          /* ranking (every example labelled), generative (responses), text (documents) */
    char role[16];          /* dataset or calibration */
    char *tokenizer_spec;   /* "builtin:bytes" or the absolute path of the copied tokenizer directory */
    char tokenizer_format[16];
    int32_t vocab, bos_id, eos_id;
    char yes_text[32], no_text[32];
    int32_t yes_id, no_id;  /* single-token labels (-1 when the set has none, kind text) */
    int n_tasks;
    ds_task *tasks;         /* [n_tasks] (owned) */
    int n_splits;
    ds_split_info splits[DS_MAX_SPLITS];
    cJSON *params;          /* the data stage's parameters, as recorded (owned; may be NULL) */
} dataset;

/* Reads dir/meta.json and checks it (format, version, fields, split files present). 0 or -1
 * (ERR_CORRUPT/ERR_INPUT naming the file and field). */
int dataset_open(dataset *ds, const char *dir);
void dataset_close(dataset *ds);
/* The info of a split by name, or NULL. */
const ds_split_info *dataset_split_info(const dataset *ds, const char *name);
/* Opens a split of an open data set by name; ERR_INPUT listing the splits it has when absent.
 * Also checks that the split's vocabulary and task count agree with meta.json. */
int dataset_split_open(const dataset *ds, const char *name, ds_split *s);
/* Loads the data set's own tokenizer (the copy inside the artifact, or builtin:bytes). */
int dataset_tokenizer_load(const dataset *ds, tokenizer **tok);

/* Writer side of meta.json: copies the tokenizer's files into dir/tokenizer/ (nothing for
 * builtin:bytes) and records them in ds (tokenizer_spec, tokenizer_format, vocab, bos, eos). */
int dataset_copy_tokenizer(dataset *ds, const tokenizer *tok, const char *dir);
/* Writes dir/meta.json from ds (dir, splits, tasks, labels, params). 0 or -1. */
int dataset_write_meta(const dataset *ds, const char *dir);

#endif
