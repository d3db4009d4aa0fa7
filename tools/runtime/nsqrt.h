/* nsqrt.h - the nsq CPU runtime as a library (libnsqrt.a, on top of libnsq):
 * the architecture registry; opening a .nsq model with the model-level check
 * (spec 5.4); its forward pass, whole or streamed under a memory budget;
 * routing blocks (spec 11); sampling; log-probabilities; the thread pool
 * everything runs on; and quick machine probes. Every name is nsqrt_- or
 * NSQRT_-prefixed. Results never depend on the thread count. */
#ifndef NSQRT_H
#define NSQRT_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "nsq.h"

/* ---- the architecture registry ----
 * One entry per model family, naming its Hugging Face class, the config facts
 * the converter reads, its tensors (names, which ones a config needs, shapes)
 * and the options of the forward pass. A file stores only
 * general.architecture and the hyperparameters, as data. */
typedef enum { NSQRT_ACT_SILU, NSQRT_ACT_GELU_TANH, NSQRT_ACT_GELU, NSQRT_ACT_RELU } nsqrt_act;
typedef enum {
    NSQRT_ROPE_NONE, NSQRT_ROPE_LINEAR, NSQRT_ROPE_DYNAMIC, NSQRT_ROPE_LLAMA3, NSQRT_ROPE_LONGROPE
} nsqrt_rope;

/* What a tensor is for. The first five are the model's own, the rest are
 * filled per layer. */
enum {
    NSQRT_ROLE_EMBED, NSQRT_ROLE_POS, NSQRT_ROLE_FINAL_NORM, NSQRT_ROLE_FINAL_NORM_B, NSQRT_ROLE_HEAD,
    NSQRT_ROLE_ATTN_NORM, NSQRT_ROLE_ATTN_NORM_B, NSQRT_ROLE_MLP_NORM, NSQRT_ROLE_MLP_NORM_B,
    NSQRT_ROLE_POST_ATTN_NORM, NSQRT_ROLE_POST_MLP_NORM, /* applied to a sublayer's output, before the residual add */
    NSQRT_ROLE_Q_NORM, NSQRT_ROLE_K_NORM,                /* per head, before RoPE */
    NSQRT_ROLE_Q, NSQRT_ROLE_K, NSQRT_ROLE_V, NSQRT_ROLE_O, NSQRT_ROLE_GATE, NSQRT_ROLE_UP, NSQRT_ROLE_DOWN,
    NSQRT_ROLE_QKV,     /* q, k and v stacked along the output dimension */
    NSQRT_ROLE_GATE_UP, /* gate then up, stacked along the output dimension */
    NSQRT_ROLE_Q_B, NSQRT_ROLE_K_B, NSQRT_ROLE_V_B, NSQRT_ROLE_O_B, NSQRT_ROLE_GATE_B, NSQRT_ROLE_UP_B, NSQRT_ROLE_DOWN_B,
    NSQRT_ROLE_QKV_B,
    NSQRT_ROLE_COUNT
};
#define NSQRT_ROLE_FIRST_LAYER NSQRT_ROLE_ATTN_NORM

/* How the converter's policy treats a role. */
typedef enum {
    NSQRT_KIND_EMBED, NSQRT_KIND_POS, NSQRT_KIND_NORM, NSQRT_KIND_BIAS, NSQRT_KIND_MATRIX, NSQRT_KIND_HEAD
} nsqrt_role_kind;

typedef struct nsqrt_arch nsqrt_arch;

/* The hyperparameters, as the file's metadata states them (spec 5.2, 5.4). */
typedef struct {
    const nsqrt_arch *arch;
    nsqrt_act act;
    int layernorm, learned_pos, tied_head, attention_bias, mlp_bias;
    int conv1d_transposed; /* Conv1D weights stored [out][in] */
    uint32_t hidden, n_layers, n_heads, n_kv_heads, head_dim, inter, vocab, ctx;
    uint32_t sliding_window, window_pattern; /* window on layer L unless (L + 1) % pattern == 0 */
    float norm_eps;
    double rope_theta, rope_factor, rope_low, rope_high, rope_orig_ctx, rope_attn_factor;
    nsqrt_rope rope;
    double attn_scale;    /* scores are q.k times this */
    double attn_softcap;  /* > 0: scores become cap * tanh(score / cap) */
    double logit_softcap; /* the same for the logits */
    double embed_scale;   /* the token embedding is multiplied by it */
    double norm_offset;   /* RMSNorm multiplies by (offset + weight) */
    int64_t bos_id, eos_id;
    int add_bos;
} nsqrt_config;

