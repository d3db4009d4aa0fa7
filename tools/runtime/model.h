/* model.h - the CPU runtime's model: hyperparameters from the file's
 * metadata, weights kept packed as the file stores them (kernels.h), blocks
 * resident all at once or streamed under a memory budget (residency.c), and
 * one forward pass for every supported architecture (forward.c). */
#ifndef NSQ_MODEL_H
#define NSQ_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "arch.h"
#include "kernels.h"
#include "nsq.h"
#include "pool.h"

/* y[out] = W x + b: rows [off, off+out) of a matrix stored [out][in], or
 * columns [off, off+out) of one stored [in][out] (GPT-2 Conv1D, unquantized). */
typedef struct {
    const wmat *w;
    uint32_t off, in, out;
    int in_major;
    const float *b;
} linear;

typedef struct {
    const float *w, *b; /* b only for LayerNorm */
} norm;

typedef struct {
    norm attn_norm, mlp_norm;
    norm post_attn_norm, post_mlp_norm, q_norm, k_norm; /* w NULL: the family has none */
    linear q, k, v, o, gate, up, down; /* ungated MLPs (GPT-2): no gate */
} layer;

typedef struct residency residency;

/* Model-level validation (check.c), before any weight is used: reads the
 * config from f's metadata and checks its values, every tensor's name, block
 * and shape, and that every id the tokenizer can produce has an embedding row.
 * With tok, the loaded tokenizer (NULL when the file has none) is returned. */
int model_check_file(const nsq_file *f, model_config *c, nsq_tokenizer **tok, char *err, size_t errlen);
/* Every vector (norm, bias) of every block decodes to finite values. */
int model_check_data(const nsq_file *f, char *err, size_t errlen);
int model_check_vector(const char *name, const float *v, uint64_t n, char *err, size_t errlen);
typedef struct {
    model_config c;
    nsq_file *f;
    const wmat *embed;     /* [vocab][hidden] */
    const wmat *pos_embed; /* [ctx][hidden], learned positions only */
    layer *layers;         /* filled while their block is resident */
    norm final_norm;
    linear head;
    float *rope_inv_freq; /* [head_dim / 2]; longrope: the short factors' */
    float *rope_inv_long; /* longrope: [head_dim / 2], for positions from the original context on */
    nsq_tokenizer *tok;   /* the file's tokenizer, checked against the embedding; NULL: none */
    residency *rs;
} model;

typedef struct {
    unsigned open_flags;  /* NSQ_OPEN_*; a budget implies NSQ_OPEN_PREAD */
    int max_refine;       /* refinement levels per block, -1: all there are */
    uint64_t max_memory;  /* bytes of resident weights, 0: no limit (the whole file) */
    int drop_cache;       /* streaming: drop each block's file pages after reading it (cold reads) */
    int routed;           /* MODEL_ROUTED: load only the embedding and output blocks, from their base;
                             model_route() picks the rest. MODEL_ROUTED_IF_ROUTER: so when the file
                             has a router section and there is a budget */
} model_opts;
enum { MODEL_UNROUTED, MODEL_ROUTED, MODEL_ROUTED_IF_ROUTER };

/* Opens path and reads the config. Without a budget every block is loaded
 * now (checksums verified); with one, the embedding and output blocks are,
 * and layer blocks stream in as forward() needs them. */
int model_open(const char *path, const model_opts *o, model *m, char *err, size_t errlen);
/* model_open with no budget, returning the file too (it stays owned by m). */
int model_load(const char *path, unsigned open_flags, int max_refine, model *m, nsq_file **file, char *err,
               size_t errlen);
void model_free(model *m);

/* What the weights need and what was done with them (residency.c). */
typedef struct {
    uint64_t budget, pinned, largest_block, all_blocks, all_refinements, minimum;
    uint64_t resident_peak, loads, bytes_read, refine_levels_loaded, refine_levels_total;
    uint64_t reads_per_token; /* file bytes the streaming policy reads per token, steady state */
    uint64_t token_bytes;     /* weight bytes one generated token reads from memory */
    int streaming, prefetch;
    double read_s; /* time spent reading, verifying and indexing blocks */
} model_usage;
void model_get_usage(const model *m, model_usage *u);
/* Refinement levels chosen for block b under the budget. */
uint32_t model_block_refine(const model *m, uint32_t b);
/* Refinement levels of block b's FULL choice: all it has, up to max_refine. */
uint32_t model_block_full(const model *m, uint32_t b);

/* Block choices (spec section 11.3). */
enum { ROUTE_SKIP, ROUTE_BASE, ROUTE_FULL };
/* Routed models: loads each block as choice[b] says (FULL: all refinement
 * levels, up to max_refine) and unloads the rest. Fails when the choices
 * exceed the budget or skip an embedding or output block. */
int model_route(model *m, const uint8_t *choice, char *err, size_t errlen);
/* Evaluates a resident block as choice c (SKIP, BASE, or FULL = as loaded)
 * without reading anything; for measuring what each choice costs. */
void model_try_choice(model *m, uint32_t b, int c);
/* The model was opened for routing (model_opts.routed, resolved). */
int model_routed(const model *m);
/* Layer L's block is skipped (routing). */
int model_layer_skipped(const model *m, uint32_t L);

/* Called with the input rows of every layer matrix product, before it runs. */
typedef void (*matmul_observer)(void *ctx, uint32_t layer, int which, const float *x, uint32_t n_tok, uint32_t in);
enum { LIN_Q, LIN_K, LIN_V, LIN_O, LIN_GATE, LIN_UP, LIN_DOWN }; /* `which` */

/* Per-sequence state: the KV cache and scratch buffers for up to max_batch
 * positions at a time, and the threads that run the matrix products. */
typedef struct {
    uint32_t max_batch, n_threads;
    float *k_cache, *v_cache; /* [layer][ctx][kv_dim] */
    float *x, *h, *q, *k, *v, *att, *o, *f1, *f2, *scores;
    act8 a;
    pool *pool;
    kern_level kern;
    int exact;               /* TIERED products with f32 activations (kern_rows_f32) */
    matmul_observer observe; /* NULL = off */
    void *observe_ctx;
} model_state;

int state_init(model_state *s, const model *m, uint32_t max_batch, uint32_t n_threads);
void state_free(model_state *s);
/* Bytes of the KV cache and of the scratch buffers. */
void state_bytes(const model_state *s, const model *m, uint64_t *kv, uint64_t *scratch);

/* Runs tokens[0..n) at positions pos0.. and writes logits: for every position
 * when all_logits ([n][vocab]), else for the last one only ([vocab]).
 * Returns -1 when a streamed block cannot be read (the message is in err). */
int forward(const model *m, model_state *s, const int32_t *tokens, uint32_t n, uint32_t pos0, float *logits,
            int all_logits);
/* forward() in its three parts, for callers that rerun part of a pass: the
 * embedding of tokens into the residual stream s->x, layers [L0, L1) on it
 * (-1 as forward()), and the logits of s->x. */
void forward_embed(const model *m, model_state *s, const int32_t *tokens, uint32_t n, uint32_t pos0);
int forward_layers(const model *m, model_state *s, uint32_t L0, uint32_t L1, uint32_t n, uint32_t pos0);
void forward_logits(const model *m, model_state *s, uint32_t n, float *logits, int all_logits);
const char *model_error(const model *m);

/* Residency, for forward(): makes layer L's block resident (and starts
 * reading the next one). -1 on a read error. */
int model_need_layer(const model *m, uint32_t L);

#endif
