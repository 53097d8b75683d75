/* engine.h: the serving engine: requests in, tokens (and the logits behind them) out, step by
 * step. Each step runs ONE batched forward over every scheduled sequence: decode tokens of the
 * running sequences and prefill chunks of new ones (continuous batching: new prompts are admitted
 * between decode steps), within a token budget per step. Keys and values live in a paged KV cache
 * (model/paged_kv.h) under a memory budget; a radix tree over token ids (model/radix.h) keeps the
 * blocks of finished prompts so that a request sharing a prefix with an earlier one computes only
 * its suffix. Projections go through linear_forward (any linear format the model's descriptors
 * use), attention through attention_paged_forward.
 *
 * Memory: a request is admitted only when blocks for its whole prompt and all its new tokens are
 * free or evictable, so a running request never runs out of KV blocks. A request that could never
 * fit (longer than the context, or more blocks than the pool) is refused when submitted.
 * Single-threaded: one thread drives an engine (the kernels use every core inside a step). */
#ifndef SMELT_MODEL_ENGINE_H
#define SMELT_MODEL_ENGINE_H

#include <stddef.h>
#include <stdint.h>

#include "model/model.h"

typedef struct {
    int block_size;        /* positions per KV block (default 16) */
    double kv_budget_mb;   /* memory of the KV pool in MiB (default 256) */
    int max_batch_tokens;  /* tokens one step runs, decode and prefill together (default 1024) */
    int max_seqs;          /* sequences running at once (default 64) */
    int prefix_cache;      /* 1: reuse cached prefixes (radix tree); 0: every prompt from scratch */
    int max_context;       /* positions of one sequence; 0: the model's max_position_embeddings */
    int dry_run;           /* 1: schedule only, no forward (capacity simulation): token 0 is produced
                            * and events carry no logits */
    int kv_f16;            /* 1: keys and values stored in fp16 (half the KV bytes read per decode
                            * step, llama.cpp's default); 0 (default): fp32, the plain forward's
                            * values exactly */
} engine_opts;

/* Defaults above (prefix cache on). */
engine_opts engine_opts_default(void);

typedef struct {
    const int *prompt;     /* [n_prompt] token ids (copied) */
    int n_prompt;          /* >= 1 */
    int max_new_tokens;    /* >= 1; the first comes from the prefill */
    int ignore_eos;        /* 1: stop only at max_new_tokens (benchmarks) */
    const int *stop_ids;   /* [n_stop] tokens that end generation besides the model's EOS (copied) */
    int n_stop;
    float temperature, top_p;
    uint64_t seed;
    int prompt_logits;     /* 1: the logits of every prompt position go to the callback too (echo
                            * log-probabilities); such a request computes its whole prompt */
    void *user;            /* handed back in its events */
} engine_request;

enum {
    ENGINE_EV_PROMPT = 1, /* logits of prompt position pos (they predict prompt token pos + 1) */
    ENGINE_EV_TOKEN = 2,  /* a new token was sampled from the logits of position pos */
};
enum {
    ENGINE_RUNNING = 0,
    ENGINE_FINISH_LENGTH = 1, /* max_new_tokens reached, or the context is full */
    ENGINE_FINISH_STOP = 2,   /* EOS or a stop token (the token is reported, then the request ends) */
    ENGINE_FINISH_ABORT = 3,  /* the callback asked to stop */
};

typedef struct {
    int64_t id;
    void *user;
    int kind;              /* ENGINE_EV_* */
    int pos;               /* the position whose logits these are */
    const float *logits;   /* [vocab] valid during the callback; NULL in a dry run */
    int token;             /* EV_TOKEN: the sampled token */
    int n_generated;       /* EV_TOKEN: tokens generated so far, this one included */
    int finish;            /* EV_TOKEN: ENGINE_RUNNING or why the request ends with this token */
    int cached_tokens;     /* prompt tokens that came from the prefix cache */
} engine_event;

/* Receives events in order; returning non-zero ends the request after this event (finish ABORT;
 * no further event for it). */
