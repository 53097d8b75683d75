/* qckpt_ct.c: the compressed-tensors format (vLLM, SGLang, transformers; the layout of the PyPI
 * package compressed-tensors 0.20: compressors/pack_quantized, naive_quantized): the
 * quantization_config (config_groups of schemes with their targets, ignore, format) and the
 * tensors of each quantized linear (qcheckpoint.h). Integers in the files are signed around the
 * grid's middle: the stored int8 weight is q - 2^(bits-1); pack-quantized adds 2^(bits-1) back
 * before packing, so its bit stream holds smelt's codes q as they are. */
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "model/qckpt_internal.h"

enum { CT_TENSOR, CT_CHANNEL, CT_GROUP };
static const char *const strategy_names[] = {"tensor", "channel", "group"};

typedef struct {
    qw_type type;
    int bits;
    qa_type act;
    int strategy, group_size; /* group_size: CT_GROUP only */
    int sym;
} ct_scheme;

static void scheme_of(const qweight *w, ct_scheme *s) {
    memset(s, 0, sizeof *s);
    s->type = w->type, s->bits = w->bits, s->act = w->act, s->sym = w->zeros == NULL;
    s->strategy = w->type == QW_FP8 && w->n_scales == 1 ? CT_TENSOR : w->group_size == w->n_in ? CT_CHANNEL : CT_GROUP;
    s->group_size = s->strategy == CT_GROUP ? w->group_size : 0;
}

static int scheme_eq(const ct_scheme *a, const ct_scheme *b) { return !memcmp(a, b, sizeof *a); }

static const char *format_of(const ct_scheme *s) {
    return s->type == QW_FP8 ? "float-quantized" : s->act == QA_INT8 ? "int-quantized" : "pack-quantized";
}

/* ---- config ---- */

static int put_scheme(strbuf *sb, const ct_scheme *s) {
    int rc = sb_printf(sb, "\"format\": \"%s\", \"input_activations\": ", format_of(s));
    if (s->act == QA_NONE) rc |= sb_puts(sb, "null");
    else /* dynamic: per token, or one scale per forward call (FP8 "tensor", vLLM's online FP8) */
        rc |= sb_printf(sb, "{\"dynamic\": true, \"group_size\": null, \"num_bits\": 8, \"strategy\": \"%s\", "
                        "\"symmetric\": true, \"type\": \"%s\"}", s->act == QA_FP8_TENSOR ? "tensor" : "token",
                        s->act == QA_INT8 ? "int" : "float");
    rc |= sb_puts(sb, ", \"output_activations\": null, ");
    return rc;
}

static int put_weights(strbuf *sb, const ct_scheme *s) {
    int rc = sb_puts(sb, "\"weights\": {\"dynamic\": false, \"group_size\": ");
    rc |= s->strategy == CT_GROUP ? sb_printf(sb, "%d", s->group_size) : sb_puts(sb, "null");
    rc |= sb_printf(sb, ", \"num_bits\": %d, \"strategy\": \"%s\", \"symmetric\": %s, \"type\": \"%s\"}}", s->bits,
                    strategy_names[s->strategy], s->sym ? "true" : "false", s->type == QW_FP8 ? "float" : "int");
    return rc;
}

