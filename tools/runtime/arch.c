/* arch.c - the architecture registry (nsqrt.h). Adding a family is an entry
 * here: its tensor names, its config facts, and flags for what its forward
 * pass does differently. */
#include <stdio.h>
#include <string.h>

#include "nsqrt.h"

#define N(a) (sizeof a / sizeof a[0])
#define R(role) NSQRT_ROLE_##role
#define F(flag) NSQRT_ARCH_##flag

/* ---- the families ---- */
static const nsqrt_arch_tensor hf_globals[] = {
    {"model.embed_tokens.weight", R(EMBED)}, {"model.norm.weight", R(FINAL_NORM)}, {"lm_head.weight", R(HEAD)}};

/* Each table lists a layer's tensors in the order the converter writes them. */
#define QKVO_BIASED                                                                                                   \
    {"self_attn.q_proj.weight", R(Q)}, {"self_attn.q_proj.bias", R(Q_B)}, {"self_attn.k_proj.weight", R(K)},     \
        {"self_attn.k_proj.bias", R(K_B)}, {"self_attn.v_proj.weight", R(V)}, {"self_attn.v_proj.bias", R(V_B)}, \
        {"self_attn.o_proj.weight", R(O)}, {"self_attn.o_proj.bias", R(O_B)}
#define MLP_PROJ {"mlp.gate_proj.weight", R(GATE)}, {"mlp.up_proj.weight", R(UP)}, {"mlp.down_proj.weight", R(DOWN)}

static const nsqrt_arch_tensor llama_layer[] = {
    {"input_layernorm.weight", R(ATTN_NORM)}, QKVO_BIASED, {"post_attention_layernorm.weight", R(MLP_NORM)},
    MLP_PROJ, {"mlp.gate_proj.bias", R(GATE_B)}, {"mlp.up_proj.bias", R(UP_B)}, {"mlp.down_proj.bias", R(DOWN_B)}};
/* Qwen2: q/k/v biases always, none on o or the MLP */
static const nsqrt_arch_tensor qwen2_layer[] = {
    {"input_layernorm.weight", R(ATTN_NORM)}, {"self_attn.q_proj.weight", R(Q)}, {"self_attn.q_proj.bias", R(Q_B)},
    {"self_attn.k_proj.weight", R(K)},         {"self_attn.k_proj.bias", R(K_B)}, {"self_attn.v_proj.weight", R(V)},
    {"self_attn.v_proj.bias", R(V_B)},         {"self_attn.o_proj.weight", R(O)},
    {"post_attention_layernorm.weight", R(MLP_NORM)}, MLP_PROJ};
static const nsqrt_arch_tensor qwen3_layer[] = {
    {"input_layernorm.weight", R(ATTN_NORM)}, QKVO_BIASED, {"self_attn.q_norm.weight", R(Q_NORM)},
    {"self_attn.k_norm.weight", R(K_NORM)}, {"post_attention_layernorm.weight", R(MLP_NORM)}, MLP_PROJ};
static const nsqrt_arch_tensor phi3_layer[] = {
    {"input_layernorm.weight", R(ATTN_NORM)}, {"self_attn.qkv_proj.weight", R(QKV)}, {"self_attn.o_proj.weight", R(O)},
    {"post_attention_layernorm.weight", R(MLP_NORM)}, {"mlp.gate_up_proj.weight", R(GATE_UP)},
    {"mlp.down_proj.weight", R(DOWN)}};
/* Gemma 2's post_attention_layernorm normalizes the attention's output */
static const nsqrt_arch_tensor gemma2_layer[] = {
    {"input_layernorm.weight", R(ATTN_NORM)}, QKVO_BIASED, {"post_attention_layernorm.weight", R(POST_ATTN_NORM)},
    {"pre_feedforward_layernorm.weight", R(MLP_NORM)}, MLP_PROJ,
    {"post_feedforward_layernorm.weight", R(POST_MLP_NORM)}};

static const nsqrt_arch_tensor gpt2_globals[] = {{"wte.weight", R(EMBED)},
                                           {"wpe.weight", R(POS)},
                                           {"ln_f.weight", R(FINAL_NORM)},
                                           {"ln_f.bias", R(FINAL_NORM_B)},
                                           {"lm_head.weight", R(HEAD)}};
static const nsqrt_arch_tensor gpt2_layer[] = {
    {"ln_1.weight", R(ATTN_NORM)},  {"ln_1.bias", R(ATTN_NORM_B)}, {"attn.c_attn.weight", R(QKV)},
    {"attn.c_attn.bias", R(QKV_B)}, {"attn.c_proj.weight", R(O)},   {"attn.c_proj.bias", R(O_B)},
    {"ln_2.weight", R(MLP_NORM)},   {"ln_2.bias", R(MLP_NORM_B)},  {"mlp.c_fc.weight", R(UP)},
    {"mlp.c_fc.bias", R(UP_B)},     {"mlp.c_proj.weight", R(DOWN)}, {"mlp.c_proj.bias", R(DOWN_B)}};