/* A tensor name: the model's own in full, a layer's after "PREFIX<L>.". */
typedef struct {
    const char *name;
    int role;
} nsqrt_arch_tensor;

/* A config.json number the family has, stored under a metadata key (as
 * 1/sqrt(value) when inv_sqrt): def when absent, not stored when null. */
typedef struct {
    const char *hf_key, *meta_key;
    double def, lo, hi;
    int inv_sqrt;
} nsqrt_arch_key;

enum {
    NSQRT_ARCH_UNGATED = 1u << 0,       /* MLP is down(act(up(x))) */
    NSQRT_ARCH_CONV1D = 1u << 1,        /* checkpoints store the matrices [in][out] */
    NSQRT_ARCH_LAYERNORM = 1u << 2,     /* LayerNorm with bias; else RMSNorm */
    NSQRT_ARCH_LEARNED_POS = 1u << 3,   /* learned positions; else RoPE */
    NSQRT_ARCH_HF_ATTN_BIAS = 1u << 4,  /* config.json's attention_bias applies */
    NSQRT_ARCH_HF_MLP_BIAS = 1u << 5,   /* config.json's mlp_bias applies */
    NSQRT_ARCH_EMBED_SQRT_H = 1u << 6,  /* embeddings scaled by sqrt(hidden_size) */
    NSQRT_ARCH_NORM_PLUS_ONE = 1u << 7, /* RMSNorm weights are stored minus 1 */
    NSQRT_ARCH_WINDOW_ON = 1u << 8,     /* the window applies unless use_sliding_window is false */
    NSQRT_ARCH_WINDOW_LAYERS = 1u << 9, /* config.json's layer_types choose the windowed layers */
    NSQRT_ARCH_MAX_WINDOW_LAYERS = 1u << 10, /* config.json's max_window_layers: windows only from that layer on */
};

struct nsqrt_arch {
    const char *name;     /* general.architecture */
    const char *hf_class; /* config.json "architectures"[0] */
    const char *prefix;   /* of the layer tensors' names */
    const char *opt_prefix; /* may precede every name but lm_head.weight (NULL: none) */
    const nsqrt_arch_tensor *globals, *layer;
    size_t n_globals, n_layer;
    unsigned flags;
    /* config.json defaults, for absent keys */
    const char *act_key, *act;
    double eps;
    uint64_t ctx, window;
    int attention_bias, mlp_bias, tied;
    const nsqrt_arch_key *keys; /* the family's other numbers, NULL-terminated */
};

/* The registry: every family the tools run, NULL-terminated. */
extern const nsqrt_arch *const nsqrt_arch_registry[];
const nsqrt_arch *nsqrt_arch_by_name(const char *name, size_t len);
const nsqrt_arch *nsqrt_arch_by_hf_class(const char *hf_class);
/* "llama, mistral, ..." or, with hf, "LlamaForCausalLM, ...", into buf (n
 * bytes, n >= 1; cut short if it does not fit), for messages. */
const char *nsqrt_arch_list(int hf, char *buf, size_t n);

/* name's (layer, role) under c: L is UINT32_MAX for the model's own
 * tensors. -1 when the name is not one of the architecture's. */
int nsqrt_arch_tensor_role(const nsqrt_config *c, const char *name, uint32_t *L, int *role);
/* The name of role in layer L (UINT32_MAX: a global), with the optional
 * prefix when with_opt; -1 if the architecture has no such role. */
int nsqrt_arch_tensor_name(const nsqrt_config *c, uint32_t L, int role, int with_opt, char *buf, size_t n);
/* Whether a checkpoint of this config has the role (biases by the config's
 * flags, the head unless tied, ...). */
int nsqrt_arch_has_role(const nsqrt_config *c, int role);
/* The role's shape [out][in] for matrices (returns 2), [out] for vectors (1). */
int nsqrt_arch_role_shape(const nsqrt_config *c, int role, uint64_t *out, uint64_t *in);
/* The role's matrix is stored [in][out] in this file. */
int nsqrt_arch_role_in_major(const nsqrt_config *c, int role);
nsqrt_role_kind nsqrt_arch_role_kind(int role);
const char *nsqrt_arch_role_name(int role);
/* Layer L attends within the sliding window. */
int nsqrt_arch_layer_windowed(const nsqrt_config *c, uint32_t L);

