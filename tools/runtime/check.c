/* check.c - model-level validation, before any weight is used: the
 * hyperparameters are finite and in range, every tensor name maps to exactly
 * one (layer, role) by an exact grammar, each layer's tensors live in the
 * block that holds that layer, every shape matches the config, and every id
 * the tokenizer can produce has an embedding row. A file that passes is safe
 * to run; nsq-verify --model runs the same check. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"

#define FAIL(...) (snprintf(err, errlen, __VA_ARGS__), -1)

typedef struct {
    const char *suffix;
    int role;
} role_name;

static const role_name llama_globals[] = {
    {"model.embed_tokens.weight", ROLE_EMBED}, {"model.norm.weight", ROLE_FINAL_NORM}, {"lm_head.weight", ROLE_HEAD}};
static const role_name llama_layer[] = {
    {"input_layernorm.weight", ROLE_ATTN_NORM},   {"post_attention_layernorm.weight", ROLE_MLP_NORM},
    {"self_attn.q_proj.weight", ROLE_Q},          {"self_attn.q_proj.bias", ROLE_Q_B},
    {"self_attn.k_proj.weight", ROLE_K},          {"self_attn.k_proj.bias", ROLE_K_B},
    {"self_attn.v_proj.weight", ROLE_V},          {"self_attn.v_proj.bias", ROLE_V_B},
    {"self_attn.o_proj.weight", ROLE_O},          {"self_attn.o_proj.bias", ROLE_O_B},
    {"mlp.gate_proj.weight", ROLE_GATE},          {"mlp.gate_proj.bias", ROLE_GATE_B},
    {"mlp.up_proj.weight", ROLE_UP},              {"mlp.up_proj.bias", ROLE_UP_B},
    {"mlp.down_proj.weight", ROLE_DOWN},          {"mlp.down_proj.bias", ROLE_DOWN_B}};
/* GPT-2 checkpoints name these with or without the "transformer." prefix. */
static const role_name gpt2_globals[] = {{"wte.weight", ROLE_EMBED},
                                         {"wpe.weight", ROLE_POS},
                                         {"ln_f.weight", ROLE_FINAL_NORM},
                                         {"ln_f.bias", ROLE_FINAL_NORM_B}};
static const role_name gpt2_layer[] = {
    {"ln_1.weight", ROLE_ATTN_NORM},      {"ln_1.bias", ROLE_ATTN_NORM_B}, {"ln_2.weight", ROLE_MLP_NORM},
    {"ln_2.bias", ROLE_MLP_NORM_B},       {"attn.c_attn.weight", ROLE_QKV}, {"attn.c_attn.bias", ROLE_QKV_B},
    {"attn.c_proj.weight", ROLE_O},       {"attn.c_proj.bias", ROLE_O_B},  {"mlp.c_fc.weight", ROLE_UP},
    {"mlp.c_fc.bias", ROLE_UP_B},         {"mlp.c_proj.weight", ROLE_DOWN}, {"mlp.c_proj.bias", ROLE_DOWN_B}};

static int lookup(const role_name *t, size_t n, const char *s)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(s, t[i].suffix) == 0) return t[i].role;
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

int model_tensor_role(const model_config *c, const char *name, uint32_t *L, int *role)
{
    const char *n = name, *rest;
    *L = UINT32_MAX;
    if (c->arch == ARCH_GPT2) {
        if (strcmp(n, "lm_head.weight") == 0) return *role = ROLE_HEAD, 0;
        if (strncmp(n, "transformer.", 12) == 0) n += 12;
        if ((*role = lookup(gpt2_globals, 4, n)) >= 0) return 0;
        if (strncmp(n, "h.", 2) || !(rest = layer_number(n + 2, c->n_layers, L))) return -1;
        return (*role = lookup(gpt2_layer, sizeof gpt2_layer / sizeof *gpt2_layer, rest)) < 0 ? -1 : 0;
    }
    if ((*role = lookup(llama_globals, 3, n)) >= 0) return 0;
    if (strncmp(n, "model.layers.", 13) || !(rest = layer_number(n + 13, c->n_layers, L))) return -1;
    return (*role = lookup(llama_layer, sizeof llama_layer / sizeof *llama_layer, rest)) < 0 ? -1 : 0;
}

/* GPT-2's Conv1D matrices, when the file keeps Hugging Face's [in][out]. */
int model_role_in_major(const model_config *c, int role)
{
    return c->arch == ARCH_GPT2 && !c->conv1d_transposed &&
           (role == ROLE_QKV || role == ROLE_O || role == ROLE_UP || role == ROLE_DOWN);
}

