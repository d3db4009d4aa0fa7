/* arch.c - the architecture registry (nsqrt.h). Adding a family is an entry
 * here: its tensor names, its config facts, and flags for what its forward
 * pass does differently. */
#include <stdio.h>
#include <string.h>

#include "nsqrt.h"

#define N(a) (sizeof a / sizeof a[0])

/* ---- the families ---- */
static const nsqrt_arch_tensor hf_globals[] = {
    {"model.embed_tokens.weight", NSQRT_ROLE_EMBED}, {"model.norm.weight", NSQRT_ROLE_FINAL_NORM}, {"lm_head.weight", NSQRT_ROLE_HEAD}};

/* Each table lists a layer's tensors in the order the converter writes them. */
#define QKVO_BIASED                                                                                                   \
    {"self_attn.q_proj.weight", NSQRT_ROLE_Q}, {"self_attn.q_proj.bias", NSQRT_ROLE_Q_B}, {"self_attn.k_proj.weight", NSQRT_ROLE_K},     \
        {"self_attn.k_proj.bias", NSQRT_ROLE_K_B}, {"self_attn.v_proj.weight", NSQRT_ROLE_V}, {"self_attn.v_proj.bias", NSQRT_ROLE_V_B}, \
        {"self_attn.o_proj.weight", NSQRT_ROLE_O}, {"self_attn.o_proj.bias", NSQRT_ROLE_O_B}
#define MLP_PROJ {"mlp.gate_proj.weight", NSQRT_ROLE_GATE}, {"mlp.up_proj.weight", NSQRT_ROLE_UP}, {"mlp.down_proj.weight", NSQRT_ROLE_DOWN}

static const nsqrt_arch_tensor llama_layer[] = {
    {"input_layernorm.weight", NSQRT_ROLE_ATTN_NORM}, QKVO_BIASED, {"post_attention_layernorm.weight", NSQRT_ROLE_MLP_NORM},
    MLP_PROJ, {"mlp.gate_proj.bias", NSQRT_ROLE_GATE_B}, {"mlp.up_proj.bias", NSQRT_ROLE_UP_B}, {"mlp.down_proj.bias", NSQRT_ROLE_DOWN_B}};
/* Qwen2: q/k/v biases always, none on o or the MLP */
static const nsqrt_arch_tensor qwen2_layer[] = {
    {"input_layernorm.weight", NSQRT_ROLE_ATTN_NORM}, {"self_attn.q_proj.weight", NSQRT_ROLE_Q}, {"self_attn.q_proj.bias", NSQRT_ROLE_Q_B},
    {"self_attn.k_proj.weight", NSQRT_ROLE_K},         {"self_attn.k_proj.bias", NSQRT_ROLE_K_B}, {"self_attn.v_proj.weight", NSQRT_ROLE_V},
    {"self_attn.v_proj.bias", NSQRT_ROLE_V_B},         {"self_attn.o_proj.weight", NSQRT_ROLE_O},
    {"post_attention_layernorm.weight", NSQRT_ROLE_MLP_NORM}, MLP_PROJ};
static const nsqrt_arch_tensor qwen3_layer[] = {
    {"input_layernorm.weight", NSQRT_ROLE_ATTN_NORM}, QKVO_BIASED, {"self_attn.q_norm.weight", NSQRT_ROLE_Q_NORM},
    {"self_attn.k_norm.weight", NSQRT_ROLE_K_NORM}, {"post_attention_layernorm.weight", NSQRT_ROLE_MLP_NORM}, MLP_PROJ};
static const nsqrt_arch_tensor phi3_layer[] = {
    {"input_layernorm.weight", NSQRT_ROLE_ATTN_NORM}, {"self_attn.qkv_proj.weight", NSQRT_ROLE_QKV}, {"self_attn.o_proj.weight", NSQRT_ROLE_O},
    {"post_attention_layernorm.weight", NSQRT_ROLE_MLP_NORM}, {"mlp.gate_up_proj.weight", NSQRT_ROLE_GATE_UP},
    {"mlp.down_proj.weight", NSQRT_ROLE_DOWN}};
