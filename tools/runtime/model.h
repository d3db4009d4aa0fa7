/* model.h - the CPU runtime's model: hyperparameters from the file's
 * metadata, weights decoded to f32 block by block, and one forward pass for
 * every supported architecture (forward.c). */
#ifndef NSQ_MODEL_H
#define NSQ_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "nsq.h"

typedef enum { ARCH_LLAMA, ARCH_MISTRAL, ARCH_QWEN2, ARCH_GPT2 } model_arch;
typedef enum { ACT_SILU, ACT_GELU_TANH, ACT_GELU, ACT_RELU } model_act;
typedef enum { ROPE_NONE, ROPE_LINEAR, ROPE_DYNAMIC, ROPE_LLAMA3 } rope_kind;

typedef struct {
    model_arch arch;
    model_act act;
    int layernorm, learned_pos, tied_head, gated_mlp;
    int conv1d_transposed; /* GPT-2 Conv1D weights stored [out][in] */
    uint32_t hidden, n_layers, n_heads, n_kv_heads, head_dim, inter, vocab, ctx, sliding_window;
    float norm_eps;
    double rope_theta, rope_factor, rope_low, rope_high, rope_orig_ctx;
    rope_kind rope;
    int64_t bos_id, eos_id;
    int add_bos;
} model_config;

/* y[out] = W x + b with W stored transposed, wt[in][out], so the inner loop
 * runs along out for every input column. */
typedef struct {
    float *wt, *b;
    uint32_t in, out;
} linear;

typedef struct {
    float *w, *b; /* b only for LayerNorm */
} norm;

typedef struct {
    norm attn_norm, mlp_norm;
    linear q, k, v, o, gate, up, down; /* GPT-2: no gate; up = c_fc, down = c_proj */
} layer;

typedef struct {
    model_config c;
    float *embed;     /* [vocab][hidden] */
    float *pos_embed; /* [ctx][hidden], learned positions only */
    layer *layers;
    norm final_norm;
    linear head;
    float *rope_inv_freq; /* [head_dim / 2] */
} model;

/* Opens path, reads the config and decodes every block (checksums verified),
 * applying up to max_refine refinement levels (-1: all there are). */
int model_load(const char *path, unsigned open_flags, int max_refine, model *m, nsq_file **file, char *err,
               size_t errlen);
void model_free(model *m);

/* Called with the input rows of every layer matrix product, before it runs. */
typedef void (*matmul_observer)(void *ctx, uint32_t layer, int which, const float *x, uint32_t n_tok, uint32_t in);
enum { LIN_Q, LIN_K, LIN_V, LIN_O, LIN_GATE, LIN_UP, LIN_DOWN }; /* `which` */

/* Per-sequence state: the KV cache and scratch buffers for up to max_batch
 * positions at a time. */
typedef struct {
    uint32_t max_batch, n_threads;
    matmul_observer observe; /* NULL = off */
    void *observe_ctx;
    float *k_cache, *v_cache; /* [layer][ctx][kv_dim] */
    float *x, *h, *q, *k, *v, *att, *o, *f1, *f2, *scores;
} model_state;

int state_init(model_state *s, const model *m, uint32_t max_batch, uint32_t n_threads);
void state_free(model_state *s);

/* Runs tokens[0..n) at positions pos0.. and writes logits: for every position
 * when all_logits ([n][vocab]), else for the last one only ([vocab]). */
void forward(const model *m, model_state *s, const int32_t *tokens, uint32_t n, uint32_t pos0, float *logits,
             int all_logits);

#endif