/* The shape a role must have: [out][in] for matrices, [len] for vectors. */
static int role_shape(const model_config *c, int role, uint64_t *out, uint64_t *in)
{
    uint64_t H = c->hidden, qd = (uint64_t)c->n_heads * c->head_dim, kvd = (uint64_t)c->n_kv_heads * c->head_dim;
    uint64_t I = c->inter;
    static const int vec_of[] = {[ROLE_Q_B] = ROLE_Q,       [ROLE_K_B] = ROLE_K,   [ROLE_V_B] = ROLE_V,
                                 [ROLE_O_B] = ROLE_O,       [ROLE_GATE_B] = ROLE_GATE, [ROLE_UP_B] = ROLE_UP,
                                 [ROLE_DOWN_B] = ROLE_DOWN, [ROLE_QKV_B] = ROLE_QKV};
    *in = 0;
    switch (role) {
    case ROLE_EMBED: case ROLE_HEAD: *out = c->vocab, *in = H; return 2;
    case ROLE_POS: *out = c->ctx, *in = H; return 2; /* at least ctx rows */
    case ROLE_FINAL_NORM: case ROLE_FINAL_NORM_B: case ROLE_ATTN_NORM: case ROLE_ATTN_NORM_B:
    case ROLE_MLP_NORM: case ROLE_MLP_NORM_B: *out = H; return 1;
    case ROLE_Q: *out = qd, *in = H; return 2;
    case ROLE_K: case ROLE_V: *out = kvd, *in = H; return 2;
    case ROLE_O: *out = H, *in = qd; return 2;
    case ROLE_GATE: case ROLE_UP: *out = I, *in = H; return 2;
    case ROLE_DOWN: *out = H, *in = I; return 2;
    case ROLE_QKV: *out = 3 * H, *in = H; return 2;
    default: role_shape(c, vec_of[role], out, in); *in = 0; return 1;
    }
}

static int shape_ok(const model_config *c, const nsq_tensor *t, int role)
{
    uint64_t out, in;
    int rank = role_shape(c, role, &out, &in);
    if (t->n_dims != (uint32_t)rank) return 0;
    if (rank == 1) return t->dims[0] == out;
    if (model_role_in_major(c, role)) return t->dims[0] == in && t->dims[1] == out;
    if (role == ROLE_POS) return t->dims[0] >= out && t->dims[1] == in;
    return t->dims[0] == out && t->dims[1] == in;
}

/* The roles every layer needs; biases are optional. */
static int layer_needs(const model_config *c, int role)
{
    switch (role) {
    case ROLE_ATTN_NORM: case ROLE_MLP_NORM: case ROLE_O: case ROLE_UP: case ROLE_DOWN: return 1;
    case ROLE_ATTN_NORM_B: case ROLE_MLP_NORM_B: return c->layernorm;
    case ROLE_QKV: return c->arch == ARCH_GPT2;
    case ROLE_Q: case ROLE_K: case ROLE_V: return c->arch != ARCH_GPT2;
    case ROLE_GATE: return c->gated_mlp;
    default: return 0;
    }
}

static int global_needs(const model_config *c, int role)
{
    switch (role) {
    case ROLE_EMBED: case ROLE_FINAL_NORM: return 1;
    case ROLE_FINAL_NORM_B: return c->layernorm;
    case ROLE_POS: return c->learned_pos;
    case ROLE_HEAD: return !c->tied_head;
    default: return 0;
    }
}

/* ---- the config ---- */
static int get_u32(const nsq_file *f, const char *key, uint32_t *v)
{
    uint64_t u;
    if (nsq_meta_u64(f, key, 0, &u) || u > UINT32_MAX) return -1;
    *v = (uint32_t)u;
    return 0;
}

static int str_is(const nsq_file *f, const char *key, const char *want)
{
    const char *s;
    size_t n;
    return !nsq_meta_str(f, key, 0, &s, &n) && n == strlen(want) && memcmp(s, want, n) == 0;
}

/* Index of the key's string value in names[], or -1. */
static int str_choice(const nsq_file *f, const char *key, const char *const *names, int n)
{
    for (int i = 0; i < n; i++)
        if (str_is(f, key, names[i])) return i;
    return -1;
}

