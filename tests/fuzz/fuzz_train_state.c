/* fuzz_train_state.c: libFuzzer target for the loader of the train stage's in-stage checkpoints
 * (state_load): the input becomes state.json of a checkpoint folder whose binary files are valid
 * for a tiny model, so the fuzzer reaches the size, digest and field checks. A load must either
 * succeed with sane values or fail with a message, never crash. Seeds: corpus_train_state/. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/error.h"
#include "common/fsutil.h"
#include "stages/train/state.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char dir[128], sub[160];
static model m;
static optimizer o;
static int ready;

static void cleanup(void) { fs_rm_rf(dir); }

static void setup(void) {
    model_config c;
    memset(&c, 0, sizeof c);
    snprintf(c.model_type, sizeof c.model_type, "llama");
    c.hidden = 8, c.n_layers = 1, c.n_heads = 2, c.n_kv_heads = 1, c.head_dim = 4, c.intermediate = 8, c.vocab = 16;
    c.rms_eps = 1e-5f, c.rope_theta = 10000, c.max_pos = 32, c.tie_embeddings = 1;
    c.layers[0] = (layer_config){2, 1, 8};
    optim_config oc = {.beta1 = 0.9, .beta2 = 0.999, .schedule = {.lr = 1e-3, .total = 1}};
    if (model_init(&m, &c, NULL) || optim_init(&o, &m, &oc)) abort();
    snprintf(dir, sizeof dir, "/tmp/fuzz_train_state.%d", (int)getpid());
    train_progress p = {.step = 3, .rng = 1};
    /* a valid checkpoint: its binary files stay, state.json is replaced by each input */
    if (state_save(dir, &p, &m, &o, NULL, "fp")) abort();
    snprintf(sub, sizeof sub, "%s/step-000000003/state.json", dir);
    atexit(cleanup);
    ready = 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!ready) setup();
    FILE *f = fopen(sub, "wb");
    if (!f) abort();
    fwrite(data, 1, size, f);
    fclose(f);
    train_progress p;
    memset(&p, 0, sizeof p);
    int rc = state_load(dir, &p, &m, &o, NULL, "fp");
    if (rc == 1 && (p.step < 0 || p.cursor.epoch < 0 || p.cursor.index < 0)) abort();
    if (rc < 0 && !err_msg()[0]) abort();
    err_clear();
    return 0;
}
