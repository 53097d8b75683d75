/* recipe.c: from recipe text to validated stages: top-level keys, --set overrides, foreach
 * expansion, defaults merging, the keys every stage has (kind, needs, ranks, retries, seed,
 * resources, description), then the kind's own schema (validate.c) and the DAG (dag.c). */
#include "pipeline/recipe.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "common/fsutil.h"
#include "common/strbuf.h"

static const char *const top_keys[] = {"smelt", "name", "seed", "defaults", "stages", "description", NULL};
static const char *const common_keys[] = {"kind",      "needs",       "ranks",   "retries", "seed",
                                          "resources", "description", "foreach", "device",  NULL};

static const param_spec resources_fields[] = {
    {.name = "time", .type = P_STRING, .help = "wall-clock limit, Slurm syntax (1:00:00)"},
    {.name = "gpus", .type = P_INT, .has_min = 1, .min = 0},
    {.name = "cpus", .type = P_INT, .has_min = 1, .min = 1},
    {.name = "mem", .type = P_STRING, .help = "memory, Slurm syntax (16G)"},
    {.name = "partition", .type = P_STRING},
    {.name = "account", .type = P_STRING},
    {.name = "nodes", .type = P_INT, .has_min = 1, .min = 1},
    {.name = NULL},
};
static const param_spec resources_spec = {.name = "resources", .type = P_MAP, .fields = resources_fields};

static int in_list(const char *const *list, const char *s) {
    for (int i = 0; list[i]; i++)
        if (!strcmp(list[i], s)) return 1;
    return 0;
}

static int at(const node *n, const char *fmt, const char *a, const char *b) {
    return err_set(ERR_INPUT, "%s:%d:%d: %s%s%s", n->file, n->line, n->col, a, fmt, b);
}

/* Stage names: [a-z0-9][a-z0-9_-]*, optionally followed by [item] after foreach expansion. */
static int valid_stage_name(const char *s, int expanded) {
    if (!(islower((unsigned char)s[0]) || isdigit((unsigned char)s[0]))) return 0;
    const char *p = s + 1;
    while (islower((unsigned char)*p) || isdigit((unsigned char)*p) || *p == '_' || *p == '-') p++;
    if (!*p) return 1;
    if (!expanded || *p != '[') return 0;
    size_t n = strlen(p);
    if (n < 3 || p[n - 1] != ']') return 0;
    for (const char *q = p + 1; q < p + n - 1; q++)
        if (!(isalnum((unsigned char)*q) || *q == '_' || *q == '-' || *q == '.')) return 0;
    return 1;
}

/* ---- --set overrides ---- */

static int apply_override(recipe *r, node *root, const char *spec) {
    char *label = xasprintf("--set %s", spec);
    if (!label) return -1;
    char **sl = xrealloc(r->set_labels, (size_t)(r->n_sets + 1) * sizeof *sl);
    if (!sl) {
        free(label);
        return -1;
    }
    r->set_labels = sl;
    r->set_labels[r->n_sets++] = label;
    const char *eq = strchr(spec, '=');
    if (!eq || eq == spec)
        return err_set(ERR_INPUT, "%s: expected KEY.PATH=VALUE (for example --set stages.train.steps=100)", label);
    char *path = xstrndup(spec, (size_t)(eq - spec));
    if (!path) return -1;
    int vcol = (int)(eq - spec) + 2;
    node *val = NULL;
    const char *vtext = eq + 1;
    if (!*vtext) val = node_scalar(label, 1, vcol, "", 0);
    else if (yaml_parse(&val, label, vtext, strlen(vtext))) {
        err_clear();
        val = node_scalar(label, 1, vcol, vtext, 1);
    }
    if (!val) {
        free(path);
        return -1;
    }
    /* Positions of the value point into the --set argument. */
    val->file = label;
    val->line = 1;
    val->col = vcol;
    node *cur = root;
    int rc = 0;
    char *save = NULL, *comp = strtok_r(path, ".", &save);
    while (comp && !rc) {
        char *next = strtok_r(NULL, ".", &save);
        if (cur->type != NODE_MAP) {
            rc = err_set(ERR_INPUT, "%s: '%s' is inside a value that is not a mapping", label, comp);
            break;
        }
        int i = node_map_index(cur, comp);
        if (!next) {
            if (i >= 0) {
                node_free(cur->vals[i]);
                cur->vals[i] = val;
            } else if (node_map_put(cur, comp, 1, 7, val)) {
                rc = -1;
                break;
            }
            val = NULL;
        } else if (i >= 0) {
            cur = cur->vals[i];
        } else {
            node *m = node_new(NODE_MAP, label, 1, 7);
            if (!m || node_map_put(cur, comp, 1, 7, m)) {
                node_free(m);
                rc = -1;
                break;
            }
            cur = m;
        }
        comp = next;
    }
    node_free(val);
    free(path);
    return rc;
}

