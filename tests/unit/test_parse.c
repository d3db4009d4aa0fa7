/* test_parse.c - nsq-convert's config.json and recipe readers and the tools'
 * numeric and routing options: every documented range at its edges, the values that once
 * got through (a billion layers, NaN tiers, group size 33, casts of -1 and
 * 1e10), and bounded input sizes. */
#include "testutil.h"

#include <jansson.h>

#include "cli.h"
#include "cli_route.h"
#include "convert.h"
#include "pipeline.h"

/* ---- config.json ---- */

static const char *LLAMA = "{\"architectures\": [\"LlamaForCausalLM\"], \"hidden_size\": 64, \"num_hidden_layers\": 2,"
                           " \"num_attention_heads\": 4, \"num_key_value_heads\": 2, \"intermediate_size\": 128,"
                           " \"vocab_size\": 4096, \"max_position_embeddings\": 2048, \"rms_norm_eps\": 1e-06,"
                           " \"rope_theta\": 10000.0, \"bos_token_id\": 1, \"eos_token_id\": 2}";
static const char *LLAMA_HD = "{\"architectures\": [\"LlamaForCausalLM\"], \"hidden_size\": 64, \"num_hidden_layers\": 2,"
                              " \"num_attention_heads\": 4, \"num_key_value_heads\": 2, \"head_dim\": 16,"
                              " \"intermediate_size\": 128, \"vocab_size\": 4096}";
static const char *GPT2 = "{\"architectures\": [\"GPT2LMHeadModel\"], \"n_embd\": 64, \"n_layer\": 2, \"n_head\": 4,"
                          " \"vocab_size\": 4096, \"n_positions\": 1024, \"layer_norm_epsilon\": 1e-05}";

/* base with key set to the JSON value (NULL: removed), parsed; the message in err. */
static int parse_with(const char *base, const char *key, const char *value, hf_config *c, char *err, size_t n)
{
    json_t *j = json_loads(base, 0, NULL);
    assert_non_null(j);
    if (value) {
        json_t *v = json_loads(value, JSON_DECODE_ANY, NULL);
        assert_non_null(v);
        json_object_set_new(j, key, v);
    } else {
        json_object_del(j, key);
    }
    char *text = json_dumps(j, 0);
    json_decref(j);
    assert_non_null(text);
    err[0] = 0;
    int rc = hf_parse_config(text, strlen(text), c, err, n);
    free(text);
    return rc;
}

static void accepts(const char *base, const char *key, const char *value)
{
    hf_config c;
    char err[1024];
    if (parse_with(base, key, value, &c, err, sizeof err)) fail_msg("%s = %s refused: %s", key, value, err);
}

/* Refused with a message that contains want. */
static void refuses(const char *base, const char *key, const char *value, const char *want)
{
    hf_config c;
    char err[1024];
    if (!parse_with(base, key, value, &c, err, sizeof err)) fail_msg("%s = %s accepted", key, value);
    if (!strstr(err, want)) fail_msg("%s = %s: message '%s' lacks '%s'", key, value, err, want);
}

static void test_config_valid(void **state)
{
    (void)state;
    hf_config c;
    char err[1024];
    assert_int_equal(hf_parse_config(LLAMA, strlen(LLAMA), &c, err, sizeof err), 0);
    assert_int_equal(c.hidden, 64);
    assert_int_equal(c.head_dim, 16);
    assert_int_equal(c.n_kv_heads, 2);
    assert_int_equal(c.bos_id, 1);
    assert_int_equal(hf_parse_config(GPT2, strlen(GPT2), &c, err, sizeof err), 0);
    assert_int_equal(c.inter, 256);
    assert_int_equal(c.head_dim, 16);
}

