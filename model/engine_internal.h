/* engine_internal.h: what engine.c (requests, scheduling, events) and engine_forward.c (the
 * batched forward over paged blocks) share. */
#ifndef SMELT_MODEL_ENGINE_INTERNAL_H
#define SMELT_MODEL_ENGINE_INTERNAL_H

#include "kernels/attn_paged.h"
#include "model/engine.h"
#include "model/paged_kv.h"
#include "model/radix.h"
#include "model/sample.h"

/* A request from submission to its end. */
typedef struct {
    int64_t id;
    void *user;
    int *tokens;          /* [cap] the prompt, then the generated tokens */
    int n_tokens, n_prompt, cap;
    int n_computed;       /* positions whose keys and values are in the blocks */
    int *blocks;          /* [cap_blocks] the block table */
    int n_blocks, cap_blocks;
    int reserved;         /* blocks it may still allocate (counted in engine.reserved) */
    int cached;           /* prompt tokens that came from the prefix cache */
    radix_node *lock;     /* end of its locked path in the prefix cache; NULL: none */
    int max_new, n_generated, ignore_eos, prompt_logits;
    int *stop;            /* [n_stop] */
    int n_stop;
    sampler smp;
    int done;             /* set when it ended during this step (skip its remaining rows) */
} eseq;

/* The work of one sequence in a step: n tokens at positions p0 .. p0+n-1 (rows row0 ..). */
typedef struct {
    eseq *s;
    int p0, n, row0;
} eseg;

struct engine {
    model *m;
    engine_opts o;
    int max_context;
    kv_pool pool;
    radix_tree tree;
    int reserved;         /* blocks promised to running sequences, not yet allocated */
    int64_t next_id;
    eseq **waiting;       /* FIFO [n_waiting] */
    int n_waiting, cap_waiting;
    eseq **running;       /* [n_running] in admission order */
    int n_running;
    eseg *segs;           /* [max_seqs] this step's work */
    attn_paged_seq *pseqs;/* [max_seqs] */
    int *tmp_blocks;      /* [max_context / block_size + 1] prefix matches */
    /* step buffers: rows = max_batch_tokens */
    float *x, *xn, *qkv, *att, *gu, *h;
    int *tok, *pos;
    float *att_work;
    size_t att_work_cap;
    int head_rows;        /* rows of logits per LM-head chunk */
    float *sel, *logits;  /* [head_rows, hidden], [head_rows, vocab] */
    float *sample_buf;    /* [vocab] */
    int *out_rows;        /* [max_batch_tokens] rows whose logits are needed this step */
    engine_stats st;
    int profile;          /* engine_set_profile */
};

/* Blocks for positions 0 .. n_pos-1. */
static inline int engine_blocks_for(const struct engine *e, int n_pos) {
    return (n_pos + e->o.block_size - 1) / e->o.block_size;
}

/* engine_forward.c: the step buffers (0 or -1), and the forward of n_seg segments holding
 * n_rows tokens: keys and values are written into the sequences' blocks (allocated by the
 * caller) and e->x receives the last residual stream [n_rows, hidden]. 0 or -1. */
int engine_buffers_init(struct engine *e);
void engine_buffers_free(struct engine *e);
int engine_forward(struct engine *e, const eseg *seg, int n_seg, int n_rows);
/* logits [n, vocab] of rows[0..n) of e->x (final norm, LM head); n <= e->head_rows. 0 or -1. */
int engine_head(struct engine *e, const int *rows, int n);

#endif