/* ---- foreach ---- */

static int subst_item(node *n, const char *item) {
    if (n->type == NODE_SCALAR) {
        if (!strstr(n->text, "${item}")) return 0;
        strbuf sb = STRBUF_INIT;
        for (const char *p = n->text; *p;) {
            if (!strncmp(p, "${item}", 7)) {
                if (sb_puts(&sb, item)) return -1;
                p += 7;
            } else if (sb_putc(&sb, *p++)) {
                return -1;
            }
        }
        free(n->text);
        n->text = sb_detach(&sb);
        return n->text ? 0 : -1;
    }
    for (int i = 0; i < n->n; i++)
        if (subst_item(n->vals[i], item)) return -1;
    return 0;
}

/* Replaces every stage with a foreach: list by one stage per item, named name[item], in place. */
static int expand_foreach(node *stages_parent, int idx) {
    node *stages = stages_parent->vals[idx];
    node *out = node_new(NODE_MAP, stages->file, stages->line, stages->col);
    if (!out) return -1;
    int rc = 0;
    for (int i = 0; i < stages->n && !rc; i++) {
        node *st = stages->vals[i];
        int fi = st->type == NODE_MAP ? node_map_index(st, "foreach") : -1;
        const node *items = fi >= 0 ? st->vals[fi] : NULL;
        int n_items = items ? items->n : 1;
        if (items && (items->type != NODE_SEQ || items->n == 0)) {
            rc = at(items, "'foreach' of stage '", stages->keys[i], "' must be a non-empty list of names");
            break;
        }
        for (int k = 0; k < n_items && !rc; k++) {
            const node *item = items ? items->vals[k] : NULL;
            char *name;
            if (item && (item->type != NODE_SCALAR || node_is_null(item))) {
                rc = at(item, "foreach items of stage '", stages->keys[i], "' must be plain names");
                break;
            }
            name = item ? xasprintf("%s[%s]", stages->keys[i], item->text) : xstrdup(stages->keys[i]);
            node *c = name ? node_clone(st) : NULL;
            if (!c) {
                free(name);
                rc = -1;
                break;
            }
            if (item) {
                node_map_remove(c, node_map_index(c, "foreach"));
                rc = subst_item(c, item->text);
                if (!rc && !valid_stage_name(name, 1))
                    rc = err_set(ERR_INPUT, "%s:%d:%d: foreach item '%s' of stage '%s' makes the stage name '%s'; items "
                                 "may use letters, digits, '_', '-' and '.'", item->file, item->line, item->col,
                                 item->text, stages->keys[i], name);
            }
            int dup = node_map_index(out, name);
            if (!rc && dup >= 0)
                rc = err_set(ERR_INPUT, "%s:%d:%d: stage '%s' is defined twice (also at line %d); rename one", out->file,
                             stages->key_line[i], stages->key_col[i], name, out->key_line[dup]);
            if (!rc) rc = node_map_put(out, name, stages->key_line[i], stages->key_col[i], c);
            if (rc) node_free(c);
            free(name);
        }
    }
    if (rc) {
        node_free(out);
        return -1;
    }
    node_free(stages);
    stages_parent->vals[idx] = out;
    return 0;
}

