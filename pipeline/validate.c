/* validate.c: checks recipe values against a stage kind's parameter schema and converts them
 * to typed JSON, filling defaults. Errors name file:line:column, the stage, the parameter
 * path, what was expected and what was found. */
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "common/strbuf.h"
#include "pipeline/recipe.h"

static void describe(const node *n, char *buf, size_t cap) {
    if (n->type == NODE_MAP) snprintf(buf, cap, "a mapping");
    else if (n->type == NODE_SEQ) snprintf(buf, cap, "a list");
    else if (node_is_null(n)) snprintf(buf, cap, "nothing (null)");
    else snprintf(buf, cap, "%s'%.60s%s'", n->quoted ? "the text " : "", n->text, strlen(n->text) > 60 ? "..." : "");
}

static int type_error(const recipe_stage *st, const node *n, const char *path, const char *expected) {
    char found[128];
    describe(n, found, sizeof found);
    return err_set(ERR_INPUT, "%s:%d:%d: stage '%s': '%s' must be %s, found %s", n->file, n->line, n->col, st->name,
                   path, expected, found);
}

static const char *type_name(param_type t) {
    switch (t) {
    case P_INT: return "an integer";
    case P_FLOAT: return "a number";
    case P_BOOL: return "true or false";
    case P_STRING: return "a text";
    case P_SCALAR: return "a single value";
    case P_REF: return "a stage name (or stage.output)";
    case P_PATH: return "a file or folder path";
    case P_MAP: return "a mapping";
    case P_LIST: return "a list";
    case P_UNION: return "one of several forms";
    }
    return "?";
}

static int check_bounds(const recipe_stage *st, const node *n, const char *path, const param_spec *sp, double v) {
    if ((sp->has_min && v < sp->min) || (sp->has_max && v > sp->max)) {
        char range[128];
        if (sp->has_min && sp->has_max) snprintf(range, sizeof range, "between %g and %g", sp->min, sp->max);
        else if (sp->has_min) snprintf(range, sizeof range, "at least %g", sp->min);
        else snprintf(range, sizeof range, "at most %g", sp->max);
        return err_set(ERR_INPUT, "%s:%d:%d: stage '%s': '%s' must be %s, found %s", n->file, n->line, n->col, st->name,
                       path, range, n->text);
    }
    return 0;
}

static int add_ref(recipe_stage *st, const node *n, const char *path) {
    const char *t = n->text;
    const char *dot = strchr(t, '.');
    recipe_ref *r = xrealloc(st->refs, (size_t)(st->n_refs + 1) * sizeof *r);
    if (!r) return -1;
    st->refs = r;
    r = &st->refs[st->n_refs];
    memset(r, 0, sizeof *r);
    r->path = xstrdup(path);
    r->target = dot ? xstrndup(t, (size_t)(dot - t)) : xstrdup(t);
    r->output = dot ? xstrdup(dot + 1) : NULL;
    r->line = n->line;
    r->col = n->col;
    r->file = n->file;
    r->dep = -1;
    if (!r->path || !r->target || (dot && !r->output)) return -1;
    st->n_refs++;
    return 0;
}

static int add_path(recipe_stage *st, const node *n, const char *path, const char *abs) {
    recipe_extpath *p = xrealloc(st->paths, (size_t)(st->n_paths + 1) * sizeof *p);
    if (!p) return -1;
    st->paths = p;
    p = &st->paths[st->n_paths];
    memset(p, 0, sizeof *p);
    p->path = xstrdup(path);
    p->file = xstrdup(abs);
    p->line = n->line;
    p->col = n->col;
    p->file_name = n->file;
    if (!p->path || !p->file) return -1;
    st->n_paths++;
    return 0;
}

static char *join_path(const char *prefix, const char *key) {
    return prefix[0] ? xasprintf("%s.%s", prefix, key) : xstrdup(key);
}

