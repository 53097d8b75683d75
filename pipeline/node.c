/* node.c: construction, lookup, cloning and scalar typing of recipe trees. */
#include "pipeline/node.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/error.h"

node *node_new(node_type t, const char *file, int line, int col) {
    node *n = xcalloc(1, sizeof *n);
    if (!n) return NULL;
    n->type = t;
    n->file = file;
    n->line = line;
    n->col = col;
    return n;
}

node *node_scalar(const char *file, int line, int col, const char *text, int quoted) {
    node *n = node_new(NODE_SCALAR, file, line, col);
    if (!n) return NULL;
    n->text = xstrdup(text);
    if (!n->text) {
        free(n);
        return NULL;
    }
    n->quoted = quoted;
    return n;
}

static int node_grow(node *m) {
    if (m->n < m->cap) return 0;
    int cap = m->cap ? 2 * m->cap : 4;
    node **v = xrealloc(m->vals, (size_t)cap * sizeof *v);
    if (!v) return -1;
    m->vals = v;
    if (m->type == NODE_MAP) {
        char **k = xrealloc(m->keys, (size_t)cap * sizeof *k);
        if (!k) return -1;
        m->keys = k;
        int *kl = xrealloc(m->key_line, (size_t)cap * sizeof *kl);
        if (!kl) return -1;
        m->key_line = kl;
        int *kc = xrealloc(m->key_col, (size_t)cap * sizeof *kc);
        if (!kc) return -1;
        m->key_col = kc;
    }
    m->cap = cap;
    return 0;
}

int node_map_put(node *map, const char *key, int line, int col, node *val) {
    if (node_grow(map)) return -1;
    char *k = xstrdup(key);
    if (!k) return -1;
    map->keys[map->n] = k;
    map->key_line[map->n] = line;
    map->key_col[map->n] = col;
    map->vals[map->n++] = val;
    return 0;
}

int node_seq_push(node *seq, node *val) {
    if (node_grow(seq)) return -1;
    seq->vals[seq->n++] = val;
    return 0;
}

int node_map_index(const node *map, const char *key) {
    if (!map || map->type != NODE_MAP) return -1;
    for (int i = 0; i < map->n; i++)
        if (!strcmp(map->keys[i], key)) return i;
    return -1;
}

node *node_map_get(const node *map, const char *key) {
    int i = node_map_index(map, key);
    return i < 0 ? NULL : map->vals[i];
}

void node_map_remove(node *map, int i) {
    free(map->keys[i]);
    node_free(map->vals[i]);
    for (int j = i + 1; j < map->n; j++) {
        map->keys[j - 1] = map->keys[j];
        map->key_line[j - 1] = map->key_line[j];
        map->key_col[j - 1] = map->key_col[j];
        map->vals[j - 1] = map->vals[j];
    }
    map->n--;
}

node *node_clone(const node *n) {
    node *c = n->type == NODE_SCALAR ? node_scalar(n->file, n->line, n->col, n->text, n->quoted)
                                     : node_new(n->type, n->file, n->line, n->col);
    if (!c) return NULL;
    for (int i = 0; i < n->n; i++) {
        node *v = node_clone(n->vals[i]);
        int rc = !v ? -1 : n->type == NODE_MAP ? node_map_put(c, n->keys[i], n->key_line[i], n->key_col[i], v)
                                               : node_seq_push(c, v);
        if (rc) {
            node_free(v);
            node_free(c);
            return NULL;
        }
    }
    return c;
}

void node_free(node *n) {
    if (!n) return;
    for (int i = 0; i < n->n; i++) {
        node_free(n->vals[i]);
        if (n->keys) free(n->keys[i]);
    }
    free(n->vals);
    free(n->keys);
    free(n->key_line);
    free(n->key_col);
    free(n->text);
    free(n);
}

int node_is_null(const node *n) {
    return n->type == NODE_SCALAR && !n->quoted &&
           (!n->text[0] || !strcmp(n->text, "~") || !strcmp(n->text, "null") || !strcmp(n->text, "Null") ||
            !strcmp(n->text, "NULL"));
}

int node_as_int(const node *n, long long *out) {
    if (n->type != NODE_SCALAR || n->quoted || !n->text[0]) return 0;
    const char *s = n->text;
    char *end;
    errno = 0;
    long long v;
    if (!strncmp(s, "0x", 2)) v = strtoll(s + 2, &end, 16);
    else if (!strncmp(s, "0o", 2)) v = strtoll(s + 2, &end, 8);
    else {
        const char *d = s + (*s == '-' || *s == '+');
        if (!*d) return 0;
        for (const char *p = d; *p; p++)
            if (*p < '0' || *p > '9') return 0;
        v = strtoll(s, &end, 10);
    }
    if (*end || errno) return 0;
    *out = v;
    return 1;
}

int node_as_float(const node *n, double *out) {
    long long i;
    if (node_as_int(n, &i)) {
        *out = (double)i;
        return 1;
    }
    if (n->type != NODE_SCALAR || n->quoted || !n->text[0]) return 0;
    const char *s = n->text;
    if (!strcmp(s, ".inf") || !strcmp(s, "+.inf") || !strcmp(s, ".Inf")) {
        *out = INFINITY;
        return 1;
    }
    if (!strcmp(s, "-.inf") || !strcmp(s, "-.Inf")) {
        *out = -INFINITY;
        return 1;
    }
    if (!strcmp(s, ".nan") || !strcmp(s, ".NaN")) {
        *out = NAN;
        return 1;
    }
    /* [-+]? (digits [. digits?] | . digits) ([eE] [-+]? digits)? */
    const char *p = s + (*s == '-' || *s == '+');
    int digits = 0;
    while (*p >= '0' && *p <= '9') p++, digits++;
    if (*p == '.') {
        p++;
        while (*p >= '0' && *p <= '9') p++, digits++;
    }
    if (!digits) return 0;
    if (*p == 'e' || *p == 'E') {
        p++;
        if (*p == '-' || *p == '+') p++;
        if (!(*p >= '0' && *p <= '9')) return 0;
        while (*p >= '0' && *p <= '9') p++;
    }
    if (*p) return 0;
    *out = strtod(s, NULL);
    return 1;
}

int node_as_bool(const node *n, int *out, int yaml11) {
    if (n->type != NODE_SCALAR || n->quoted) return 0;
    static const char *const t12[] = {"true", "True", "TRUE"}, *const f12[] = {"false", "False", "FALSE"};
    static const char *const t11[] = {"yes", "Yes", "YES", "on", "On", "ON"};
    static const char *const f11[] = {"no", "No", "NO", "off", "Off", "OFF"};
    for (int i = 0; i < 3; i++) {
        if (!strcmp(n->text, t12[i])) return *out = 1, 1;
        if (!strcmp(n->text, f12[i])) return *out = 0, 1;
    }
    if (yaml11)
        for (int i = 0; i < 6; i++) {
            if (!strcmp(n->text, t11[i])) return *out = 1, 1;
            if (!strcmp(n->text, f11[i])) return *out = 0, 1;
        }
    return 0;
}