/* Deep merge of defaults under a stage map: keys the stage lacks are cloned from defaults. */
static int merge_defaults(node *stage, const node *defs) {
    for (int i = 0; i < defs->n; i++) {
        int j = node_map_index(stage, defs->keys[i]);
        if (j < 0) {
            node *c = node_clone(defs->vals[i]);
            if (!c || node_map_put(stage, defs->keys[i], defs->key_line[i], defs->key_col[i], c)) {
                node_free(c);
                return -1;
            }
        } else if (stage->vals[j]->type == NODE_MAP && defs->vals[i]->type == NODE_MAP) {
            if (merge_defaults(stage->vals[j], defs->vals[i])) return -1;
        }
    }
    return 0;
}

static int int_key(const node *n, const char *stage, const char *key, long long lo, long long hi, long long *out) {
    if (!node_as_int(n, out) || *out < lo || *out > hi)
        return err_set(ERR_INPUT, "%s:%d:%d: stage '%s': '%s' must be an integer from %lld to %lld, found '%s'", n->file,
                       n->line, n->col, stage, key, lo, hi, n->type == NODE_SCALAR ? n->text : "a collection");
    return 0;
}

/* The keys every stage has; everything else goes to the kind's schema. */
static int stage_common(recipe *r, recipe_stage *st, node *m) {
    node *v;
    long long x;
    st->ranks = 1;
    st->seed = r->seed;
    if ((v = node_map_get(m, "ranks"))) {
        if (int_key(v, st->name, "ranks", 1, 4096, &x)) return -1;
        st->ranks = (int)x;
    }
    if ((v = node_map_get(m, "retries"))) {
        if (int_key(v, st->name, "retries", 0, 100, &x)) return -1;
        st->retries = (int)x;
    }
    if ((v = node_map_get(m, "seed"))) {
        if (int_key(v, st->name, "seed", 0, (1LL << 53), &x)) return -1;
        st->seed = x;
    }
    if ((v = node_map_get(m, "device"))) {
        if (v->type != NODE_SCALAR || (strcmp(v->text, "cpu") && strcmp(v->text, "cuda")))
            return at(v, "stage '", st->name, "': 'device' must be cpu or cuda");
        st->device = strcmp(v->text, "cuda") ? STAGE_DEVICE_CPU : STAGE_DEVICE_CUDA;
    }
    if ((v = node_map_get(m, "description")) && v->type != NODE_SCALAR)
        return at(v, "stage '", st->name, "': 'description' must be a text");
    if ((v = node_map_get(m, "needs"))) {
        int n = v->type == NODE_SEQ ? v->n : 1;
        st->needs = xcalloc((size_t)n, sizeof *st->needs);
        st->needs_line = xcalloc((size_t)n, sizeof(int));
        st->needs_col = xcalloc((size_t)n, sizeof(int));
        if (!st->needs || !st->needs_line || !st->needs_col) return -1;
        for (int i = 0; i < n; i++) {
            const node *it = v->type == NODE_SEQ ? v->vals[i] : v;
            if (it->type != NODE_SCALAR || node_is_null(it))
                return at(it, "stage '", st->name, "': 'needs' must be a stage name or a list of stage names");
            if (!(st->needs[i] = xstrdup(it->text))) return -1;
            st->needs_line[i] = it->line;
            st->needs_col[i] = it->col;
            st->n_needs++;
        }
    }
    if ((v = node_map_get(m, "resources"))) {
        recipe_stage tmp = *st;
        tmp.refs = NULL;
        tmp.n_refs = 0;
        if (v->type != NODE_MAP) return at(v, "stage '", st->name, "': 'resources' must be a mapping");
        st->resources = cJSON_CreateObject();
        if (!st->resources) return err_set(ERR_NOMEM, "out of memory");
        if (validate_params(&tmp, v, resources_spec.fields, st->resources, "resources", 1)) return -1;
    }
    return 0;
}

