/* ckpt.c: in-stage checkpoints of the `quantize` stage, one per finished layer, in the stage's
 * checkpoint directory:
 *   layer-NNNN.bin      rank 0: the layer's result: per linear its qweight (codes, scales, zeros) or,
 *                       when ignored, its float weights; then both norm weights (smoothing changes them)
 *   stream-rR-LNNNN.bin each rank: the calibration stream after layer NNNN (header with its sha256)
 *   state.json          rank 0, written last: fingerprint, layers done, the digests of the layer files,
 *                       the running error sum
 * A resumed attempt loads the original model again, puts every finished layer back (dequantizing its
 * codes gives bitwise the weights the uninterrupted run had), restores the stream and goes on, so the
 * output is byte-identical to an uninterrupted run. Writes are atomic (temporary name, fsync, rename). */
#include <cjson/cJSON.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "common/fsutil.h"
#include "common/sha256.h"
#include "stages/quantize/qstage.h"

#define QCKPT_MAGIC 0x4c51534du /* "MSQL" */
#define STREAM_MAGIC 0x5351534du /* "MSQS" */

typedef struct {
    unsigned char *p;
    size_t n, cap;
    int failed;
} buf;

static void put(buf *b, const void *x, size_t n) {
    if (b->failed) return;
    if (b->n + n > b->cap) {
        size_t cap = b->cap ? b->cap : 1 << 16;
        while (cap < b->n + n) cap *= 2;
        unsigned char *p = xrealloc(b->p, cap);
        if (!p) {
            b->failed = 1;
            return;
        }
        b->p = p, b->cap = cap;
    }
    memcpy(b->p + b->n, x, n);
    b->n += n;
}
static void put_i32(buf *b, int32_t v) { put(b, &v, 4); }

typedef struct {
    const unsigned char *p;
    size_t n, at;
} rd;

static int get(rd *r, void *x, size_t n) {
    if (r->at + n > r->n) return -1;
    memcpy(x, r->p + r->at, n);
    r->at += n;
    return 0;
}
static int get_i32(rd *r, int32_t *v) { return get(r, v, 4); }

static char *layer_path(const char *dir, int l) {
    return xasprintf("%s/layer-%04d.bin", dir, l);
}
static char *stream_path(const char *dir, int rank, int l) {
    return xasprintf("%s/stream-r%d-L%04d.bin", dir, rank, l);
}

static int write_layer(qrun *qr, int l, char hex[SHA256_HEX_LEN + 1]) {
    model *m = &qr->m;
    buf b = {0};
    put_i32(&b, (int32_t)QCKPT_MAGIC), put_i32(&b, l), put_i32(&b, QLIN_N);
    for (int k = 0; k < QLIN_N; k++) {
        const qweight *q = model_quant_at(qr->mq, l, k);
        int no, ni;
        const float *w = lin_weights(m, l, k, &no, &ni);
        put_i32(&b, qweight_is_set(q)), put_i32(&b, no), put_i32(&b, ni);
        if (!qweight_is_set(q)) {
            put(&b, w, sizeof(float) * (size_t)no * ni);
            continue;
        }
        put_i32(&b, q->type), put_i32(&b, q->bits), put_i32(&b, q->act), put_i32(&b, q->group_size);
        put_i32(&b, q->n_scales), put_i32(&b, q->zeros != NULL);
        put(&b, q->codes, (size_t)no * ni);
        put(&b, q->scales, sizeof(float) * (size_t)q->n_scales);
        if (q->zeros) put(&b, q->zeros, (size_t)no * (ni / q->group_size));
    }
    put(&b, m->w.layers[l].attn_norm, sizeof(float) * (size_t)m->cfg.hidden);
    put(&b, m->w.layers[l].mlp_norm, sizeof(float) * (size_t)m->cfg.hidden);
    char *path = layer_path(qr->ctx->checkpoint_dir, l);
    int rc = b.failed || !path ? -1 : fs_write_atomic(path, b.p, b.n);
    if (!rc) sha256_hex(hex, b.p, b.n);
    free(b.p), free(path);
    return rc;
}