/* ---- the thread pool ----
 * A fixed set of worker threads that run the tasks of one job at a time; the
 * calling thread works too. Which thread runs a task never changes its
 * result: tasks write disjoint outputs. */
typedef struct nsqrt_pool nsqrt_pool;
typedef void (*nsqrt_pool_fn)(void *ctx, uint32_t task);
/* thread: which of the pool's threads runs the task, 0 (the caller) to
 * its thread count - 1; one thread runs one task at a time, so it can index
 * per-thread scratch. */
typedef void (*nsqrt_pool_fn_at)(void *ctx, uint32_t task, uint32_t thread);

/* n_threads in all, the caller included; NULL when out of resources. */
nsqrt_pool *nsqrt_pool_create(uint32_t n_threads);
/* Runs fn(ctx, 0..n_tasks-1) and returns when every task has finished. */
void nsqrt_pool_run(nsqrt_pool *p, nsqrt_pool_fn fn, void *ctx, uint32_t n_tasks);
void nsqrt_pool_run_at(nsqrt_pool *p, nsqrt_pool_fn_at fn, void *ctx, uint32_t n_tasks);
void nsqrt_pool_free(nsqrt_pool *p);

/* ---- a model ----
 * Opened from a .nsq file and checked (spec 5.4) before any weight is used;
 * blocks resident at once or streamed under a memory budget. Opaque. */
typedef struct nsqrt_model nsqrt_model;

typedef struct {
    unsigned open_flags;  /* NSQ_OPEN_*; a budget implies NSQ_OPEN_PREAD */
    int max_refine;       /* refinement levels per block, -1: all there are */
    uint64_t max_memory;  /* bytes of resident weights, 0: no limit (the whole file) */
    int drop_cache;       /* streaming: drop each block's file pages after reading it (cold reads) */
    int routed;           /* NSQRT_ROUTED: load only the embedding and output blocks, from their base;
                             nsqrt_route_apply() picks the rest. NSQRT_ROUTED_IF_ROUTER: so when the file
                             has a router section and there is a budget */
} nsqrt_opts;
enum { NSQRT_UNROUTED, NSQRT_ROUTED, NSQRT_ROUTED_IF_ROUTER };

/* Opens path, checks it as a model and reads the config into a new *m.
 * Without a budget every block is loaded now (checksums verified); with one,
 * the embedding and output blocks are, and layer blocks stream in as
 * nsqrt_forward() needs them. -1 with a message naming path in err. */
int nsqrt_open(const char *path, const nsqrt_opts *o, nsqrt_model **m, char *err, size_t errlen);
void nsqrt_close(nsqrt_model *m); /* NULL: nothing */
const nsqrt_config *nsqrt_model_config(const nsqrt_model *m);
const nsq_file *nsqrt_model_file(const nsqrt_model *m);
/* The file's tokenizer, checked against the embedding; NULL when it has none. */
const nsq_tokenizer *nsqrt_model_tokenizer(const nsqrt_model *m);
/* The message of the last failed nsqrt_forward(). */
const char *nsqrt_error(const nsqrt_model *m);

/* The model-level check (spec 5.4) alone, as nsqrt_open runs it: reads the
 * config from f's metadata and checks its values, every tensor's name, block
 * and shape, and that every id the tokenizer can produce has an embedding row.
 * With tok, the loaded tokenizer (NULL when the file has none) is returned. */
int nsqrt_check_file(const nsq_file *f, nsqrt_config *c, nsq_tokenizer **tok, char *err, size_t errlen);
/* Every vector (norm, bias) of every block decodes to finite values. */
int nsqrt_check_data(const nsq_file *f, char *err, size_t errlen);