static int ct_config_json(strbuf *sb, const model_config *cfg, const model_quant *q) {
    enum { MAX_SCHEMES = 16 };
    ct_scheme schemes[MAX_SCHEMES];
    int n_schemes = 0, rc = 0;
    /* every linear in order: its scheme index, or -1 when it stays fp32 */
    const int n_lin = cfg->n_layers * QLIN_N + 1;
    int *which = xmalloc((size_t)n_lin * sizeof *which);
    if (!which) return -1;
    for (int i = 0; i < n_lin; i++) {
        const qweight *w = i == n_lin - 1 ? &q->lm_head : &q->lin[i / QLIN_N][i % QLIN_N];
        which[i] = -1;
        if (!qweight_is_set(w)) continue;
        ct_scheme s;
        scheme_of(w, &s);
        int j = 0;
        while (j < n_schemes && !scheme_eq(&schemes[j], &s)) j++;
        if (j == n_schemes) {
            if (n_schemes == MAX_SCHEMES) {
                free(which);
                return err_set(ERR_INPUT, "more than %d different quantization schemes in one model", MAX_SCHEMES);
            }
            schemes[n_schemes++] = s;
        }
        which[i] = j;
    }
    char mod[96];
    rc |= sb_puts(sb, "{\n    \"config_groups\": {");
    for (int j = 0; j < n_schemes; j++) {
        rc |= sb_printf(sb, "%s\n      \"group_%d\": {", j ? "," : "", j);
        rc |= put_scheme(sb, &schemes[j]);
        rc |= sb_puts(sb, "\"targets\": [");
        if (n_schemes == 1) rc |= sb_puts(sb, "\"Linear\"");
        for (int i = 0, first = 1; n_schemes > 1 && i < n_lin; i++)
            if (which[i] == j) {
                qlin_module_name(mod, sizeof mod, i / QLIN_N, i == n_lin - 1 ? QLIN_N : i % QLIN_N);
                rc |= sb_printf(sb, "%s\"%s\"", first ? "" : ", ", mod);
                first = 0;
            }
        rc |= sb_puts(sb, "], ");
        rc |= put_weights(sb, &schemes[j]);
    }
    int same = 1;
    for (int j = 1; j < n_schemes; j++) same &= !strcmp(format_of(&schemes[j]), format_of(&schemes[0]));
    rc |= sb_printf(sb, "\n    },\n    \"format\": \"%s\",\n    \"global_compression_ratio\": null,\n    \"ignore\": [",
                    !n_schemes ? "dense" : same ? format_of(&schemes[0]) : "mixed-precision");
    for (int i = 0, first = 1; i < n_lin; i++)
        if (which[i] < 0) {
            qlin_module_name(mod, sizeof mod, i / QLIN_N, i == n_lin - 1 ? QLIN_N : i % QLIN_N);
            rc |= sb_printf(sb, "%s\"%s\"", first ? "" : ", ", mod);
            first = 0;
        }
    rc |= sb_puts(sb, "],\n    \"kv_cache_scheme\": null,\n    \"quant_method\": \"compressed-tensors\",\n"
                      "    \"quantization_status\": \"compressed\",\n    \"sparsity_config\": {},\n"
                      "    \"transform_config\": {},\n    \"version\": \"0.20.1\"\n  }");
    free(which);
    return rc ? -1 : 0;
}

/* ---- writing one linear ---- */

static int ct_write_linear(qckpt_out *o, const char *module, const qweight *w) {
    ct_scheme s;
    scheme_of(w, &s);
    const int ng = w->n_in / w->group_size, c = 1 << (w->bits - 1), n_out = w->n_out, n_in = w->n_in;
    const size_t n = (size_t)n_out * n_in;
    char name[160];
#define NAME(p) (snprintf(name, sizeof name, "%s.%s", module, p), name)
    if (!strcmp(format_of(&s), "pack-quantized")) {
        const int64_t wpr = ((int64_t)n_in * w->bits + 31) / 32, zw = ((int64_t)n_out * w->bits + 31) / 32;
        uint32_t *packed = xmalloc((size_t)(n_out * wpr) * sizeof *packed);
        int64_t *shape = xmalloc(2 * sizeof *shape);
        uint32_t *zp = w->zeros ? xcalloc((size_t)(zw * ng), sizeof *zp) : NULL, *col = w->zeros ? xmalloc((size_t)zw * 4) : NULL;
        if (!packed || !shape || (w->zeros && (!zp || !col))) {
            free(packed), free(shape), free(zp), free(col);
            return -1;
        }
        for (int r = 0; r < n_out; r++) qckpt_pack_bits(packed + (size_t)r * wpr, w->codes + (size_t)r * n_in, (size_t)n_in, 1, w->bits);
        shape[0] = n_out, shape[1] = n_in;
        for (int g = 0; zp && g < ng; g++) { /* packed along the rows: column g of [n_out, ng] as one stream */
            qckpt_pack_bits(col, w->zeros + g, (size_t)n_out, (size_t)ng, w->bits);
            for (int64_t i = 0; i < zw; i++) zp[i * ng + g] = col[i];
        }
        free(col);
        if (qckpt_add(o, NAME("weight_packed"), ST_I32, 2, n_out, wpr, packed, 0, NULL) ||
            qckpt_add(o, NAME("weight_scale"), ST_F32, 2, n_out, ng, w->scales, 1, NULL) ||
            qckpt_add(o, NAME("weight_shape"), ST_I64, 1, 2, 0, shape, 0, NULL)) {
            free(zp);
            return -1;
        }
        return zp ? qckpt_add(o, NAME("weight_zero_point"), ST_I32, 2, zw, ng, zp, 0, NULL) : 0;
    }
    if (s.type == QW_FP8)
        return qckpt_add(o, NAME("weight"), ST_F8_E4M3, 2, n_out, n_in, w->codes, 1, NULL) ||
                       (s.strategy == CT_TENSOR ? qckpt_add(o, NAME("weight_scale"), ST_F32, 1, 1, 0, w->scales, 1, NULL)
                                                : qckpt_add(o, NAME("weight_scale"), ST_F32, 2, n_out, ng, w->scales, 1, NULL))
                   ? -1
                   : 0;
    int8_t *q8 = xmalloc(n), *z8 = w->zeros ? xmalloc((size_t)n_out * ng) : NULL;
    if (!q8 || (w->zeros && !z8)) {
        free(q8), free(z8);
        return -1;
    }
    for (size_t i = 0; i < n; i++) q8[i] = (int8_t)(w->codes[i] - c);
    for (size_t i = 0; z8 && i < (size_t)n_out * ng; i++) z8[i] = (int8_t)(w->zeros[i] - c);
    if (qckpt_add(o, NAME("weight"), ST_I8, 2, n_out, n_in, q8, 0, NULL) ||
        qckpt_add(o, NAME("weight_scale"), ST_F32, 2, n_out, ng, w->scales, 1, NULL)) {
        free(z8);
        return -1;
    }
    return z8 ? qckpt_add(o, NAME("weight_zero_point"), ST_I8, 2, n_out, ng, z8, 0, NULL) : 0;
#undef NAME
}

