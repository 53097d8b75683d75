/* qckpt_gptq.c: the GPTQ checkpoint format (AutoGPTQ / GPTQModel, read by vLLM, SGLang and
 * transformers through optimum): per quantized linear qweight, qzeros, scales and g_idx
 * (qcheckpoint.h, ALGORITHMS.md section 5). One quantization_config covers the model, so every
 * linear of every layer is quantized with the same bits, group size and symmetry (lm_head may be
 * too: "lm_head": true). Act order (desc_act) checkpoints keep their g_idx (qweight.g_idx): each
 * column's group, every group of group_size columns. Zero points are stored minus one ("gptq" v1, what AutoGPTQ wrote and what
 * loaders expect by default); "checkpoint_format": "gptq_v2" files (stored as they are) load too. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "model/qckpt_internal.h"

/* The model-wide group size: that of the first linear with groups smaller than its input, or -1
 * (one group per output channel everywhere). */
static int model_group(const model_config *cfg, const model_quant *q) {
    for (int l = 0; l < cfg->n_layers; l++)
        for (int k = 0; k < QLIN_N; k++)
            if (qweight_is_set(&q->lin[l][k]) && q->lin[l][k].group_size < q->lin[l][k].n_in) return q->lin[l][k].group_size;
    return -1;
}

/* A linear agrees with the model-wide group size G when its groups are G, or span its whole input
 * and G is -1 or equal to that input. */
static int group_agrees(const qweight *w, int G) {
    return w->group_size == G || (w->group_size == w->n_in && (G == -1 || G == w->n_in));
}

/* The scheme every linear must share. */
static int gptq_check(const model_config *cfg, const model_quant *q) {
    const qweight *a = &q->lin[0][0];
    const int G = model_group(cfg, q);
    for (int l = 0; l <= cfg->n_layers; l++)
        for (int k = 0; k < QLIN_N; k++) {
            const int head = l == cfg->n_layers;
            const qweight *w = head ? &q->lm_head : &q->lin[l][k];
            if (head && (k || !qweight_is_set(w))) break;
            char mod[96];
            qlin_module_name(mod, sizeof mod, l, head ? QLIN_N : k);
            if (!qweight_is_set(w))
                return err_set(ERR_INPUT, "format gptq quantizes every linear of every layer, but %s is not quantized; "
                               "use format compressed-tensors (it lists the others in \"ignore\")", mod);
            if (w->bits != a->bits || !group_agrees(w, G))
                return err_set(ERR_INPUT, "format gptq has one bits/group_size for the model, but %s has %d bits and "
                               "groups of %d inputs (of %d) where the model has %d bits and group_size %d; use format "
                               "compressed-tensors", mod, w->bits, w->group_size, w->n_in, a->bits, G);
        }
    return 0;
}

static int gptq_config_json(strbuf *sb, const model_config *cfg, const model_quant *q) {
    if (gptq_check(cfg, q)) return -1;
    const qweight *a = &q->lin[0][0];
    int sym = 1, act_order = 0;
    for (int l = 0; l < cfg->n_layers; l++)
        for (int k = 0; k < QLIN_N; k++) sym &= q->lin[l][k].zeros == NULL, act_order |= q->lin[l][k].g_idx != NULL;
    if (qweight_is_set(&q->lm_head)) sym &= q->lm_head.zeros == NULL, act_order |= q->lm_head.g_idx != NULL;
    /* desc_act: some linear's g_idx regroups its columns (loaders then follow g_idx; the others'
     * g_idx is the plain column / group_size, right either way) */
    return sb_printf(sb, "{\n    \"quant_method\": \"gptq\",\n    \"bits\": %d,\n    \"group_size\": %d,\n"
                     "    \"desc_act\": %s,\n    \"sym\": %s,\n    \"static_groups\": false,\n"
                     "    \"true_sequential\": true,\n    \"lm_head\": %s,\n    \"checkpoint_format\": \"gptq\"\n  }",
                     a->bits, model_group(cfg, q), act_order ? "true" : "false", sym ? "true" : "false",
                     qweight_is_set(&q->lm_head) ? "true" : "false");
}

