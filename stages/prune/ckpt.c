/* ckpt.c: the prune stage's in-stage checkpoint (prune.h): one file per finished layer (its
 * weights with the pruned rows and columns zeroed, its masks and stats) and one file per rank with
 * the residual stream at the input of the next layer. Each file is a header, its sections and the
 * SHA-256 of everything before it, written under a temporary name, fsynced and renamed, so a file
 * that exists is complete and a damaged one is detected. Resuming needs the layer files 0 .. L-1;
 * the stream file only saves recomputing the stream through those layers. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/error.h"
#include "common/fsutil.h"
#include "common/sha256.h"
#include "stages/prune/prune.h"

typedef struct {
    char magic[8]; /* "SMPRUNL1" */
    int32_t layer, n_mlp, n_kv, n_stats;
    uint64_t n_floats;
    char fingerprint[96];
} layer_hdr;

typedef struct {
    char magic[8]; /* "SMPRUNS1" */
    int32_t layer, hidden, rank, world;
    int64_t n_tokens;
    char fingerprint[96];
} stream_hdr;

typedef struct {
    void *p;
    size_t n;
} part;

/* Writes the parts and their SHA-256 (hex) to path atomically. */
static int blob_write(const char *path, const part *parts, int n_parts) {
    char *tmp = xasprintf("%s.tmp.%ld", path, (long)getpid());
    if (!tmp) return -1;
    FILE *f = fopen(tmp, "wb");
    if (!f) {
        err_errno("cannot create %s", tmp);
        free(tmp);
        return -1;
    }
    sha256_ctx *h = sha256_new();
    int rc = h ? 0 : -1;
    for (int i = 0; i < n_parts && !rc; i++) {
        sha256_update(h, parts[i].p, parts[i].n);
        if (parts[i].n && fwrite(parts[i].p, 1, parts[i].n, f) != parts[i].n) rc = err_errno("cannot write %s", tmp);
    }
    char hex[SHA256_HEX_LEN + 1];
    if (h) sha256_final_hex(h, hex);
    if (!rc && fwrite(hex, 1, SHA256_HEX_LEN, f) != SHA256_HEX_LEN) rc = err_errno("cannot write %s", tmp);
    if (!rc && (fflush(f) || fsync(fileno(f)))) rc = err_errno("cannot flush %s", tmp);
    if (fclose(f) && !rc) rc = err_errno("cannot close %s", tmp);
    if (!rc && rename(tmp, path)) rc = err_errno("cannot rename %s to %s", tmp, path);
    if (rc) unlink(tmp);
    free(tmp);
    return rc ? -1 : fs_fsync_parent(path);
}

/* Reads parts[0] (the header) alone. 1 when read, 0 when the file does not exist, -1 on errors. */
static int blob_read_header(const char *path, void *hdr, size_t n) {
    FILE *f = fopen(path, "rb");
    if (!f) return 0;
    size_t got = fread(hdr, 1, n, f);
    fclose(f);
    return got == n ? 1 : err_set(ERR_CORRUPT, "%s is truncated; delete it (the stage recomputes from the layer before)", path);
}

/* Reads every part (the first one being the header again) and checks the size and the hash. */
static int blob_read(const char *path, const part *parts, int n_parts) {
    FILE *f = fopen(path, "rb");
    if (!f) return err_errno("cannot open %s", path);
    sha256_ctx *h = sha256_new();
    int rc = h ? 0 : -1;
    for (int i = 0; i < n_parts && !rc; i++) {
        if (parts[i].n && fread(parts[i].p, 1, parts[i].n, f) != parts[i].n) rc = -2;
        else sha256_update(h, parts[i].p, parts[i].n);
    }
    char want[SHA256_HEX_LEN + 1], got[SHA256_HEX_LEN + 1] = {0};
    if (h) sha256_final_hex(h, want);
    if (!rc && fread(got, 1, SHA256_HEX_LEN, f) != SHA256_HEX_LEN) rc = -2;
    if (!rc && fgetc(f) != EOF) rc = -2;
    if (!rc && memcmp(want, got, SHA256_HEX_LEN)) rc = -2;
    fclose(f);
    if (rc == -2)
        return err_set(ERR_CORRUPT, "in-stage checkpoint %s is damaged (size or SHA-256 mismatch); delete the "
                       "stage's checkpoint folder to start the stage over", path);
    return rc;
}

static char *layer_path(const char *dir, int l) {
    char name[32];
    snprintf(name, sizeof name, "layer-%04d.bin", l);
    return fs_join(dir, name);
}

static char *stream_path(const char *dir, int rank, int world) {
    char name[48];
    snprintf(name, sizeof name, "stream-r%dof%d.bin", rank, world);
    return fs_join(dir, name);
}