static int validate_value(recipe_stage *st, const node *n, const param_spec *sp, const char *path, cJSON **out);

/* Parses a schema default ("0.01", "{}", "[a, b]") into a node. */
static int default_node(const param_spec *sp, node **out) {
    if (yaml_parse(out, "<default>", sp->def, strlen(sp->def)) == 0) return 0;
    err_clear();
    /* An empty or null default is a null scalar. */
    *out = node_scalar("<default>", 1, 1, "", 0);
    return *out ? 0 : -1;
}

int validate_params(recipe_stage *st, const node *map, const param_spec *schema, cJSON *out, const char *prefix,
                    int partial) {
    for (int i = 0; i < map->n; i++) {
        const param_spec *sp = NULL;
        for (const param_spec *s = schema; s->name; s++)
            if (!strcmp(s->name, map->keys[i])) sp = s;
        char *path = join_path(prefix, map->keys[i]);
        if (!path) return -1;
        if (!sp) {
            strbuf sb = STRBUF_INIT;
            for (const param_spec *s = schema; s->name; s++) sb_printf(&sb, "%s%s", s == schema ? "" : ", ", s->name);
            err_set(ERR_INPUT, "%s:%d:%d: stage '%s': unknown key '%s' for kind %s; expected one of: %s", map->file,
                    map->key_line[i], map->key_col[i], st->name, path, st->kind->name,
                    sb.len ? sb_str(&sb) : "(no parameters)");
            sb_free(&sb);
            free(path);
            return -1;
        }
        cJSON *v = NULL;
        int rc = validate_value(st, map->vals[i], sp, path, &v);
        free(path);
        if (rc) return -1;
        cJSON_AddItemToObject(out, sp->name, v);
    }
    for (const param_spec *s = schema; s->name; s++) {
        if (node_map_index(map, s->name) >= 0) continue;
        if (s->def && !partial) {
            node *d;
            char *path = join_path(prefix, s->name);
            if (!path || default_node(s, &d)) {
                free(path);
                return -1;
            }
            cJSON *v = NULL;
            int rc = validate_value(st, d, s, path, &v);
            node_free(d);
            free(path);
            if (rc) return err_prefix("(the default of the schema) ");
            cJSON_AddItemToObject(out, s->name, v);
        } else if (s->required && !partial) {
            char *path = join_path(prefix, s->name);
            err_set(ERR_INPUT, "%s:%d:%d: stage '%s' (kind %s): missing required key '%s'%s%s", map->file, map->line,
                    map->col, st->name, st->kind->name, path ? path : s->name, s->help ? ": " : "",
                    s->help ? s->help : "");
            free(path);
            return -1;
        }
    }
    return 0;
}

static int node_has_key(const node *n, const char *key) {
    for (int i = 0; n->type == NODE_MAP && i < n->n; i++)
        if (!strcmp(n->keys[i], key)) return 1;
    return 0;
}

/* The mapping alternative of a union that a mapping names by its first field's key ({arch: ...}
 * against {from: ...}), or NULL when none does (the first mapping alternative then fits, as the
 * only one does). */
static const param_spec *union_claimed_map(const param_spec *alts, const node *n) {
    for (const param_spec *a = alts; a->name; a++)
        if (a->type == P_MAP && a->fields && a->fields[0].name && node_has_key(n, a->fields[0].name)) return a;
    return NULL;
}

/* min_items and increasing of a list, checked on its validated entries. */
static int check_list(const recipe_stage *st, const node *n, const char *path, const param_spec *sp, const cJSON *arr) {
    if (n->n < sp->min_items)
        return err_set(ERR_INPUT, "%s:%d:%d: stage '%s': '%s' needs at least %d entr%s, found %d", n->file, n->line,
                       n->col, st->name, path, sp->min_items, sp->min_items == 1 ? "y" : "ies", n->n);
    if (!sp->increasing) return 0;
    for (int i = 1; i < n->n; i++) {
        double prev = cJSON_GetArrayItem(arr, i - 1)->valuedouble, cur = cJSON_GetArrayItem(arr, i)->valuedouble;
        if (cur <= prev)
            return err_set(ERR_INPUT, "%s:%d:%d: stage '%s': '%s' must be strictly increasing, but entry [%d] is %g "
                           "after %g; list each one once, in increasing order (e.g. [0, 2, 4])", n->vals[i]->file,
                           n->vals[i]->line, n->vals[i]->col, st->name, path, i, cur, prev);
    }
    return 0;
}

