/* fuzz_data_sources.c: libFuzzer target for the data stage's file readers on arbitrary bytes: the
 * first byte picks the reader and the rest is written as its file: 0 interactions CSV, 1 an
 * interactions JSONL, 2 the item table (CSV), 3 pairs (JSONL or a JSON list), 4 MovieLens
 * ratings.csv, 5 ml-100k u.item (Latin-1), 6 text documents (JSONL), 7 a MovieLens zip (libarchive).
 * Bad input must be an error,
 * never a crash, a leak or an out-of-bounds read. Seeds: tests/fuzz/corpus_data_sources. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/error.h"
#include "common/fsutil.h"
#include "stages/data/source.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char dir[64];

static void put(const char *name, const void *text, size_t n) {
    char path[128];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    if (fs_write_atomic(path, text, n)) abort();
}

static const char *params_fmt =
    "{\"path\": \"%s/%s\", \"items_path\": \"%s/items.%s\", \"format\": \"auto\", \"threshold\": 4.0,"
    " \"tasks\": [\"like\", {\"name\": \"Comedy\", \"instruction\": \"\", \"filter\": \"\"}],"
    " \"columns\": {\"member\": \"member\", \"item\": \"item\", \"label\": \"label\", \"time\": \"timestamp\","
    " \"action\": \"%s\", \"task\": \"\"}, \"item_columns\": {\"id\": \"item\", \"text\": [\"title\", \"genre\"], \"tags\": \"\"},"
    " \"member_columns\": {\"id\": \"member\", \"text\": []}, \"positive\": [\"1\", \"yes\"], \"negative\": [\"0\", \"no\"],"
    " \"fields\": {\"prompt\": \"prompt\", \"response\": \"response\", \"instruction\": \"instruction\", \"input\": \"input\","
    " \"output\": \"output\", \"messages\": \"messages\", \"text\": \"text\"}}";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!dir[0]) {
        snprintf(dir, sizeof dir, "/tmp/fuzz-data-sources-%d", (int)getpid());
        if (fs_mkdir_p(dir, 0755)) abort();
        char ml[128];
        snprintf(ml, sizeof ml, "%s/ml", dir);
        if (fs_mkdir_p(ml, 0755)) abort();
        const char *items = "item,title,genre\na,Alpha,Comedy\nb,\"Beta, the\",Drama\nc,Gamma,\n";
        put("items.csv", items, strlen(items));
        const char *jitems = "{\"item\": \"a\", \"title\": \"Alpha\", \"genre\": \"x\"}\n{\"item\": 2, \"title\": \"Two\", \"genre\": \"y\"}\n";
        put("items.jsonl", jitems, strlen(jitems));
        const char *inter = "member,item,label,timestamp\nm,a,1,5\nm,b,0,6\nn,c,yes,7\n";
        put("inter.csv", inter, strlen(inter));
        const char *movies = "movieId,title,genres\n1,Toy Story (1995),Comedy|Children\n2,Heat (1995),Action\n";
        put("ml/movies.csv", movies, strlen(movies));
    }
    if (size < 1) return 0;
    int mode = data[0] % 8;
    const uint8_t *body = data + 1;
    size_t n = size - 1;
    const char *file = "in.csv", *items_ext = "csv", *action = "";
    switch (mode) {
    case 0: put("in.csv", body, n); break;
    case 1: file = "in.jsonl", items_ext = "jsonl", action = "label"; put("in.jsonl", body, n); break;
    case 2: file = "inter.csv"; put("items.csv", body, n); break;
    case 3: file = "in.jsonl"; put("in.jsonl", body, n); break;
    case 4: file = "ml"; put("ml/ratings.csv", body, n); break;
    case 5: {
        file = "ml100k";
        char p[128];
        snprintf(p, sizeof p, "%s/ml100k", dir);
        fs_mkdir_p(p, 0755);
        const char *udata = "1\t1\t4\t100\n2\t2\t3\t101\n";
        put("ml100k/u.data", udata, strlen(udata));
        put("ml100k/u.item", body, n);
        break;
    }
    case 6: file = "in.jsonl"; put("in.jsonl", body, n); break;
    default: file = "in.zip"; put("in.zip", body, n); break;
    }
    char text[2048];
    snprintf(text, sizeof text, params_fmt, dir, file, dir, items_ext, action);
    cJSON *p = cJSON_Parse(text);
    if (!p) abort();
    rs_corpus c;
    memset(&c, 0, sizeof c);
    rs_records r = {0};
    int rc;
    if (mode <= 2) rc = interactions_load(&c, p);
    else if (mode == 3) rc = pairs_load(&r, p, NULL, NULL);
    else if (mode <= 5 || mode == 7) rc = movielens_load(&c, p);
    else rc = text_load(&r, p);
    /* restore the fixed item table after mode 2 replaced it */
    if (mode == 2) {
        const char *items = "item,title,genre\na,Alpha,Comedy\nb,\"Beta, the\",Drama\nc,Gamma,\n";
        put("items.csv", items, strlen(items));
    }
    for (int64_t i = 0; rc == 0 && i < c.n_events; i++) /* a loaded corpus is consistent */
        if (c.events[i].member >= (uint32_t)c.n_members || c.events[i].item >= (uint32_t)c.n_items ||
            c.events[i].action >= (uint32_t)c.n_actions)
            abort();
    rs_corpus_free(&c);
    rs_records_free(&r);
    cJSON_Delete(p);
    err_clear();
    return 0;
}
