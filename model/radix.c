/* radix.c: the block-granular radix tree of the prefix cache (see radix.h). Children are found by
 * a linear scan of their first block: a node has one child per distinct continuation, which is k
 * for a member's k candidates and at most the number of distinct cached first blocks at the root.
 * Eviction collects the unlocked leaves, sorts them by last use and removes them oldest first,
 * repeating while parents become leaves: O(nodes log nodes) per round, a round per tree level. */
#include "model/radix.h"

#include <stdlib.h>
#include <string.h>

#include "common/error.h"

void radix_init(radix_tree *t, kv_pool *pool) {
    memset(t, 0, sizeof *t);
    t->pool = pool;
    t->block_size = pool->block_size;
}

static void node_free_rec(radix_tree *t, radix_node *n) {
    for (int i = 0; i < n->n_child; i++) node_free_rec(t, n->child[i]);
    for (int i = 0; i < n->n_blocks; i++) kv_pool_release(t->pool, n->blocks[i]);
    free(n->child);
    free(n->tokens);
    free(n->blocks);
    if (n != &t->root) free(n);
}

void radix_free(radix_tree *t) {
    node_free_rec(t, &t->root);
    kv_pool *pool = t->pool;
    radix_init(t, pool);
}

static int same_block(const int *a, const int *b, int B) { return !memcmp(a, b, sizeof(int) * (size_t)B); }

static radix_node *find_child(const radix_tree *t, const radix_node *n, const int *tokens) {
    for (int i = 0; i < n->n_child; i++)
        if (same_block(n->child[i]->tokens, tokens, t->block_size)) return n->child[i];
    return NULL;
}

static int add_child(radix_node *parent, radix_node *c) {
    if (parent->n_child == parent->cap_child) {
        int cap = parent->cap_child ? 2 * parent->cap_child : 4;
        radix_node **a = xrealloc(parent->child, sizeof *a * (size_t)cap);
        if (!a) return -1;
        parent->child = a;
        parent->cap_child = cap;
    }
    parent->child[parent->n_child++] = c;
    c->parent = parent;
    return 0;
}

static void remove_child(radix_node *parent, radix_node *c) {
    for (int i = 0; i < parent->n_child; i++)
        if (parent->child[i] == c) {
            parent->child[i] = parent->child[--parent->n_child];
            return;
        }
}

/* Cuts n after its first k blocks (0 < k < n->n_blocks): a new node takes those k and becomes n's
 * parent. Locks and last use carry over, so the evictable count does not change. */
static radix_node *split(radix_tree *t, radix_node *n, int k) {
    const int B = t->block_size;
    radix_node *top = xcalloc(1, sizeof *top);
    if (!top) return NULL;
    top->tokens = xmalloc(sizeof(int) * (size_t)k * B);
    top->blocks = xmalloc(sizeof(int) * (size_t)k);
    top->child = xmalloc(sizeof(radix_node *) * 4);
    if (!top->tokens || !top->blocks || !top->child) {
        free(top->tokens), free(top->blocks), free(top->child), free(top);
        return NULL;
    }
    top->cap_child = 4;
    memcpy(top->tokens, n->tokens, sizeof(int) * (size_t)k * B);
    memcpy(top->blocks, n->blocks, sizeof(int) * (size_t)k);
    top->n_blocks = k;
    top->lock = n->lock;
    top->last_use = n->last_use;
    radix_node *parent = n->parent;
    for (int i = 0; i < parent->n_child; i++)
        if (parent->child[i] == n) parent->child[i] = top;
    top->parent = parent;
    top->child[0] = n;
    top->n_child = 1;
    n->parent = top;
    n->n_blocks -= k;
    memmove(n->tokens, n->tokens + (size_t)k * B, sizeof(int) * (size_t)n->n_blocks * B);
    memmove(n->blocks, n->blocks + k, sizeof(int) * (size_t)n->n_blocks);
    t->n_nodes++;
    return top;
}

/* Blocks of edge c that equal tokens[0 .. avail blocks), at least 1 since c was found by them. */
static int edge_match(const radix_tree *t, const radix_node *c, const int *tokens, int avail) {
    const int B = t->block_size;
    int k = 1;
    while (k < c->n_blocks && k < avail && same_block(c->tokens + (size_t)k * B, tokens + (size_t)k * B, B)) k++;
    return k;
}

