/* test_arch.c - the architecture registry (arch.c): every family's every
 * tensor name parses back to its (layer, role), names that are close but not
 * the family's are refused, shapes follow the config, and the roles a config
 * needs follow its flags. */
#include "testutil.h"

#include "nsqrt.h"

static nsqrt_config config_of(const nsqrt_arch *a)
{
    nsqrt_config c = {0};
    c.arch = a;
    c.layernorm = (a->flags & NSQRT_ARCH_LAYERNORM) != 0;
    c.learned_pos = (a->flags & NSQRT_ARCH_LEARNED_POS) != 0;
    c.attention_bias = c.mlp_bias = 1;
    c.hidden = 64, c.n_layers = 12, c.n_heads = 4, c.n_kv_heads = 2, c.head_dim = 16, c.inter = 96;
    c.vocab = 100, c.ctx = 32;
    return c;
}

/* Every listed role's name, with and without the optional prefix, is read
 * back as the same layer and role. */
static void test_names_round_trip(void **state)
{
    (void)state;
    for (const nsqrt_arch *const *a = nsqrt_arch_registry; *a; a++) {
        nsqrt_config c = config_of(*a);
        for (int role = 0; role < NSQRT_ROLE_COUNT; role++)
            for (uint32_t L = 0; L < c.n_layers; L += 11)
                for (int opt = 0; opt < 2; opt++) {
                    char name[160];
                    uint32_t GL = role < NSQRT_ROLE_FIRST_LAYER ? UINT32_MAX : L, gotL;
                    int got;
                    if (nsqrt_arch_tensor_name(&c, GL, role, opt, name, sizeof name)) continue;
                    assert_int_equal(nsqrt_arch_tensor_role(&c, name, &gotL, &got), 0);
                    assert_int_equal(got, role);
                    assert_int_equal(gotL, GL);
                }
    }
}

static int role_of(const nsqrt_config *c, const char *name)
{
    uint32_t L;
    int role;
    return nsqrt_arch_tensor_role(c, name, &L, &role) ? -1 : role;
}

static void test_near_names_refused(void **state)
{
    (void)state;
    nsqrt_config c = config_of(nsqrt_arch_by_name("llama", 5));
    assert_int_equal(role_of(&c, "model.layers.3.self_attn.q_proj.weight"), NSQRT_ROLE_Q);
    assert_int_equal(role_of(&c, "model.layers.03.self_attn.q_proj.weight"), -1); /* leading zero */
    assert_int_equal(role_of(&c, "model.layers.12.self_attn.q_proj.weight"), -1); /* past n_layers */
    assert_int_equal(role_of(&c, "model.layers.+1.self_attn.q_proj.weight"), -1);
    assert_int_equal(role_of(&c, "model.layers.1.self_attn.qkv_proj.weight"), -1); /* phi3's */
    assert_int_equal(role_of(&c, "transformer.model.norm.weight"), -1);           /* no optional prefix */
    nsqrt_config g = config_of(nsqrt_arch_by_name("gpt2", 4));
    assert_int_equal(role_of(&g, "transformer.h.0.ln_1.bias"), NSQRT_ROLE_ATTN_NORM_B);
    assert_int_equal(role_of(&g, "h.0.ln_1.bias"), NSQRT_ROLE_ATTN_NORM_B);
    assert_int_equal(role_of(&g, "transformer.lm_head.weight"), -1); /* the head never takes it */
    nsqrt_config m = config_of(nsqrt_arch_by_name("gemma2", 6));
    assert_int_equal(role_of(&m, "model.layers.2.post_attention_layernorm.weight"), NSQRT_ROLE_POST_ATTN_NORM);
    assert_int_equal(role_of(&c, "model.layers.2.post_attention_layernorm.weight"), NSQRT_ROLE_MLP_NORM);
    assert_null(nsqrt_arch_by_name("llama2", 6));
    assert_null(nsqrt_arch_by_name("llam", 4));
    assert_non_null(nsqrt_arch_by_hf_class("Qwen3ForCausalLM"));
}