static int gptq_write_linear(qckpt_out *o, const char *module, const qweight *w) {
    const int b = w->bits, pf = 32 / b, n_out = w->n_out, n_in = w->n_in, ng = n_in / w->group_size;
    const uint8_t mask = (uint8_t)((1 << b) - 1);
    uint32_t *qw = xmalloc((size_t)(n_in / pf) * n_out * 4), *qz = xmalloc((size_t)ng * (n_out / pf) * 4);
    uint32_t *col = xmalloc((size_t)(n_in / pf) * 4);
    uint16_t *sc = xmalloc((size_t)ng * n_out * 2);
    int32_t *gidx = xmalloc((size_t)n_in * 4);
    uint8_t *zm1 = xmalloc((size_t)n_out);
    if (!qw || !qz || !col || !sc || !gidx || !zm1) {
        free(qw), free(qz), free(col), free(sc), free(gidx), free(zm1);
        return -1;
    }
    for (int r = 0; r < n_out; r++) { /* column r of qweight: row r's codes along the input dimension */
        qckpt_pack_bits(col, w->codes + (size_t)r * n_in, (size_t)n_in, 1, b);
        for (int i = 0; i < n_in / pf; i++) qw[(size_t)i * n_out + r] = col[i];
    }
    for (int g = 0; g < ng; g++) {
        for (int r = 0; r < n_out; r++) {
            zm1[r] = (uint8_t)((qweight_zero(w, r, g) - 1) & mask);
            sc[(size_t)g * n_out + r] = st_f32_to_f16(w->scales[(size_t)r * ng + g]);
        }
        qckpt_pack_bits(qz + (size_t)g * (n_out / pf), zm1, (size_t)n_out, 1, b);
    }
    for (int i = 0; i < n_in; i++) gidx[i] = qweight_group(w, i); /* act order: the groups as taken */
    free(col), free(zm1);
    char name[160];
#define NAME(p) (snprintf(name, sizeof name, "%s.%s", module, p), name)
    if (qckpt_add(o, NAME("qweight"), ST_I32, 2, n_in / pf, n_out, qw, 0, NULL)) {
        free(qz), free(sc), free(gidx);
        return -1;
    }
    if (qckpt_add(o, NAME("qzeros"), ST_I32, 2, ng, n_out / pf, qz, 0, NULL)) {
        free(sc), free(gidx);
        return -1;
    }
    if (qckpt_add(o, NAME("scales"), ST_F16, 2, ng, n_out, sc, 0, NULL)) {
        free(gidx);
        return -1;
    }
    return qckpt_add(o, NAME("g_idx"), ST_I32, 1, n_in, 0, gidx, 0, NULL);
#undef NAME
}

static int get_int(const cJSON *qc, const char *key, int *out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(qc, key);
    if (!cJSON_IsNumber(v)) return err_set(ERR_INPUT, "quantization_config (gptq): \"%s\" is missing or not a number", key);
    *out = v->valueint;
    return 0;
}