/* What the weights need and what was done with them. */
typedef struct {
    uint64_t budget, pinned, largest_block, all_blocks, all_refinements, minimum;
    uint64_t resident_peak, loads, bytes_read, refine_levels_loaded, refine_levels_total;
    uint64_t reads_per_token; /* file bytes the streaming policy reads per token, steady state */
    uint64_t token_bytes;     /* weight bytes one generated token reads from memory */
    int streaming, prefetch;
    double read_s; /* time spent reading, verifying and indexing blocks */
    double predicted_damage; /* the depths chosen under the budget by the file's predicted damages
                                (router.depth_damage): their predicted mean KL divergence from the
                                file at full depth; -1 when not chosen so */
} nsqrt_usage;
void nsqrt_get_usage(const nsqrt_model *m, nsqrt_usage *u);
/* Refinement levels chosen for block b under the budget. */
uint32_t nsqrt_block_refine(const nsqrt_model *m, uint32_t b);
/* Refinement levels of block b's FULL choice: all it has, up to max_refine. */
uint32_t nsqrt_block_full(const nsqrt_model *m, uint32_t b);

/* Block choices (spec section 11.3). */
enum { NSQRT_ROUTE_SKIP, NSQRT_ROUTE_BASE, NSQRT_ROUTE_FULL };
/* Routed models: loads each block as choice[b] says (FULL: all refinement
 * levels, up to max_refine) and unloads the rest. Fails when the choices
 * exceed the budget or skip an embedding or output block. */
int nsqrt_route_apply(nsqrt_model *m, const uint8_t *choice, char *err, size_t errlen);
/* The model was opened for routing (nsqrt_opts.routed, resolved). */
int nsqrt_route_active(const nsqrt_model *m);

/* ---- running it ----
 * A sequence's state: the KV cache and scratch buffers for up to max_batch
 * positions at a time, and the threads that run the matrix products. Opaque. */
typedef struct nsqrt_state nsqrt_state;

/* NULL when out of memory. */
nsqrt_state *nsqrt_state_new(const nsqrt_model *m, uint32_t max_batch, uint32_t n_threads);
void nsqrt_state_free(nsqrt_state *s); /* NULL: nothing */
/* Bytes of the KV cache and of the scratch buffers of a state for max_batch. */
void nsqrt_state_bytes(const nsqrt_model *m, uint32_t max_batch, uint64_t *kv, uint64_t *scratch);
/* Quantized products with f32 activations instead of int8 (slower; the
 * model's own arithmetic, for statistics). */
void nsqrt_state_set_exact(nsqrt_state *s, int exact);
/* Called with the input rows of every layer matrix product, before it runs. */
typedef void (*nsqrt_observer)(void *ctx, uint32_t layer, int which, const float *x, uint32_t n_tok, uint32_t in);
enum { NSQRT_LIN_Q, NSQRT_LIN_K, NSQRT_LIN_V, NSQRT_LIN_O, NSQRT_LIN_GATE, NSQRT_LIN_UP, NSQRT_LIN_DOWN }; /* `which` */
void nsqrt_state_set_observer(nsqrt_state *s, nsqrt_observer fn, void *ctx); /* fn NULL: off */

/* Runs tokens[0..n) at positions pos0.. and writes logits: for every position
 * when all_logits ([n][vocab]), else for the last one only ([vocab]).
 * -1 when a streamed block cannot be read (nsqrt_error() says why). */
int nsqrt_forward(const nsqrt_model *m, nsqrt_state *s, const int32_t *tokens, uint32_t n, uint32_t pos0,
                  float *logits, int all_logits);

/* nsqrt_forward() in parts, for callers that run a pass layer by layer over
 * several sequences: the embedding of tokens[0..n) at positions pos0.. into
 * the state's hidden rows, layers [L0, L1) on them (the KV cache of those
 * layers only, L1 <= n_layers; -1 as nsqrt_forward()), and the hidden rows
 * themselves, n of hidden floats each. n is at most the state's max_batch. */
void nsqrt_forward_embed(const nsqrt_model *m, nsqrt_state *s, const int32_t *tokens, uint32_t n, uint32_t pos0);
int nsqrt_forward_layers(const nsqrt_model *m, nsqrt_state *s, uint32_t L0, uint32_t L1, uint32_t n, uint32_t pos0);
void nsqrt_state_get_hidden(const nsqrt_model *m, const nsqrt_state *s, uint32_t n, float *x);
void nsqrt_state_set_hidden(const nsqrt_model *m, nsqrt_state *s, uint32_t n, const float *x);