/* ---- reading ---- */

typedef struct {
    const char *name;
    const cJSON *targets;
    ct_scheme s;
    const char *format;
} ct_group;

static int bad_field(const char *group, const char *field, const char *want) {
    return err_set(ERR_INPUT, "quantization_config group '%s': %s; smelt reads %s", group, field, want);
}

static int parse_group(ct_group *g, const cJSON *v, const char *top_format) {
    memset(&g->s, 0, sizeof g->s);
    g->name = v->string;
    g->targets = cJSON_GetObjectItemCaseSensitive(v, "targets");
    if (!cJSON_IsArray(g->targets)) return bad_field(g->name, "\"targets\" is not a list", "a list of module names");
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(v, "format");
    g->format = cJSON_IsString(f) ? f->valuestring : top_format;
    const cJSON *w = cJSON_GetObjectItemCaseSensitive(v, "weights");
    if (!cJSON_IsObject(w)) return bad_field(g->name, "no \"weights\" scheme", "weight quantization");
    const cJSON *nb = cJSON_GetObjectItemCaseSensitive(w, "num_bits"), *ty = cJSON_GetObjectItemCaseSensitive(w, "type");
    const cJSON *st = cJSON_GetObjectItemCaseSensitive(w, "strategy"), *gs = cJSON_GetObjectItemCaseSensitive(w, "group_size");
    const cJSON *sy = cJSON_GetObjectItemCaseSensitive(w, "symmetric"), *dy = cJSON_GetObjectItemCaseSensitive(w, "dynamic");
    if (!cJSON_IsNumber(nb) || !cJSON_IsString(ty) || !cJSON_IsString(st))
        return bad_field(g->name, "weights lack num_bits, type or strategy", "complete weight schemes");
    g->s.bits = nb->valueint;
    if (!strcmp(ty->valuestring, "int")) g->s.type = QW_INT;
    else if (!strcmp(ty->valuestring, "float") && g->s.bits == 8) g->s.type = QW_FP8;
    else return bad_field(g->name, "weights of another type or width (FP4?)", "int weights of 2 to 8 bits and FP8 E4M3");
    if (g->s.type == QW_INT && (g->s.bits < 2 || g->s.bits > 8)) return bad_field(g->name, "int weights of that width", "2 to 8 bits");
    if (cJSON_IsTrue(dy)) return bad_field(g->name, "dynamic weight quantization", "static weights");
    const cJSON *ao = cJSON_GetObjectItemCaseSensitive(w, "actorder");
    if (cJSON_IsString(ao) && !strcmp(ao->valuestring, "group"))
        return bad_field(g->name, "actorder \"group\" (columns regrouped by weight_g_idx)",
                         "static groups (actorder null or \"weight\")");
    g->s.sym = !cJSON_IsFalse(sy);
    int i = 0;
    while (i < 3 && strcmp(st->valuestring, strategy_names[i])) i++;
    if (i == 3) return bad_field(g->name, "a weight strategy other than tensor, channel or group (block?)", "those three");
    g->s.strategy = i;
    if (i == CT_GROUP) {
        if (!cJSON_IsNumber(gs) || gs->valueint < 1) return bad_field(g->name, "group strategy without a group_size", "a positive group_size");
        g->s.group_size = gs->valueint;
    }
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(v, "input_activations");
    if (!a || cJSON_IsNull(a)) g->s.act = QA_NONE;
    else {
        const cJSON *at = cJSON_GetObjectItemCaseSensitive(a, "type"), *an = cJSON_GetObjectItemCaseSensitive(a, "num_bits");
        const cJSON *as = cJSON_GetObjectItemCaseSensitive(a, "strategy"), *ad = cJSON_GetObjectItemCaseSensitive(a, "dynamic");
        if (!cJSON_IsNumber(an) || an->valueint != 8 || !cJSON_IsString(at) || !cJSON_IsTrue(ad) || !cJSON_IsString(as) ||
            (strcmp(as->valuestring, "token") && strcmp(as->valuestring, "tensor")))
            return bad_field(g->name, "activations other than 8-bit, dynamic, per token or per tensor (static input "
                             "scales?)", "int8 or FP8 dynamic per-token activations, or FP8 dynamic per-tensor ones");
        const int tensor = !strcmp(as->valuestring, "tensor");
        if (!strcmp(at->valuestring, "int") && !tensor) g->s.act = QA_INT8;
        else if (!strcmp(at->valuestring, "float")) g->s.act = tensor ? QA_FP8_TENSOR : QA_FP8;
        else if (tensor) return bad_field(g->name, "int8 activations with one dynamic scale per tensor", "per-token int8 activations");
        else return bad_field(g->name, "an activation type other than int or float", "int8 or FP8 activations");
    }
    if (!g->format || (strcmp(g->format, "pack-quantized") && strcmp(g->format, "int-quantized") &&
                       strcmp(g->format, "naive-quantized") && strcmp(g->format, "float-quantized")))
        return bad_field(g->name, "a storage format other than pack-, int-, naive- or float-quantized",
                         "those four");
    return 0;
}

