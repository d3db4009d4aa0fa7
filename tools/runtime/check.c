/* check.c - model-level validation, before any weight is used: the
 * hyperparameters are finite and in range, every tensor name maps to exactly
 * one (layer, role) by an exact grammar, each layer's tensors live in the
 * block that holds that layer, every shape matches the config, every matrix
 * is stored in a scheme the kernels multiply that way, and every id
 * the tokenizer can produce has an embedding row. A file that passes is safe
 * to run; nsq-verify --model runs the same check. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"

#define FAIL(...) (snprintf(err, errlen, __VA_ARGS__), -1)

/* Whether layer L (UINT32_MAX: the model's own) must have the role. Biases
 * are optional: a bias of zeros may be left out. */
static int needs(const nsqrt_config *c, uint32_t L, int role)
{
    if ((L == UINT32_MAX) != (role < NSQRT_ROLE_FIRST_LAYER) || !nsqrt_arch_has_role(c, role)) return 0;
    return nsqrt_arch_role_kind(role) != NSQRT_KIND_BIAS || role == NSQRT_ROLE_FINAL_NORM_B || role == NSQRT_ROLE_ATTN_NORM_B ||
           role == NSQRT_ROLE_MLP_NORM_B;
}

static int shape_ok(const nsqrt_config *c, const nsq_tensor *t, int role)
{
    uint64_t out, in;
    int rank = nsqrt_arch_role_shape(c, role, &out, &in);
    if (t->n_dims != (uint32_t)rank) return 0;
    if (rank == 1) return t->dims[0] == out;
    if (nsqrt_arch_role_in_major(c, role)) return t->dims[0] == in && t->dims[1] == out;
    if (role == NSQRT_ROLE_POS) return t->dims[0] >= out && t->dims[1] == in;
    return t->dims[0] == out && t->dims[1] == in;
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

/* The key's string value, shortened, for messages. */
static const char *shown(const nsq_file *f, const char *key, char *buf, size_t n)
{
    const char *s = "";
    size_t len = 0;
    nsq_meta_str(f, key, 0, &s, &len);
    snprintf(buf, n, "%.*s", (int)(len > 64 ? 64 : len), s);
    return buf;
}

/* Index of the key's string value in names[], or -1. */
static int str_choice(const nsq_file *f, const char *key, const char *const *names, int n)
{
    for (int i = 0; i < n; i++)
        if (str_is(f, key, names[i])) return i;
    return -1;
}

static int finite_in(double v, double lo, double hi) { return isfinite(v) && v >= lo && v <= hi; }

/* A scale factor key: absent gives def; present, it must lie in [lo, hi]. */
static int get_factor(const nsq_file *f, const char *key, double def, double lo, double hi, double *v, char *err,
                      size_t errlen)
{
    *v = def;
    if (nsq_meta_f64(f, key, 0, v) == NSQ_OK && !finite_in(*v, lo, hi))
        return FAIL("%s must be finite and within [%g, %g]", key, lo, hi);
    return 0;
}

/* longrope's per-frequency factors: head_dim / 2 of them, each > 0. */
static int check_rope_factors(const nsq_file *f, const nsqrt_config *c, const char *key, char *err, size_t errlen)
{
    double v;
    uint32_t k = 0;
    for (; nsq_meta_f64(f, key, k, &v) == NSQ_OK; k++)
        if (!finite_in(v, 1e-30, 1e30)) return FAIL("%s[%u] must be finite and > 0", key, k);
    if (k != c->head_dim / 2) return FAIL("%s must hold head_dim / 2 = %u factors, not %u", key, c->head_dim / 2, k);
    return 0;
}

static int read_rope(const nsq_file *f, nsqrt_config *c, char *err, size_t errlen)
{
    static const char *const kinds[] = {"none", "linear", "dynamic", "llama3", "longrope"};
    int k = str_choice(f, "model.rope.scaling.type", kinds, 5);
    char v[72];
    if (k < 0)
        return FAIL("this runtime does not run model.rope.scaling.type \"%s\" (it runs none, linear, dynamic, llama3, "
                    "longrope)", shown(f, "model.rope.scaling.type", v, sizeof v));
    c->rope = (nsqrt_rope)k;
    c->rope_factor = 1, c->rope_low = 1, c->rope_high = 4, c->rope_orig_ctx = 8192, c->rope_attn_factor = 1;
    if (nsq_meta_f64(f, "model.rope.theta", 0, &c->rope_theta) || !finite_in(c->rope_theta, 1e-30, 1e30))
        return FAIL("model.rope.theta must be finite and > 0");
    nsq_meta_f64(f, "model.rope.scaling.factor", 0, &c->rope_factor);
    nsq_meta_f64(f, "model.rope.scaling.low_freq_factor", 0, &c->rope_low);
    nsq_meta_f64(f, "model.rope.scaling.high_freq_factor", 0, &c->rope_high);
    nsq_meta_f64(f, "model.rope.scaling.original_max_position_embeddings", 0, &c->rope_orig_ctx);
    if (c->rope != NSQRT_ROPE_NONE && !finite_in(c->rope_factor, 1e-30, 1e30))
        return FAIL("model.rope.scaling.factor must be finite and > 0");
    if (c->rope == NSQRT_ROPE_LLAMA3 &&
        (!finite_in(c->rope_low, 1e-30, 1e30) || !finite_in(c->rope_high, 1e-30, 1e30) || c->rope_low == c->rope_high ||
         !finite_in(c->rope_orig_ctx, 1, 1e30)))
        return FAIL("llama3 RoPE scaling needs finite low/high frequency factors > 0 that differ and an original "
                    "context >= 1");
    if (c->rope != NSQRT_ROPE_LONGROPE) return 0;
    if (!finite_in(c->rope_orig_ctx, 1, 1e30)) return FAIL("longrope needs an original context >= 1");
    return get_factor(f, "model.rope.scaling.attention_factor", 1, 1e-30, 1e30, &c->rope_attn_factor, err, errlen) ||
                   check_rope_factors(f, c, "model.rope.scaling.short_factor", err, errlen) ||
                   check_rope_factors(f, c, "model.rope.scaling.long_factor", err, errlen)
               ? -1
               : 0;
}

/* Sizes the runtime computes in 32 bits (q/k/v widths, c_attn's 3 x hidden)
 * stay below 2^28, well inside every product it forms. */
#define MODEL_MAX_WIDTH (1u << 28)

static int check_dims(const nsqrt_config *c, char *err, size_t errlen)
{
    uint64_t qd = (uint64_t)c->n_heads * c->head_dim, kvd = (uint64_t)c->n_kv_heads * c->head_dim;
    if (!c->hidden || !c->n_layers || !c->n_heads || !c->n_kv_heads || !c->head_dim || !c->inter || !c->vocab || !c->ctx)
        return FAIL("model dimensions must be at least 1");
    if (c->hidden >= MODEL_MAX_WIDTH / 4 || qd >= MODEL_MAX_WIDTH || kvd >= MODEL_MAX_WIDTH ||
        c->inter >= MODEL_MAX_WIDTH || c->vocab >= MODEL_MAX_WIDTH || c->ctx >= MODEL_MAX_WIDTH)
        return FAIL("model dimensions exceed this runtime's limit (2^28 per width, 2^26 hidden)");
    if (c->head_dim % 2 || c->n_heads % c->n_kv_heads)
        return FAIL("head_dim must be even and heads a multiple of KV heads");
    if ((c->arch->flags & NSQRT_ARCH_CONV1D) && (qd != c->hidden || c->n_kv_heads != c->n_heads))
        return FAIL("%s: heads x head_dim must equal hidden_size, with as many KV heads as heads", c->arch->name);
    return 0;
}

/* The family's strings: the architecture, and the norm and position
 * encoding it fixes; the activation is the file's own. */
static int read_family(const nsq_file *f, nsqrt_config *c, char *err, size_t errlen)
{
    static const char *const acts[] = {"silu", "gelu_tanh", "gelu", "relu"};
    const char *s = "";
    size_t n = 0;
    char runs[256];
    if (nsq_meta_str(f, "general.architecture", 0, &s, &n) || !(c->arch = nsqrt_arch_by_name(s, n)))
        return FAIL("this runtime does not run general.architecture \"%.*s\" (it runs %s)", (int)(n > 64 ? 64 : n), s,
                    nsqrt_arch_list(0, runs, sizeof runs));
    int act = str_choice(f, "model.activation", acts, 4);
    char v[72], v2[72];
    if (act < 0)
        return FAIL("this runtime does not run model.activation \"%s\" (it runs silu, gelu_tanh, gelu, relu)",
                    shown(f, "model.activation", v, sizeof v));
    c->act = (nsqrt_act)act;
    c->layernorm = (c->arch->flags & NSQRT_ARCH_LAYERNORM) != 0;
    c->learned_pos = (c->arch->flags & NSQRT_ARCH_LEARNED_POS) != 0;
    if (!str_is(f, "model.norm.type", c->layernorm ? "layernorm" : "rmsnorm") ||
        !str_is(f, "model.position", c->learned_pos ? "learned" : "rope"))
        return FAIL("%s models have model.norm.type %s and model.position %s, not \"%s\" and \"%s\"", c->arch->name,
                    c->layernorm ? "layernorm" : "rmsnorm", c->learned_pos ? "learned" : "rope",
                    shown(f, "model.norm.type", v, sizeof v), shown(f, "model.position", v2, sizeof v2));
    return 0;
}

/* The forward pass's options (spec 5.3), neutral when absent. */
static int read_options(const nsq_file *f, nsqrt_config *c, char *err, size_t errlen)
{
    uint64_t pattern = 0;
    if (nsq_meta_u64(f, "model.sliding_window_pattern", 0, &pattern) == NSQ_OK && pattern > c->n_layers)
        return FAIL("model.sliding_window_pattern %llu exceeds the layer count", (unsigned long long)pattern);
    c->window_pattern = (uint32_t)pattern;
    return get_factor(f, "model.attention.scale", 1.0f / sqrtf((float)c->head_dim), 1e-30, 1e6, &c->attn_scale, err,
                      errlen) ||
                   get_factor(f, "model.attention.softcap", 0, 0, 1e6, &c->attn_softcap, err, errlen) ||
                   get_factor(f, "model.logit_softcap", 0, 0, 1e6, &c->logit_softcap, err, errlen) ||
                   get_factor(f, "model.embedding_scale", 1, 1e-30, 1e6, &c->embed_scale, err, errlen) ||
                   get_factor(f, "model.norm.weight_offset", 0, -1e6, 1e6, &c->norm_offset, err, errlen)
               ? -1
               : 0;
}

static int read_config(const nsq_file *f, nsqrt_config *c, char *err, size_t errlen)
{
    memset(c, 0, sizeof *c);
    if (read_family(f, c, err, errlen)) return -1;
    double eps;
    int tied = 0, add_bos = 0;
    if (get_u32(f, "model.hidden_size", &c->hidden) || get_u32(f, "model.n_layers", &c->n_layers) ||
        get_u32(f, "model.n_heads", &c->n_heads) || get_u32(f, "model.n_kv_heads", &c->n_kv_heads) ||
        get_u32(f, "model.head_dim", &c->head_dim) || get_u32(f, "model.intermediate_size", &c->inter) ||
        get_u32(f, "model.vocab_size", &c->vocab) || get_u32(f, "model.context_length", &c->ctx) ||
        get_u32(f, "model.sliding_window", &c->sliding_window) || nsq_meta_f64(f, "model.norm.epsilon", 0, &eps) ||
        nsq_meta_bool(f, "model.tied_head", 0, &tied) || nsq_meta_bool(f, "model.attention_bias", 0, &c->attention_bias) ||
        nsq_meta_bool(f, "model.mlp_bias", 0, &c->mlp_bias) || nsq_meta_bool(f, "tokenizer.add_bos", 0, &add_bos) ||
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
    nsq_meta_bool(f, "model.conv1d_transposed", 0, &c->conv1d_transposed); /* absent: stored as the source */
    if (read_options(f, c, err, errlen)) return -1;
    return c->learned_pos ? 0 : read_rope(f, c, err, errlen);
}

/* ---- the tensors ---- */
/* Every tensor has one role, in a block that may hold it, with its shape;
 * no role is filled twice and every needed one is there. */
static int check_tensors(const nsq_file *f, const nsqrt_config *c, char *err, size_t errlen)
{
    nsq_info info;
    nsq_get_info(f, &info);
    uint8_t *seen = calloc(((size_t)c->n_layers + 1) * NSQRT_ROLE_COUNT, 1), *g = NULL;
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
            if (nsqrt_arch_tensor_role(c, t.name, &L, &role))
                rc = FAIL("tensor %s is not part of a %s model of %u layers", t.name, c->arch->name,
                          c->n_layers);
            else if ((L == UINT32_MAX) != (blk.kind != NSQ_BLOCK_LAYERS) ||
                     (L != UINT32_MAX && (L < blk.first_layer || L - blk.first_layer >= blk.n_layers)))
                rc = FAIL("tensor %s is in block %u, which does not hold its layer", t.name, b);
            else if (!shape_ok(c, &t, role))
                rc = FAIL("tensor %s has the wrong shape for this model's config", t.name);
            else if (t.n_dims >= 2 && nsqrt_arch_role_in_major(c, role) && !kern_has_cols(t.scheme))
                rc = FAIL("tensor %s: quantized Conv1D weights must be stored transposed (model.conv1d_transposed)",
                          t.name);
            else if (seen[(size_t)(L == UINT32_MAX ? c->n_layers : L) * NSQRT_ROLE_COUNT + (size_t)role]++)
                rc = FAIL("tensor %s duplicates another tensor's role", t.name);
        }
    }
    for (uint32_t L = 0; L <= c->n_layers && !rc; L++) {
        g = seen + (size_t)L * NSQRT_ROLE_COUNT;
        for (int role = 0; role < NSQRT_ROLE_COUNT && !rc; role++)
            if (!g[role] && needs(c, L < c->n_layers ? L : UINT32_MAX, role))
                rc = L < c->n_layers ? FAIL("layer %u lacks a tensor it needs (%s)", L, nsqrt_arch_role_name(role))
                                     : FAIL("the model lacks a tensor it needs (%s)", nsqrt_arch_role_name(role));
    }
    free(seen);
    return rc;
}

/* Every id the tokenizer can produce indexes an embedding row. */
static int check_tokenizer(const nsq_file *f, const nsqrt_config *c, nsq_tokenizer **tok, char *err, size_t errlen)
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

int nsqrt_check_file(const nsq_file *f, nsqrt_config *c, nsq_tokenizer **tok, char *err, size_t errlen)
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

int nsqrt_check_data(const nsq_file *f, char *err, size_t errlen)
{
    nsq_info info;
    nsq_get_info(f, &info);
    for (uint32_t b = 0; b < info.block_count; b++)
        if (check_block_vectors(f, b, err, errlen)) return -1;
    return 0;
}