/* Gemma 2's post_attention_layernorm normalizes the attention's output */
static const nsqrt_arch_tensor gemma2_layer[] = {
    {"input_layernorm.weight", NSQRT_ROLE_ATTN_NORM}, QKVO_BIASED, {"post_attention_layernorm.weight", NSQRT_ROLE_POST_ATTN_NORM},
    {"pre_feedforward_layernorm.weight", NSQRT_ROLE_MLP_NORM}, MLP_PROJ,
    {"post_feedforward_layernorm.weight", NSQRT_ROLE_POST_MLP_NORM}};

static const nsqrt_arch_tensor gpt2_globals[] = {{"wte.weight", NSQRT_ROLE_EMBED},
                                           {"wpe.weight", NSQRT_ROLE_POS},
                                           {"ln_f.weight", NSQRT_ROLE_FINAL_NORM},
                                           {"ln_f.bias", NSQRT_ROLE_FINAL_NORM_B},
                                           {"lm_head.weight", NSQRT_ROLE_HEAD}};
static const nsqrt_arch_tensor gpt2_layer[] = {
    {"ln_1.weight", NSQRT_ROLE_ATTN_NORM},  {"ln_1.bias", NSQRT_ROLE_ATTN_NORM_B}, {"attn.c_attn.weight", NSQRT_ROLE_QKV},
    {"attn.c_attn.bias", NSQRT_ROLE_QKV_B}, {"attn.c_proj.weight", NSQRT_ROLE_O},   {"attn.c_proj.bias", NSQRT_ROLE_O_B},
    {"ln_2.weight", NSQRT_ROLE_MLP_NORM},   {"ln_2.bias", NSQRT_ROLE_MLP_NORM_B},  {"mlp.c_fc.weight", NSQRT_ROLE_UP},
    {"mlp.c_fc.bias", NSQRT_ROLE_UP_B},     {"mlp.c_proj.weight", NSQRT_ROLE_DOWN}, {"mlp.c_proj.bias", NSQRT_ROLE_DOWN_B}};

static const nsqrt_arch_key gemma2_keys[] = {
    {"attn_logit_softcapping", "model.attention.softcap", 50, 1e-6, 1e6, 0},
    {"final_logit_softcapping", "model.logit_softcap", 30, 1e-6, 1e6, 0},
    {"query_pre_attn_scalar", "model.attention.scale", 256, 1e-6, 1e12, 1},
    {NULL, NULL, 0, 0, 0, 0}};

#define LLAMA_LIKE(table) "model.layers.", NULL, hf_globals, table, N(hf_globals), N(table)

static const nsqrt_arch llama = {"llama", "LlamaForCausalLM", LLAMA_LIKE(llama_layer),
                                NSQRT_ARCH_HF_ATTN_BIAS | NSQRT_ARCH_HF_MLP_BIAS, "hidden_act", "silu", 1e-6, 2048, 0, 0, 0, 0, NULL};
static const nsqrt_arch mistral = {"mistral", "MistralForCausalLM", LLAMA_LIKE(llama_layer),
                                  NSQRT_ARCH_WINDOW_ON, "hidden_act", "silu", 1e-6, 131072, 4096, 0, 0, 0, NULL};
static const nsqrt_arch qwen2 = {"qwen2", "Qwen2ForCausalLM", LLAMA_LIKE(qwen2_layer),
                                NSQRT_ARCH_MAX_WINDOW_LAYERS, "hidden_act", "silu", 1e-6, 32768, 0, 1, 0, 0, NULL};
static const nsqrt_arch qwen3 = {"qwen3", "Qwen3ForCausalLM", LLAMA_LIKE(qwen3_layer),
                                NSQRT_ARCH_HF_ATTN_BIAS | NSQRT_ARCH_MAX_WINDOW_LAYERS, "hidden_act", "silu", 1e-6, 32768, 0, 0, 0,
                                0, NULL};
static const nsqrt_arch phi3 = {"phi3", "Phi3ForCausalLM", LLAMA_LIKE(phi3_layer),
                               NSQRT_ARCH_WINDOW_ON, "hidden_act", "silu", 1e-5, 4096, 0, 0, 0, 0, NULL};