/* compressed-tensors' matching of a target or ignore entry: a class name ("Linear"), a module name,
 * or "re:" and a regular expression matched at the start of the name (Python's re.match). */
static int ct_match(const char *pattern, const char *module, int *err) {
    if (!strcmp(pattern, "Linear")) return 1;
    if (strncmp(pattern, "re:", 3)) return !strcmp(pattern, module);
    int ec;
    PCRE2_SIZE eo;
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)(pattern + 3), PCRE2_ZERO_TERMINATED, 0, &ec, &eo, NULL);
    if (!re) {
        *err = err_set(ERR_INPUT, "quantization_config: the pattern '%s' does not compile", pattern);
        return 0;
    }
    pcre2_match_data *md = pcre2_match_data_create_from_pattern(re, NULL);
    int rc = md ? pcre2_match(re, (PCRE2_SPTR)module, strlen(module), 0, PCRE2_ANCHORED, md, NULL) : -1;
    pcre2_match_data_free(md);
    pcre2_code_free(re);
    return rc >= 0;
}

static int any_match(const cJSON *list, const char *module, int *err) {
    for (const cJSON *e = list ? list->child : NULL; e; e = e->next)
        if (cJSON_IsString(e) && ct_match(e->valuestring, module, err)) return 1;
    return 0;
}

