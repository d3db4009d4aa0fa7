/* hfconfig.c - a Hugging Face model's config.json (both the transformers 4
 * and 5 spellings), with the defaults transformers applies to missing keys,
 * plus the BOS/EOS facts from generation_config.json and the tokenizer files. */
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "convert.h"

const char *const rope_extra_keys[ROPE_N_EXTRA] = {"low_freq_factor", "high_freq_factor",
                                                   "original_max_position_embeddings", "beta_fast", "beta_slow",
                                                   "attention_factor"};

static const struct {
    const char *hf, *name;
    arch_id id;
} archs[] = {{"LlamaForCausalLM", "llama", ARCH_LLAMA},
             {"MistralForCausalLM", "mistral", ARCH_MISTRAL},
             {"Qwen2ForCausalLM", "qwen2", ARCH_QWEN2},
             {"GPT2LMHeadModel", "gpt2", ARCH_GPT2}};

/* DIR/NAME as a JSON object; NULL if absent (an error only when required) or
 * malformed. hash, if given, receives the XXH3 of the file's bytes. */
static json_t *load_json(const char *dir, const char *name, int required, uint64_t *hash, char *err, size_t n)
{
    char path[4096];
    json_error_t je;
    size_t len = 0;
    snprintf(path, sizeof path, "%s/%s", dir, name);
    char *text = cli_read_file(path, &len);
    if (!text) {
        if (required) snprintf(err, n, "%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    if (hash) *hash = nsq_xxh3(text, len);
    json_t *j = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
    free(text);
    if (!j) {
        snprintf(err, n, "%s: %s (line %d)", path, je.text, je.line);
        return NULL;
    }
    if (!json_is_object(j)) {
        snprintf(err, n, "%s: not a JSON object", path);
        json_decref(j);
        return NULL;
    }
    return j;
}

/* Integer key: 1 if present, 0 if absent or null, -1 if of the wrong type. */
static int get_u64(json_t *o, const char *key, uint64_t *v)
{
    json_t *x = json_object_get(o, key);
    if (!x || json_is_null(x)) return 0;
    if (!json_is_integer(x) || json_integer_value(x) < 0) return -1;
    *v = (uint64_t)json_integer_value(x);
    return 1;
}

static int get_f64(json_t *o, const char *key, double *v)
{
    json_t *x = json_object_get(o, key);
    if (!x || json_is_null(x)) return 0;
    if (!json_is_number(x)) return -1;
    *v = json_number_value(x);
    return isfinite(*v) ? 1 : -1;
}

static int get_bool(json_t *o, const char *key, int *v)
{
    json_t *x = json_object_get(o, key);
    if (!x || json_is_null(x)) return 0;
    if (!json_is_boolean(x)) return -1;
    *v = json_is_true(x);
    return 1;
}

/* First of several spellings of one key. */
static int get_u64_any(json_t *o, const char *const *keys, uint64_t *v)
{
    for (; *keys; keys++) {
        int r = get_u64(o, *keys, v);
        if (r) return r;
    }
    return 0;
}

static int identify(json_t *cfg, hf_config *c, char *err, size_t n)
{
    json_t *a = json_object_get(cfg, "architectures");
    const char *name = json_is_array(a) && json_array_size(a) ? json_string_value(json_array_get(a, 0)) : NULL;
    if (!name) {
        snprintf(err, n, "config.json: no \"architectures\" entry");
        return -1;
    }
    snprintf(c->hf_arch, sizeof c->hf_arch, "%s", name);
    for (size_t i = 0; i < sizeof archs / sizeof archs[0]; i++)
        if (strcmp(archs[i].hf, name) == 0) {
            c->arch = archs[i].id;
            c->arch_name = archs[i].name;
            return 0;
        }
    snprintf(err, n, "config.json: architecture %.64s is not supported (supported: LlamaForCausalLM, "
                     "MistralForCausalLM, Qwen2ForCausalLM, GPT2LMHeadModel)", name);
    return -1;
}

/* RoPE: a top-level rope_theta/rope_scaling (transformers 4) or
 * rope_parameters {rope_theta, rope_type, factor, ...} (transformers 5). */
static int read_rope(json_t *cfg, hf_config *c, char *err, size_t n)
{
    json_t *rp = json_object_get(cfg, "rope_parameters"), *rs = json_object_get(cfg, "rope_scaling");
    json_t *scale = json_is_object(rp) ? rp : json_is_object(rs) ? rs : NULL;
    if (get_f64(cfg, "rope_theta", &c->rope_theta) < 0 || (rp && get_f64(rp, "rope_theta", &c->rope_theta) < 0)) {
        snprintf(err, n, "config.json: rope_theta is not a number");
        return -1;
    }
    snprintf(c->rope_type, sizeof c->rope_type, "none");
    c->rope_factor = 1.0;
    if (!scale) return 0;
    json_t *t = json_object_get(scale, "rope_type");
    if (!t) t = json_object_get(scale, "type");
    const char *type = json_string_value(t);
    if (!type || strcmp(type, "default") == 0) return 0;
    static const char *known[] = {"linear", "dynamic", "llama3", "yarn"};
    int ok = 0;
    for (size_t i = 0; i < 4; i++) ok |= strcmp(type, known[i]) == 0;
    if (!ok) {
        snprintf(err, n, "config.json: rope scaling type %.32s is not supported (linear, dynamic, llama3, yarn)", type);
        return -1;
    }
    snprintf(c->rope_type, sizeof c->rope_type, "%s", type);
    if (get_f64(scale, "factor", &c->rope_factor) < 0 || c->rope_factor <= 0) {
        snprintf(err, n, "config.json: rope scaling factor is not a positive number");
        return -1;
    }
    for (int i = 0; i < ROPE_N_EXTRA; i++)
        if (get_f64(scale, rope_extra_keys[i], &c->rope_extra[i]) > 0) c->rope_extra_set |= 1u << i;
    return 0;
}

static void set_defaults(hf_config *c)
{
    int gpt2 = c->arch == ARCH_GPT2;
    c->norm_eps = gpt2 ? 1e-5 : 1e-6;
    c->rope_theta = gpt2 ? 0.0 : 10000.0;
    c->ctx = c->arch == ARCH_MISTRAL ? 131072 : c->arch == ARCH_QWEN2 ? 32768 : gpt2 ? 1024 : 2048;
    c->sliding_window = c->arch == ARCH_MISTRAL ? 4096 : 0;
    c->norm_type = gpt2 ? "layernorm" : "rmsnorm";
    c->activation = gpt2 ? "gelu_tanh" : "silu";
    c->position = gpt2 ? "learned" : "rope";
    c->attention_bias = gpt2 || c->arch == ARCH_QWEN2;
    c->mlp_bias = gpt2;
    c->tied_head = gpt2;
    c->bos_id = c->eos_id = -1;
    snprintf(c->rope_type, sizeof c->rope_type, "none");
    c->rope_factor = 1.0;
}

static int read_activation(json_t *cfg, hf_config *c, char *err, size_t n)
{
    const char *act = json_string_value(json_object_get(cfg, c->arch == ARCH_GPT2 ? "activation_function" : "hidden_act"));
    if (!act) return 0;
    static const struct { const char *hf, *nsq; } map[] = {
        {"silu", "silu"}, {"swish", "silu"}, {"gelu_new", "gelu_tanh"}, {"gelu_pytorch_tanh", "gelu_tanh"},
        {"gelu", "gelu"}, {"relu", "relu"}};
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
        if (strcmp(act, map[i].hf) == 0) {
            c->activation = map[i].nsq;
            return 0;
        }
    snprintf(err, n, "config.json: activation %.32s is not supported", act);
    return -1;
}

static int read_sizes(json_t *cfg, hf_config *c, char *err, size_t n)
{
    static const char *hidden[] = {"hidden_size", "n_embd", NULL}, *layers[] = {"num_hidden_layers", "n_layer", NULL},
                      *heads[] = {"num_attention_heads", "n_head", NULL}, *inter[] = {"intermediate_size", "n_inner", NULL},
                      *ctx[] = {"max_position_embeddings", "n_positions", NULL},
                      *eps[] = {"rms_norm_eps", "layer_norm_epsilon", NULL};
    int bad = get_u64_any(cfg, hidden, &c->hidden) <= 0 || get_u64_any(cfg, layers, &c->n_layers) <= 0 ||
              get_u64_any(cfg, heads, &c->n_heads) <= 0 || get_u64(cfg, "vocab_size", &c->vocab) <= 0;
    if (bad || !c->hidden || !c->n_layers || !c->n_heads || !c->vocab) {
        snprintf(err, n, "config.json: hidden size, layer count, head count and vocab_size must be positive integers");
        return -1;
    }
    c->n_kv_heads = c->n_heads;
    c->head_dim = c->hidden / c->n_heads;
    c->inter = c->arch == ARCH_GPT2 ? 4 * c->hidden : 0;
    for (size_t i = 0; eps[i]; i++)
        if (get_f64(cfg, eps[i], &c->norm_eps) < 0) return snprintf(err, n, "config.json: %s is not a number", eps[i]), -1;
    if (get_u64(cfg, "num_key_value_heads", &c->n_kv_heads) < 0 || get_u64(cfg, "head_dim", &c->head_dim) < 0 ||
        get_u64_any(cfg, inter, &c->inter) < 0 || get_u64_any(cfg, ctx, &c->ctx) < 0) {
        snprintf(err, n, "config.json: a size key is not a non-negative integer");
        return -1;
    }
    if (!c->n_kv_heads || c->n_heads % c->n_kv_heads || !c->head_dim || !c->inter || !c->ctx) {
        snprintf(err, n, "config.json: inconsistent sizes (heads %llu, kv heads %llu, head_dim %llu, intermediate %llu)",
                 (unsigned long long)c->n_heads, (unsigned long long)c->n_kv_heads, (unsigned long long)c->head_dim,
                 (unsigned long long)c->inter);
        return -1;
    }
    return 0;
}

/* Variants the format has no field for are refused rather than run wrongly. */
static int limits_unsupported(json_t *cfg, hf_config *c, char *err, size_t n)
{
    if (c->arch == ARCH_QWEN2 && c->sliding_window) { /* Qwen2 windows only layers >= max_window_layers */
        uint64_t from = 28;
        if (get_u64(cfg, "max_window_layers", &from) < 0) return snprintf(err, n, "config.json: max_window_layers is not an integer"), -1;
        if (from >= c->n_layers) c->sliding_window = 0;
        else if (from > 0)
            return snprintf(err, n, "config.json: a sliding window on layers %llu.. only is not supported (one window for all "
                                    "layers or none)", (unsigned long long)from), -1;
    }
    int by_layer = 0, scaled = 1;
    if (c->arch == ARCH_GPT2 && (get_bool(cfg, "scale_attn_by_inverse_layer_idx", &by_layer) < 0 ||
                                 get_bool(cfg, "scale_attn_weights", &scaled) < 0 || by_layer || !scaled))
        return snprintf(err, n, "config.json: GPT-2 attention scaling other than 1/sqrt(head_dim) is not supported"), -1;
    return 0;
}

static int read_flags(json_t *cfg, hf_config *c, char *err, size_t n)
{
    uint64_t sw = 0;
    int use_sw = c->arch == ARCH_MISTRAL;
    if (get_bool(cfg, "tie_word_embeddings", &c->tied_head) < 0 || get_bool(cfg, "mlp_bias", &c->mlp_bias) < 0 ||
        (c->arch == ARCH_LLAMA && get_bool(cfg, "attention_bias", &c->attention_bias) < 0) ||
        get_bool(cfg, "use_sliding_window", &use_sw) < 0) {
        snprintf(err, n, "config.json: a boolean key has another type");
        return -1;
    }
    int r = get_u64(cfg, "sliding_window", &sw);
    if (r < 0) return snprintf(err, n, "config.json: sliding_window is not an integer"), -1;
    /* an explicit null means no window; an absent key keeps the default */
    if (!use_sw) c->sliding_window = 0;
    else if (r > 0) c->sliding_window = sw;
    else if (json_object_get(cfg, "sliding_window")) c->sliding_window = 0;
    if (c->arch == ARCH_GPT2 || c->arch == ARCH_QWEN2) c->mlp_bias = c->arch == ARCH_GPT2;
    if (limits_unsupported(cfg, c, err, n)) return -1;
    const char *dt = json_string_value(json_object_get(cfg, "dtype"));
    if (!dt) dt = json_string_value(json_object_get(cfg, "torch_dtype"));
    snprintf(c->dtype, sizeof c->dtype, "%s", dt ? dt : "");
    return 0;
}

/* An id from an integer, or the first of a list (generation_config allows both). */
static int read_ids(json_t *x, int64_t *first, int64_t *all, uint32_t *n_all)
{
    if (json_is_integer(x)) {
        *first = json_integer_value(x);
        if (all) all[0] = *first, *n_all = 1;
        return 1;
    }
    if (!json_is_array(x) || !json_array_size(x)) return 0;
    size_t i;
    json_t *v;
    if (all) *n_all = 0;
    json_array_foreach(x, i, v)
    {
        if (!json_is_integer(v)) return 0;
        if (i == 0) *first = json_integer_value(v);
        if (all && *n_all < 8) all[(*n_all)++] = json_integer_value(v);
    }
    return 1;
}

/* BOS is added when tokenizer_config says so, else when tokenizer.json's
 * post-processor template starts the single sequence with a special token. */
static void read_tokenizer_facts(const char *dir, hf_config *c, char *err, size_t n)
{
    json_t *tc = load_json(dir, "tokenizer_config.json", 0, NULL, err, n);
    int add = -1;
    if (tc && json_is_boolean(json_object_get(tc, "add_bos_token"))) add = json_is_true(json_object_get(tc, "add_bos_token"));
    json_decref(tc);
    if (add < 0) {
        json_t *tj = load_json(dir, "tokenizer.json", 0, NULL, err, n);
        json_t *single = json_object_get(json_object_get(tj, "post_processor"), "single");
        add = json_is_array(single) && json_object_get(json_array_get(single, 0), "SpecialToken") != NULL;
        json_decref(tj);
    }
    c->add_bos = add;
    err[0] = 0; /* optional files: a broken one surfaces when it is embedded */
}

int hf_load_config(const char *dir, hf_config *c, char *err, size_t n)
{
    memset(c, 0, sizeof *c);
    json_t *cfg = load_json(dir, "config.json", 1, &c->config_hash, err, n);
    if (!cfg) return -1;
    int rc = identify(cfg, c, err, n);
    if (!rc) {
        set_defaults(c);
        rc = read_sizes(cfg, c, err, n);
    }
    if (!rc) rc = read_activation(cfg, c, err, n);
    if (!rc && c->arch != ARCH_GPT2) rc = read_rope(cfg, c, err, n);
    if (!rc) rc = read_flags(cfg, c, err, n);
    if (!rc) {
        read_ids(json_object_get(cfg, "bos_token_id"), &c->bos_id, NULL, NULL);
        read_ids(json_object_get(cfg, "eos_token_id"), &c->eos_id, c->eos_ids, &c->n_eos);
        json_t *gen = load_json(dir, "generation_config.json", 0, NULL, err, n);
        if (gen) {
            read_ids(json_object_get(gen, "bos_token_id"), &c->bos_id, NULL, NULL);
            read_ids(json_object_get(gen, "eos_token_id"), &c->eos_id, c->eos_ids, &c->n_eos);
            json_decref(gen);
        }
        read_tokenizer_facts(dir, c, err, n);
    }
    json_decref(cfg);
    return rc ? -1 : 0;
}