static int parse_stage(recipe *r, const node *stages, int i, const node *defaults) {
    recipe_stage *st = &r->stages[r->n_stages];
    memset(st, 0, sizeof *st);
    st->line = stages->key_line[i];
    st->col = stages->key_col[i];
    st->file = stages->file;
    st->base_dir = r->base_dir;
    if (!(st->name = xstrdup(stages->keys[i]))) return -1;
    r->n_stages++;
    node *m = stages->vals[i];
    if (!valid_stage_name(st->name, strchr(st->name, '[') != NULL))
        return err_set(ERR_INPUT, "%s:%d:%d: stage name '%s' is not allowed; use lower-case letters, digits, '_' and "
                       "'-', starting with a letter or digit", st->file, st->line, st->col, st->name);
    if (m->type != NODE_MAP)
        return at(m, "stage '", st->name, "' must be a mapping with 'kind:' and its parameters");
    node *kind = node_map_get(m, "kind");
    if (!kind)
        return err_set(ERR_INPUT, "%s:%d:%d: stage '%s' has no 'kind:'; add one (for example kind: command)", st->file,
                       st->line, st->col, st->name);
    if (kind->type != NODE_SCALAR || !(st->kind = stage_kind_find(kind->text))) {
        strbuf sb = STRBUF_INIT;
        for (int k = 0; stage_kinds[k]; k++) sb_printf(&sb, "%s%s", k ? ", " : "", stage_kinds[k]->name);
        err_set(ERR_INPUT, "%s:%d:%d: stage '%s': unknown kind '%s'; known kinds: %s", kind->file, kind->line, kind->col,
                st->name, kind->type == NODE_SCALAR ? kind->text : "(a collection)", sb_str(&sb));
        sb_free(&sb);
        return -1;
    }
    const node *defs = defaults ? node_map_get(defaults, st->kind->name) : NULL;
    if (defs && defs->type == NODE_MAP && merge_defaults(m, defs)) return -1;
    if (stage_common(r, st, m)) return -1;
    /* The kind's own parameters: everything but the common keys. */
    node *own = node_new(NODE_MAP, m->file, m->line, m->col);
    if (!own) return -1;
    for (int k = 0; k < m->n; k++) {
        if (in_list(common_keys, m->keys[k])) continue;
        node *c = node_clone(m->vals[k]);
        if (!c || node_map_put(own, m->keys[k], m->key_line[k], m->key_col[k], c)) {
            node_free(c);
            node_free(own);
            return -1;
        }
    }
    st->params = cJSON_CreateObject();
    int rc = st->params ? validate_params(st, own, st->kind->params, st->params, "", 0) : -1;
    node_free(own);
    if (!rc && st->ranks > 1 && !st->kind->supports_ranks)
        rc = err_set(ERR_INPUT, "%s:%d:%d: stage '%s': kind %s runs on one rank; remove 'ranks: %d'", st->file, st->line,
                     st->col, st->name, st->kind->name, st->ranks);
    return rc;
}