static int read_linear(qweight *w, const st_set *s, const char *mod, int n_out, int n_in, int bits, int group, int v2) {
    const int pf = 32 / bits, G = group < 0 ? n_in : group;
    if (n_in % G || n_in % pf || n_out % pf)
        return err_set(ERR_INPUT, "%s: [%d, %d] does not split into groups of %d and words of %d codes", mod, n_out, n_in,
                       G, pf);
    const int ng = n_in / G, c = 1 << (bits - 1);
    *w = (qweight){.type = QW_INT, .bits = bits, .act = QA_NONE, .n_out = n_out, .n_in = n_in, .group_size = G};
    if (qweight_alloc(w, 1, 0)) return -1;
    const st_tensor *tq = qckpt_tensor(s, mod, "qweight", 2, n_in / pf, n_out, 1);
    const st_tensor *tz = tq ? qckpt_tensor(s, mod, "qzeros", 2, ng, n_out / pf, 1) : NULL;
    const st_tensor *ts = tz ? qckpt_tensor(s, mod, "scales", 2, ng, n_out, 1) : NULL;
    const st_tensor *tg = ts ? qckpt_tensor(s, mod, "g_idx", 1, n_in, 0, 0) : NULL;
    int64_t *qv = NULL, *zv = NULL, *gv = NULL;
    float *sv = NULL;
    uint32_t *words = xmalloc((size_t)(n_in > n_out ? n_in : n_out) / pf * 4 + 4);
    int all_c = 1, rc = -1;
    if (!ts || !words || qckpt_read_ints(&qv, s, tq, "qweight") || qckpt_read_ints(&zv, s, tz, "qzeros") ||
        qckpt_read_floats(&sv, s, ts, "scales") || (tg && qckpt_read_ints(&gv, s, tg, "g_idx")))
        goto done;
    if (gv) { /* act order (desc_act): the group of each column, G columns per group */
        int32_t *g32 = xmalloc(sizeof(int32_t) * (size_t)n_in);
        if (!g32) goto done;
        for (int i = 0; i < n_in; i++) g32[i] = gv[i] < 0 || gv[i] >= ng ? -1 : (int32_t)gv[i]; /* -1: refused below */
        const int bad = qweight_set_g_idx(w, g32);
        free(g32);
        if (bad) {
            err_set(ERR_CORRUPT, "%s.g_idx in %s: %s (a group index outside 0..%d reads as -1)", mod, s->dir, err_msg(),
                    ng - 1);
            goto done;
        }
    }
    for (int r = 0; r < n_out; r++) {
        for (int i = 0; i < n_in / pf; i++) words[i] = (uint32_t)qv[(size_t)i * n_out + r];
        qckpt_unpack_bits(w->codes + (size_t)r * n_in, 1, words, (size_t)n_in, bits);
    }
    for (int g = 0; g < ng; g++) {
        for (int i = 0; i < n_out / pf; i++) words[i] = (uint32_t)zv[(size_t)g * (n_out / pf) + i];
        qckpt_unpack_bits(w->zeros + g, (size_t)ng, words, (size_t)n_out, bits);
        for (int r = 0; r < n_out; r++) {
            uint8_t *z = &w->zeros[(size_t)r * ng + g];
            if (!v2) *z = (uint8_t)((*z + 1) & ((1 << bits) - 1));
            all_c &= *z == c;
            w->scales[(size_t)r * ng + g] = sv[(size_t)g * n_out + r];
        }
    }
    if (all_c) { /* symmetric: no zero points */
        free(w->zeros);
        w->zeros = NULL;
    }
    rc = qckpt_check_codes(w, mod, s->dir, ERR_CORRUPT);
done:
    if (rc) qweight_free(w);
    free(qv), free(zv), free(gv), free(sv), free(words);
    return rc;
}

static int gptq_read(model_quant *q, const cJSON *qc, const st_set *s, const model_config *cfg) {
    int bits = 0, group = 0;
    if (get_int(qc, "bits", &bits) || get_int(qc, "group_size", &group)) return -1;
    if (bits != 2 && bits != 4 && bits != 8)
        return err_set(ERR_INPUT, "quantization_config (gptq): bits %d; smelt reads 2, 4 and 8", bits);
    if (group == 0 || group < -1) return err_set(ERR_INPUT, "quantization_config (gptq): group_size %d", group);
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(qc, "checkpoint_format");
    const int v2 = cJSON_IsString(f) && !strcmp(f->valuestring, "gptq_v2");
    if (cJSON_IsString(f) && !v2 && strcmp(f->valuestring, "gptq"))
        return err_set(ERR_INPUT, "quantization_config (gptq): checkpoint_format '%s'; smelt reads gptq and gptq_v2 "
                       "(marlin and other repacked layouts are not)", f->valuestring);
    for (int idx = 0; idx <= cfg->n_layers * QLIN_N; idx++) {
        const int head = idx == cfg->n_layers * QLIN_N, l = head ? 0 : idx / QLIN_N, k = head ? QLIN_N : idx % QLIN_N;
        char mod[96];
        qlin_module_name(mod, sizeof mod, l, k);
        char name[128];
        snprintf(name, sizeof name, "%s.qweight", mod);
        if (!st_set_find(s, name, NULL)) continue; /* an fp32 linear (lm_head usually) */
        int n_out, n_in;
        qlin_shape(cfg, l, k, &n_out, &n_in);
        if (read_linear(model_quant_at(q, l, k), s, mod, n_out, n_in, bits, group, v2)) return -1;
    }
    return 0;
}

static const char *const gptq_params[] = {"qweight", "qzeros", "scales", "g_idx", NULL};

const qckpt_ops qckpt_gptq_ops = {
    .format = QCKPT_GPTQ,
    .params = gptq_params,
    .check = gptq_check,
    .config_json = gptq_config_json,
    .write_linear = gptq_write_linear,
    .read = gptq_read,
};