static const nsqrt_arch_key gemma2_keys[] = {
    {"attn_logit_softcapping", "model.attention.softcap", 50, 1e-6, 1e6, 0},
    {"final_logit_softcapping", "model.logit_softcap", 30, 1e-6, 1e6, 0},
    {"query_pre_attn_scalar", "model.attention.scale", 256, 1e-6, 1e12, 1},
    {NULL, NULL, 0, 0, 0, 0}};

/* The Hugging Face layout most families share. */
#define HF_NAMES(table)                                                                                               \
    .prefix = "model.layers.", .globals = hf_globals, .layer = table, .n_globals = N(hf_globals), .n_layer = N(table)

static const nsqrt_arch llama = {
    .name = "llama", .hf_class = "LlamaForCausalLM", HF_NAMES(llama_layer), .flags = F(HF_ATTN_BIAS) | F(HF_MLP_BIAS),
    .act_key = "hidden_act", .act = "silu", .eps = 1e-6, .ctx = 2048};
static const nsqrt_arch mistral = {
    .name = "mistral", .hf_class = "MistralForCausalLM", HF_NAMES(llama_layer), .flags = F(WINDOW_ON),
    .act_key = "hidden_act", .act = "silu", .eps = 1e-6, .ctx = 131072, .window = 4096};
static const nsqrt_arch qwen2 = {
    .name = "qwen2", .hf_class = "Qwen2ForCausalLM", HF_NAMES(qwen2_layer), .flags = F(MAX_WINDOW_LAYERS),
    .act_key = "hidden_act", .act = "silu", .eps = 1e-6, .ctx = 32768, .attention_bias = 1};
static const nsqrt_arch qwen3 = {
    .name = "qwen3", .hf_class = "Qwen3ForCausalLM", HF_NAMES(qwen3_layer),
    .flags = F(HF_ATTN_BIAS) | F(MAX_WINDOW_LAYERS), .act_key = "hidden_act", .act = "silu", .eps = 1e-6,
    .ctx = 32768};
static const nsqrt_arch phi3 = {
    .name = "phi3", .hf_class = "Phi3ForCausalLM", HF_NAMES(phi3_layer), .flags = F(WINDOW_ON),
    .act_key = "hidden_act", .act = "silu", .eps = 1e-5, .ctx = 4096};
static const nsqrt_arch gemma2 = {
    .name = "gemma2", .hf_class = "Gemma2ForCausalLM", HF_NAMES(gemma2_layer),
    .flags = F(HF_ATTN_BIAS) | F(EMBED_SQRT_H) | F(NORM_PLUS_ONE) | F(WINDOW_ON) | F(WINDOW_LAYERS),
    .act_key = "hidden_activation", .act = "gelu_tanh", .eps = 1e-6, .ctx = 8192, .window = 4096, .tied = 1,
    .keys = gemma2_keys};
static const nsqrt_arch gpt2 = {
    .name = "gpt2", .hf_class = "GPT2LMHeadModel", .prefix = "h.", .opt_prefix = "transformer.",
    .globals = gpt2_globals, .layer = gpt2_layer, .n_globals = N(gpt2_globals), .n_layer = N(gpt2_layer),
    .flags = F(UNGATED) | F(CONV1D) | F(LAYERNORM) | F(LEARNED_POS), .act_key = "activation_function",
    .act = "gelu_tanh", .eps = 1e-5, .ctx = 1024, .attention_bias = 1, .mlp_bias = 1, .tied = 1};

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

const char *nsqrt_arch_list(int hf, char *buf, size_t n)
{
    size_t k = 0;
    buf[0] = 0;
    for (const nsqrt_arch *const *a = nsqrt_arch_registry; *a && k < n; a++)
        k += (size_t)snprintf(buf + k, n - k, "%s%s", a == nsqrt_arch_registry ? "" : ", ",
                              hf ? (*a)->hf_class : (*a)->name);
    return buf;
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
    if ((*role = lookup(a->globals, a->n_globals, name)) >= 0) return *role == R(HEAD) ? -1 : 0;
    if (strncmp(name, a->prefix, np) || !(rest = layer_number(name + np, c->n_layers, L))) return -1;
    return (*role = lookup(a->layer, a->n_layer, rest)) < 0 ? -1 : 0;
}

int nsqrt_arch_tensor_name(const nsqrt_config *c, uint32_t L, int role, int with_opt, char *buf, size_t n)
{
    const nsqrt_arch *a = c->arch;
    const nsqrt_arch_tensor *t = L == UINT32_MAX ? a->globals : a->layer;
    size_t count = L == UINT32_MAX ? a->n_globals : a->n_layer;
    const char *opt = with_opt && a->opt_prefix && role != R(HEAD) ? a->opt_prefix : "";
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
    case R(POS): return c->learned_pos;
    case R(HEAD): return !c->tied_head;
    case R(FINAL_NORM_B): case R(ATTN_NORM_B): case R(MLP_NORM_B): return c->layernorm;
    case R(Q_B): case R(K_B): case R(V_B): case R(O_B): case R(QKV_B): return c->attention_bias;
    case R(GATE_B): case R(UP_B): case R(DOWN_B): return c->mlp_bias;
    default: return 1;
    }
}