static int finite_in(double v, double lo, double hi) { return isfinite(v) && v >= lo && v <= hi; }

static int read_rope(const nsq_file *f, model_config *c, char *err, size_t errlen)
{
    static const char *const kinds[] = {"none", "linear", "dynamic", "llama3"};
    int k = str_choice(f, "model.rope.scaling.type", kinds, 4);
    if (k < 0) return FAIL("RoPE scaling type of this model is not supported (none, linear, dynamic, llama3)");
    c->rope = (rope_kind)k;
    c->rope_factor = 1, c->rope_low = 1, c->rope_high = 4, c->rope_orig_ctx = 8192;
    if (nsq_meta_f64(f, "model.rope.theta", 0, &c->rope_theta) || !finite_in(c->rope_theta, 1e-30, 1e30))
        return FAIL("model.rope.theta must be finite and > 0");
    nsq_meta_f64(f, "model.rope.scaling.factor", 0, &c->rope_factor);
    nsq_meta_f64(f, "model.rope.scaling.low_freq_factor", 0, &c->rope_low);
    nsq_meta_f64(f, "model.rope.scaling.high_freq_factor", 0, &c->rope_high);
    nsq_meta_f64(f, "model.rope.scaling.original_max_position_embeddings", 0, &c->rope_orig_ctx);
    if (c->rope != ROPE_NONE && !finite_in(c->rope_factor, 1e-30, 1e30))
        return FAIL("model.rope.scaling.factor must be finite and > 0");
    if (c->rope == ROPE_LLAMA3 &&
        (!finite_in(c->rope_low, 1e-30, 1e30) || !finite_in(c->rope_high, 1e-30, 1e30) || c->rope_low == c->rope_high ||
         !finite_in(c->rope_orig_ctx, 1, 1e30)))
        return FAIL("llama3 RoPE scaling needs finite low/high frequency factors > 0 that differ and an original "
                    "context >= 1");
    return 0;
}

/* Sizes the runtime computes in 32 bits (q/k/v widths, c_attn's 3 x hidden)
 * stay below 2^28, well inside every product it forms. */
#define MODEL_MAX_WIDTH (1u << 28)

static int check_dims(const model_config *c, char *err, size_t errlen)
{
    uint64_t qd = (uint64_t)c->n_heads * c->head_dim, kvd = (uint64_t)c->n_kv_heads * c->head_dim;
    if (!c->hidden || !c->n_layers || !c->n_heads || !c->n_kv_heads || !c->head_dim || !c->inter || !c->vocab || !c->ctx)
        return FAIL("model dimensions must be at least 1");
    if (c->hidden >= MODEL_MAX_WIDTH / 4 || qd >= MODEL_MAX_WIDTH || kvd >= MODEL_MAX_WIDTH ||
        c->inter >= MODEL_MAX_WIDTH || c->vocab >= MODEL_MAX_WIDTH || c->ctx >= MODEL_MAX_WIDTH)
        return FAIL("model dimensions exceed this runtime's limit (2^28 per width, 2^26 hidden)");
    if (c->head_dim % 2 || c->n_heads % c->n_kv_heads)
        return FAIL("head_dim must be even and heads a multiple of KV heads");
    if (c->arch == ARCH_GPT2 && (qd != c->hidden || c->n_kv_heads != c->n_heads))
        return FAIL("GPT-2: heads x head_dim must equal hidden_size, with as many KV heads as heads");
    return 0;
}

