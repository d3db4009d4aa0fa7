/* hfconfig.c - a Hugging Face model's config.json (both the transformers 4
 * and 5 spellings), with the defaults transformers applies to missing keys,
 * plus the BOS/EOS facts from generation_config.json and the tokenizer files. */
#include <jansson.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"
#include "convert.h"

const char *const rope_extra_keys[ROPE_N_EXTRA] = {"low_freq_factor", "high_freq_factor",
                                                   "original_max_position_embeddings", "beta_fast", "beta_slow",
                                                   "attention_factor"};

/* A JSON object from text; NULL with a message naming file if malformed. */
static json_t *parse_json(const char *file, const char *text, size_t len, char *err, size_t n)
{
    json_error_t je;
    json_t *j = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
    if (!j) {
        snprintf(err, n, "%s: %s (line %d)", file, je.text, je.line);
        return NULL;
    }
    if (!json_is_object(j)) {
        snprintf(err, n, "%s: not a JSON object", file);
        json_decref(j);
        return NULL;
    }
    return j;
}

/* DIR/NAME, an optional file, as a JSON object; NULL if absent, larger than
 * max bytes, or malformed. */
static json_t *load_json(const char *dir, const char *name, size_t max)
{
    char path[4096], why[256], err[256];
    struct stat st;
    size_t len = 0;
    snprintf(path, sizeof path, "%s/%s", dir, name);
    char *text = stat(path, &st) == 0 && (uint64_t)st.st_size <= max ? cli_read_file(path, &len, why, sizeof why) : NULL;
    json_t *j = text ? parse_json(name, text, len, err, sizeof err) : NULL;
    free(text);
    return j;
}

/* x as JSON text, shortened, for messages. */
static const char *shown(const json_t *x, char *buf, size_t n)
{
    char *s = json_dumps(x, JSON_ENCODE_ANY | JSON_COMPACT);
    snprintf(buf, n, "%.40s%s", s ? s : "?", s && strlen(s) > 40 ? "..." : "");
    free(s);
    return buf;
}

/* Integer key, the first spelling present: 0 if absent or null (*v keeps its
 * default), 1 if an integer in lo..hi, else -1 with a message naming the key
 * and the range. */
static int get_int(json_t *o, const char *const *keys, uint64_t lo, uint64_t hi, uint64_t *v, char *err, size_t n)
{
    for (; *keys; keys++) {
        json_t *x = json_object_get(o, *keys);
        if (!x || json_is_null(x)) continue;
        json_int_t i = json_is_integer(x) ? json_integer_value(x) : -1;
        if (i >= 0 && (uint64_t)i >= lo && (uint64_t)i <= hi) return *v = (uint64_t)i, 1;
        char got[48];
        snprintf(err, n, "config.json: %s must be an integer in %llu..%llu, not %s", *keys, (unsigned long long)lo,
                 (unsigned long long)hi, shown(x, got, sizeof got));
        return -1;
    }
    return 0;
}

/* Number key of o, which messages call WHERE (e.g. "rope_scaling."): 0 if
 * absent or null, 1 if within [lo, hi], else -1 with a message. */
static int get_real(json_t *o, const char *where, const char *key, double lo, double hi, double *v, char *err, size_t n)
{
    json_t *x = json_object_get(o, key);
    if (!x || json_is_null(x)) return 0;
    double d = json_is_number(x) ? json_number_value(x) : NAN;
    if (d >= lo && d <= hi) return *v = d, 1; /* NaN fails both */
    char got[48];
    snprintf(err, n, "config.json: %s%s must be a number in [%.10g, %.10g], not %s", where, key, lo, hi, shown(x, got, sizeof got));
    return -1;
}

static int get_bool(json_t *o, const char *key, int *v, char *err, size_t n)
{
    json_t *x = json_object_get(o, key);
    if (!x || json_is_null(x)) return 0;
    if (!json_is_boolean(x)) return snprintf(err, n, "config.json: %s must be true or false", key), -1;
    *v = json_is_true(x);
    return 1;
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
    if ((c->arch = nsqrt_arch_by_hf_class(name))) return 0;
    char list[256];
    snprintf(err, n, "config.json: architecture %.64s is not supported (supported: %s)", name,
             nsqrt_arch_list(1, list, sizeof list));
    return -1;
}

