/* llama2c.c: import of llama2.c "legacy" (version 0) checkpoints as written by export.py and
 * read by run.c: seven int32 (dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size,
 * seq_len), then fp32 tensors, each stacked over layers, in run.c's order. The q/k rows are
 * permuted from llama2.c's interleaved RoPE pairs to HF's rotate_half halves. */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/error.h"
#include "model/checkpoint.h"
#include "model/hfconfig.h"

#define L2C_HEADER_BYTES 28
#define L2C_MAGIC_V1 0x616b3432 /* "ak42": export.py's version 1/2 formats */

typedef struct {
    int dim, hidden, n_layers, n_heads, n_kv_heads, vocab, seq_len;
    int shared;              /* classifier shared with the token embedding (vocab_size > 0) */
    uint64_t expect_bytes;   /* the file size the header implies */
} l2c_header;

/* Floats of each part, in file order (the rope tables are read past, not used). */
static uint64_t l2c_floats(const l2c_header *h) {
    uint64_t D = (uint64_t)h->dim, F = (uint64_t)h->hidden, L = (uint64_t)h->n_layers, V = (uint64_t)h->vocab;
    uint64_t hs = D / (uint64_t)h->n_heads, kv = hs * (uint64_t)h->n_kv_heads;
    uint64_t n = V * D + L * D + L * D * D + 2 * L * kv * D + L * D * D + L * D + 3 * L * F * D + D;
    n += (uint64_t)h->seq_len * hs; /* freq_cis_real and _imag: seq_len * hs/2 each */
    if (!h->shared) n += V * D;
    return n;
}

static int read_header(const char *path, l2c_header *h, uint64_t *file_size) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return err_errno("cannot open %s", path);
    struct stat st;
    if (fstat(fd, &st)) {
        close(fd);
        return err_errno("cannot stat %s", path);
    }
    int32_t v[7];
    ssize_t n = S_ISREG(st.st_mode) ? read(fd, v, sizeof v) : -1;
    close(fd);
    if (!S_ISREG(st.st_mode)) return err_set(ERR_INPUT, "%s is not a regular file", path);
    if (n != (ssize_t)sizeof v)
        return err_set(ERR_CORRUPT, "%s is %lld bytes, shorter than the 28-byte llama2.c header: truncated or not a "
                       "llama2.c checkpoint", path, (long long)st.st_size);
    *file_size = (uint64_t)st.st_size;
    if ((uint32_t)v[0] == L2C_MAGIC_V1)
        return err_set(ERR_INPUT, "%s is a llama2.c version 1/2 export (magic \"ak42\"); smelt imports the legacy "
                       "version 0 format: re-export with export.py --version 0", path);
    *h = (l2c_header){v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[5] > 0, 0};
    const char *why = NULL;
    if (h->dim <= 0 || h->dim > (1 << 16)) why = "dim";
    else if (h->hidden <= 0 || h->hidden > (1 << 20)) why = "hidden_dim";
    else if (h->n_layers <= 0 || h->n_layers > MODEL_MAX_LAYERS) why = "n_layers";
    else if (h->n_heads <= 0 || h->dim % h->n_heads || (h->dim / h->n_heads) % 2) why = "n_heads";
    else if (h->n_kv_heads <= 0 || h->n_kv_heads > h->n_heads || h->n_heads % h->n_kv_heads) why = "n_kv_heads";
    else if (h->vocab == 0 || h->vocab < -(1 << 24) || h->vocab > (1 << 24)) why = "vocab_size";
    else if (h->seq_len <= 0 || h->seq_len > (1 << 24)) why = "seq_len";
    if (why)
        return err_set(ERR_INPUT, "%s: not a llama2.c checkpoint: header field %s is out of range (dim=%d hidden_dim=%d "
                       "n_layers=%d n_heads=%d n_kv_heads=%d vocab_size=%d seq_len=%d)", path, why, v[0], v[1], v[2],
                       v[3], v[4], v[5], v[6]);
    if (h->vocab < 0) h->vocab = -h->vocab;
    h->expect_bytes = L2C_HEADER_BYTES + 4 * l2c_floats(h); /* bounded: < 2^63 by the limits above */
    if (*file_size < h->expect_bytes)
        return err_set(ERR_CORRUPT, "%s is %llu bytes but its header (dim=%d, %d layers, vocab %d, %s classifier) "
                       "implies %llu: the file is truncated (re-download it)", path, (unsigned long long)*file_size,
                       h->dim, h->n_layers, h->vocab, h->shared ? "shared" : "separate",
                       (unsigned long long)h->expect_bytes);
    if (*file_size > h->expect_bytes)
        return err_set(ERR_CORRUPT, "%s is %llu bytes but its header implies %llu: %llu unexplained trailing bytes; "
                       "not a llama2.c version 0 checkpoint, or the header is damaged", path,
                       (unsigned long long)*file_size, (unsigned long long)h->expect_bytes,
                       (unsigned long long)(*file_size - h->expect_bytes));
    return 0;
}

