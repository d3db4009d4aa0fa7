/* model.h - the runtime's insides (nsqrt.h is its interface): a model's
 * weights kept packed as the file stores them (kernels.h), placed by role in
 * per-layer slots, blocks resident at once or streamed (residency.c), and the
 * forward pass of every family of the registry (forward.c). */
#ifndef NSQ_MODEL_H
#define NSQ_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "kernels.h"
#include "nsqrt.h"

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

struct nsqrt_model {
    nsqrt_config c;
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
    int rotated;          /* some matrix takes its input rotated (kern_rotates) */
};

struct nsqrt_state {
    uint32_t max_batch, n_threads;
    float *k_cache, *v_cache; /* [layer][ctx][kv_dim] */
    float *x, *h, *q, *k, *v, *att, *o, *f1, *f2, *scores;
    act8 a;                   /* the input rounded to int8, for input_gen a_gen */
    uint64_t input_gen, a_gen;
    /* rotated models: the input rotated, for input_gen rot_gen, with rot_signs
     * and rot_block, and rounded to int8 for ar_gen */
    float *xr;
    act8 ar;
    uint8_t *rot_signs;
    uint32_t rot_block;
    uint64_t rot_gen, ar_gen;
    nsqrt_pool *pool;
    kern_level kern;
    int exact;              /* quantized products with f32 activations (kern_rows_f32) */
    nsqrt_observer observe; /* NULL = off */
    void *observe_ctx;
};

int model_check_vector(const char *name, const float *v, uint64_t n, char *err, size_t errlen);

/* nsqrt_forward() in its three parts, for callers that rerun part of a
 * pass: the embedding of tokens into the residual stream s->x, layers
 * [L0, L1) on it (-1 as nsqrt_forward()), and the logits of s->x. */
void forward_embed(const nsqrt_model *m, nsqrt_state *s, const int32_t *tokens, uint32_t n, uint32_t pos0);
int forward_layers(const nsqrt_model *m, nsqrt_state *s, uint32_t L0, uint32_t L1, uint32_t n, uint32_t pos0);
void forward_logits(const nsqrt_model *m, nsqrt_state *s, uint32_t n, float *logits, int all_logits);

#endif