/* Puts layer l back from its file: qweights, weights (their dequantized values), norms. */
static int read_layer(qrun *qr, int l, const char *want_hex) {
    model *m = &qr->m;
    char *path = layer_path(qr->ctx->checkpoint_dir, l), *data = NULL, hex[SHA256_HEX_LEN + 1];
    size_t len = 0;
    int rc = !path || fs_read_file(path, (size_t)1 << 40, &data, &len) ? -1 : 0;
    if (!rc) {
        sha256_hex(hex, data, len);
        if (strcmp(hex, want_hex)) rc = err_set(ERR_CORRUPT, "in-stage checkpoint %s does not match its digest", path);
    }
    rd r = {(const unsigned char *)data, len, 0};
    int32_t magic, layer, nl;
    if (!rc && (get_i32(&r, &magic) || get_i32(&r, &layer) || get_i32(&r, &nl) || magic != (int32_t)QCKPT_MAGIC ||
                layer != l || nl != QLIN_N))
        rc = err_set(ERR_CORRUPT, "in-stage checkpoint %s: bad header", path);
    for (int k = 0; k < QLIN_N && !rc; k++) {
        int no, ni;
        float *w = lin_weights(m, l, k, &no, &ni);
        int32_t quantized, fo, fi;
        if (get_i32(&r, &quantized) || get_i32(&r, &fo) || get_i32(&r, &fi) || fo != no || fi != ni) {
            rc = err_set(ERR_CORRUPT, "in-stage checkpoint %s: linear %d does not fit the model", path, k);
            break;
        }
        if (!quantized) {
            if (get(&r, w, sizeof(float) * (size_t)no * ni)) rc = err_set(ERR_CORRUPT, "%s is truncated", path);
            continue;
        }
        qweight *q = model_quant_at(qr->mq, l, k);
        int32_t type, bits, act, gs, ns, hz;
        if (get_i32(&r, &type) || get_i32(&r, &bits) || get_i32(&r, &act) || get_i32(&r, &gs) || get_i32(&r, &ns) ||
            get_i32(&r, &hz)) {
            rc = err_set(ERR_CORRUPT, "%s is truncated", path);
            break;
        }
        qweight_free(q);
        *q = (qweight){.type = (qw_type)type, .bits = bits, .act = (qa_type)act, .n_out = no, .n_in = ni, .group_size = gs};
        if (qweight_alloc(q, hz, ns == 1 && type == QW_FP8)) {
            rc = err_prefix("in-stage checkpoint %s: ", path);
            break;
        }
        if (q->n_scales != ns || get(&r, q->codes, (size_t)no * ni) || get(&r, q->scales, sizeof(float) * (size_t)ns) ||
            (hz && get(&r, q->zeros, (size_t)no * (ni / gs)))) {
            rc = err_set(ERR_CORRUPT, "%s is truncated or inconsistent", path);
            break;
        }
        qweight_dequantize(w, q);
    }
    if (!rc && (get(&r, m->w.layers[l].attn_norm, sizeof(float) * (size_t)m->cfg.hidden) ||
                get(&r, m->w.layers[l].mlp_norm, sizeof(float) * (size_t)m->cfg.hidden) || r.at != len))
        rc = err_set(ERR_CORRUPT, "in-stage checkpoint %s: bad size", path);
    if (!rc) rc = model_quant_rebind_layer(m, l); /* the layer runs quantized, as it did before the stop */
    free(path), free(data);
    return rc;
}

static int write_stream(qrun *qr, int l) {
    const size_t n = (size_t)layerwise_tokens(qr->lw) * qr->m.cfg.hidden;
    const float *x = layerwise_stream(qr->lw);
    buf b = {0};
    char hex[SHA256_HEX_LEN + 1];
    sha256_hex(hex, x, sizeof(float) * n);
    int64_t nn = (int64_t)n;
    put_i32(&b, (int32_t)STREAM_MAGIC), put_i32(&b, l), put(&b, &nn, 8), put(&b, hex, SHA256_HEX_LEN);
    put(&b, x, sizeof(float) * n);
    char *path = stream_path(qr->ctx->checkpoint_dir, qr->ctx->rank, l);
    int rc = b.failed || !path ? -1 : fs_write_atomic(path, b.p, b.n);
    free(b.p), free(path);
    return rc;
}

static int read_stream(qrun *qr, int l) {
    char *path = stream_path(qr->ctx->checkpoint_dir, qr->ctx->rank, l), *data = NULL, hex[SHA256_HEX_LEN + 1];
    size_t len = 0;
    const size_t n = (size_t)layerwise_tokens(qr->lw) * qr->m.cfg.hidden, head = 16 + SHA256_HEX_LEN;
    int rc = !path || fs_read_file(path, (size_t)1 << 40, &data, &len) ? -1 : 0;
    int32_t magic, layer;
    int64_t nn;
    if (!rc && len == head + sizeof(float) * n) {
        memcpy(&magic, data, 4), memcpy(&layer, data + 4, 4), memcpy(&nn, data + 8, 8);
        sha256_hex(hex, data + head, sizeof(float) * n);
        if (magic != (int32_t)STREAM_MAGIC || layer != l || nn != (int64_t)n || memcmp(hex, data + 16, SHA256_HEX_LEN))
            rc = -1;
    } else if (!rc) {
        rc = -1;
    }
    if (rc) err_set(ERR_CORRUPT, "in-stage checkpoint %s is missing or damaged; delete the stage's checkpoint folder "
                    "to start over", path ? path : "stream");
    else rc = layerwise_restore(qr->lw, l + 1, (const float *)(data + head));
    free(path), free(data);
    return rc;
}

/* Removes this rank's stream files of layers before l. */
static void remove_old_streams(const char *dir, int rank, int l) {
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d))) {
        int r, k;
        char tail;
        if (sscanf(e->d_name, "stream-r%d-L%d.bi%c", &r, &k, &tail) == 3 && r == rank && k < l) {
            char *p = fs_join(dir, e->d_name);
            if (p) fs_rm_rf(p);
            free(p);
        }
    }
    closedir(d);
}