/* Checks defaults: every entry names a kind and holds parameters of that kind. */
static int check_defaults(const node *defaults, const char *base_dir) {
    if (defaults->type != NODE_MAP) return at(defaults, "'defaults' must be a mapping from kind to parameters", "", "");
    for (int i = 0; i < defaults->n; i++) {
        const stage_kind *k = stage_kind_find(defaults->keys[i]);
        const node *v = defaults->vals[i];
        if (!k)
            return err_set(ERR_INPUT, "%s:%d:%d: defaults: unknown kind '%s'", defaults->file, defaults->key_line[i],
                           defaults->key_col[i], defaults->keys[i]);
        if (v->type != NODE_MAP) return at(v, "defaults of kind ", defaults->keys[i], " must be a mapping");
        recipe_stage tmp = {.name = "(defaults)", .kind = k, .base_dir = base_dir};
        cJSON *out = cJSON_CreateObject();
        node *own = node_new(NODE_MAP, v->file, v->line, v->col);
        int rc = (!out || !own) ? -1 : 0;
        for (int j = 0; j < v->n && !rc; j++) {
            if (in_list(common_keys, v->keys[j])) continue;
            node *c = node_clone(v->vals[j]);
            if (!c || node_map_put(own, v->keys[j], v->key_line[j], v->key_col[j], c)) {
                node_free(c);
                rc = -1;
            }
        }
        if (!rc) rc = validate_params(&tmp, own, k->params, out, "", 1);
        recipe_stage_free_refs(&tmp);
        cJSON_Delete(out);
        node_free(own);
        if (rc) return -1;
    }
    return 0;
}

int recipe_parse(recipe **out, const char *file, const char *text, size_t len, char *const *overrides,
                 int n_overrides) {
    *out = NULL;
    recipe *r = xcalloc(1, sizeof *r);
    if (!r) return -1;
    r->file = xstrdup(file);
    r->text = xstrndup(text, len);
    if (!r->file || !r->text) goto fail;
    {
        /* Relative paths in parameters start at the recipe's folder. */
        char *dir = fs_dir_of(file);
        r->base_dir = dir ? realpath(dir, NULL) : NULL;
        if (!r->base_dir) r->base_dir = dir ? xstrdup(dir) : NULL;
        free(dir);
        if (!r->base_dir) goto fail;
    }
    node *root = NULL;
    if (yaml_parse(&root, r->file, text, len)) goto fail;
    if (root->type != NODE_MAP) {
        at(root, "a recipe is a mapping with 'smelt: 1', 'name:' and 'stages:'", "", "");
        node_free(root);
        goto fail;
    }
    for (int i = 0; i < n_overrides; i++)
        if (apply_override(r, root, overrides[i])) goto fail_root;
    for (int i = 0; i < root->n; i++)
        if (!in_list(top_keys, root->keys[i])) {
            err_set(ERR_INPUT, "%s:%d:%d: unknown top-level key '%s'; expected smelt, name, seed, defaults, stages or "
                    "description", root->file, root->key_line[i], root->key_col[i], root->keys[i]);
            goto fail_root;
        }
    node *v = node_map_get(root, "smelt");
    long long ver;
    if (!v) {
        err_set(ERR_INPUT, "%s:1:1: missing 'smelt: 1' (the recipe language version) at the top", r->file);
        goto fail_root;
    }
    if (!node_as_int(v, &ver) || ver < 1) {
        at(v, "'smelt' must be the language version 1", "", "");
        goto fail_root;
    }
    if (ver > RECIPE_LANGUAGE_VERSION) {
        err_set(ERR_INPUT, "%s:%d:%d: recipe language version %lld is newer than this smelt knows (%d); upgrade smelt",
                v->file, v->line, v->col, ver, RECIPE_LANGUAGE_VERSION);
        goto fail_root;
    }
    v = node_map_get(root, "name");
    if (v && (v->type != NODE_SCALAR || node_is_null(v))) {
        at(v, "'name' must be a text", "", "");
        goto fail_root;
    }
    if (v) r->name = xstrdup(v->text);
    else {
        const char *base = strrchr(file, '/') ? strrchr(file, '/') + 1 : file;
        const char *dot = strrchr(base, '.');
        r->name = dot ? xstrndup(base, (size_t)(dot - base)) : xstrdup(base);
    }
    if (!r->name) goto fail_root;
    if ((v = node_map_get(root, "seed")) && (!node_as_int(v, &r->seed) || r->seed < 0)) {
        at(v, "'seed' must be a non-negative integer", "", "");
        goto fail_root;
    }
    node *defaults = node_map_get(root, "defaults");
    if (defaults && check_defaults(defaults, r->base_dir)) goto fail_root;
    int si = node_map_index(root, "stages");
    if (si < 0) {
        err_set(ERR_INPUT, "%s:1:1: missing 'stages:' (a mapping from stage name to its kind and parameters)", r->file);
        goto fail_root;
    }
    node *stages = root->vals[si];
    if (stages->type != NODE_MAP || stages->n == 0) {
        at(stages, "'stages' must be a non-empty mapping from stage name to its kind and parameters", "", "");
        goto fail_root;
    }
    if (expand_foreach(root, si)) goto fail_root;
    stages = root->vals[si];
    r->stages = xcalloc((size_t)stages->n, sizeof *r->stages);
    if (!r->stages) goto fail_root;
    for (int i = 0; i < stages->n; i++)
        if (parse_stage(r, stages, i, defaults)) goto fail_root;
    node_free(root);
    if (dag_resolve(r)) goto fail;
    *out = r;
    return 0;
fail_root:
    node_free(root);
fail:
    recipe_free(r);
    return -1;
}