static const nsqrt_arch gemma2 = {"gemma2", "Gemma2ForCausalLM", LLAMA_LIKE(gemma2_layer),
                                 NSQRT_ARCH_HF_ATTN_BIAS | NSQRT_ARCH_EMBED_SQRT_H | NSQRT_ARCH_NORM_PLUS_ONE | NSQRT_ARCH_WINDOW_ON |
                                     NSQRT_ARCH_WINDOW_LAYERS,
                                 "hidden_activation", "gelu_tanh", 1e-6, 8192, 4096, 0, 0, 1, gemma2_keys};
static const nsqrt_arch gpt2 = {"gpt2", "GPT2LMHeadModel", "h.", "transformer.", gpt2_globals, gpt2_layer,
                               N(gpt2_globals), N(gpt2_layer), NSQRT_ARCH_UNGATED | NSQRT_ARCH_CONV1D | NSQRT_ARCH_LAYERNORM |
                               NSQRT_ARCH_LEARNED_POS, "activation_function", "gelu_tanh", 1e-5, 1024, 0, 1, 1, 1, NULL};

const nsqrt_arch *const nsqrt_arch_registry[] = {&llama, &mistral, &qwen2, &qwen3, &phi3, &gemma2, &gpt2, NULL};

const nsqrt_arch *nsqrt_arch_by_name(const char *name, size_t len)
{
    for (const nsqrt_arch *const *a = nsqrt_arch_registry; *a; a++)
        if (strlen((*a)->name) == len && memcmp((*a)->name, name, len) == 0) return *a;
    return NULL;
}

const nsqrt_arch *nsqrt_arch_by_hf_class(const char *hf_class)
{
    for (const nsqrt_arch *const *a = nsqrt_arch_registry; *a; a++)
        if (strcmp((*a)->hf_class, hf_class) == 0) return *a;
    return NULL;
}

const char *nsqrt_arch_list(int hf)
{
    static char buf[2][256];
    char *b = buf[hf != 0];
    if (!b[0])
        for (const nsqrt_arch *const *a = nsqrt_arch_registry; *a; a++)
            snprintf(b + strlen(b), sizeof buf[0] - strlen(b), "%s%s", a == nsqrt_arch_registry ? "" : ", ",
                     hf ? (*a)->hf_class : (*a)->name);
    return b;
}

/* ---- names ---- */
static int lookup(const nsqrt_arch_tensor *t, size_t n, const char *s)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(s, t[i].name) == 0) return t[i].role;
    return -1;
}

/* A layer number as the converter writes it: decimal, no sign, no leading
 * zero, so that "00" and "0" cannot name the same layer twice. */
static const char *layer_number(const char *s, uint32_t n_layers, uint32_t *L)
{
    uint64_t v = 0;
    const char *p = s;
    for (; *p >= '0' && *p <= '9' && p - s < 10; p++) v = v * 10 + (uint64_t)(*p - '0');
    if (p == s || *p != '.' || (s[0] == '0' && p - s > 1) || v >= n_layers) return NULL;
    *L = (uint32_t)v;
    return p + 1;
}

int nsqrt_arch_tensor_role(const nsqrt_config *c, const char *name, uint32_t *L, int *role)
{
    const nsqrt_arch *a = c->arch;
    size_t np = strlen(a->prefix), no = a->opt_prefix ? strlen(a->opt_prefix) : 0;
    const char *rest;
    *L = UINT32_MAX;
    if (strcmp(name, "lm_head.weight") == 0) return (*role = lookup(a->globals, a->n_globals, name)) < 0 ? -1 : 0;
    if (no && strncmp(name, a->opt_prefix, no) == 0) name += no;
    if ((*role = lookup(a->globals, a->n_globals, name)) >= 0) return *role == NSQRT_ROLE_HEAD ? -1 : 0;
    if (strncmp(name, a->prefix, np) || !(rest = layer_number(name + np, c->n_layers, L))) return -1;
    return (*role = lookup(a->layer, a->n_layer, rest)) < 0 ? -1 : 0;
}

