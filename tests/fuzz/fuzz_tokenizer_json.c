/* fuzz_tokenizer_json.c: libFuzzer target for the tokenizer.json loader: the input is parsed as a
 * tokenizer.json; whatever loads must encode a short text (and the input's first bytes) and
 * decode the ids without crashing. Seeds: tests/fuzz/corpus_tokenizer_json/.
 * Run: build-fuzz/tests/fuzz_tokenizer_json -max_total_time=60 tests/fuzz/corpus_tokenizer_json */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "model/tokenizer_internal.h"

static void exercise(const tokenizer *tok, const char *text, size_t len) {
    int32_t *ids;
    size_t n;
    if (tokenizer_encode(tok, text, len, &ids, &n)) return;
    for (size_t i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= tokenizer_vocab_size(tok)) abort(); /* ids must be in range */
    char *back;
    size_t bl;
    if (!tokenizer_decode(tok, ids, n, &back, &bl)) free(back);
    free(ids);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *buf = malloc(size + 1);
    if (!buf) return 0;
    memcpy(buf, data, size);
    buf[size] = 0;
    tokenizer *tok = NULL;
    /* A path in a directory that does not exist: no tokenizer_config.json is read beside it. */
    if (tok_load_hf_json(&tok, "/nonexistent-smelt-fuzz/tokenizer.json", buf, size) == 0) {
        static const char text[] = "Hello, y'all! 123 4567 <|endoftext|> caf\xc3\xa9 \xf0\x9f\xa6\x99\n\t  x\xff";
        exercise(tok, text, sizeof text - 1);
        exercise(tok, buf, size < 64 ? size : 64);
        int32_t probe = tokenizer_token_id(tok, "a");
        (void)probe;
        tokenizer_free(tok);
    }
    err_clear();
    free(buf);
    return 0;
}
