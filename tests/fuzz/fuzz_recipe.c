/* fuzz_recipe.c: libFuzzer target for the recipe parser and validator: any bytes, with and
 * without a --set override, must give a recipe or an ERR_INPUT message with a position;
 * never a crash, a leak or undefined behaviour. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "pipeline/recipe.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    recipe *r = NULL;
    if (recipe_parse(&r, "fuzz.yaml", (const char *)data, size, NULL, 0) == 0) {
        if (!r || r->n_stages <= 0) abort();
        recipe_free(r);
    } else if (err_kind_get() != ERR_INPUT && err_kind_get() != ERR_NOMEM) {
        fprintf(stderr, "unexpected error kind %d: %s\n", err_kind_get(), err_msg());
        abort();
    }
    /* The same bytes as an override value. */
    if (size < 256 && !memchr(data, 0, size)) {
        char set[300];
        snprintf(set, sizeof set, "stages.a.params.x=%.*s", (int)size, (const char *)data);
        char *sets[] = {set};
        static const char base[] = "smelt: 1\nstages:\n  a: {kind: command, run: x}\n";
        if (recipe_parse(&r, "base.yaml", base, sizeof base - 1, sets, 1) == 0) recipe_free(r);
    }
    err_clear();
    return 0;
}