static int read_config(const nsq_file *f, model_config *c, char *err, size_t errlen)
{
    static const char *const archs[] = {"llama", "mistral", "qwen2", "gpt2"};
    static const char *const acts[] = {"silu", "gelu_tanh", "gelu", "relu"};
    memset(c, 0, sizeof *c);
    int arch = str_choice(f, "general.architecture", archs, 4), act = str_choice(f, "model.activation", acts, 4);
    if (arch < 0) return FAIL("general.architecture is not one this runtime runs (llama, mistral, qwen2, gpt2)");
    if (act < 0) return FAIL("model.activation is not supported (silu, gelu_tanh, gelu, relu)");
    c->arch = (model_arch)arch, c->act = (model_act)act;
    double eps;
    int tied = 0, add_bos = 0;
    if (get_u32(f, "model.hidden_size", &c->hidden) || get_u32(f, "model.n_layers", &c->n_layers) ||
        get_u32(f, "model.n_heads", &c->n_heads) || get_u32(f, "model.n_kv_heads", &c->n_kv_heads) ||
        get_u32(f, "model.head_dim", &c->head_dim) || get_u32(f, "model.intermediate_size", &c->inter) ||
        get_u32(f, "model.vocab_size", &c->vocab) || get_u32(f, "model.context_length", &c->ctx) ||
        get_u32(f, "model.sliding_window", &c->sliding_window) || nsq_meta_f64(f, "model.norm.epsilon", 0, &eps) ||
        nsq_meta_bool(f, "model.tied_head", 0, &tied) || nsq_meta_bool(f, "tokenizer.add_bos", 0, &add_bos) ||
        nsq_meta_i64(f, "tokenizer.bos_id", 0, &c->bos_id) || nsq_meta_i64(f, "tokenizer.eos_id", 0, &c->eos_id))
        return FAIL("the file's model metadata is incomplete");
    if (check_dims(c, err, errlen)) return -1;
    if (!finite_in(eps, 0, 1)) return FAIL("model.norm.epsilon must be finite and within [0, 1]");
    int64_t id;
    int ids_ok = c->bos_id >= -1 && c->bos_id < c->vocab && c->eos_id >= -1 && c->eos_id < c->vocab &&
                 !(add_bos && c->bos_id < 0);
    for (uint32_t k = 0; ids_ok && !nsq_meta_i64(f, "tokenizer.eos_ids", k, &id); k++) ids_ok = id >= -1 && id < c->vocab;
    if (!ids_ok)
        return FAIL("tokenizer.bos_id, eos_id and eos_ids must be -1 (none) or a token below vocab_size %u", c->vocab);
    c->norm_eps = (float)eps;
    c->tied_head = tied;
    c->add_bos = add_bos;
    c->layernorm = str_is(f, "model.norm.type", "layernorm");
    c->learned_pos = str_is(f, "model.position", "learned");
    c->gated_mlp = c->arch != ARCH_GPT2;
    nsq_meta_bool(f, "model.conv1d_transposed", 0, &c->conv1d_transposed); /* absent: stored as the source */
    return c->learned_pos ? 0 : read_rope(f, c, err, errlen);
}

/* ---- the tensors ---- */
/* Every tensor has one role, in a block that may hold it, with its shape;
 * no role is filled twice and every needed one is there. */
static int check_tensors(const nsq_file *f, const model_config *c, char *err, size_t errlen)
{
    nsq_info info;
    nsq_get_info(f, &info);
    uint8_t *seen = calloc(((size_t)c->n_layers + 1) * ROLE_COUNT, 1), *g = NULL;
    if (!seen) return FAIL("out of memory");
    int rc = 0;
    for (uint32_t b = 0; b < info.block_count && !rc; b++) {
        nsq_block blk;
        nsq_block_at(f, b, &blk);
        for (uint32_t i = blk.first_tensor; i < blk.first_tensor + blk.tensor_count && !rc; i++) {
            nsq_tensor t;
            uint32_t L;
            int role;
            nsq_tensor_at(f, i, &t);
            if (model_tensor_role(c, t.name, &L, &role))
                rc = FAIL("tensor %s is not part of a %s model of %u layers", t.name, model_arch_name(c->arch),
                          c->n_layers);
            else if ((L == UINT32_MAX) != (blk.kind != NSQ_BLOCK_LAYERS) ||
                     (L != UINT32_MAX && (L < blk.first_layer || L - blk.first_layer >= blk.n_layers)))
                rc = FAIL("tensor %s is in block %u, which does not hold its layer", t.name, b);
            else if (!shape_ok(c, &t, role))
                rc = FAIL("tensor %s has the wrong shape for this model's config", t.name);
            else if (seen[(size_t)(L == UINT32_MAX ? c->n_layers : L) * ROLE_COUNT + (size_t)role]++)
                rc = FAIL("tensor %s duplicates another tensor's role", t.name);
        }
    }
    for (uint32_t L = 0; L <= c->n_layers && !rc; L++) {
        g = seen + (size_t)L * ROLE_COUNT;
        for (int role = 0; role < ROLE_COUNT && !rc; role++)
            if (!g[role] && (L < c->n_layers ? layer_needs(c, role) : global_needs(c, role)))
                rc = L < c->n_layers ? FAIL("layer %u lacks a tensor it needs (%s)", L, model_role_name(role))
                                     : FAIL("the model lacks a tensor it needs (%s)", model_role_name(role));
    }
    free(seen);
    return rc;
}