/* Each integer at both ends of its range and one past, and values of other kinds. */
static void test_config_integer_ranges(void **state)
{
    (void)state;
    static const struct { const char *key, *max, *over, *range; } k[] = {
        {"num_hidden_layers", "4096", "4097", "1..4096"},
        {"hidden_size", "65536", "65537", "1..65536"},
        {"num_attention_heads", "4", "4097", "1..4096"},
        {"intermediate_size", "1048576", "1048577", "1..1048576"},
        {"vocab_size", "16777216", "16777217", "1..16777216"},
        {"max_position_embeddings", "16777216", "16777217", "1..16777216"},
    };
    for (size_t i = 0; i < sizeof k / sizeof k[0]; i++) {
        accepts(LLAMA_HD, k[i].key, k[i].max);
        refuses(LLAMA_HD, k[i].key, k[i].over, k[i].range);
        refuses(LLAMA_HD, k[i].key, "0", k[i].key);
        refuses(LLAMA_HD, k[i].key, "-1", k[i].key);
        refuses(LLAMA_HD, k[i].key, "2147483648", k[i].key);
        refuses(LLAMA_HD, k[i].key, "1000000000", k[i].key);
        refuses(LLAMA_HD, k[i].key, "9223372036854775807", k[i].key);
        refuses(LLAMA_HD, k[i].key, "64.0", "must be an integer");
        refuses(LLAMA_HD, k[i].key, "\"64\"", "must be an integer");
        refuses(LLAMA_HD, k[i].key, "true", "must be an integer");
    }
    refuses(LLAMA, "num_hidden_layers", NULL, "num_hidden_layers is missing");
    refuses(LLAMA, "intermediate_size", NULL, "intermediate_size is missing");
    accepts(LLAMA, "max_position_embeddings", NULL);
    refuses(GPT2, "n_layer", "1000000000", "n_layer must be an integer in 1..4096");
}

static void test_config_heads(void **state)
{
    (void)state;
    refuses(LLAMA, "num_key_value_heads", "3", "not a multiple of num_key_value_heads 3");
    refuses(LLAMA, "num_key_value_heads", "8", "num_key_value_heads must be an integer in 1..4");
    refuses(LLAMA, "num_key_value_heads", "0", "num_key_value_heads");
    accepts(LLAMA, "head_dim", "1024");
    refuses(LLAMA, "head_dim", "1026", "head_dim must be an integer in 2..1024");
    refuses(LLAMA, "head_dim", "33", "must be even");
    refuses(LLAMA, "head_dim", "0", "head_dim");
    refuses(LLAMA, "hidden_size", "3", "must be even"); /* hidden / heads = 0 */
    refuses(LLAMA, "hidden_size", "36", "must be even"); /* 36 / 4 = 9 */
    refuses(GPT2, "n_embd", "66", "GPT-2 needs n_embd 66 = n_head x head_dim (4 x 16)");
    refuses(GPT2, "head_dim", "8", "GPT-2 needs n_embd");
    refuses(GPT2, "num_key_value_heads", "2", "GPT-2 needs n_embd");
    static const char *MANY = "{\"architectures\": [\"LlamaForCausalLM\"], \"hidden_size\": 64, \"num_hidden_layers\": 2,"
                              " \"head_dim\": 2, \"intermediate_size\": 128, \"vocab_size\": 4096}";
    accepts(MANY, "num_attention_heads", "4096");
    refuses(MANY, "num_attention_heads", "4097", "num_attention_heads must be an integer in 1..4096");
}

static void test_config_floats(void **state)
{
    (void)state;
    accepts(LLAMA, "rms_norm_eps", "0");
    accepts(LLAMA, "rms_norm_eps", "1");
    accepts(LLAMA, "rms_norm_eps", "1e-12");
    refuses(LLAMA, "rms_norm_eps", "-1e-12", "rms_norm_eps must be a number in [0, 1]");
    refuses(LLAMA, "rms_norm_eps", "1.5", "rms_norm_eps");
    refuses(LLAMA, "rms_norm_eps", "\"1e-6\"", "rms_norm_eps");
    refuses(GPT2, "layer_norm_epsilon", "-1", "layer_norm_epsilon");
    accepts(LLAMA, "rope_theta", "1");
    accepts(LLAMA, "rope_theta", "1000000000000");
    refuses(LLAMA, "rope_theta", "0", "rope_theta must be a number in [1, 1e+12]");
    refuses(LLAMA, "rope_theta", "-10000", "rope_theta");
    refuses(LLAMA, "rope_theta", "1e13", "rope_theta");
    accepts(GPT2, "rope_theta", "-1"); /* learned positions: not read */
}

