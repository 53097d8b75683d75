/* key.c: canonical JSON, cache keys and their field-level differences (smelt why). */
#include "pipeline/key.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "common/sha256.h"
#include "store/store.h"

static int cmp_keys(const void *a, const void *b) {
    return strcmp((*(const cJSON *const *)a)->string, (*(const cJSON *const *)b)->string);
}

int canon_json(strbuf *sb, const cJSON *v) {
    if (cJSON_IsNull(v)) return sb_puts(sb, "null");
    if (cJSON_IsTrue(v)) return sb_puts(sb, "true");
    if (cJSON_IsFalse(v)) return sb_puts(sb, "false");
    if (cJSON_IsString(v)) return sb_json_string(sb, v->valuestring);
    if (cJSON_IsNumber(v)) {
        double d = v->valuedouble;
        if (d == floor(d) && fabs(d) < 9007199254740992.0) return sb_printf(sb, "%lld", (long long)d);
        return sb_printf(sb, "%.17g", d);
    }
    if (cJSON_IsArray(v)) {
        if (sb_putc(sb, '[')) return -1;
        const cJSON *c;
        int first = 1;
        cJSON_ArrayForEach(c, v) {
            if ((!first && sb_putc(sb, ',')) || canon_json(sb, c)) return -1;
            first = 0;
        }
        return sb_putc(sb, ']');
    }
    if (cJSON_IsObject(v)) {
        int n = cJSON_GetArraySize(v), i = 0;
        const cJSON **items = xcalloc((size_t)n + 1, sizeof *items);
        if (!items) return -1;
        const cJSON *c;
        cJSON_ArrayForEach(c, v) items[i++] = c;
        qsort(items, (size_t)n, sizeof *items, cmp_keys);
        int rc = sb_putc(sb, '{');
        for (i = 0; i < n && !rc; i++) {
            if (i) rc = sb_putc(sb, ',');
            if (!rc) rc = sb_json_string(sb, items[i]->string);
            if (!rc) rc = sb_putc(sb, ':');
            if (!rc) rc = canon_json(sb, items[i]);
        }
        free(items);
        return rc ? -1 : sb_putc(sb, '}');
    }
    return err_set(ERR_INTERNAL, "canonical JSON of an unknown value type");
}

/* Replaces the value at a dotted path (whose last part may be a key with dots? no: stage
 * parameter keys never contain dots in references) by `repl`. */
static int replace_path(cJSON *root, const char *path, cJSON *repl) {
    char *p = xstrdup(path);
    if (!p) return -1;
    cJSON *cur = root;
    char *save = NULL, *comp = strtok_r(p, ".", &save);
    int rc = -1;
    while (comp && cur) {
        char *next = strtok_r(NULL, ".", &save);
        char *br = strchr(comp, '[');
        int idx = -1;
        if (br) {
            idx = atoi(br + 1);
            *br = 0;
        }
        cJSON *child = cJSON_GetObjectItemCaseSensitive(cur, comp);
        if (idx >= 0 && child) {
            if (!next) {
                rc = cJSON_ReplaceItemInArray(child, idx, repl) ? 0 : -1;
                break;
            }
            child = cJSON_GetArrayItem(child, idx);
        } else if (!next && child) {
            rc = cJSON_ReplaceItemInObjectCaseSensitive(cur, comp, repl) ? 0 : -1;
            break;
        }
        cur = child;
        comp = next;
    }
    free(p);
    if (rc) {
        cJSON_Delete(repl);
        return err_set(ERR_INTERNAL, "reference path '%s' not found in the parameters", path);
    }
    return 0;
}

int key_path_digests(const recipe_stage *st, ref_digest **out) {
    *out = xcalloc((size_t)st->n_paths + 1, sizeof **out);
    if (!*out) return -1;
    for (int i = 0; i < st->n_paths; i++) {
        if (store_content_digest(st->paths[i].file, (*out)[i].digest)) {
            free(*out);
            *out = NULL;
            return err_set(ERR_INPUT, "%s:%d:%d: stage '%s': cannot read '%s' (%s) to hash it: %s",
                           st->paths[i].file_name, st->paths[i].line, st->paths[i].col, st->name, st->paths[i].path,
                           st->paths[i].file, err_msg());
        }
    }
    return 0;
}

