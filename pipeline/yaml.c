/* yaml.c: YAML text to a node tree with positions, using libyaml's event parser. Adds what
 * libyaml leaves to the application: duplicate-key detection, a single-document rule, alias
 * expansion with a node budget (no "billion laughs"), and messages with file:line:column. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "common/error.h"
#include "pipeline/node.h"

typedef struct {
    char *name;
    node *n;
} anchor;

typedef struct {
    yaml_parser_t p;
    const char *file;
    const char *text;
    size_t len;
    anchor *anchors;
    int n_anchors;
    long budget; /* nodes left */
    int depth;
} yctx;

/* Line and column (1-based) of a byte offset, for reader errors that only carry an offset. */
static void offset_pos(const char *text, size_t len, size_t off, int *line, int *col) {
    *line = 1;
    *col = 1;
    for (size_t i = 0; i < off && i < len; i++) {
        if (text[i] == '\n') {
            (*line)++;
            *col = 1;
        } else if (((unsigned char)text[i] & 0xC0) != 0x80) {
            (*col)++;
        }
    }
}

static int parser_error(yctx *c) {
    yaml_parser_t *p = &c->p;
    int line, col;
    if (p->error == YAML_READER_ERROR) {
        offset_pos(c->text, c->len, p->problem_offset, &line, &col);
        if (p->problem_value >= 0 && strstr(p->problem ? p->problem : "", "UTF-8"))
            return err_set(ERR_INPUT, "%s:%d:%d: the recipe is not valid UTF-8 (%s, byte 0x%02x); save it as UTF-8",
                           c->file, line, col, p->problem, p->problem_value & 0xff);
        return err_set(ERR_INPUT, "%s:%d:%d: %s; a recipe must be UTF-8 text", c->file, line, col,
                       p->problem ? p->problem : "unreadable input");
    }
    line = (int)p->problem_mark.line + 1;
    col = (int)p->problem_mark.column + 1;
    size_t off = p->problem_mark.index;
    const char *hint = "";
    if (off < c->len && c->text[off] == '\t')
        hint = "; tabs cannot indent YAML: indent with spaces";
    else if (p->problem && strstr(p->problem, "mapping values are not allowed"))
        hint = "; a 'key: value' is probably mis-indented or a value with ': ' needs quotes";
    if (p->context)
        return err_set(ERR_INPUT, "%s:%d:%d: YAML syntax error: %s %s (line %d)%s", c->file, line, col, p->problem,
                       p->context, (int)p->context_mark.line + 1, hint);
    return err_set(ERR_INPUT, "%s:%d:%d: YAML syntax error: %s%s", c->file, line, col,
                   p->problem ? p->problem : "malformed YAML", hint);
}

static int next_event(yctx *c, yaml_event_t *e) {
    if (!yaml_parser_parse(&c->p, e)) return parser_error(c);
    return 0;
}

static long count_nodes(const node *n) {
    long k = 1;
    for (int i = 0; i < n->n; i++) k += count_nodes(n->vals[i]);
    return k;
}

static int take_budget(yctx *c, long k, int line, int col) {
    c->budget -= k;
    if (c->budget < 0)
        return err_set(ERR_INPUT, "%s:%d:%d: the recipe expands to more than %d nodes (through aliases?); simplify it",
                       c->file, line, col, RECIPE_MAX_NODES);
    return 0;
}

static int remember_anchor(yctx *c, const yaml_char_t *name, node *n) {
    if (!name) return 0;
    anchor *a = xrealloc(c->anchors, (size_t)(c->n_anchors + 1) * sizeof *a);
    if (!a) return -1;
    c->anchors = a;
    a[c->n_anchors].name = xstrdup((const char *)name);
    if (!a[c->n_anchors].name) return -1;
    a[c->n_anchors++].n = n;
    return 0;
}

