/* radix.h: the serving engine's prefix cache: a radix tree over token ids whose edges are whole
 * KV blocks (a multiple of block_size tokens, with the pool blocks holding their keys and values).
 * A new request reuses the longest cached prefix of its prompt in whole blocks and computes only
 * the rest (the k candidates of a member share the profile and history). Nodes are locked by the
 * running sequences that use them (a lock covers the node and every ancestor); unlocked leaves are
 * evicted least recently used first when the pool runs out of free blocks. Single-threaded. */
#ifndef SMELT_MODEL_RADIX_H
#define SMELT_MODEL_RADIX_H

#include <stdint.h>

#include "model/paged_kv.h"

typedef struct radix_node radix_node;
struct radix_node {
    radix_node *parent;
    radix_node **child; /* [n_child]; children differ in their first block's tokens */
    int n_child, cap_child;
    int *tokens;        /* [n_blocks * block_size] the edge's tokens */
    int *blocks;        /* [n_blocks] pool blocks holding them (the tree holds one reference each) */
    int n_blocks;
    int lock;           /* running sequences whose cached prefix ends at or below this node */
    uint64_t last_use;  /* clock of the last match or insert through this node */
};

typedef struct {
    kv_pool *pool;      /* borrowed */
    int block_size;
    radix_node root;    /* the empty prefix: no blocks, never evicted */
    uint64_t clock;
    int n_blocks;       /* blocks the tree holds */
    int n_evictable;    /* blocks of unlocked nodes (the pool gets them back on eviction) */
    int n_nodes;        /* nodes besides the root */
} radix_tree;

void radix_init(radix_tree *t, kv_pool *pool);
/* Releases every block the tree holds and frees the nodes. */
void radix_free(radix_tree *t);

/* The longest cached prefix of tokens[0..n) in whole blocks: its block ids go to blocks[] (room
 * for n / block_size), *last receives the node where it ends (the root when nothing matched; lock
 * it while using the blocks). A match ending inside an edge splits that edge there. Marks the path
 * used. Returns the number of blocks matched, or -1 (ERR_NOMEM). */
int radix_match(radix_tree *t, const int *tokens, int n, int *blocks, radix_node **last);
/* Adds the prefix of n_blocks whole blocks (tokens [n_blocks * block_size], blocks [n_blocks]).
 * Parts already cached keep the tree's blocks (the caller's copies stay the caller's); new parts
 * take a reference on the caller's blocks. *last receives the node of the prefix's end. 0 or -1
 * (ERR_NOMEM; the tree stays valid). */
int radix_insert(radix_tree *t, const int *tokens, const int *blocks, int n_blocks, radix_node **last);
/* Lock counts on node and its ancestors (the root is never counted). */
void radix_lock(radix_tree *t, radix_node *node);
void radix_unlock(radix_tree *t, radix_node *node);
/* Evicts unlocked leaves, least recently used first, until `want` blocks went back to the pool or
 * nothing unlocked is left. Returns the blocks freed. */
int radix_evict(radix_tree *t, int want);

#endif