/* ---- routing ----
 * Choosing, per block, SKIP, BASE or FULL (spec section 11): what each choice
 * costs in resident bytes, what it is predicted to cost in output quality
 * (the file's router, or its static policy), and the choice of the least
 * damage that fits a memory budget. */
/* Metadata key of the static policy: mean damage per block and choice. */
#define NSQRT_ROUTE_STATIC_KEY "router.static_damage"
/* Metadata key of the predicted damage of each block at each depth (LATTICE refinement levels). */
#define NSQRT_DEPTH_DAMAGE_KEY "router.depth_damage"
/* Prompt tokens the router looks at when the file does not say. */
#define NSQRT_ROUTE_PROMPT_TOKENS 32

typedef struct {
    uint32_t n_blocks;
    uint8_t *mask;           /* [block] allowed choices, bit 1 << c */
    uint64_t (*cost)[3];     /* [block][c] resident bytes */
    double (*fixed)[3];      /* [block][c] the static policy, NULL when the file has none */
    int has_router;
    nsq_router router;
    uint32_t prompt_tokens; /* leading tokens the router looks at (provenance.router.prompt_tokens) */
} nsqrt_route_table;

/* Costs and masks for m's file: the router's masks when it has one, else
 * every layer block may be skipped and every block with refinements run FULL. */
int nsqrt_route_init(const nsqrt_model *m, nsqrt_route_table *t, char *err, size_t errlen);
void nsqrt_route_free(nsqrt_route_table *t);

/* Every block at its most precise allowed choice: FULL, else BASE. */
void nsqrt_route_all_full(const nsqrt_route_table *t, uint8_t *choice);
/* Whether route_measure measures choice c under mask: SKIP when allowed,
 * BASE when FULL is allowed too (otherwise BASE is the reference). */
static inline int nsqrt_route_measured(uint8_t mask, int c)
{
    return c != NSQRT_ROUTE_FULL && (mask >> c & 1) && (c == NSQRT_ROUTE_SKIP || (mask >> NSQRT_ROUTE_FULL & 1));
}

/* Feature 1 (spec 11.2): the mean of the prompt's token embeddings, decoded
 * from the embedding block's base. x has hidden elements. */
void nsqrt_route_features(const nsqrt_model *m, const int32_t *ids, uint32_t n, float *x);
/* The router's predicted damage for the prompt, made monotone: skipping never
 * costs less than the base, the base never less than FULL, nothing below 0. */
int nsqrt_route_predict(const nsqrt_route_table *t, const nsqrt_model *m, const int32_t *ids, uint32_t n,
                        double (*dmg)[3]);

/* The choices (one per block, within mask) of least total damage whose
 * resident bytes fit budget (0: no limit). Ties go to the more precise
 * choice. -1 when even the cheapest choices do not fit. */
int nsqrt_route_select(const nsqrt_route_table *t, const uint8_t *mask, const double (*dmg)[3], uint64_t budget,
                       uint8_t *choice);
/* The multiple-choice knapsack under both: item b (of n) takes one choice c
 * of first[b + 1] - first[b] (at most 256), of bytes cost[first[b] + c] and
 * damage dmg[first[b] + c] (INFINITY: not allowed), so that the bytes fit
 * budget and the damages' sum is least; among equal damages the higher c.
 * -1 when nothing fits. */
int nsqrt_knapsack(uint32_t n, const uint32_t *first, const uint64_t *cost, const double *dmg, uint64_t budget,
                   uint8_t *choice);
/* The file's router.depth_damage: block b's predicted damage at depth d
 * (0..its refinement count) at dmg[first[b] + d]. -1 when it has none that
 * fits its blocks. The caller frees both. */
int nsqrt_depth_damage(const nsq_file *f, double **dmg, uint32_t **first);
/* Bytes of the cheapest choices within mask: the smallest budget that works. */
uint64_t nsqrt_route_minimum(const nsqrt_route_table *t, const uint8_t *mask);

/* Measured damage: with every block resident at FULL, the mean KL divergence
 * per scored position (positions n_prompt-1..n-2, which predict the tokens
 * after the prompt) of each block's SKIP and BASE from the all-FULL run, on tokens
 * ids[0..n). dmg[b][FULL] = 0; choices outside the mask are left at 0.
 * Leaves every block at FULL. -1 when the forward pass fails. */