/* Parses the node that starts with event e (consumed). */
static int parse_node(yctx *c, yaml_event_t *e, node **out) {
    *out = NULL;
    int line = (int)e->start_mark.line + 1, col = (int)e->start_mark.column + 1;
    if (++c->depth > 64) return err_set(ERR_INPUT, "%s:%d:%d: the recipe nests deeper than 64 levels", c->file, line, col);
    int rc = 0;
    switch (e->type) {
    case YAML_SCALAR_EVENT: {
        if (take_budget(c, 1, line, col)) break;
        if (memchr(e->data.scalar.value, 0, e->data.scalar.length)) {
            rc = err_set(ERR_INPUT, "%s:%d:%d: a value contains a NUL byte", c->file, line, col);
            break;
        }
        int quoted = e->data.scalar.style != YAML_PLAIN_SCALAR_STYLE;
        *out = node_scalar(c->file, line, col, (const char *)e->data.scalar.value, quoted);
        if (!*out || remember_anchor(c, e->data.scalar.anchor, *out)) rc = -1;
        break;
    }
    case YAML_ALIAS_EVENT: {
        const char *name = (const char *)e->data.alias.anchor;
        const node *target = NULL;
        for (int i = c->n_anchors - 1; i >= 0 && !target; i--)
            if (!strcmp(c->anchors[i].name, name)) target = c->anchors[i].n;
        if (!target) {
            rc = err_set(ERR_INPUT, "%s:%d:%d: alias *%s refers to no anchor defined before it", c->file, line, col, name);
            break;
        }
        if (take_budget(c, count_nodes(target), line, col)) {
            rc = -1;
            break;
        }
        *out = node_clone(target);
        if (!*out) rc = -1;
        break;
    }
    case YAML_SEQUENCE_START_EVENT:
    case YAML_MAPPING_START_EVENT: {
        int is_map = e->type == YAML_MAPPING_START_EVENT;
        if (take_budget(c, 1, line, col)) {
            rc = -1;
            break;
        }
        node *n = node_new(is_map ? NODE_MAP : NODE_SEQ, c->file, line, col);
        const yaml_char_t *anc = is_map ? e->data.mapping_start.anchor : e->data.sequence_start.anchor;
        if (!n || remember_anchor(c, anc, n)) {
            node_free(n);
            rc = -1;
            break;
        }
        *out = n;
        for (;;) {
            yaml_event_t k;
            if (next_event(c, &k)) {
                rc = -1;
                break;
            }
            if (k.type == (is_map ? YAML_MAPPING_END_EVENT : YAML_SEQUENCE_END_EVENT)) {
                yaml_event_delete(&k);
                break;
            }
            if (!is_map) {
                node *item;
                rc = parse_node(c, &k, &item);
                yaml_event_delete(&k);
                if (rc || node_seq_push(n, item)) {
                    node_free(item);
                    rc = -1;
                    break;
                }
                continue;
            }
            int kl = (int)k.start_mark.line + 1, kc = (int)k.start_mark.column + 1;
            if (k.type != YAML_SCALAR_EVENT) {
                yaml_event_delete(&k);
                rc = err_set(ERR_INPUT, "%s:%d:%d: a mapping key must be a plain name, not a %s", c->file, kl, kc,
                             k.type == YAML_ALIAS_EVENT ? "alias" : "collection");
                break;
            }
            char *key = xstrdup((const char *)k.data.scalar.value);
            yaml_event_delete(&k);
            if (!key) {
                rc = -1;
                break;
            }
            int dup = node_map_index(n, key);
            if (dup >= 0) {
                rc = err_set(ERR_INPUT, "%s:%d:%d: duplicate key '%s' (first at line %d, column %d); remove one",
                             c->file, kl, kc, key, n->key_line[dup], n->key_col[dup]);
                free(key);
                break;
            }
            yaml_event_t v;
            node *val = NULL;
            if (next_event(c, &v)) {
                free(key);
                rc = -1;
                break;
            }
            rc = parse_node(c, &v, &val);
            yaml_event_delete(&v);
            if (rc || node_map_put(n, key, kl, kc, val)) {
                node_free(val);
                free(key);
                rc = -1;
                break;
            }
            free(key);
        }
        if (rc) {
            node_free(n);
            *out = NULL;
        }
        break;
    }
    default:
        rc = err_set(ERR_INPUT, "%s:%d:%d: unexpected YAML event", c->file, line, col);
    }
    c->depth--;
    return rc;
}

int yaml_parse(node **out, const char *file, const char *text, size_t len) {
    *out = NULL;
    if (len > RECIPE_MAX_BYTES)
        return err_set(ERR_INPUT, "%s:1:1: the recipe is %zu bytes, more than the %u-byte limit; a recipe is a short "
                       "YAML file (put data in files and refer to them)", file, len, RECIPE_MAX_BYTES);
    yctx c = {.file = file, .text = text, .len = len, .budget = RECIPE_MAX_NODES};
    if (!yaml_parser_initialize(&c.p)) return err_set(ERR_NOMEM, "cannot start the YAML parser");
    yaml_parser_set_input_string(&c.p, (const unsigned char *)text, len);
    yaml_parser_set_encoding(&c.p, YAML_UTF8_ENCODING);
    yaml_event_t e;
    int rc = 0, docs = 0;
    node *root = NULL;
    for (;;) {
        if (next_event(&c, &e)) {
            rc = -1;
            break;
        }
        yaml_event_type_t t = e.type;
        if (t == YAML_STREAM_END_EVENT) {
            yaml_event_delete(&e);
            break;
        }
        if (t == YAML_DOCUMENT_START_EVENT && ++docs > 1) {
            rc = err_set(ERR_INPUT, "%s:%d:%d: a recipe is one YAML document; remove the second '---' document",
                         file, (int)e.start_mark.line + 1, (int)e.start_mark.column + 1);
            yaml_event_delete(&e);
            break;
        }
        if (t == YAML_SCALAR_EVENT || t == YAML_SEQUENCE_START_EVENT || t == YAML_MAPPING_START_EVENT ||
            t == YAML_ALIAS_EVENT) {
            rc = parse_node(&c, &e, &root);
            yaml_event_delete(&e);
            if (rc) break;
            continue;
        }
        yaml_event_delete(&e);
    }
    yaml_parser_delete(&c.p);
    for (int i = 0; i < c.n_anchors; i++) free(c.anchors[i].name);
    free(c.anchors);
    if (rc) {
        node_free(root);
        return -1;
    }
    if (!root || node_is_null(root)) {
        node_free(root);
        return err_set(ERR_INPUT, "%s:1:1: the recipe is empty; a recipe is a mapping with 'smelt: 1', 'name:' and "
                       "'stages:' (see recipes/quickstart.yaml)", file);
    }
    *out = root;
    return 0;
}