static int shape_fits(const param_spec *sp, const node *n) {
    switch (sp->type) {
    case P_MAP: return n->type == NODE_MAP;
    case P_LIST: return n->type == NODE_SEQ;
    case P_UNION: return 1;
    default: return n->type == NODE_SCALAR;
    }
}

static int validate_value(recipe_stage *st, const node *n, const param_spec *sp, const char *path, cJSON **out) {
    *out = NULL;
    long long iv;
    double fv;
    int bv;
    switch (sp->type) {
    case P_INT:
        if (!node_as_int(n, &iv)) return type_error(st, n, path, "an integer");
        if (check_bounds(st, n, path, sp, (double)iv)) return -1;
        *out = cJSON_CreateNumber((double)iv);
        break;
    case P_FLOAT:
        if (!node_as_float(n, &fv) || !isfinite(fv)) return type_error(st, n, path, "a finite number");
        if (check_bounds(st, n, path, sp, fv)) return -1;
        *out = cJSON_CreateNumber(fv);
        break;
    case P_BOOL:
        if (!node_as_bool(n, &bv, 1)) return type_error(st, n, path, "true or false");
        *out = cJSON_CreateBool(bv);
        break;
    case P_STRING:
        if (n->type != NODE_SCALAR || node_is_null(n)) return type_error(st, n, path, "a text");
        if (sp->choices) {
            int ok = 0;
            strbuf sb = STRBUF_INIT;
            for (int i = 0; sp->choices[i]; i++) {
                ok |= !strcmp(sp->choices[i], n->text);
                sb_printf(&sb, "%s%s", i ? ", " : "", sp->choices[i]);
            }
            if (!ok) {
                err_set(ERR_INPUT, "%s:%d:%d: stage '%s': '%s' must be one of %s, found '%s'", n->file, n->line, n->col,
                        st->name, path, sb_str(&sb), n->text);
                sb_free(&sb);
                return -1;
            }
            sb_free(&sb);
        }
        *out = cJSON_CreateString(n->text);
        break;
    case P_SCALAR:
        if (n->type != NODE_SCALAR) return type_error(st, n, path, "a single value (text, number or true/false)");
        if (node_is_null(n)) *out = cJSON_CreateNull();
        else if (node_as_bool(n, &bv, 0)) *out = cJSON_CreateBool(bv);
        else if (node_as_float(n, &fv) && isfinite(fv)) *out = cJSON_CreateNumber(fv);
        else *out = cJSON_CreateString(n->text);
        break;
    case P_REF:
        if (n->type != NODE_SCALAR || node_is_null(n) || !n->text[0] || strchr(n->text, '/'))
            return type_error(st, n, path, "a stage name (or stage.output)");
        if (add_ref(st, n, path)) return -1;
        *out = cJSON_CreateString(n->text);
        break;
    case P_PATH: {
        if (n->type != NODE_SCALAR || node_is_null(n) || !n->text[0]) return type_error(st, n, path, "a file or folder path");
        char *abs = n->text[0] == '/' ? xstrdup(n->text) : xasprintf("%s/%s", st->base_dir ? st->base_dir : ".", n->text);
        char *real = abs ? realpath(abs, NULL) : NULL;
        if (!real) {
            int rc = err_set(ERR_INPUT, "%s:%d:%d: stage '%s': '%s' names %s, which does not exist%s", n->file, n->line,
                             n->col, st->name, path, abs ? abs : n->text,
                             n->text[0] == '/' ? "" : " (relative paths start at the recipe's folder)");
            free(abs);
            return rc;
        }
        free(abs);
        if (add_path(st, n, path, real)) {
            free(real);
            return -1;
        }
        *out = cJSON_CreateString(real);
        free(real);
        break;
    }
    case P_MAP:
        if (n->type != NODE_MAP) {
            if (node_is_null(n)) {
                *out = cJSON_CreateObject();
                break;
            }
            return type_error(st, n, path, "a mapping");
        }
        *out = cJSON_CreateObject();
        if (!*out) return err_set(ERR_NOMEM, "out of memory");
        if (sp->fields) {
            if (validate_params(st, n, sp->fields, *out, path, 0)) {
                cJSON_Delete(*out);
                *out = NULL;
                return -1;
            }
            break;
        }
        for (int i = 0; i < n->n; i++) {
            cJSON *v = NULL;
            char *p = join_path(path, n->keys[i]);
            if (!n->keys[i][0]) {
                free(p);
                cJSON_Delete(*out);
                *out = NULL;
                return err_set(ERR_INPUT, "%s:%d:%d: stage '%s': '%s' has an empty key", n->file, n->key_line[i],
                               n->key_col[i], st->name, path);
            }
            int rc = !p || validate_value(st, n->vals[i], sp->elem, p, &v);
            free(p);
            if (rc) {
                cJSON_Delete(*out);
                *out = NULL;
                return -1;
            }
            cJSON_AddItemToObject(*out, n->keys[i], v);
        }
        break;
    case P_LIST:
        if (n->type != NODE_SEQ) return type_error(st, n, path, "a list ([a, b] or one '- item' per line)");
        *out = cJSON_CreateArray();
        if (!*out) return err_set(ERR_NOMEM, "out of memory");
        for (int i = 0; i < n->n; i++) {
            cJSON *v = NULL;
            char *p = xasprintf("%s[%d]", path, i);
            int rc = !p || validate_value(st, n->vals[i], sp->elem, p, &v);
            free(p);
            if (rc) {
                cJSON_Delete(*out);
                *out = NULL;
                return -1;
            }
            cJSON_AddItemToArray(*out, v);
        }
        if (check_list(st, n, path, sp, *out)) {
            cJSON_Delete(*out);
            *out = NULL;
            return -1;
        }
        break;
    case P_UNION: {
        strbuf sb = STRBUF_INIT;
        int tried = 0;
        const param_spec *claimed = union_claimed_map(sp->alts, n);
        for (const param_spec *a = sp->alts; a->name; a++) {
            sb_printf(&sb, "%s%s", tried++ ? " or " : "", type_name(a->type));
            if (!shape_fits(a, n) || (claimed && a->type == P_MAP && a != claimed)) continue;
            int saved = st->n_refs, saved_paths = st->n_paths;
            if (validate_value(st, n, a, path, out) == 0) {
                sb_free(&sb);
                return 0;
            }
            /* A mapping or list alternative that fits by shape is the user's intent, and so is a
             * path with a '/': report its error. */
            if (a->type == P_MAP || a->type == P_LIST || (a->type == P_PATH && strchr(n->text, '/'))) {
                sb_free(&sb);
                return -1;
            }
            while (st->n_refs > saved) {
                recipe_ref *r = &st->refs[--st->n_refs];
                free(r->path);
                free(r->target);
                free(r->output);
            }
            while (st->n_paths > saved_paths) {
                recipe_extpath *q = &st->paths[--st->n_paths];
                free(q->path);
                free(q->file);
            }
            err_clear();
        }
        int rc = type_error(st, n, path, sb_str(&sb));
        sb_free(&sb);
        return rc;
    }
    }
    if (!*out) return err_set(ERR_NOMEM, "out of memory building parameters");
    return 0;
}