int nsqrt_route_measure(nsqrt_model *m, nsqrt_state *s, const nsqrt_route_table *t, const int32_t *ids, uint32_t n, uint32_t n_prompt,
                        double (*dmg)[3]);

/* ---- what nsq-run and nsq-perplexity ask for ---- */
typedef enum {
    NSQRT_ROUTE_OFF,       /* no routing: every block, streamed under a budget */
    NSQRT_ROUTE_ROUTER,    /* the router's prediction for this prompt */
    NSQRT_ROUTE_STATIC,    /* the file's static policy */
    NSQRT_ROUTE_TOP,       /* run k blocks, skip the rest (router, else static, picks which) */
    NSQRT_ROUTE_SKIP_ONLY, /* static policy, each block skipped or FULL */
    NSQRT_ROUTE_RANDOM,    /* random damages: a baseline */
    NSQRT_ROUTE_ORACLE     /* damages measured on the text itself: a ceiling */
} nsqrt_route_mode;

typedef struct {
    nsqrt_route_mode mode;
    uint32_t k;         /* NSQRT_ROUTE_TOP */
    uint64_t seed;      /* NSQRT_ROUTE_RANDOM */
    uint8_t *forced;    /* --skip-blocks: [block] 1 = skip; NULL: none */
    int print;          /* --route-print */
} nsqrt_route_opts;


/* The choices for a prompt, ids[0..n_prompt) (the router reads at most
 * t->prompt_tokens of it; NSQRT_ROUTE_ORACLE measures on all of ids[0..n) and
 * needs s). dmg receives the
 * damages the choice was made on; *predicted their sum over the choices. */
int nsqrt_route_choose(nsqrt_model *m, nsqrt_state *s, const nsqrt_route_table *t, const nsqrt_route_opts *o, uint64_t budget,
                       const int32_t *ids, uint32_t n, uint32_t n_prompt, uint8_t *choice, double (*dmg)[3],
                       double *predicted, char *err, size_t errlen);
/* One line per block on f: its choice, bytes and predicted damage. */
void nsqrt_route_print(FILE *f, const nsqrt_route_table *t, const uint8_t *choice, const double (*dmg)[3]);

/* ---- sampling ----
 * The next token from logits: greedy, or temperature with optional top-k and
 * top-p, from a seeded generator (reproducible). */
typedef struct {
    float temperature; /* 0: greedy */
    uint32_t top_k;    /* 0: off */
    float top_p;       /* 1: off */
    uint64_t rng;
    uint32_t vocab;
    uint32_t *order;   /* scratch: candidate ids */
    float *probs;      /* scratch */
} nsqrt_sampler;

int nsqrt_sampler_init(nsqrt_sampler *s, uint32_t vocab, float temperature, uint32_t top_k, float top_p, uint64_t seed);
void nsqrt_sampler_free(nsqrt_sampler *s);
int32_t nsqrt_sampler_next(nsqrt_sampler *s, const float *logits);
int32_t nsqrt_argmax(const float *v, uint32_t n);

/* ---- log-probabilities ----
 * Computed in double: sums run over 100k+ positions. */
/* The log-softmax of logits[0..n) into lp. */
void nsqrt_logprob_row(const float *logits, uint32_t n, double *lp);
/* KL(p || q) of two rows of n log-probabilities. */
double nsqrt_logprob_kl(const double *lp, const double *lq, uint32_t n);
/* The mean over n positions of KL(p || q), from rows of V logits each; a
 * position's divergence that rounding leaves below 0 counts as 0. scratch
 * holds 2 * V doubles. */
double nsqrt_logprob_mean_kl(const float *p, const float *q, uint64_t n, uint32_t V, double *scratch);

/* ---- machine probes, for nsq-run --plan and bench/ ---- */
/* Memory read bandwidth in GB/s: `threads` threads summing a buffer of
 * `bytes` (best of `reps`), or a negative value when out of memory. */
double nsqrt_probe_mem_read(uint32_t threads, uint64_t bytes, int reps);
/* Read bandwidth of path's bytes [off, off+len) in GB/s; with cold, the
 * file's pages are dropped from the page cache first. Negative on error. */
double nsqrt_probe_file_read(const char *path, uint64_t off, uint64_t len, int cold);
/* The kernels this CPU runs (NSQ_KERNELS may lower them), in words. */
const char *nsqrt_probe_kernels(void);

#endif