/* Reads one linear of scheme g into w ([n_out, n_in] from the config). */
static int read_linear(qweight *w, const ct_group *g, const st_set *s, const char *mod, int n_out, int n_in) {
    const ct_scheme *sc = &g->s;
    const int G = sc->strategy == CT_GROUP ? sc->group_size : n_in;
    if (n_in % G)
        return err_set(ERR_INPUT, "%s: group_size %d of group '%s' does not divide its %d inputs", mod, G, g->name, n_in);
    const int ng = n_in / G, c = 1 << (sc->bits - 1);
    *w = (qweight){.type = sc->type, .bits = sc->bits, .act = sc->act, .n_out = n_out, .n_in = n_in, .group_size = G};
    const int per_tensor = sc->strategy == CT_TENSOR;
    if (qweight_alloc(w, !sc->sym, per_tensor && sc->type == QW_FP8)) return -1;
    int64_t *iv = NULL, *zv = NULL;
    float *sv = NULL;
    int rc = -1;
    const int pack = !strcmp(g->format, "pack-quantized");
    char gname[160];
    snprintf(gname, sizeof gname, "%s.weight_g_idx", mod);
    if (st_set_find(s, gname, NULL)) {
        err_set(ERR_INPUT, "%s: weight_g_idx (act-order column groups) in a compressed-tensors checkpoint is not "
                "supported; quantize with static groups", mod);
        goto done;
    }
    const st_tensor *ts = per_tensor ? qckpt_tensor(s, mod, "weight_scale", 1, 1, 0, 0) : NULL;
    if (per_tensor && !ts) ts = qckpt_tensor(s, mod, "weight_scale", 2, 1, 1, 1);
    if (!per_tensor) ts = qckpt_tensor(s, mod, "weight_scale", 2, n_out, ng, 1);
    if (!ts || qckpt_read_floats(&sv, s, ts, "weight_scale")) goto done;
    for (int i = 0; i < w->n_scales; i++) w->scales[i] = per_tensor ? sv[0] : sv[i];
    if (pack) {
        const int64_t wpr = ((int64_t)n_in * sc->bits + 31) / 32, zw = ((int64_t)n_out * sc->bits + 31) / 32;
        const st_tensor *tp = qckpt_tensor(s, mod, "weight_packed", 2, n_out, wpr, 1);
        const st_tensor *tsh = tp ? qckpt_tensor(s, mod, "weight_shape", 1, 2, 0, 1) : NULL;
        if (!tsh || tp->dtype != ST_I32 || qckpt_read_ints(&iv, s, tsh, "weight_shape")) {
            if (tp && tp->dtype != ST_I32) err_set(ERR_INPUT, "%s.weight_packed is %s, not I32", mod, st_dtype_name(tp->dtype));
            goto done;
        }
        if (iv[0] != n_out || iv[1] != n_in) {
            err_set(ERR_INPUT, "%s.weight_shape is [%lld, %lld] but config.json implies [%d, %d]", mod, (long long)iv[0],
                    (long long)iv[1], n_out, n_in);
            goto done;
        }
        for (int r = 0; r < n_out; r++) {
            uint32_t words[64];
            const uint8_t *src = (const uint8_t *)tp->data + (size_t)r * wpr * 4;
            for (int64_t j0 = 0; j0 < n_in; j0 += 256) { /* 256 codes = 8 * bits words at a time (unaligned data) */
                const int64_t cnt = n_in - j0 < 256 ? n_in - j0 : 256, nw = (cnt * sc->bits + 31) / 32;
                memcpy(words, src + (size_t)(j0 * sc->bits / 32) * 4, (size_t)nw * 4);
                qckpt_unpack_bits(w->codes + (size_t)r * n_in + j0, 1, words, (size_t)cnt, sc->bits);
            }
        }
        if (!sc->sym) {
            const st_tensor *tz = qckpt_tensor(s, mod, "weight_zero_point", 2, zw, ng, 1);
            if (!tz || qckpt_read_ints(&zv, s, tz, "weight_zero_point")) goto done;
            uint32_t *col = xmalloc((size_t)zw * 4);
            if (!col) goto done;
            for (int gi = 0; gi < ng; gi++) {
                for (int64_t i = 0; i < zw; i++) col[i] = (uint32_t)zv[i * ng + gi];
                qckpt_unpack_bits(w->zeros + gi, (size_t)ng, col, (size_t)n_out, sc->bits);
            }
            free(col);
        }
    } else {
        const st_tensor *tw = qckpt_tensor(s, mod, "weight", 2, n_out, n_in, 1);
        if (!tw) goto done;
        if (sc->type == QW_FP8) {
            if (tw->dtype != ST_F8_E4M3) {
                err_set(ERR_INPUT, "%s.weight is %s; FP8 E4M3 (F8_E4M3) was expected", mod, st_dtype_name(tw->dtype));
                goto done;
            }
            memcpy(w->codes, tw->data, (size_t)n_out * n_in);
        } else {
            if (qckpt_read_ints(&iv, s, tw, "weight")) goto done;
            for (size_t i = 0; i < (size_t)n_out * n_in; i++) {
                if (iv[i] < -c || iv[i] >= c) {
                    err_set(ERR_CORRUPT, "%s.weight holds %lld, outside the signed %d-bit range", mod, (long long)iv[i],
                            sc->bits);
                    goto done;
                }
                w->codes[i] = (uint8_t)(iv[i] + c);
            }
        }
        if (!sc->sym) {
            const st_tensor *tz = qckpt_tensor(s, mod, "weight_zero_point", 2, n_out, ng, 1);
            if (!tz || qckpt_read_ints(&zv, s, tz, "weight_zero_point")) goto done;
            for (size_t i = 0; i < (size_t)n_out * ng; i++) {
                if (zv[i] < -c || zv[i] >= c) {
                    err_set(ERR_CORRUPT, "%s.weight_zero_point holds %lld, outside the signed %d-bit range", mod,
                            (long long)zv[i], sc->bits);
                    goto done;
                }
                w->zeros[i] = (uint8_t)(zv[i] + c);
            }
        }
    }
    rc = qckpt_check_codes(w, mod, s->dir, ERR_CORRUPT);
done:
    if (rc) qweight_free(w);
    free(iv), free(zv), free(sv);
    return rc;
}