static void test_config_rope_scaling(void **state)
{
    (void)state;
    accepts(LLAMA, "rope_scaling", "{\"type\": \"linear\", \"factor\": 2.0}");
    accepts(LLAMA, "rope_scaling", "{\"rope_type\": \"default\", \"factor\": 0}"); /* unused */
    accepts(LLAMA, "rope_scaling", "null");
    refuses(LLAMA, "rope_scaling", "{\"type\": \"linear\", \"factor\": 0}", "rope_scaling.factor must be a number in");
    refuses(LLAMA, "rope_scaling", "{\"type\": \"dynamic\", \"factor\": -2}", "rope_scaling.factor");
    refuses(LLAMA, "rope_scaling", "{\"type\": \"linear\", \"factor\": 1e7}", "rope_scaling.factor");
    refuses(LLAMA, "rope_scaling", "{\"type\": 5, \"factor\": 2}", "rope_type must be a string");
    refuses(LLAMA, "rope_scaling", "[1]", "rope_scaling must be an object");
    refuses(LLAMA, "rope_parameters", "{\"rope_theta\": 0, \"rope_type\": \"default\"}", "rope_parameters.rope_theta");
    refuses(LLAMA, "rope_parameters", "{\"rope_type\": \"linear\", \"factor\": 0}", "rope_parameters.factor");
    accepts(LLAMA, "rope_scaling",
            "{\"rope_type\": \"llama3\", \"factor\": 8, \"low_freq_factor\": 1, \"high_freq_factor\": 4,"
            " \"original_max_position_embeddings\": 8192}");
    refuses(LLAMA, "rope_scaling", "{\"rope_type\": \"llama3\", \"factor\": 8, \"low_freq_factor\": 4}", "must differ");
    refuses(LLAMA, "rope_scaling", "{\"rope_type\": \"llama3\", \"factor\": 8, \"low_freq_factor\": 2, \"high_freq_factor\": 2}",
            "must differ");
    refuses(LLAMA, "rope_scaling", "{\"rope_type\": \"llama3\", \"factor\": 8, \"low_freq_factor\": 0}", "low_freq_factor");
    refuses(LLAMA, "rope_scaling", "{\"rope_type\": \"llama3\", \"factor\": 8, \"high_freq_factor\": -4}", "high_freq_factor");
    refuses(LLAMA, "rope_scaling", "{\"rope_type\": \"llama3\", \"factor\": 8, \"original_max_position_embeddings\": 0}",
            "original_max_position_embeddings must be a number in [1, 16777216]");
    refuses(LLAMA, "rope_scaling", "{\"rope_type\": \"yarn\", \"factor\": 4, \"beta_fast\": 0}", "beta_fast");
    refuses(LLAMA, "rope_scaling", "{\"rope_type\": \"yarn\", \"factor\": 4, \"attention_factor\": -1}", "attention_factor");
}

static void test_config_ids_and_window(void **state)
{
    (void)state;
    accepts(LLAMA, "bos_token_id", "-1");
    accepts(LLAMA, "bos_token_id", "4095");
    accepts(LLAMA, "bos_token_id", "null");
    refuses(LLAMA, "bos_token_id", "4096", "bos_token_id 4096 is not a token id");
    refuses(LLAMA, "bos_token_id", "-2", "bos_token_id -2");
    accepts(LLAMA, "eos_token_id", "[2, 3, 4095]");
    refuses(LLAMA, "eos_token_id", "[2, 99999]", "eos_token_id 99999");
    static const char *MISTRAL = "{\"architectures\": [\"MistralForCausalLM\"], \"hidden_size\": 64, \"num_hidden_layers\": 2,"
                                 " \"num_attention_heads\": 4, \"intermediate_size\": 128, \"vocab_size\": 4096}";
    accepts(MISTRAL, "sliding_window", "16777216");
    accepts(MISTRAL, "sliding_window", "null");
    refuses(MISTRAL, "sliding_window", "16777217", "sliding_window must be an integer in 0..16777216");
    refuses(MISTRAL, "sliding_window", "-1", "sliding_window");
    refuses(MISTRAL, "use_sliding_window", "1", "use_sliding_window must be true or false");
}

