/* data_helper.c: a helper of the data/evaluate command-line tests (not a test itself):
 *   data_helper model DIR VOCAB SEED [HIDDEN LAYERS]   writes a random Llama model (HF folder)
 *   data_helper dump SPLIT.bin [FIRST [COUNT]]          prints examples of a builtin:bytes split
 * so that the shell tests can evaluate a model before any train stage exists. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "model/checkpoint.h"
#include "tests/data_testutil.h"
#include "tests/eval_testmodel.h"

int main(int argc, char **argv) {
    if (argc >= 5 && !strcmp(argv[1], "model")) {
        int hidden = argc > 5 ? atoi(argv[5]) : 32, layers = argc > 6 ? atoi(argv[6]) : 2;
        model_config c = em_config(hidden, layers, 4, 2, 2 * hidden, atoi(argv[3]));
        model m;
        if (em_random_model(&m, &c, (uint64_t)atoll(argv[4])) || checkpoint_save(argv[2], &m.cfg, &m.w, ST_F32)) {
            fprintf(stderr, "data_helper: %s\n", err_msg());
            return 1;
        }
        model_free(&m);
        return 0;
    }
    if (argc >= 3 && !strcmp(argv[1], "dump")) {
        ds_split s;
        if (ds_split_open(&s, argv[2])) {
            fprintf(stderr, "data_helper: %s\n", err_msg());
            return 1;
        }
        int64_t first = argc > 3 ? atoll(argv[3]) : 0, count = argc > 4 ? atoll(argv[4]) : 1;
        for (int64_t i = first; i < first + count && i < s.n_examples; i++) {
            char *t = dt_decode(&s, i);
            printf("%s\n", t);
            free(t);
        }
        ds_split_close(&s);
        return 0;
    }
    fprintf(stderr, "usage: data_helper model DIR VOCAB SEED [HIDDEN LAYERS] | dump SPLIT.bin [FIRST [COUNT]]\n");
    return 2;
}