static void header_to_config(const l2c_header *h, model_config *c) {
    memset(c, 0, sizeof *c);
    snprintf(c->model_type, sizeof c->model_type, "llama");
    c->hidden = h->dim;
    c->n_layers = h->n_layers;
    c->n_heads = h->n_heads;
    c->n_kv_heads = h->n_kv_heads;
    c->head_dim = h->dim / h->n_heads;
    c->intermediate = h->hidden;
    c->vocab = h->vocab;
    c->rms_eps = 1e-5f;        /* run.c's rmsnorm */
    c->rope_theta = 10000.0f;  /* run.c's RoPE */
    c->rope_scaling = ROPE_SCALING_NONE;
    c->tie_embeddings = h->shared;
    c->attention_bias = 0;
    c->max_pos = h->seq_len;
    c->bos_id = 1;             /* llama2.c's tokenizer: BOS 1, EOS 2 */
    c->eos_id = 2;
    c->n_eos = 1;
    c->eos_ids[0] = 2;
    config_fill_uniform(c);
}

int llama2c_read_config(const char *path, model_config *cfg) {
    l2c_header h;
    uint64_t size;
    if (read_header(path, &h, &size)) return -1;
    header_to_config(&h, cfg);
    return config_validate(cfg) ? err_prefix("%s: ", path) : 0;
}

int rope_rows_to_hf(float *w, int n_heads, int head_dim, int cols, int inverse) {
    size_t head = (size_t)head_dim * (size_t)cols, half = (size_t)head_dim / 2;
    float *tmp = xmalloc(head * sizeof(float));
    if (!tmp) return -1;
    for (int hh = 0; hh < n_heads; hh++) {
        float *base = w + (size_t)hh * head;
        memcpy(tmp, base, head * sizeof(float));
        for (size_t k = 0; k < half; k++)
            for (size_t p = 0; p < 2; p++) {
                size_t hf = p * half + k, inter = 2 * k + p; /* HF row, llama2.c row */
                if (inverse) memcpy(base + inter * cols, tmp + hf * cols, (size_t)cols * sizeof(float));
                else memcpy(base + hf * cols, tmp + inter * cols, (size_t)cols * sizeof(float));
            }
    }
    free(tmp);
    return 0;
}

int llama2c_load(const char *path, model_config *cfg, model_weights *w) {
    memset(w, 0, sizeof *w);
    l2c_header h;
    uint64_t size;
    if (read_header(path, &h, &size)) return -1;
    header_to_config(&h, cfg);
    if (weights_alloc(w, cfg)) return err_prefix("%s: ", path);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        weights_free(w);
        return err_errno("cannot open %s", path);
    }
    void *map = mmap(NULL, (size_t)size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (map == MAP_FAILED) {
        weights_free(w);
        return err_errno("cannot mmap %s", path);
    }
    const char *p = (const char *)map + L2C_HEADER_BYTES;
    const size_t D = (size_t)h.dim, F = (size_t)h.hidden, V = (size_t)h.vocab;
    const size_t hs = D / (size_t)h.n_heads, kv = hs * (size_t)h.n_kv_heads, q = hs * (size_t)h.n_heads;
#define TAKE(dst, n)                              \
    do {                                          \
        memcpy((dst), p, (n) * sizeof(float));    \
        p += (n) * sizeof(float);                 \
    } while (0)
#define EACH_LAYER(field, n)                                        \
    for (int l = 0; l < h.n_layers; l++) TAKE(w->layers[l].field, n)
    TAKE(w->embed, V * D);
    EACH_LAYER(attn_norm, D);
    EACH_LAYER(wq, q * D);
    EACH_LAYER(wk, kv * D);
    EACH_LAYER(wv, kv * D);
    EACH_LAYER(wo, D * q);
    EACH_LAYER(mlp_norm, D);
    EACH_LAYER(w_gate, F * D); /* w1 */
    EACH_LAYER(w_down, D * F); /* w2 */
    EACH_LAYER(w_up, F * D);   /* w3 */
    TAKE(w->final_norm, D);
    p += (size_t)h.seq_len * hs * sizeof(float); /* freq_cis_real, freq_cis_imag: recomputed by the engine */
    if (!h.shared) TAKE(w->lm_head, V * D);
#undef EACH_LAYER
#undef TAKE
    int rc = 0;
    if ((uint64_t)(p - (const char *)map) != h.expect_bytes)
        rc = err_set(ERR_INTERNAL, "%s: read %lld bytes, expected %llu (a bug in the llama2.c importer)", path,
                     (long long)(p - (const char *)map), (unsigned long long)h.expect_bytes);
    munmap(map, (size_t)size);
    for (int l = 0; l < h.n_layers && !rc; l++)
        rc = rope_rows_to_hf(w->layers[l].wq, h.n_heads, (int)hs, h.dim, 0) ||
             rope_rows_to_hf(w->layers[l].wk, h.n_kv_heads, (int)hs, h.dim, 0);
    if (rc) weights_free(w);
    return rc ? -1 : 0;
}