static void test_config_malformed(void **state)
{
    (void)state;
    static const char *bad[] = {"", "[]", "{", "null", "{\"architectures\": [\"LlamaForCausalLM\"], \"a\": 1, \"a\": 2}",
                                "{\"architectures\": [\"LlamaForCausalLM\"], \"hidden_size\": 1e400}",
                                "{\"architectures\": [\"LlamaForCausalLM\"], \"hidden_size\": 99999999999999999999}"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        hf_config c;
        char err[1024] = "";
        assert_int_equal(hf_parse_config(bad[i], strlen(bad[i]), &c, err, sizeof err), -1);
        assert_true(strncmp(err, "config.json: ", 13) == 0);
    }
}

/* ---- recipes ---- */

static int recipe(const char *text, quant_opts *q, recipe_opts *o, char *err, size_t n)
{
    memset(q, 0, sizeof *q);
    q->group_size = 64;
    q->split[2] = 1;
    *o = (recipe_opts){1, 0, 9, -1, 0};
    err[0] = 0;
    return recipe_parse("r.yaml", text, strlen(text), o, q, err, n);
}

static void recipe_refused(const char *text, const char *want)
{
    quant_opts q;
    recipe_opts o;
    char err[1024];
    if (!recipe(text, &q, &o, err, sizeof err)) fail_msg("recipe accepted: %s", text);
    if (!strstr(err, want)) fail_msg("recipe '%s': message '%s' lacks '%s'", text, err, want);
    assert_null(q.rules); /* freed on failure */
    assert_int_equal(q.n_rules, 0);
}

static void test_recipe_values(void **state)
{
    (void)state;
    quant_opts q;
    recipe_opts o;
    char err[1024];
    assert_int_equal(recipe("group_size: 256\nrefine: 8\ntiers: \"0:0.5:99.5\"\nzstd: -7\nlayers_per_block: 65536\n", &q, &o,
                            err, sizeof err), 0);
    assert_int_equal(q.group_size, 256);
    assert_int_equal(q.refine_bits, 8);
    assert_int_equal(o.zstd_level, -7);
    assert_int_equal(o.layers_per_block, 65536);
    static const char *bad_groups[] = {"33", "16", "512", "96", "64.5", "nan", "-64", "1e400", "0x40x", "\"\""};
    char text[128];
    for (size_t i = 0; i < sizeof bad_groups / sizeof bad_groups[0]; i++) {
        snprintf(text, sizeof text, "group_size: %s\n", bad_groups[i]);
        recipe_refused(text, "group_size must be 32, 64, 128 or 256");
        snprintf(text, sizeof text, "tensors:\n  - match: \"*\"\n    group_size: %s\n", bad_groups[i]);
        recipe_refused(text, "group_size must be 32, 64, 128 or 256");
    }
    recipe_refused("refine: 3\n", "r.yaml:1: refine must be 1, 2, 4 or 8");
    recipe_refused("refine: 16\n", "refine");
    static const char *bad_tiers[] = {"nan:nan:nan", "nan:50:50", "inf:0:0", "-10:60:50", "150:-25:-25", "10:20:60",
                                      "10:20:70:0", "10:20", "a:b:c"};
    for (size_t i = 0; i < sizeof bad_tiers / sizeof bad_tiers[0]; i++) {
        snprintf(text, sizeof text, "tiers: \"%s\"\n", bad_tiers[i]);
        recipe_refused(text, "percentages in 0..100 summing to 100");
        snprintf(text, sizeof text, "tensors:\n  - match: \"*\"\n    tiers: \"%s\"\n", bad_tiers[i]);
        recipe_refused(text, "percentages in 0..100 summing to 100");
    }
    recipe_refused("bpw: nan\n", "bpw must be a number in (0, 32]");
    recipe_refused("bpw: 0\n", "bpw");
    recipe_refused("bpw: 33\n", "bpw");
    recipe_refused("zstd: 23\n", "zstd must be a zstd level in -7..22");
    recipe_refused("zstd: 1.5\n", "zstd");
    recipe_refused("layers_per_block: 0\n", "layers_per_block must be an integer in 1..65536");
    recipe_refused("layers_per_block: 65537\n", "layers_per_block");
}