static void test_shapes(void **state)
{
    (void)state;
    nsqrt_config c = config_of(nsqrt_arch_by_name("phi3", 4));
    uint64_t out, in;
    assert_int_equal(nsqrt_arch_role_shape(&c, NSQRT_ROLE_QKV, &out, &in), 2);
    assert_int_equal(out, 4 * 16 + 2 * 2 * 16);
    assert_int_equal(in, 64);
    assert_int_equal(nsqrt_arch_role_shape(&c, NSQRT_ROLE_GATE_UP, &out, &in), 2);
    assert_int_equal(out, 2 * 96);
    assert_int_equal(nsqrt_arch_role_shape(&c, NSQRT_ROLE_Q_NORM, &out, &in), 1);
    assert_int_equal(out, 16);
    assert_int_equal(nsqrt_arch_role_shape(&c, NSQRT_ROLE_O_B, &out, &in), 1);
    assert_int_equal(out, 64);
    nsqrt_config g = config_of(nsqrt_arch_by_name("gpt2", 4));
    assert_true(nsqrt_arch_role_in_major(&g, NSQRT_ROLE_QKV));
    g.conv1d_transposed = 1;
    assert_false(nsqrt_arch_role_in_major(&g, NSQRT_ROLE_QKV));
    assert_false(nsqrt_arch_role_in_major(&c, NSQRT_ROLE_QKV));
}

static void test_roles_follow_flags(void **state)
{
    (void)state;
    nsqrt_config c = config_of(nsqrt_arch_by_name("qwen2", 5));
    assert_true(nsqrt_arch_has_role(&c, NSQRT_ROLE_Q_B));
    assert_false(nsqrt_arch_has_role(&c, NSQRT_ROLE_O_B)); /* not in the family */
    c.attention_bias = 0;
    assert_false(nsqrt_arch_has_role(&c, NSQRT_ROLE_Q_B));
    assert_true(nsqrt_arch_has_role(&c, NSQRT_ROLE_HEAD));
    c.tied_head = 1;
    assert_false(nsqrt_arch_has_role(&c, NSQRT_ROLE_HEAD));
    nsqrt_config q = config_of(nsqrt_arch_by_name("qwen3", 5));
    assert_true(nsqrt_arch_has_role(&q, NSQRT_ROLE_Q_NORM) && nsqrt_arch_has_role(&q, NSQRT_ROLE_K_NORM));
    assert_false(nsqrt_arch_has_role(&q, NSQRT_ROLE_POS));
    nsqrt_config g = config_of(nsqrt_arch_by_name("gpt2", 4));
    assert_true(nsqrt_arch_has_role(&g, NSQRT_ROLE_POS) && nsqrt_arch_has_role(&g, NSQRT_ROLE_ATTN_NORM_B));
    assert_false(nsqrt_arch_has_role(&g, NSQRT_ROLE_GATE));
}

static void test_windowed_layers(void **state)
{
    (void)state;
    nsqrt_config c = config_of(nsqrt_arch_by_name("gemma2", 6));
    assert_false(nsqrt_arch_layer_windowed(&c, 0)); /* no window */
    c.sliding_window = 8;
    assert_true(nsqrt_arch_layer_windowed(&c, 1));
    c.window_pattern = 2; /* every other layer from layer 0 */
    assert_true(nsqrt_arch_layer_windowed(&c, 0));
    assert_false(nsqrt_arch_layer_windowed(&c, 1));
    assert_true(nsqrt_arch_layer_windowed(&c, 2));
    c.window_pattern = 6; /* five windowed, then one full */
    assert_true(nsqrt_arch_layer_windowed(&c, 4));
    assert_false(nsqrt_arch_layer_windowed(&c, 5));
    assert_false(nsqrt_arch_layer_windowed(&c, 11));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_names_round_trip), cmocka_unit_test(test_near_names_refused),
        cmocka_unit_test(test_shapes),          cmocka_unit_test(test_roles_follow_flags),
        cmocka_unit_test(test_windowed_layers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