static void layer_header(layer_hdr *h, const char *fingerprint, const model *m, int l, size_t n_floats) {
    memset(h, 0, sizeof *h);
    memcpy(h->magic, "SMPRUNL1", 8);
    h->layer = l;
    h->n_mlp = m->cfg.layers[l].intermediate;
    h->n_kv = m->cfg.layers[l].n_kv_heads;
    h->n_stats = (int32_t)PRUNE_STATS_N;
    h->n_floats = n_floats;
    snprintf(h->fingerprint, sizeof h->fingerprint, "%s", fingerprint);
}

int prune_ckpt_save_layer(const char *dir, const char *fingerprint, const model *m, const prune_masks *mk,
                          const prune_layer_stats *st, int l) {
    size_t n;
    float *span = prune_layer_span(m, l, &n);
    layer_hdr h;
    layer_header(&h, fingerprint, m, l, n);
    part parts[] = {{&h, sizeof h}, {(void *)st, sizeof *st}, {mk->mlp[l], (size_t)h.n_mlp}, {mk->kv[l], (size_t)h.n_kv},
                    {span, n * sizeof(float)}};
    char *path = layer_path(dir, l);
    int rc = path ? blob_write(path, parts, 5) : -1;
    free(path);
    return rc;
}

int prune_ckpt_layers(const char *dir, const char *fingerprint, const model *m) {
    for (int l = 0; l < m->cfg.n_layers; l++) {
        char *path = layer_path(dir, l);
        if (!path) return -1;
        layer_hdr h, want;
        int rc = blob_read_header(path, &h, sizeof h);
        free(path);
        if (rc < 0) return -1;
        size_t n;
        prune_layer_span(m, l, &n);
        layer_header(&want, fingerprint, m, l, n);
        if (rc == 0 || memcmp(&h, &want, sizeof h)) return l;
    }
    return m->cfg.n_layers;
}

int prune_ckpt_load_layer(const char *dir, const char *fingerprint, model *m, prune_masks *mk, prune_layer_stats *st,
                          int l) {
    size_t n;
    float *span = prune_layer_span(m, l, &n);
    layer_hdr h, want;
    layer_header(&want, fingerprint, m, l, n);
    part parts[] = {{&h, sizeof h}, {st, sizeof *st}, {mk->mlp[l], (size_t)want.n_mlp}, {mk->kv[l], (size_t)want.n_kv},
                    {span, n * sizeof(float)}};
    char *path = layer_path(dir, l);
    int rc = path ? blob_read(path, parts, 5) : -1;
    if (!rc && memcmp(&h, &want, sizeof h))
        rc = err_set(ERR_CORRUPT, "in-stage checkpoint %s belongs to another stage or model; delete it", path);
    free(path);
    return rc;
}

static void stream_header(stream_hdr *h, const char *fingerprint, const layerwise *lw, const model *m, int rank,
                          int world) {
    memset(h, 0, sizeof *h);
    memcpy(h->magic, "SMPRUNS1", 8);
    h->layer = layerwise_layer(lw);
    h->hidden = m->cfg.hidden;
    h->rank = rank, h->world = world;
    h->n_tokens = layerwise_tokens(lw);
    snprintf(h->fingerprint, sizeof h->fingerprint, "%s", fingerprint);
}

int prune_ckpt_save_stream(const char *dir, const char *fingerprint, const layerwise *lw, const model *m, int rank,
                           int world) {
    stream_hdr h;
    stream_header(&h, fingerprint, lw, m, rank, world);
    part parts[] = {{&h, sizeof h},
                    {(void *)layerwise_stream(lw), sizeof(float) * (size_t)h.n_tokens * (size_t)h.hidden}};
    char *path = stream_path(dir, rank, world);
    int rc = path ? blob_write(path, parts, 2) : -1;
    free(path);
    return rc;
}

int prune_ckpt_load_stream(const char *dir, const char *fingerprint, layerwise *lw, const model *m, int rank,
                           int world, int max_layer) {
    char *path = stream_path(dir, rank, world);
    if (!path) return -1;
    stream_hdr h, want;
    stream_header(&want, fingerprint, lw, m, rank, world);
    int rc = blob_read_header(path, &h, sizeof h);
    if (rc <= 0) return free(path), rc;
    want.layer = h.layer; /* any layer up to max_layer will do */
    if (memcmp(&h, &want, sizeof h) || h.layer > max_layer || h.layer < 0) return free(path), 0;
    const size_t n = (size_t)h.n_tokens * (size_t)h.hidden;
    float *buf = xmalloc(sizeof(float) * (n ? n : 1));
    part parts[] = {{&h, sizeof h}, {buf, sizeof(float) * n}};
    rc = buf ? blob_read(path, parts, 2) : -1;
    if (!rc) rc = layerwise_restore(lw, h.layer, buf);
    free(buf), free(path);
    return rc ? -1 : h.layer;
}
