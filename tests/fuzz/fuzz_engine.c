/* fuzz_engine.c: the engine's public API under arbitrary input: a tiny config read from the bytes
 * (possibly invalid), a packed batch whose lengths and tokens may be wrong, targets out of range,
 * KV-cache extends past capacity, truncates and copies. Every call must return 0 or a recorded
 * error; nothing may crash, leak or read out of bounds. */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "common/error.h"
#include "kernels/threads.h"
#include "model/model.h"
#include "model/sample.h"

typedef struct {
    const uint8_t *p;
    size_t n, i;
} bytes;

static int next(bytes *b) { return b->i < b->n ? b->p[b->i++] : 0; }
static int next_signed(bytes *b) { return (int8_t)next(b); }

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static int once;
    if (!once) kernels_set_threads(1), once = 1;
    bytes in = {data, size, 0};
    model_config c;
    memset(&c, 0, sizeof c);
    snprintf(c.model_type, sizeof c.model_type, "%s", next(&in) & 1 ? "qwen2" : "llama");
    c.hidden = next(&in) % 33;
    c.n_layers = next(&in) % 4;
    c.head_dim = next(&in) % 10;
    c.vocab = next(&in) % 40;
    c.rms_eps = 1e-5f;
    c.rope_theta = next(&in) ? 10000.0f : 0.0f;
    c.tie_embeddings = next(&in) & 1;
    c.attention_bias = next(&in) & 1;
    if (next(&in) & 1) {
        c.rope_scaling = ROPE_SCALING_LLAMA3;
        c.rope_factor = 8, c.rope_low_freq_factor = 1, c.rope_high_freq_factor = 4, c.rope_original_max_pos = 16;
    }
    for (int l = 0; l < c.n_layers; l++) {
        c.layers[l].n_heads = next(&in) % 5;
        c.layers[l].n_kv_heads = next(&in) % 5;
        c.layers[l].intermediate = next(&in) % 40;
    }
    c.n_heads = c.layers[0].n_heads, c.n_kv_heads = c.layers[0].n_kv_heads, c.intermediate = c.layers[0].intermediate;
    model m;
    if (model_init(&m, &c, NULL)) return 0; /* an invalid config: refused with a message */
    for (size_t i = 0; i < m.w.n_floats; i++) m.w.mem[i] = (float)next_signed(&in) / 64.0f;
    int cap = next(&in) % 40;
    int n_seqs = next(&in) % 5, lens[4], tokens[64], targets[64], n_tok = 0;
    for (int s = 0; s < n_seqs && s < 4; s++) {
        lens[s] = next_signed(&in) % 16;
        n_tok += lens[s] > 0 ? lens[s] : 0;
    }
    if (n_tok > 64) n_tok = 64;
    for (int i = 0; i < n_tok; i++) tokens[i] = next_signed(&in) % (c.vocab + 2);
    if (model_reserve_train(&m, cap) == 0) {
        model_batch b = {.tokens = tokens, .seq_lens = lens, .n_tokens = n_tok, .n_seqs = n_seqs > 4 ? 4 : n_seqs};
        const float *hid;
        if (model_forward(&m, &b, &hid) == 0) {
            for (int i = 0; i < n_tok; i++) targets[i] = next_signed(&in) % (c.vocab + 1);
            lm_ce_ctx ce = {.targets = targets, .weights = NULL};
            float dh[64 * 32];
            double loss;
            if (model_lm_loss(&m, hid, dh, n_tok, lm_loss_ce, &ce, &loss) == 0) model_backward(&m, dh);
        }
    }
    { /* the no-gradient forward needs no reserve */
        model_batch b = {.tokens = tokens, .seq_lens = lens, .n_tokens = n_tok, .n_seqs = n_seqs > 4 ? 4 : n_seqs};
        float hid[64 * 32];
        model_forward_hidden(&m, &b, hid);
    }
    kv_cache kv, kv2;
    int kcap = next(&in) % 20;
    if (kv_cache_init(&kv, &c, kcap) == 0) {
        float logits[64];
        for (int round = 0; round < 3; round++) {
            int n = next(&in) % 8, rows[8], n_out = next(&in) % 3;
            for (int i = 0; i < 8; i++) rows[i] = next_signed(&in) % 9;
            model_extend(&m, &kv, tokens, n < n_tok ? n : n_tok, n_out > 1 ? rows : NULL, n_out > 1 ? 1 : n_out, logits);
            kv_cache_truncate(&kv, next_signed(&in) % 20);
        }
        if (kv_cache_init(&kv2, &c, next(&in) % 20 + 1) == 0) {
            kv_cache_copy(&kv2, &kv, next_signed(&in) % 20);
            kv_cache_free(&kv2);
        }
        sampler s;
        if (c.vocab <= 64 && sampler_init(&s, c.vocab, (float)(next(&in) % 3) / 2, (float)(next(&in) % 5) / 4, 1) == 0) {
            if (kv.len > 0 && model_decode(&m, &kv, tokens[0] >= 0 ? tokens[0] % c.vocab : 0, logits) == 0)
                sampler_sample(&s, logits);
            sampler_free(&s);
        }
        kv_cache_free(&kv);
    }
    model_free(&m);
    err_clear();
    return 0;
}