int key_compute(const recipe_stage *st, const ref_digest *digests, const ref_digest *path_digests, char **key_json,
                char key[65]) {
    *key_json = NULL;
    cJSON *params = cJSON_Duplicate(st->params, 1);
    cJSON *root = cJSON_CreateObject();
    if (!params || !root) {
        cJSON_Delete(params);
        cJSON_Delete(root);
        return err_set(ERR_NOMEM, "out of memory computing a cache key");
    }
    int rc = 0;
    for (int i = 0; i < st->n_refs && !rc; i++) {
        cJSON *a = cJSON_CreateObject();
        if (!a || !cJSON_AddStringToObject(a, "artifact", digests[i].digest)) {
            cJSON_Delete(a);
            rc = err_set(ERR_NOMEM, "out of memory");
            break;
        }
        rc = replace_path(params, st->refs[i].path, a);
    }
    /* An external file enters the key by its content, not its name: moving it changes nothing. */
    for (int i = 0; i < st->n_paths && !rc; i++) {
        cJSON *a = cJSON_CreateObject();
        if (!a || !cJSON_AddStringToObject(a, "content", path_digests[i].digest)) {
            cJSON_Delete(a);
            rc = err_set(ERR_NOMEM, "out of memory");
            break;
        }
        rc = replace_path(params, st->paths[i].path, a);
    }
    cJSON_AddStringToObject(root, "kind", st->kind->name);
    cJSON_AddNumberToObject(root, "version", st->kind->version);
    cJSON_AddNumberToObject(root, "seed", (double)st->seed);
    cJSON_AddItemToObject(root, "params", params);
    strbuf sb = STRBUF_INIT;
    if (!rc) rc = canon_json(&sb, root);
    cJSON_Delete(root);
    if (rc) {
        sb_free(&sb);
        return -1;
    }
    sha256_hex(key, sb.buf, sb.len);
    *key_json = sb_detach(&sb);
    return *key_json ? 0 : -1;
}

int key_params_json(const recipe_stage *st, char **params_json) {
    cJSON *p = cJSON_Duplicate(st->params, 1);
    if (!p) return err_set(ERR_NOMEM, "out of memory");
    cJSON_AddNumberToObject(p, "seed", (double)st->seed);
    strbuf sb = STRBUF_INIT;
    int rc = canon_json(&sb, p);
    cJSON_Delete(p);
    if (rc) {
        sb_free(&sb);
        return -1;
    }
    *params_json = sb_detach(&sb);
    return *params_json ? 0 : -1;
}

static int value_text(strbuf *sb, const cJSON *v) {
    if (!v) return sb_puts(sb, "(absent)");
    const cJSON *a = cJSON_IsObject(v) ? cJSON_GetObjectItemCaseSensitive(v, "artifact") : NULL;
    if (a && cJSON_IsString(a) && cJSON_GetArraySize(v) == 1) return sb_printf(sb, "artifact %.12s", a->valuestring);
    const cJSON *c = cJSON_IsObject(v) ? cJSON_GetObjectItemCaseSensitive(v, "content") : NULL;
    if (c && cJSON_IsString(c) && cJSON_GetArraySize(v) == 1) return sb_printf(sb, "file content %.12s", c->valuestring);
    return canon_json(sb, v);
}

static int diff_rec(strbuf *sb, const char *path, const cJSON *a, const cJSON *b) {
    int is_ref_a = cJSON_IsObject(a) && (cJSON_GetObjectItemCaseSensitive(a, "artifact") ||
                                         cJSON_GetObjectItemCaseSensitive(a, "content"));
    int is_ref_b = cJSON_IsObject(b) && (cJSON_GetObjectItemCaseSensitive(b, "artifact") ||
                                         cJSON_GetObjectItemCaseSensitive(b, "content"));
    if (cJSON_IsObject(a) && cJSON_IsObject(b) && !is_ref_a && !is_ref_b) {
        int n = 0;
        const cJSON *c;
        cJSON_ArrayForEach(c, a) {
            char *p = path[0] ? xasprintf("%s.%s", path, c->string) : xstrdup(c->string);
            int k = p ? diff_rec(sb, p, c, cJSON_GetObjectItemCaseSensitive(b, c->string)) : -1;
            free(p);
            if (k < 0) return -1;
            n += k;
        }
        cJSON_ArrayForEach(c, b) {
            if (cJSON_GetObjectItemCaseSensitive(a, c->string)) continue;
            char *p = path[0] ? xasprintf("%s.%s", path, c->string) : xstrdup(c->string);
            int k = p ? diff_rec(sb, p, NULL, c) : -1;
            free(p);
            if (k < 0) return -1;
            n += k;
        }
        return n;
    }
    strbuf x = STRBUF_INIT, y = STRBUF_INIT;
    int rc = 0;
    if (a) rc |= canon_json(&x, a);
    if (b) rc |= canon_json(&y, b);
    int differ = !a || !b || strcmp(sb_str(&x), sb_str(&y)) != 0;
    sb_free(&x);
    sb_free(&y);
    if (rc) return -1;
    if (!differ) return 0;
    /* Show parameter paths as the recipe spells them (without the "params." prefix). */
    const char *shown = !strncmp(path, "params.", 7) ? path + 7 : path;
    if (sb_printf(sb, "    %s: ", shown) || value_text(sb, a) || sb_puts(sb, " -> ") || value_text(sb, b) ||
        sb_putc(sb, '\n'))
        return -1;
    return 1;
}

int key_diff(strbuf *sb, const char *old_json, const char *new_json) {
    cJSON *a = cJSON_Parse(old_json), *b = cJSON_Parse(new_json);
    int n = (a && b) ? diff_rec(sb, "", a, b) : err_set(ERR_CORRUPT, "a stored cache key is not valid JSON");
    cJSON_Delete(a);
    cJSON_Delete(b);
    return n;
}