int nsqrt_arch_tensor_name(const nsqrt_config *c, uint32_t L, int role, int with_opt, char *buf, size_t n)
{
    const nsqrt_arch *a = c->arch;
    const nsqrt_arch_tensor *t = L == UINT32_MAX ? a->globals : a->layer;
    size_t count = L == UINT32_MAX ? a->n_globals : a->n_layer;
    const char *opt = with_opt && a->opt_prefix && role != NSQRT_ROLE_HEAD ? a->opt_prefix : "";
    for (size_t i = 0; i < count; i++)
        if (t[i].role == role) {
            if (L == UINT32_MAX) snprintf(buf, n, "%s%s", opt, t[i].name);
            else snprintf(buf, n, "%s%s%u.%s", opt, a->prefix, L, t[i].name);
            return 0;
        }
    return -1;
}

/* ---- which tensors, what shapes ---- */
static int listed(const nsqrt_arch *a, int role)
{
    const nsqrt_arch_tensor *t = role < NSQRT_ROLE_FIRST_LAYER ? a->globals : a->layer;
    size_t n = role < NSQRT_ROLE_FIRST_LAYER ? a->n_globals : a->n_layer;
    for (size_t i = 0; i < n; i++)
        if (t[i].role == role) return 1;
    return 0;
}

int nsqrt_arch_has_role(const nsqrt_config *c, int role)
{
    if (!listed(c->arch, role)) return 0;
    switch (role) {
    case NSQRT_ROLE_POS: return c->learned_pos;
    case NSQRT_ROLE_HEAD: return !c->tied_head;
    case NSQRT_ROLE_FINAL_NORM_B: case NSQRT_ROLE_ATTN_NORM_B: case NSQRT_ROLE_MLP_NORM_B: return c->layernorm;
    case NSQRT_ROLE_Q_B: case NSQRT_ROLE_K_B: case NSQRT_ROLE_V_B: case NSQRT_ROLE_O_B: case NSQRT_ROLE_QKV_B: return c->attention_bias;
    case NSQRT_ROLE_GATE_B: case NSQRT_ROLE_UP_B: case NSQRT_ROLE_DOWN_B: return c->mlp_bias;
    default: return 1;
    }
}

int nsqrt_arch_role_shape(const nsqrt_config *c, int role, uint64_t *out, uint64_t *in)
{
    uint64_t H = c->hidden, qd = (uint64_t)c->n_heads * c->head_dim, kvd = (uint64_t)c->n_kv_heads * c->head_dim;
    uint64_t I = c->inter;
    static const int weight_of[] = {[NSQRT_ROLE_Q_B] = NSQRT_ROLE_Q,       [NSQRT_ROLE_K_B] = NSQRT_ROLE_K,       [NSQRT_ROLE_V_B] = NSQRT_ROLE_V,
                                    [NSQRT_ROLE_O_B] = NSQRT_ROLE_O,       [NSQRT_ROLE_GATE_B] = NSQRT_ROLE_GATE, [NSQRT_ROLE_UP_B] = NSQRT_ROLE_UP,
                                    [NSQRT_ROLE_DOWN_B] = NSQRT_ROLE_DOWN, [NSQRT_ROLE_QKV_B] = NSQRT_ROLE_QKV};
    *in = 0;
    switch (role) {
    case NSQRT_ROLE_EMBED: case NSQRT_ROLE_HEAD: *out = c->vocab, *in = H; return 2;
    case NSQRT_ROLE_POS: *out = c->ctx, *in = H; return 2; /* at least ctx rows */
    case NSQRT_ROLE_Q_NORM: case NSQRT_ROLE_K_NORM: *out = c->head_dim; return 1;
    case NSQRT_ROLE_Q: *out = qd, *in = H; return 2;
    case NSQRT_ROLE_K: case NSQRT_ROLE_V: *out = kvd, *in = H; return 2;
    case NSQRT_ROLE_O: *out = H, *in = qd; return 2;
    case NSQRT_ROLE_GATE: case NSQRT_ROLE_UP: *out = I, *in = H; return 2;
    case NSQRT_ROLE_DOWN: *out = H, *in = I; return 2;
    case NSQRT_ROLE_QKV: *out = qd + 2 * kvd, *in = H; return 2;
    case NSQRT_ROLE_GATE_UP: *out = 2 * I, *in = H; return 2;
    case NSQRT_ROLE_Q_B: case NSQRT_ROLE_K_B: case NSQRT_ROLE_V_B: case NSQRT_ROLE_O_B: case NSQRT_ROLE_GATE_B: case NSQRT_ROLE_UP_B: case NSQRT_ROLE_DOWN_B:
    case NSQRT_ROLE_QKV_B:
        nsqrt_arch_role_shape(c, weight_of[role], out, in);
        *in = 0;
        return 1;
    default: *out = H; return 1; /* the norms */
    }
}

