/*
 * fuzz_recipe.c - libFuzzer target for nsq-convert's recipe reader
 * (tools/nsq-convert/recipe.c): the input is the text of a --recipe YAML
 * file, read by recipe_parse into options preset as nsq-convert presets them.
 *
 * Invariants: a failure leaves a NUL-terminated "recipe.yaml:LINE: ..."
 * message and no rules (recipe_parse frees them, so LeakSanitizer sees any
 * leak); an accepted recipe holds only values the command line accepts too
 * (group sizes 32/64/128/256, refinement bits 1/2/4/8, tiers of finite
 * fractions in [0, 1] summing to 1, bpw in (0, 32], layers per block
 * 1..65536, zstd level -7..22, scheme unset, lattice or tiered), at most
 * RECIPE_MAX_RULES rules, each with a non-empty NUL-terminated pattern.
 * recipe_match then runs over a few names.
 *
 *   make build-fuzz/fuzz_recipe && build-fuzz/fuzz_recipe -max_len=4096 CORPUS fuzz/corpus/fuzz_recipe
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "convert.h"

#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Written out here rather than taken from the reader, so a wrong check there shows. */
static int group_ok(uint32_t g) { return g == 32 || g == 64 || g == 128 || g == 256; }

static void check_split(const double s[3])
{
    for (int i = 0; i < 3; i++) CHECK(isfinite(s[i]) && s[i] >= 0 && s[i] <= 1);
    CHECK(fabs(s[0] + s[1] + s[2] - 1) < 1e-6);
}

static void check_rule(const tensor_rule *t)
{
    CHECK(memchr(t->match, 0, sizeof t->match) && t->match[0]);
    CHECK(t->has_policy == 0 || t->has_policy == 1);
    CHECK(t->policy >= KEEP_SOURCE && t->policy <= UNIFORM_Q2);
    if (t->has_split) check_split(t->split);
    CHECK(t->group_size == 0 || group_ok(t->group_size));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    quant_opts q;
    memset(&q, 0, sizeof q);
    q.group_size = 64, q.split[0] = 0.1, q.split[1] = 0.2, q.split[2] = 0.7, q.embed = q.head = UNIFORM_Q8;
    recipe_opts o = {1, 0, 9, -1, 0};
    char err[1024];
    if (recipe_parse("recipe.yaml", (const char *)data, size, &o, &q, err, sizeof err)) {
        CHECK(memchr(err, 0, sizeof err) && strncmp(err, "recipe.yaml:", 12) == 0);
        CHECK(q.rules == NULL && q.n_rules == 0);
        return 0;
    }
    CHECK(group_ok(q.group_size));
    CHECK(q.refine_bits == 0 || q.refine_bits == 1 || q.refine_bits == 2 || q.refine_bits == 4 || q.refine_bits == 8);
    check_split(q.split);
    CHECK(q.bpw == 0 || (q.bpw > 0 && q.bpw <= 32));
    CHECK(q.lossless == 0 || q.lossless == 1);
    CHECK(q.embed <= UNIFORM_Q2 && q.head <= UNIFORM_Q2);
    CHECK(o.layers_per_block >= 1 && o.layers_per_block <= 65536);
    CHECK(o.zstd_level >= -7 && o.zstd_level <= 22 && (o.zstd == 0 || o.zstd == 1));
    CHECK(o.scheme >= -1 && o.scheme <= 1 && (o.tiered == 0 || o.tiered == 1));
    CHECK(q.n_rules <= RECIPE_MAX_RULES && (q.n_rules == 0) == (q.rules == NULL));
    for (size_t i = 0; i < q.n_rules; i++) check_rule(&q.rules[i]);
    static const char *const names[] = {"model.layers.0.mlp.down_proj.weight", "lm_head.weight", "", "h.1.attn.c_attn.weight"};
    for (size_t i = 0; i < 4; i++) {
        const tensor_rule *r = recipe_match(&q, names[i]);
        CHECK(!r || (r >= q.rules && r < q.rules + q.n_rules));
    }
    recipe_free(&q);
    return 0;
}