int radix_match(radix_tree *t, const int *tokens, int n, int *blocks, radix_node **last) {
    const int B = t->block_size, n_full = n / B;
    const uint64_t now = ++t->clock;
    radix_node *node = &t->root;
    int i = 0;
    while (i < n_full) {
        radix_node *c = find_child(t, node, tokens + (size_t)i * B);
        if (!c) break;
        int k = edge_match(t, c, tokens + (size_t)i * B, n_full - i);
        if (k < c->n_blocks && !(c = split(t, c, k))) return -1;
        memcpy(blocks + i, c->blocks, sizeof(int) * (size_t)k);
        c->last_use = now;
        i += k;
        node = c;
    }
    *last = node;
    return i;
}

int radix_insert(radix_tree *t, const int *tokens, const int *blocks, int n_blocks, radix_node **last) {
    const int B = t->block_size;
    const uint64_t now = ++t->clock;
    radix_node *node = &t->root;
    int i = 0;
    *last = node;
    while (i < n_blocks) {
        radix_node *c = find_child(t, node, tokens + (size_t)i * B);
        if (!c) {
            const int nb = n_blocks - i;
            radix_node *leaf = xcalloc(1, sizeof *leaf);
            int *tk = xmalloc(sizeof(int) * (size_t)nb * B), *bl = xmalloc(sizeof(int) * (size_t)nb);
            if (!leaf || !tk || !bl || add_child(node, leaf)) {
                free(leaf), free(tk), free(bl);
                return -1;
            }
            memcpy(tk, tokens + (size_t)i * B, sizeof(int) * (size_t)nb * B);
            memcpy(bl, blocks + i, sizeof(int) * (size_t)nb);
            for (int j = 0; j < nb; j++) kv_pool_retain(t->pool, bl[j]);
            leaf->tokens = tk, leaf->blocks = bl, leaf->n_blocks = nb, leaf->last_use = now;
            t->n_blocks += nb;
            t->n_evictable += nb;
            t->n_nodes++;
            *last = leaf;
            return 0;
        }
        int k = edge_match(t, c, tokens + (size_t)i * B, n_blocks - i);
        if (k < c->n_blocks && !(c = split(t, c, k))) return -1;
        c->last_use = now;
        i += k;
        node = c;
        *last = node;
    }
    return 0;
}

void radix_lock(radix_tree *t, radix_node *node) {
    for (radix_node *n = node; n && n != &t->root; n = n->parent)
        if (n->lock++ == 0) t->n_evictable -= n->n_blocks;
}

void radix_unlock(radix_tree *t, radix_node *node) {
    for (radix_node *n = node; n && n != &t->root; n = n->parent)
        if (--n->lock == 0) t->n_evictable += n->n_blocks;
}

static int by_last_use(const void *a, const void *b) {
    const radix_node *x = *(radix_node *const *)a, *y = *(radix_node *const *)b;
    return x->last_use < y->last_use ? -1 : x->last_use > y->last_use;
}

static void collect_leaves(radix_tree *t, radix_node *n, radix_node **out, int *cnt) {
    if (n != &t->root && n->n_child == 0 && n->lock == 0) out[(*cnt)++] = n;
    for (int i = 0; i < n->n_child; i++) collect_leaves(t, n->child[i], out, cnt);
}

int radix_evict(radix_tree *t, int want) {
    const int free0 = t->pool->n_free;
    radix_node **leaves = NULL;
    while (t->pool->n_free - free0 < want && t->n_evictable > 0) {
        if (!leaves && !(leaves = malloc(sizeof *leaves * (size_t)t->n_nodes))) break; /* nothing evicted: caller sees 0 */
        int cnt = 0;
        collect_leaves(t, &t->root, leaves, &cnt);
        if (cnt == 0) break;
        qsort(leaves, (size_t)cnt, sizeof *leaves, by_last_use);
        for (int i = 0; i < cnt && t->pool->n_free - free0 < want; i++) {
            radix_node *n = leaves[i];
            remove_child(n->parent, n);
            for (int j = 0; j < n->n_blocks; j++) kv_pool_release(t->pool, n->blocks[j]);
            t->n_blocks -= n->n_blocks;
            t->n_evictable -= n->n_blocks;
            t->n_nodes--;
            free(n->child), free(n->tokens), free(n->blocks), free(n);
        }
    }
    free(leaves);
    return t->pool->n_free - free0;
}
