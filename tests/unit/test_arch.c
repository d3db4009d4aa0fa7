/* test_arch.c - the architecture registry (arch.c): every family's every
 * tensor name parses back to its (layer, role), names that are close but not
 * the family's are refused, shapes follow the config, and the roles a config
 * needs follow its flags. */
#include "testutil.h"

#include "arch.h"

static model_config config_of(const arch_info *a)
{
    model_config c = {0};
    c.arch = a;
    c.layernorm = (a->flags & ARCH_LAYERNORM) != 0;
    c.learned_pos = (a->flags & ARCH_LEARNED_POS) != 0;
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
    for (const arch_info *const *a = arch_registry; *a; a++) {
        model_config c = config_of(*a);
        for (int role = 0; role < ROLE_COUNT; role++)
            for (uint32_t L = 0; L < c.n_layers; L += 11)
                for (int opt = 0; opt < 2; opt++) {
                    char name[160];
                    uint32_t GL = role < ROLE_FIRST_LAYER ? UINT32_MAX : L, gotL;
                    int got;
                    if (arch_tensor_name(&c, GL, role, opt, name, sizeof name)) continue;
                    assert_int_equal(arch_tensor_role(&c, name, &gotL, &got), 0);
                    assert_int_equal(got, role);
                    assert_int_equal(gotL, GL);
                }
    }
}

static int role_of(const model_config *c, const char *name)
{
    uint32_t L;
    int role;
    return arch_tensor_role(c, name, &L, &role) ? -1 : role;
}

static void test_near_names_refused(void **state)
{
    (void)state;
    model_config c = config_of(arch_by_name("llama", 5));
    assert_int_equal(role_of(&c, "model.layers.3.self_attn.q_proj.weight"), ROLE_Q);
    assert_int_equal(role_of(&c, "model.layers.03.self_attn.q_proj.weight"), -1); /* leading zero */
    assert_int_equal(role_of(&c, "model.layers.12.self_attn.q_proj.weight"), -1); /* past n_layers */
    assert_int_equal(role_of(&c, "model.layers.+1.self_attn.q_proj.weight"), -1);
    assert_int_equal(role_of(&c, "model.layers.1.self_attn.qkv_proj.weight"), -1); /* phi3's */
    assert_int_equal(role_of(&c, "transformer.model.norm.weight"), -1);           /* no optional prefix */
    model_config g = config_of(arch_by_name("gpt2", 4));
    assert_int_equal(role_of(&g, "transformer.h.0.ln_1.bias"), ROLE_ATTN_NORM_B);
    assert_int_equal(role_of(&g, "h.0.ln_1.bias"), ROLE_ATTN_NORM_B);
    assert_int_equal(role_of(&g, "transformer.lm_head.weight"), -1); /* the head never takes it */
    model_config m = config_of(arch_by_name("gemma2", 6));
    assert_int_equal(role_of(&m, "model.layers.2.post_attention_layernorm.weight"), ROLE_POST_ATTN_NORM);
    assert_int_equal(role_of(&c, "model.layers.2.post_attention_layernorm.weight"), ROLE_MLP_NORM);
    assert_null(arch_by_name("llama2", 6));
    assert_null(arch_by_name("llam", 4));
    assert_non_null(arch_by_hf_class("Qwen3ForCausalLM"));
}

static void test_shapes(void **state)
{
    (void)state;
    model_config c = config_of(arch_by_name("phi3", 4));
    uint64_t out, in;
    assert_int_equal(arch_role_shape(&c, ROLE_QKV, &out, &in), 2);
    assert_int_equal(out, 4 * 16 + 2 * 2 * 16);
    assert_int_equal(in, 64);
    assert_int_equal(arch_role_shape(&c, ROLE_GATE_UP, &out, &in), 2);
    assert_int_equal(out, 2 * 96);
    assert_int_equal(arch_role_shape(&c, ROLE_Q_NORM, &out, &in), 1);
    assert_int_equal(out, 16);
    assert_int_equal(arch_role_shape(&c, ROLE_O_B, &out, &in), 1);
    assert_int_equal(out, 64);
    model_config g = config_of(arch_by_name("gpt2", 4));
    assert_true(arch_role_in_major(&g, ROLE_QKV));
    g.conv1d_transposed = 1;
    assert_false(arch_role_in_major(&g, ROLE_QKV));
    assert_false(arch_role_in_major(&c, ROLE_QKV));
}

static void test_roles_follow_flags(void **state)
{
    (void)state;
    model_config c = config_of(arch_by_name("qwen2", 5));
    assert_true(arch_has_role(&c, ROLE_Q_B));
    assert_false(arch_has_role(&c, ROLE_O_B)); /* not in the family */
    c.attention_bias = 0;
    assert_false(arch_has_role(&c, ROLE_Q_B));
    assert_true(arch_has_role(&c, ROLE_HEAD));
    c.tied_head = 1;
    assert_false(arch_has_role(&c, ROLE_HEAD));
    model_config q = config_of(arch_by_name("qwen3", 5));
    assert_true(arch_has_role(&q, ROLE_Q_NORM) && arch_has_role(&q, ROLE_K_NORM));
    assert_false(arch_has_role(&q, ROLE_POS));
    model_config g = config_of(arch_by_name("gpt2", 4));
    assert_true(arch_has_role(&g, ROLE_POS) && arch_has_role(&g, ROLE_ATTN_NORM_B));
    assert_false(arch_has_role(&g, ROLE_GATE));
}

static void test_windowed_layers(void **state)
{
    (void)state;
    model_config c = config_of(arch_by_name("gemma2", 6));
    assert_false(arch_layer_windowed(&c, 0)); /* no window */
    c.sliding_window = 8;
    assert_true(arch_layer_windowed(&c, 1));
    c.window_pattern = 2; /* every other layer from layer 0 */
    assert_true(arch_layer_windowed(&c, 0));
    assert_false(arch_layer_windowed(&c, 1));
    assert_true(arch_layer_windowed(&c, 2));
    c.window_pattern = 6; /* five windowed, then one full */
    assert_true(arch_layer_windowed(&c, 4));
    assert_false(arch_layer_windowed(&c, 5));
    assert_false(arch_layer_windowed(&c, 11));
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
