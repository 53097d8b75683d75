/* bench_tokenizer.c: encode throughput (MB/s) of smelt's Llama 3 and Qwen2 tokenizers beside
 * Hugging Face `tokenizers` (Rust, one thread) on the same text in the same run. The text is
 * MovieLens movies.csv (titles and genres, read from ../shared/data/ml-latest-small.zip)
 * repeated to --mb megabytes, encoded line by line (the data stage's many short prompts) and
 * as one string. HF runs bench/bench_tokenizer_hf.py on the tokenizer.json smelt saves (which
 * tools/tokenizer_hf_check.py proves equivalent); token counts are printed to compare.
 * usage (from the repository root): build/bench/bench_tokenizer [--shared DIR] [--mb N] [--no-hf] */
#include <archive.h>
#include <archive_entry.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "common/fsutil.h"
#include "common/log.h"
#include "common/strbuf.h"
#include "model/tokenizer.h"

static int read_movies(const char *zip, strbuf *out) {
    struct archive *a = archive_read_new();
    archive_read_support_format_zip(a);
    if (archive_read_open_filename(a, zip, 1 << 16) != ARCHIVE_OK) {
        fprintf(stderr, "cannot open %s: %s\n", zip, archive_error_string(a));
        archive_read_free(a);
        return -1;
    }
    struct archive_entry *e;
    int found = 0;
    while (!found && archive_read_next_header(a, &e) == ARCHIVE_OK) {
        if (!strstr(archive_entry_pathname(e), "movies.csv")) continue;
        char buf[65536];
        la_ssize_t n;
        while ((n = archive_read_data(a, buf, sizeof buf)) > 0) sb_append(out, buf, (size_t)n);
        found = 1;
    }
    archive_read_free(a);
    if (!found) fprintf(stderr, "%s holds no movies.csv\n", zip);
    return found ? 0 : -1;
}

typedef struct {
    double lines_mbs, whole_mbs;
    size_t lines_tokens, whole_tokens;
} result;

/* Encodes every line (without its newline) and then the whole text; best of `reps`. */
static int bench_one(const tokenizer *tok, const char *text, size_t len, int reps, result *r) {
    memset(r, 0, sizeof *r);
    for (int rep = 0; rep < reps; rep++) {
        size_t tokens = 0;
        double t0 = time_monotonic();
        for (const char *p = text; p < text + len;) {
            const char *nl = memchr(p, '\n', (size_t)(text + len - p));
            size_t l = nl ? (size_t)(nl - p) : (size_t)(text + len - p);
            int32_t *ids;
            size_t n;
            if (tokenizer_encode(tok, p, l, &ids, &n)) return -1;
            tokens += n;
            free(ids);
            p += l + 1;
        }
        double mbs = len / 1e6 / (time_monotonic() - t0);
        if (mbs > r->lines_mbs) r->lines_mbs = mbs;
        r->lines_tokens = tokens;
        int32_t *ids;
        size_t n;
        t0 = time_monotonic();
        if (tokenizer_encode(tok, text, len, &ids, &n)) return -1;
        mbs = len / 1e6 / (time_monotonic() - t0);
        if (mbs > r->whole_mbs) r->whole_mbs = mbs;
        r->whole_tokens = n;
        free(ids);
    }
    return 0;
}

int main(int argc, char **argv) {
    const char *shared = "../shared";
    double mb = 4;
    int hf = 1, reps = 3;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--shared") && i + 1 < argc) shared = argv[++i];
        else if (!strcmp(argv[i], "--mb") && i + 1 < argc) mb = atof(argv[++i]);
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc) reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--no-hf")) hf = 0;
        else {
            fprintf(stderr, "usage: %s [--shared DIR] [--mb N] [--reps N] [--no-hf]\n", argv[0]);
            return 2;
        }
    }
    char *zip = fs_join(shared, "data/ml-latest-small.zip");
    strbuf movies = STRBUF_INIT, text = STRBUF_INIT;
    if (read_movies(zip, &movies)) return 1;
    while (text.len < mb * 1e6) sb_append(&text, movies.buf, movies.len);
    char tmp[] = "/tmp/smelt-bench-tok-XXXXXX";
    if (!mkdtemp(tmp)) return 1;
    char *text_path = fs_join(tmp, "text.txt");
    fs_write_atomic(text_path, text.buf, text.len);

    struct {
        const char *name, *rel;
    } cases[] = {{"llama3", "tokenizers/llama3/tokenizer.model"}, {"qwen2", "tokenizers/qwen2/vocab.json"}};
    printf("encode throughput on %.1f MB of MovieLens movies.csv (%zu bytes), best of %d, one thread\n", text.len / 1e6,
           text.len, reps);
    printf("%-8s %-22s %10s %12s %10s %12s %8s\n", "model", "implementation", "lines MB/s", "lines tokens", "whole MB/s",
           "whole tokens", "load s");
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        char *spec = fs_join(shared, cases[c].rel);
        tokenizer *tok;
        double t0 = time_monotonic();
        if (tokenizer_load(&tok, spec)) {
            fprintf(stderr, "%s\n", err_msg());
            return 1;
        }
        double load_s = time_monotonic() - t0;
        result r;
        if (bench_one(tok, text.buf, text.len, reps, &r)) {
            fprintf(stderr, "%s\n", err_msg());
            return 1;
        }
        printf("%-8s %-22s %10.2f %12zu %10.2f %12zu %8.2f\n", cases[c].name, "smelt", r.lines_mbs, r.lines_tokens,
               r.whole_mbs, r.whole_tokens, load_s);
        fflush(stdout);
        if (hf) {
            char *dir = fs_join(tmp, cases[c].name);
            if (tokenizer_save_hf(tok, dir)) {
                fprintf(stderr, "%s\n", err_msg());
                return 1;
            }
            char cmd[4096];
            snprintf(cmd, sizeof cmd,
                     "RAYON_NUM_THREADS=1 TOKENIZERS_PARALLELISM=false python3 bench/bench_tokenizer_hf.py %s %s %d %s",
                     dir, text_path, reps, cases[c].name);
            if (system(cmd)) fprintf(stderr, "(the Hugging Face reference did not run: %s)\n", cmd);
            fflush(stdout);
            free(dir);
        }
        tokenizer_free(tok);
        free(spec);
    }
    fs_rm_rf(tmp);
    free(text_path);
    free(zip);
    sb_free(&movies);
    sb_free(&text);
    return 0;
}