int recipe_load(recipe **out, const char *path, char *const *overrides, int n_overrides) {
    char *text;
    size_t len;
    *out = NULL;
    if (fs_read_file(path, RECIPE_MAX_BYTES, &text, &len)) {
        if (err_kind_get() == ERR_INPUT && strstr(err_msg(), "limit"))
            return err_set(ERR_INPUT, "%s:1:1: the recipe is larger than the %u-byte limit; a recipe is a short YAML "
                           "file", path, RECIPE_MAX_BYTES);
        return err_set(ERR_INPUT, "cannot read the recipe: %s", err_msg());
    }
    int rc = recipe_parse(out, path, text, len, overrides, n_overrides);
    free(text);
    return rc;
}

void recipe_free(recipe *r) {
    if (!r) return;
    for (int i = 0; i < r->n_stages; i++) {
        recipe_stage *st = &r->stages[i];
        free(st->name);
        cJSON_Delete(st->params);
        cJSON_Delete(st->resources);
        recipe_stage_free_refs(st);
        for (int k = 0; k < st->n_needs; k++) free(st->needs[k]);
        free(st->needs);
        free(st->needs_line);
        free(st->needs_col);
        free(st->deps);
    }
    free(r->stages);
    for (int i = 0; i < r->n_sets; i++) free(r->set_labels[i]);
    free(r->set_labels);
    free(r->file);
    free(r->base_dir);
    free(r->text);
    free(r->name);
    free(r);
}

void recipe_stage_free_refs(recipe_stage *st) {
    for (int k = 0; k < st->n_refs; k++) {
        free(st->refs[k].path);
        free(st->refs[k].target);
        free(st->refs[k].output);
    }
    free(st->refs);
    st->refs = NULL;
    st->n_refs = 0;
    for (int k = 0; k < st->n_paths; k++) {
        free(st->paths[k].path);
        free(st->paths[k].file);
    }
    free(st->paths);
    st->paths = NULL;
    st->n_paths = 0;
}

int recipe_check_devices(const recipe *r) {
    for (int i = 0; i < r->n_stages; i++) {
        const recipe_stage *st = &r->stages[i];
        if (st->device == STAGE_DEVICE_CUDA)
            return err_set(ERR_INPUT, "%s:%d:%d: stage '%s' (%s) asks for device: cuda, but smelt's stages run on the "
                           "CPU only so far (the CUDA kernels are built and tested with SMELT_CUDA=ON but the model code "
                           "does not call them yet); plan it or 'smelt submit --slurm --dry-run' it, or run it here with "
                           "--set stages.%s.device=cpu", st->file, st->line, st->col, st->name, st->kind->name, st->name);
    }
    return 0;
}

int recipe_stage_index(const recipe *r, const char *name) {
    for (int i = 0; i < r->n_stages; i++)
        if (!strcmp(r->stages[i].name, name)) return i;
    return -1;
}