/* longrope's factor lists: head_dim / 2 numbers each. */
static int read_factors(json_t *scale, const char *where, const char *key, const hf_config *c, double *out, char *err,
                        size_t n)
{
    json_t *x = json_object_get(scale, key);
    size_t want = c->head_dim / 2;
    if (!json_is_array(x) || json_array_size(x) != want)
        return snprintf(err, n, "config.json: %s%s must be a list of head_dim / 2 = %zu numbers", where, key, want), -1;
    for (size_t i = 0; i < want; i++) {
        json_t *v = json_array_get(x, i);
        double d = json_is_number(v) ? json_number_value(v) : NAN;
        if (!(d >= HF_MIN_ROPE_PARAM && d <= HF_MAX_ROPE_PARAM))
            return snprintf(err, n, "config.json: %s%s[%zu] must be a number in [%g, %g]", where, key, i,
                            HF_MIN_ROPE_PARAM, HF_MAX_ROPE_PARAM), -1;
        out[i] = d;
    }
    return 0;
}

/* longrope (Phi-3): the original context from the scaling object or the
 * config, factor = context / original unless given, and Hugging Face's
 * attention factor sqrt(1 + ln(factor) / ln(original)) unless given. */
static int read_longrope(json_t *cfg, json_t *scale, const char *where, hf_config *c, char *err, size_t n)
{
    if (read_factors(scale, where, "short_factor", c, c->rope_short, err, n) ||
        read_factors(scale, where, "long_factor", c, c->rope_long, err, n))
        return -1;
    unsigned orig = 1u << ROPE_ORIG_MAX_POS, attn = 1u << ROPE_ATTN_FACTOR;
    if (!(c->rope_extra_set & orig)) {
        int r = get_real(cfg, "", "original_max_position_embeddings", 1, HF_MAX_CTX, &c->rope_extra[ROPE_ORIG_MAX_POS],
                         err, n);
        if (r <= 0)
            return r < 0 ? -1 : (snprintf(err, n, "config.json: longrope needs original_max_position_embeddings"), -1);
        c->rope_extra_set |= orig;
    }
    double o = c->rope_extra[ROPE_ORIG_MAX_POS];
    if (!json_object_get(scale, "factor")) c->rope_factor = (double)c->ctx / o;
    if (!(c->rope_extra_set & attn)) {
        c->rope_extra[ROPE_ATTN_FACTOR] = c->rope_factor <= 1 || o <= 1 ? 1 : sqrt(1 + log(c->rope_factor) / log(o));
        c->rope_extra_set |= attn;
    }
    return 0;
}

/* RoPE: a top-level rope_theta/rope_scaling (transformers 4) or
 * rope_parameters {rope_theta, rope_type, factor, ...} (transformers 5). */
static int read_rope(json_t *cfg, hf_config *c, char *err, size_t n)
{
    json_t *rp = json_object_get(cfg, "rope_parameters"), *rs = json_object_get(cfg, "rope_scaling");
    json_t *scale = json_is_object(rp) ? rp : json_is_object(rs) ? rs : NULL;
    const char *where = scale == rp ? "rope_parameters." : "rope_scaling.";
    if ((rp && !json_is_null(rp) && !json_is_object(rp)) || (rs && !json_is_null(rs) && !json_is_object(rs)))
        return snprintf(err, n, "config.json: %s must be an object", rp && !json_is_object(rp) ? "rope_parameters" : "rope_scaling"), -1;
    if (get_real(cfg, "", "rope_theta", HF_MIN_THETA, HF_MAX_THETA, &c->rope_theta, err, n) < 0 ||
        (json_is_object(rp) && get_real(rp, where, "rope_theta", HF_MIN_THETA, HF_MAX_THETA, &c->rope_theta, err, n) < 0))
        return -1;
    if (!scale) return 0;
    json_t *t = json_object_get(scale, "rope_type");
    if (!t) t = json_object_get(scale, "type");
    const char *type = json_string_value(t);
    if (t && !json_is_null(t) && !type) return snprintf(err, n, "config.json: %srope_type must be a string", where), -1;
    if (!type || strcmp(type, "default") == 0) return 0;
    static const char *known[] = {"linear", "dynamic", "llama3", "yarn", "longrope", "su"};
    int ok = 0;
    for (size_t i = 0; i < 6; i++) ok |= strcmp(type, known[i]) == 0;
    if (!ok) {
        snprintf(err, n, "config.json: rope scaling type %.32s is not supported (linear, dynamic, llama3, yarn, longrope)",
                 type);
        return -1;
    }
    if (strcmp(type, "su") == 0) type = "longrope"; /* its earlier name */
    snprintf(c->rope_type, sizeof c->rope_type, "%s", type);
    if (get_real(scale, where, "factor", HF_MIN_ROPE_PARAM, HF_MAX_ROPE_PARAM, &c->rope_factor, err, n) < 0) return -1;
    for (int i = 0; i < ROPE_N_EXTRA; i++) {
        double hi = i == ROPE_ORIG_MAX_POS ? HF_MAX_CTX : HF_MAX_ROPE_PARAM, lo = i == ROPE_ORIG_MAX_POS ? 1 : HF_MIN_ROPE_PARAM;
        int r = get_real(scale, where, rope_extra_keys[i], lo, hi, &c->rope_extra[i], err, n);
        if (r < 0) return -1;
        if (r > 0) c->rope_extra_set |= 1u << i;
    }
    /* llama3 interpolates between the two wavelengths: they must differ (absent: 1 and 4) */
    double low = c->rope_extra_set & 1u << ROPE_LOW_FREQ ? c->rope_extra[ROPE_LOW_FREQ] : 1;
    double high = c->rope_extra_set & 1u << ROPE_HIGH_FREQ ? c->rope_extra[ROPE_HIGH_FREQ] : 4;
    if (strcmp(type, "llama3") == 0 && low == high)
        return snprintf(err, n, "config.json: %slow_freq_factor and high_freq_factor must differ (both %g)", where, low), -1;
    return strcmp(type, "longrope") == 0 ? read_longrope(cfg, scale, where, c, err, n) : 0;
}