const char *model_role_name(int role)
{
    static const char *const names[ROLE_COUNT] = {
        [ROLE_EMBED] = "token embedding", [ROLE_POS] = "position embedding", [ROLE_FINAL_NORM] = "final norm",
        [ROLE_FINAL_NORM_B] = "final norm bias", [ROLE_HEAD] = "output head", [ROLE_ATTN_NORM] = "attention norm",
        [ROLE_ATTN_NORM_B] = "attention norm bias", [ROLE_MLP_NORM] = "MLP norm", [ROLE_MLP_NORM_B] = "MLP norm bias",
        [ROLE_Q] = "q", [ROLE_K] = "k", [ROLE_V] = "v", [ROLE_O] = "attention output", [ROLE_GATE] = "gate",
        [ROLE_UP] = "up", [ROLE_DOWN] = "down", [ROLE_QKV] = "c_attn", [ROLE_Q_B] = "q bias", [ROLE_K_B] = "k bias",
        [ROLE_V_B] = "v bias", [ROLE_O_B] = "attention output bias", [ROLE_GATE_B] = "gate bias",
        [ROLE_UP_B] = "up bias", [ROLE_DOWN_B] = "down bias", [ROLE_QKV_B] = "c_attn bias"};
    return role >= 0 && role < ROLE_COUNT ? names[role] : "?";
}

const char *model_arch_name(model_arch a)
{
    static const char *const names[] = {"llama", "mistral", "qwen2", "gpt2"};
    return names[a];
}

/* Every id the tokenizer can produce indexes an embedding row. */
static int check_tokenizer(const nsq_file *f, const model_config *c, nsq_tokenizer **tok, char *err, size_t errlen)
{
    nsq_diag d;
    *tok = NULL;
    nsq_status st = nsq_tokenizer_load(f, tok, &d);
    if (st == NSQ_E_NOT_FOUND) return 0;
    if (st) return FAIL("tokenizer: %s", d.message);
    uint32_t n = nsq_tokenizer_vocab_size(*tok);
    if (n <= c->vocab) return 0;
    nsq_tokenizer_free(*tok), *tok = NULL;
    return FAIL("the tokenizer can produce id %u, but the embedding has %u rows", n - 1, c->vocab);
}

int model_check_file(const nsq_file *f, model_config *c, nsq_tokenizer **tok, char *err, size_t errlen)
{
    nsq_tokenizer *t = NULL;
    int rc = read_config(f, c, err, errlen) || check_tensors(f, c, err, errlen) || check_tokenizer(f, c, &t, err, errlen);
    if (tok) *tok = t;
    else nsq_tokenizer_free(t);
    return rc ? -1 : 0;
}

int model_check_vector(const char *name, const float *v, uint64_t n, char *err, size_t errlen)
{
    for (uint64_t i = 0; i < n; i++)
        if (!isfinite(v[i])) return FAIL("tensor %s: element %llu is not finite", name, (unsigned long long)i);
    return 0;
}

/* Decodes the vectors (norms, biases) of one loaded block and checks them. */
static int check_block_vectors(const nsq_file *f, uint32_t b, char *err, size_t errlen)
{
    nsq_block blk;
    nsq_loaded ld;
    nsq_diag d;
    nsq_block_at(f, b, &blk);
    if (nsq_block_load(f, b, &ld, &d)) return FAIL("block %u: %s", b, d.message);
    int rc = 0;
    for (uint32_t i = blk.first_tensor; i < blk.first_tensor + blk.tensor_count && !rc; i++) {
        nsq_tensor t;
        nsq_view v;
        nsq_tensor_at(f, i, &t);
        if (t.n_dims != 1) continue;
        float *x = malloc(t.n_elements * sizeof *x);
        if (!x) rc = FAIL("out of memory");
        else if (nsq_tensor_view(f, i, &ld, &v, &d)) rc = FAIL("%s", d.message);
        else {
            nsq_dequantize_rows(&v, NULL, 0, 0, v.rows, x);
            rc = model_check_vector(t.name, x, t.n_elements, err, errlen);
        }
        free(x);
    }
    nsq_loaded_free(&ld);
    return rc;
}

int model_check_data(const nsq_file *f, char *err, size_t errlen)
{
    nsq_info info;
    nsq_get_info(f, &info);
    for (uint32_t b = 0; b < info.block_count; b++)
        if (check_block_vectors(f, b, err, errlen)) return -1;
    return 0;
}
