/* node.h: a YAML document as a tree with source positions, built by pipeline/yaml.c. Scalars
 * keep their text and whether they were quoted; typing happens during validation against a
 * schema (so `on` is a bool where a bool is expected and a string elsewhere). */
#ifndef SMELT_PIPELINE_NODE_H
#define SMELT_PIPELINE_NODE_H

#include <stddef.h>

typedef enum { NODE_SCALAR, NODE_MAP, NODE_SEQ } node_type;

typedef struct node node;
struct node {
    node_type type;
    int line, col;      /* 1-based position of the node's start */
    const char *file;   /* borrowed: the file name used in messages */
    char *text;         /* scalar text (NODE_SCALAR) */
    int quoted;         /* the scalar was quoted ('...' or "...") or a block scalar */
    int n;              /* entries of a map or sequence */
    int cap;
    char **keys;        /* NODE_MAP: key texts */
    int *key_line, *key_col;
    node **vals;        /* NODE_MAP values / NODE_SEQ items */
};

/* Limits that keep a hostile recipe from exhausting memory. */
#define RECIPE_MAX_BYTES (1u << 20)
#define RECIPE_MAX_NODES 200000

/* Parses YAML text into a tree. Errors carry "file:line:col: ..." (ERR_INPUT).
 * An empty document gives an error: a recipe must be a mapping. */
int yaml_parse(node **out, const char *file, const char *text, size_t len);

node *node_new(node_type t, const char *file, int line, int col);
node *node_scalar(const char *file, int line, int col, const char *text, int quoted);
int node_map_put(node *map, const char *key, int line, int col, node *val); /* appends */
int node_seq_push(node *seq, node *val);
node *node_map_get(const node *map, const char *key);
int node_map_index(const node *map, const char *key);
void node_map_remove(node *map, int i); /* frees the key and the value */
node *node_clone(const node *n);
void node_free(node *n);

/* Scalar typing by YAML 1.2's core schema. */
int node_is_null(const node *n);
int node_as_int(const node *n, long long *out);   /* 1 if the scalar is an integer */
int node_as_float(const node *n, double *out);    /* 1 if a number (int or float) */
int node_as_bool(const node *n, int *out, int yaml11); /* yaml11 also accepts yes/no/on/off */

#endif
