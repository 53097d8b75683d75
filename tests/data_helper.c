/* data_helper.c: a helper of the data/evaluate/train command-line tests (not a test itself):
 *   data_helper model DIR VOCAB SEED [HIDDEN LAYERS]   writes a random Llama model (HF folder)
 *   data_helper dump SPLIT.bin [FIRST [COUNT]]          prints examples of a builtin:bytes split
 *   data_helper pad IN OUT ROWS SEED                    writes IN with its vocabulary padded by ROWS
 *                                                       rows of large random weights (a padded head)
 * so that the shell tests can evaluate a model before any train stage exists, and distill from
 * two models whose heads differ by padding only. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "model/checkpoint.h"
#include "stages/data/rng.h"
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
    if (argc >= 6 && !strcmp(argv[1], "pad")) {
        model_config c, p;
        model_weights w, q;
        if (checkpoint_load(argv[2], &c, &w)) {
            fprintf(stderr, "data_helper: %s\n", err_msg());
            return 1;
        }
        p = c;
        p.vocab = c.vocab + atoi(argv[4]);
        if (weights_alloc(&q, &p)) return 1;
        weights_tensor a[4 * MODEL_MAX_LAYERS * 16], b[4 * MODEL_MAX_LAYERS * 16];
        int na = weights_tensors(&w, &c, a, (int)(sizeof a / sizeof a[0])), nb = weights_tensors(&q, &p, b, na);
        drng r;
        drng_seed(&r, (uint64_t)atoll(argv[5]));
        for (int i = 0; i < na && i < nb; i++) {
            size_t in = a[i].ndim == 2 ? (size_t)a[i].shape[1] : 1, rows = (size_t)a[i].shape[0];
            memcpy(b[i].data, a[i].data, sizeof(float) * rows * in);
            /* rows of the embedding and the head beyond the old vocabulary: large, so that their logits
             * would dominate any comparison that included them */
            for (size_t k = rows * in; k < (size_t)b[i].shape[0] * in; k++) b[i].data[k] = (float)(3.0 * drng_normal(&r));
        }
        if (checkpoint_save(argv[3], &p, &q, ST_F32)) {
            fprintf(stderr, "data_helper: %s\n", err_msg());
            return 1;
        }
        weights_free(&w), weights_free(&q);
        return 0;
    }
    fprintf(stderr, "usage: data_helper model DIR VOCAB SEED [HIDDEN LAYERS] | dump SPLIT.bin [FIRST [COUNT]] | pad IN OUT "
                    "ROWS SEED\n");
    return 2;
}
