/* arch.h - the architecture registry: one entry per model family, naming its
 * Hugging Face class, the config facts the converter reads, its tensors (names,
 * which ones a config needs, shapes) and the options of the forward pass. The
 * converter, calibration, the router fit and the runtime all read it; a file
 * stores only general.architecture and the hyperparameters, as data. */
#ifndef NSQ_ARCH_H
#define NSQ_ARCH_H

#include <stddef.h>
#include <stdint.h>

typedef enum { ACT_SILU, ACT_GELU_TANH, ACT_GELU, ACT_RELU } model_act;
typedef enum { ROPE_NONE, ROPE_LINEAR, ROPE_DYNAMIC, ROPE_LLAMA3, ROPE_LONGROPE } rope_kind;

/* What a tensor is for. The first five are the model's own, the rest are
 * filled per layer. */
enum {
    ROLE_EMBED, ROLE_POS, ROLE_FINAL_NORM, ROLE_FINAL_NORM_B, ROLE_HEAD,
    ROLE_ATTN_NORM, ROLE_ATTN_NORM_B, ROLE_MLP_NORM, ROLE_MLP_NORM_B,
    ROLE_POST_ATTN_NORM, ROLE_POST_MLP_NORM, /* applied to a sublayer's output, before the residual add */
    ROLE_Q_NORM, ROLE_K_NORM,                /* per head, before RoPE */
    ROLE_Q, ROLE_K, ROLE_V, ROLE_O, ROLE_GATE, ROLE_UP, ROLE_DOWN,
    ROLE_QKV,     /* q, k and v stacked along the output dimension */
    ROLE_GATE_UP, /* gate then up, stacked along the output dimension */
    ROLE_Q_B, ROLE_K_B, ROLE_V_B, ROLE_O_B, ROLE_GATE_B, ROLE_UP_B, ROLE_DOWN_B, ROLE_QKV_B,
    ROLE_COUNT
};
#define ROLE_FIRST_LAYER ROLE_ATTN_NORM

/* How the converter's policy treats a role. */
typedef enum { KIND_EMBED, KIND_POS, KIND_NORM, KIND_BIAS, KIND_MATRIX, KIND_HEAD } role_kind;

typedef struct arch_info arch_info;

/* The hyperparameters, as the file's metadata states them (spec 5.2, 5.4). */
typedef struct {
    const arch_info *arch;
    model_act act;
    int layernorm, learned_pos, tied_head, attention_bias, mlp_bias;
    int conv1d_transposed; /* Conv1D weights stored [out][in] */
    uint32_t hidden, n_layers, n_heads, n_kv_heads, head_dim, inter, vocab, ctx;
    uint32_t sliding_window, window_pattern; /* window on layer L unless (L + 1) % pattern == 0 */
    float norm_eps;
    double rope_theta, rope_factor, rope_low, rope_high, rope_orig_ctx, rope_attn_factor;
    rope_kind rope;
    double attn_scale;    /* scores are q.k times this */
    double attn_softcap;  /* > 0: scores become cap * tanh(score / cap) */
    double logit_softcap; /* the same for the logits */
    double embed_scale;   /* the token embedding is multiplied by it */
    double norm_offset;   /* RMSNorm multiplies by (offset + weight) */
    int64_t bos_id, eos_id;
    int add_bos;
} model_config;

/* A tensor name: the model's own in full, a layer's after "PREFIX<L>.". */
typedef struct {
    const char *name;
    int role;
} arch_tensor;

/* A config.json number the family has, stored under a metadata key (as
 * 1/sqrt(value) when inv_sqrt): def when absent, not stored when null. */
typedef struct {
    const char *hf_key, *meta_key;
    double def, lo, hi;
    int inv_sqrt;
} arch_key;

enum {
    ARCH_UNGATED = 1u << 0,       /* MLP is down(act(up(x))) */
    ARCH_CONV1D = 1u << 1,        /* checkpoints store the matrices [in][out] */
    ARCH_LAYERNORM = 1u << 2,     /* LayerNorm with bias; else RMSNorm */
    ARCH_LEARNED_POS = 1u << 3,   /* learned positions; else RoPE */
    ARCH_HF_ATTN_BIAS = 1u << 4,  /* config.json's attention_bias applies */
    ARCH_HF_MLP_BIAS = 1u << 5,   /* config.json's mlp_bias applies */
    ARCH_EMBED_SQRT_H = 1u << 6,  /* embeddings scaled by sqrt(hidden_size) */
    ARCH_NORM_PLUS_ONE = 1u << 7, /* RMSNorm weights are stored minus 1 */
    ARCH_WINDOW_ON = 1u << 8,     /* the window applies unless use_sliding_window is false */
    ARCH_WINDOW_LAYERS = 1u << 9, /* config.json's layer_types choose the windowed layers */
    ARCH_MAX_WINDOW_LAYERS = 1u << 10, /* config.json's max_window_layers: windows only from that layer on */
};

struct arch_info {
    const char *name;     /* general.architecture */
    const char *hf_class; /* config.json "architectures"[0] */
    const char *prefix;   /* of the layer tensors' names */
    const char *opt_prefix; /* may precede every name but lm_head.weight (NULL: none) */
    const arch_tensor *globals, *layer;
    size_t n_globals, n_layer;
    unsigned flags;
    /* config.json defaults, for absent keys */
    const char *act_key, *act;
    double eps;
    uint64_t ctx, window;
    int attention_bias, mlp_bias, tied;
    const arch_key *keys; /* the family's other numbers, NULL-terminated */
};

/* The registry: every family the tools run, NULL-terminated. */
extern const arch_info *const arch_registry[];
const arch_info *arch_by_name(const char *name, size_t len);
const arch_info *arch_by_hf_class(const char *hf_class);
/* "llama, mistral, ..." or "LlamaForCausalLM, ...", for messages. */
const char *arch_list(int hf);

/* name's (layer, role) under c: L is UINT32_MAX for the model's own
 * tensors. -1 when the name is not one of the architecture's. */
int arch_tensor_role(const model_config *c, const char *name, uint32_t *L, int *role);
/* The name of role in layer L (UINT32_MAX: a global), with the optional
 * prefix when with_opt; -1 if the architecture has no such role. */
int arch_tensor_name(const model_config *c, uint32_t L, int role, int with_opt, char *buf, size_t n);
/* Whether a checkpoint of this config has the role (biases by the config's
 * flags, the head unless tied, ...). */
int arch_has_role(const model_config *c, int role);
/* The role's shape [out][in] for matrices (returns 2), [out] for vectors (1). */
int arch_role_shape(const model_config *c, int role, uint64_t *out, uint64_t *in);
/* The role's matrix is stored [in][out] in this file. */
int arch_role_in_major(const model_config *c, int role);
role_kind arch_role_kind(int role);
const char *arch_role_name(int role);
/* Layer L attends within the sliding window. */
int arch_layer_windowed(const model_config *c, uint32_t L);

#endif