typedef int (*engine_event_fn)(void *ctx, const engine_event *ev);

/* What one step did, for benchmarks and the cost model of capacity planning. */
typedef struct {
    int n_seqs;            /* sequences in the batch */
    int prefill_tokens;    /* prompt tokens computed */
    int decode_tokens;     /* one per decoding sequence */
    double attn_pairs;     /* sum over sequences of new tokens x keys attended (attention work) */
    int admitted;          /* requests admitted this step */
    int finished;          /* requests that ended this step */
    double seconds;        /* wall time of the step */
} engine_step_info;

/* Cumulative counters (since engine_create or engine_stats_reset). */
typedef struct {
    int64_t requests_done, prompt_tokens, cached_tokens, generated_tokens, steps;
    double forward_s;             /* wall time of the batched forwards (scheduling excluded) */
    double embed_head_s;          /* embedding, final norm, LM head and sampling */
    double *layer_attn_s;         /* [n_layers] norm, q/k/v, RoPE, KV writes, attention, o_proj */
    double *layer_mlp_s;          /* [n_layers] norm, gate/up, SwiGLU, down */
    /* with engine_set_profile(e, 1): the decode team's time by kind of work (ENGINE_TP_*), in
     * thread-seconds summed over its threads (barrier: waiting for the others); the LM head and
     * sampling of every step in wall seconds */
    double team_s[16];
    int64_t team_steps;           /* steps that ran as a team */
} engine_stats;

enum { ENGINE_TP_NORM, ENGINE_TP_GEMV, ENGINE_TP_ROPE_KV, ENGINE_TP_ATTN, ENGINE_TP_SWIGLU, ENGINE_TP_BARRIER,
       ENGINE_TP_HEAD, ENGINE_TP_SAMPLE, ENGINE_TP_N };
/* Names of the ENGINE_TP_* kinds. */
extern const char *const engine_tp_names[ENGINE_TP_N];

typedef struct engine engine;

/* Turns the decode profile (engine_stats.team_s) on or off (off by default: no clock reads). */
void engine_set_profile(engine *e, int on);

/* An engine over m (borrowed; m must outlive it and nothing else may use it meanwhile). Checks
 * the options and allocates the KV pool and the step buffers. 0 or -1 (ERR_INPUT naming the
 * option, ERR_NOMEM). */
int engine_create(engine **e, model *m, const engine_opts *o);
void engine_free(engine *e);

/* 0 when a request of n_prompt + max_new_tokens positions can ever run (context and KV pool),
 * else -1 (ERR_INPUT saying which limit and the fix). */
int engine_check_fits(const engine *e, int n_prompt, int max_new_tokens);
/* Queues a request; *id receives its id (increasing from 1). 0 or -1 (ERR_INPUT: too long for
 * the context or the pool, a token outside the vocabulary, bad parameters; ERR_NOMEM). */
int engine_submit(engine *e, const engine_request *r, int64_t *id);
/* Ends a waiting or running request at once and frees its blocks (a client went away). No event
 * follows. Returns 1 when it was found, 0 when not (already finished). */
int engine_cancel(engine *e, int64_t id);
/* Runs one step (scheduling, one batched forward, sampling, events). info may be NULL. A step
 * with nothing to do returns 0 at once with info->n_seqs == 0. 0 or -1 (the forward failed: every
 * request is dropped and the error slot says why). */
int engine_step(engine *e, engine_event_fn fn, void *ctx, engine_step_info *info);

int engine_n_waiting(const engine *e);
int engine_n_running(const engine *e);
/* KV blocks: in the pool, free, held by the prefix cache. */
void engine_kv_usage(const engine *e, int *n_blocks, int *n_free, int *n_cached);
/* Empties the prefix cache (blocks of running requests stay). */
void engine_cache_clear(engine *e);
const engine_stats *engine_get_stats(const engine *e);
void engine_stats_reset(engine *e);
const engine_opts *engine_get_opts(const engine *e);
const model_config *engine_config(const engine *e);

#endif