int nsqrt_arch_role_in_major(const nsqrt_config *c, int role)
{
    return (c->arch->flags & NSQRT_ARCH_CONV1D) && !c->conv1d_transposed && nsqrt_arch_role_kind(role) == NSQRT_KIND_MATRIX;
}

nsqrt_role_kind nsqrt_arch_role_kind(int role)
{
    switch (role) {
    case NSQRT_ROLE_EMBED: return NSQRT_KIND_EMBED;
    case NSQRT_ROLE_POS: return NSQRT_KIND_POS;
    case NSQRT_ROLE_HEAD: return NSQRT_KIND_HEAD;
    case NSQRT_ROLE_Q: case NSQRT_ROLE_K: case NSQRT_ROLE_V: case NSQRT_ROLE_O: case NSQRT_ROLE_GATE: case NSQRT_ROLE_UP: case NSQRT_ROLE_DOWN: case NSQRT_ROLE_QKV:
    case NSQRT_ROLE_GATE_UP: return NSQRT_KIND_MATRIX;
    case NSQRT_ROLE_Q_B: case NSQRT_ROLE_K_B: case NSQRT_ROLE_V_B: case NSQRT_ROLE_O_B: case NSQRT_ROLE_GATE_B: case NSQRT_ROLE_UP_B: case NSQRT_ROLE_DOWN_B:
    case NSQRT_ROLE_QKV_B: return NSQRT_KIND_BIAS;
    default: return NSQRT_KIND_NORM;
    }
}

const char *nsqrt_arch_role_name(int role)
{
    static const char *const names[NSQRT_ROLE_COUNT] = {
        [NSQRT_ROLE_EMBED] = "token embedding", [NSQRT_ROLE_POS] = "position embedding", [NSQRT_ROLE_FINAL_NORM] = "final norm",
        [NSQRT_ROLE_FINAL_NORM_B] = "final norm bias", [NSQRT_ROLE_HEAD] = "output head", [NSQRT_ROLE_ATTN_NORM] = "attention norm",
        [NSQRT_ROLE_ATTN_NORM_B] = "attention norm bias", [NSQRT_ROLE_MLP_NORM] = "MLP norm", [NSQRT_ROLE_MLP_NORM_B] = "MLP norm bias",
        [NSQRT_ROLE_POST_ATTN_NORM] = "post-attention norm", [NSQRT_ROLE_POST_MLP_NORM] = "post-MLP norm",
        [NSQRT_ROLE_Q_NORM] = "q norm", [NSQRT_ROLE_K_NORM] = "k norm", [NSQRT_ROLE_Q] = "q", [NSQRT_ROLE_K] = "k", [NSQRT_ROLE_V] = "v",
        [NSQRT_ROLE_O] = "attention output", [NSQRT_ROLE_GATE] = "gate", [NSQRT_ROLE_UP] = "up", [NSQRT_ROLE_DOWN] = "down",
        [NSQRT_ROLE_QKV] = "fused qkv", [NSQRT_ROLE_GATE_UP] = "fused gate/up", [NSQRT_ROLE_Q_B] = "q bias", [NSQRT_ROLE_K_B] = "k bias",
        [NSQRT_ROLE_V_B] = "v bias", [NSQRT_ROLE_O_B] = "attention output bias", [NSQRT_ROLE_GATE_B] = "gate bias",
        [NSQRT_ROLE_UP_B] = "up bias", [NSQRT_ROLE_DOWN_B] = "down bias", [NSQRT_ROLE_QKV_B] = "fused qkv bias"};
    return role >= 0 && role < NSQRT_ROLE_COUNT ? names[role] : "?";
}

int nsqrt_arch_layer_windowed(const nsqrt_config *c, uint32_t L)
{
    return c->sliding_window && (!c->window_pattern || (L + 1) % c->window_pattern != 0);
}