/* scheme picks one; without it, a top-level tiers, group_size or refine (the
 * options of TIERED alone) makes the converter pick TIERED. */
/* A plan of n layer matrices of rows x cols each (no data: only sizes count). */
static void size_plan(tensor_plan *p, plan_tensor *t, st_tensor *src, size_t n, uint64_t rows, uint64_t cols)
{
    for (size_t i = 0; i < n; i++) {
        src[i] = (st_tensor){0};
        src[i].name = "model.layers.0.mlp.up_proj.weight";
        src[i].n_elements = rows * cols;
        t[i] = (plan_tensor){&src[i], NSQRT_ROLE_UP, NSQRT_KIND_MATRIX, (int)i, 0, rows, cols};
    }
    *p = (tensor_plan){t, n};
}

/* LATTICE's calibration defaults follow the model's size, unless given. */
static void test_size_defaults(void **state)
{
    (void)state;
    static plan_tensor t[154];
    static st_tensor src[154];
    tensor_plan p;
    convert_job o = {0};
    o.q.lattice = 1, o.q.bpw = 4, o.quiet = 1, o.calib_path = "t.txt";
    size_plan(&p, t, src, 42, 256, 448); /* tiny-llama's 4.8 M layer weights */
    o.calib_tokens = 65536, o.calib_probe = 1024;
    convert_size_defaults(&o, &p);
    assert_int_equal(o.calib_tokens, 262144);
    assert_int_equal(o.calib_probe, 1024);
    size_plan(&p, t, src, 154, 2048, 3072); /* 969 M, as TinyLlama-1.1B */
    o.calib_tokens = 65536, o.calib_probe = 1024;
    convert_size_defaults(&o, &p);
    assert_int_equal(o.calib_tokens, 4096);
    assert_int_equal(o.calib_probe, 0);
    assert_non_null(strstr(o.recipe, "calib_tokens=4096 calib_probe=0"));
    o.calib_tokens = 300, o.calib_probe = 64, o.calib_tokens_set = o.calib_probe_set = 1;
    convert_size_defaults(&o, &p);
    assert_int_equal(o.calib_tokens, 300);
    assert_int_equal(o.calib_probe, 64);
    size_plan(&p, t, src, 154, 8192, 8192); /* 10 G: never below 2048 tokens */
    o.calib_tokens_set = o.calib_probe_set = 0;
    convert_size_defaults(&o, &p);
    assert_int_equal(o.calib_tokens, 2048);
}

static void test_recipe_scheme(void **state)
{
    (void)state;
    quant_opts q;
    recipe_opts o;
    char err[1024];
    assert_int_equal(recipe("scheme: lattice\n", &q, &o, err, sizeof err), 0);
    assert_int_equal(o.scheme, 1);
    assert_int_equal(o.tiered, 0);
    assert_int_equal(recipe("scheme: \"tiered\"\nembed: q4\n", &q, &o, err, sizeof err), 0);
    assert_int_equal(o.scheme, 0);
    assert_int_equal(o.tiered, 0);
    assert_int_equal(recipe("embed: q4\nbpw: 3.5\nzstd: 3\nlayers_per_block: 2\n", &q, &o, err, sizeof err), 0);
    assert_int_equal(o.scheme, -1);
    assert_int_equal(o.tiered, 0);
    static const char *tiered[] = {"tiers: \"10:20:70\"\n", "group_size: 128\n", "refine: 2\n",
                                   "scheme: tiered\ngroup_size: 32\n"};
    for (size_t i = 0; i < sizeof tiered / sizeof tiered[0]; i++) {
        assert_int_equal(recipe(tiered[i], &q, &o, err, sizeof err), 0);
        if (o.tiered != 1) fail_msg("recipe '%s' does not set tiered", tiered[i]);
        assert_int_equal(o.scheme, i == 3 ? 0 : -1);
    }
    /* the same keys in a tensors rule are that rule's, not the file's */
    assert_int_equal(recipe("tensors:\n  - match: \"*\"\n    tiers: \"0:100:0\"\n    group_size: 32\n", &q, &o, err, sizeof err), 0);
    assert_int_equal(o.tiered, 0);
    recipe_free(&q);
    recipe_refused("scheme: bogus\n", "r.yaml:1: expected lattice or tiered for scheme");
    recipe_refused("embed: q8\nscheme: Lattice\n", "r.yaml:2: expected lattice or tiered for scheme");
    recipe_refused("scheme: [lattice]\n", "r.yaml:1: expected lattice or tiered for scheme");
    recipe_refused("scheme: {a: tiered}\n", "expected lattice or tiered for scheme");
    recipe_refused("scheme:\n", "expected lattice or tiered for scheme");
}

