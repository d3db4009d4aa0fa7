/*
 * fuzz_hfconfig.c - libFuzzer target for nsq-convert's config.json reader
 * (tools/nsq-convert/hfconfig.c): the input is the text of a config.json,
 * read by hf_parse_config as the converter reads it.
 *
 * Invariant: the reader either fails with a NUL-terminated message naming
 * config.json, or returns a config whose every value lies in the ranges of
 * convert.h (spec section 5.4), which are the ones the runtime's model check
 * (M-1) needs: sizes in range and consistent (KV heads divide heads, head_dim
 * even, GPT-2's heads x head_dim = hidden), finite float hyper-parameters in
 * range, llama3 frequency factors that differ, token ids -1 or below the
 * vocabulary. The same input is parsed twice and must give the same config.
 *
 *   make build-fuzz/fuzz_hfconfig && build-fuzz/fuzz_hfconfig -max_len=4096 CORPUS fuzz/corpus/fuzz_hfconfig
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "convert.h"

#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int in(double v, double lo, double hi) { return isfinite(v) && v >= lo && v <= hi; }

static int one_of(const char *s, const char *const *names, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s && strcmp(s, names[i]) == 0) return 1;
    return 0;
}

static void check_rope(const hf_config *c)
{
    static const char *const types[] = {"none", "linear", "dynamic", "llama3", "yarn", "longrope"};
    CHECK(one_of(c->rope_type, types, 6));
    if (c->arch->flags & NSQRT_ARCH_LEARNED_POS) return; /* no RoPE */
    CHECK(in(c->rope_theta, HF_MIN_THETA, HF_MAX_THETA));
    CHECK(strcmp(c->rope_type, "none") == 0 ? c->rope_factor == 1.0 : in(c->rope_factor, HF_MIN_ROPE_PARAM, HF_MAX_ROPE_PARAM));
    for (int i = 0; i < ROPE_N_EXTRA; i++) {
        if (!(c->rope_extra_set & 1u << i)) continue;
        if (i == ROPE_ORIG_MAX_POS) CHECK(in(c->rope_extra[i], 1, HF_MAX_CTX));
        else CHECK(in(c->rope_extra[i], HF_MIN_ROPE_PARAM, HF_MAX_ROPE_PARAM));
    }
    double low = c->rope_extra_set & 1u << ROPE_LOW_FREQ ? c->rope_extra[ROPE_LOW_FREQ] : 1;
    double high = c->rope_extra_set & 1u << ROPE_HIGH_FREQ ? c->rope_extra[ROPE_HIGH_FREQ] : 4;
    CHECK(strcmp(c->rope_type, "llama3") != 0 || low != high);
    for (uint64_t i = 0; strcmp(c->rope_type, "longrope") == 0 && i < c->head_dim / 2; i++)
        CHECK(in(c->rope_short[i], HF_MIN_ROPE_PARAM, HF_MAX_ROPE_PARAM) &&
              in(c->rope_long[i], HF_MIN_ROPE_PARAM, HF_MAX_ROPE_PARAM));
}

static void check_config(const hf_config *c)
{
    static const char *const acts[] = {"silu", "gelu_tanh", "gelu", "relu"};
    CHECK(c->arch && nsqrt_arch_by_hf_class(c->hf_arch) == c->arch);
    CHECK(one_of(c->activation, acts, 4));
    CHECK(c->hidden >= 1 && c->hidden <= HF_MAX_HIDDEN);
    CHECK(c->n_layers >= 1 && c->n_layers <= HF_MAX_LAYERS);
    CHECK(c->n_heads >= 1 && c->n_heads <= HF_MAX_HEADS);
    CHECK(c->n_kv_heads >= 1 && c->n_kv_heads <= c->n_heads && c->n_heads % c->n_kv_heads == 0);
    CHECK(c->head_dim >= 2 && c->head_dim <= HF_MAX_HEAD_DIM && c->head_dim % 2 == 0);
    CHECK(c->inter >= 1 && c->inter <= HF_MAX_INTER);
    CHECK(c->vocab >= 1 && c->vocab <= HF_MAX_VOCAB);
    CHECK(c->ctx >= 1 && c->ctx <= HF_MAX_CTX);
    CHECK(c->sliding_window <= HF_MAX_CTX);
    /* what the runtime computes in 32 bits (spec 5.4, M-1) */
    CHECK(c->n_heads * c->head_dim < (1u << 28) && c->hidden < (1u << 26));
    if (c->arch->flags & NSQRT_ARCH_CONV1D) CHECK(c->n_heads * c->head_dim == c->hidden && c->n_kv_heads == c->n_heads);
    CHECK(c->window_pattern <= c->n_layers);
    CHECK(in(c->norm_eps, 0, HF_MAX_EPS));
    check_rope(c);
    CHECK(c->bos_id >= -1 && c->bos_id < (int64_t)c->vocab);
    CHECK(c->eos_id >= -1 && c->eos_id < (int64_t)c->vocab);
    CHECK(c->n_eos <= 8);
    for (uint32_t i = 0; i < c->n_eos; i++) CHECK(c->eos_ids[i] >= -1 && c->eos_ids[i] < (int64_t)c->vocab);
    CHECK(c->n_eos == 0 || c->eos_ids[0] == c->eos_id);
    CHECK(memchr(c->hf_arch, 0, sizeof c->hf_arch) && memchr(c->dtype, 0, sizeof c->dtype));
    CHECK(memchr(c->rope_type, 0, sizeof c->rope_type));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    hf_config a, b;
    char err[1024], err2[1024];
    int ra = hf_parse_config((const char *)data, size, &a, err, sizeof err);
    int rb = hf_parse_config((const char *)data, size, &b, err2, sizeof err2);
    CHECK(ra == rb);
    if (ra) {
        CHECK(ra == -1 && memchr(err, 0, sizeof err) && strncmp(err, "config.json: ", 13) == 0);
        CHECK(strcmp(err, err2) == 0);
        return 0;
    }
    check_config(&a);
    CHECK(memcmp(&a, &b, sizeof a) == 0);
    return 0;
}