static void set_defaults(hf_config *c)
{
    const nsqrt_arch *a = c->arch;
    int learned = (a->flags & NSQRT_ARCH_LEARNED_POS) != 0;
    c->norm_eps = a->eps;
    c->rope_theta = learned ? 0.0 : 10000.0;
    c->ctx = a->ctx;
    c->sliding_window = a->window;
    c->norm_type = a->flags & NSQRT_ARCH_LAYERNORM ? "layernorm" : "rmsnorm";
    c->activation = a->act;
    c->position = learned ? "learned" : "rope";
    c->attention_bias = a->attention_bias;
    c->mlp_bias = a->mlp_bias;
    c->tied_head = a->tied;
    c->bos_id = c->eos_id = -1;
    snprintf(c->rope_type, sizeof c->rope_type, "none");
    c->rope_factor = 1.0;
}

static int read_activation(json_t *cfg, hf_config *c, char *err, size_t n)
{
    const char *key = c->arch->act_key;
    json_t *x = json_object_get(cfg, key);
    const char *act = json_string_value(x);
    if (!x || json_is_null(x)) return 0;
    if (!act) return snprintf(err, n, "config.json: %s must be a string", key), -1;
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

/* The sizes every architecture needs, then those with defaults. */
static int read_sizes(json_t *cfg, hf_config *c, char *err, size_t n)
{
    static const char *const hidden[] = {"hidden_size", "n_embd", NULL}, *const layers[] = {"num_hidden_layers", "n_layer", NULL},
                             *const heads[] = {"num_attention_heads", "n_head", NULL}, *const vocab[] = {"vocab_size", NULL},
                             *const inter[] = {"intermediate_size", "n_inner", NULL},
                             *const ctx[] = {"max_position_embeddings", "n_positions", NULL},
                             *const kv[] = {"num_key_value_heads", NULL}, *const hd[] = {"head_dim", NULL};
    const struct { const char *const *keys; uint64_t hi, *v; } need[] = {
        {hidden, HF_MAX_HIDDEN, &c->hidden}, {layers, HF_MAX_LAYERS, &c->n_layers}, {heads, HF_MAX_HEADS, &c->n_heads},
        {vocab, HF_MAX_VOCAB, &c->vocab}};
    for (size_t i = 0; i < sizeof need / sizeof need[0]; i++) {
        int r = get_int(cfg, need[i].keys, 1, need[i].hi, need[i].v, err, n);
        if (r < 0) return -1;
        if (r == 0)
            return snprintf(err, n, "config.json: %s is missing (an integer in 1..%llu)", need[i].keys[0],
                            (unsigned long long)need[i].hi), -1;
    }
    c->n_kv_heads = c->n_heads;
    c->head_dim = c->hidden / c->n_heads;
    c->inter = c->arch->flags & NSQRT_ARCH_UNGATED ? 4 * c->hidden : 0;
    if (get_int(cfg, kv, 1, c->n_heads, &c->n_kv_heads, err, n) < 0 || get_int(cfg, hd, 2, HF_MAX_HEAD_DIM, &c->head_dim, err, n) < 0 ||
        get_int(cfg, inter, 1, HF_MAX_INTER, &c->inter, err, n) < 0 || get_int(cfg, ctx, 1, HF_MAX_CTX, &c->ctx, err, n) < 0)
        return -1;
    for (size_t i = 0; i < 2; i++) /* the later spelling wins, as before */
        if (get_real(cfg, "", i ? "layer_norm_epsilon" : "rms_norm_eps", 0, HF_MAX_EPS, &c->norm_eps, err, n) < 0) return -1;
    if (!c->inter) return snprintf(err, n, "config.json: intermediate_size is missing (an integer in 1..%u)", HF_MAX_INTER), -1;
    if (c->n_heads % c->n_kv_heads)
        return snprintf(err, n, "config.json: num_attention_heads %llu is not a multiple of num_key_value_heads %llu",
                        (unsigned long long)c->n_heads, (unsigned long long)c->n_kv_heads), -1;
    if (c->head_dim < 2 || c->head_dim > HF_MAX_HEAD_DIM || c->head_dim % 2)
        return snprintf(err, n, "config.json: head_dim %llu (hidden_size / num_attention_heads when absent) must be even, "
                                "in 2..%d", (unsigned long long)c->head_dim, HF_MAX_HEAD_DIM), -1;
    if ((c->arch->flags & NSQRT_ARCH_CONV1D) && (c->n_heads * c->head_dim != c->hidden || c->n_kv_heads != c->n_heads))
        return snprintf(err, n, "config.json: GPT-2 needs n_embd %llu = n_head x head_dim (%llu x %llu), and no grouped "
                                "KV heads", (unsigned long long)c->hidden, (unsigned long long)c->n_heads,
                        (unsigned long long)c->head_dim), -1;
    return 0;
}

/* Variants the format has no field for are refused rather than run wrongly. */
static int limits_unsupported(json_t *cfg, hf_config *c, char *err, size_t n)
{
    static const char *const mwl[] = {"max_window_layers", NULL};
    if ((c->arch->flags & NSQRT_ARCH_MAX_WINDOW_LAYERS) && c->sliding_window) { /* windows only layers >= max_window_layers */
        uint64_t from = 28;
        if (get_int(cfg, mwl, 0, INT64_MAX, &from, err, n) < 0) return -1;
        if (from >= c->n_layers) c->sliding_window = 0;
        else if (from > 0)
            return snprintf(err, n, "config.json: a sliding window on layers %llu.. only is not supported (one window for all "
                                    "layers or none)", (unsigned long long)from), -1;
    }
    int by_layer = 0, scaled = 1;
    double partial = 1;
    if ((c->arch->flags & NSQRT_ARCH_CONV1D) && (get_bool(cfg, "scale_attn_by_inverse_layer_idx", &by_layer, err, n) < 0 ||
        get_bool(cfg, "scale_attn_weights", &scaled, err, n) < 0))
        return -1;
    if (by_layer || !scaled)
        return snprintf(err, n, "config.json: GPT-2 attention scaling other than 1/sqrt(head_dim) is not supported"), -1;
    if (get_real(cfg, "", "partial_rotary_factor", 0, 1, &partial, err, n) < 0) return -1;
    if (partial != 1)
        return snprintf(err, n, "config.json: RoPE on part of each head (partial_rotary_factor %g) is not supported",
                        partial), -1;
    return 0;
}

/* layer_types ("sliding_attention" / "full_attention" per layer) must be
 * periodic: windows on every layer but each pattern-th (absent: every other,
 * as transformers defaults). */
static int read_layer_types(json_t *cfg, hf_config *c, char *err, size_t n)
{
    json_t *t = json_object_get(cfg, "layer_types");
    /* every other layer; with one layer that is every layer (pattern 0) */
    c->window_pattern = c->sliding_window && c->n_layers >= 2 ? 2 : 0;
    if (!t || json_is_null(t) || !c->sliding_window) return 0;
    if (!json_is_array(t) || json_array_size(t) != c->n_layers)
        return snprintf(err, n, "config.json: layer_types must list one type per layer"), -1;
    uint64_t first_full = c->n_layers;
    for (size_t L = 0; L < c->n_layers; L++) {
        const char *s = json_string_value(json_array_get(t, L));
        int full = s && strcmp(s, "full_attention") == 0;
        if (!full && !(s && strcmp(s, "sliding_attention") == 0))
            return snprintf(err, n, "config.json: layer_types[%zu] must be sliding_attention or full_attention", L), -1;
        if (full && first_full == c->n_layers) first_full = L;
        if (full != (first_full < c->n_layers && (L + 1) % (first_full + 1) == 0))
            return snprintf(err, n, "config.json: layer_types must repeat one pattern (windowed layers, then a full "
                                    "one)"), -1;
    }
    c->window_pattern = first_full < c->n_layers ? first_full + 1 : 0;
    return 0;
}

/* The family's other numbers (nsqrt_arch_key): a default when absent, none when null. */
static int read_keys(json_t *cfg, hf_config *c, char *err, size_t n)
{
    const nsqrt_arch_key *k = c->arch->keys;
    for (unsigned i = 0; k && k[i].hf_key && i < HF_MAX_KEYS; i++) {
        json_t *x = json_object_get(cfg, k[i].hf_key);
        double v = k[i].def;
        if (x && json_is_null(x)) continue;
        if (get_real(cfg, "", k[i].hf_key, k[i].lo, k[i].hi, &v, err, n) < 0) return -1;
        c->key_value[i] = k[i].inv_sqrt ? 1 / sqrt(v) : v;
        c->key_set |= 1u << i;
    }
    return 0;
}

static int read_flags(json_t *cfg, hf_config *c, char *err, size_t n)
{
    static const char *const swk[] = {"sliding_window", NULL};
    uint64_t sw = 0;
    unsigned f = c->arch->flags;
    int use_sw = (f & NSQRT_ARCH_WINDOW_ON) != 0;
    if (get_bool(cfg, "tie_word_embeddings", &c->tied_head, err, n) < 0 ||
        ((f & NSQRT_ARCH_HF_MLP_BIAS) && get_bool(cfg, "mlp_bias", &c->mlp_bias, err, n) < 0) ||
        ((f & NSQRT_ARCH_HF_ATTN_BIAS) && get_bool(cfg, "attention_bias", &c->attention_bias, err, n) < 0) ||
        get_bool(cfg, "use_sliding_window", &use_sw, err, n) < 0)
        return -1;
    int r = get_int(cfg, swk, 0, HF_MAX_CTX, &sw, err, n);
    if (r < 0) return -1;
    /* an explicit null means no window; an absent key keeps the default */
    if (!use_sw) c->sliding_window = 0;
    else if (r > 0) c->sliding_window = sw;
    else if (json_object_get(cfg, "sliding_window")) c->sliding_window = 0;
    if (limits_unsupported(cfg, c, err, n) || ((f & NSQRT_ARCH_WINDOW_LAYERS) && read_layer_types(cfg, c, err, n)) ||
        read_keys(cfg, c, err, n))
        return -1;
    const char *dt = json_string_value(json_object_get(cfg, "dtype"));
    if (!dt) dt = json_string_value(json_object_get(cfg, "torch_dtype"));
    snprintf(c->dtype, sizeof c->dtype, "%s", dt ? dt : "");
    return 0;
}

/* KEY of FILE: a token id, or a list of them (generation_config allows both),
 * each -1 (none) or below vocab_size; other types are ignored. The first id
 * goes to *first, up to 8 to all[]. */
static int read_ids(json_t *o, const char *file, const char *key, const hf_config *c, int64_t *first, int64_t *all,
                    uint32_t *n_all, char *err, size_t n)
{
    json_t *x = json_object_get(o, key), *v;
    size_t count = json_is_array(x) ? json_array_size(x) : json_is_integer(x);
    int64_t ids[8];
    uint32_t k = 0;
    for (size_t i = 0; i < count; i++) {
        v = json_is_array(x) ? json_array_get(x, i) : x;
        if (!json_is_integer(v)) return 0;
        json_int_t id = json_integer_value(v);
        if (id < -1 || id >= (json_int_t)c->vocab)
            return snprintf(err, n, "%s: %s %lld is not a token id (-1 or below vocab_size %llu)", file, key, (long long)id,
                            (unsigned long long)c->vocab), -1;
        if (k < 8) ids[k++] = id;
    }
    if (!k) return 0;
    *first = ids[0];
    if (all) memcpy(all, ids, k * sizeof *ids), *n_all = k;
    return 0;
}

static int read_all_ids(json_t *o, const char *file, hf_config *c, char *err, size_t n)
{
    return read_ids(o, file, "bos_token_id", c, &c->bos_id, NULL, NULL, err, n) ||
           read_ids(o, file, "eos_token_id", c, &c->eos_id, c->eos_ids, &c->n_eos, err, n);
}

/* BOS is added when tokenizer_config says so, else when tokenizer.json's
 * post-processor template starts the single sequence with a special token.
 * Both files are optional here: a broken one surfaces when it is embedded. */
static void read_tokenizer_facts(const char *dir, hf_config *c)
{
    json_t *tc = load_json(dir, "tokenizer_config.json", SIZE_MAX);
    int add = -1;
    if (tc && json_is_boolean(json_object_get(tc, "add_bos_token"))) add = json_is_true(json_object_get(tc, "add_bos_token"));
    json_decref(tc);
    if (add < 0) {
        json_t *tj = load_json(dir, "tokenizer.json", SIZE_MAX);
        json_t *single = json_object_get(json_object_get(tj, "post_processor"), "single");
        add = json_is_array(single) && json_object_get(json_array_get(single, 0), "SpecialToken") != NULL;
        json_decref(tj);
    }
    c->add_bos = add;
}

int hf_parse_config(const char *text, size_t len, hf_config *c, char *err, size_t n)
{
    memset(c, 0, sizeof *c);
    json_t *cfg = parse_json("config.json", text, len, err, n);
    if (!cfg) return -1;
    c->config_hash = nsq_xxh3(text, len);
    int rc = identify(cfg, c, err, n);
    if (!rc) {
        set_defaults(c);
        rc = read_sizes(cfg, c, err, n);
    }
    if (!rc) rc = read_activation(cfg, c, err, n);
    if (!rc && !(c->arch->flags & NSQRT_ARCH_LEARNED_POS)) rc = read_rope(cfg, c, err, n);
    if (!rc) rc = read_flags(cfg, c, err, n);
    if (!rc) rc = read_all_ids(cfg, "config.json", c, err, n);
    json_decref(cfg);
    return rc ? -1 : 0;
}

int hf_load_config(const char *dir, hf_config *c, char *err, size_t n)
{
    char path[4096], why[256];
    size_t len = 0;
    struct stat st;
    snprintf(path, sizeof path, "%s/config.json", dir);
    if (stat(path, &st) == 0 && (uint64_t)st.st_size > HF_MAX_CONFIG_BYTES)
        return snprintf(err, n, "%s: %llu bytes, more than the %u a config may have", path, (unsigned long long)st.st_size,
                        HF_MAX_CONFIG_BYTES), -1;
    char *text = cli_read_file(path, &len, why, sizeof why);
    if (!text) return snprintf(err, n, "%s: cannot open: %s", path, why), -1;
    int rc = hf_parse_config(text, len, c, err, n);
    free(text);
    if (rc) return -1;
    json_t *gen = load_json(dir, "generation_config.json", HF_MAX_CONFIG_BYTES);
    if (gen && read_all_ids(gen, "generation_config.json", c, err, n)) rc = -1;
    json_decref(gen);
    if (!rc) read_tokenizer_facts(dir, c);
    return rc;
}

void hf_model_config(const hf_config *c, nsqrt_config *m)
{
    memset(m, 0, sizeof *m);
    m->arch = c->arch;
    m->layernorm = (c->arch->flags & NSQRT_ARCH_LAYERNORM) != 0;
    m->learned_pos = (c->arch->flags & NSQRT_ARCH_LEARNED_POS) != 0;
    m->tied_head = c->tied_head;
    m->attention_bias = c->attention_bias;
    m->mlp_bias = c->mlp_bias;
    m->hidden = (uint32_t)c->hidden, m->n_layers = (uint32_t)c->n_layers, m->n_heads = (uint32_t)c->n_heads;
    m->n_kv_heads = (uint32_t)c->n_kv_heads, m->head_dim = (uint32_t)c->head_dim, m->inter = (uint32_t)c->inter;
    m->vocab = (uint32_t)c->vocab, m->ctx = (uint32_t)c->ctx;
}