static void test_recipe_shape(void **state)
{
    (void)state;
    recipe_refused("tensors:\n  - match: \"*\"\n    policy: q8\ngroup_size: 33\n", "group_size"); /* rules, then an error */
    recipe_refused("group_size: {a: 1}\n", "group_size");
    recipe_refused("a:\n  b: 1\n", "unknown key a");
    recipe_refused("- 1\n", "a recipe is a mapping of keys");
    recipe_refused("just text\n", "a recipe is a mapping of keys");
    recipe_refused("tensors:\n  - [[[[[[1]]]]]]\n", "each tensors entry must be a mapping");
    recipe_refused("tensors:\n  - match: [1]\n", "expected a tensor name pattern");
    recipe_refused("group_size: &g 64\nembed: *g\n", "embed");
    recipe_refused("tensors: [", "r.yaml:");
}

/* A recipe of n rules "- {match: x}". */
static char *rules(size_t n)
{
    char *s = malloc(16 + n * 20), *p = s;
    assert_non_null(s);
    p += sprintf(p, "tensors:\n");
    for (size_t i = 0; i < n; i++) p += sprintf(p, "  - {match: t%zu}\n", i);
    return s;
}

static void test_recipe_limits(void **state)
{
    (void)state;
    quant_opts q;
    recipe_opts o;
    char err[1024];
    char *ok = rules(RECIPE_MAX_RULES), *over = rules(RECIPE_MAX_RULES + 1);
    assert_int_equal(recipe(ok, &q, &o, err, sizeof err), 0);
    assert_int_equal(q.n_rules, RECIPE_MAX_RULES);
    assert_string_equal(recipe_match(&q, "t4095")->match, "t4095");
    recipe_free(&q);
    recipe_refused(over, "more than 4096 tensors entries");
    free(ok);
    free(over);
    char *big = malloc(RECIPE_MAX_BYTES + 2);
    assert_non_null(big);
    memset(big, ' ', RECIPE_MAX_BYTES + 1);
    big[RECIPE_MAX_BYTES + 1] = 0;
    recipe_refused(big, "larger than the 1048576 bytes a recipe may have");
    big[RECIPE_MAX_BYTES] = 0; /* exactly at the limit: parsed (an empty document) */
    assert_int_equal(recipe(big, &q, &o, err, sizeof err), 0);
    free(big);
}

/* ---- numeric options ---- */