static char *state_path(const char *dir) { return fs_join(dir, "state.json"); }

int qckpt_save(qrun *qr, int l) {
    stage_ctx *ctx = qr->ctx;
    char hex[SHA256_HEX_LEN + 1];
    int rc = 0;
    if (ctx->rank == 0) rc = write_layer(qr, l, hex);
    if (!rc && qr->lw) rc = write_stream(qr, l);
    rc = qagree(ctx, rc);
    if (!rc && ctx->rank == 0) {
        /* the digests of the earlier layers come from the previous state */
        char *sp = state_path(ctx->checkpoint_dir), *text = NULL, *out = NULL;
        size_t len;
        cJSON *j = NULL;
        if (sp && fs_exists(sp) && !fs_read_file(sp, 1 << 26, &text, &len)) j = cJSON_Parse(text);
        if (!j || !cJSON_GetObjectItemCaseSensitive(j, "layers")) {
            cJSON_Delete(j);
            j = cJSON_CreateObject();
            cJSON_AddStringToObject(j, "format", "smelt-quantize-state");
            cJSON_AddItemToObject(j, "layers", cJSON_CreateArray());
        }
        cJSON_DeleteItemFromObjectCaseSensitive(j, "fingerprint");
        cJSON_DeleteItemFromObjectCaseSensitive(j, "done");
        cJSON_DeleteItemFromObjectCaseSensitive(j, "sum_err_rel");
        cJSON_DeleteItemFromObjectCaseSensitive(j, "n_err");
        cJSON_AddStringToObject(j, "fingerprint", qr->fingerprint);
        cJSON_AddNumberToObject(j, "done", l + 1);
        char sum[48];
        snprintf(sum, sizeof sum, "%a", qr->sum_err_rel); /* hexadecimal: round-trips exactly */
        cJSON_AddStringToObject(j, "sum_err_rel", sum);
        cJSON_AddNumberToObject(j, "n_err", qr->n_err);
        cJSON *layers = cJSON_GetObjectItemCaseSensitive(j, "layers");
        while (cJSON_GetArraySize(layers) > l) cJSON_DeleteItemFromArray(layers, cJSON_GetArraySize(layers) - 1);
        cJSON_AddItemToArray(layers, cJSON_CreateString(hex));
        out = cJSON_Print(j);
        /* the layer's metrics first: a kill between the two must not leave a state without its metrics */
        rc = !sp || !out ? err_set(ERR_NOMEM, "out of memory writing the quantize state") : stage_metrics_flush(ctx);
        if (!rc) rc = fs_write_atomic(sp, out, strlen(out));
        cJSON_Delete(j);
        free(sp), free(text), free(out);
    }
    rc = qagree(ctx, rc);
    if (!rc && qr->lw) remove_old_streams(ctx->checkpoint_dir, ctx->rank, l);
    if (rc) err_prefix("in-stage checkpoint of layer %d: ", l);
    return rc;
}

int qckpt_load(qrun *qr) {
    stage_ctx *ctx = qr->ctx;
    char *sp = state_path(ctx->checkpoint_dir), *text = NULL;
    size_t len;
    int done = 0;
    if (!sp) return -1;
    if (!fs_exists(sp) || fs_read_file(sp, 1 << 26, &text, &len)) {
        free(sp);
        return 0;
    }
    cJSON *j = cJSON_Parse(text);
    const cJSON *fp = cJSON_GetObjectItemCaseSensitive(j, "fingerprint"), *dn = cJSON_GetObjectItemCaseSensitive(j, "done"),
                *layers = cJSON_GetObjectItemCaseSensitive(j, "layers"),
                *sum = cJSON_GetObjectItemCaseSensitive(j, "sum_err_rel"), *ne = cJSON_GetObjectItemCaseSensitive(j, "n_err");
    int rc = 0;
    if (!cJSON_IsString(fp) || strcmp(fp->valuestring, qr->fingerprint) || !cJSON_IsNumber(dn) || !cJSON_IsArray(layers) ||
        !cJSON_IsString(sum) || !cJSON_IsNumber(ne)) {
        /* another key or rank count: the checkpoint is not ours (or damaged): start over */
        done = 0;
    } else {
        done = (int)dn->valuedouble;
        if (done < 1 || done > qr->m.cfg.n_layers || cJSON_GetArraySize(layers) < done)
            rc = err_set(ERR_CORRUPT, "%s: %d layers done of %d", sp, done, qr->m.cfg.n_layers);
        for (int l = 0; l < done && !rc; l++) {
            const cJSON *h = cJSON_GetArrayItem(layers, l);
            rc = cJSON_IsString(h) ? read_layer(qr, l, h->valuestring) : err_set(ERR_CORRUPT, "%s: bad layer digest", sp);
        }
        if (!rc && qr->lw) rc = read_stream(qr, done - 1);
        if (!rc) qr->sum_err_rel = strtod(sum->valuestring, NULL), qr->n_err = (int)ne->valuedouble;
    }
    cJSON_Delete(j);
    free(sp), free(text);
    return rc ? -1 : done;
}
