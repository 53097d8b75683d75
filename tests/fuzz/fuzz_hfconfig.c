/* fuzz_hfconfig.c: libFuzzer target for config.json parsing (hfconfig_parse) on arbitrary
 * bytes; an accepted config must also write and parse back to the same sizes. Seeds:
 * the config.json files of tests/fixtures. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "model/hfconfig.h"
#include "model/weights.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static model_config c, back;
    if (hfconfig_parse(&c, (const char *)data, size, "fuzz.json") == 0) {
        (void)weights_count(&c);
        strbuf sb = STRBUF_INIT;
        if (hfconfig_to_json(&sb, &c, "float32")) abort();
        if (hfconfig_parse(&back, sb.buf, sb.len, "written.json")) abort();
        if (back.hidden != c.hidden || back.n_layers != c.n_layers || back.vocab != c.vocab ||
            back.head_dim != c.head_dim || back.layers[c.n_layers - 1].intermediate != c.layers[c.n_layers - 1].intermediate)
            abort();
        sb_free(&sb);
    }
    err_clear();
    return 0;
}