static void test_options(void **state)
{
    (void)state;
    static const char *bad[] = {"-1", "1e10", "99999999999999999999", "nan", "inf", "", "12abc", " 5", "+5", "0x10", "5 ", "1.0"};
    uint64_t u = 7;
    int64_t i = 7;
    double d = 7;
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        assert_int_equal(cli_opt_uint("t", "-n", bad[k], 0, 1000000000, &u), -1);
        assert_int_equal(cli_opt_int("t", "--zstd", bad[k], -7, 22, &i), bad[k][0] == '-' && bad[k][1] == '1' && !bad[k][2] ? 0 : -1);
    }
    assert_int_equal(u, 7);
    assert_int_equal(i, -1);
    assert_int_equal(cli_opt_uint("t", "--seed", "18446744073709551615", 0, UINT64_MAX, &u), 0);
    assert_true(u == UINT64_MAX);
    assert_int_equal(cli_opt_uint("t", "--seed", "18446744073709551616", 0, UINT64_MAX, &u), -1);
    assert_int_equal(cli_opt_uint("t", "--threads", "0", 1, 64, &u), -1);
    assert_int_equal(cli_opt_uint("t", "--threads", "65", 1, 64, &u), -1);
    assert_int_equal(cli_opt_uint("t", "--threads", "064", 1, 64, &u), 0);
    assert_int_equal(u, 64);
    assert_int_equal(cli_opt_int("t", "--zstd", "-8", -7, 22, &i), -1);
    assert_int_equal(cli_opt_int("t", "--zstd", "-9223372036854775808", -7, 22, &i), -1);
    assert_int_equal(cli_opt_int("t", "--zstd", "22", -7, 22, &i), 0);
    static const char *bad_real[] = {"nan", "-nan", "inf", "-inf", "1e400", "", " 1", "1x", "-0.5", "2"};
    for (size_t k = 0; k < sizeof bad_real / sizeof bad_real[0]; k++)
        assert_int_equal(cli_opt_real("t", "--top-p", bad_real[k], 0, 1, 1, &d), -1);
    assert_int_equal(cli_opt_real("t", "--top-p", "0", 0, 1, 1, &d), -1);
    assert_int_equal(cli_opt_real("t", "--temp", "0", 0, 100, 0, &d), 0);
    assert_int_equal(cli_opt_real("t", "--top-p", "1e-3", 0, 1, 1, &d), 0);
    assert_true(d == 1e-3);
    double split[3];
    assert_int_equal(option_tiers("nan:nan:nan", split), -1);
    assert_int_equal(option_tiers("10:20:70", split), 0);
    assert_int_equal(option_group_size(33), -1);
    assert_int_equal(option_refine(3), -1);
}

/* --route and --skip-blocks (cli_route.h). */
static void test_route_options(void **state)
{
    (void)state;
    nsqrt_route_opts o = {0};
    assert_int_equal(cli_route_parse("router", &o), 0);
    assert_int_equal(o.mode, NSQRT_ROUTE_ROUTER);
    assert_int_equal(cli_route_parse("random:7", &o), 0);
    assert_int_equal(o.mode, NSQRT_ROUTE_RANDOM);
    assert_int_equal(o.seed, 7);
    assert_int_equal(cli_route_parse("4", &o), 0);
    assert_int_equal(o.mode, NSQRT_ROUTE_TOP);
    assert_int_equal(o.k, 4);
    assert_int_equal(cli_route_parse("top", &o), -1);
    assert_int_equal(cli_route_parse("0", &o), -1);
    assert_int_equal(cli_route_parse("random:", &o), -1);
    assert_int_equal(cli_route_parse("random:x", &o), -1);
    assert_int_equal(cli_route_parse("Once upon a time", &o), -1);
    char err[256];
    assert_int_equal(cli_route_parse_skip("1,3", 5, &o, err, sizeof err), 0);
    assert_true(o.forced[1] && o.forced[3] && !o.forced[0] && !o.forced[2]);
    assert_int_equal(cli_route_parse_skip("5", 5, &o, err, sizeof err), -1);
    assert_int_equal(cli_route_parse_skip("1,,2", 5, &o, err, sizeof err), -1);
    free(o.forced);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_config_valid),          cmocka_unit_test(test_config_integer_ranges),
        cmocka_unit_test(test_config_heads),          cmocka_unit_test(test_config_floats),
        cmocka_unit_test(test_config_rope_scaling),   cmocka_unit_test(test_config_ids_and_window),
        cmocka_unit_test(test_config_malformed),      cmocka_unit_test(test_recipe_values),
        cmocka_unit_test(test_recipe_scheme),         cmocka_unit_test(test_size_defaults),         cmocka_unit_test(test_recipe_shape),
        cmocka_unit_test(test_recipe_limits),         cmocka_unit_test(test_options),
        cmocka_unit_test(test_route_options),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