static int ct_read(model_quant *q, const cJSON *qc, const st_set *s, const model_config *cfg) {
    const cJSON *groups = cJSON_GetObjectItemCaseSensitive(qc, "config_groups");
    const cJSON *ignore = cJSON_GetObjectItemCaseSensitive(qc, "ignore"), *fmt = cJSON_GetObjectItemCaseSensitive(qc, "format");
    if (!cJSON_IsObject(groups)) return err_set(ERR_INPUT, "quantization_config has no config_groups object");
    const int n_groups = cJSON_GetArraySize(groups);
    ct_group *g = xcalloc((size_t)(n_groups ? n_groups : 1), sizeof *g);
    if (!g) return -1;
    int i = 0, rc = 0;
    for (const cJSON *v = groups->child; v && !rc; v = v->next, i++)
        rc = cJSON_IsObject(v) ? parse_group(&g[i], v, cJSON_IsString(fmt) ? fmt->valuestring : NULL)
                               : bad_field(v->string, "not an object", "scheme objects");
    /* every linear of every layer, then lm_head (absent as a module of its own when tied) */
    for (int idx = 0; !rc && idx <= cfg->n_layers * QLIN_N; idx++) {
        const int head = idx == cfg->n_layers * QLIN_N, l = head ? 0 : idx / QLIN_N, k = head ? QLIN_N : idx % QLIN_N;
        if (head && cfg->tie_embeddings) continue;
        char mod[96];
        qlin_module_name(mod, sizeof mod, l, k);
        int err = 0, n_out, n_in, gi = -1;
        if (!any_match(ignore, mod, &err))
            for (int j = 0; gi < 0 && j < n_groups && !err; j++)
                if (any_match(g[j].targets, mod, &err)) gi = j;
        if (err) rc = -1;
        else if (gi >= 0) {
            qlin_shape(cfg, l, k, &n_out, &n_in);
            rc = read_linear(model_quant_at(q, l, k), &g[gi], s, mod, n_out, n_in);
        }
    }
    free(g);
    return rc;
}

static const char *const ct_params[] = {"weight_packed", "weight_scale", "weight_shape", "weight_zero_point", NULL};

const qckpt_ops qckpt_ct_ops = {
    .format = QCKPT_COMPRESSED_TENSORS,
    .params = ct_params,
    .config_json = ct_config_json,
    .write_linear = ct_write_linear,
    .read = ct_read,
};