int nsqrt_arch_role_shape(const nsqrt_config *c, int role, uint64_t *out, uint64_t *in)
{
    uint64_t H = c->hidden, qd = (uint64_t)c->n_heads * c->head_dim, kvd = (uint64_t)c->n_kv_heads * c->head_dim;
    uint64_t I = c->inter;
    static const int weight_of[] = {[R(Q_B)] = R(Q),       [R(K_B)] = R(K),       [R(V_B)] = R(V),
                                    [R(O_B)] = R(O),       [R(GATE_B)] = R(GATE), [R(UP_B)] = R(UP),
                                    [R(DOWN_B)] = R(DOWN), [R(QKV_B)] = R(QKV)};
    *in = 0;
    switch (role) {
    case R(EMBED): case R(HEAD): *out = c->vocab, *in = H; return 2;
    case R(POS): *out = c->ctx, *in = H; return 2; /* at least ctx rows */
    case R(Q_NORM): case R(K_NORM): *out = c->head_dim; return 1;
    case R(Q): *out = qd, *in = H; return 2;
    case R(K): case R(V): *out = kvd, *in = H; return 2;
    case R(O): *out = H, *in = qd; return 2;
    case R(GATE): case R(UP): *out = I, *in = H; return 2;
    case R(DOWN): *out = H, *in = I; return 2;
    case R(QKV): *out = qd + 2 * kvd, *in = H; return 2;
    case R(GATE_UP): *out = 2 * I, *in = H; return 2;
    case R(Q_B): case R(K_B): case R(V_B): case R(O_B): case R(GATE_B): case R(UP_B): case R(DOWN_B):
    case R(QKV_B):
        nsqrt_arch_role_shape(c, weight_of[role], out, in);
        *in = 0;
        return 1;
    default: *out = H; return 1; /* the norms */
    }
}

int nsqrt_arch_role_in_major(const nsqrt_config *c, int role)
{
    return (c->arch->flags & F(CONV1D)) && !c->conv1d_transposed && nsqrt_arch_role_kind(role) == NSQRT_KIND_MATRIX;
}

nsqrt_role_kind nsqrt_arch_role_kind(int role)
{
    switch (role) {
    case R(EMBED): return NSQRT_KIND_EMBED;
    case R(POS): return NSQRT_KIND_POS;
    case R(HEAD): return NSQRT_KIND_HEAD;
    case R(Q): case R(K): case R(V): case R(O): case R(GATE): case R(UP): case R(DOWN): case R(QKV):
    case R(GATE_UP): return NSQRT_KIND_MATRIX;
    case R(Q_B): case R(K_B): case R(V_B): case R(O_B): case R(GATE_B): case R(UP_B): case R(DOWN_B):
    case R(QKV_B): return NSQRT_KIND_BIAS;
    default: return NSQRT_KIND_NORM;
    }
}

const char *nsqrt_arch_role_name(int role)
{
    static const char *const names[NSQRT_ROLE_COUNT] = {
        [R(EMBED)] = "token embedding", [R(POS)] = "position embedding", [R(FINAL_NORM)] = "final norm",
        [R(FINAL_NORM_B)] = "final norm bias", [R(HEAD)] = "output head", [R(ATTN_NORM)] = "attention norm",
        [R(ATTN_NORM_B)] = "attention norm bias", [R(MLP_NORM)] = "MLP norm", [R(MLP_NORM_B)] = "MLP norm bias",
        [R(POST_ATTN_NORM)] = "post-attention norm", [R(POST_MLP_NORM)] = "post-MLP norm",
        [R(Q_NORM)] = "q norm", [R(K_NORM)] = "k norm", [R(Q)] = "q", [R(K)] = "k", [R(V)] = "v",
        [R(O)] = "attention output", [R(GATE)] = "gate", [R(UP)] = "up", [R(DOWN)] = "down",
        [R(QKV)] = "fused qkv", [R(GATE_UP)] = "fused gate/up", [R(Q_B)] = "q bias", [R(K_B)] = "k bias",
        [R(V_B)] = "v bias", [R(O_B)] = "attention output bias", [R(GATE_B)] = "gate bias",
        [R(UP_B)] = "up bias", [R(DOWN_B)] = "down bias", [R(QKV_B)] = "fused qkv bias"};
    return role >= 0 && role < NSQRT_ROLE_COUNT ? names[role] : "?";
}

int nsqrt_arch_layer_windowed(const nsqrt_config *c, uint32_t L)
{
    return c->sliding_window && (!c->window_pattern || (L + 1) % c->window_pattern != 0);
}
